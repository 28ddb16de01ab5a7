//! inotify on every directory of Spark's layouts below the roots, feeding the [`Index`].
//!
//! A watch is added on the directory the walk itself opened (without following a symlink, and
//! checked to be on the root's own mount), through `/proc/self/fd/N` with `IN_ONLYDIR`: no path
//! is resolved again, so nothing swapped in after the check is ever watched (stronger than
//! `IN_DONT_FOLLOW` on a path, which still follows every component but the last). Without
//! `/proc` no watch can be added and every store is walked at each interval. Watches are tracked
//! by watch descriptor, not by path (the kernel's watches follow inodes): a directory renamed is
//! gone plus new, a root removed is forgotten and watched again when it comes back.
//!
//! Each directory gets only the events the daemon uses: layout directories and stores their
//! sub-directories coming and going; `NN` directories file creation, removal, renames, writes,
//! attribute changes and opens. Events go straight into the index on this module's thread,
//! which also stats again the units they touched, so the daemon's loop never waits on them.
//!
//! When the kernel's event queue overflows, events are lost: the whole instance is dropped and a
//! new one started, every store's watch restarts ([`crate::index::Store::watched_since`], so the
//! TTL waits for the unseen stretch), and the daemon walks everything again.
//!
//! Files: `mod.rs` (the watch, its thread, adding and forgetting watches), `nodes.rs` (the
//! watched directories by descriptor), `apply.rs` (each event applied to the index).

mod apply;
mod nodes;

use nodes::{Node, Nodes};

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::Timestamp;
use crate::disk::{AtimeMode, FileStat};
use crate::fsx::{self, MountId};
use crate::index::{FileEvent, Fresh, Index, StoreId, SubdirId, subdir_slot};
use crate::policy::Nanos;
use crate::spark::{self, DirRole};

/// Events of a layout directory (and of a store): directories coming and going.
pub const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF);
/// Events of an `NN` directory: what its files go through. No IN_ACCESS or IN_CLOSE_NOWRITE:
/// reads are seen at their open, and listing a directory (the daemon's own walks) makes none of
/// these but one IN_OPEN on the directory itself.
pub const FILE_EVENTS: WatchFlags = DIR_EVENTS
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::OPEN);
/// Always: only directories, and no events for files after they are unlinked.
pub const WATCH_FLAGS: WatchFlags = WatchFlags::ONLYDIR.union(WatchFlags::EXCL_UNLINK);

/// A root as the watch and the walks need it. No fd of it is kept open: an open directory that
/// is removed sends no `IN_DELETE_SELF` until its last fd is closed, and the daemon would keep
/// watching a dead root.
#[derive(Debug)]
pub struct WatchedRoot {
    pub path: PathBuf,
    pub mount: MountId,
    /// The root directory's inode: one created again under the same path is another root.
    pub ino: u64,
    pub role: DirRole,
    pub atime: AtimeMode,
}

/// The roots, by the number the index knows them by.
pub type Roots = Arc<RwLock<Vec<Option<WatchedRoot>>>>;

/// What the watch tells the daemon's loop.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchMsg {
    /// Files were created or written: the disk may be filling. Sent once until taken.
    Activity,
    /// The kernel's queue overflowed at this time: events were lost; walk everything again.
    Overflow(Nanos),
    /// A root was removed, renamed or unmounted: forget it until it is back.
    RootGone(u32),
    /// A layout directory or a store appeared (created, or renamed in) at `rel` below root
    /// `root`: walk it.
    NewDir { root: u32, rel: PathBuf, role: DirRole },
}

/// Why a watch was not added.
#[derive(Debug)]
pub enum AddError {
    /// The kernel's watch limit (`fs.inotify.max_user_watches`).
    Limit,
    Other(io::Error),
}

