//! The `*at()` primitives every walk, read, deletion and removal is built on: directories opened
//! one component at a time without following symlinks, each checked to be on the root's own
//! mount, and listed with `getdents`.
//!
//! "The root's own mount" means the same device *and* the same mount id (`statx` `STATX_MNT_ID`,
//! Linux 5.8+), and not the root of a mount: a bind mount of the same filesystem shares the
//! device but not the mount, and crossing it would reach files outside the roots.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Statx, StatxAttributes, StatxFlags};

/// Directories only used as the directory of `*at()` calls, never read through: `O_PATH`
/// opens are cheap and invisible to inotify.
pub const PATH_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
/// Directories listed with getdents.
pub const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Which mount a file or directory is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MountId {
    pub dev: u64,
    /// `None` where the kernel does not report mount ids (before Linux 5.8): the device alone
    /// decides there.
    pub mnt: Option<u64>,
}

impl MountId {
    pub fn of(st: &Statx) -> MountId {
        MountId {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            mnt: (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id),
        }
    }

    /// Whether `other` is on this mount: same device, and the same mount id where both are known.
    pub fn same(&self, other: &MountId) -> bool {
        self.dev == other.dev && (self.mnt.is_none() || other.mnt.is_none() || self.mnt == other.mnt)
    }
}

/// Whether `st` is the root of a mount (a mount point, or a file bind-mounted over another).
pub fn is_mount_root(st: &Statx) -> bool {
    st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
        && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
}

/// File attributes that make `unlink` (of the file, or of any entry of the directory) fail with
/// EPERM whatever the permissions, root included.
pub const UNDELETABLE: StatxAttributes = StatxAttributes::IMMUTABLE.union(StatxAttributes::APPEND);

/// What `statx` is asked for everywhere: the basic stats, the mount id and the birth time.
pub const STATX_WANT: StatxFlags = StatxFlags::BASIC_STATS
    .union(StatxFlags::MNT_ID)
    .union(StatxFlags::BTIME);

/// `statx` of an open file or directory itself.
pub fn statx_fd(fd: impl AsFd) -> io::Result<Statx> {
    Ok(rustix::fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        STATX_WANT,
    )?)
}

/// `statx` of `name` in `dir`, not following a symlink.
pub fn statx_at(dir: impl AsFd, name: &CStr) -> io::Result<Statx> {
    Ok(rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, STATX_WANT)?)
}

/// The type, device and inode of what a `/proc` magic link (`/proc/PID/fd/N`, `/proc/PID/cwd`)
/// points to. The link is followed without a lookup on the target's filesystem, and the stat
/// asks for cached attributes only (`AT_STATX_DONT_SYNC`), so a file on a hung NFS or FUSE
/// mount held by some process cannot hang the caller.
pub fn stat_proc_link(path: &Path) -> io::Result<(FileType, u64, u64)> {
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::STATX_DONT_SYNC,
        StatxFlags::TYPE | StatxFlags::INO,
    )?;
    let dev = rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor);
    Ok((FileType::from_raw_mode(u32::from(st.stx_mode)), dev, st.stx_ino))
}

/// Whether the filesystem of `fd` is shared with other machines or run by a user process
/// (NFS, SMB/CIFS, Ceph, GlusterFS and other FUSE filesystems, Lustre, AFS, 9P, GFS2, OCFS2):
/// processes this node cannot see may use what is on it. `false` when it cannot be told.
pub fn is_shared_fs(fd: impl AsFd) -> bool {
    const SHARED: [i64; 12] = [
        0x6969,      // NFS
        0x517B,      // SMB
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x6573_5546, // FUSE
        0x00C3_6400, // Ceph
        0x0BD0_0BD0, // Lustre
        0x5346_414F, // AFS
        0x0102_1997, // 9P
        0x0116_1970, // GFS2
        0x7461_636F, // OCFS2
        0x0047_5053, // GPFS ("GPS")
    ];
    // f_type is an i64 here, an i32 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let shared = |t| SHARED.contains(&(t as i64));
    rustix::fs::fstatfs(fd).is_ok_and(|st| shared(st.f_type))
}

/// Why a directory below a root was not opened as one of the root's own directories.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// A symlink, or not a directory: Spark never makes those, so the tree changed under us or
    /// was planted; nothing is followed.
    #[error("is a symlink or not a directory")]
    NotDir,
    /// On another mount: a mount point or a bind mount below the root.
    #[error("is on another mount (a mount point below the root); not entered")]
    Foreign,
    /// Removed since it was listed.
    #[error("no longer exists")]
    Gone,
    #[error(transparent)]
    Io(io::Error),
}

