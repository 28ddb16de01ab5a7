//! Removing a dead store as a whole, and the leftovers of deletions that did not finish.

use super::*;

impl StoreDir {
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
