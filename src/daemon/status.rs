//! The control socket's requests (`status`, `plan`, `explain`) as the loop answers them.

use super::*;

impl Daemon {
    /// A request of the control socket. `status` is made here, from the loop's state; `plan`
    /// and `explain` run the sweep's decision as a dry run on a blocking thread (`plan` streams).
    pub(super) fn on_control(
        &mut self,
        req: crate::control::Request,
        reply: tokio::sync::oneshot::Sender<control::Answer>,
    ) {
        use crate::control::Request;
        use control::Answer;
        if matches!(req, Request::Status) {
            let _ = reply.send(Answer::Value(self.status()));
            return;
        }
        if !self.walked {
            let _ = reply.send(Answer::Value(
                serde_json::json!({"error": "the daemon has not finished its first walk: ask again in a moment"}),
            ));
            return;
        }
        let (cfg, present, index) = (self.cfg.clone(), self.present.clone(), self.index.clone());
        match req {
            Request::Plan => {
                let _ = reply.send(Answer::Stream(Box::new(move |out| {
                    plan::stream(&cfg, &present, &index, out)
                })));
            }
            Request::Explain { paths } => {
                // The dry sweep is stopped when the client goes (it waited past the answer's
                // time limit, or hung up): it would otherwise run on, for no one.
                let cancel = Arc::new(AtomicBool::new(false));
                let work = {
                    let cancel = cancel.clone();
                    tokio::task::spawn_blocking(move || explain::explain(&cfg, &present, &index, &paths, &cancel))
                };
                let mut reply = reply;
                tokio::spawn(async move {
                    tokio::select! {
                        done = work => {
                            if let Ok(v) = done {
                                let _ = reply.send(Answer::Value(v));
                            }
                        }
                        () = reply.closed() => {
                            cancel.store(true, Ordering::Relaxed);
                            debug!("explain: the client went away; its dry sweep is stopped");
                        }
                    }
                });
            }
            Request::Status => unreachable!("answered above"),
        }
    }

    /// `status`: the daemon's state at a glance.
    pub(super) fn status(&self) -> serde_json::Value {
        use crate::journal::rfc3339;
        use serde_json::json;
        let (units, bytes, oldest, unwatched_stores) = {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            let mut bytes = 0u64;
            let mut oldest = Nanos::MAX;
            let ids: Vec<crate::index::StoreId> = index.stores().map(|(id, _)| id).collect();
            for id in ids {
                let Some(s) = index.store_mut(id) else { continue };
                bytes = s.inventory().iter().map(|(_, b)| *b).fold(bytes, u64::saturating_add);
                oldest = s.min_last_use().iter().copied().fold(oldest, Nanos::min);
            }
            (index.unit_count(), bytes, oldest, index.unwatched_dirs())
        };
        let mounts = Mounts::read().unwrap_or_default();
        let roots: Vec<serde_json::Value> = self
            .present
            .iter()
            .map(|(_, r)| {
                let usage = disk::usage(&r.path).ok();
                json!({
                    "path": crate::journal::lossy(&r.path),
                    "mountpoint": crate::journal::lossy(&sweep::mount_point(&mounts, &r.path, r.mount.dev)),
                    "used_ratio": usage.map(|u| u.ratio()),
                    "high": self.cfg.watermark.high,
                    "low": self.cfg.watermark.low,
                    "above_high": usage.map(|u| u.ratio() >= self.cfg.watermark.high),
                })
            })
            .collect();
        json!({
            "version": crate::VERSION,
            "revision": crate::REVISION,
            "rustc": crate::RUSTVERSION,
            "pid": std::process::id(),
            "started": rfc3339(self.started_at),
            "config": self.config_name(),
            "config_loaded": rfc3339(self.config_loaded_at),
            "dry_run": self.cfg.dry_run,
            "roots": roots,
            "index": {
                "walked": self.walked,
                "units": units,
                "bytes": bytes,
                "oldest_last_use": (oldest != Nanos::MAX).then(|| rfc3339(oldest)),
            },
            "watch": {
                "inotify": self.watch.is_some(),
                "watched_dirs": self.watch.as_ref().map(|w| w.watched()),
                "watch_limit_reached": self.watch.as_ref().is_some_and(|w| w.limited()),
                "unwatched_dirs": unwatched_stores + self.layout_unwatched.values().sum::<usize>(),
                "overflows": self.metrics.inotify_overflows.get(),
                "index_drift": self.metrics.drift_status(),
            },
            "clock": clock_status(&self.clock, self.metrics.clock_steps.get()),
            "stores": self.metrics.stores_status(),
            "control": {
                "clients_dropped": self.metrics.control_clients_dropped.get(),
            },
            "journal": {
                "path": crate::journal::current().map(|j| crate::journal::lossy(&j.path())),
                "lines_lost": crate::journal::lines_lost(),
            },
            "last_sweeps": self.last_sweeps,
            "sweep_running": self.running.as_ref().is_some_and(|r| r.sweep.is_some()),
            "next_sweep": explain::next_sweep_wall(self.next_sweep),
        })
    }
}

/// The clock the rules use against the wall clock: steps seen, the last one, and while one
/// holds the rules on the clock carried on from before it, how far behind and until when.
fn clock_status(clock: &clock::Clock, steps: u64) -> serde_json::Value {
    use crate::journal::rfc3339;
    use serde_json::json;
    let now = std::time::Instant::now();
    let drift = clock.drift(now);
    let wall = crate::sweep::now();
    json!({
        "steps": steps,
        "last_step": drift.last_step.map(|(at, step)| json!({
            "at": rfc3339(at),
            "by_seconds": step.by / 1_000_000_000,
        })),
        "rules_behind_seconds": drift.behind / 1_000_000_000,
        "held_until": drift
            .hold_left
            .map(|left| rfc3339(wall.saturating_add(crate::policy::nanos(left)))),
    })
}
