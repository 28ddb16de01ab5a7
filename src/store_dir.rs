//! One block store (`blockmgr-*` or `merge_manager*`), read and deleted in through directory
//! file descriptors, in the manner of systemd-tmpfiles' `dir_cleanup()`, and more strictly.
//!
//! The store is opened from its root one component at a time with `O_NOFOLLOW | O_DIRECTORY`,
//! each directory checked to be on the root's own mount ([`crate::fsx`]), so a directory swapped
//! for a symlink, a mount point or a bind mount cannot redirect the scan or a deletion. Each `NN`
//! sub-directory is opened once as an `O_PATH` fd and everything in it is done relative to that
//! fd: it is listed with `getdents` through `.` opened from it (closed as soon as it is read),
//! its Spark files are stat'ed, one `fstatat` each.
//!
//! A store is *complete* when every sub-directory was listed: a unit's files are spread over
//! several `NN` directories, so when one of them could not be read (permissions, no fds left, a
//! mount or a symlink in its place, removed meanwhile) no unit of the store is known whole, and
//! none may be deleted ([`Listing::complete`]).
//!
//! Deleting a unit ([`StoreDir::delete_unit`]) is all or nothing as far as the kernel allows:
//! - every file and every directory holding one is checked first (still the file judged and no
//!   newer use, a regular file on the root's mount and not a mount point, no immutable or
//!   append-only attribute on the file or its directory), and any doubt keeps the whole unit;
//! - an unnamed `O_TMPFILE` held open for writing in the store while its units are deleted makes
//!   a `mount -o remount,ro` wait (EBUSY) instead of landing between two files of a unit;
//! - each file is first renamed to a private name in its own directory, stat'ed again under that
//!   name (nobody else can swap it there) and only then unlinked, so a stale file replaced by a
//!   fresh one of the same name between the check and the unlink is put back, not deleted;
//! - a unit in hand is finished before the process exits ([`deletion_gate`]).

use std::ffi::CStr;
use std::hash::Hasher;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};
use std::sync::RwLock;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, StatVfsMountFlags};

use crate::config::Timestamp;
use crate::disk::FileStat;
use crate::fsx::{self, DirError, MountId, PATH_FLAGS, READ_FLAGS, UNDELETABLE};
use crate::policy::Nanos;
use crate::spark::{self, DirRole, Kind};

/// Sub-directory fds kept open per store; past this (a large `spark.diskStore.subDirectories`)
/// they are re-opened when needed, so a sweep's fd count stays small.
const MAX_OPEN_SUBDIRS: usize = 128;

/// The name a file takes between its last check and its unlink. It starts with a dot, so it is
/// never a Spark name; a file left under it by a crash is removed by a later sweep
/// ([`Listing::leftovers`]).
pub const PRIVATE_PREFIX: &[u8] = b".shuffle-janitor-deleting.";

/// A leftover of a deletion that did not finish (a file under [`PRIVATE_PREFIX`]) is removed
/// once it is this old, in nanoseconds of its ctime: a deletion in progress holds its files
/// under the private name for microseconds.
pub const LEFTOVER_AGE_NS: Nanos = 10 * 60 * 1_000_000_000;

/// Held shared while a unit is being deleted; the daemon takes it exclusively before it exits,
/// so it never exits with a unit deleted in part. Shared, not a mutex: deletions on different
/// threads do not wait for each other (they did, and a sweep's deleting threads spent most of
/// their time queued here: issue 24); the write side still waits for every unit in hand, and
/// once it waits no new unit starts (std's `RwLock` on Linux lets a waiting writer go first).
pub fn deletion_gate() -> &'static RwLock<()> {
    static GATE: RwLock<()> = RwLock::new(());
    &GATE
}

/// A Spark block file inside a store's sub-directory. Its name is kept in the store's
/// [`Names`], not in a string of its own: one allocation per store instead of one per file.
#[derive(Clone, Copy, Debug)]
pub struct StoreFile {
    /// Index into the store's sub-directory names.
    pub subdir: u32,
    name_at: usize,
    name_len: u16,
    /// `name[..stem_len]` is the unit stem (see [`spark::Block`]).
    stem_len: u16,
    /// A hash of the stem: grouping sorts by it first, so stems are compared only on a tie.
    stem_hash: u32,
    pub kind: Kind,
    pub stat: FileStat,
}

impl StoreFile {
    pub fn name<'a>(&self, names: &'a Names) -> &'a [u8] {
        &names.0[self.name_at..self.name_at + usize::from(self.name_len)]
    }

    pub fn stem<'a>(&self, names: &'a Names) -> &'a [u8] {
        &names.0[self.name_at..self.name_at + usize::from(self.stem_len)]
    }

    pub fn stem_hash(&self) -> u32 {
        self.stem_hash
    }
}

/// The file names of one store's [`StoreFile`]s, end to end.
#[derive(Debug, Default)]
pub struct Names(Vec<u8>);

/// Fx hashes eight bytes per step: cheap, and good enough to make ties rare among one store's
/// stems (a tie costs only a comparison of the two stems).
pub fn stem_hash(stem: &[u8]) -> u32 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(stem);
    let h = h.finish();
    (h ^ (h >> 32)) as u32
}

