//! A sweep that decides from the daemon's [`Index`] instead of reading directories: the same
//! rules and the same report as a walking sweep, but its only filesystem calls are statvfs and,
//! for each unit it chose, the checks of [`StoreDir::check_unit`] before the unlinks.
//!
//! Every chosen unit is judged again on the stats those checks read (and on the opens the watch
//! saw until that moment): the index can only make the sweep consider a unit, never delete one
//! the rules would keep now.
//!
//! Files: `mod.rs` (the sweep: contexts, selection, probes), `delete.rs` (deleting what was
//! selected).

mod delete;

use delete::{Placing, Run, delete_run};

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rustc_hash::FxHashMap;
use tracing::{debug, info};

use super::record::{FirstNotices, Recorder};
use super::{Options, Root, rules};
use crate::config::Config;
use crate::disk::{self, Mounts};
use crate::fsx::DirError;
use crate::index::{Fence, Index, Lost, StoreId, UnitStats, UnitView};
use crate::open_files::OpenFiles;
use crate::policy::{self, Mode, Nanos, Reason, Rules, Shortfall, Skip, UnitFacts, Verdict};
use crate::report::{Candidate, FsReport, Inventory, Op, Report, RootReport, Tally};
use crate::spark::Kind;
use crate::store_dir::{StoreDir, UnitFile};

/// A root as the indexed sweep sees it: its number in the index and what a sweep knows of it.
pub type IndexedRoot = (u32, Root);

/// A unit chosen to go (or, under pressure, a candidate), with what it was chosen on. Its
/// kind, root and protection are read again from the index when it is deleted. Small on
/// purpose: pressure's pool holds every unit of the filesystem, and a pool of fresh pages is
/// paid in page faults before the first deletion (at a million files, 48 bytes a unit made
/// 4,000 faults, 23-62 ms of the ~80 ms to the first deletion; 24 bytes halve them).
#[derive(Clone, Copy, Debug)]
struct Chosen {
    /// Its last use when chosen: a deletion goes on only if it is no newer.
    last_use: Nanos,
    store: StoreId,
    slot: u32,
    /// The hash of its stem: the slot is still this unit when its stem hashes the same (the
    /// pool carries no copy of each name). A unit that took the slot and hashes alike is
    /// judged on its own files, kind and protection when deleted, like the chosen one.
    stem: u32,
}

impl Chosen {
    /// Least recently used first; ties in the order the index lists units (store by store,
    /// slot by slot), as the walking sweep takes them in scan order.
    fn lru_order(&self) -> (Nanos, usize, u32) {
        (self.last_use, crate::index::slot_of(self.store), self.slot)
    }
}

/// What [`select`] chose and held back.
struct Selected {
    ttl: Vec<Chosen>,
    /// Under pressure: every unit the rules let pressure take, in index order.
    pool: Vec<Chosen>,
    /// What the pool's units free, as the index knows it.
    pool_bytes: u64,
    held: Shortfall,
    /// The root (in `Ctx::roots`) of each store judged (looked up once per unit spared by
    /// pressure: a cheap hash).
    roots: FxHashMap<StoreId, usize>,
}

struct Ctx<'a> {
    cfg: &'a Config,
    roots: &'a [IndexedRoot],
    index: &'a Mutex<Index>,
    rules: Rules,
    now: Nanos,
    dry_run: bool,
    list_files: bool,
    listing: Option<&'a dyn crate::report::Listing>,
    cancel: &'a AtomicBool,
    /// The index's losses when the sweep began (see [`Fence`]).
    fence: Option<Fence>,
    /// The watch lost events of every store since: nothing more is decided.
    abandoned: AtomicBool,
    open: Option<OpenFiles>,
    open_unknown: bool,
    first: FirstNotices,
    probe: Option<&'a Probe>,
    /// An operator's question (`plan`, `explain`), not a sweep: it warns of nothing, so that it
    /// takes no rate-limited warning's turn from the sweeps it previews.
    query: bool,
    /// What keeps the index current, asked before each deletion whether it is far behind.
    backlog: Option<&'a dyn Backlog>,
    /// The watch stayed behind its events: nothing more is decided.
    behind: AtomicBool,
}

