//! Walks that fill the index: at start, after the watch lost events, for stores that cannot be
//! watched (at every interval), for directories that appeared, and as the slow reconciliation.
//! Each directory is watched before it is listed, so nothing created after its listing goes
//! unseen. Stores are read on a few threads, as a sweep reads them.

use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use rustix::fs::OFlags;
use tracing::debug;

use super::watch::{Roots, Watch, now_nanos, open_below};
use crate::config::Timestamp;
use crate::disk::AtimeMode;
use crate::fsx::{self, DirError, MountId};
use crate::index::{Drift, Index, Store, StoreId};
use crate::policy::Nanos;
use crate::report::Op;
use crate::scan::{self, Visitor, WalkRoot};
use crate::spark::DirRole;
use crate::store_dir::{Listing, StoreDir};

/// What a walk found and could not do.
#[derive(Debug, Default)]
pub struct Walked {
    pub stores: usize,
    pub files: usize,
    /// Layout directories (not stores) that should be watched and could not be, by root: new
    /// stores below them are found by walking again. Stores keep their own count in the index.
    pub unwatched_layout: Vec<(u32, usize)>,
    /// Errors by operation, with the first path of each.
    pub errors: Vec<(Op, PathBuf, String)>,
    /// Stores found on disk (root, rel): the reconciliation drops the others.
    pub seen: Vec<(u32, PathBuf)>,
    /// How the index differed from the disk (counted only when reconciling).
    pub drift: Drift,
    /// Stores found gone (and dropped from the index) while being read.
    pub gone: Vec<StoreId>,
}

impl Walked {
    fn merge(&mut self, o: Walked) {
        self.stores += o.stores;
        self.files += o.files;
        self.unwatched_layout.extend(o.unwatched_layout);
        self.errors.extend(o.errors);
        self.seen.extend(o.seen);
        self.drift.add(o.drift);
        self.gone.extend(o.gone);
    }
}

/// What a walk needs.
pub struct WalkCtx<'a> {
    pub watch: Option<&'a Watch>,
    pub index: &'a Arc<Mutex<Index>>,
    pub roots: &'a Roots,
    pub basis: &'a [Timestamp],
    /// Count how the index differed from what the walk finds (after lost events, and in the
    /// slow reconciliation).
    pub reconcile: bool,
    /// Called with (root, rel) as a reader starts on each store, before anything of it is
    /// looked at: a test pauses the walk there to reload the roots under it. `None` but in tests.
    #[doc(hidden)]
    pub before_store: Option<&'a BeforeStore>,
}

/// See [`WalkCtx::before_store`].
#[doc(hidden)]
pub type BeforeStore = dyn Fn(u32, &Path) + Sync;

/// A root's facts, copied out of the shared list.
struct RootInfo {
    path: PathBuf,
    mount: MountId,
    ino: u64,
    role: DirRole,
    atime: AtimeMode,
}

fn root_info(roots: &Roots, root: u32) -> Option<RootInfo> {
    let roots = roots.read().unwrap_or_else(|e| e.into_inner());
    let r = roots.get(root as usize)?.as_ref()?;
    Some(RootInfo {
        path: r.path.clone(),
        mount: r.mount,
        ino: r.ino,
        role: r.role,
        atime: r.atime,
    })
}

