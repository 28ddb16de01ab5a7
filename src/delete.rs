//! Safe deletion, in the manner of systemd-tmpfiles' `dir_cleanup()`.
//!
//! A store is re-opened from its root one component at a time with `O_NOFOLLOW | O_DIRECTORY`,
//! checking the device at each step, so a directory swapped for a symlink (or a mount placed
//! over it) after the walk cannot redirect a deletion. Every file is then re-stat'ed relative to
//! its sub-directory's fd and compared with what was judged; only if the whole unit is still as
//! judged is it unlinked, with `unlinkat` on the same fd.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::config::Timestamp;
use crate::disk::FileStat;
use crate::policy::Nanos;
use crate::scan::StoreFile;

/// `O_PATH`: the janitor needs no read permission on the directories, only search and write.
const DIR_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

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
    Stat,
    Unlink,
}

/// An open block store, ready to delete in.
#[derive(Debug)]
pub struct StoreDir {
    dir: OwnedFd,
    dev: u64,
    subdirs: Vec<Option<OwnedFd>>,
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

impl StoreDir {
    /// Opens `root/rel` without following any symlink below `root` and without leaving `dev`.
    /// `root` itself is the operator's and may be a symlink.
    pub fn open(root: &Path, rel: &Path, dev: u64, subdirs: usize) -> io::Result<StoreDir> {
        let mut dir = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        check_dev(&dir, dev)?;
        for c in rel.components() {
            let Component::Normal(name) = c else {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "store path is not plain"));
            };
            dir = rustix::fs::openat(&dir, name, DIR_FLAGS, Mode::empty())?;
            check_dev(&dir, dev)?;
        }
        Ok(StoreDir {
            dir,
            dev,
            subdirs: (0..subdirs).map(|_| None).collect(),
        })
    }

    fn subdir(&mut self, index: usize, name: &str) -> io::Result<&OwnedFd> {
        if self.subdirs[index].is_none() {
            let fd = rustix::fs::openat(&self.dir, name, DIR_FLAGS, Mode::empty())?;
            check_dev(&fd, self.dev)?;
            self.subdirs[index] = Some(fd);
        }
        Ok(self.subdirs[index].as_ref().expect("opened above"))
    }

    /// Deletes one unit whole, or nothing of it if any file is no longer what was judged:
    /// another inode, size or mtime, not a regular file, or used after `judged_last_use`.
    /// A file already gone counts as neither.
    pub fn delete_unit(
        &mut self,
        subdir_names: &[Box<str>],
        files: &[StoreFile],
        basis: &[Timestamp],
        judged_last_use: Nanos,
    ) -> UnitOutcome {
        let mut out = UnitOutcome::default();
        let mut present = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let index = f.subdir as usize;
            let stat = self
                .subdir(index, &subdir_names[index])
                .and_then(|dir| Ok(rustix::fs::statat(dir, &*f.name, AtFlags::SYMLINK_NOFOLLOW)?));
            match stat {
                Ok(st) => {
                    let now = FileStat::from_rustix(&st);
                    let regular = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
                    if !regular || !now.same_file(&f.stat) || now.last_use(basis) > judged_last_use {
                        out.changed = true;
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
            let dir = self.subdirs[f.subdir as usize].as_ref().expect("opened by the check");
            match rustix::fs::unlinkat(dir, &*f.name, AtFlags::empty()) {
                Ok(()) => out.removed.push(i),
                Err(e) if e == rustix::io::Errno::NOENT => {}
                Err(e) => out.errors.push((i, Failure::Unlink, e.into())),
            }
        }
        out
    }
}

fn check_dev(fd: &impl AsFd, dev: u64) -> io::Result<()> {
    let st = rustix::fs::fstat(fd)?;
    if FileStat::from_rustix(&st).dev == dev {
        Ok(())
    } else {
        Err(io::Error::other(DeviceChanged))
    }
}

/// Whether a failure to open a store means it was swapped or moved (keep everything, reason
/// `changed`) rather than an error to count.
pub fn open_failure_is_change(e: &io::Error) -> bool {
    is_change(e) || e.kind() == io::ErrorKind::NotFound
}