/// What keeps the index current (the daemon's watch). Its events reach the index a little
/// after they happen; when it is far behind, its queue may end in an overflow that the index
/// does not show yet, and files created since (a unit's new checksum) are in no event at all.
pub trait Backlog: Sync {
    /// Waits up to `timeout` for the index to catch up; true when it may still be behind.
    fn behind(&self, timeout: std::time::Duration) -> bool;
}

/// How long a deletion waits for a watch far behind before the sweep stops.
const BEHIND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Ctx<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.decided_nothing()
    }

    /// The sweep stopped by itself because the index could not be trusted (the watch lost
    /// events, or stayed too far behind them): what it left undone says nothing about the
    /// filesystem, so it records no shortfall and the next sweep is not held back.
    fn decided_nothing(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed) || self.behind.load(Ordering::Relaxed)
    }

    /// What the index lost of store `id` since the sweep began. Lost events may have been
    /// files created in a unit the sweep would take: their store is not decided on (the next
    /// sweep reads it again first), and after an overflow no store is.
    fn lost(&self, index: &Index, id: StoreId) -> Lost {
        let Some(fence) = self.fence else { return Lost::Nothing };
        let lost = index.lost_since(fence, Some(id));
        if lost == Lost::All && !self.abandoned.swap(true, Ordering::Relaxed) {
            info!("sweep abandoned: the watch lost events after it began; it runs again after the walk that follows");
        }
        lost
    }

    fn root_of(&self, number: u32) -> Option<usize> {
        self.roots.iter().position(|(n, _)| *n == number)
    }
}

/// Runs one sweep from the index. The index must have been walked (and the watch must keep it
/// current); `roots` are the present roots with their index numbers. With `fence` (taken from
/// the index when the sweep began, before it read anything), no store that lost events since
/// is decided on: the report says `cancelled` when an overflow stopped it.
pub fn run_indexed(
    cfg: &Config,
    roots: &[IndexedRoot],
    index: &Mutex<Index>,
    opts: &Options,
    cancel: &AtomicBool,
    fence: Option<Fence>,
) -> Report {
    run(cfg, roots, index, opts, cancel, fence, None, false, None)
}

/// [`run_indexed`] with the index kept by `backlog` (the daemon's watch): before a unit is
/// deleted, the events that happened before its check on disk are in the index, or the sweep
/// stops (a watch too far behind, [`Backlog::behind`]) and keeps the unit.
pub fn run_watched(
    cfg: &Config,
    roots: &[IndexedRoot],
    index: &Mutex<Index>,
    opts: &Options,
    cancel: &AtomicBool,
    fence: Fence,
    backlog: &dyn Backlog,
) -> Report {
    run(cfg, roots, index, opts, cancel, Some(fence), None, false, Some(backlog))
}

/// [`run_indexed`], telling `probe` the verdict on each unit it asks about (`explain`: a dry
/// run whose answer is the sweep's own decision, not a second copy of the rules); `plan` asks with
/// no probe. A question, not a sweep: it logs no "cannot free enough".
pub fn run_probed(
    cfg: &Config,
    roots: &[IndexedRoot],
    index: &Mutex<Index>,
    opts: &Options,
    cancel: &AtomicBool,
    fence: Option<Fence>,
    probe: Option<&Probe>,
) -> Report {
    run(cfg, roots, index, opts, cancel, fence, probe, true, None)
}