/// Walks root `root` whole (or, with `rel`, the directory of role `role` at `rel` below it) into
/// the index, watching every directory on the way.
pub fn walk(ctx: &WalkCtx, root: u32, sub: Option<(&Path, DirRole)>) -> Walked {
    let Some(info) = root_info(ctx.roots, root) else {
        return Walked::default();
    };
    let walk_root = WalkRoot {
        path: &info.path,
        mount: info.mount,
        ino: Some(info.ino),
        role: info.role,
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let (tx, rx) = sync_channel::<PathBuf>(workers * 4);
    let rx = Mutex::new(rx);
    let mut walker = Walker {
        ctx,
        root,
        ino: info.ino,
        tx: Some(tx),
        out: Walked::default(),
    };
    let mut done: Vec<Walked> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx = &rx;
                let info = &info;
                s.spawn(move || {
                    let mut out = Walked::default();
                    let mut reader = Reader::new(ctx, root, info);
                    loop {
                        // The queue's lock is let go before the store is read: a `while let`
                        // on `rx.lock()...recv()` would hold it through the loop's body, and the
                        // readers would take turns instead of reading side by side.
                        let Ok(rel) = rx.lock().expect("queue").recv() else {
                            break;
                        };
                        reader.store(&rel, &mut out);
                    }
                    out
                })
            })
            .collect();
        match sub {
            None => {
                let _ = scan::walk_root(&walk_root, root as usize, &mut walker);
            }
            Some((rel, role)) => match open_below(ctx.roots, root, rel, OFlags::RDONLY | OFlags::DIRECTORY) {
                Ok((fd, _)) => {
                    let _ = scan::walk_from(&walk_root, root as usize, &fd, rel.to_owned(), role, &mut walker);
                }
                Err(e) => debug!(path = %info.path.join(rel).display(), error = %e, "cannot walk a new directory"),
            },
        }
        walker.tx = None;
        handles.into_iter().map(|h| h.join().expect("walk worker")).collect()
    });
    let mut out = std::mem::take(&mut walker.out);
    for w in done.drain(..) {
        out.merge(w);
    }
    out
}

/// Forgets root `n` (a reload removed it, or it is about to be walked afresh): its watches and
/// its stores in the index. The daemon's `forget_root`, here for the tests that reload under a
/// walk to drive.
pub fn forget_root(roots: &Roots, watch: Option<&Watch>, index: &Mutex<Index>, n: u32) {
    // First: a walk of the root in flight checks it before it adds a store (under the
    // index's lock), so none is added after the removal below.
    if let Some(slot) = roots.write().unwrap_or_else(|e| e.into_inner()).get_mut(n as usize) {
        *slot = None;
    }
    // Then the stores, before their watches: a read in flight adds a sub-directory's watch
    // only while its store is in the index, and checks the store is still there after its
    // last add, so every watch it adds is dropped below or by that check. Watches dropped
    // first, a read that added some between the two steps and installed its store before the
    // second left them for a store no longer in the index (the differential test's reloads).
    index.lock().unwrap_or_else(|e| e.into_inner()).remove_root(n);
    if let Some(w) = watch {
        w.forget_root(n);
    }
}

/// After a full walk (`walked`, of every present root): the stores of the index it did not find
/// are gone (removed while events were lost), when their directory is indeed no longer there (one
/// the walk failed to read stays). They leave the index and the watch, and with `reconcile` their
/// units count as `extra` drift. On the walk's thread, linear in the stores: the daemon's loop
/// did this once, comparing every store with every store found (8.7 s at 12,000 stores, with the
/// index locked and signals, pressure and the watch waiting).
pub fn drop_unseen(ctx: &WalkCtx, walked: &mut Walked) {
    let started = std::time::Instant::now();
    let seen: std::collections::HashSet<(u32, &Path)> = walked.seen.iter().map(|(r, p)| (*r, p.as_path())).collect();
    let unseen: Vec<(StoreId, u32, PathBuf)> = {
        let index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
        index
            .stores()
            .filter(|(_, s)| !seen.contains(&(s.root, s.rel.as_path())))
            .map(|(id, s)| (id, s.root, s.rel.clone()))
            .collect()
    };
    debug!(
        unseen = unseen.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "stores of the index the walk did not find"
    );
    if unseen.is_empty() {
        return;
    }
    let root_paths: Vec<Option<PathBuf>> = {
        let roots = ctx.roots.read().unwrap_or_else(|e| e.into_inner());
        roots.iter().map(|r| r.as_ref().map(|r| r.path.clone())).collect()
    };
    // Looked at without the index's lock: a stat may be slow.
    let gone: Vec<StoreId> = unseen
        .into_iter()
        .filter(|(_, root, rel)| {
            root_paths.get(*root as usize).and_then(Option::as_ref).is_none_or(|p| {
                std::fs::symlink_metadata(p.join(rel)).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            })
        })
        .map(|(id, _, _)| id)
        .collect();
    for id in gone {
        if let Some(w) = ctx.watch {
            w.forget_store(id);
        }
        let mut index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
        if ctx.reconcile {
            walked.drift.extra += index.store(id).map_or(0, |s| s.unit_count() as u64);
        }
        index.remove_store(id);
    }
}

