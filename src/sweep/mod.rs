//! One sweep: resolve the roots, then for each filesystem (in parallel) walk its roots to find
//! the block stores, read and judge each store on a worker thread, delete its TTL units at
//! once, and finally let pressure take the least recently used of the rest. Used by `sweep`,
//! `report` and the daemon.
//!
//! - [`roots`]: the configured roots as they are now;
//! - [`worker`]: read, judge and delete in one store;
//! - [`indexed`]: the daemon's sweep, deciding from its index instead of a walk;
//! - [`stores`]: the empty stores a walk hands the reaper (both sides depend on it, it on neither);
//! - [`reap`]: judging and removing dead stores, for both kinds of sweep;
//! - [`record`]: what a sweep says in the log.
//!
//! The dependencies go one way: `indexed` and `worker` use `stores` and `crate::store_dir`
//! (the private names and their leftover age); `reap` uses `stores` and `indexed`.

pub mod indexed;
pub mod reap;
mod record;
pub mod roots;
pub mod stores;
mod worker;

use std::collections::BTreeMap;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use crate::config::Config;
use crate::disk::{self, Mounts};
use crate::fsx::DirError;
use crate::open_files::OpenFiles;
use crate::policy::{self, Mode, Nanos, Rules, Skip};
use crate::report::{FsReport, Listing, Op, Report, RootReport};
use crate::scan::{self, Visitor, WalkRoot};
use record::{FirstNotices, Recorder};
pub use roots::{Root, RootStatus, resolve_roots};
use worker::Worker;

/// How to run a sweep (the config says the rest).
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Decide and report, delete nothing (also when the config says `dry_run`).
    pub dry_run: bool,
    /// Keep every deleted file in [`Report::candidates`] (costs memory per file).
    pub list_files: bool,
    /// Hand every deleted file to this as it goes (flat memory: the CLI streams its lists).
    pub listing: Option<Arc<dyn Listing>>,
    /// Opens seen by the daemon's watch: they count as use, whatever atime says.
    pub opens: Option<Arc<dyn OpenSource>>,
    /// The clock the rules are applied at (`None`: now). Tests pin it.
    pub now: Option<Nanos>,
}

/// Opens a watch saw, for a walking sweep (the daemon's index keeps its own).
pub trait OpenSource: Send + Sync + std::fmt::Debug {
    /// The last open of unit `stem` in the store at `store` (an absolute path), if seen.
    fn last_open(&self, store: &Path, stem: &[u8]) -> Option<Nanos>;
}

