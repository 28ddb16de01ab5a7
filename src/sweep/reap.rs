//! The removal of dead block stores, shared by both kinds of sweep: the empty stores a sweep
//! found are judged by the liveness rule ([`policy::judge_store`]) against one snapshot of the
//! node's processes ([`Procs`]), and the dead ones are removed bottom-up
//! ([`StoreDir::reap`]). Nothing is removed when the processes cannot all be seen.
//!
//! A walking sweep hands [`reap`] the empty stores it read; the daemon's sweeps take them from
//! the index ([`reap_from_index`]), reading again only the ones the index judges dead.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tracing::{debug, info, warn};

use super::Options;
use super::indexed::IndexedRoot;
use super::record::{FirstNotices, Recorder};
use super::roots::Root;
use super::stores::{ReapCandidate, covered};
use crate::config::Config;
use crate::fsx::DirError;
use crate::index::{Index, StoreId};
use crate::policy::{self, Nanos, StoreFacts, StoreState};
use crate::procs::Procs;
use crate::report::{Op, Report};
use crate::store_dir::StoreDir;

/// The process snapshot of a sweep, read the first time a store needs it, with a deadline (a
/// hung mount makes it blind, never stalls the sweep: [`crate::procs_bounded`]).
pub fn procs<'a>(cell: &'a OnceLock<Procs>, cfg: &Config) -> &'a Procs {
    cell.get_or_init(|| {
        crate::procs_bounded::read(Path::new("/proc"), cfg.state_dir.as_deref(), cfg.stores.pid_namespace)
    })
}

/// Judges each candidate and removes the dead ones (checks and counts them, in a dry run).
/// Counts every store's state in its root's report as it is after the sweep: live, idle, or
/// dead but still there (a dry run, or a removal that failed); the removed ones in
/// `report.reaped`. `removed` is told of each store removed.
#[allow(clippy::too_many_arguments)]
pub fn reap(
    cfg: &Config,
    roots: &[&Root],
    candidates: Vec<ReapCandidate>,
    procs: &Procs,
    now: Nanos,
    dry_run: bool,
    list_files: bool,
    report: &mut Report,
    record: &Recorder,
    mut removed: impl FnMut(usize, &Path),
) {
    if candidates.is_empty() {
        return;
    }
    let owners = procs.blind.is_none().then_some(procs.owners.as_slice());
    if let Some(why) = &procs.blind {
        say_blind(why);
        report.liveness_unknown = Some(format!("the node's processes cannot all be seen: {why}"));
    }
    let mut buf = Vec::new();
    let configured = configured_dirs(cfg, roots);
    for c in candidates {
        let root = roots[c.root];
        let path = root.path.join(&c.rel);
        if std::iter::once(&c.facts.id)
            .chain(&c.dir_ids)
            .any(|id| configured.contains(id))
        {
            // A root configured inside another one (`roots = ["R", "R/blockmgr-j"]`), or below a
            // store: the operator's directory, never removed.
            report.roots[c.root].stores.idle += 1;
            debug!(store = %path.display(), "a configured root is this store or inside it: kept");
            continue;
        }
        let facts = StoreFacts {
            empty: true,
            last_activity: c.facts.activity,
            birth: c.facts.birth,
            changed: c.facts.changed,
            executor_dir: c.facts.executor_dir,
            held: c.dir_ids.iter().any(|id| procs.dirs_in_use.contains(id)),
            shared_fs: c.facts.shared_fs,
            seen_boot: c.facts.seen_boot,
        };
        let state = policy::judge_store(&facts, owners, now, cfg.stores.min_idle, cfg.stores.executor_startup);
        let counts = &mut report.roots[c.root].stores;
        match &state {
            StoreState::Live => {
                counts.live += 1;
                continue;
            }
            StoreState::Idle(kept) => {
                let about = kept.pid.and_then(|pid| procs.owners.iter().find(|o| o.pid == pid));
                let about = about.map(|o| o.about.as_str());
                debug!(store = %path.display(), process = about, "empty and quiet, kept: {}", kept.reason.text());
                report.kept(c.root, *kept, about);
                continue;
            }
            StoreState::Dead if !c.read_now => {
                // Judged on what the index knew, not read again: counted, never removed.
                debug!(store = %path.display(), "judged dead but not read again in this sweep: kept");
                let kept = policy::Kept {
                    reason: policy::IdleReason::Unverified,
                    pid: None,
                };
                report.kept(c.root, kept, None);
                continue;
            }
            StoreState::Dead => {}
        }
        let dir = match StoreDir::open_in(&root.path, Some(root.ino), &c.rel, root.mount) {
            Ok(dir) => dir,
            Err(DirError::Gone) => continue,
            Err(DirError::Io(e)) => {
                counts.dead += 1;
                record.error(report, Op::Unlink, &path, &e);
                continue;
            }
            Err(why) => {
                // A symlink or another mount in its place now: not the store that was judged.
                counts.live += 1;
                debug!(store = %path.display(), "not removed: {why}");
                continue;
            }
        };
        let mut dir = dir;
        let executor_dir = c
            .facts
            .executor_dir
            .is_some_and(|d| !configured.contains(&d) && policy::executor_dir_removable(d, owners.unwrap_or_default()));
        let r = dir.reap(&mut buf, c.facts.activity, executor_dir, dry_run);
        report.reaped.dirs += u64::from(r.dirs);
        let counts = &mut report.roots[c.root].stores;
        if let Some(e) = r.error {
            counts.dead += 1;
            record.error(report, Op::Unlink, &path, &e);
            continue;
        }
        if let Some(why) = r.kept {
            // Something changed: not dead after all.
            counts.live += 1;
            debug!(store = %path.display(), dirs_removed = r.dirs, "store kept: {why}");
            continue;
        }
        if !r.store {
            continue; // gone meanwhile
        }
        report.reaped.stores += 1;
        if list_files {
            report.reaped.paths.push(path.clone());
        }
        if dry_run {
            counts.dead += 1;
        } else {
            debug!(store = %path.display(), dirs = r.dirs, "dead store removed");
            if let Some(j) = crate::journal::current() {
                j.store_removed(&crate::journal::StoreRecord {
                    root: &root.path,
                    store: &path,
                    dirs: r.dirs,
                    last_activity: c.facts.activity,
                    min_idle: cfg.stores.min_idle,
                });
            }
            removed(c.root, &c.rel);
        }
    }
    if let Some(j) = crate::journal::current() {
        j.flush();
    }
}

