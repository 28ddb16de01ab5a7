//! Filesystems: usage (statvfs), mount points and options (`/proc/self/mountinfo`), and the
//! timestamps of one file as the rest of the program uses them.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Timestamp;
use crate::policy::{Nanos, Usage};

/// A file's identity and timestamps, from one `lstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    /// Apparent size, as `ls -l` shows it.
    pub size: u64,
    /// Allocated bytes (`st_blocks * 512`): what deleting its last link returns to the
    /// filesystem (a sparse file frees less than its size).
    pub alloc: u64,
    /// Hard links: deleting one of several frees nothing.
    pub nlink: u64,
    pub mtime: Nanos,
    pub atime: Nanos,
    pub ctime: Nanos,
}

/// Seconds and nanoseconds as [`Nanos`]; times outside 1678-2261 saturate at the ends of the
/// range (every age computed from them saturates too, so they read as very old or very new).
fn ts(sec: i64, nsec: i64) -> Nanos {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl FileStat {
    pub fn from_metadata(m: &std::fs::Metadata) -> Self {
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            alloc: m.blocks().saturating_mul(512),
            nlink: m.nlink(),
            mtime: ts(m.mtime(), m.mtime_nsec()),
            atime: ts(m.atime(), m.atime_nsec()),
            ctime: ts(m.ctime(), m.ctime_nsec()),
        }
    }

    // The field types of `struct stat` differ between architectures; the casts widen.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    pub fn from_rustix(s: &rustix::fs::Stat) -> Self {
        FileStat {
            dev: s.st_dev as u64,
            ino: s.st_ino as u64,
            size: s.st_size.max(0) as u64,
            alloc: (s.st_blocks as u64).saturating_mul(512),
            nlink: s.st_nlink as u64,
            mtime: ts(s.st_mtime as i64, s.st_mtime_nsec as i64),
            atime: ts(s.st_atime as i64, s.st_atime_nsec as i64),
            ctime: ts(s.st_ctime as i64, s.st_ctime_nsec as i64),
        }
    }

    /// From `statx` (the re-check before unlinking, which also needs the file's attributes).
    pub fn from_statx(s: &rustix::fs::Statx) -> Self {
        let t = |t: &rustix::fs::StatxTimestamp| ts(t.tv_sec, i64::from(t.tv_nsec));
        FileStat {
            dev: rustix::fs::makedev(s.stx_dev_major, s.stx_dev_minor),
            ino: s.stx_ino,
            size: s.stx_size,
            alloc: s.stx_blocks.saturating_mul(512),
            nlink: u64::from(s.stx_nlink),
            mtime: t(&s.stx_mtime),
            atime: t(&s.stx_atime),
            ctime: t(&s.stx_ctime),
        }
    }

    /// The newest of the chosen timestamps.
    pub fn last_use(&self, basis: &[Timestamp]) -> Nanos {
        basis
            .iter()
            .map(|t| match t {
                Timestamp::Mtime => self.mtime,
                Timestamp::Atime => self.atime,
                Timestamp::Ctime => self.ctime,
            })
            .max()
            .unwrap_or(self.mtime)
    }

    /// What deleting this file returns to the filesystem: its allocated blocks when this is its
    /// only link, nothing when another link keeps the data (the one truth for "reclaimed bytes",
    /// used by metrics, reports and pressure alike).
    pub fn freeable(&self) -> u64 {
        if self.nlink <= 1 { self.alloc } else { 0 }
    }

    /// Still the file that was judged: same inode on the same device, same size and mtime.
    pub fn same_file(&self, other: &FileStat) -> bool {
        (self.dev, self.ino, self.size, self.mtime) == (other.dev, other.ino, other.size, other.mtime)
    }
}

/// The usage of the filesystem holding `path`, counted as `df` does.
pub fn usage(path: &Path) -> io::Result<Usage> {
    let s = rustix::fs::statvfs(path)?;
    let frsize = if s.f_frsize > 0 { s.f_frsize } else { s.f_bsize };
    Ok(Usage {
        used: s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(frsize),
        avail: s.f_bavail.saturating_mul(frsize),
    })
}

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub dev: u64,
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// Per-mount options (`rw,noatime`...), where the atime behaviour lives.
    pub options: String,
}

impl Mount {
    pub fn has_option(&self, option: &str) -> bool {
        self.options.split(',').any(|o| o == option)
    }
}

/// How reads move atime on a mount (see mount(8)): what a file's atime can prove about reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtimeMode {
    /// Every read moves atime.
    Strict,
    /// A read moves atime only when atime is not newer than mtime or ctime, or older than 24 h.
    Relatime,
    /// Reads never move atime.
    NoAtime,
}

impl Mount {
    pub fn atime_mode(&self) -> AtimeMode {
        if self.has_option("noatime") {
            AtimeMode::NoAtime
        } else if self.has_option("relatime") {
            AtimeMode::Relatime
        } else {
            // The kernel shows no atime option for strictatime.
            AtimeMode::Strict
        }
    }
}

