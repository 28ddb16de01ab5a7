//! One block store (`blockmgr-*` or `merge_manager*`), read and deleted in through directory
//! file descriptors, in the manner of systemd-tmpfiles' `dir_cleanup()`.
//!
//! The store is opened from its root one component at a time with `O_NOFOLLOW | O_DIRECTORY`,
//! checking the device at each step, so a directory swapped for a symlink (or a mount placed
//! over it) cannot redirect either the scan or a deletion. Each `NN` sub-directory is opened
//! once as an `O_PATH` fd, kept for the whole store, and everything in it is done relative to
//! that fd: it is listed with `getdents` through `.` opened from it (closed as soon as it is
//! read), its files are stat'ed, one `fstatat` per Spark file and no path resolution from the
//! root, and before unlinking every file of a unit is stat'ed again and compared with what was
//! judged; only if the whole unit is still as judged is it unlinked, with `unlinkat` on the same
//! fd.

use std::ffi::CStr;
use std::hash::Hasher;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, StatxAttributes, StatxFlags};

use crate::config::Timestamp;
use crate::disk::FileStat;
use crate::policy::Nanos;
use crate::spark::{self, DirRole, Kind};

/// Directories on the way to a store, and its sub-directories: only used as the directory of
/// `*at()` calls, never read through.
const PATH_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
/// The store, and a sub-directory while it is listed: read with getdents.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
/// File attributes that make `unlink` fail with EPERM whatever the permissions.
const UNDELETABLE: StatxAttributes = StatxAttributes::IMMUTABLE.union(StatxAttributes::APPEND);
/// Sub-directory fds kept open per store; past this (a large `spark.diskStore.subDirectories`)
/// they are re-opened when needed, so a sweep's fd count stays small.
const MAX_OPEN_SUBDIRS: usize = 128;

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
fn stem_hash(stem: &[u8]) -> u32 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(stem);
    let h = h.finish();
    (h ^ (h >> 32)) as u32
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
    /// Sub-directories or files that could not be read or stat'ed.
    pub errors: Vec<(Failure, String, io::Error)>,
}

impl Listing {
    fn clear(&mut self) {
        self.subdirs.clear();
        self.files.clear();
        self.names.0.clear();
        self.unknown = 0;
        self.errors.clear();
    }
}

/// What became of one unit.
#[derive(Debug, Default)]
pub struct UnitOutcome {
    /// Indices (into the unit's files) of the files unlinked.
    pub removed: Vec<usize>,
    /// Something changed since the unit was judged: nothing was deleted.
    pub changed: bool,
    /// Failures with the file they concern (by index) and the operation.
    pub errors: Vec<(usize, Failure, io::Error)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Reading a directory.
    Walk,
    Stat,
    Unlink,
}

/// An open block store.
#[derive(Debug)]
pub struct StoreDir {
    dir: OwnedFd,
    dev: u64,
    subdirs: Vec<Option<OwnedFd>>,
    open_subdirs: usize,
}

/// A directory on the way to a file is on another device than the walk saw.
#[derive(Debug, thiserror::Error)]
#[error("directory is on another filesystem than when it was walked")]
struct DeviceChanged;

/// Whether an error from opening a directory means the tree changed under us (a symlink or a
/// non-directory where a directory was, or another filesystem), rather than a failure to report.
fn is_change(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP)
    ) || e.get_ref().is_some_and(|inner| inner.is::<DeviceChanged>())
}

/// Whether a failure to open a store means it was swapped or moved (keep everything, reason
/// `changed`) rather than an error to count.
pub fn open_failure_is_change(e: &io::Error) -> bool {
    is_change(e) || e.kind() == io::ErrorKind::NotFound
}

fn check_dev(fd: &impl AsFd, dev: u64) -> io::Result<()> {
    let st = rustix::fs::fstat(fd)?;
    if FileStat::from_rustix(&st).dev == dev {
        Ok(())
    } else {
        Err(io::Error::other(DeviceChanged))
    }
}