/// `(device, inode)` of every configured root and every directory above one, whatever the root's
/// state (one inside another's layout, one not there yet: a directory above it may be a store
/// or an `executor-*` directory of another root): none of them is ever removed. A glob's
/// directories above its first pattern count, and what it expands to now.
fn configured_dirs(cfg: &Config, roots: &[&Root]) -> std::collections::HashSet<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut paths: Vec<PathBuf> = roots.iter().map(|r| r.path.clone()).collect();
    for pattern in &cfg.roots {
        let literal: PathBuf = Path::new(pattern)
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        paths.push(literal);
    }
    paths.extend(super::roots::resolve_roots(cfg).into_iter().filter_map(|r| match r {
        super::roots::RootStatus::Present { path, .. } | super::roots::RootStatus::Covered { path, .. } => Some(path),
        _ => None,
    }));
    paths
        .iter()
        .flat_map(|p| p.ancestors())
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// Says once per process (and again when the reason changes, process ids aside) why no store
/// can be removed.
fn say_blind(why: &str) {
    static SAID: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let key: String = why.chars().filter(|c| !c.is_ascii_digit()).collect();
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.as_deref() != Some(key.as_str()) {
        warn!("dead block stores are not removed: the node's processes cannot all be seen ({why})");
        *said = Some(key);
    }
}

/// Logs what a sweep removed.
pub fn log(report: &Report) {
    if report.reaped.stores > 0 && !report.dry_run {
        info!(
            stores = report.reaped.stores,
            dirs = report.reaped.dirs,
            "dead block stores removed"
        );
    }
}

/// An empty, complete store that has been quiet for `min_idle`: a candidate for reaping.
struct QuietStore {
    id: StoreId,
    root: usize,
    rel: PathBuf,
    activity: Nanos,
    facts: crate::store_dir::DirFacts,
    dir_ids: Vec<(u64, u64)>,
}

