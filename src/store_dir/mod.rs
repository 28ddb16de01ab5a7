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
//!
//! Files: `mod.rs` (the types, opening a store), `read.rs` (listing it), `delete.rs` (deleting a
//! unit), `reap.rs` (removing a dead store, and leftovers).

mod delete;
mod read;
mod reap;

use delete::Present;

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
