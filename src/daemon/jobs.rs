//! Scheduling of jobs: walks and sweeps requested, coalesced while one runs (a purge wins over
//! a plain sweep, pressure over an interval), and launched one at a time on a blocking thread.

use super::*;

/// A sweep to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Job {
    pub(super) trigger: Trigger,
    pub(super) mode: SweepMode,
}

impl Job {
    /// Two requests folded into one: a purge covers a sweep, and the more urgent trigger is
    /// the one counted (pressure, then a signal, then startup, then the interval).
    pub(super) fn merge(self, other: Job) -> Job {
        let rank = |t: Trigger| match t {
            Trigger::Pressure => 3,
            Trigger::Signal => 2,
            Trigger::Startup => 1,
            Trigger::Interval => 0,
        };
        Job {
            trigger: if rank(other.trigger) > rank(self.trigger) {
                other.trigger
            } else {
                self.trigger
            },
            mode: if self.mode == SweepMode::Purge || other.mode == SweepMode::Purge {
                SweepMode::Purge
            } else {
                SweepMode::Sweep
            },
        }
    }
}

/// What a walk is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum WalkJob {
    /// Every present root (start, lost events, the reconciliation, a changed config).
    All { reconcile: bool },
    /// One root (it appeared, or came back).
    Root(u32),
    /// A directory that appeared below a root.
    Dir { root: u32, rel: PathBuf, role: DirRole },
}

/// The walks to run, in order, each once: a walk already queued, or covered by one queued (every
/// root, or the directory's root), is not queued again. Constant time a request: 12,000 stores
/// appearing at once queue 12,000 walks, and a search of the queue for each was quadratic on the
/// daemon's loop.
#[derive(Default)]
pub(super) struct WalkQueue {
    pub(super) jobs: std::collections::VecDeque<WalkJob>,
    pub(super) queued: std::collections::HashSet<WalkJob>,
}

impl WalkQueue {
    pub(super) fn push(&mut self, job: WalkJob) {
        let all = [WalkJob::All { reconcile: false }, WalkJob::All { reconcile: true }];
        let covered = self.queued.contains(&job)
            || all.iter().any(|a| self.queued.contains(a))
            || matches!(&job, WalkJob::Dir { root, .. } if self.queued.contains(&WalkJob::Root(*root)));
        if covered {
            return;
        }
        if matches!(job, WalkJob::All { .. }) {
            self.clear();
        }
        self.queued.insert(job.clone());
        self.jobs.push_back(job);
    }

    pub(super) fn pop(&mut self) -> Option<WalkJob> {
        let job = self.jobs.pop_front()?;
        self.queued.remove(&job);
        Some(job)
    }

    pub(super) fn clear(&mut self) {
        self.jobs.clear();
        self.queued.clear();
    }
}

pub(super) enum Work {
    Walk(WalkJob),
    Sweep(Job),
}

pub(super) enum Done {
    Walked(WalkJob, Walked),
    /// With the reason it decided nothing, when the watch did not let it (see
    /// `shuffle_janitor_sweeps_postponed_total`).
    Swept(Job, Report, u64, Option<&'static str>),
}

pub(super) struct Running {
    pub(super) sweep: Option<Job>,
    /// Some filesystem was at or above the high watermark when it started, so it evicts.
    pub(super) evicts: bool,
    pub(super) handle: JoinHandle<Done>,
}

impl Daemon {
    /// Requests a sweep: started now, or folded into the follow-up. Pressure does not wait for
    /// a sweep that started below the high watermark: that one is cancelled (at a unit
    /// boundary) so eviction starts at once.
    pub(super) fn request(&mut self, job: Job) {
        if let Some(running) = &self.running
            && job.trigger == Trigger::Pressure
            && running.sweep.is_some_and(|s| s.mode != SweepMode::Purge)
            && !running.evicts
        {
            info!("pressure pre-empts the sweep in hand");
            self.cancel.store(true, Ordering::Relaxed);
        }
        self.pending = Some(self.pending.map_or(job, |p| p.merge(job)));
        self.next_job();
    }

    pub(super) fn walk(&mut self, job: WalkJob) {
        self.walks.push(job);
        self.next_job();
    }