/// `query`: an operator's question ([`run_probed`]), not a sweep.
#[allow(clippy::too_many_arguments)]
fn run(
    cfg: &Config,
    roots: &[IndexedRoot],
    index: &Mutex<Index>,
    opts: &Options,
    cancel: &AtomicBool,
    fence: Option<Fence>,
    probe: Option<&Probe>,
    query: bool,
    backlog: Option<&dyn Backlog>,
) -> Report {
    let started = Instant::now();
    super::look_at_the_clock(cfg);
    let now = opts.now.unwrap_or_else(super::now);
    let dry_run = opts.dry_run || cfg.dry_run;
    let purge = opts.mode == Mode::Purge;
    let mounts = Mounts::read().unwrap_or_default();
    let mut report = Report::new(dry_run, purge, now);
    report.roots = roots
        .iter()
        .map(|(_, r)| {
            let mp = mounts.find(&r.path, r.mount.dev).map(|m| m.mount_point.clone());
            RootReport::new(r.path.clone(), true, mp)
        })
        .collect();
    let mut ctx = Ctx {
        cfg,
        roots,
        index,
        rules: rules(cfg),
        now,
        dry_run,
        list_files: opts.list_files,
        listing: opts.listing.as_deref(),
        cancel,
        fence,
        abandoned: AtomicBool::new(false),
        open: None,
        open_unknown: false,
        first: FirstNotices::default(),
        probe,
        query,
        backlog,
        behind: AtomicBool::new(false),
    };
    if !dry_run {
        remove_leftovers(&ctx, &mut report);
    }
    let mut by_dev: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, (_, r)) in roots.iter().enumerate() {
        by_dev.entry(r.mount.dev).or_default().push(i);
    }
    for (dev, idx) in by_dev {
        let mountpoint = super::mount_point(&mounts, &roots[idx[0]].1.path, dev);
        sweep_filesystem(&mut ctx, &idx, opts.mode, mountpoint, &mut report);
        if ctx.cancelled() {
            break;
        }
    }
    report.open_files_unreadable = ctx.open.as_ref().map_or(0, |o| o.unreadable);
    report.cancelled = ctx.cancelled();
    if let Some(j) = crate::journal::current() {
        j.flush();
    }
    report.duration_seconds = started.elapsed().as_secs_f64();
    report
}

/// Removes the files a deletion that did not finish left under the private name (the process
/// was killed between a rename and its unlink), once they are old enough, as a walking sweep
/// does; the walk that read their store noted them.
fn remove_leftovers(ctx: &Ctx, report: &mut Report) {
    let old_enough = ctx.now.saturating_sub(crate::store_dir::LEFTOVER_AGE_NS);
    type Due = (StoreId, usize, PathBuf, Vec<(Box<str>, crate::store_dir::Leftover)>);
    let due: Vec<Due> = {
        let index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
        index
            .stores()
            .filter(|(_, s)| s.leftovers.iter().any(|(_, l)| l.stat.ctime <= old_enough))
            .filter_map(|(id, s)| {
                let r = ctx.roots.iter().position(|(n, _)| *n == s.root)?;
                Some((id, r, s.rel.clone(), s.leftovers.clone()))
            })
            .collect()
    };
    let record = Recorder::new(&ctx.first);
    for (id, r, rel, leftovers) in due {
        let root = &ctx.roots[r].1;
        let Ok(mut dir) = StoreDir::open_in(&root.path, Some(root.ino), &rel, root.mount) else {
            continue;
        };
        // The sub-directories by name, indexed as remove_leftover opens them.
        let mut subs: Vec<Box<str>> = Vec::new();
        for (sub, _) in &leftovers {
            if !subs.contains(sub) {
                subs.push(sub.clone());
            }
        }
        let mut kept = Vec::new();
        for (sub, l) in leftovers {
            if l.stat.ctime > old_enough {
                kept.push((sub, l));
                continue;
            }
            let path = root.path.join(&rel).join(&*sub).join(OsStr::from_bytes(&l.name));
            let at = subs.iter().position(|s| *s == sub).unwrap_or(0);
            let one = crate::store_dir::Leftover {
                subdir: u32::try_from(at).unwrap_or(0),
                ..l
            };
            match dir.remove_leftover(&subs, &one) {
                Ok(freed) => {
                    debug!(path = %path.display(), freed, "removed a file left by a deletion that did not finish");
                    report
                        .leftovers_removed
                        .add(crate::report::Tally { files: 1, bytes: freed });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    record.error(report, Op::Unlink, &path, &e);
                    kept.push((sub, one));
                }
            }
        }
        if let Some(s) = ctx.index.lock().unwrap_or_else(|e| e.into_inner()).store_mut(id) {
            s.leftovers = kept;
        }
    }
}