struct Inner {
    /// The current inotify instance (replaced whole after an overflow).
    fd: RwLock<Arc<OwnedFd>>,
    nodes: Mutex<Nodes>,
    index: Arc<Mutex<Index>>,
    roots: Roots,
    basis: RwLock<Vec<Timestamp>>,
    tx: mpsc::UnboundedSender<WatchMsg>,
    activity_pending: AtomicBool,
    stop: AtomicBool,
    /// The limit was hit since the last successful add.
    limited: AtomicBool,
    overflows: AtomicU64,
    /// Wakes the thread (see [`Watch::settle`]).
    wake: OwnedFd,
    /// Rounds the thread completed (events drained, dirty units refreshed).
    rounds: AtomicU64,
    /// Directories announced with `WatchMsg::NewDir` since a sweep last took them.
    new_dirs: Mutex<Vec<(u32, PathBuf, DirRole)>>,
    /// The value `rounds` took after the last round that emptied the queue.
    emptied: AtomicU64,
    /// Incremented each time the instance is replaced: a walk that added watches to an older
    /// one must not take its stores for watched.
    generation: AtomicU64,
    /// Bytes queued from which the kernel's queue may hold an overflow (see [`Watch::behind`]).
    full_at: AtomicU64,
    /// Whether an overflow may be queued or read and not yet in the index.
    lag: Lag,
    /// Held while events are read and applied, by the thread or by a deletion catching up
    /// ([`Watch::catch_up`]): they reach the index in the kernel's order.
    draining: Mutex<()>,
    /// Events read by every drain, for the thread's choice to let a burst gather.
    read_total: AtomicU64,
}

/// Whether the watch may hold an overflow the index does not show yet (see [`Watch::behind`]).
/// The thread raises `up` before each read, and lowers it after the read when the queue was not
/// full enough to hold an overflow before any read since it was last emptied and no overflow was
/// read; else once a drain emptied the queue or met an overflow and applied what it read. A
/// sweep looks at the queue first, then at `up`: an overflow queued before it looked is still
/// there behind a queue that full, or was read under `up`, which stays up until it is marked.
#[derive(Debug, Default)]
struct Lag {
    up: AtomicBool,
    /// The queue was that full before a read since it was last emptied (a read may take part
    /// of it and leave the overflow, for this drain or the next).
    was_full: AtomicBool,
}

impl Lag {
    fn before_read(&self, fd: &OwnedFd, full_at: u64) {
        self.up.store(true, Ordering::SeqCst);
        if rustix::io::ioctl_fionread(fd).unwrap_or(u64::MAX) >= full_at {
            self.was_full.store(true, Ordering::SeqCst);
        }
    }

    /// After a batch is read, before it is applied.
    fn read(&self, batch: &[RawEvent]) {
        if !self.was_full.load(Ordering::SeqCst)
            && !batch
                .iter()
                .any(|(_, mask, _)| mask.contains(ReadFlags::QUEUE_OVERFLOW))
        {
            // No overflow read, none left behind: the events read are not lost, only not
            // applied yet (as any event is, a moment after it happens).
            self.up.store(false, Ordering::SeqCst);
        }
    }

    /// A drain emptied the queue or met an overflow, and applied (marked) what it read.
    fn caught_up(&self) {
        self.was_full.store(false, Ordering::SeqCst);
        self.up.store(false, Ordering::SeqCst);
    }

    fn behind(&self, fd: &OwnedFd, full_at: u64) -> bool {
        rustix::io::ioctl_fionread(fd).unwrap_or(u64::MAX) >= full_at || self.up.load(Ordering::SeqCst)
    }
}