/// Why atime cannot be trusted as a last use on `mount` with this `max_age`, if it cannot.
pub fn atime_caveat(mount: &Mount, max_age: std::time::Duration) -> Option<String> {
    if mount.has_option("noatime") {
        return Some(format!(
            "{} is mounted noatime: atime never moves there, so reads count as use only while the \
             daemon watches them with inotify",
            mount.mount_point.display()
        ));
    }
    // The kernel shows "relatime" (its default) in mountinfo, and nothing for strictatime.
    if mount.has_option("relatime") && max_age < std::time::Duration::from_secs(24 * 3600) {
        return Some(format!(
            "{} is mounted relatime: atime can be up to 24 h stale, longer than max_age ({}), so \
             reads count as use only while the daemon watches them with inotify",
            mount.mount_point.display(),
            humantime::format_duration(max_age)
        ));
    }
    None
}

/// The mount table, read once per sweep (mounts come and go with disks).
#[derive(Clone, Debug, Default)]
pub struct Mounts(Vec<Mount>);

impl Mounts {
    pub fn read() -> io::Result<Mounts> {
        Ok(Mounts::parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
    }

    /// Parses mountinfo (see proc(5)); lines it cannot read are passed over.
    pub fn parse(text: &str) -> Mounts {
        let mounts = text
            .lines()
            .filter_map(|line| {
                let mut f = line.split(' ');
                let _id = f.next()?;
                let _parent = f.next()?;
                let (major, minor) = f.next()?.split_once(':')?;
                let _root = f.next()?;
                let mount_point = PathBuf::from(unescape(f.next()?));
                let options = f.next()?.to_string();
                // Optional fields end with a lone "-"; then the type.
                let fs_type = f.skip_while(|x| *x != "-").nth(1)?.to_string();
                let dev = rustix::fs::makedev(major.parse().ok()?, minor.parse().ok()?);
                Some(Mount {
                    dev,
                    mount_point,
                    fs_type,
                    options,
                })
            })
            .collect();
        Mounts(mounts)
    }

    /// The mount that holds `path` (the deepest mount point above it on device `dev`).
    pub fn find(&self, path: &Path, dev: u64) -> Option<&Mount> {
        self.0
            .iter()
            .filter(|m| m.dev == dev && path.starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.as_os_str().len())
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:25 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=4096k
31 22 8:17 / /data\\0401 rw,noatime - xfs /dev/sdb1 rw
32 22 8:17 /spark /mnt/bind rw,noatime - xfs /dev/sdb1 rw
garbage
";

    #[test]
    fn mountinfo_finds_the_deepest_mount_with_its_options() {
        let m = Mounts::parse(MOUNTINFO);
        let root = m.find(Path::new("/var/data"), rustix::fs::makedev(254, 0)).unwrap();
        assert_eq!(root.mount_point, Path::new("/"));
        assert_eq!(root.fs_type, "ext4");
        let data = m.find(Path::new("/data 1/spark"), rustix::fs::makedev(8, 17)).unwrap();
        assert_eq!(data.mount_point, Path::new("/data 1"));
        assert!(data.has_option("noatime"));
        assert!(!data.has_option("atime"));
        let tmp = m.find(Path::new("/tmp/x"), rustix::fs::makedev(0, 25)).unwrap();
        assert_eq!(tmp.fs_type, "tmpfs");
        assert!(m.find(Path::new("/tmp/x"), 12345).is_none());
    }

    #[test]
    fn atime_caveats_follow_the_mount_options() {
        let m = Mounts::parse(MOUNTINFO);
        let six_hours = std::time::Duration::from_secs(6 * 3600);
        let two_days = std::time::Duration::from_secs(48 * 3600);
        let data = m.find(Path::new("/data 1"), rustix::fs::makedev(8, 17)).unwrap();
        assert!(atime_caveat(data, two_days).unwrap().contains("noatime"));
        let root = m.find(Path::new("/"), rustix::fs::makedev(254, 0)).unwrap();
        assert!(atime_caveat(root, six_hours).unwrap().contains("relatime"));
        assert_eq!(atime_caveat(root, two_days), None);
        let tmp = m.find(Path::new("/tmp"), rustix::fs::makedev(0, 25)).unwrap();
        assert_eq!(
            atime_caveat(tmp, six_hours),
            None,
            "no atime option in mountinfo is strictatime: atime is exact"
        );
    }

    #[test]
    fn last_use_is_the_newest_chosen_timestamp() {
        let s = FileStat {
            dev: 1,
            ino: 2,
            size: 3,
            alloc: 4096,
            nlink: 1,
            mtime: 10,
            atime: 30,
            ctime: 20,
        };
        assert_eq!(s.last_use(&[Timestamp::Mtime]), 10);
        assert_eq!(s.last_use(&[Timestamp::Mtime, Timestamp::Atime]), 30);
        assert_eq!(s.last_use(&[Timestamp::Ctime, Timestamp::Mtime]), 20);
        assert!(s.same_file(&FileStat { atime: 99, ..s }));
        assert!(!s.same_file(&FileStat { size: 4, ..s }));
        assert!(!s.same_file(&FileStat { ino: 5, ..s }));
        assert!(!s.same_file(&FileStat { mtime: 11, ..s }));
        assert_eq!(s.freeable(), 4096);
        assert_eq!(FileStat { nlink: 2, ..s }.freeable(), 0, "another link keeps the data");
    }

    #[test]
    fn usage_of_a_real_filesystem_is_a_sane_fraction() {
        let u = usage(Path::new("/")).unwrap();
        assert!(u.used > 0);
        assert!((0.0..=1.0).contains(&u.ratio()));
    }
}