/// The daemon's reaping: removes the dead stores among the index's empty ones and counts every
/// store's state in `report`. An empty store the index judges quiet and ownerless is read
/// again first: the index knows Spark's files only, and a store is removed only when it holds
/// nothing at all. Returns the stores removed, for the caller to drop their watches.
pub fn reap_from_index(
    cfg: &Config,
    roots: &[IndexedRoot],
    index: &Mutex<Index>,
    opts: &Options,
    report: &mut Report,
) -> Vec<StoreId> {
    let now = report.now;
    let dry_run = opts.dry_run || cfg.dry_run;
    let min_idle_ago = now.saturating_sub(policy::nanos(cfg.stores.min_idle));
    let root_of = |n: u32| roots.iter().position(|(r, _)| *r == n);
    report.stores_judged = true;
    // Empty, complete and quiet stores; every other store is live.
    let mut quiet: Vec<QuietStore> = Vec::new();
    {
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        for (id, s) in index.stores() {
            let Some(r) = root_of(s.root) else { continue };
            let root = &roots[r].1;
            let protected = root.protected || (!cfg.protect.is_empty() && root.protects_dir(&cfg.protect, &s.rel));
            let candidate = cfg.stores.reap
                && s.is_empty()
                && s.complete
                && covered(&s.rel)
                && s.last_activity.max(s.dir_facts.activity) < min_idle_ago
                && root.role != crate::spark::DirRole::Store
                && !protected;
            if candidate {
                quiet.push(QuietStore {
                    id,
                    root: r,
                    rel: s.rel.clone(),
                    activity: s.last_activity,
                    facts: s.dir_facts,
                    dir_ids: s.dir_ids.clone(),
                });
            } else {
                report.roots[r].stores.live += 1;
            }
        }
    }
    if quiet.is_empty() {
        return Vec::new();
    }
    let procs = crate::procs_bounded::read(Path::new("/proc"), cfg.state_dir.as_deref(), cfg.stores.pid_namespace);
    let owners = procs.blind.is_none().then_some(procs.owners.as_slice());
    let mut candidates = Vec::new();
    let mut ids = Vec::new();
    let mut listing = crate::store_dir::Listing::default();
    let mut buf = Vec::new();
    for QuietStore {
        id,
        root: r,
        rel,
        activity,
        facts,
        dir_ids,
    } in quiet
    {
        let store_facts = policy::StoreFacts {
            empty: true,
            last_activity: activity.max(facts.activity),
            birth: facts.birth,
            changed: facts.changed,
            executor_dir: facts.executor_dir,
            held: dir_ids.iter().any(|d| procs.dirs_in_use.contains(d)),
            shared_fs: facts.shared_fs,
            seen_boot: facts.seen_boot,
        };
        let root = &roots[r].1;
        let dead_by_index = owners.is_some()
            && policy::judge_store(
                &store_facts,
                owners,
                now,
                cfg.stores.min_idle,
                cfg.stores.executor_startup,
            ) == policy::StoreState::Dead;
        if !dead_by_index {
            // Judged again there with the same facts, only to be counted (idle or live).
            candidates.push(ReapCandidate {
                root: r,
                rel,
                facts: crate::store_dir::DirFacts {
                    activity: activity.max(facts.activity),
                    ..facts
                },
                dir_ids,
                read_now: false,
            });
            continue;
        }
        // Only what the index judges dead is read again: the index knows Spark's files only,
        // and a store is removed only when a listing now shows it holds nothing at all.
        let Ok(mut dir) = StoreDir::open_in(&root.path, Some(root.ino), &rel, root.mount) else {
            report.roots[r].stores.live += 1;
            continue;
        };
        dir.read(&mut buf, &mut listing);
        if !(listing.complete() && listing.files.is_empty() && listing.unknown == 0 && listing.leftovers.is_empty()) {
            // Something is in it after all: live.
            report.roots[r].stores.live += 1;
            continue;
        }
        let mut fresh = dir.facts();
        fresh.activity = fresh.activity.max(activity);
        // The index's first sighting of this same directory, not this read's.
        fresh.keep_first_seen(&facts);
        candidates.push(ReapCandidate {
            root: r,
            rel: rel.clone(),
            facts: fresh,
            dir_ids: dir.dir_ids(),
            read_now: true,
        });
        ids.push((r, rel, id));
    }
    let first = FirstNotices::default();
    let record = Recorder::new(&first);
    let root_refs: Vec<&Root> = roots.iter().map(|(_, r)| r).collect();
    let mut removed = Vec::new();
    reap(
        cfg,
        &root_refs,
        candidates,
        &procs,
        now,
        dry_run,
        opts.list_files || opts.listing.is_some(),
        report,
        &record,
        |r, rel| {
            if let Some((_, _, id)) = ids.iter().find(|(rr, p, _)| *rr == r && p == rel) {
                removed.push(*id);
            }
        },
    );
    let mut ix = index.lock().unwrap_or_else(|e| e.into_inner());
    for id in &removed {
        ix.remove_store(*id);
    }
    log(report);
    removed
}
