//! Reading a store: its `NN` directories listed into a [`Listing`], leftovers of unfinished
//! deletions noted.

use super::*;

impl StoreDir {
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

    pub(super) fn read_subdir(
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
    pub(super) fn is_plain_file(&self, name: &str) -> bool {
        fsx::statx_at(&self.dir, &std::ffi::CString::new(name).expect("hex has no NUL"))
            .is_ok_and(|st| FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::RegularFile)
    }
}

/// Records a leftover private file if it is a regular file on the store's device.
pub(super) fn leftover(dir: &OwnedFd, name: &CStr, subdir: u32, dev: u64, out: &mut Listing) {
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