/// A file left under [`PRIVATE_PREFIX`] by a deletion that did not finish (the process was
/// killed between the rename and the unlink).
#[derive(Clone, Debug)]
pub struct Leftover {
    pub subdir: u32,
    pub name: Box<[u8]>,
    pub stat: FileStat,
}

/// What reading a store found: its Spark files and everything else it counted.
#[derive(Debug, Default)]
pub struct Listing {
    /// Names of its `NN` sub-directories.
    pub subdirs: Vec<Box<str>>,
    pub files: Vec<StoreFile>,
    pub names: Names,
    /// Entries that are not Spark block files in a sub-directory: never touched.
    pub unknown: u64,
    /// Sub-directories that were not listed because they are not the store's own any more (a
    /// symlink or a mount in their place) or are gone, with why. Not errors, but their files
    /// are unknown.
    pub skipped: Vec<(String, DirError)>,
    /// Directories or files that could not be read or stat'ed.
    pub errors: Vec<(Failure, String, io::Error)>,
    pub leftovers: Vec<Leftover>,
}

impl Listing {
    fn clear(&mut self) {
        self.subdirs.clear();
        self.files.clear();
        self.names.0.clear();
        self.unknown = 0;
        self.skipped.clear();
        self.errors.clear();
        self.leftovers.clear();
    }

    /// Whether every sub-directory was listed and every Spark file in it stat'ed: only then is
    /// each unit known whole, and only then may any be deleted.
    pub fn complete(&self) -> bool {
        self.skipped.is_empty() && self.errors.is_empty()
    }
}

/// One file of a unit to delete.
#[derive(Clone, Copy, Debug)]
pub struct UnitFile<'a> {
    /// Index into the store's sub-directory names.
    pub subdir: u32,
    pub name: &'a [u8],
    /// The stat the unit was judged on, when the sweep has it: the file deleted must still be
    /// that file (same inode, size and mtime).
    pub judged: Option<&'a FileStat>,
}

/// A file unlinked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    /// Index into the unit's files.
    pub index: usize,
    /// Apparent size.
    pub size: u64,
    /// Allocated bytes.
    pub alloc: u64,
    /// What the unlink returned to the filesystem ([`FileStat::freeable`]).
    pub freed: u64,
}

/// What became of one unit.
#[derive(Debug, Default)]
pub struct UnitOutcome {
    pub removed: Vec<Removed>,
    /// Something changed since the unit was judged: nothing was deleted.
    pub changed: bool,
    /// Failures with the file they concern (by index) and the operation. Before any unlink,
    /// a failure keeps the whole unit.
    pub errors: Vec<(usize, Failure, io::Error)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Reading a directory.
    Walk,
    Stat,
    Unlink,
}

/// An open `NN` sub-directory. Shared: a unit in hand holds its directories' fds, so closing
/// one to stay under [`MAX_OPEN_SUBDIRS`] never takes a directory from under a unit.
#[derive(Debug)]
struct Sub {
    fd: std::sync::Arc<OwnedFd>,
    /// Immutable or append-only: nothing in it can be unlinked.
    undeletable: bool,
}

/// An open block store.
#[derive(Debug)]
pub struct StoreDir {
    dir: OwnedFd,
    mount: MountId,
    subdirs: Vec<Option<Sub>>,
    open_subdirs: usize,
    /// The `O_TMPFILE` held while units are deleted here (see the module docs); `None` until the
    /// first deletion, or when the filesystem cannot make one.
    write_guard: Option<Option<OwnedFd>>,
    /// What the store's liveness is judged on.
    facts: DirFacts,
    /// The directory holding the store, and its name there (none when the root is the store):
    /// where the store is removed from when it is dead.
    parent: Option<(OwnedFd, std::ffi::OsString)>,
    /// The `executor-*` directory holding the store (standalone layout), its name and the fd
    /// of the directory holding it.
    executor: Option<(OwnedFd, std::ffi::OsString)>,
    /// `(device, inode)` of the sub-directories opened.
    subdir_ids: Vec<(u64, u64)>,
}

/// What a store's own directory and its sub-directories say about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirFacts {
    /// Its birth time, where the filesystem records one.
    pub birth: Option<Nanos>,
    /// Its last change (ctime).
    pub changed: Nanos,
    /// The newest mtime or ctime of it and the sub-directories read: the last time anything
    /// was created, removed or renamed in it.
    pub activity: Nanos,
    /// The `executor-*` directory holding it, as `(device, inode)`.
    pub executor_dir: Option<(u64, u64)>,
    /// Its own `(device, inode)`.
    pub id: (u64, u64),
    /// On a network or FUSE filesystem ([`fsx::is_shared_fs`]).
    pub shared_fs: bool,
    /// When it was first seen to exist, in nanoseconds of `CLOCK_BOOTTIME` (the clock of
    /// processes' start times, which no step of the wall clock moves): it was born by then. The
    /// open that read these facts, or, in the daemon's index, the first read of this same
    /// directory ([`DirFacts::keep_first_seen`]).
    pub seen_boot: Option<Nanos>,
}