    /// Starts the next job if none is running: walks first (sweeps decide from what they
    /// load), then the pending sweep.
    pub(super) fn next_job(&mut self) {
        if self.running.is_some() {
            return;
        }
        if let Some(job) = self.walks.pop() {
            return self.launch(Work::Walk(job));
        }
        if let Some(job) = self.pending.take() {
            self.launch(Work::Sweep(job));
        }
    }

    pub(super) fn launch(&mut self, work: Work) {
        self.cancel.store(false, Ordering::Relaxed);
        let cfg = self.cfg.clone();
        let index = self.index.clone();
        let roots = self.roots.clone();
        let watch = self.watch.clone();
        let cancel = self.cancel.clone();
        self.metrics.health.job_started(match work {
            Work::Walk(_) => health::JobKind::Walk,
            Work::Sweep(_) => health::JobKind::Sweep,
        });
        match work {
            Work::Walk(job) => {
                let numbers: Vec<u32> = self.present.iter().map(|(n, _)| *n).collect();
                let handle = tokio::task::spawn_blocking(move || {
                    lower_priority();
                    let ctx = WalkCtx {
                        watch: watch.as_deref(),
                        index: &index,
                        roots: &roots,
                        basis: &cfg.age_basis,
                        reconcile: matches!(job, WalkJob::All { reconcile: true }),
                        before_store: None,
                    };
                    let mut walked = run_walk(&ctx, &job, &numbers);
                    if let Some(w) = &watch {
                        for id in &walked.gone {
                            w.forget_store(*id);
                        }
                    }
                    if matches!(job, WalkJob::All { .. }) {
                        walk::drop_unseen(&ctx, &mut walked);
                    }
                    give_back_memory();
                    Done::Walked(job, walked)
                });
                self.running = Some(Running {
                    sweep: None,
                    evicts: false,
                    handle,
                });
            }
            Work::Sweep(job) => {
                debug!(
                    trigger = job.trigger.as_str(),
                    purge = job.mode == SweepMode::Purge,
                    "sweep starting"
                );
                let evicts = self.pressure.any_above();
                let (now, step) = self.clock.read(now_nanos(), std::time::Instant::now(), cfg.max_age);
                if let Some(step) = step {
                    self.clock_step(step);
                }
                let present = self.present.clone();
                let last_unfreed = self.last_unfreed;
                let postponed = self.postponed;
                let handle = tokio::task::spawn_blocking(move || {
                    lower_priority();
                    // Events the watch loses from now on (an overflow, a watch lost) may be of
                    // files this sweep would judge: it decides nothing on what lost them.
                    let fence = index.lock().unwrap_or_else(|e| e.into_inner()).fence();
                    // Stores that are not watched are read again, as a walking sweep would: a
                    // sweep never decides on an old listing of a store nothing kept current.
                    let ctx = WalkCtx {
                        watch: watch.as_deref(),
                        index: &index,
                        roots: &roots,
                        basis: &cfg.age_basis,
                        reconcile: false,
                        before_store: None,
                    };
                    let reread = walk::reread_unwatched(&ctx);
                    if let Some(w) = &watch {
                        for id in reread.gone {
                            w.forget_store(id);
                        }
                    }
                    // Decide on everything that happened before the sweep started. A watch that
                    // cannot catch up with its queue in time holds opens not applied yet: the
                    // TTL waits for the next interval; pressure cannot wait, and goes on (its
                    // floor and order are the timestamps', and open files are checked).
                    // After a few postponements in a row, the events suffice (see Watch::settle):
                    // no backlog of units to stat again may hold the sweeps back for good.
                    let settled = watch
                        .as_ref()
                        .is_none_or(|w| w.settle(Duration::from_millis(500), postponed < MAX_POSTPONED));
                    if postponed >= MAX_POSTPONED && settled {
                        warn!(
                            postponed,
                            "sweep goes on although units wait to be stat'ed again: every event is applied, and a \
                             deletion judges each unit again on fresh stats"
                        );
                    }
                    // Directories that appeared before the sweep and that the walking thread
                    // has not read yet (a sweep can start before that walk): read them now.
                    if let Some(w) = &watch {
                        for (root, rel, role) in w.take_new_dirs() {
                            let known = role == crate::spark::DirRole::Store
                                && index
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .find(root, &rel)
                                    .is_some();
                            if !known {
                                walk::walk(&ctx, root, Some((&rel, role)));
                            }
                        }
                        w.settle(Duration::from_millis(100), true);
                    }
                    // A settled watch may be a new instance after an overflow, whose queue is
                    // empty because it watches nothing yet.
                    let lost = index.lock().unwrap_or_else(|e| e.into_inner()).lost_since(fence, None) == Lost::All;
                    if lost || (!settled && job.trigger != Trigger::Pressure) {
                        let why = if lost {
                            "the watch lost events (it runs again after the walk that follows)"
                        } else {
                            "the watch has not caught up with its events"
                        };
                        info!(trigger = job.trigger.as_str(), "sweep postponed: {why}");
                        let mut report = crate::report::Report::new(false, job.mode == SweepMode::Purge, now);
                        report.cancelled = true;
                        let reason = if lost { "events_lost" } else { "watch_behind" };
                        return Done::Swept(job, report, last_unfreed, Some(reason));
                    }
                    let opts = sweep::Options {
                        mode: job.mode,
                        dry_run: false,
                        list_files: false,
                        listing: None,
                        opens: None,
                        now: Some(now),
                    };
                    let mut report = match &watch {
                        Some(w) => sweep::indexed::run_watched(&cfg, &present, &index, &opts, &cancel, fence, &**w),
                        None => sweep::indexed::run_indexed(&cfg, &present, &index, &opts, &cancel, Some(fence)),
                    };
                    // Stopped by itself, not asked to: the watch lost events, or stayed too far
                    // behind them to vouch for the index.
                    let postponed = if !report.cancelled {
                        None
                    } else if index.lock().unwrap_or_else(|e| e.into_inner()).lost_since(fence, None) == Lost::All {
                        Some("events_lost")
                    } else {
                        (!cancel.load(Ordering::Relaxed)).then_some("watch_behind")
                    };
                    // Dead stores go at the interval (and on request), not in the rush of pressure.
                    if job.trigger != Trigger::Pressure && !report.cancelled {
                        for id in sweep::reap::reap_from_index(&cfg, &present, &index, &opts, &mut report) {
                            if let Some(w) = &watch {
                                w.forget_store(id);
                            }
                        }
                    }
                    let unfreed = if report.deleted_total().files > 0 || last_unfreed > 0 {
                        let paths: Vec<PathBuf> = present.iter().map(|(_, r)| r.path.clone()).collect();
                        open_files::unfreed_bytes(Path::new("/proc"), &paths)
                    } else {
                        0
                    };
                    give_back_memory();
                    Done::Swept(job, report, unfreed, postponed)
                });
                self.running = Some(Running {
                    sweep: Some(job),
                    evicts,
                    handle,
                });
            }
        }
    }

    pub(super) fn finished(&mut self, done: Done) {
        match done {
            Done::Walked(job, walked) => self.walked(job, walked),
            Done::Swept(job, report, unfreed, postponed) => {
                if let Some(reason) = postponed {
                    self.metrics.sweeps_postponed.with_label_values(&[reason]).inc();
                }
                self.postponed = if postponed == Some("watch_behind") {
                    self.postponed.saturating_add(1)
                } else {
                    0
                };
                self.swept(job, &report, unfreed)
            }
        }
    }
}

/// Runs one walk job.
pub(super) fn run_walk(ctx: &WalkCtx, job: &WalkJob, present: &[u32]) -> Walked {
    let mut out = Walked::default();
    match job {
        WalkJob::All { .. } => {
            for &n in present {
                let w = walk::walk(ctx, n, None);
                out.stores += w.stores;
                out.files += w.files;
                out.unwatched_layout.extend(w.unwatched_layout);
                out.errors.extend(w.errors);
                out.seen.extend(w.seen);
                out.drift.add(w.drift);
            }
        }
        WalkJob::Root(n) => out = walk::walk(ctx, *n, None),
        WalkJob::Dir { root, rel, role } => out = walk::walk(ctx, *root, Some((rel, *role))),
    }
    out
}