/// The open-file set, read once per sweep and only when something is to go.
fn open_files(ctx: &mut Ctx) {
    if !open_files_needed(ctx) {
        return;
    }
    let scanned = scan_open_files(ctx);
    set_open_files(ctx, scanned);
}

fn open_files_needed(ctx: &Ctx) -> bool {
    ctx.cfg.skip_open_files && ctx.open.is_none() && !ctx.open_unknown
}

fn scan_open_files(ctx: &Ctx) -> std::io::Result<OpenFiles> {
    let devs: Vec<u64> = ctx.roots.iter().map(|(_, r)| r.mount.dev).collect();
    OpenFiles::scan(Path::new("/proc"), &devs)
}

fn set_open_files(ctx: &mut Ctx, scanned: std::io::Result<OpenFiles>) {
    match scanned {
        Ok(o) => ctx.open = Some(o),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /proc: keeping every unit as if open this sweep");
            ctx.open_unknown = true;
        }
    }
}

fn sweep_filesystem(ctx: &mut Ctx, idx: &[usize], mode: Mode, mountpoint: PathBuf, report: &mut Report) {
    let probe = ctx.roots[idx[0]].1.path.clone();
    let mut fs = FsReport {
        mountpoint,
        used_ratio: 0.0,
        need_bytes: 0,
        need_reason: None,
        shortfall: None,
    };
    let mut need = None;
    match disk::usage(&probe) {
        Ok(usage) => {
            fs.used_ratio = usage.ratio();
            let wm = ctx.cfg.watermark;
            need = policy::pressure_need(usage, wm.high, wm.low, mode);
            if let Some((bytes, reason)) = need {
                // A question (`plan`, `explain`) only previews it: not news for the log.
                if ctx.query {
                    debug!(mountpoint = %fs.mountpoint.display(), used = usage.ratio(), need_bytes = bytes,
                           reason = reason.as_str(), "filesystem must shed load");
                } else {
                    info!(mountpoint = %fs.mountpoint.display(), used = usage.ratio(), need_bytes = bytes,
                          reason = reason.as_str(), "filesystem must shed load");
                }
                fs.need_bytes = bytes;
                fs.need_reason = Some(reason);
            } else if mode == Mode::Purge {
                super::record::nothing_to_purge(&fs.mountpoint, usage.ratio(), wm.low);
            }
        }
        Err(e) => Recorder::new(&ctx.first).error(report, Op::Statvfs, &probe, &e),
    }
    let started = std::time::Instant::now();
    let Selected {
        ttl,
        mut pool,
        pool_bytes,
        mut held,
        roots,
    } = if need.is_some() && open_files_needed(ctx) {
        // Under pressure the open files are read while the units are judged (on two cores
        // the first deletion comes sooner): they are needed before it anyway.
        let (selected, scanned) = std::thread::scope(|s| {
            let ctx_ref: &Ctx = ctx;
            let scan = std::thread::Builder::new()
                .name("open-files".into())
                .spawn_scoped(s, move || {
                    let t = std::time::Instant::now();
                    let scanned = scan_open_files(ctx_ref);
                    debug!(ms = t.elapsed().as_secs_f64() * 1000.0, "open files read");
                    scanned
                });
            let t = std::time::Instant::now();
            let selected = select(ctx_ref, idx, true, report);
            debug!(ms = t.elapsed().as_secs_f64() * 1000.0, "units of the index judged");
            let scanned = match scan {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("the open-file scan panicked"))),
                // No thread to be had (a cgroup's pids.max): read them here, after.
                Err(_) => scan_open_files(ctx_ref),
            };
            (selected, scanned)
        });
        set_open_files(ctx, scanned);
        selected
    } else {
        let selected = select(ctx, idx, need.is_some(), report);
        if !selected.ttl.is_empty() || !selected.pool.is_empty() {
            open_files(ctx);
        }
        selected
    };
    debug!(
        ttl = ttl.len(),
        pool = pool.len(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "units judged from the index"
    );
    let at = Placing {
        mountpoint: fs.mountpoint.clone(),
        used_before: fs.used_ratio,
    };
    let ttl_run = Run {
        units: &ttl,
        reason: Reason::Ttl,
        ranked_after: None,
        need: None,
    };
    let (mut freed, _) = delete_run(ctx, &ttl_run, &at, 0, &mut held, report);
    if ctx.cancelled() {
        return;
    }
    if let Some((need_bytes, reason)) = need {
        // Least recently used first (`Chosen::lru_order`). A pool can hold every unit of a
        // million files, and the first deletion waits for its order: only the oldest part is
        // ever needed at once, so the pool is partitioned (linear) at twice what the need takes
        // on average, that part sorted, and the rest only if it does not suffice.
        let avg = (pool_bytes / (pool.len() as u64).max(1)).max(1);
        let head = usize::try_from((need_bytes / avg).saturating_mul(2).saturating_add(1024))
            .unwrap_or(usize::MAX)
            .min(pool.len());
        if head < pool.len() {
            pool.select_nth_unstable_by_key(head, Chosen::lru_order);
        }
        pool[..head].sort_unstable_by_key(Chosen::lru_order);
        debug!(
            ms = started.elapsed().as_secs_f64() * 1000.0,
            head, "pressure's order made"
        );
        let run = Run {
            units: &pool[..head],
            reason,
            ranked_after: Some(0),
            need: Some(need_bytes),
        };
        let (f, taken) = delete_run(ctx, &run, &at, freed, &mut held, report);
        freed = f;
        let mut next = taken;
        if next == head && head < pool.len() && freed < need_bytes && !ctx.cancelled() {
            // The oldest part did not suffice (much was kept at its check): the rest too.
            pool[head..].sort_unstable_by_key(Chosen::lru_order);
            let run = Run {
                units: &pool[head..],
                reason,
                ranked_after: Some(head as u64),
                need: Some(need_bytes),
            };
            let (f, taken) = delete_run(ctx, &run, &at, freed, &mut held, report);
            freed = f;
            next += taken;
        }
        if ctx.decided_nothing() {
            // No shortfall to back off on: the sweep runs again.
            return;
        }
        // Spared: kept, and they age their roots' oldest.
        for c in &pool[next..] {
            if let Some(root) = roots.get(&c.store) {
                kept(report, *root, c.last_use);
            }
        }
        if freed < need_bytes {
            let sf = Shortfall {
                missing_bytes: need_bytes - freed,
                ..held
            };
            if !ctx.query {
                Recorder::new(&ctx.first).shortfall(&fs.mountpoint, &sf);
            }
            fs.shortfall = Some(sf);
        }
    } else {
        for c in &pool {
            if let Some(root) = roots.get(&c.store) {
                kept(report, *root, c.last_use);
            }
        }
    }
    report.filesystems.push(fs);
}