impl DirFacts {
    /// Keeps the earlier sighting of `earlier` when it is of this same directory: same
    /// `(device, inode)` and the same recorded birth (an inode number reused by a new store has
    /// another birth; without a birth time nothing is carried over).
    pub fn keep_first_seen(&mut self, earlier: &DirFacts) {
        let same = earlier.id == self.id && earlier.birth.is_some() && earlier.birth == self.birth;
        if same && let (Some(e), Some(n)) = (earlier.seen_boot, self.seen_boot) {
            self.seen_boot = Some(e.min(n));
        }
    }
}

fn statx_time(t: &rustix::fs::StatxTimestamp) -> Nanos {
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(t.tv_nsec))
}

/// The newest of a directory's mtime and ctime.
fn dir_changed(st: &rustix::fs::Statx) -> Nanos {
    statx_time(&st.stx_mtime).max(statx_time(&st.stx_ctime))
}

/// How reaping a store went.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Directories removed (in a dry run: that would be): sub-directories, the store, its
    /// `executor-*` directory.
    pub dirs: u32,
    /// The store itself is gone (would be).
    pub store: bool,
    /// Why it was kept, when it was, without an error: it is not dead after all.
    pub kept: Option<&'static str>,
    /// What stopped the removal, with what had been removed before (`dirs`).
    pub error: Option<io::Error>,
}

fn errno_io(e: rustix::io::Errno) -> io::Error {
    e.into()
}

impl StoreDir {
    /// Opens `root/rel` (`rel` may be empty: the root is a store) without following any symlink
    /// below `root` and without leaving `mount`. `root` itself is the operator's and may be a
    /// symlink.
    pub fn open(root: &Path, rel: &Path, mount: MountId) -> Result<StoreDir, DirError> {
        StoreDir::open_in(root, None, rel, mount)
    }

