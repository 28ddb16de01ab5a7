//! Reload (`SIGHUP`) and the state file the daemon keeps across restarts.

use super::*;

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReloadError {
    #[error("{0}")]
    Config(ConfigError),
    #[error("{0}")]
    Web(WebConfigError),
}

impl Daemon {
    /// SIGHUP: validate the new config first; a bad one leaves the old one in force. A sweep in
    /// hand is stopped at a unit boundary and runs again under the new config. Returns whether
    /// the config changed.
    pub(super) fn reload(&mut self) -> bool {
        sd_notify(&[sd_notify::NotifyState::Reloading]);
        let result = Config::load_with(self.config_path.as_deref(), &self.overrides)
            .map_err(ReloadError::Config)
            .and_then(|cfg| {
                // The web config file is checked with the rest: a bad one refuses the whole reload.
                let web = match &cfg.web_config_file {
                    None => WebConfig::plain(),
                    Some(file) => WebConfig::load(file).map_err(ReloadError::Web)?,
                };
                Ok((cfg, web))
            });
        let changed = match result {
            Ok((cfg, web)) => {
                info!(web = %web.describe(), "metrics endpoint");
                *self.web.write().expect("not poisoned") = Arc::new(web);
                if cfg.control_socket != self.cfg.control_socket {
                    warn!("control_socket changes take effect on restart");
                }
                if cfg.listen != self.cfg.listen {
                    warn!(old = %self.cfg.listen, new = %cfg.listen, "metrics.listen changes take effect on restart");
                }
                let rewalk = cfg.age_basis != self.cfg.age_basis;
                if (&cfg.state_dir, cfg.journal_max_bytes) != (&self.cfg.state_dir, self.cfg.journal_max_bytes) {
                    open_journal(&cfg, false);
                }
                if cfg.dry_run != self.cfg.dry_run {
                    warn!(
                        dry_run = cfg.dry_run,
                        "dry run {}",
                        if cfg.dry_run {
                            "from now on: nothing is deleted"
                        } else {
                            "ended: sweeps delete"
                        }
                    );
                }
                self.cfg = Arc::new(cfg);
                self.config_loaded_at = now_nanos();
                self.metrics.set_config(&self.cfg);
                self.metrics.config_last_reload_successful.set(1);
                if let Some(w) = &self.watch {
                    w.set_basis(self.cfg.age_basis.clone());
                }
                if let Some(running) = &self.running
                    && let Some(job) = running.sweep
                {
                    // Stopped at a unit boundary, and run again under the new rules.
                    self.cancel.store(true, Ordering::Relaxed);
                    self.pending = Some(self.pending.map_or(job, |p| p.merge(job)));
                }
                self.warn_about_atime();
                self.refresh_roots();
                if rewalk {
                    // Last uses are computed by age_basis: read everything again.
                    self.walks.push(WalkJob::All { reconcile: false });
                }
                self.next_job();
                info!(config = %self.config_name(), "configuration reloaded");
                true
            }
            Err(e) => {
                self.metrics.config_last_reload_successful.set(0);
                self.metrics.error(Op::Config);
                error!("configuration reload failed, the previous configuration stays in force: {e}");
                false
            }
        };
        sd_notify(&[sd_notify::NotifyState::Ready]);
        changed
    }

    /// Restores the opens of the last run (see [`crate::state`]).
    pub(super) fn load_state(&mut self) {
        let Some(dir) = self.cfg.state_dir.clone() else {
            info!("state_dir is empty: opens seen before a restart are not kept");
            return;
        };
        match State::load(&dir) {
            Ok(Some(state)) => {
                let now = now_nanos();
                let since = now.saturating_sub(policy::nanos(self.cfg.max_age));
                let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                let (mut kept, mut future) = (0, 0u64);
                for (store, stem, at) in state.entries() {
                    if at < since {
                        continue;
                    }
                    // Later than now (the clock ran ahead when it was written, or a bad file):
                    // an open now at most, or it would keep its unit for good.
                    if at > now {
                        future += 1;
                    }
                    let at = at.min(now);
                    let Some((n, rel)) = self.root_of(store) else { continue };
                    index.remember_open(n, &rel, stem, at);
                    kept += 1;
                }
                if future > 0 {
                    warn!(opens = future, path = %dir.display(), "opens dated later than now in the state file \
                          (the clock ran ahead, or the file is bad) are restored as opens now");
                }
                info!(opens = kept, path = %dir.display(), "opens seen before the restart restored");
            }
            Ok(None) => info!(path = %dir.display(), "no state from an earlier run"),
            Err(e) => warn!("{e}"),
        }
    }

    pub(super) fn save_state(&mut self) {
        let Some(dir) = self.cfg.state_dir.clone() else { return };
        let since = now_nanos().saturating_sub(policy::nanos(self.cfg.max_age));
        let opens = {
            let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index.recent_opens(since, crate::state::MAX_ENTRIES)
        };
        let by_number: BTreeMap<u32, PathBuf> = self.numbers.iter().map(|(p, n)| (*n, p.clone())).collect();
        let entries: Vec<(PathBuf, Vec<u8>, Nanos)> = opens
            .into_iter()
            .filter_map(|(n, rel, stem, at)| Some((by_number.get(&n)?.join(rel), stem, at)))
            .collect();
        let state = State::new(now_nanos(), entries);
        match state.save(&dir) {
            Ok(()) => debug!(opens = state.len(), "state saved"),
            Err(e) => {
                // Said once per change of outcome: a read-only /var/lib would say it every minute.
                static SAID: AtomicBool = AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    warn!(path = %dir.display(), error = %e, "cannot save the state: after a restart every unit \
                          counts as possibly used at the start (further failures at debug)");
                } else {
                    debug!(path = %dir.display(), error = %e, "cannot save the state");
                }
            }
        }
        self.state_saved = Instant::now();
    }
}