/// The wall clock, as the rules see it.
pub fn now() -> Nanos {
    policy::nanos(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// What every thread of one sweep shares.
pub struct Ctx<'a> {
    cfg: &'a Config,
    dry_run: bool,
    purge: bool,
    list_files: bool,
    listing: Option<&'a dyn Listing>,
    opens: Option<&'a dyn OpenSource>,
    now: Nanos,
    roots: &'a [Root],
    open: Option<&'a OpenFiles>,
    /// `skip_open_files` is on but `/proc` could not be read: every unit counts as open.
    open_unknown: bool,
    cancel: &'a AtomicBool,
    first_errors: FirstNotices,
    /// The node's processes, read once when a store's liveness is judged.
    procs: std::sync::OnceLock<crate::procs::Procs>,
}

impl Ctx<'_> {
    /// An empty report whose roots are indexed like `roots`, so a store's root index finds its
    /// entry; reports of threads are merged by root path.
    fn report(&self) -> Report {
        Report {
            roots: self
                .roots
                .iter()
                .map(|r| RootReport::new(r.path.clone(), true, None))
                .collect(),
            ..Report::new(self.dry_run, self.purge, self.now)
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Looks at the wall clock at every sweep, stores to judge or not, so that a step is judged
/// against a baseline taken before it ([`crate::procs::note_clock`]). A record that cannot be
/// kept is said when stores are judged (they are not removed then).
pub fn look_at_the_clock(cfg: &Config) {
    if cfg.stores.reap {
        let _ = crate::procs::note_clock(cfg.state_dir.as_deref());
    }
}

/// Runs one sweep. `cancel` is checked between units; a cancelled sweep reports what it did.
pub fn run(cfg: &Config, opts: &Options, cancel: &AtomicBool) -> Report {
    let started = Instant::now();
    look_at_the_clock(cfg);
    let now = opts.now.unwrap_or_else(now);
    let dry_run = opts.dry_run || cfg.dry_run;
    let mut report = Report::new(dry_run, opts.mode == Mode::Purge, now);
    let mounts = Mounts::read().unwrap_or_else(|e| {
        warn!(error = %e, "cannot read /proc/self/mountinfo; filesystems are named by device");
        Mounts::default()
    });
    let roots = roots::present_roots(cfg, &mounts, &mut report);

    // Roots grouped by filesystem: pressure is per filesystem, and filesystems are swept in
    // parallel (different disks).
    let mut by_dev: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, r) in roots.iter().enumerate() {
        by_dev.entry(r.mount.dev).or_default().push(i);
    }
    let open = if cfg.skip_open_files && !by_dev.is_empty() {
        let devs: Vec<u64> = by_dev.keys().copied().collect();
        match OpenFiles::scan(Path::new("/proc"), &devs) {
            Ok(open) => {
                // The daemon sweeps every few minutes: say it when the number changes, not each time.
                static LAST_UNREADABLE: AtomicUsize = AtomicUsize::new(0);
                if open.unreadable > 0 && LAST_UNREADABLE.swap(open.unreadable, Ordering::Relaxed) != open.unreadable {
                    let ptrace = crate::procs::has_cap_sys_ptrace(Path::new("/proc"));
                    warn!(processes = open.unreadable, "{}", open.unreadable_warning(ptrace));
                }
                Some(open)
            }
            Err(e) => {
                // Unsure which files are open: keep them all rather than guess.
                warn!(error = %e, "cannot read /proc: keeping every unit as if open this sweep");
                None
            }
        }
    } else {
        None
    };
    report.open_files_unreadable = open.as_ref().map_or(0, |o| o.unreadable);
    let ctx = Ctx {
        cfg,
        dry_run,
        purge: opts.mode == Mode::Purge,
        list_files: opts.list_files,
        listing: opts.listing.as_deref(),
        opens: opts.opens.as_deref(),
        now,
        roots: &roots,
        open: open.as_ref(),
        open_unknown: cfg.skip_open_files && open.is_none(),
        cancel,
        first_errors: FirstNotices::default(),
        procs: std::sync::OnceLock::new(),
    };
    let workers = threads_per_filesystem(by_dev.len(), 1);
    let parts: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = by_dev
            .iter()
            .map(|(&dev, idx)| {
                let mountpoint = mount_point(&mounts, &roots[idx[0]].path, dev);
                let ctx = &ctx;
                s.spawn(move || sweep_filesystem(ctx, idx, opts.mode, mountpoint, workers))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a sweep thread panicked"))
            .collect()
    });
    for part in parts {
        report.merge(part);
    }
    report.cancelled |= cancel.load(Ordering::Relaxed);
    if let Some(j) = crate::journal::current() {
        j.flush();
    }
    report.duration_seconds = started.elapsed().as_secs_f64();
    reap::log(&report);
    let total = report.deleted_total();
    debug!(
        dry_run,
        purge = report.purge,
        deleted_files = total.files,
        deleted_bytes = total.bytes,
        errors = report.error_count(),
        skipped = report.skipped.values().sum::<u64>(),
        seconds = report.duration_seconds,
        "sweep done"
    );
    report
}

/// Threads that read and delete on one filesystem, besides the one that walks it. Reading a
/// store is CPU work that runs in parallel in the kernel, one thread a core would do; deleting is
/// bound by the latency of each rename and unlink, which wait on the filesystem's journal and the
/// disk most of the time. On 2 cores, deleting the stale half of 200,000 files on ext4 took half
/// the wall time on 8 threads as on 2, at the same CPU; a no-op sweep took the same (issue 24).
/// At most 8: each reading thread keeps its buffers for the next store (about 2 MiB with stores
/// of 10,000 files), and a node sweeps each of its disks at once. Fewer when the limit on open
/// files (after [`raise_fd_limit`]) would not hold `stores_each` stores open on each thread of
/// each of `filesystems` swept at once: a store that cannot be opened whole is kept and counted
/// as an error, which would make more threads free less.
pub fn threads_per_filesystem(filesystems: usize, stores_each: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = (cores * 4).clamp(4, 8);
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let each = (filesystems.max(1) as u64)
        .saturating_mul(stores_each.max(1) as u64)
        .saturating_mul(FDS_PER_STORE);
    let fit = limit.saturating_sub(FDS_RESERVED) / each;
    wanted.min(fit.max(1).try_into().unwrap_or(usize::MAX))
}

/// The fds a thread holds for a store it has open: the store's directory and write guard, up
/// to 128 `NN` directories (`spark.diskStore.subDirectories`) and the one being listed.
const FDS_PER_STORE: u64 = 132;
/// The fds left for the rest: the walk, the metrics listener and its clients, the control
/// socket, the journal, inotify, `/proc`.
const FDS_RESERVED: u64 = 512;

/// The soft limit on open files up to the hard one (at most 65536), for the daemon and `sweep`:
/// systemd's and a shell's default soft limit is 1024, each thread of a sweep holds a store's
/// sub-directories open (64 to 128 fds, up to 4 stores on a deleting thread of the daemon), and
/// the metrics listener must never take the fds a sweep needs.
pub fn raise_fd_limit() {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let want = lim.maximum.map_or(65536, |m| m.min(65536));
    if lim.current.is_some_and(|c| c < want) {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(want),
                maximum: lim.maximum,
            },
        );
    }
}