    /// [`StoreDir::open`], checking too that the root is still the directory `root_ino` the
    /// sweep resolved (not one put under its path since).
    pub fn open_in(root: &Path, root_ino: Option<u64>, rel: &Path, mount: MountId) -> Result<StoreDir, DirError> {
        let parts: Vec<_> = rel.components().collect();
        let root_flags = if parts.is_empty() { READ_FLAGS } else { PATH_FLAGS };
        let mut dir = rustix::fs::open(root, root_flags.difference(OFlags::NOFOLLOW), Mode::empty())
            .map_err(|e| DirError::Io(e.into()))?;
        let mut st = fsx::statx_fd(&dir).map_err(DirError::Io)?;
        if !mount.same(&MountId::of(&st)) || root_ino.is_some_and(|i| i != st.stx_ino) {
            return Err(DirError::Foreign);
        }
        // The directories above the store, kept for removing it: (fd, its name, its statx).
        let mut chain: Vec<(OwnedFd, std::ffi::OsString, rustix::fs::Statx)> = Vec::new();
        for (i, c) in parts.iter().enumerate() {
            let Component::Normal(name) = c else {
                return Err(DirError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "store path is not plain",
                )));
            };
            let flags = if i + 1 == parts.len() { READ_FLAGS } else { PATH_FLAGS };
            let (next, next_st) = fsx::open_dir_at(&dir, *name, flags, &mount)?;
            let above = std::mem::replace(&mut dir, next);
            chain.push((above, name.to_os_string(), std::mem::replace(&mut st, next_st)));
        }
        let birth = (st.stx_mask & rustix::fs::StatxFlags::BTIME.bits() != 0)
            .then(|| statx_time(&st.stx_btime))
            .filter(|b| *b != 0);
        // chain[k] = (fd of the directory holding component k, component k's name, statx of
        // the directory holding it): the store is the last component.
        let parent = chain.pop().map(|(fd, name, _)| (fd, name));
        let executor = match (&parent, chain.pop()) {
            (Some(_), Some((fd, name, st_holder))) if name.to_str().is_some_and(|n| n.starts_with("executor-")) => {
                let _ = st_holder;
                Some((fd, name))
            }
            _ => None,
        };
        let executor_dir = match &executor {
            Some((fd, name)) => fsx::statx_at(
                fd,
                &std::ffi::CString::new(name.as_encoded_bytes()).map_err(|e| DirError::Io(io::Error::other(e)))?,
            )
            .ok()
            .map(|x| (rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor), x.stx_ino)),
            None => None,
        };
        let shared_fs = fsx::is_shared_fs(&dir);
        Ok(StoreDir {
            dir,
            mount,
            subdirs: Vec::new(),
            open_subdirs: 0,
            write_guard: None,
            facts: DirFacts {
                birth,
                changed: statx_time(&st.stx_ctime),
                activity: dir_changed(&st),
                executor_dir,
                id: (MountId::of(&st).dev, st.stx_ino),
                shared_fs,
                seen_boot: Some(crate::procs::since_boot_ns()),
            },
            subdir_ids: Vec::new(),
            parent,
            executor,
        })
    }

    /// The store's own facts, and the activity of the sub-directories read so far.
    pub fn facts(&self) -> DirFacts {
        self.facts
    }

    /// `(device, inode)` of the store and of every sub-directory read: a process holding one
    /// of them open holds the store.
    pub fn dir_ids(&self) -> Vec<(u64, u64)> {
        std::iter::once(self.facts.id)
            .chain(self.subdir_ids.iter().copied())
            .collect()
    }

    fn subdir(&mut self, index: usize, name: &str) -> Result<&Sub, DirError> {
        if self.subdirs.len() <= index {
            self.subdirs.resize_with(index + 1, || None);
        }
        if self.subdirs[index].is_none() {
            if self.open_subdirs >= MAX_OPEN_SUBDIRS {
                // Close one to stay under the cap; it is re-opened if needed again.
                if let Some(slot) = self.subdirs.iter_mut().find(|s| s.is_some()) {
                    *slot = None;
                    self.open_subdirs -= 1;
                }
            }
            let (fd, st) = fsx::open_dir_at(&self.dir, name, PATH_FLAGS, &self.mount)?;
            self.facts.activity = self.facts.activity.max(dir_changed(&st));
            self.subdir_ids.push((MountId::of(&st).dev, st.stx_ino));
            self.subdirs[index] = Some(Sub {
                fd: std::sync::Arc::new(fd),
                undeletable: st.stx_attributes.intersects(UNDELETABLE),
            });
            self.open_subdirs += 1;
        }
        Ok(self.subdirs[index].as_ref().expect("opened above"))
    }

    /// Reads the store into `out` (cleared first, its buffers reused): its `NN` sub-directories
    /// and the Spark files in them, one `fstatat` per Spark file. `buf` is getdents' buffer.
    pub fn read(&mut self, buf: &mut Vec<u8>, out: &mut Listing) {
        self.read_observed(buf, out, &mut |_, _| {});
    }

    /// [`StoreDir::read`], calling `opened` with each directory's fd (the store's with `None`,
    /// each sub-directory's with its name) after it is opened and checked and before it is
    /// listed: the daemon watches it there, so nothing created after the listing is missed.
    pub fn read_observed(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Listing,
        opened: &mut dyn FnMut(std::os::fd::BorrowedFd, Option<&str>),
    ) {
        out.clear();
        opened(self.dir.as_fd(), None);
        let mut subdirs = std::mem::take(&mut out.subdirs);
        let r = fsx::for_each_entry(&self.dir, buf, |name, ftype| {
            let role = name
                .to_str()
                .ok()
                .and_then(|n| spark::child_dir_role(DirRole::Store, n));
            match (role, ftype) {
                // DT_UNKNOWN (XFS without ftype, some network filesystems): opening it with
                // O_DIRECTORY | O_NOFOLLOW settles it.
                (Some(DirRole::SubDir), FileType::Directory | FileType::Unknown) => {
                    subdirs.push(name.to_str().expect("hex").into())
                }
                // Spark would follow a symlink named like a sub-directory and write there:
                // what is behind it is unknown, and so are the units with files there.
                (Some(DirRole::SubDir), FileType::Symlink) => out
                    .skipped
                    .push((name.to_string_lossy().into_owned(), DirError::NotDir)),
                _ => out.unknown += 1,
            }
        });
        match r {
            Ok(()) => {
                for (index, sub) in subdirs.iter().enumerate() {
                    self.read_subdir(index, sub, buf, out, opened);
                }
            }
            // The store itself removed while it was read (its application ended): not an
            // error, but what was listed of it is not all of it.
            Err(DirError::Gone) => out.skipped.push((".".into(), DirError::Gone)),
            Err(e) => out.errors.push((Failure::Walk, String::new(), e.into_io())),
        }
        out.subdirs = subdirs;
    }

    fn read_subdir(
        &mut self,
        index: usize,
        sub: &str,
        buf: &mut Vec<u8>,
        out: &mut Listing,
        opened: &mut dyn FnMut(std::os::fd::BorrowedFd, Option<&str>),
    ) {
        let dev = self.mount.dev;
        match self.subdir(index, sub).map(|_| ()) {
            Ok(()) => {}
            Err(DirError::NotDir) if self.is_plain_file(sub) => {
                // DT_UNKNOWN that turned out to be a file named like a sub-directory: Spark
                // cannot have put anything in it.
                out.unknown += 1;
                return;
            }
            Err(DirError::Io(e)) => return out.errors.push((Failure::Walk, sub.to_string(), e)),
            Err(why) => return out.skipped.push((sub.to_string(), why)),
        }
        let fd = &*self.subdirs[index].as_ref().expect("opened above").fd;
        // Listed through a read fd of its own, closed right after: ext4 keeps a listed
        // directory's entries in a tree until the fd that read them is closed, and freeing
        // 64 of them per store at once, long after they were read, cost more than a syscall.
        // Opened before `opened` adds the daemon's watch, so that the open is not an event its
        // watch thread wakes up for and discards (6,600 at startup over a million files); read
        // after it, so that nothing created after the listing is missed.
        let list = rustix::fs::openat(fd, c".", READ_FLAGS, Mode::empty());
        opened(fd.as_fd(), Some(sub));
        let list = match list {
            Ok(list) => list,
            Err(rustix::io::Errno::NOENT) => return out.skipped.push((sub.to_string(), DirError::Gone)),
            Err(e) => return out.errors.push((Failure::Walk, sub.to_string(), e.into())),
        };
        let subdir = index as u32;
        let r = fsx::for_each_entry(&list, buf, |name, ftype| {
            // A symlink is never followed and never a candidate; DT_UNKNOWN (some filesystems)
            // is settled by the stat below. FIFOs, sockets and devices are never opened.
            let bytes = name.to_bytes();
            if !matches!(ftype, FileType::RegularFile | FileType::Unknown) {
                out.unknown += 1;
                return;
            }
            if let Some(original) = bytes.strip_prefix(PRIVATE_PREFIX) {
                if spark::parse_block_name(original).is_some() {
                    leftover(fd, name, subdir, dev, out);
                } else {
                    out.unknown += 1;
                }
                return;
            }
            let Some((kind, stem_len)) = spark::parse_block_name(bytes) else {
                out.unknown += 1;
                return;
            };
            // Stat'ed as it is listed, by the name getdents gave (already NUL-terminated).
            match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    let stat = FileStat::from_rustix(&st);
                    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                        out.unknown += 1;
                        return;
                    }
                    if stat.dev != dev {
                        // A file mounted over this name from another filesystem: not the
                        // store's, and its unit is not known whole.
                        out.skipped
                            .push((format!("{sub}/{}", name.to_string_lossy()), DirError::Foreign));
                        return;
                    }
                    let name_at = out.names.0.len();
                    out.names.0.extend_from_slice(bytes);
                    out.files.push(StoreFile {
                        subdir,
                        name_at,
                        // NAME_MAX is 255.
                        name_len: bytes.len() as u16,
                        stem_len: stem_len as u16,
                        stem_hash: stem_hash(&bytes[..stem_len]),
                        kind,
                        stat,
                    });
                }
                // Gone between getdents and stat (a task finished its spill): nothing to do.
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => out
                    .errors
                    .push((Failure::Stat, format!("{sub}/{}", name.to_string_lossy()), e.into())),
            }
        });
        match r {
            Ok(()) => {}
            // Removed since it was opened (emptied and removed with its store, or by an
            // operator): gone, not an error; the store is not known whole all the same.
            Err(DirError::Gone) => out.skipped.push((sub.to_string(), DirError::Gone)),
            Err(e) => out.errors.push((Failure::Walk, sub.to_string(), e.into_io())),
        }
    }

    /// Whether `name` in the store is a plain file (not a symlink, not a directory).
    fn is_plain_file(&self, name: &str) -> bool {
        fsx::statx_at(&self.dir, &std::ffi::CString::new(name).expect("hex has no NUL"))
            .is_ok_and(|st| FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::RegularFile)
    }

    /// Takes the write guard (see the module docs) before the first deletion in this store;
    /// `Err(EROFS)` when the filesystem is read-only, so nothing may be started.
    fn guard_writes(&mut self) -> Result<(), io::Error> {
        if self.write_guard.is_none() {
            // The unnamed file holds write access to the mount: remounting it read-only fails
            // with EBUSY while it is open, so a remount cannot land inside a unit.
            let guard = rustix::fs::openat(
                &self.dir,
                c".",
                OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            );
            self.write_guard = Some(match guard {
                Ok(fd) => Some(fd),
                Err(rustix::io::Errno::ROFS) => return Err(errno_io(rustix::io::Errno::ROFS)),
                // No O_TMPFILE here (some filesystems), no inode or fd left: go on without it,
                // after checking the mount is writable now.
                Err(_) => {
                    let st = rustix::fs::fstatvfs(&self.dir).map_err(errno_io)?;
                    if st.f_flag.contains(StatVfsMountFlags::RDONLY) {
                        return Err(errno_io(rustix::io::Errno::ROFS));
                    }
                    None
                }
            });
        }
        Ok(())
    }

    /// Deletes one unit whole, or nothing of it (see the module docs): each file must still be
    /// the one judged (`judged`), with no use newer than `judged_last_use` by `basis`, a
    /// regular file on the store's mount, and deletable. A file already gone counts as
    /// neither.
    pub fn delete_unit(
        &mut self,
        subdir_names: &[Box<str>],
        files: &[UnitFile],
        basis: &[Timestamp],
        judged_last_use: Nanos,
    ) -> UnitOutcome {
        match self.check_unit(subdir_names, files, basis, judged_last_use) {
            Ok(checked) => self.commit_unit(files, checked, basis),
            Err(kept) => kept,
        }
    }

    /// The first half of [`StoreDir::delete_unit`]: checks every file and directory of the unit
    /// without changing anything. `Err` is the outcome when the unit must be kept.
    pub fn check_unit(
        &mut self,
        subdir_names: &[Box<str>],
        files: &[UnitFile],
        basis: &[Timestamp],
        judged_last_use: Nanos,
    ) -> Result<CheckedUnit, UnitOutcome> {
        let mut out = UnitOutcome::default();
        let mut present: Vec<Present> = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            match self.check_file(subdir_names, f, basis, judged_last_use) {
                Ok(Some((stat, dir))) => present.push(Present { index: i, stat, dir }),
                Ok(None) => {} // gone already
                Err(Check::Changed) => {
                    out.changed = true;
                    return Err(out);
                }
                Err(Check::Fail(failure, e)) => {
                    out.errors.push((i, failure, e));
                    return Err(out);
                }
            }
        }
        if let Some(first) = present.first().map(|p| p.index)
            && let Err(e) = self.guard_writes()
        {
            out.errors.push((first, Failure::Unlink, e));
            return Err(out);
        }
        Ok(CheckedUnit { present })
    }

    /// The second half of [`StoreDir::delete_unit`]: detaches each checked file under its
    /// private name, checks it again there, and unlinks them all; anything found changed puts
    /// every detached file back. It works on the directories the check opened (the unit holds
    /// them), whatever the store's cache of directories did meanwhile.
    pub fn commit_unit(&mut self, files: &[UnitFile], checked: CheckedUnit, basis: &[Timestamp]) -> UnitOutcome {
        let mut out = UnitOutcome::default();
        if checked.present.is_empty() {
            return out;
        }
        let _gate = deletion_gate().read().unwrap_or_else(|e| e.into_inner());
        // Nobody can swap a file under its private name, so what is checked there is what is
        // unlinked.
        let mut detached: Vec<Present> = Vec::with_capacity(checked.present.len());
        for p in checked.present {
            let f = &files[p.index];
            let private = [PRIVATE_PREFIX, f.name].concat();
            match rustix::fs::renameat_with(&*p.dir, f.name, &*p.dir, &private[..], RenameFlags::NOREPLACE) {
                Ok(()) => {}
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => {
                    out.errors.push((p.index, Failure::Unlink, e.into()));
                    restore(files, &detached);
                    return out;
                }
            }
            let now = match fsx::statx_at(&*p.dir, &cstring(&private)) {
                Ok(st) if self.deletable(&st) => FileStat::from_statx(&st),
                _ => {
                    // Not a plain file of ours any more: put it back as it is.
                    detached.push(p);
                    out.changed = true;
                    restore(files, &detached);
                    return out;
                }
            };
            // The rename itself moved ctime: what the check compared is compared again but
            // ctime (same inode, size and mtime; atime not moved if it counts).
            let read_since = basis.contains(&Timestamp::Atime) && now.atime > p.stat.atime;
            let changed = now.ino != p.stat.ino || !now.same_file(&p.stat) || read_since;
            detached.push(Present { stat: now, ..p });
            if changed {
                // Replaced or used between the check and the rename.
                out.changed = true;
                restore(files, &detached);
                return out;
            }
        }
        fsx::made_progress();
        for p in &detached {
            let f = &files[p.index];
            let private = [PRIVATE_PREFIX, f.name].concat();
            match rustix::fs::unlinkat(&*p.dir, &private[..], AtFlags::empty()) {
                Ok(()) => out.removed.push(Removed {
                    index: p.index,
                    size: p.stat.size,
                    alloc: p.stat.alloc,
                    freed: p.stat.freeable(),
                }),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    // It was renamed a moment ago in the same directory: put it back.
                    out.errors.push((p.index, Failure::Unlink, e.into()));
                    restore(files, std::slice::from_ref(p));
                }
            }
        }
        out
    }

    /// The checks before any file of a unit is touched. `Ok(None)`: the file is gone.
    fn check_file(
        &mut self,
        subdir_names: &[Box<str>],
        f: &UnitFile,
        basis: &[Timestamp],
        judged_last_use: Nanos,
    ) -> Result<Option<(FileStat, std::sync::Arc<OwnedFd>)>, Check> {
        let index = f.subdir as usize;
        let (dir, undeletable) = match self.subdir(index, &subdir_names[index]) {
            Ok(sub) => (sub.fd.clone(), sub.undeletable),
            // The directory went, and its files with it.
            Err(DirError::Gone) => return Ok(None),
            Err(DirError::Io(e)) => return Err(Check::Fail(Failure::Stat, e)),
            Err(_) => return Err(Check::Changed),
        };
        if undeletable {
            return Err(Check::Fail(
                Failure::Unlink,
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "its directory is immutable or append-only (chattr): nothing in it can be unlinked",
                ),
            ));
        }
        let st = match fsx::statx_at(&*dir, &cstring(f.name)) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Check::Fail(Failure::Stat, e)),
        };
        if FileType::from_raw_mode(u32::from(st.stx_mode)) != FileType::RegularFile {
            return Err(Check::Changed);
        }
        if !self.mount.same(&MountId::of(&st)) || fsx::is_mount_root(&st) {
            // A file mounted over the name: unlink would fail with EBUSY after the rest of
            // the unit went.
            return Err(Check::Fail(
                Failure::Unlink,
                io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    "it is a mount point (a file bind-mounted over it)",
                ),
            ));
        }
        if st.stx_attributes.intersects(UNDELETABLE) {
            // Immutable or append-only: not even root can unlink it.
            return Err(Check::Fail(Failure::Unlink, errno_io(rustix::io::Errno::PERM)));
        }
        let now = FileStat::from_statx(&st);
        if f.judged.is_some_and(|j| !now.same_file(j)) || now.last_use(basis) > judged_last_use {
            return Err(Check::Changed);
        }
        Ok(Some((now, dir)))
    }

    /// A detached file is still a plain file of this store's mount that can be unlinked.
    fn deletable(&self, st: &rustix::fs::Statx) -> bool {
        FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::RegularFile
            && self.mount.same(&MountId::of(st))
            && !fsx::is_mount_root(st)
            && !st.stx_attributes.intersects(UNDELETABLE)
    }

    /// Removes the store, which a sweep found empty and judged dead: each `NN` sub-directory,
    /// then the store, then its `executor-*` directory if that is left empty and
    /// `executor_dir` allows, with `rmdir` relative to fds opened without following symlinks.
    /// Everything is checked before anything is removed: the store holds nothing but
    /// sub-directories, each of them is empty, on the store's mount and not a mount point, none
    /// changed since `judged_activity`, none immutable or append-only; any doubt keeps the whole
    /// store. `rmdir` itself refuses a directory that is not empty, so a file created in the
    /// moment between these checks and the removal stops it there. Never recursive. With
    /// `dry_run`, checks and counts only.
    pub fn reap(&mut self, buf: &mut Vec<u8>, judged_activity: Nanos, executor_dir: bool, dry_run: bool) -> Reaped {
        let mut out = Reaped::default();
        let Some((parent, name)) = self.parent.as_ref() else {
            out.kept = Some("a root");
            return out;
        };
        let _gate = deletion_gate().read().unwrap_or_else(|e| e.into_inner());
        let keep = |mut out: Reaped, why| {
            out.kept = Some(why);
            out
        };
        let fail = |mut out: Reaped, e: io::Error| {
            out.error = Some(e);
            out
        };
        // Listed again: only sub-directories.
        let mut subdirs: Vec<std::ffi::CString> = Vec::new();
        let mut untyped: Vec<std::ffi::CString> = Vec::new();
        let mut other = false;
        let listed = fsx::for_each_entry(&self.dir, buf, |n, ftype| {
            let sub = n
                .to_str()
                .ok()
                .and_then(|x| spark::child_dir_role(DirRole::Store, x))
                .is_some();
            match ftype {
                FileType::Directory if sub => subdirs.push(n.to_owned()),
                // DT_UNKNOWN (ext4 without `filetype`, XFS with ftype=0, some network
                // filesystems): getdents does not say, a stat below does. Taken for "something
                // else" it kept every dead store of such a filesystem for ever.
                FileType::Unknown if sub => untyped.push(n.to_owned()),
                _ => other = true,
            }
        });
        match listed {
            Ok(()) => {}
            Err(DirError::Gone) => return keep(out, "it no longer exists"),
            Err(e) => return fail(out, e.into_io()),
        }
        for n in untyped {
            match fsx::statx_at(&self.dir, &n) {
                Ok(st) if FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::Directory => subdirs.push(n),
                Ok(_) => other = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return keep(out, "it changed since it was judged"),
                Err(e) => return fail(out, e),
            }
        }
        if other {
            return keep(out, "it holds something other than NN directories");
        }
        let st = match fsx::statx_fd(&self.dir) {
            Ok(st) => st,
            Err(e) => return fail(out, e),
        };
        if dir_changed(&st) > judged_activity {
            return keep(out, "it changed since it was judged");
        }
        if st.stx_attributes.intersects(UNDELETABLE) {
            return fail(out, io::Error::other("it is immutable or append-only"));
        }
        // Every sub-directory checked, and seen empty, before the first is removed.
        for sub in &subdirs {
            let (fd, st) = match fsx::open_dir_at(&self.dir, sub.as_c_str(), READ_FLAGS, &self.mount) {
                Ok(x) => x,
                Err(DirError::Gone) => return keep(out, "it changed since it was judged"),
                Err(DirError::Io(e)) => return fail(out, e),
                Err(_) => return keep(out, "an NN directory is a symlink or another mount"),
            };
            if dir_changed(&st) > judged_activity {
                return keep(out, "it changed since it was judged");
            }
            if st.stx_attributes.intersects(UNDELETABLE) {
                return fail(
                    out,
                    io::Error::other(format!(
                        "{} is immutable or append-only",
                        String::from_utf8_lossy(sub.to_bytes())
                    )),
                );
            }
            let mut empty = true;
            match fsx::for_each_entry(&fd, buf, |_, _| empty = false) {
                Ok(()) => {}
                Err(DirError::Gone) => return keep(out, "it changed since it was judged"),
                Err(e) => return fail(out, e.into_io()),
            }
            if !empty {
                return keep(out, "an NN directory is not empty");
            }
        }
        if dry_run {
            out.dirs = u32::try_from(subdirs.len()).unwrap_or(u32::MAX).saturating_add(1);
            out.store = true;
            return out;
        }
        for sub in &subdirs {
            match rustix::fs::unlinkat(&self.dir, sub.as_c_str(), AtFlags::REMOVEDIR) {
                Ok(()) => out.dirs += 1,
                Err(rustix::io::Errno::NOENT) => {}
                // Not empty any more (or busy): the store is not dead after all.
                Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST | rustix::io::Errno::BUSY) => {
                    return keep(out, "something appeared in it while it was removed");
                }
                Err(e) => return fail(out, e.into()),
            }
        }
        match rustix::fs::unlinkat(parent, name.as_os_str(), AtFlags::REMOVEDIR) {
            Ok(()) => {
                out.dirs += 1;
                out.store = true;
            }
            Err(rustix::io::Errno::NOENT) => return out,
            Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST | rustix::io::Errno::BUSY) => {
                return keep(out, "something appeared in it while it was removed");
            }
            Err(e) => return fail(out, e.into()),
        }
        // A standalone executor's directory, once it holds nothing but dead stores (none now),
        // when the caller found no live JVM that may use it.
        if let Some((holder, exec)) = &self.executor
            && executor_dir
            && rustix::fs::unlinkat(holder, exec.as_os_str(), AtFlags::REMOVEDIR).is_ok()
        {
            out.dirs += 1;
        }
        out
    }

    /// Removes a file left by a deletion that did not finish (see [`PRIVATE_PREFIX`]), if it
    /// is still that file. Returns the bytes freed.
    pub fn remove_leftover(&mut self, subdir_names: &[Box<str>], l: &Leftover) -> io::Result<u64> {
        let index = l.subdir as usize;
        let sub = self.subdir(index, &subdir_names[index]).map_err(DirError::into_io)?;
        let st = fsx::statx_at(&*sub.fd, &cstring(&l.name))?;
        let now = FileStat::from_statx(&st);
        if !now.same_file(&l.stat) || !self.deletable(&st) {
            return Ok(0);
        }
        let sub = &*self.subdirs[index].as_ref().expect("opened above").fd;
        rustix::fs::unlinkat(sub, &l.name[..], AtFlags::empty())?;
        Ok(now.freeable())
    }
}

