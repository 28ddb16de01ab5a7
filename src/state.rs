//! What the daemon keeps across a restart: the last open its watch saw of each recently used
//! unit, so that a restart (a package upgrade, a crash) does not forget that a map output was
//! being read seconds ago. A small versioned JSON file in `state_dir`, written atomically
//! (temporary file, fsync, rename, fsync of the directory) every minute when it changed and at
//! shutdown; bounded to [`MAX_ENTRIES`] opens, newest first. A file that cannot be read as this
//! version is refused with a log line and replaced at the next write.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::Nanos;

/// The file's name in `state_dir`.
pub const FILE_NAME: &str = "opens.json";
/// The format this build reads and writes.
pub const VERSION: u32 = 1;
/// Most opens kept (about 35 bytes each on disk): opens older than `max_age` are never kept,
/// and past this the oldest go first.
pub const MAX_ENTRIES: usize = 500_000;

/// Largest file read (about 100 bytes an entry at [`MAX_ENTRIES`]; the daemon writes far less):
/// a larger one is refused before it is read, so that a huge or bad file cannot take the
/// memory its parse would (a 131 MB file of 3M entries peaked at 321 MB).
pub const MAX_BYTES: u64 = 48 << 20;
/// The lock file in `state_dir` (see [`State::lock`]).
pub const LOCK_NAME: &str = "lock";

/// The file's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// When it was written (Unix nanoseconds).
    pub written_at: Nanos,
    /// Store path -> (unit stem, last open).
    pub opens: BTreeMap<String, Vec<(String, Nanos)>>,
}

/// Why a state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: not a state file of this version ({why}); it is ignored and replaced")]
    Refused { path: PathBuf, why: String },
    #[error(
        "state_dir {dir} is in use by another shuffle-janitor daemon (pid {pid}): two would share and \
         overwrite its state; stop that one, or give this one another state_dir"
    )]
    Locked { dir: PathBuf, pid: String },
    #[error("{path}: cannot lock: {source}")]
    Lock { path: PathBuf, source: io::Error },
}

/// The exclusive lock on a `state_dir`, held while it lives (the kernel drops it with the
/// process, however that ends).
#[derive(Debug)]
pub struct StateLock(#[allow(dead_code)] std::fs::File);

impl State {
    /// A state of `opens` (store path, stem, last open), keeping the newest [`MAX_ENTRIES`].
    /// Paths and stems that are not UTF-8 are left out (Spark names always are).
    pub fn new(written_at: Nanos, mut opens: Vec<(PathBuf, Vec<u8>, Nanos)>) -> State {
        opens.sort_by_key(|o| std::cmp::Reverse(o.2));
        opens.truncate(MAX_ENTRIES);
        let mut map: BTreeMap<String, Vec<(String, Nanos)>> = BTreeMap::new();
        for (store, stem, at) in opens {
            let (Some(store), Ok(stem)) = (store.to_str(), String::from_utf8(stem)) else {
                continue;
            };
            map.entry(store.to_owned()).or_default().push((stem, at));
        }
        State {
            version: VERSION,
            written_at,
            opens: map,
        }
    }

    /// Every open, as (store path, stem, last open).
    pub fn entries(&self) -> impl Iterator<Item = (&Path, &[u8], Nanos)> {
        self.opens.iter().flat_map(|(store, units)| {
            units
                .iter()
                .map(move |(stem, at)| (Path::new(store.as_str()), stem.as_bytes(), *at))
        })
    }

    pub fn len(&self) -> usize {
        self.opens.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the exclusive lock of `dir` (`flock` on `dir/lock`, which then names this
    /// process): refused while another process holds it, with that one's pid.
    pub fn lock(dir: &Path) -> Result<StateLock, StateError> {
        use std::io::{Read, Seek};
        let path = dir.join(LOCK_NAME);
        let fail = |source: io::Error| StateError::Lock {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(fail)?;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(SAFE_OPEN)
            .open(&path)
            .map_err(fail)?;
        regular(&f, &path).map_err(fail)?;
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(StateError::Locked {
                    dir: dir.to_owned(),
                    pid: if pid.is_empty() { "unknown".into() } else { pid.into() },
                });
            }
            Err(e) => return Err(fail(e.into())),
        }
        f.set_len(0).map_err(fail)?;
        f.rewind().map_err(fail)?;
        writeln!(f, "{}", std::process::id()).map_err(fail)?;
        Ok(StateLock(f))
    }

    /// Reads `dir/opens.json`. `Ok(None)` when there is none (a first start).
    pub fn load(dir: &Path) -> Result<Option<State>, StateError> {
        use std::io::Read;
        let path = dir.join(FILE_NAME);
        let refused = |why: String| StateError::Refused {
            path: path.clone(),
            why,
        };
        let file = match open_to_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len > MAX_BYTES {
            return Err(refused(format!("{len} bytes, more than {MAX_BYTES}")));
        }
        let mut text = Vec::new();
        // Read no more than the limit, whatever it grew to since.
        if let Err(source) = file.take(MAX_BYTES + 1).read_to_end(&mut text) {
            return Err(StateError::Read { path, source });
        }
        if text.len() as u64 > MAX_BYTES {
            return Err(refused(format!("more than {MAX_BYTES} bytes")));
        }
        let state: State = serde_json::from_slice(&text).map_err(|e| refused(e.to_string()))?;
        if state.version != VERSION {
            return Err(refused(format!(
                "version {}, this build reads {VERSION}",
                state.version
            )));
        }
        if state.len() > MAX_ENTRIES {
            return Err(refused(format!("{} entries, more than {MAX_ENTRIES}", state.len())));
        }
        Ok(Some(state))
    }

    /// Writes `dir/opens.json` atomically: a crash leaves the old file or the new one, whole.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut text = serde_json::to_vec(self).map_err(io::Error::other)?;
        text.push(b'\n');
        write_atomically(dir, FILE_NAME, &text, true)
    }
}

/// How every file of `state_dir` is opened: never through a symlink, never blocking on a FIFO.
/// Whoever can write `state_dir` (the daemon's user) must not make the daemon or a `sweep` run
/// by root read, truncate or write another file through a link, nor hang it at start on a FIFO.
const SAFE_OPEN: i32 = (rustix::fs::OFlags::NOFOLLOW.bits()
    | rustix::fs::OFlags::NONBLOCK.bits()
    | rustix::fs::OFlags::CLOEXEC.bits()) as i32;

/// Refuses anything but a regular file (a FIFO, a device, a directory), naming it.
fn regular(f: &std::fs::File, path: &Path) -> io::Result<()> {
    if f.metadata()?.file_type().is_file() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{}: not a regular file (a FIFO, a device, a directory?): remove it",
            path.display()
        )))
    }
}

