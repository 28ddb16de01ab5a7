//! One sweep: resolve the roots, then for each filesystem (in parallel) walk its roots to find
//! the block stores, read and judge each store on a worker thread, delete its TTL units at
//! once, and finally let pressure take the least recently used of the rest. Used by `sweep`,
//! `report` and the daemon.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use crate::config::{self, Config};
use crate::disk::{self, Mounts};
use crate::open_files::OpenFiles;
use crate::opens::OpenLog;
use crate::policy::{self, Grouping, Mode, Nanos, Planner, Reason, Rules, Skip, UnitFacts, Verdict};
use crate::report::{Candidate, FsReport, Inventory, Op, Report, RootReport, Tally};
use crate::scan::{self, Visitor};
use crate::spark::Kind;
use crate::store_dir::{self, Failure, Listing, Names, StoreDir, StoreFile};

/// How to run a sweep (the config says the rest).
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Decide and report, delete nothing (also when the config says `dry_run`).
    pub dry_run: bool,
    /// Keep every deleted file in [`Report::candidates`] (costs memory per file).
    pub list_files: bool,
    /// Opens seen by the daemon's watch: they count as use, whatever atime says.
    pub opens: Option<Arc<OpenLog>>,
}

/// A root as resolved for this sweep.
#[derive(Clone, Debug)]
struct Root {
    /// Canonical: every open starts here.
    path: PathBuf,
    dev: u64,
    /// The path as configured (or as its glob expanded), when a symlink made it differ from
    /// `path`: `protect` globs are written against it, so they are matched below both.
    given: Option<PathBuf>,
    /// A `protect` glob matches the root or a directory above it: nothing below may go.
    protected: bool,
}

impl Root {
    /// The root's names that `protect` globs may be written against.
    fn names(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.path.as_path()).chain(self.given.as_deref())
    }
}

/// What every thread of one sweep shares.
struct Ctx<'a> {
    cfg: &'a Config,
    dry_run: bool,
    purge: bool,
    list_files: bool,
    opens: Option<&'a OpenLog>,
    now: Nanos,
    roots: &'a [Root],
    open: Option<&'a OpenFiles>,
    /// `skip_open_files` is on but `/proc` could not be read: every unit counts as open.
    open_unknown: bool,
    cancel: &'a AtomicBool,
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