/// The watch: an inotify instance and the thread that reads it.
pub struct Watch {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn now_nanos() -> Nanos {
    crate::policy::nanos(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// The fewest bytes the kernel's queue holds when it overflowed: an overflow is queued once
/// `fs.inotify.max_queued_events` events are (a limit an instance takes when it is made), and
/// an event is at least 16 bytes. Unknown, any byte queued may be one.
fn full_at() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(1, |n| n.saturating_mul(SMALLEST_EVENT).max(1))
}

/// Events read in one round from which the thread takes them as a stream ([`GATHER`]).
const BUSY_EVENTS: u64 = 64;

/// How long the thread lets events gather after a busy round before it looks again.
const GATHER: Duration = Duration::from_millis(2);

/// `struct inotify_event` (descriptor, mask, cookie, name length) with no name.
const SMALLEST_EVENT: u64 = 16;

/// The events read by one [`read_batch`]: descriptor, mask, name.
type RawEvent = (i32, ReadFlags, Option<Vec<u8>>);

/// Reads events into `batch` until the queue is empty (returns true), or until at least `limit`
/// are read and the reader's buffer is used up (false), or a read fails (false). Never stops
/// inside a buffer: events the kernel handed over and left in it would be lost, unseen and
/// unaccounted (no overflow tells of them). `before_read` is called before each read.
fn read_batch<F: AsFd>(
    reader: &mut inotify::Reader<'_, F>,
    batch: &mut Vec<RawEvent>,
    limit: usize,
    mut before_read: impl FnMut(),
) -> bool {
    loop {
        if reader.is_buffer_empty() {
            if batch.len() >= limit {
                return false;
            }
            before_read();
        }
        match reader.next() {
            Ok(ev) => batch.push((ev.wd(), ev.events(), ev.file_name().map(|n| n.to_bytes().to_vec()))),
            Err(rustix::io::Errno::AGAIN) => return true,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                warn!(error = %e, "cannot read inotify events");
                return false;
            }
        }
    }
}

fn new_instance() -> io::Result<OwnedFd> {
    Ok(inotify::init(
        inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK,
    )?)
}

impl Watch {
    /// Starts a watch and its thread. Fails when inotify is not available at all.
    pub fn start(
        index: Arc<Mutex<Index>>,
        roots: Roots,
        basis: Vec<Timestamp>,
        tx: mpsc::UnboundedSender<WatchMsg>,
    ) -> io::Result<Watch> {
        let inner = Arc::new(Inner {
            fd: RwLock::new(Arc::new(new_instance()?)),
            nodes: Mutex::new(Nodes::default()),
            index,
            roots,
            basis: RwLock::new(basis),
            tx,
            activity_pending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            limited: AtomicBool::new(false),
            overflows: AtomicU64::new(0),
            wake: rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
            rounds: AtomicU64::new(0),
            new_dirs: Mutex::new(Vec::new()),
            emptied: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            full_at: AtomicU64::new(full_at()),
            lag: Lag::default(),
            draining: Mutex::new(()),
            read_total: AtomicU64::new(0),
        });
        let reader = inner.clone();
        let thread = std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || reader.run())?;
        Ok(Watch {
            inner,
            thread: Some(thread),
        })
    }