impl DirError {
    fn from_errno(e: rustix::io::Errno) -> DirError {
        match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => DirError::NotDir,
            rustix::io::Errno::NOENT => DirError::Gone,
            e => DirError::Io(e.into()),
        }
    }

    pub fn into_io(self) -> io::Error {
        match self {
            DirError::Io(e) => e,
            DirError::Gone => io::Error::from(io::ErrorKind::NotFound),
            other => io::Error::other(other),
        }
    }
}

/// Opens directory `name` in `parent` without following a symlink, and checks that it is on
/// `mount` and not the root of another mount. Returns the fd and its `statx`.
pub fn open_dir_at(
    parent: impl AsFd,
    name: impl rustix::path::Arg,
    flags: OFlags,
    mount: &MountId,
) -> Result<(OwnedFd, Statx), DirError> {
    let fd = rustix::fs::openat(parent, name, flags, Mode::empty()).map_err(DirError::from_errno)?;
    let st = statx_fd(&fd).map_err(DirError::Io)?;
    if !mount.same(&MountId::of(&st)) || is_mount_root(&st) {
        return Err(DirError::Foreign);
    }
    Ok((fd, st))
}

/// Directories listed and units deleted so far by this process: the daemon tells a walk or a
/// sweep that is slow from one that is stuck (a hung filesystem) by whether this moves.
static PROGRESS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`PROGRESS`].
pub fn progress() -> u64 {
    PROGRESS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts a step of work (see [`PROGRESS`]).
pub fn made_progress() {
    PROGRESS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Calls `f` with each entry's name and type (from `d_type`), skipping `.` and `..`. `buf` is
/// getdents' buffer, reused by the caller from directory to directory.
///
/// [`DirError::Gone`] when the directory was removed after it was opened: getdents on a removed
/// directory fails with ENOENT (an application's store going while it is read). What `f` saw
/// before that is not the whole directory.
pub fn for_each_entry(fd: &OwnedFd, buf: &mut Vec<u8>, mut f: impl FnMut(&CStr, FileType)) -> Result<(), DirError> {
    if buf.capacity() < 32 * 1024 {
        buf.reserve(32 * 1024);
    }
    // getdents continues from the fd's offset: start from the top even if read before.
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(0)).map_err(|e| DirError::Io(e.into()))?;
    loop {
        made_progress();
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
                Err(rustix::io::Errno::NOENT) => return Err(DirError::Gone),
                Err(e) => return Err(DirError::Io(e.into())),
            }
        }
        if !grow {
            return Ok(());
        }
        let more = buf.capacity() * 2;
        buf.reserve(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_the_same_mount_opens_and_symlinks_do_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("sub"), dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let root = rustix::fs::open(dir.path(), READ_FLAGS, Mode::empty()).unwrap();
        let mount = MountId::of(&statx_fd(&root).unwrap());
        assert!(mount.mnt.is_some(), "this kernel reports mount ids");
        assert!(open_dir_at(&root, "sub", PATH_FLAGS, &mount).is_ok());
        assert!(matches!(
            open_dir_at(&root, "link", PATH_FLAGS, &mount),
            Err(DirError::NotDir)
        ));
        assert!(matches!(
            open_dir_at(&root, "file", PATH_FLAGS, &mount),
            Err(DirError::NotDir)
        ));
        assert!(matches!(
            open_dir_at(&root, "none", PATH_FLAGS, &mount),
            Err(DirError::Gone)
        ));
        let elsewhere = MountId {
            dev: mount.dev,
            mnt: mount.mnt.map(|m| m + 1),
        };
        assert!(matches!(
            open_dir_at(&root, "sub", PATH_FLAGS, &elsewhere),
            Err(DirError::Foreign)
        ));
        let mut names = Vec::new();
        for_each_entry(&root, &mut Vec::new(), |n, _| names.push(n.to_bytes().to_vec())).unwrap();
        names.sort();
        assert_eq!(names, [b"file".to_vec(), b"link".to_vec(), b"sub".to_vec()]);
    }

    #[test]
    fn a_directory_removed_while_open_lists_as_gone_not_as_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let root = rustix::fs::open(dir.path(), READ_FLAGS, Mode::empty()).unwrap();
        let mount = MountId::of(&statx_fd(&root).unwrap());
        let (sub, _) = open_dir_at(&root, "sub", READ_FLAGS, &mount).unwrap();
        std::fs::remove_dir(dir.path().join("sub")).unwrap();
        let mut seen = 0;
        let listed = for_each_entry(&sub, &mut Vec::new(), |_, _| seen += 1);
        assert!(matches!(listed, Err(DirError::Gone)), "{listed:?}");
        assert_eq!(seen, 0);
    }
}
