//! Which files processes are using, read from `/proc`: open descriptors (`/proc/*/fd`) and
//! memory mappings (`/proc/*/maps`: Spark maps large blocks and closes the channel, and keeps
//! reading the mapping).
//!
//! A file in use must not be deleted, and unlinking one frees nothing until the last user lets
//! go, so with `skip_open_files` such units are kept (reason `open`). Following another user's
//! fds and reading its maps needs `CAP_SYS_PTRACE` (root without it may list them but not read
//! them); processes that cannot be read are counted so the sweep can say so.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustc_hash::FxHashSet;

/// `(device, inode)` of every regular file open or mapped on the filesystems asked about.
#[derive(Debug, Default)]
pub struct OpenFiles {
    /// Looked up for every file a sweep is about to delete: Fx hashes two integers in a few
    /// instructions. Nothing an attacker controls chooses these keys.
    files: FxHashSet<(u64, u64)>,
    /// Processes whose fds or maps could not be read (permission): their files are unknown.
    pub unreadable: usize,
    /// The first [`NAMED_UNREADABLE`] of them, by PID and command (`/proc/PID/comm`), so the
    /// warning can name them.
    pub unreadable_named: Vec<(u32, String)>,
}

/// How many unreadable processes a warning names; the rest are counted.
pub const NAMED_UNREADABLE: usize = 5;

fn pids(proc: &Path) -> io::Result<impl Iterator<Item = std::path::PathBuf>> {
    Ok(std::fs::read_dir(proc)?.flatten().filter_map(|e| {
        let name = e.file_name();
        name.to_str()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| e.path())
    }))
}

/// Every process directory of `proc`, or the error that cut the listing short: a process not
/// listed would be a process whose open files are not known.
fn all_pids(proc: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(proc).map_err(|e| at(proc, e))? {
        let e = e.map_err(|e| at(proc, e))?;
        let name = e.file_name();
        if name
            .to_str()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// How a read under `/proc/PID` failed, for the scan of open files.
enum Failure {
    /// The process or the fd went away meanwhile (`ENOENT`, `ESRCH`): nothing of it is open.
    Gone,
    /// Not allowed to look (`EACCES`, `EPERM`: `CAP_SYS_PTRACE`): counted and said.
    Refused,
    /// Anything else (`EMFILE`, `ENFILE`, `ENOMEM`, `EIO`, a `/proc` that is not one): what the
    /// process holds is unknown, so the scan fails and every unit is kept as if open.
    Unknown,
}

fn failure(e: &io::Error) -> Failure {
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::NotFound, _) => Failure::Gone,
        (_, Some(libc::ESRCH)) => Failure::Gone,
        (io::ErrorKind::PermissionDenied, _) => Failure::Refused,
        _ => Failure::Unknown,
    }
}

/// `e`, naming the path it happened on.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// One line of `/proc/PID/maps`: the mapped file's device and inode, its length, and its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping<'a> {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub path: &'a str,
}

/// Parses a maps line (`start-end perms offset major:minor inode path`); `None` for anonymous
/// mappings and lines it cannot read.
pub fn parse_mapping(line: &str) -> Option<Mapping<'_>> {
    let mut f = line.splitn(6, ' ');
    let (start, end) = f.next()?.split_once('-')?;
    let _perms = f.next()?;
    let _offset = f.next()?;
    let (major, minor) = f.next()?.split_once(':')?;
    let ino: u64 = f.next()?.parse().ok()?;
    if ino == 0 {
        return None;
    }
    let len = u64::from_str_radix(end, 16)
        .ok()?
        .checked_sub(u64::from_str_radix(start, 16).ok()?)?;
    let dev = rustix::fs::makedev(
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    Some(Mapping {
        dev,
        ino,
        len,
        path: f.next().unwrap_or("").trim_start(),
    })
}

