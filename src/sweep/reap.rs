//! The removal of dead block stores, shared by both kinds of sweep: the empty stores a sweep
//! found are judged by the liveness rule ([`policy::judge_store`]) against one snapshot of the
//! node's processes ([`Procs`]), and the dead ones are removed bottom-up
//! ([`StoreDir::reap`]). Nothing is removed when the processes cannot all be seen.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tracing::{debug, info, warn};

use super::record::Recorder;
use super::roots::Root;
use crate::config::Config;
use crate::policy::{self, Nanos, StoreFacts, StoreState};
use crate::procs::Procs;
use crate::report::{Op, Report};
use crate::store_dir::{DirFacts, StoreDir};

/// An empty store a sweep may remove, if the liveness rule finds it dead.
#[derive(Clone, Debug)]
pub struct ReapCandidate {
    /// Index of its root in the sweep's roots.
    pub root: usize,
    pub rel: PathBuf,
    pub facts: DirFacts,
    pub dir_ids: Vec<(u64, u64)>,
}

/// The process snapshot of a sweep, read the first time a store needs it.
pub fn procs(cell: &OnceLock<Procs>) -> &Procs {
    cell.get_or_init(|| Procs::read(Path::new("/proc")))
}

/// Judges each candidate and removes the dead ones (lists them, in a dry run). Counts every
/// store's state in its root's report. `removed` is told of each store removed.
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
    for c in candidates {
        let root = roots[c.root];
        let facts = StoreFacts {
            empty: true,
            last_activity: c.facts.activity,
            birth: c.facts.birth,
            changed: c.facts.changed,
            executor_dir: c.facts.executor_dir,
            held: c.dir_ids.iter().any(|id| procs.dirs_in_use.contains(id)),
        };
        let state = policy::judge_store(&facts, owners, now, cfg.stores.min_idle, cfg.stores.executor_startup);
        let path = root.path.join(&c.rel);
        let counts = &mut report.roots[c.root].stores;
        match &state {
            StoreState::Live => counts.live += 1,
            StoreState::Idle(why) => {
                counts.idle += 1;
                debug!(store = %path.display(), "empty and quiet, kept: {why}");
            }
            StoreState::Dead => counts.dead += 1,
        }
        if state != StoreState::Dead {
            continue;
        }
        if dry_run {
            report.reaped.stores += 1;
            if list_files {
                report.reaped.paths.push(path);
            }
            continue;
        }
        let reaped = StoreDir::open_in(&root.path, Some(root.ino), &c.rel, root.mount)
            .map_err(|e| e.into_io())
            .and_then(|mut dir| {
                let executor_dir = c
                    .facts
                    .executor_dir
                    .is_some_and(|d| policy::executor_dir_removable(d, owners.unwrap_or_default()));
                dir.reap(&mut buf, c.facts.activity, executor_dir)
            });
        match reaped {
            Ok(r) => {
                report.reaped.dirs += u64::from(r.dirs);
                if r.store {
                    report.reaped.stores += 1;
                    debug!(store = %path.display(), dirs = r.dirs, "dead store removed");
                    if list_files {
                        report.reaped.paths.push(path.clone());
                    }
                    removed(c.root, &c.rel);
                } else {
                    // Something appeared in it at the last moment: live after all.
                    debug!(store = %path.display(), "store changed while it was removed; kept");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => record.error(report, Op::Unlink, &path, &e),
        }
    }
}

/// Says once per process (and again when the reason changes) why no store can be removed.
fn say_blind(why: &str) {
    static SAID: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.as_deref() != Some(why) {
        warn!("dead block stores are not removed: the node's processes cannot all be seen ({why})");
        *said = Some(why.to_string());
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