/// Reads again the stores of the index that are not fully watched (watch limit, errors), or
/// not known whole (an `NN` directory moved away, a file that could not be stat'ed), watching
/// what can be watched now: they are judged from a fresh listing at every interval, as a walking
/// sweep would, not kept from every deletion until the next full walk. The units that lost files
/// to a directory moved away stay partial through the read (kept: the read cannot see what went).
pub fn reread_unwatched(ctx: &WalkCtx) -> Walked {
    let stores: Vec<(u32, PathBuf)> = {
        let index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
        index
            .stores()
            .filter(|(_, s)| s.watched_since.is_none() || !s.complete)
            .map(|(_, s)| (s.root, s.rel.clone()))
            .collect()
    };
    let mut out = Walked::default();
    let mut by_root: Vec<(u32, Vec<PathBuf>)> = Vec::new();
    for (root, rel) in stores {
        match by_root.iter_mut().find(|(r, _)| *r == root) {
            Some((_, v)) => v.push(rel),
            None => by_root.push((root, vec![rel])),
        }
    }
    for (root, rels) in by_root {
        let Some(info) = root_info(ctx.roots, root) else {
            continue;
        };
        let mut reader = Reader::new(ctx, root, &info);
        for rel in rels {
            reader.store(&rel, &mut out);
        }
    }
    out
}

/// Ends a store's read in the index when dropped.
struct ReadGuard<'a>(&'a Arc<Mutex<Index>>);

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).end_read();
    }
}

/// The walking thread: watches layout directories and hands stores to the readers.
struct Walker<'a> {
    ctx: &'a WalkCtx<'a>,
    root: u32,
    ino: u64,
    tx: Option<SyncSender<PathBuf>>,
    out: Walked,
}

impl Visitor for Walker<'_> {
    fn store(&mut self, _root: usize, rel: PathBuf) -> ControlFlow<()> {
        // The root was removed (a reload) or replaced since the walk began: it stops.
        if !Watch::root_is(self.ctx.roots, self.root, self.ino) {
            return ControlFlow::Break(());
        }
        match self.tx.as_ref().map(|tx| tx.send(rel)) {
            Some(Ok(())) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(()),
        }
    }

    fn unknown(&mut self) {}

    fn skipped(&mut self, path: &Path, why: &DirError) {
        debug!(path = %path.display(), "not entered: it {why}");
    }

    fn error(&mut self, path: &Path, error: &std::io::Error) {
        self.out.errors.push((Op::Walk, path.to_owned(), error.to_string()));
    }

    fn dir_opened(&mut self, fd: BorrowedFd, rel: &Path, role: DirRole) {
        let watched = self
            .ctx
            .watch
            .is_some_and(|w| w.add_layout(fd, self.root, rel, role).is_ok());
        if !watched {
            match self.out.unwatched_layout.iter_mut().find(|(r, _)| *r == self.root) {
                Some((_, n)) => *n += 1,
                None => self.out.unwatched_layout.push((self.root, 1)),
            }
        }
    }
}

/// Reads stores into the index, on one thread.
struct Reader<'a> {
    ctx: &'a WalkCtx<'a>,
    root: u32,
    info: &'a RootInfo,
    buf: Vec<u8>,
    listing: Listing,
}

impl<'a> Reader<'a> {
    fn new(ctx: &'a WalkCtx<'a>, root: u32, info: &'a RootInfo) -> Self {
        Reader {
            ctx,
            root,
            info,
            buf: Vec::new(),
            listing: Listing::default(),
        }
    }

