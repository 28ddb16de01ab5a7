//! Finding the block stores below a root: directories are opened one at a time relative to
//! their parent's fd, never following a symlink, never leaving the root's own mount (device and
//! mount id: a bind mount of the same filesystem is another mount), entering only directories
//! that belong to a Spark layout ([`spark::child_dir_role`]). Only the directories on the current
//! path are open, and layouts are at most six levels deep, so a walk holds a handful of fds
//! whatever the tree. Each store found is handed to the visitor, which reads it
//! ([`crate::store_dir`]), possibly on another thread. Errors are values handed to the visitor
//! with their path; they never stop the walk.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

use crate::fsx::{self, DirError, MountId, READ_FLAGS};
use crate::spark::{self, DirRole};

/// What the walk reports.
pub trait Visitor {
    /// A store at `root/rel` (`rel` is empty when the root itself is a store). `Break` stops
    /// the walk (cancellation).
    fn store(&mut self, root: usize, rel: PathBuf) -> ControlFlow<()>;
    /// An entry that is not part of a Spark layout: never touched.
    fn unknown(&mut self);
    /// A layout directory not entered because it is not the root's own: on another mount, or
    /// a symlink put in its place after it was listed.
    fn skipped(&mut self, path: &Path, why: &DirError);
    /// A directory that could not be read.
    fn error(&mut self, path: &Path, error: &io::Error);
    /// A layout directory (the root included) was opened and checked, and is about to be
    /// listed: the daemon watches it there.
    fn dir_opened(&mut self, _fd: BorrowedFd, _rel: &Path, _role: DirRole) {}
}

/// A root as the walk needs it.
#[derive(Clone, Copy, Debug)]
pub struct WalkRoot<'a> {
    pub path: &'a Path,
    pub mount: MountId,
    /// The root directory's inode as resolved: another directory put under its path since is
    /// not walked.
    pub ino: Option<u64>,
    pub role: DirRole,
}

/// Walks root number `root_index`.
pub fn walk_root(root: &WalkRoot, root_index: usize, v: &mut impl Visitor) -> ControlFlow<()> {
    if root.role == DirRole::Store {
        return v.store(root_index, PathBuf::new());
    }
    // The root itself is the operator's and may be a symlink; nothing below it is followed.
    let fd = match rustix::fs::open(root.path, READ_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            v.error(root.path, &e.into());
            return ControlFlow::Continue(());
        }
    };
    match fsx::statx_fd(&fd) {
        Ok(st) if root.mount.same(&MountId::of(&st)) && root.ino.is_none_or(|i| i == st.stx_ino) => {}
        Ok(_) => {
            // Remounted since the roots were resolved: the next sweep resolves it again.
            v.skipped(root.path, &DirError::Foreign);
            return ControlFlow::Continue(());
        }
        Err(e) => {
            v.error(root.path, &e);
            return ControlFlow::Continue(());
        }
    }
    walk_from(root, root_index, &fd, PathBuf::new(), root.role, v)
}

/// Walks the directory open as `fd`, at `rel` below `root` and of role `role` (already opened
/// and checked by the caller: the daemon walks a directory that appeared this way).
pub fn walk_from(
    root: &WalkRoot,
    root_index: usize,
    fd: &OwnedFd,
    mut rel: PathBuf,
    role: DirRole,
    v: &mut impl Visitor,
) -> ControlFlow<()> {
    if role == DirRole::Store {
        return v.store(root_index, rel);
    }
    let mut walk = Walk {
        root,
        root_index,
        buf: Vec::new(),
    };
    walk.dir(fd, &mut rel, role, v)
}

struct Walk<'a, 'r> {
    root: &'a WalkRoot<'r>,
    root_index: usize,
    buf: Vec<u8>,
}

impl Walk<'_, '_> {
    /// Lists the directory open as `fd` (at `rel`, of role `role`) and descends into its layout
    /// directories.
    fn dir(&mut self, fd: &OwnedFd, rel: &mut PathBuf, role: DirRole, v: &mut impl Visitor) -> ControlFlow<()> {
        v.dir_opened(fd.as_fd(), rel, role);
        let mut children: Vec<(String, DirRole, FileType)> = Vec::new();
        let listed = fsx::for_each_entry(fd, &mut self.buf, |name, ftype| {
            let child = name.to_str().ok().map(|n| (n, spark::child_dir_role(role, n)));
            match child {
                Some((n, Some(r))) if matches!(ftype, FileType::Directory | FileType::Unknown) => {
                    children.push((n.to_owned(), r, ftype))
                }
                _ => v.unknown(),
            }
        });
        match listed {
            Ok(()) => {}
            // Removed since it was opened (an application ended): nothing below it to judge.
            Err(DirError::Gone) => return ControlFlow::Continue(()),
            Err(e) => {
                v.error(&self.root.path.join(&*rel), &e.into_io());
                return ControlFlow::Continue(());
            }
        }
        for (name, child_role, ftype) in children {
            rel.push(&name);
            let flow = self.child(fd, rel, &name, child_role, ftype, v);
            rel.pop();
            flow?;
        }
        ControlFlow::Continue(())
    }

    fn child(
        &mut self,
        parent: &OwnedFd,
        rel: &mut PathBuf,
        name: &str,
        role: DirRole,
        ftype: FileType,
        v: &mut impl Visitor,
    ) -> ControlFlow<()> {
        if role == DirRole::Store {
            // Opened (and its mount checked) by whoever reads it.
            return v.store(self.root_index, rel.clone());
        }
        match fsx::open_dir_at(parent, name, READ_FLAGS, &self.root.mount) {
            Ok((fd, _)) => self.dir(&fd, rel, role, v),
            // DT_UNKNOWN that is not a directory: not part of a layout.
            Err(DirError::NotDir) if ftype == FileType::Unknown => {
                v.unknown();
                ControlFlow::Continue(())
            }
            // Removed since it was listed (an application ended): nothing to do.
            Err(DirError::Gone) => ControlFlow::Continue(()),
            Err(DirError::Io(e)) => {
                v.error(&self.root.path.join(&*rel), &e);
                ControlFlow::Continue(())
            }
            Err(why) => {
                v.skipped(&self.root.path.join(&*rel), &why);
                ControlFlow::Continue(())
            }
        }
    }
}
