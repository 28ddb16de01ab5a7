//! inotify (through notify) on the directories of Spark's layouts below the roots.
//!
//! Each directory with a layout role is watched by itself (non-recursively), so an unrelated
//! tree under `/tmp` costs no watches; new layout directories (a new executor's `blockmgr-*`,
//! its `NN`s) are added as they appear. What the watch gives the daemon:
//! - opens of Spark files, recorded in the [`OpenLog`] as use, whatever atime does;
//! - new and renamed files, which wake the disk-pressure check before the next poll.
//!
//! When the kernel's watch limit is reached it stops adding watches, logs it once and exports
//! `shuffle_janitor_inotify_active 0`: timestamps alone decide for the unwatched directories.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::opens::OpenLog;
use crate::policy;
use crate::spark::{self, DirRole};

/// What the watch tells the daemon's loop.
#[derive(Debug)]
pub enum WatchEvent {
    /// A directory appeared: watch it if it belongs to a layout.
    NewDir(PathBuf),
    /// A directory went away.
    GoneDir(PathBuf),
    /// Files were created or committed: the disk may be filling. Sent once until taken.
    Activity,
    /// The kernel's event queue overflowed: opens may have been missed, re-add watches.
    Rescan,
}

/// Outcome of adding watches.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Added {
    pub watches: usize,
    pub errors: usize,
    /// The watch limit was reached just now (reported once).
    pub limit_reached: bool,
}

pub struct Watch {
    watcher: Option<RecommendedWatcher>,
    roots: Vec<PathBuf>,
    watched: HashSet<PathBuf>,
    /// False once the limit was reached or the watcher could not start.
    pub active: bool,
    activity_pending: Arc<AtomicBool>,
}

impl Watch {
    /// Starts the watcher. `tx` receives [`WatchEvent`]s; opens go straight into `opens` from
    /// notify's thread, which must never wait on the daemon's loop.
    pub fn start(opens: Arc<OpenLog>, tx: mpsc::UnboundedSender<WatchEvent>) -> Watch {
        let activity_pending = Arc::new(AtomicBool::new(false));
        let pending = activity_pending.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if ev.need_rescan() {
                let _ = tx.send(WatchEvent::Rescan);
            }
            match ev.kind {
                EventKind::Access(AccessKind::Open(_)) => {
                    let now = policy::nanos(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default());
                    for p in &ev.paths {
                        opens.record(p, now);
                    }
                }
                EventKind::Create(CreateKind::Folder) => {
                    for p in ev.paths {
                        let _ = tx.send(WatchEvent::NewDir(p));
                    }
                    // A new executor's store: it is about to write.
                    if !pending.swap(true, Ordering::AcqRel) {
                        let _ = tx.send(WatchEvent::Activity);
                    }
                }
                EventKind::Remove(RemoveKind::Folder) => {
                    for p in ev.paths {
                        let _ = tx.send(WatchEvent::GoneDir(p));
                    }
                }
                // Writes to files that already exist fill the disk too. The flag makes a burst of
                // them one message until the loop takes it.
                EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Name(_) | ModifyKind::Data(_))
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
                    if !pending.swap(true, Ordering::AcqRel) =>
                {
                    let _ = tx.send(WatchEvent::Activity);
                }
                _ => {}
            }
        };
        let watcher = match RecommendedWatcher::new(handler, notify::Config::default()) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot start inotify; last use comes from file timestamps only");
                None
            }
        };
        Watch {
            active: watcher.is_some(),
            watcher,
            roots: Vec::new(),
            watched: HashSet::new(),
            activity_pending,
        }
    }

    /// Marks the activity notice as taken, so the next file event sends another.
    pub fn take_activity(&self) {
        self.activity_pending.store(false, Ordering::Release);
    }

    pub fn watched(&self) -> usize {
        self.watched.len()
    }

    /// Sets the (resolved) roots, dropping watches of directories no longer below one. With
    /// `fresh`, every watch is dropped first (a filesystem was mounted over a root: the old
    /// watches are on the hidden directories).
    pub fn set_roots(&mut self, roots: Vec<PathBuf>, fresh: bool) -> Added {
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|d| fresh || !roots.iter().any(|r| d.starts_with(r)))
            .cloned()
            .collect();
        for d in stale {
            self.watched.remove(&d);
            if let Some(w) = self.watcher.as_mut() {
                let _ = w.unwatch(&d);
            }
        }
        self.roots = roots;
        let mut added = Added::default();
        for r in self.roots.clone() {
            self.add_tree(&r, &mut added);
        }
        added
    }

    /// Re-walks every root (after a queue overflow, or to pick up roots mounted late).
    pub fn refresh(&mut self) -> Added {
        let mut added = Added::default();
        for r in self.roots.clone() {
            self.add_tree(&r, &mut added);
        }
        added
    }

    pub fn gone(&mut self, dir: &Path) {
        self.watched.retain(|d| !d.starts_with(dir));
    }

    /// Watches `dir` and the layout directories below it, if it belongs to a layout.
    pub fn add_tree(&mut self, dir: &Path, added: &mut Added) {
        let Some(role) = self.role(dir) else { return };
        if !self.active {
            return;
        }
        if !self.watched.contains(dir) {
            let Some(w) = self.watcher.as_mut() else { return };
            match w.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir.to_owned());
                    added.watches += 1;
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    warn!(
                        watches = self.watched.len(),
                        "inotify watch limit reached (raise fs.inotify.max_user_watches); \
                         falling back to file timestamps for directories not watched"
                    );
                    self.active = false;
                    added.limit_reached = true;
                    added.errors += 1;
                    return;
                }
                Err(e) => {
                    // Gone already (a finished executor), or unreadable: nothing to follow.
                    debug!(path = %dir.display(), error = %e, "cannot watch");
                    if !matches!(&e.kind, notify::ErrorKind::PathNotFound)
                        && !matches!(&e.kind, notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound)
                    {
                        added.errors += 1;
                    }
                    return;
                }
            }
        }
        if role == DirRole::SubDir {
            return;
        }
        // Directories created before the watch was in place would otherwise be missed.
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.add_tree(&entry.path(), added);
            }
        }
    }

    fn role(&self, dir: &Path) -> Option<DirRole> {
        let root = self
            .roots
            .iter()
            .filter(|r| dir.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())?;
        spark::dir_role(dir.strip_prefix(root).ok()?.to_str()?)
    }
}

/// Logs what adding watches did (at debug: every new executor adds some).
pub fn log_added(added: &Added, total: usize) {
    if added.watches > 0 {
        debug!(new = added.watches, total, "watching Spark directories");
    }
}