enum Check {
    Changed,
    Fail(Failure, io::Error),
}

/// A checked file of a unit: its index in the unit, its stat, and its directory.
#[derive(Debug)]
struct Present {
    index: usize,
    stat: FileStat,
    dir: std::sync::Arc<OwnedFd>,
}

/// Puts detached files back under their names. A name taken meanwhile by a new file means the
/// detached one was superseded (a rename over it would have removed it): it goes.
fn restore(files: &[UnitFile], detached: &[Present]) {
    for p in detached {
        let f = &files[p.index];
        let private = [PRIVATE_PREFIX, f.name].concat();
        let back = rustix::fs::renameat_with(&*p.dir, &private[..], &*p.dir, f.name, RenameFlags::NOREPLACE);
        match back {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(rustix::io::Errno::EXIST) => {
                let _ = rustix::fs::unlinkat(&*p.dir, &private[..], AtFlags::empty());
            }
            Err(e) => tracing::warn!(
                name = %String::from_utf8_lossy(f.name),
                error = %e,
                "cannot put a file back under its name; a later sweep removes it"
            ),
        }
    }
}

/// A unit whose files all passed [`StoreDir::check_unit`], ready for [`StoreDir::commit_unit`].
#[derive(Debug)]
pub struct CheckedUnit {
    /// The files still there, with their stat at the check and their directory.
    present: Vec<Present>,
}