impl OpenFiles {
    /// Reads `/proc`, keeping only files on the devices in `devs`. A process that went away
    /// holds nothing and one that may not be read is counted ([`Failure`]); any other failure
    /// (out of fds or memory) fails the scan, naming the path: a process taken for gone
    /// because its fds could not be listed would have its open files deleted.
    pub fn scan(proc: &Path, devs: &[u64]) -> io::Result<OpenFiles> {
        let mut open = OpenFiles::default();
        'pids: for pid in all_pids(proc)? {
            let mut refused = false;
            let fd_dir = pid.join("fd");
            match std::fs::read_dir(&fd_dir) {
                Ok(fds) => {
                    for fd in fds {
                        let fd = match fd {
                            Ok(fd) => fd,
                            Err(e) => match failure(&e) {
                                Failure::Gone => continue 'pids,
                                Failure::Refused => {
                                    refused = true;
                                    break;
                                }
                                Failure::Unknown => return Err(at(&fd_dir, e)),
                            },
                        };
                        // Follows the magic link to the open file itself, with cached
                        // attributes only: a file on a hung network mount cannot hang a sweep.
                        match crate::fsx::stat_proc_link(&fd.path()) {
                            Ok((rustix::fs::FileType::RegularFile, dev, ino)) if devs.contains(&dev) => {
                                open.files.insert((dev, ino));
                            }
                            Ok(_) => {}
                            Err(e) => match failure(&e) {
                                Failure::Gone => {} // closed meanwhile
                                Failure::Refused => refused = true,
                                Failure::Unknown => return Err(at(&fd.path(), e)),
                            },
                        }
                    }
                }
                Err(e) => match failure(&e) {
                    Failure::Gone => continue, // the process exited meanwhile
                    Failure::Refused => refused = true,
                    Failure::Unknown => return Err(at(&fd_dir, e)),
                },
            }
            let maps_path = pid.join("maps");
            match std::fs::read_to_string(&maps_path) {
                Ok(maps) => {
                    for m in maps.lines().filter_map(parse_mapping) {
                        if devs.contains(&m.dev) {
                            open.files.insert((m.dev, m.ino));
                        }
                    }
                }
                Err(e) => match failure(&e) {
                    Failure::Gone => {}
                    Failure::Refused => refused = true,
                    Failure::Unknown => return Err(at(&maps_path, e)),
                },
            }
            if refused {
                open.unreadable += 1;
                if open.unreadable_named.len() < NAMED_UNREADABLE {
                    let number = pid.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok());
                    let comm = std::fs::read_to_string(pid.join("comm")).unwrap_or_default();
                    open.unreadable_named
                        .push((number.unwrap_or(0), comm.trim_end().to_string()));
                }
            }
        }
        Ok(open)
    }

    /// The warning for processes whose open files could not be read: which ones, and what to
    /// do. `ptrace`: this process has `CAP_SYS_PTRACE` in effect, so asking for it is no help.
    pub fn unreadable_warning(&self, ptrace: bool) -> String {
        let mut named: Vec<String> = self
            .unreadable_named
            .iter()
            .map(|(pid, comm)| format!("{pid} ({comm})"))
            .collect();
        if self.unreadable > named.len() {
            named.push(format!("{} more", self.unreadable - named.len()));
        }
        let why = if ptrace {
            "CAP_SYS_PTRACE is already in effect: the refusal comes from elsewhere (in some \
             containers PID 1's fds and maps cannot be read even by root; a security module or a \
             process that made itself non-dumpable does the same)"
        } else {
            "grant CAP_SYS_PTRACE to read them"
        };
        format!(
            "cannot read the open files of {} process{} (PID {}); {why}. Files they hold open may \
             be deleted (their space returns when they close them)",
            self.unreadable,
            if self.unreadable == 1 { "" } else { "es" },
            named.join(", "),
        )
    }

    pub fn contains(&self, dev: u64, ino: u64) -> bool {
        self.files.contains(&(dev, ino))
    }
}

/// The processes (PID and command, `/proc/PID/comm`) that hold one of `files` (device, inode)
/// open or mapped, read from `proc` now; for `explain` (a sweep's scan keeps no PIDs). A process
/// that cannot be read is left out, as the sweep's scan counts it.
pub fn holders(proc: &Path, files: &[(u64, u64)]) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = holders_by_file(proc, files).into_values().flatten().collect();
    out.sort();
    out.dedup();
    out
}