    /// Waits (at most `timeout`) until every event queued before the call is applied to the
    /// index and (with `refreshed`) the units they touched are stat'ed again: a sweep then
    /// decides on all that happened before it started. Returns whether it settled in time.
    /// Without `refreshed` it waits only for the events: every open and every file is then in
    /// the index, and only the sums of units not stat'ed yet are old, which a deletion judges
    /// again on fresh stats anyway.
    pub fn settle(&self, timeout: Duration, refreshed: bool) -> bool {
        let start = Instant::now();
        let r0 = self.inner.rounds.load(Ordering::Acquire);
        let _ = rustix::io::write(&self.inner.wake, &1u64.to_ne_bytes());
        loop {
            // A round that began after the call (the one under way may have looked at the queue
            // before it) and emptied the queue: however many events were queued, all applied.
            if self.inner.emptied.load(Ordering::Acquire) >= r0 + 2
                && (!refreshed || !self.inner.index.lock().unwrap_or_else(|e| e.into_inner()).has_dirty())
            {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            let _ = rustix::io::write(&self.inner.wake, &1u64.to_ne_bytes());
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether events may have been lost that the index does not know of yet: the kernel's
    /// queue holds enough to hold an overflow, or held that much when the thread began reading
    /// it and the thread has not yet applied all it read. A sweep decides nothing while this
    /// holds: an overflow sits at the end of the queue, behind up to
    /// `fs.inotify.max_queued_events` events, and the files created meanwhile (a unit's
    /// checksum, a new `.index`) are in no event at all. Waits up to `timeout` for the thread
    /// to catch up; returns true when it did not.
    pub fn behind(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let fd = self.inner.fd.read().unwrap_or_else(|e| e.into_inner()).clone();
            if !self.inner.lag.behind(&fd, self.inner.full_at.load(Ordering::SeqCst)) {
                return false;
            }
            if start.elapsed() >= timeout {
                return true;
            }
            // The flag is up for every read (tens of microseconds): yield first, then wake
            // the thread and sleep while it works through a long queue.
            spins += 1;
            if spins < 100 {
                std::thread::yield_now();
            } else {
                let _ = rustix::io::write(&self.inner.wake, &1u64.to_ne_bytes());
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Reads and applies, on the calling thread, the events queued now, in order with the
    /// thread's drains: a deletion calls it after its checks on disk, so that an open (or a
    /// file) of the unit seen before them is in the index when the unit is judged again. The
    /// thread does not have to be woken for it, which lets it gather a burst of events
    /// instead of waking at each. Returns whether the queue was emptied by `deadline`; it
    /// reads a few batches at most, so events that never stop coming leave it false, and so
    /// does a drain or a refresh of the thread's that holds on past the deadline (a stat on a
    /// mount that hangs): the deletion is then not decided, never waited on for ever.
    pub fn catch_up(&self, deadline: Instant) -> bool {
        // First the thread's drain under way, if any: the events it read are applied when
        // it lets go, though the queue they left is empty already.
        let _draining = loop {
            match self.inner.draining.try_lock() {
                Ok(guard) => break guard,
                Err(std::sync::TryLockError::Poisoned(e)) => break e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() >= deadline => return false,
                Err(std::sync::TryLockError::WouldBlock) => std::thread::sleep(Duration::from_micros(50)),
            }
        };
        let fd = self.inner.fd.read().unwrap_or_else(|e| e.into_inner()).clone();
        if rustix::io::ioctl_fionread(&*fd).is_ok_and(|queued| queued == 0) {
            return true;
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
        (0..4).any(|_| self.inner.drain(&fd, &mut buf))
    }

    /// What a drain does when it reads an overflow, done from the calling thread as a
    /// deletion's catch-up does it: a new instance, no watches, events marked lost. For tests.
    #[doc(hidden)]
    pub fn overflow_now(&self) {
        self.inner.overflow(now_nanos());
    }

    /// The directories announced since the last call: a sweep that settled the watch reads
    /// those the walking thread has not read yet, so it decides on what happened before it.
    pub fn take_new_dirs(&self) -> Vec<(u32, PathBuf, DirRole)> {
        std::mem::take(&mut *self.inner.new_dirs.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Marks the activity notice as taken, so the next file event sends another.
    pub fn take_activity(&self) {
        self.inner.activity_pending.store(false, Ordering::Release);
    }

    pub fn set_basis(&self, basis: Vec<Timestamp>) {
        *self.inner.basis.write().unwrap_or_else(|e| e.into_inner()) = basis;
    }

    /// Directories watched now.
    pub fn watched(&self) -> usize {
        self.inner.nodes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn limited(&self) -> bool {
        self.inner.limited.load(Ordering::Relaxed)
    }

    pub fn overflows(&self) -> u64 {
        self.inner.overflows.load(Ordering::Relaxed)
    }

    /// Watches the layout directory open as `fd` (`rel` below root `root`, of role `role`).
    pub fn add_layout(&self, fd: BorrowedFd, root: u32, rel: &Path, role: DirRole) -> Result<(), AddError> {
        self.inner.add(
            fd,
            DIR_EVENTS,
            Node::Layout {
                root,
                rel: rel.to_owned(),
                role,
            },
        )
    }

    /// Watches store `store` open as `fd`.
    pub fn add_store(&self, fd: BorrowedFd, store: StoreId) -> Result<(), AddError> {
        self.inner.add(fd, DIR_EVENTS, Node::Store { store })
    }

    /// Watches sub-directory `subdir` of store `store`, open as `fd`.
    pub fn add_subdir(&self, fd: BorrowedFd, store: StoreId, subdir: SubdirId) -> Result<(), AddError> {
        self.inner.add(fd, FILE_EVENTS, Node::Sub { store, subdir })
    }

    /// Drops every watch below root `root` (it is gone, or about to be walked afresh).
    pub fn forget_root(&self, root: u32) {
        self.inner.forget(|n, index| match n {
            Node::Layout { root: r, .. } => *r == root,
            Node::Store { store } | Node::Sub { store, .. } => index.store(*store).is_none_or(|s| s.root == root),
        });
    }

    /// Whether root `root` is still the one whose inode is `ino` (a walk of a root removed by
    /// a reload must add nothing more).
    pub fn root_is(roots: &Roots, root: u32, ino: u64) -> bool {
        let roots = roots.read().unwrap_or_else(|e| e.into_inner());
        matches!(roots.get(root as usize), Some(Some(r)) if r.ino == ino)
    }

    /// The instance's generation (see [`Inner::generation`]).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Drops the watches of store `store` (it left the index).
    pub fn forget_store(&self, store: StoreId) {
        self.inner.forget_store(store);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        let _ = rustix::io::write(&self.inner.wake, &1u64.to_ne_bytes());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn add(&self, fd: BorrowedFd, events: WatchFlags, node: Node) -> Result<(), AddError> {
        // The lock is held across the add, so the reader cannot see the new descriptor's
        // first events before it knows what the descriptor is; and taken before the instance
        // is read, so a reset (which holds it too) cannot slip in between: the descriptor is
        // always the instance's whose table it goes into.
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let ino = self.fd.read().unwrap_or_else(|e| e.into_inner()).clone();
        let magic = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let added = inotify::add_watch(&*ino, magic.as_str(), events | WATCH_FLAGS);
        match added {
            Ok(wd) => {
                self.limited.store(false, Ordering::Relaxed);
                match nodes.get(wd) {
                    // The same directory walked again keeps its watch.
                    Some(known) if *known == node => Ok(()),
                    // The same directory reached as another (two roots on one directory, or a
                    // rename not seen yet): one watch cannot say which, so the second stays
                    // unwatched and is walked at every interval.
                    Some(known) => {
                        debug!(?known, ?node, "directory already watched as another one");
                        Err(AddError::Other(io::Error::other(
                            "already watched as another directory",
                        )))
                    }
                    None => {
                        if let Some(old) = nodes.insert(wd, node) {
                            // The directory it watched no longer holds the slot's name.
                            let _ = inotify::remove_watch(&*ino, old);
                        }
                        Ok(())
                    }
                }
            }
            Err(rustix::io::Errno::NOSPC) => {
                self.limited.store(true, Ordering::Relaxed);
                // Once per episode: at the limit, adds succeed and fail in turn as other
                // watches go (say, once an hour).
                static LAST: Mutex<Option<Instant>> = Mutex::new(None);
                let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                    *last = Some(Instant::now());
                    warn!(
                        watches = nodes.len(),
                        "inotify watch limit reached (raise fs.inotify.max_user_watches); directories without \
                         a watch are walked at every interval and judged by their timestamps until watches free up"
                    );
                }
                Err(AddError::Limit)
            }
            Err(e) => Err(AddError::Other(e.into())),
        }
    }

    fn forget(&self, mut which: impl FnMut(&Node, &Index) -> bool) {
        let ino = self.fd.read().unwrap_or_else(|e| e.into_inner()).clone();
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|wd, n| {
            let drop = which(n, &index);
            if drop {
                let _ = inotify::remove_watch(&*ino, wd);
            }
            !drop
        });
    }

    fn reset(&self) -> io::Result<()> {
        let fresh = Arc::new(new_instance()?);
        self.full_at.store(full_at(), Ordering::SeqCst);
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        *self.fd.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.generation.fetch_add(1, Ordering::AcqRel);
        nodes.clear();
        Ok(())
    }

    fn send(&self, msg: WatchMsg) {
        let _ = self.tx.send(msg);
    }

    fn activity(&self) {
        if !self.activity_pending.swap(true, Ordering::AcqRel) {
            self.send(WatchMsg::Activity);
        }
    }

    /// The thread: waits for events, applies each, and refreshes the units they touched once
    /// the queue is drained.
    fn run(self: Arc<Self>) {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut last_refresh = Instant::now();
        let mut read_before = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let ino = self.fd.read().unwrap_or_else(|e| e.into_inner()).clone();
            let pending = self.index.lock().unwrap_or_else(|e| e.into_inner()).has_dirty();
            let mut fds = [
                PollFd::new(&*ino, PollFlags::IN),
                PollFd::new(&self.wake, PollFlags::IN),
            ];
            // Idle, the thread sleeps a second at a time (it notices a stop); with units to
            // refresh, it comes back soon after events stop arriving.
            let timeout = rustix::event::Timespec {
                tv_sec: if pending { 0 } else { 1 },
                tv_nsec: if pending { 20_000_000 } else { 0 },
            };
            let ready = rustix::event::poll(&mut fds, Some(&timeout)).unwrap_or(0);
            let (events, woken) = (
                fds[0].revents().contains(PollFlags::IN),
                fds[1].revents().contains(PollFlags::IN),
            );
            if woken {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(&self.wake, &mut b);
            }
            let emptied = {
                let _draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
                // The instance may have been replaced meanwhile by a deletion catching up
                // (it read an overflow): the old one's events must not be applied to the new
                // one's watches, whose descriptors reuse its numbers. Its events are lost
                // events, marked as such by the overflow; the next round polls the new one
                // (this one empties nothing).
                let current = Arc::ptr_eq(&ino, &self.fd.read().unwrap_or_else(|e| e.into_inner()));
                // With no events, taken too: a catch-up may hold events it read and has not
                // applied yet, and `settle` must not count this round as emptied before they are.
                current && (!events || self.drain(&ino, &mut buf))
            };
            if pending && (ready == 0 || woken || last_refresh.elapsed() > Duration::from_millis(200)) {
                self.refresh_dirty(4096);
                last_refresh = Instant::now();
            }
            let round = self.rounds.fetch_add(1, Ordering::AcqRel) + 1;
            if emptied {
                self.emptied.store(round, Ordering::Release);
            }
            // The events read since the last round, by this thread or by deletions catching
            // up. Only with room to spare: a round gathers about as many as the last one
            // read, and a queue made small (`fs.inotify.max_queued_events`) must not overflow
            // while the thread sleeps.
            let total = self.read_total.load(Ordering::Relaxed);
            let read = total.saturating_sub(std::mem::replace(&mut read_before, total));
            let room = read.saturating_mul(SMALLEST_EVENT * 16) < self.full_at.load(Ordering::Relaxed);
            if emptied && read >= BUSY_EVENTS && room {
                // Events are pouring in (a sweep deleting thousands of files a second, each a
                // rename and an unlink: three events): let them gather instead of waiting in
                // poll, where each one queued costs the process that made it a wake-up of
                // this thread (an interrupt to the other core; 11 % of a deleting thread's
                // CPU under `perf`, and half a core here, issue 24). A deletion does not wait
                // for it: it applies what is queued itself before it judges a unit again
                // (`catch_up`). A queue filling meanwhile is noticed by `behind` as before,
                // from the queue's length, and the thread reads on at once when a round reads
                // so many that the next might not fit.
                std::thread::sleep(GATHER);
            }
        }
    }

    /// Reads and applies the events queued now, up to a batch; returns whether the queue was
    /// emptied. The caller holds `draining`.
    fn drain(&self, ino: &Arc<OwnedFd>, buf: &mut [MaybeUninit<u8>]) -> bool {
        let mut reader = inotify::Reader::new(&**ino, buf);
        let mut batch: Vec<RawEvent> = Vec::new();
        let full_at = self.full_at.load(Ordering::SeqCst);
        let emptied = read_batch(&mut reader, &mut batch, 4096, || self.lag.before_read(ino, full_at));
        self.lag.read(&batch);
        let at = now_nanos();
        let mut overflowed = false;
        self.read_total.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for (wd, mask, name) in batch {
            tracing::trace!(wd, ?mask, name = ?name.as_deref().map(String::from_utf8_lossy), "inotify event");
            if mask.contains(ReadFlags::QUEUE_OVERFLOW) {
                self.overflow(at);
                overflowed = true;
                break;
            }
            self.apply(wd, mask, name.as_deref(), at);
        }
        // All read is applied, the overflow marked in the index: a sweep may decide again.
        if emptied || overflowed {
            self.lag.caught_up();
        }
        emptied || overflowed
    }

    fn overflow(&self, at: Nanos) {
        self.overflows.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.reset() {
            warn!(error = %e, "cannot start a new inotify instance after an overflow");
        }
        // Nothing is watched until the walk that follows adds the watches again, and the start
        // of each store's watch is then (see walk.rs): the TTL holds every unit for max_age
        // after that, the lost opens may have been anything's. Pressure keeps its floor and its
        // order by the timestamps, which no lost event changes.
        self.index.lock().unwrap_or_else(|e| e.into_inner()).lost_events();
        self.send(WatchMsg::Overflow(at));
    }
}

/// Opens `rel` below root `root` without following a symlink or leaving the root's mount
/// (`openat2` from the root's fd: no symlink, no mount point crossed, nothing outside it).
pub fn open_below(roots: &Roots, root: u32, rel: &Path, flags: OFlags) -> io::Result<(OwnedFd, MountId)> {
    let (path, mount, ino) = {
        let roots = roots.read().unwrap_or_else(|e| e.into_inner());
        let Some(Some(r)) = roots.get(root as usize) else {
            return Err(io::ErrorKind::NotFound.into());
        };
        (r.path.clone(), r.mount, r.ino)
    };
    // The root by its path (the operator's, and it may be a symlink), still the one walked.
    let dir = rustix::fs::open(&path, fsx::PATH_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())?;
    let st = fsx::statx_fd(&dir)?;
    if !mount.same(&MountId::of(&st)) || st.stx_ino != ino {
        return Err(io::Error::other("the root was replaced"));
    }
    let fd = rustix::fs::openat2(
        &dir,
        rel,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV | ResolveFlags::BENEATH,
    )?;
    let st = fsx::statx_fd(&fd)?;
    if !mount.same(&MountId::of(&st)) || fsx::is_mount_root(&st) {
        return Err(io::Error::other("on another mount"));
    }
    Ok((fd, mount))
}

/// The stat of regular file `name` in `dir`: `Ok(None)` when it is gone or not a regular file,
/// `Err` when it cannot be told.
fn stat_file(dir: &OwnedFd, name: &[u8]) -> Result<Option<FileStat>, ()> {
    let Ok(c) = std::ffi::CString::new(name) else {
        return Ok(None);
    };
    match fsx::statx_at(dir, &c) {
        Ok(st) => Ok((rustix::fs::FileType::from_raw_mode(u32::from(st.stx_mode))
            == rustix::fs::FileType::RegularFile)
            .then(|| FileStat::from_statx(&st))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(()),
    }
}

impl crate::sweep::indexed::Backlog for Watch {
    /// Not far behind ([`Watch::behind`]) and every event queued now applied
    /// ([`Watch::catch_up`]), within `timeout`.
    fn behind(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if Watch::behind(self, timeout.saturating_sub(start.elapsed())) {
                return true;
            }
            if self.catch_up(start + timeout) {
                return false;
            }
            if start.elapsed() >= timeout {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deletion catching up while the thread holds the drain (a refresh's stat on a mount
    /// that hangs) gives up at its deadline, unsure, instead of waiting for ever; before, it
    /// waited on the lock with no bound, and every deleting thread with it.
    #[test]
    fn a_catch_up_gives_up_at_its_deadline_while_the_drain_is_held() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let watch = Watch::start(Arc::default(), Arc::default(), Vec::new(), tx).unwrap();
        let held = watch.inner.draining.lock().unwrap();
        let start = Instant::now();
        assert!(!watch.catch_up(start + Duration::from_millis(50)), "not caught up");
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        drop(held);
        assert!(
            watch.catch_up(Instant::now() + Duration::from_secs(5)),
            "caught up once let go"
        );
    }

    #[test]
    fn a_batch_never_ends_inside_what_the_kernel_handed_over() {
        // A batch stopped at its limit in the middle of a read's buffer: the events left in it
        // were dropped with the reader, silently (no overflow tells of them), a file created in
        // a unit among them.
        let dir = tempfile::tempdir().unwrap();
        let fd = new_instance().unwrap();
        inotify::add_watch(&fd, dir.path(), WatchFlags::CREATE).unwrap();
        let n = 1000;
        for i in 0..n {
            std::fs::File::create(dir.path().join(format!("shuffle_0_{i}_0.data"))).unwrap();
        }
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let (mut seen, mut reads) = (0, 0);
        loop {
            let mut reader = inotify::Reader::new(&fd, &mut buf);
            let mut batch = Vec::new();
            let emptied = read_batch(&mut reader, &mut batch, 100, || reads += 1);
            seen += batch.len();
            if emptied {
                break;
            }
        }
        assert_eq!(seen, n, "every event read ({reads} reads)");
    }

    /// A real overflow: `fs.inotify.max_queued_events` events and more.
    fn overflowed() -> (tempfile::TempDir, OwnedFd, u64) {
        let max: u64 = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fd = new_instance().unwrap();
        inotify::add_watch(&fd, dir.path(), WatchFlags::CREATE).unwrap();
        for i in 0..max + 10 {
            std::fs::File::create(dir.path().join(format!("f{i}"))).unwrap();
        }
        (dir, fd, max * SMALLEST_EVENT)
    }

    /// Reads batches of one buffer until one holds the overflow, asking `lag` after each.
    fn read_to_the_overflow(fd: &OwnedFd, full_at: u64, lag: &Lag) -> Vec<bool> {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut behind = Vec::new();
        loop {
            let mut reader = inotify::Reader::new(fd, &mut buf);
            let mut batch = Vec::new();
            let emptied = read_batch(&mut reader, &mut batch, 1, || lag.before_read(fd, full_at));
            lag.read(&batch);
            behind.push(lag.behind(fd, full_at));
            if batch.iter().any(|(_, m, _)| m.contains(ReadFlags::QUEUE_OVERFLOW)) || emptied {
                return behind;
            }
        }
    }

    #[test]
    fn an_overflow_is_behind_until_it_is_applied_however_the_queue_is_read() {
        // Read a buffer at a time: the queue soon holds less than a full one's bytes, the
        // overflow still at its end.
        let (_dir, fd, full_at) = overflowed();
        let lag = Lag::default();
        let behind = read_to_the_overflow(&fd, full_at, &lag);
        assert!(behind.len() > 1 && behind.iter().all(|b| *b), "{behind:?}");
        lag.caught_up();
        assert!(!lag.behind(&fd, full_at));

        // The queue filled up after the look and before the read (here: the look is told the
        // queue is never that full): the overflow was read under the flag, which stays up.
        let (_dir, fd, _) = overflowed();
        let lag = Lag::default();
        let behind = read_to_the_overflow(&fd, u64::MAX, &lag);
        assert_eq!(behind.last(), Some(&true), "{behind:?}");
        assert!(
            behind[..behind.len() - 1].iter().all(|b| !b),
            "no overflow read yet: {behind:?}"
        );
    }
}