impl StoreDir {
    /// Opens `root/rel` without following any symlink below `root` and without leaving `dev`.
    /// `root` itself is the operator's and may be a symlink.
    pub fn open(root: &Path, rel: &Path, dev: u64) -> io::Result<StoreDir> {
        let parts: Vec<_> = rel.components().collect();
        let mut dir = rustix::fs::open(root, PATH_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())?;
        check_dev(&dir, dev)?;
        for (i, c) in parts.iter().enumerate() {
            let Component::Normal(name) = c else {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "store path is not plain"));
            };
            let flags = if i + 1 == parts.len() { READ_FLAGS } else { PATH_FLAGS };
            dir = rustix::fs::openat(&dir, *name, flags, Mode::empty())?;
            check_dev(&dir, dev)?;
        }
        Ok(StoreDir {
            dir,
            dev,
            subdirs: Vec::new(),
            open_subdirs: 0,
        })
    }

    fn subdir(&mut self, index: usize, name: &str) -> io::Result<&OwnedFd> {
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
            let fd = rustix::fs::openat(&self.dir, name, PATH_FLAGS, Mode::empty())?;
            check_dev(&fd, self.dev)?;
            self.subdirs[index] = Some(fd);
            self.open_subdirs += 1;
        }
        Ok(self.subdirs[index].as_ref().expect("opened above"))
    }

    /// Reads the store into `out` (cleared first, its buffers reused): its `NN` sub-directories
    /// and the Spark files in them, one `fstatat` per Spark file. `buf` is getdents' buffer.
    pub fn read(&mut self, buf: &mut Vec<u8>, out: &mut Listing) {
        out.clear();
        let mut subdirs = std::mem::take(&mut out.subdirs);
        let r = for_each_entry(&self.dir, buf, |name, ftype| {
            let role = name
                .to_str()
                .ok()
                .and_then(|n| spark::child_dir_role(DirRole::Store, n));
            match (role, ftype) {
                // DT_UNKNOWN (XFS without ftype, some network filesystems): opening it with
                // O_DIRECTORY | O_NOFOLLOW settles it, and a non-directory counts as unknown.
                (Some(DirRole::SubDir), FileType::Directory | FileType::Unknown) => {
                    subdirs.push(name.to_str().expect("hex").into())
                }
                _ => out.unknown += 1,
            }
        });
        if let Err(e) = r {
            out.errors.push((Failure::Walk, String::new(), e));
        } else {
            for (index, sub) in subdirs.iter().enumerate() {
                self.read_subdir(index, sub, buf, out);
            }
        }
        out.subdirs = subdirs;
    }

    fn read_subdir(&mut self, index: usize, sub: &str, buf: &mut Vec<u8>, out: &mut Listing) {
        let dev = self.dev;
        let fd = match self.subdir(index, sub) {
            Ok(fd) => fd,
            Err(e) if is_change(&e) || e.kind() == io::ErrorKind::NotFound => {
                // Swapped for a symlink or a mount since the listing, or gone: not ours.
                out.unknown += 1;
                return;
            }
            Err(e) => {
                out.errors.push((Failure::Walk, sub.to_string(), e));
                return;
            }
        };
        // Listed through a read fd of its own, closed right after: ext4 keeps a listed
        // directory's entries in a tree until the fd that read them is closed, and freeing
        // 64 of them per store at once, long after they were read, cost more than a syscall.
        let list = match rustix::fs::openat(fd, c".", READ_FLAGS, Mode::empty()) {
            Ok(list) => list,
            Err(e) => return out.errors.push((Failure::Walk, sub.to_string(), e.into())),
        };
        let subdir = index as u32;
        let r = for_each_entry(&list, buf, |name, ftype| {
            // A symlink is never followed and never a candidate; DT_UNKNOWN (some filesystems)
            // is settled by the stat below.
            let bytes = name.to_bytes();
            let block = match ftype {
                FileType::RegularFile | FileType::Unknown => spark::parse_block_name(bytes),
                _ => None,
            };
            let Some((kind, stem_len)) = block else {
                out.unknown += 1;
                return;
            };
            // Stat'ed as it is listed, by the name getdents gave (already NUL-terminated).
            match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    let stat = FileStat::from_rustix(&st);
                    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || stat.dev != dev {
                        out.unknown += 1; // not a regular file, or bind-mounted from elsewhere
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
        if let Err(e) = r {
            out.errors.push((Failure::Walk, sub.to_string(), e));
        }
    }

    /// Deletes one unit whole, or nothing of it if any file is no longer what was judged:
    /// another inode, size or mtime, not a regular file, or used after `judged_last_use`.
    /// A file already gone counts as neither.
    pub fn delete_unit(
        &mut self,
        subdir_names: &[Box<str>],
        names: &Names,
        files: &[StoreFile],
        basis: &[Timestamp],
        judged_last_use: Nanos,
    ) -> UnitOutcome {
        let mut out = UnitOutcome::default();
        let mut present = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let index = f.subdir as usize;
            let stat = self.subdir(index, &subdir_names[index]).and_then(|dir| {
                Ok(rustix::fs::statx(
                    dir,
                    f.name(names),
                    AtFlags::SYMLINK_NOFOLLOW,
                    StatxFlags::BASIC_STATS,
                )?)
            });
            match stat {
                Ok(st) => {
                    let now = FileStat::from_statx(&st);
                    let regular = FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::RegularFile;
                    if !regular || !now.same_file(&f.stat) || now.last_use(basis) > judged_last_use {
                        out.changed = true;
                        return out;
                    }
                    // An immutable or append-only file cannot be unlinked, not even by root:
                    // finding out only at its unlink would leave the rest of the unit deleted.
                    if st.stx_attributes.intersects(UNDELETABLE) {
                        out.errors
                            .push((i, Failure::Unlink, io::Error::from(rustix::io::Errno::PERM)));
                        return out;
                    }
                    present.push(i);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if is_change(&e) => {
                    out.changed = true;
                    return out;
                }
                Err(e) => {
                    out.errors.push((i, Failure::Stat, e));
                    return out;
                }
            }
        }
        for i in present {
            let f = &files[i];
            let index = f.subdir as usize;
            let result = self
                .subdir(index, &subdir_names[index])
                .and_then(|dir| Ok(rustix::fs::unlinkat(dir, f.name(names), AtFlags::empty())?));
            match result {
                Ok(()) => out.removed.push(i),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => out.errors.push((i, Failure::Unlink, e)),
            }
        }
        out
    }
}

/// Calls `f` with each entry's name and type (from `d_type`), skipping `.` and `..`.
fn for_each_entry(fd: &OwnedFd, buf: &mut Vec<u8>, mut f: impl FnMut(&CStr, FileType)) -> io::Result<()> {
    if buf.capacity() < 32 * 1024 {
        buf.reserve(32 * 1024);
    }
    // getdents continues from the fd's offset: start from the top even if read before.
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(0))?;
    loop {
        let spare: &mut [MaybeUninit<u8>] = buf.spare_capacity_mut();
        let mut dir = RawDir::new(fd, spare);
        let mut grow = false;
        while let Some(entry) = dir.next() {
            match entry {
                Ok(e) => {
                    let name = e.file_name();
                    if name.to_bytes() != b"." && name.to_bytes() != b".." {
                        f(name, e.file_type());
                    }
                }
                // The buffer cannot hold one entry (an extremely long name): grow and go on.
                Err(rustix::io::Errno::INVAL) => {
                    grow = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !grow {
            return Ok(());
        }
        let more = buf.capacity() * 2;
        buf.reserve(more);
    }
}