fn rules(cfg: &Config) -> Rules {
    Rules {
        max_age: cfg.max_age,
        min_age: cfg.min_age,
        kinds: cfg.kinds.clone(),
    }
}

/// The mount point holding `path`, or the path itself when the mount table does not say.
pub fn mount_point(mounts: &Mounts, path: &Path, dev: u64) -> PathBuf {
    mounts
        .find(path, dev)
        .map_or_else(|| path.to_owned(), |m| m.mount_point.clone())
}

/// Sweeps the roots of one filesystem: its usage decides the pressure; a walker finds stores and
/// `workers` threads read, judge and TTL-delete them, pooling only (root, last use, bytes) of
/// the units pressure may take; pressure then picks the least recently used of the pool, and a
/// second pass deletes the units it picked. Two passes instead of pooling every eligible unit's
/// files keep memory at a few bytes per unit, however many must go.
fn sweep_filesystem(ctx: &Ctx, root_indices: &[usize], mode: Mode, mountpoint: PathBuf, workers: usize) -> Report {
    let probe = &ctx.roots[root_indices[0]].path;
    let mut fs = FsReport {
        mountpoint,
        used_ratio: 0.0,
        need_bytes: 0,
        need_reason: None,
        shortfall: None,
    };
    let mut walker = Walker::new(ctx);
    let mut need = None;
    match disk::usage(probe) {
        Ok(usage) => {
            fs.used_ratio = usage.ratio();
            let wm = ctx.cfg.watermark;
            need = policy::pressure_need(usage, wm.high, wm.low, mode);
            if let Some((bytes, reason)) = need {
                info!(mountpoint = %fs.mountpoint.display(), used = usage.ratio(), need_bytes = bytes,
                      reason = reason.as_str(), "filesystem must shed load");
                fs.need_bytes = bytes;
                fs.need_reason = Some(reason);
            } else if mode == Mode::Purge {
                record::nothing_to_purge(&fs.mountpoint, usage.ratio(), wm.low);
            }
        }
        Err(e) => Recorder::new(&ctx.first_errors).error(&mut walker.report, Op::Statvfs, probe, &e),
    }

    let placing = (fs.mountpoint.clone(), fs.used_ratio);
    let mut done = walk_pass(ctx, root_indices, workers, &mut walker, || {
        let mut w = Worker::new(ctx, need, None);
        w.fs = Some(placing.clone());
        w
    });

    // One worker takes over the others' planners and lets pressure choose.
    let mut main = done.pop().expect("at least one worker");
    let mut reap = std::mem::take(&mut main.reap);
    for w in done {
        main.report.merge(w.report);
        main.planner.absorb(w.planner);
        reap.extend(w.reap);
    }
    main.report.merge(walker.report);
    let (mut report, evict) = main.pressure(fs);
    if let Some(evict) = evict.filter(|_| !ctx.cancelled()) {
        // The second pass counts only what it deletes (and fails to): the first counted the rest.
        let mut quiet = Walker::new(ctx);
        for w in walk_pass(ctx, root_indices, workers, &mut quiet, || {
            let mut w = Worker::new(ctx, None, Some(&evict));
            w.fs = Some(placing.clone());
            w
        }) {
            report.merge(w.report);
        }
    }
    if !reap.is_empty() && !ctx.cancelled() {
        let roots: Vec<&Root> = ctx.roots.iter().collect();
        let procs = reap::procs(&ctx.procs, ctx.cfg);
        let record = Recorder::new(&ctx.first_errors);
        reap::reap(
            ctx.cfg,
            &roots,
            reap,
            procs,
            ctx.now,
            ctx.dry_run,
            // Stores are few (not a list of files): their paths are kept for the summary.
            ctx.list_files || ctx.listing.is_some(),
            &mut report,
            &record,
            |_, _| {},
        );
    }
    report.stores_judged = true;
    report.cancelled |= ctx.cancelled();
    report
}

