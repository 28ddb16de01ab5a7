//! What comes back to the loop: a walk's or a sweep's end, the watch's news, a clock step.

use super::*;

impl Daemon {
    /// Takes what a walk job found, on the loop: counts and gauges only (the job applied the
    /// walk to the index and the watch itself, on its thread: see `walk::drop_unseen`).
    pub(super) fn walked(&mut self, job: WalkJob, walked: Walked) {
        let started = std::time::Instant::now();
        if matches!(job, WalkJob::All { .. }) {
            self.walked = true;
            self.metrics.drift(&walked.drift);
            if walked.drift.total() > 0 {
                warn!(
                    missing = walked.drift.missing,
                    extra = walked.drift.extra,
                    stale = walked.drift.stale,
                    "the index differed from the disk (events were lost); it now follows the disk"
                );
            }
        }
        let mut said = Vec::new();
        for (op, path, e) in &walked.errors {
            self.metrics.error(*op);
            if !said.contains(op) {
                said.push(*op);
                warn!(op = op.as_str(), path = %path.display(), error = %e, "error while walking (further ones at debug)");
            } else {
                debug!(op = op.as_str(), path = %path.display(), error = %e, "error while walking");
            }
        }
        match &job {
            WalkJob::All { .. } => {
                self.layout_unwatched = walked.unwatched_layout.iter().copied().collect();
            }
            WalkJob::Root(n) => {
                let count = walked
                    .unwatched_layout
                    .iter()
                    .filter(|(r, _)| r == n)
                    .map(|(_, c)| c)
                    .sum();
                self.layout_unwatched.insert(*n, count);
            }
            WalkJob::Dir { root, .. } => {
                let count: usize = walked.unwatched_layout.iter().map(|(_, c)| c).sum();
                *self.layout_unwatched.entry(*root).or_default() += count;
            }
        }
        self.watch_gauges();
        debug!(
            ?job,
            stores = walked.stores,
            files = walked.files,
            // What applying the walk took on the daemon's loop (nothing else runs meanwhile).
            applied_ms = started.elapsed().as_secs_f64() * 1e3,
            "walk done"
        );
    }

    pub(super) fn watch_gauges(&self) {
        let (stores_unwatched, units) = {
            let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            (index.unwatched_dirs(), index.unit_count())
        };
        let unwatched = stores_unwatched + self.layout_unwatched.values().sum::<usize>();
        self.metrics
            .unwatched_dirs
            .set(i64::try_from(unwatched).unwrap_or(i64::MAX));
        let active = self.watch.as_ref().is_some_and(|w| unwatched == 0 && !w.limited());
        self.metrics.inotify_active.set(i64::from(active));
        self.metrics.index_units.set(i64::try_from(units).unwrap_or(i64::MAX));
    }