impl CheckedUnit {
    /// The stats of the unit's files still there, as the check found them: what the unit can
    /// be judged on again.
    pub fn stats(&self) -> impl Iterator<Item = &FileStat> {
        self.present.iter().map(|p| &p.stat)
    }

    /// The files still there, by their index in the unit, with their stats.
    pub fn files(&self) -> impl Iterator<Item = (usize, &FileStat)> {
        self.present.iter().map(|p| (p.index, &p.stat))
    }
}

fn cstring(name: &[u8]) -> std::ffi::CString {
    // Directory entry names never hold a NUL.
    std::ffi::CString::new(name).expect("a file name has no NUL byte")
}

/// Records a leftover private file if it is a regular file on the store's device.
fn leftover(dir: &OwnedFd, name: &CStr, subdir: u32, dev: u64, out: &mut Listing) {
    if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        let stat = FileStat::from_rustix(&st);
        if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && stat.dev == dev {
            out.leftovers.push(Leftover {
                subdir,
                name: name.to_bytes().into(),
                stat,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_share_the_gate_and_an_exit_waits_for_them() {
        // A unit in hand on one thread does not hold up a unit on another...
        let one = deletion_gate().read().unwrap();
        let other = std::thread::spawn(|| deletion_gate().try_read().is_ok())
            .join()
            .unwrap();
        assert!(other, "a second deletion had to wait for the first");
        // ...but an exit (the write side) cannot go while one is in hand.
        assert!(deletion_gate().try_write().is_err());
        drop(one);
    }
}