/// [`holders`] of each of `files`, in one pass over `/proc` for them all: `explain` of many
/// open units read every process's fds and maps once per unit (a node's executors hold
/// thousands of fds each: minutes, past the control socket's deadline).
pub fn holders_by_file(proc: &Path, files: &[(u64, u64)]) -> std::collections::HashMap<(u64, u64), Vec<(u32, String)>> {
    let wanted: std::collections::HashSet<(u64, u64)> = files.iter().copied().collect();
    let mut out: std::collections::HashMap<(u64, u64), Vec<(u32, String)>> = std::collections::HashMap::new();
    if wanted.is_empty() {
        return out;
    }
    let Ok(pids) = pids(proc) else { return out };
    for pid in pids {
        let mut hit: std::collections::HashSet<(u64, u64)> = std::fs::read_dir(pid.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| match crate::fsx::stat_proc_link(&fd.path()) {
                Ok((rustix::fs::FileType::RegularFile, dev, ino)) if wanted.contains(&(dev, ino)) => Some((dev, ino)),
                _ => None,
            })
            .collect();
        if let Ok(maps) = std::fs::read_to_string(pid.join("maps")) {
            hit.extend(
                maps.lines()
                    .filter_map(parse_mapping)
                    .map(|m| (m.dev, m.ino))
                    .filter(|k| wanted.contains(k)),
            );
        }
        if hit.is_empty() {
            continue;
        }
        let number = pid.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok());
        let comm = std::fs::read_to_string(pid.join("comm")).unwrap_or_default();
        let who = (number.unwrap_or(0), comm.trim_end().to_owned());
        for k in hit {
            out.entry(k).or_default().push(who.clone());
        }
    }
    out
}

/// Whether `path` (as `/proc` shows a deleted file: `PATH (deleted)`) is a deleted Spark block
/// file below one of `roots`.
fn deleted_spark_file<'a>(target: &'a str, roots: &[std::path::PathBuf]) -> Option<&'a Path> {
    let path = Path::new(target.strip_suffix(" (deleted)")?);
    let spark = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(crate::spark::parse_block_file)
        .is_some();
    (spark && roots.iter().any(|r| path.starts_with(r))).then_some(path)
}