fn kept(report: &mut Report, root: usize, last_use: Nanos) {
    let r = &mut report.roots[root];
    r.oldest_kept_last_use = Some(r.oldest_kept_last_use.map_or(last_use, |o| o.min(last_use)));
}

/// Judges the units of the filesystem's stores from the index (under its lock, briefly per
/// store): counts what is kept, and returns the TTL's units, pressure's pool and what the rules
/// held back.
fn select(ctx: &Ctx, idx: &[usize], pressure: bool, report: &mut Report) -> Selected {
    let mut ttl = Vec::new();
    let mut pool = Vec::new();
    let mut pool_bytes = 0u64;
    let mut held = Shortfall::default();
    let mut roots = FxHashMap::default();
    let max_age_ago = ctx.now.saturating_sub(policy::nanos(ctx.cfg.max_age));
    let ids: Vec<StoreId> = {
        let index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<StoreId> = index
            .stores()
            .filter(|(_, s)| ctx.root_of(s.root).is_some_and(|r| idx.contains(&r)))
            .map(|(id, _)| id)
            .collect();
        if pressure {
            // Room for every unit at once: growing a pool of a million by doubling copies it.
            pool.reserve(
                ids.iter()
                    .filter_map(|id| index.store(*id))
                    .map(|s| s.unit_count())
                    .sum(),
            );
        }
        ids
    };
    let deletable: Vec<Kind> = ctx.cfg.kinds.clone();
    // For `explain`: the last uses of pressure's pool on this filesystem, to rank its units in.
    let probed_from = ctx.probe.map(Probe::found_len);
    let mut probe_pool: Vec<Nanos> = Vec::new();
    for id in ids {
        let mut index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
        let lost = ctx.lost(&index, id);
        if lost == Lost::All {
            break;
        }
        let Some(s) = index.store_mut(id) else { continue };
        let Some(root) = ctx.root_of(s.root) else { continue };
        roots.insert(id, root);
        let rel = s.rel.clone();
        // What the store holds, for the inventory.
        let mins = s.min_last_use();
        for (k, (files, bytes)) in Kind::ALL.into_iter().zip(s.inventory()) {
            if files > 0 {
                let inv = report.roots[root].kinds.entry(k).or_default();
                inv.merge(&Inventory {
                    files,
                    bytes,
                    oldest_last_use: Some(mins[k as usize]),
                    age_histogram: Default::default(),
                });
            }
        }
        let oldest = deletable.iter().map(|k| mins[*k as usize]).min().unwrap_or(Nanos::MAX);
        if !s.complete || lost == Lost::Store {
            if let Some(p) = ctx.probe {
                p.store_incomplete(s.root, &rel);
            }
            let files: u64 = s.inventory().iter().map(|(f, _)| f).sum();
            report.skip(Skip::Incomplete, files);
            if oldest != Nanos::MAX {
                kept(report, root, oldest);
            }
            continue;
        }
        // Nothing past max_age and no pressure: nothing here can go (the common case, and
        // what keeps a steady-state sweep from touching every unit).
        // (`explain` judges every unit: a unit's rank under pressure is among all of them.)
        if !pressure && oldest >= max_age_ago && ctx.probe.is_none() {
            if oldest != Nanos::MAX {
                kept(report, root, oldest);
            }
            continue;
        }
        let root_meta = &ctx.roots[root].1;
        let protect_on = !ctx.cfg.protect.is_empty();
        let store_protected = protect_on && (root_meta.protected || root_meta.protects_dir(&ctx.cfg.protect, &rel));
        let names = s.subdir_names();
        let subdir_protected: Vec<bool> = names
            .iter()
            .map(|d| protect_on && !store_protected && root_meta.protects_path(&ctx.cfg.protect, &rel.join(&**d)))
            .collect();
        let unseen_cap = s.watched_since.unwrap_or(Nanos::MAX);
        for u in s.units() {
            if u.partial {
                // Files of it went on elsewhere with their directory: part of a unit.
                report.skip(Skip::Incomplete, u.nfiles as u64);
                kept(report, root, u.last_use.max(u.last_open));
                continue;
            }
            let mut protected = store_protected;
            if protect_on && !store_protected {
                for (sub, name) in s.unit_files(u.slot) {
                    protected |= subdir_protected.get(sub as usize).copied().unwrap_or(false)
                        || root_meta.protects_path(
                            &ctx.cfg.protect,
                            &rel.join(&*names[sub as usize]).join(OsStr::from_bytes(&name)),
                        );
                }
            }
            let facts = facts_of(&u, protected, ctx.open_unknown, unseen_cap);
            let nfiles = u.nfiles as u64;
            let chosen = || Chosen {
                last_use: facts.last_use,
                store: id,
                slot: u.slot,
                stem: crate::store_dir::stem_hash(u.stem),
            };
            let verdict = policy::judge(&facts, &ctx.rules, ctx.now);
            if let Some(p) = ctx.probe {
                if matches!(verdict, Verdict::Eligible | Verdict::Unwatched) {
                    probe_pool.push(facts.last_use);
                }
                p.judged(s.root, &rel, u.stem, &facts, verdict, || {
                    s.unit_files(u.slot)
                        .iter()
                        .map(|(sub, name)| format!("{}/{}", names[*sub as usize], String::from_utf8_lossy(name)))
                        .collect()
                });
            }
            match verdict {
                Verdict::Delete(_) => ttl.push(chosen()),
                Verdict::Keep(why) => {
                    report.skip(why, nfiles);
                    match why {
                        Skip::Young => {
                            held.young_bytes += facts.bytes;
                            let ripe = facts.last_use.saturating_add(policy::nanos(ctx.cfg.min_age));
                            held.young_until = Some(held.young_until.map_or(ripe, |t| t.min(ripe)));
                        }
                        Skip::Protected => held.protected_bytes += facts.bytes,
                        Skip::Open => held.open_bytes += facts.bytes,
                        _ => {}
                    }
                    if why != Skip::Protected {
                        kept(report, root, facts.last_use);
                    }
                }
                Verdict::Eligible | Verdict::Unwatched if pressure => {
                    pool.push(chosen());
                    pool_bytes = pool_bytes.saturating_add(facts.bytes);
                }
                Verdict::Unwatched => {
                    report.skip(Skip::Unwatched, nfiles);
                    kept(report, root, facts.last_use);
                }
                Verdict::Eligible => kept(report, root, facts.last_use),
                Verdict::Exempt => {}
            }
        }
    }
    if let (Some(p), Some(from)) = (ctx.probe, probed_from) {
        p.rank(from, &mut probe_pool);
    }
    Selected {
        ttl,
        pool,
        pool_bytes,
        held,
        roots,
    }
}

