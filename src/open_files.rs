//! Which files some process holds open, read from `/proc/*/fd` once per sweep.
//!
//! Unlinking an open file frees nothing until it is closed, and a file held open is in use, so
//! with `skip_open_files` such units are kept (reason `open`). Following another user's fds needs
//! `CAP_SYS_PTRACE` (root without it may list them but not stat them); processes whose fds cannot
//! be read are counted so the sweep can say so.

use std::collections::HashSet;
use std::io;
use std::path::Path;

use rustc_hash::FxHashSet;

/// `(device, inode)` of every regular file open on the filesystems asked about.
#[derive(Debug, Default)]
pub struct OpenFiles {
    /// Looked up for every file of every sweep: Fx hashes two integers in a few instructions
    /// (SipHash, the default, costs more than the rest of judging a file). Nothing an
    /// attacker controls chooses these keys.
    files: FxHashSet<(u64, u64)>,
    /// Processes whose fd table could not be read (permission): their open files are unknown.
    pub unreadable: usize,
}

impl OpenFiles {
    /// Reads `/proc`, keeping only files on the devices in `devs`.
    pub fn scan(proc: &Path, devs: &[u64]) -> io::Result<OpenFiles> {
        let mut open = OpenFiles::default();
        for entry in std::fs::read_dir(proc)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            if !name.to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
                continue;
            }
            let fds = match std::fs::read_dir(entry.path().join("fd")) {
                Ok(fds) => fds,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    open.unreadable += 1;
                    continue;
                }
                Err(_) => continue, // the process exited meanwhile
            };
            let mut refused = false;
            for fd in fds.flatten() {
                // stat follows the magic link to the open file itself.
                match std::fs::metadata(fd.path()) {
                    Ok(m) => {
                        use std::os::unix::fs::MetadataExt;
                        if m.is_file() && devs.contains(&m.dev()) {
                            open.files.insert((m.dev(), m.ino()));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => refused = true,
                    Err(_) => {} // closed meanwhile, or not a file
                }
            }
            open.unreadable += usize::from(refused);
        }
        Ok(open)
    }

    pub fn contains(&self, dev: u64, ino: u64) -> bool {
        self.files.contains(&(dev, ino))
    }
}

/// Bytes of deleted Spark block files below `roots` that some process still holds open: unlinked
/// but not yet returned to the filesystem. Each inode counts once.
pub fn unfreed_bytes(proc: &Path, roots: &[std::path::PathBuf]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut bytes = 0;
    let Ok(procs) = std::fs::read_dir(proc) else { return 0 };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(path) = target.to_str().and_then(|t| t.strip_suffix(" (deleted)")) else {
                continue;
            };
            let path = Path::new(path);
            let spark = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(crate::spark::parse_block_file)
                .is_some();
            if !spark || !roots.iter().any(|r| path.starts_with(r)) {
                continue;
            }
            if let Ok(m) = std::fs::metadata(fd.path())
                && seen.insert((m.dev(), m.ino()))
            {
                bytes += m.blocks() * 512;
            }
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
}