/// Walks the roots of one filesystem once: `walker` finds the stores and hands them to
/// `workers` threads made by `worker`, which read, judge and delete in them.
fn walk_pass<'a>(
    ctx: &Ctx,
    root_indices: &[usize],
    workers: usize,
    walker: &mut Walker,
    worker: impl Fn() -> Worker<'a> + Sync,
) -> Vec<Worker<'a>> {
    let (tx, rx) = sync_channel::<(usize, PathBuf)>(workers * 4);
    let rx = Mutex::new(rx);
    walker.tx = Some(tx);
    std::thread::scope(|s| {
        let (rx, worker) = (&rx, &worker);
        // The first worker as ever; no thread to be had for another (a cgroup's pids.max):
        // fewer workers, not a failed sweep.
        let mut handles = vec![s.spawn(move || worker().drain(rx))];
        handles.extend((1..workers).map_while(|n| {
            std::thread::Builder::new()
                .name(format!("sweep-{n}"))
                .spawn_scoped(s, move || worker().drain(rx))
                .ok()
        }));
        for &i in root_indices {
            let root = &ctx.roots[i];
            let walk_root = WalkRoot {
                path: &root.path,
                mount: root.mount,
                ino: Some(root.ino),
                role: root.role,
            };
            if scan::walk_root(&walk_root, i, walker).is_break() {
                break;
            }
        }
        walker.tx = None; // the workers finish what is queued, then stop
        handles
            .into_iter()
            .map(|h| h.join().expect("a sweep worker panicked"))
            .collect()
    })
}

/// The walking thread: hands stores to the workers.
struct Walker<'a> {
    tx: Option<SyncSender<(usize, PathBuf)>>,
    report: Report,
    record: Recorder<'a>,
    cancel: &'a AtomicBool,
}

impl<'a> Walker<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Self {
        Walker {
            tx: None,
            report: ctx.report(),
            record: Recorder::new(&ctx.first_errors),
            cancel: ctx.cancel,
        }
    }
}

impl Visitor for Walker<'_> {
    fn store(&mut self, root: usize, rel: PathBuf) -> ControlFlow<()> {
        let tx = self.tx.as_ref().expect("walking");
        if self.cancel.load(Ordering::Relaxed) || tx.send((root, rel)).is_err() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn unknown(&mut self) {
        self.report.skip(Skip::Unknown, 1);
    }

    fn skipped(&mut self, path: &Path, why: &DirError) {
        self.report.skip(Skip::Unknown, 1);
        self.record.skipped(path, why);
    }

    fn error(&mut self, path: &Path, error: &io::Error) {
        self.record.error(&mut self.report, Op::Walk, path, error);
    }
}