/// What the policy knows of a unit from the index. `unseen_cap`: since when its store has
/// been watched without a gap (`Nanos::MAX` when it is not watched).
fn facts_of(u: &UnitView, protected: bool, open: bool, unseen_cap: Nanos) -> UnitFacts {
    UnitFacts {
        kind: u.kind,
        last_use: u.last_use.max(u.last_open),
        bytes: u.freeable,
        protected,
        open,
        unseen_until: u.read_bound.min(unseen_cap),
    }
}

fn root_at_number(ctx: &Ctx, root_at: usize) -> u32 {
    ctx.roots[root_at].0
}

/// What `explain` asks a sweep about: units by root number, store and stem. The sweep tells it
/// its verdict on each (in [`select`]) and, for those it chose, the outcome of the check on
/// disk before the unlinks (in [`delete`]).
#[derive(Debug, Default)]
pub struct Probe {
    wanted: Vec<(u32, PathBuf, Vec<u8>)>,
    /// `wanted` by root number, store and stem: every unit of the index is looked up, under
    /// the index's lock (a scan of `wanted` per unit held it for minutes: a million units times
    /// the few hundred paths a 64 KiB request names).
    lookup: FxHashMap<u32, FxHashMap<PathBuf, rustc_hash::FxHashSet<Vec<u8>>>>,
    found: Mutex<Vec<Probed>>,
}