/// Runs one sweep. `cancel` is checked between units; a cancelled sweep reports what it did.
pub fn run(cfg: &Config, opts: &Options, cancel: &AtomicBool) -> Report {
    let started = Instant::now();
    let now = policy::nanos(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default());
    let dry_run = opts.dry_run || cfg.dry_run;
    let mut report = Report::new(dry_run, opts.mode == Mode::Purge, now);
    let mounts = Mounts::read().unwrap_or_else(|e| {
        warn!(error = %e, "cannot read /proc/self/mountinfo; filesystems are named by device");
        Mounts::default()
    });
    let roots = present_roots(cfg, &mounts, &mut report);

    // Roots grouped by filesystem: pressure is per filesystem, and filesystems are swept in
    // parallel (different disks).
    let mut by_dev: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, r) in roots.iter().enumerate() {
        by_dev.entry(r.dev).or_default().push(i);
    }
    let open = if cfg.skip_open_files && !by_dev.is_empty() {
        let devs: Vec<u64> = by_dev.keys().copied().collect();
        match OpenFiles::scan(Path::new("/proc"), &devs) {
            Ok(open) => {
                // The daemon sweeps every few minutes: say it when the number changes, not each time.
                static LAST_UNREADABLE: AtomicUsize = AtomicUsize::new(0);
                if open.unreadable > 0 && LAST_UNREADABLE.swap(open.unreadable, Ordering::Relaxed) != open.unreadable {
                    warn!(
                        processes = open.unreadable,
                        "cannot read the open files of some processes (needs CAP_SYS_PTRACE); files they \
                         hold open may be deleted (their space returns when they close them)"
                    );
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
        opens: opts.opens.as_deref(),
        now,
        roots: &roots,
        open: open.as_ref(),
        open_unknown: cfg.skip_open_files && open.is_none(),
        cancel,
    };
    // Reading a store is mostly syscalls that run in parallel in the kernel: a few workers per
    // filesystem (one walks, the others read and delete).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
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
    report.duration_seconds = started.elapsed().as_secs_f64();
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

/// What became of one configured root (or one path its glob expanded to) this time.
#[derive(Clone, Debug)]
pub enum RootStatus {
    /// A directory on device `dev` (canonical path; duplicates dropped), found as `given`.
    Present { path: PathBuf, dev: u64, given: PathBuf },
    /// Does not exist (yet): disks are mounted late.
    Missing(PathBuf),
    /// Refused or unreadable, with the operation to count and why.
    Problem { path: PathBuf, op: Op, why: String },
}

/// Expands globs and checks each root. Touches the filesystem, logs nothing.
pub fn resolve_roots(cfg: &Config) -> Vec<RootStatus> {
    let mut out: Vec<RootStatus> = Vec::new();
    for pattern in &cfg.roots {
        let paths: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
            match glob::glob(pattern) {
                Ok(paths) => paths.filter_map(Result::ok).collect(),
                Err(e) => {
                    out.push(RootStatus::Problem {
                        path: pattern.into(),
                        op: Op::Config,
                        why: e.to_string(),
                    });
                    continue;
                }
            }
        } else {
            vec![PathBuf::from(pattern)]
        };
        if paths.is_empty() {
            out.push(RootStatus::Missing(pattern.into()));
        }
        for path in paths {
            if let Err(problem) = config::check_root_path(&path) {
                out.push(RootStatus::Problem {
                    path,
                    op: Op::Config,
                    why: format!("it {problem}"),
                });
                continue;
            }
            // The root itself may be a symlink (the operator's choice); nothing below it is followed.
            let status = match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => match std::fs::canonicalize(&path) {
                    // A symlink into a system directory is refused like the directory itself.
                    Ok(canonical) => match config::check_root_path(&canonical) {
                        Ok(()) => RootStatus::Present {
                            path: canonical,
                            dev: m.dev(),
                            given: path,
                        },
                        Err(problem) => RootStatus::Problem {
                            why: format!("it resolves to {}, which {problem}", canonical.display()),
                            path,
                            op: Op::Config,
                        },
                    },
                    Err(e) => RootStatus::Problem {
                        path,
                        op: Op::Stat,
                        why: e.to_string(),
                    },
                },
                Ok(_) => RootStatus::Problem {
                    path,
                    op: Op::Walk,
                    why: "it is not a directory".into(),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => RootStatus::Missing(path),
                Err(e) => RootStatus::Problem {
                    path,
                    op: Op::Stat,
                    why: e.to_string(),
                },
            };
            let duplicate = matches!(&status, RootStatus::Present { path, .. }
                if out.iter().any(|o| matches!(o, RootStatus::Present { path: p, .. } if p == path)));
            if !duplicate {
                out.push(status);
            }
        }
    }
    out
}

/// Resolves the roots, logs and records each in the report, and returns those present.
fn present_roots(cfg: &Config, mounts: &Mounts, report: &mut Report) -> Vec<Root> {
    let mut roots = Vec::new();
    for status in resolve_roots(cfg) {
        match status {
            RootStatus::Present { path, dev, given } => {
                let mp = mount_point(mounts, &path, dev);
                report.roots.push(RootReport::new(path.clone(), true, Some(mp)));
                let given = (given != path).then_some(given);
                let protected = !cfg.protect.is_empty()
                    && std::iter::once(&path)
                        .chain(&given)
                        .any(|p| p.ancestors().any(|a| cfg.protect.matches(a)));
                if protected {
                    info!(root = %path.display(), "root is protected: nothing below it is deleted");
                }
                roots.push(Root {
                    path,
                    dev,
                    given,
                    protected,
                });
            }
            RootStatus::Missing(path) => {
                info!(root = %path.display(), "root does not exist (yet); looking again next sweep");
                report.roots.push(RootReport::new(path, false, None));
            }
            RootStatus::Problem { path, op, why } => {
                warn!(root = %path.display(), "root skipped: {why}");
                report.error(op);
            }
        }
    }
    roots
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
            }
        }
        Err(e) => log_error(&mut walker.first_errors, &mut walker.report, Op::Statvfs, probe, &e),
    }

    let mut done = walk_pass(ctx, root_indices, workers, &mut walker, || Worker::new(ctx, need, None));

    // One worker takes over the others' planners and lets pressure choose.
    let mut main = done.pop().expect("at least one worker");
    for w in done {
        main.report.merge(w.report);
        main.planner.absorb(w.planner);
    }
    main.report.merge(walker.report);
    let (mut report, evict) = main.pressure(fs);
    if let Some(evict) = evict.filter(|_| !ctx.cancelled()) {
        // The second pass counts only what it deletes (and fails to): the first counted the rest.
        let mut quiet = Walker::new(ctx);
        for w in walk_pass(ctx, root_indices, workers, &mut quiet, || {
            Worker::new(ctx, None, Some(&evict))
        }) {
            report.merge(w.report);
        }
    }
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
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (rx, worker) = (&rx, &worker);
                s.spawn(move || worker().drain(rx))
            })
            .collect();
        let all: Vec<PathBuf> = ctx.roots.iter().map(|r| r.path.clone()).collect();
        for &i in root_indices {
            let root = &ctx.roots[i].path;
            let nested: Vec<PathBuf> = all.iter().filter(|p| *p != root).cloned().collect();
            if scan::walk_root(root, i, &nested, walker).is_break() {
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

/// What pressure chose, for the second pass: every eligible unit last used before `before`, and
/// `ties` of those last used exactly then.
struct Evict {
    before: Nanos,
    ties: AtomicUsize,
    reason: Reason,
}

impl Evict {
    fn takes(&self, last_use: Nanos) -> bool {
        last_use < self.before
            || (last_use == self.before
                && self
                    .ties
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok())
    }
}

/// The walking thread: hands stores to the workers.
struct Walker<'a> {
    tx: Option<SyncSender<(usize, PathBuf)>>,
    report: Report,
    first_errors: Vec<Op>,
    cancel: &'a AtomicBool,
}

impl<'a> Walker<'a> {
    fn new(ctx: &Ctx<'a>) -> Self {
        Walker {
            tx: None,
            report: ctx.report(),
            first_errors: Vec::new(),
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

    fn error(&mut self, path: &Path, error: &io::Error) {
        log_error(&mut self.first_errors, &mut self.report, Op::Walk, path, error);
    }
}

/// Counts an error; logs the first of each operation (per thread) at warn with its path.
fn log_error(first: &mut Vec<Op>, report: &mut Report, op: Op, path: &Path, e: &dyn std::fmt::Display) {
    report.error(op);
    if first.contains(&op) {
        debug!(op = op.as_str(), path = %path.display(), error = %e, "error");
    } else {
        first.push(op);
        warn!(op = op.as_str(), path = %path.display(), error = %e, "error (further ones of this kind at debug)");
    }
}

/// A unit waiting for pressure's decision: its root and last use (its files are found again
/// by the second pass).
#[derive(Clone, Copy, Debug)]
struct Pooled {
    root: usize,
    last_use: Nanos,
}

/// The store whose units are being judged, as deletion and logging need it.
#[derive(Debug)]
struct StoreMeta<'l> {
    root: usize,
    rel: &'l Path,
    subdirs: &'l [Box<str>],
    names: &'l Names,
}

/// Reads, judges and deletes in stores, on one thread.
struct Worker<'a> {
    ctx: &'a Ctx<'a>,
    report: Report,
    planner: Planner<Pooled>,
    /// The second pass under pressure: delete what pressure chose, count nothing else.
    evict: Option<&'a Evict>,
    first_errors: Vec<Op>,
    /// getdents' buffer, reused for every directory.
    buf: Vec<u8>,
    /// The last store's listing and grouping: their buffers are reused for the next store.
    listing: Listing,
    grouping: Grouping<StoreFile>,
}

impl<'a> Worker<'a> {
    fn new(ctx: &'a Ctx<'a>, need: Option<(u64, Reason)>, evict: Option<&'a Evict>) -> Self {
        Worker {
            ctx,
            report: ctx.report(),
            planner: Planner::new(rules(ctx.cfg), ctx.now, need),
            evict,
            first_errors: Vec::new(),
            buf: Vec::new(),
            listing: Listing::default(),
            grouping: Grouping::default(),
        }
    }

    fn drain(mut self, rx: &Mutex<Receiver<(usize, PathBuf)>>) -> Self {
        loop {
            let job = rx.lock().expect("queue poisoned").recv();
            match job {
                Ok((root, rel)) if !self.ctx.cancelled() => self.store(root, rel),
                Ok(_) => {} // cancelled: let the walker's queue drain
                Err(_) => return self,
            }
        }
    }

    fn error(&mut self, op: Op, path: &Path, e: &dyn std::fmt::Display) {
        log_error(&mut self.first_errors, &mut self.report, op, path, e);
    }

    /// Records a kept unit of a deletable kind for the root's oldest-kept age.
    fn kept(&mut self, root: usize, last_use: Nanos) {
        let root = &mut self.report.roots[root];
        root.oldest_kept_last_use = Some(root.oldest_kept_last_use.map_or(last_use, |o| o.min(last_use)));
    }

    /// Whether a protect glob matches a directory below `root` on the way to `rel`, under any
    /// of the root's names (the root and those above it are [`Root::protected`]).
    fn protected_dir(&self, root: &Root, rel: &Path) -> bool {
        let protect = &self.ctx.cfg.protect;
        root.names().any(|name| {
            let mut p = name.to_path_buf();
            rel.components().any(|c| {
                p.push(c);
                protect.matches(&p)
            })
        })
    }

    /// Whether a protect glob matches `rel` below `root`, under any of the root's names.
    fn protected_path(&self, root: &Root, rel: &Path) -> bool {
        root.names().any(|name| self.ctx.cfg.protect.matches(&name.join(rel)))
    }

    /// Reads one store, judges its units, deletes the TTL ones and pools the rest for pressure.
    fn store(&mut self, root: usize, rel: PathBuf) {
        let ctx = self.ctx;
        // The second pass under pressure counts only what it deletes: the first counted the rest.
        let first_pass = self.evict.is_none();
        let root_path = &ctx.roots[root].path;
        let mut dir = match StoreDir::open(root_path, &rel, ctx.roots[root].dev) {
            Ok(d) => d,
            Err(_) if !first_pass => return,
            // Replaced by a symlink, moved to another filesystem or gone since the walk saw it.
            Err(e) if store_dir::open_failure_is_change(&e) => return self.report.skip(Skip::Unknown, 1),
            Err(e) => return self.error(Op::Walk, &root_path.join(&rel), &e),
        };
        let mut listing = std::mem::take(&mut self.listing);
        dir.read(&mut self.buf, &mut listing);
        if first_pass {
            self.report.skip(Skip::Unknown, listing.unknown);
            for (failure, sub, e) in &listing.errors {
                let op = if *failure == Failure::Stat { Op::Stat } else { Op::Walk };
                self.error(op, &root_path.join(&rel).join(sub), e);
            }
            self.inventory(root, &listing.files);
        }
        let mut grouping = std::mem::take(&mut self.grouping);
        grouping.group(&listing.files, |f| f.stem(&listing.names), StoreFile::stem_hash);
        let store = StoreMeta {
            root,
            rel: &rel,
            subdirs: &listing.subdirs,
            names: &listing.names,
        };
        self.judge_units(&store, &mut dir, &grouping);
        self.listing = listing;
        self.grouping = grouping;
    }

    /// Judges the units of one store (grouped in `grouping`): deletes the TTL ones and pools
    /// the rest for pressure, or in the second pass deletes those pressure chose.
    fn judge_units(&mut self, store: &StoreMeta, dir: &mut StoreDir, grouping: &Grouping<StoreFile>) {
        let ctx = self.ctx;
        let root = store.root;
        let root_meta = &ctx.roots[root];
        let store_path = root_meta.path.join(store.rel);
        let protect_on = !ctx.cfg.protect.is_empty();
        let store_protected = protect_on && (root_meta.protected || self.protected_dir(root_meta, store.rel));
        let subdir_protected: Vec<bool> = store
            .subdirs
            .iter()
            .map(|d| protect_on && !store_protected && self.protected_path(root_meta, &store.rel.join(&**d)))
            .collect();
        let basis = &ctx.cfg.age_basis;
        let evict_rules = self.evict.map(|_| rules(ctx.cfg));
        for range in grouping.units.iter().cloned() {
            if ctx.cancelled() {
                return;
            }
            let unit = &grouping.files[range];
            let mut facts = UnitFacts {
                kind: unit[0].kind,
                last_use: Nanos::MIN,
                bytes: 0,
                protected: store_protected,
                open: ctx.open_unknown,
            };
            for f in unit {
                facts.last_use = facts.last_use.max(f.stat.last_use(basis));
                facts.bytes += f.stat.alloc;
                facts.protected |= subdir_protected[f.subdir as usize]
                    || (protect_on && self.protected_path(root_meta, &file_rel(store, f)));
                facts.open |= ctx.open.is_some_and(|o| o.contains(f.stat.dev, f.stat.ino));
            }
            if let Some(opened) = ctx
                .opens
                .and_then(|o| o.last_open(&store_path, unit[0].stem(store.names)))
            {
                facts.last_use = facts.last_use.max(opened);
            }
            if let (Some(evict), Some(rules)) = (self.evict, &evict_rules) {
                // Judged again at the same *now*: a unit used since the first pass is no
                // longer eligible and stays.
                let eligible = policy::judge(&facts, rules, ctx.now) == Verdict::Eligible;
                if eligible
                    && evict.takes(facts.last_use)
                    && self.delete(store, dir, unit, &facts, evict.reason).is_none()
                {
                    self.kept(root, facts.last_use);
                }
                continue;
            }
            let pooled = || Pooled {
                root,
                last_use: facts.last_use,
            };
            match self.planner.offer(&facts, pooled) {
                Verdict::Delete(reason) => match self.delete(store, dir, unit, &facts, reason) {
                    Some(freed) => self.planner.freed(freed),
                    None => self.kept(root, facts.last_use),
                },
                Verdict::Keep(why) => {
                    self.report.skip(why, unit.len() as u64);
                    // A protected unit is not deletable: it must not age the root's oldest.
                    if why != Skip::Protected {
                        self.kept(root, facts.last_use);
                    }
                }
                Verdict::Eligible if !self.planner.under_pressure() => self.kept(root, facts.last_use),
                Verdict::Eligible | Verdict::Exempt => {}
            }
        }
    }

    /// Counts a store's files in its root's inventory (what was there before anything was
    /// deleted). Summed per kind in an array first: a map lookup per file costs more.
    fn inventory(&mut self, root: usize, files: &[StoreFile]) {
        let mut kinds: [Inventory; Kind::ALL.len()] = Default::default();
        for f in files {
            kinds[f.kind as usize].add(f.stat.size, f.stat.last_use(&self.ctx.cfg.age_basis), self.ctx.now);
        }
        let inventory = &mut self.report.roots[root].kinds;
        for (kind, inv) in Kind::ALL.into_iter().zip(kinds).filter(|(_, inv)| inv.files > 0) {
            inventory.entry(kind).or_default().merge(&inv);
        }
    }

    /// Lets pressure choose among the pooled units, least recently used first: returns the
    /// report so far and what the second pass is to delete.
    fn pressure(mut self, mut fs: FsReport) -> (Report, Option<Evict>) {
        let planner = std::mem::replace(&mut self.planner, Planner::new(rules(self.ctx.cfg), self.ctx.now, None));
        let selection = planner.finish();
        for unit in &selection.spared {
            self.kept(unit.root, unit.last_use);
        }
        // Chosen units come least recently used first: the last one is the newest to go.
        let evict = selection.chosen.last().map(|newest| Evict {
            before: newest.last_use,
            ties: AtomicUsize::new(
                selection
                    .chosen
                    .iter()
                    .filter(|u| u.last_use == newest.last_use)
                    .count(),
            ),
            reason: selection.reason.expect("chosen units have a reason"),
        });
        if let Some(sf) = selection.shortfall {
            warn!(
                mountpoint = %fs.mountpoint.display(),
                missing_bytes = sf.missing_bytes,
                young_bytes = sf.young_bytes,
                open_bytes = sf.open_bytes,
                protected_bytes = sf.protected_bytes,
                "cannot free enough: everything left is young, open or protected"
            );
            fs.shortfall = Some(sf);
        }
        self.report.filesystems.push(fs);
        (self.report, evict)
    }

    /// Deletes one unit of the store open as `dir` (or, in a dry run, lists it). Returns the
    /// allocated bytes freed, or `None` when the unit was kept (changed since it was judged, or
    /// an error).
    fn delete(
        &mut self,
        store: &StoreMeta,
        dir: &mut StoreDir,
        files: &[StoreFile],
        facts: &UnitFacts,
        reason: Reason,
    ) -> Option<u64> {
        let root = &self.ctx.roots[store.root].path;
        let age_seconds = (self.ctx.now.saturating_sub(facts.last_use).max(0) / 1_000_000_000) as u64;
        if self.ctx.dry_run {
            for f in files {
                self.deleted(root, store, f, reason, age_seconds);
            }
            return Some(facts.bytes);
        }
        // Opened since it was judged (the watch saw it; on a noatime disk the re-stat would not).
        let opened = self
            .ctx
            .opens
            .and_then(|o| o.last_open(&root.join(store.rel), files[0].stem(store.names)));
        if opened.is_some_and(|t| t > facts.last_use) {
            debug!(path = %file_path(root, store, &files[0]).display(), "unit opened since it was judged; kept");
            self.report.skip(Skip::Changed, files.len() as u64);
            return None;
        }
        let outcome = dir.delete_unit(
            store.subdirs,
            store.names,
            files,
            &self.ctx.cfg.age_basis,
            facts.last_use,
        );
        for (i, failure, e) in &outcome.errors {
            let op = match failure {
                Failure::Walk => Op::Walk,
                Failure::Stat => Op::Stat,
                Failure::Unlink => Op::Unlink,
            };
            self.error(op, &file_path(root, store, &files[*i]), e);
        }
        if outcome.changed {
            debug!(path = %file_path(root, store, &files[0]).display(), "unit changed since it was judged; kept");
            self.report.skip(Skip::Changed, files.len() as u64);
            return None;
        }
        if outcome.removed.is_empty() && !outcome.errors.is_empty() {
            return None;
        }
        if !outcome.errors.is_empty() {
            // Unlink failed after others of the unit went (checked beforehand, so rare).
            warn!(path = %file_path(root, store, &files[0]).display(), removed = outcome.removed.len(),
                  files = files.len(), "unit deleted only in part");
        }
        let mut freed = 0;
        for &i in &outcome.removed {
            freed += files[i].stat.alloc;
            self.deleted(root, store, &files[i], reason, age_seconds);
        }
        Some(freed)
    }

    fn deleted(&mut self, root: &Path, store: &StoreMeta, f: &StoreFile, reason: Reason, age_seconds: u64) {
        let t = Tally {
            files: 1,
            bytes: f.stat.size,
        };
        self.report
            .deleted
            .entry(reason)
            .or_default()
            .entry(f.kind)
            .or_default()
            .add(t);
        self.report.roots[store.root].deleted.entry(f.kind).or_default().add(t);
        if self.ctx.list_files || tracing::enabled!(tracing::Level::DEBUG) {
            let path = file_path(root, store, f);
            debug!(path = %path.display(), reason = reason.as_str(), age_seconds, dry_run = self.ctx.dry_run, "delete");
            if self.ctx.list_files {
                self.report.candidates.push(Candidate {
                    path,
                    bytes: f.stat.size,
                    kind: f.kind,
                    reason,
                    age_seconds,
                });
            }
        }
    }
}

fn file_path(root: &Path, store: &StoreMeta, f: &StoreFile) -> PathBuf {
    root.join(file_rel(store, f))
}

/// A file's path relative to its root.
fn file_rel(store: &StoreMeta, f: &StoreFile) -> PathBuf {
    let mut p = store.rel.join(&*store.subdirs[f.subdir as usize]);
    p.push(OsStr::from_bytes(f.name(store.names)));
    p
}