/// Bytes of deleted Spark block files below `roots` that some process still holds open or
/// mapped: unlinked but not yet returned to the filesystem. Each inode counts once: its
/// allocated blocks when some process has it open, else the length of its largest mapping (a
/// mapping's file cannot be stat'ed without `CAP_SYS_ADMIN`).
pub fn unfreed_bytes(proc: &Path, roots: &[std::path::PathBuf]) -> u64 {
    let mut by_inode: HashMap<(u64, u64), (bool, u64)> = HashMap::new();
    let Ok(procs) = pids(proc) else { return 0 };
    for pid in procs {
        if let Ok(fds) = std::fs::read_dir(pid.join("fd")) {
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let Some(target) = target.to_str() else { continue };
                if deleted_spark_file(target, roots).is_none() {
                    continue;
                }
                if let Ok(m) = std::fs::metadata(fd.path()) {
                    by_inode.insert((m.dev(), m.ino()), (true, m.blocks() * 512));
                }
            }
        }
        if let Ok(maps) = std::fs::read_to_string(pid.join("maps")) {
            for m in maps.lines().filter_map(parse_mapping) {
                if deleted_spark_file(m.path, roots).is_none() {
                    continue;
                }
                let e = by_inode.entry((m.dev, m.ino)).or_insert((false, 0));
                if !e.0 {
                    e.1 = e.1.max(m.len);
                }
            }
        }
    }
    by_inode.values().map(|(_, b)| b).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_file_this_process_holds_open() {
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().join("held");
        let closed = dir.path().join("closed");
        let _f = std::fs::File::create(&held).unwrap();
        std::fs::write(&closed, b"x").unwrap();
        let (h, c) = (std::fs::metadata(&held).unwrap(), std::fs::metadata(&closed).unwrap());
        let open = OpenFiles::scan(Path::new("/proc"), &[h.dev()]).unwrap();
        assert!(open.contains(h.dev(), h.ino()));
        assert!(!open.contains(c.dev(), c.ino()));
        // Unlinked while held open: its blocks are not back until the file is closed.
        let spark = dir.path().join("shuffle_0_1_0.data");
        let mut f = std::fs::File::create(&spark).unwrap();
        std::io::Write::write_all(&mut f, &[7u8; 8192]).unwrap();
        f.sync_all().unwrap();
        std::fs::remove_file(&spark).unwrap();
        assert!(unfreed_bytes(Path::new("/proc"), &[dir.path().to_owned()]) >= 8192);
        drop(f);
        assert_eq!(unfreed_bytes(Path::new("/proc"), &[dir.path().to_owned()]), 0);
        let other_dev = OpenFiles::scan(Path::new("/proc"), &[h.dev().wrapping_add(1)]).unwrap();
        assert!(!other_dev.contains(h.dev(), h.ino()));
    }

    /// A process whose fds cannot be listed for a reason other than its exit or a refusal (here
    /// a `/proc` whose `PID/fd` is not a directory; on a node, `EMFILE` or `ENOMEM`) is not taken
    /// for a process that holds nothing open: the scan fails, and the sweep keeps every unit.
    #[test]
    fn a_process_whose_fds_cannot_be_listed_fails_the_scan() {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join("123")).unwrap();
        std::fs::write(proc.path().join("123/fd"), b"").unwrap();
        std::fs::write(proc.path().join("123/maps"), b"").unwrap();
        let e = OpenFiles::scan(proc.path(), &[1]).expect_err("fds unknown, not none");
        assert!(e.to_string().contains("123/fd"), "{e}");
        // Gone meanwhile: holds nothing, and the scan goes on.
        std::fs::remove_dir_all(proc.path().join("123")).unwrap();
        std::fs::create_dir_all(proc.path().join("124")).unwrap();
        let open = OpenFiles::scan(proc.path(), &[1]).unwrap();
        assert_eq!(open.unreadable, 0);
    }

    #[test]
    fn maps_lines_name_the_mapped_file() {
        let m = parse_mapping(
            "7f2c4a000000-7f2c4a800000 r--s 00000000 fd:01 131099   /data/x/shuffle_0_1_0.data (deleted)",
        )
        .unwrap();
        assert_eq!(m.dev, rustix::fs::makedev(0xfd, 1));
        assert_eq!((m.ino, m.len), (131099, 0x800000));
        assert_eq!(m.path, "/data/x/shuffle_0_1_0.data (deleted)");
        assert_eq!(
            parse_mapping("7ffd1000-7ffd2000 rw-p 00000000 00:00 0          [stack]"),
            None
        );
        assert_eq!(parse_mapping("garbage"), None);
    }

    /// Issue 23: the warning named no process, and asked for CAP_SYS_PTRACE when it was there.
    #[test]
    fn the_unreadable_warning_names_the_processes_and_what_to_do() {
        let open = OpenFiles {
            unreadable: 7,
            unreadable_named: (1..=5).map(|p| (p, format!("cmd{p}"))).collect(),
            ..OpenFiles::default()
        };
        let w = open.unreadable_warning(false);
        assert!(
            w.starts_with("cannot read the open files of 7 processes (PID 1 (cmd1), 2 (cmd2), 3 (cmd3), 4 (cmd4), 5 (cmd5), 2 more); grant CAP_SYS_PTRACE"),
            "{w}"
        );
        let w = open.unreadable_warning(true);
        assert!(w.contains("CAP_SYS_PTRACE is already in effect"), "{w}");
        assert!(w.contains("PID 1's fds and maps cannot be read even by root"), "{w}");
        assert!(!w.contains("grant"), "{w}");
        let one = OpenFiles {
            unreadable: 1,
            unreadable_named: vec![(1, "tini".into())],
            ..OpenFiles::default()
        };
        assert!(
            one.unreadable_warning(true)
                .starts_with("cannot read the open files of 1 process (PID 1 (tini));")
        );
    }
}