/// A unit's verdict, as the sweep gave it.
#[derive(Clone, Debug)]
pub struct Probed {
    pub root: u32,
    pub rel: PathBuf,
    pub stem: Vec<u8>,
    /// Its files, relative to the store.
    pub files: Vec<String>,
    /// `None`: its store is not known whole (every unit of it is kept).
    pub facts: Option<UnitFacts>,
    pub verdict: Option<Verdict>,
    /// Chosen to go, then checked on disk: `Some(true)` still goes, `Some(false)` kept (what
    /// was found: `verdict_at_check`).
    pub goes_after_check: Option<bool>,
    pub verdict_at_check: Option<Verdict>,
    /// In pressure's pool (eligible, or unwatched): its place in least-recently-used order on
    /// its filesystem (1 goes first; units used at the same time share a place) and the pool's size.
    pub pressure_rank: Option<(u64, u64)>,
}

impl Probe {
    pub fn new(wanted: Vec<(u32, PathBuf, Vec<u8>)>) -> Probe {
        let mut lookup: FxHashMap<u32, FxHashMap<PathBuf, rustc_hash::FxHashSet<Vec<u8>>>> = FxHashMap::default();
        for (root, rel, stem) in &wanted {
            lookup
                .entry(*root)
                .or_default()
                .entry(rel.clone())
                .or_default()
                .insert(stem.clone());
        }
        Probe {
            wanted,
            lookup,
            found: Mutex::default(),
        }
    }