/// Opens a file of `state_dir` to read it (see [`SAFE_OPEN`]). A symlink fails with `ELOOP`.
pub fn open_to_read(path: &Path) -> io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(SAFE_OPEN)
        .open(path)?;
    regular(&f, path)?;
    Ok(f)
}

/// Writes `dir/name` atomically: a crash leaves the old file or the new one, whole. The
/// temporary file gets a name of its own (`.NAME.XXXXXX.tmp`, created with `O_EXCL`: never
/// through a link planted under a name known in advance, never onto a file another holds open),
/// so that two writers (the daemon and a `sweep` both keep `clock-steps.json`) never remove or
/// rename each other's half-written file: the last rename wins, whole. `sync` fsyncs it and the
/// directory. On an error the temporary file is removed.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        // Readable as before (umask permitting): a record a `sweep` run by root writes must
        // stay readable to the daemon's user; `state_dir` itself is 0700.
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.as_file_mut().write_all(bytes)?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    if sync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    remove_stale_temporaries(dir, name);
    Ok(())
}

/// A temporary file is left by a writer killed before its rename; with a name of its own, the
/// next write no longer replaces it, and a copy of the file (the index's state: MiB) would pile
/// up at each crash. Those older than an hour are removed (a live writer renames its own within
/// seconds), and the fixed `.NAME.tmp` of earlier versions. Never through a link (unlink).
fn remove_stale_temporaries(dir: &Path, name: &str) {
    const STALE: std::time::Duration = std::time::Duration::from_secs(3600);
    let (prefix, old) = (format!(".{name}."), format!(".{name}.tmp"));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(n) = file_name.to_str() else { continue };
        let ours =
            n == old || (n.len() == prefix.len() + 6 + ".tmp".len() && n.starts_with(&prefix) && n.ends_with(".tmp"));
        let stale = || {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a > STALE))
        };
        if ours && stale() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_keeps_the_newest_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(State::load(dir.path()).unwrap().is_none(), "a first start has none");
        let opens = vec![
            (PathBuf::from("/data/blockmgr-1"), b"shuffle_0_1_0".to_vec(), 30),
            (PathBuf::from("/data/blockmgr-1"), b"shuffle_0_2_0".to_vec(), 10),
            (PathBuf::from("/data/blockmgr-2"), b"shuffle_3_1_0".to_vec(), 20),
        ];
        let s = State::new(99, opens);
        s.save(dir.path()).unwrap();
        let back = State::load(dir.path()).unwrap().unwrap();
        assert_eq!(back, s);
        let mut e: Vec<(PathBuf, Vec<u8>, Nanos)> =
            back.entries().map(|(p, s, t)| (p.to_owned(), s.to_vec(), t)).collect();
        e.sort_by_key(|x| x.2);
        assert_eq!(e[0].2, 10);
        assert_eq!(e.len(), 3);

        std::fs::write(dir.path().join(FILE_NAME), b"{\"version\": 1, \"opens\": [").unwrap();
        let err = State::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("opens.json: not a state file of this version"), "{err}");
        std::fs::write(
            dir.path().join(FILE_NAME),
            b"{\"version\":2,\"written_at\":0,\"opens\":{}}",
        )
        .unwrap();
        let err = State::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("version 2, this build reads 1"), "{err}");
    }

    #[test]
    fn the_files_of_state_dir_are_never_read_or_written_through_a_link_nor_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"{\"version\":1,\"written_at\":0,\"opens\":{}}").unwrap();
        let path = dir.path().join(FILE_NAME);

        // A symlink in place of the file: refused, naming it (not read through).
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = State::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("opens.json: cannot read"), "{err}");
        std::fs::remove_file(&path).unwrap();

        // A FIFO: refused at once (a plain open would wait for a writer for ever).
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = State::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let lock = dir.path().join(LOCK_NAME);
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        assert!(
            State::lock(dir.path()).is_err(),
            "the lock is never taken through a link"
        );
        assert_eq!(
            std::fs::metadata(&victim).unwrap().len(),
            39,
            "nor truncates what it names"
        );
        std::fs::remove_file(&path).unwrap();

        // A link planted under a temporary name (the fixed one of earlier versions): never
        // written through.
        std::os::unix::fs::symlink(&victim, dir.path().join(format!(".{FILE_NAME}.tmp"))).unwrap();
        let s = State::new(7, vec![(PathBuf::from("/d/blockmgr-1"), b"shuffle_0_1_0".to_vec(), 5)]);
        s.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap().unwrap(), s);
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"{\"version\":1,\"written_at\":0,\"opens\":{}}"
        );
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_file());
    }

    #[test]
    fn two_writers_of_one_file_never_undo_each_other() {
        // The daemon and a `sweep` both keep `clock-steps.json`. With one temporary name shared
        // by both, one removed the other's half-written file and its rename failed, or renamed
        // the other's half-written file into place.
        let dir = tempfile::tempdir().unwrap();
        let texts: Vec<Vec<u8>> = (0..2u8).map(|t| vec![b'a' + t; 256 << 10]).collect();
        std::thread::scope(|s| {
            for text in &texts {
                let dir = dir.path();
                s.spawn(move || {
                    for _ in 0..200 {
                        write_atomically(dir, "steps", text, false).expect("every write lands");
                    }
                });
            }
        });
        let last = std::fs::read(dir.path().join("steps")).unwrap();
        assert!(texts.contains(&last), "the file is one writer's whole text");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["steps"], "no temporary file is left");
    }

    #[test]
    fn temporary_files_a_crash_left_do_not_pile_up() {
        // A writer killed between its temporary file and its rename leaves `.NAME.XXXXXX.tmp`;
        // with unique names no later write replaced it, and one more piled up at each crash.
        let dir = tempfile::tempdir().unwrap();
        let hour_ago =
            filetime::FileTime::from_system_time(std::time::SystemTime::now() - std::time::Duration::from_secs(7200));
        let stale = [".steps.a1B2c3.tmp", ".steps.tmp"];
        let kept = [".steps.zZ9yY8.tmp", ".other.a1B2c3.tmp", "steps.a1B2c3.tmp"];
        for n in stale.iter().chain(&kept[1..]) {
            std::fs::write(dir.path().join(n), b"half").unwrap();
            filetime::set_file_mtime(dir.path().join(n), hour_ago).unwrap();
        }
        // A live writer's (just made).
        std::fs::write(dir.path().join(kept[0]), b"half").unwrap();
        write_atomically(dir.path(), "steps", b"whole", false).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut want: Vec<_> = kept.iter().chain(&["steps"]).map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names, want, "the stale temporary files are removed, nothing else");
    }
}
