//! Deleting a unit: its files checked again on disk, renamed to the private name, then
//! removed, or restored when one of them fails a check.

use super::*;

impl StoreDir {
    /// Takes the write guard (see the module docs) before the first deletion in this store;
    /// `Err(EROFS)` when the filesystem is read-only, so nothing may be started.
    pub(super) fn guard_writes(&mut self) -> Result<(), io::Error> {
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

    /// Lets go of the write guard between two units (a remount may land there, never inside a
    /// unit); the next deletion takes it again, or finds the filesystem read-only.
    pub fn release_writes(&mut self) {
        self.write_guard = None;
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
    pub(super) fn check_file(
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
    pub(super) fn deletable(&self, st: &rustix::fs::Statx) -> bool {
        FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::RegularFile
            && self.mount.same(&MountId::of(st))
            && !fsx::is_mount_root(st)
            && !st.stx_attributes.intersects(UNDELETABLE)
    }
}

pub(super) enum Check {
    Changed,
    Fail(Failure, io::Error),
}

/// A checked file of a unit: its index in the unit, its stat, and its directory.
#[derive(Debug)]
pub(super) struct Present {
    pub(super) index: usize,
    pub(super) stat: FileStat,
    pub(super) dir: std::sync::Arc<OwnedFd>,
}

/// Puts detached files back under their names. A name taken meanwhile by a new file means the
/// detached one was superseded (a rename over it would have removed it): it goes.
pub(super) fn restore(files: &[UnitFile], detached: &[Present]) {
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