    fn wants(&self, root: u32, rel: &Path, stem: &[u8]) -> bool {
        self.lookup
            .get(&root)
            .and_then(|stores| stores.get(rel))
            .is_some_and(|stems| stems.contains(stem))
    }

    pub fn found(self) -> Vec<Probed> {
        self.found.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn found_len(&self) -> usize {
        self.found.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Ranks the units found since `from` that are in pressure's `pool` (their last uses).
    fn rank(&self, from: usize, pool: &mut [Nanos]) {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        // Sorted once, each unit's place found by bisection (not the pool counted per unit).
        pool.sort_unstable();
        for p in found.iter_mut().skip(from) {
            if let (Some(f), Some(Verdict::Eligible | Verdict::Unwatched)) = (p.facts, p.verdict) {
                let older = pool.partition_point(|&t| t < f.last_use) as u64;
                p.pressure_rank = Some((older + 1, pool.len() as u64));
            }
        }
    }

    fn store_incomplete(&self, root: u32, rel: &Path) {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        for (r, p, stem) in self.wanted.iter().filter(|(r, p, _)| *r == root && p == rel) {
            found.push(Probed {
                root: *r,
                rel: p.clone(),
                stem: stem.clone(),
                files: Vec::new(),
                facts: None,
                verdict: None,
                goes_after_check: None,
                verdict_at_check: None,
                pressure_rank: None,
            });
        }
    }

    fn judged(
        &self,
        root: u32,
        rel: &Path,
        stem: &[u8],
        facts: &UnitFacts,
        verdict: Verdict,
        files: impl FnOnce() -> Vec<String>,
    ) {
        if !self.wants(root, rel, stem) {
            return;
        }
        self.found.lock().unwrap_or_else(|e| e.into_inner()).push(Probed {
            root,
            rel: rel.to_owned(),
            stem: stem.to_vec(),
            files: files(),
            facts: Some(*facts),
            verdict: Some(verdict),
            goes_after_check: None,
            verdict_at_check: None,
            pressure_rank: None,
        });
    }

    fn checked(&self, root: u32, rel: &Path, stem: &[u8], verdict: Verdict, goes: bool) {
        if !self.wants(root, rel, stem) {
            return;
        }
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = found
            .iter_mut()
            .find(|p| p.root == root && p.rel == rel && p.stem == stem)
        {
            p.goes_after_check = Some(goes);
            p.verdict_at_check = Some(verdict);
        }
    }
}