    pub(super) fn swept(&mut self, job: Job, report: &Report, unfreed: u64) {
        self.metrics.record_sweep(job.trigger, report, now_nanos() as f64 / 1e9);
        self.metrics.journal_lost(crate::journal::lines_lost());
        // Opens remembered from before this run that are older than max_age keep nothing.
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .prune_pending(report.now.saturating_sub(policy::nanos(self.cfg.max_age)));
        self.metrics
            .unfreed_bytes
            .set(i64::try_from(unfreed).unwrap_or(i64::MAX));
        self.last_unfreed = unfreed;
        let backoff = UNMET_BACKOFF.min(self.cfg.interval);
        for fs in &report.filesystems {
            match (&fs.shortfall, fs.need_reason) {
                (Some(sf), Some(Reason::Pressure)) => {
                    let (used, size) =
                        disk::usage(&fs.mountpoint).map_or((0, 0), |u| (u.used, u.used.saturating_add(u.avail)));
                    self.pressure.unmet(
                        &fs.mountpoint,
                        std::time::Instant::now(),
                        backoff,
                        used,
                        size,
                        sf.young_until,
                    );
                }
                // A dry run frees nothing: the filesystem stays above `high`, and without this
                // back-off a pressure sweep would run at every poll to say the same again.
                (None, Some(Reason::Pressure)) if report.dry_run => {
                    let (used, size) =
                        disk::usage(&fs.mountpoint).map_or((0, 0), |u| (u.used, u.used.saturating_add(u.avail)));
                    self.pressure
                        .unmet(&fs.mountpoint, std::time::Instant::now(), backoff, used, size, None);
                }
                _ => self.pressure.met(&fs.mountpoint),
            }
        }
        let total = report.deleted_total();
        if report.dry_run {
            info!(
                trigger = job.trigger.as_str(),
                purge = job.mode == SweepMode::Purge,
                would_delete_files = total.files,
                would_free_bytes = total.bytes,
                would_remove_stores = report.reaped.stores,
                skipped_files = report.skipped.values().sum::<u64>(),
                errors = report.error_count(),
                cancelled = report.cancelled,
                seconds = report.duration_seconds,
                "dry run: sweep finished; it would delete {} files ({} bytes) and deleted nothing",
                total.files,
                total.bytes
            );
        } else {
            info!(
                trigger = job.trigger.as_str(),
                purge = job.mode == SweepMode::Purge,
                deleted_files = total.files,
                deleted_bytes = total.bytes,
                skipped_files = report.skipped.values().sum::<u64>(),
                errors = report.error_count(),
                unfreed_bytes = unfreed,
                cancelled = report.cancelled,
                seconds = report.duration_seconds,
                "sweep finished"
            );
        }
        self.last_sweeps.push_back(serde_json::json!({
            "ended": crate::journal::rfc3339(now_nanos()),
            "trigger": job.trigger.as_str(),
            "purge": job.mode == SweepMode::Purge,
            "dry_run": report.dry_run,
            "deleted_files": total.files,
            "deleted_bytes": total.bytes,
            "stores_removed": report.reaped.stores,
            "kept_files": report.skipped.iter().map(|(k, n)| (k.as_str().to_owned(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "errors": report.error_count(),
            "cancelled": report.cancelled,
            "seconds": report.duration_seconds,
        }));
        if self.last_sweeps.len() > 5 {
            self.last_sweeps.pop_front();
        }
        if report.cancelled {
            // Cancelled for pressure or a reload: run again (folded into what is pending).
            self.pending = Some(self.pending.map_or(job, |p| p.merge(job)));
        }
        self.watch_gauges();
        // The gauges show use after the deletions, not the use the sweep started from.
        self.read_usage();
    }

    pub(super) fn clock_step(&self, step: clock::Step) {
        self.metrics.clock_steps.inc();
        warn!(
            seconds = step.by / 1_000_000_000,
            hold = %humantime::format_duration(self.cfg.max_age),
            "the wall clock stepped; ages are measured on the clock carried on from before the step \
             until max_age has passed"
        );
    }

    pub(super) fn on_watch(&mut self, msg: WatchMsg) {
        match msg {
            WatchMsg::Activity => {
                if let Some(w) = &self.watch {
                    w.take_activity();
                }
                let now = Instant::now();
                let due = self.last_check.map_or(now, |t| (t + ACTIVITY_DELAY).max(now));
                self.check_at.get_or_insert(due);
            }
            WatchMsg::Overflow(_) => {
                self.metrics.inotify_overflows.inc();
                let burst = self.last_overflow.is_some_and(|t| t.elapsed() < OVERFLOW_BURST);
                self.last_overflow = Some(Instant::now());
                if burst {
                    debug!("inotify queue overflowed again");
                } else {
                    warn!(
                        "inotify queue overflowed (events lost; raise fs.inotify.max_queued_events): walking \
                         everything again; units that may have been used unseen are kept from the TTL for \
                         max_age (further overflows in this burst at debug)"
                    );
                }
                self.walk(WalkJob::All { reconcile: true });
            }
            WatchMsg::RootGone(n) => {
                self.forget_root(n);
                // Watched again when it is back (the next usage check resolves the roots).
                self.check_at.get_or_insert_with(|| Instant::now() + ACTIVITY_DELAY);
            }
            WatchMsg::NewDir { root, rel, role } => self.walk(WalkJob::Dir { root, rel, role }),
        }
    }
}