    fn store(&mut self, rel: &Path, out: &mut Walked) {
        let ctx = self.ctx;
        if let Some(hook) = ctx.before_store {
            hook(self.root, rel);
        }
        // Removals are noted while this read is in flight (dropped by the guard when it ends,
        // whichever way it returns).
        ctx.index.lock().unwrap_or_else(|e| e.into_inner()).begin_read();
        let _reading = ReadGuard(ctx.index);
        let path = self.info.path.join(rel);
        // A store the index has but that cannot be read now (an I/O error, or its directory
        // replaced by a symlink or a mount): what the index holds of it is the listing before,
        // perhaps from before lost events. Not known whole: it decides nothing until a read
        // succeeds (a later sweep reads it again).
        let unreadable = || {
            let mut index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = index.find(self.root, rel) {
                index.mark_incomplete(id);
            }
        };
        let mut dir = match StoreDir::open_in(&self.info.path, Some(self.info.ino), rel, self.info.mount) {
            Ok(d) => d,
            Err(DirError::Io(e)) => {
                unreadable();
                return out.errors.push((Op::Walk, path, e.to_string()));
            }
            Err(DirError::Gone) => {
                // Removed while nothing watched it: forget it now, not at the next full walk.
                let mut index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(id) = index.find(self.root, rel) {
                    index.remove_store(id);
                    out.gone.push(id);
                }
                return debug!(path = %path.display(), "store not read: it no longer exists");
            }
            Err(why) => {
                unreadable();
                return debug!(path = %path.display(), "store not read: it {why}");
            }
        };
        let (id, marks) = {
            let mut index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
            // Under the index's lock: a reload that removes the root marks it gone before it
            // drops the root's stores (Daemon::forget_root), so no store is added after.
            if !Watch::root_is(ctx.roots, self.root, self.info.ino) {
                return debug!(path = %path.display(), "store not read: its root was removed");
            }
            let id: StoreId = index.add_store(self.root, rel);
            (id, index.marks(id))
        };
        let generation = ctx.watch.map(Watch::generation);
        let stat_time = now_nanos();
        let mut watched = ctx.watch.is_some();
        let mut unwatched = 0;
        let mut activity = Nanos::MIN;
        let mut opened = |fd: BorrowedFd, sub: Option<&str>| {
            if let Ok(st) = fsx::statx_fd(fd.as_fd()) {
                let t = |t: &rustix::fs::StatxTimestamp| {
                    t.tv_sec
                        .saturating_mul(1_000_000_000)
                        .saturating_add(i64::from(t.tv_nsec))
                };
                activity = activity.max(t(&st.stx_mtime)).max(t(&st.stx_ctime));
            }
            let ok = match (ctx.watch, sub) {
                (Some(w), None) => w.add_store(fd, id).is_ok(),
                (Some(w), Some(name)) => {
                    let subdir = {
                        let mut index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
                        index.store_mut(id).map(|s| s.subdir(name))
                    };
                    subdir.is_some_and(|subdir| w.add_subdir(fd, id, subdir).is_ok())
                }
                (None, _) => false,
            };
            if !ok {
                watched = false;
                unwatched += 1;
            }
        };
        dir.read_observed(&mut self.buf, &mut self.listing, &mut opened);
        for (failure, sub, e) in &self.listing.errors {
            out.errors.push(((*failure).into(), path.join(sub), e.to_string()));
        }
        let was_watched = {
            let index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
            // Removed meanwhile (its directory went, or its root), or the id is another
            // store's now: the watches this read added go too.
            if index.find(self.root, rel) != Some(id) {
                drop(index);
                if let Some(w) = ctx.watch {
                    w.forget_store(id);
                }
                return;
            }
            index.store(id).and_then(|s| s.watched_since)
        };
        // Watches added to an instance replaced meanwhile (after an overflow) watch nothing.
        if ctx.watch.map(Watch::generation) != generation {
            watched = false;
        }
        // A store watched without a gap keeps the start of its watch; one watched now for the
        // first time (or again, after the watch lost events) starts it now: after its last
        // watch was added, so that nothing before it counts as seen.
        let watched_since = watched.then(|| was_watched.unwrap_or_else(now_nanos));
        let mut store = Store::from_listing(
            &self.listing,
            ctx.basis,
            self.info.atime,
            stat_time,
            watched_since,
            activity,
        );
        store.unwatched = unwatched;
        store.dir_facts = dir.facts();
        store.dir_ids = dir.dir_ids();
        out.stores += 1;
        out.files += self.listing.files.len();
        out.seen.push((self.root, rel.to_owned()));
        let mut index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
        if index.find(self.root, rel) != Some(id) {
            return;
        }
        index.drop_removed(id, &mut store, stat_time);
        if ctx.reconcile {
            out.drift.add(index.drift(id, &store));
        }
        index.install_store(id, store, marks);
    }
}
