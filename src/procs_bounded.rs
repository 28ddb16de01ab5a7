//! The node's processes, read with a deadline: no sweep may wait on a path outside its roots.
//!
//! Reading `/proc` can block: a process's command line waits for its memory map's lock, which a
//! page fault on a hung NFS or FUSE mount holds, and resolving a JVM's `SPARK_LOCAL_DIRS`
//! through `/proc/PID/root` looks the path up on whatever filesystem it names, hung or not. Both
//! wait for ever on a mount that never answers. So:
//!
//! - each of those lookups ([`stat_in_root`]) runs on a thread of its own and is given
//!   [`LOOKUP_TIMEOUT`]; one that does not answer in time is an error, which makes that JVM one
//!   that "may own any store" (its directories unknown), and the rest of the scan goes on;
//! - the whole scan ([`read`]) runs on a thread of its own and is given [`SCAN_TIMEOUT`]; when it
//!   does not answer, the sweep is blind (no store is removed) and says why.
//!
//! A thread blocked in the kernel cannot be stopped, only abandoned: it finishes when the mount
//! answers (or is aborted), or dies with the process. While it hangs it is not started again: a
//! scan still in flight makes the next sweeps blind at once, and a path whose lookup still hangs
//! is "no answer" at once, so a hung mount costs one thread per path, never one per sweep (and
//! never more than [`MAX_HUNG_LOOKUPS`] in all). Each "no answer" is counted
//! ([`unanswered`], `shuffle_janitor_proc_unanswered_total`).
//!
//! The bounds are fixed rather than configured: a scan of `/proc` takes milliseconds on a node
//! with thousands of processes and a lookup of a local directory microseconds, so 10 s and 2 s
//! are far past anything healthy, short against a sweep interval, and well within the systemd
//! watchdog (60 s).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use rustix::fs::FileType;

use crate::config::PidNamespace;
use crate::fsx;
use crate::procs::Procs;

/// How long the scan of `/proc` may take before the sweep goes on without it (blind).
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one lookup of a JVM's local directory may take before that JVM counts as one that
/// may own any store.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Lookups in flight (hung ones included) past which new ones are not started: "no answer".
pub const MAX_HUNG_LOOKUPS: usize = 16;

static SCANS_UNANSWERED: AtomicU64 = AtomicU64::new(0);
static LOOKUPS_UNANSWERED: AtomicU64 = AtomicU64::new(0);

/// When the scan in flight started, while one is.
static SCAN_IN_FLIGHT: Mutex<Option<Instant>> = Mutex::new(None);
/// The paths (as the JVMs name them) whose lookup is in flight, hung ones included.
static LOOKUPS_IN_FLIGHT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// Scans and lookups that did not answer in time (or were not started because an earlier one
/// still hangs), since the process started: `(scans, lookups)`.
pub fn unanswered() -> (u64, u64) {
    (
        SCANS_UNANSWERED.load(Ordering::Relaxed),
        LOOKUPS_UNANSWERED.load(Ordering::Relaxed),
    )
}

/// [`Procs::read_in`] of `proc` with [`SCAN_TIMEOUT`].
pub fn read(proc: &Path, state_dir: Option<&Path>, ns: PidNamespace) -> Procs {
    let (proc, state_dir) = (proc.to_owned(), state_dir.map(Path::to_owned));
    read_with(SCAN_TIMEOUT, move || Procs::read_in(&proc, state_dir.as_deref(), ns))
}

fn blind(why: String) -> Procs {
    let mut p = Procs::default();
    p.blind = Some(why);
    p
}

/// Clears the scan in flight when its thread ends, panicking or not.
struct ScanDone;

impl Drop for ScanDone {
    fn drop(&mut self) {
        *SCAN_IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Runs `scan` on a thread of its own and waits `timeout` for it; see the module docs.
fn read_with(timeout: Duration, scan: impl FnOnce() -> Procs + Send + 'static) -> Procs {
    {
        let mut flight = SCAN_IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = *flight {
            SCANS_UNANSWERED.fetch_add(1, Ordering::Relaxed);
            return blind(format!(
                "the scan of /proc started {}s ago has not finished (a process or a mount that does not \
                 answer); it is not started again until it does",
                since.elapsed().as_secs()
            ));
        }
        *flight = Some(Instant::now());
    }
    let (tx, rx) = sync_channel(1);
    let spawned = std::thread::Builder::new().name("proc-scan".into()).spawn(move || {
        let done = ScanDone;
        let procs = scan();
        drop(done);
        let _ = tx.send(procs);
    });
    if let Err(e) = spawned {
        drop(ScanDone);
        return blind(format!("cannot start a thread to read /proc: {e}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(procs) => procs,
        Err(RecvTimeoutError::Timeout) => {
            SCANS_UNANSWERED.fetch_add(1, Ordering::Relaxed);
            blind(format!(
                "the scan of /proc did not answer within {}s (a process or a mount that does not answer)",
                timeout.as_secs_f64()
            ))
        }
        Err(RecvTimeoutError::Disconnected) => blind("the scan of /proc failed (its thread panicked)".into()),
    }
}

/// [`fsx::stat_proc_link`] of `path` as the process whose root is `root` (`/proc/PID/root`)
/// sees it, given [`LOOKUP_TIMEOUT`]; `TimedOut` when it does not answer in time, or when a
/// lookup of the same path still hangs (see the module docs).
pub fn stat_in_root(root: &Path, path: &Path) -> io::Result<(FileType, u64, u64)> {
    stat_with(root, path, LOOKUP_TIMEOUT, fsx::stat_proc_link)
}

fn stat_with(
    root: &Path,
    path: &Path,
    timeout: Duration,
    stat: fn(&Path) -> io::Result<(FileType, u64, u64)>,
) -> io::Result<(FileType, u64, u64)> {
    let inside = root.join(path.strip_prefix("/").unwrap_or(path));
    let key = path.to_owned();
    let no_answer = |why: &str| {
        LOOKUPS_UNANSWERED.fetch_add(1, Ordering::Relaxed);
        say_once(&key, why);
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{}: {why}", inside.display()),
        ))
    };
    {
        let mut flight = LOOKUPS_IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        let flight = flight.get_or_insert_with(HashSet::new);
        if flight.contains(&key) {
            return no_answer("an earlier lookup of it has not answered yet");
        }
        if flight.len() >= MAX_HUNG_LOOKUPS {
            return no_answer("too many lookups of other paths have not answered yet");
        }
        flight.insert(key.clone());
    }
    let (tx, rx) = sync_channel(1);
    let done = key.clone();
    let target = inside.clone();
    let spawned = std::thread::Builder::new().name("proc-lookup".into()).spawn(move || {
        let r = stat(&target);
        if let Some(f) = LOOKUPS_IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f.remove(&done);
        }
        let _ = tx.send(r);
    });
    if let Err(e) = spawned {
        if let Some(f) = LOOKUPS_IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f.remove(&key);
        }
        return Err(e);
    }
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => no_answer(&format!("no answer within {}s (a hung mount?)", timeout.as_secs_f64())),
    }
}

/// Says once per path that a JVM's directory does not answer.
fn say_once(path: &Path, why: &str) {
    static SAID: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.get_or_insert_with(HashSet::new).insert(path.to_owned()) {
        tracing::warn!(
            path = %path.display(),
            "a JVM's local directory cannot be looked up ({why}): every JVM naming it may own any block \
             store while it does not answer (further ones for this path are counted in \
             shuffle_janitor_proc_unanswered_total)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// One test for both: they share the process-wide state on purpose.
    #[test]
    fn a_scan_or_lookup_that_hangs_is_abandoned_and_not_started_again_while_it_hangs() {
        // The scan.
        let (release, wait) = channel::<()>();
        let t = Instant::now();
        let p = read_with(Duration::from_millis(200), move || {
            let _ = wait.recv();
            Procs::default()
        });
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(p.blind.as_deref().unwrap().contains("did not answer"), "{:?}", p.blind);
        let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = started.clone();
        let p = read_with(Duration::from_secs(5), move || {
            s.store(true, Ordering::Relaxed);
            Procs::default()
        });
        assert!(
            p.blind.as_deref().unwrap().contains("has not finished"),
            "{:?}",
            p.blind
        );
        assert!(
            !started.load(Ordering::Relaxed),
            "no second thread while the first hangs"
        );
        release.send(()).unwrap();
        let t = Instant::now();
        while SCAN_IN_FLIGHT.lock().unwrap().is_some() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let p = read_with(Duration::from_secs(5), Procs::default);
        assert!(p.blind.is_none(), "once it answered, scans run again: {:?}", p.blind);
        assert!(unanswered().0 >= 2);

        // The lookup: a stat that hangs until told.
        static GATE: Mutex<bool> = Mutex::new(false);
        fn hangs(_: &Path) -> io::Result<(FileType, u64, u64)> {
            while !*GATE.lock().unwrap() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok((FileType::Directory, 1, 2))
        }
        let root = Path::new("/proc/1/root");
        let hung = Path::new("/mnt/hung/spark");
        let e = stat_with(root, hung, Duration::from_millis(100), hangs).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("/proc/1/root/mnt/hung/spark"), "{e}");
        let t = Instant::now();
        let e = stat_with(root, hung, Duration::from_secs(5), hangs).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "answered at once, no thread started"
        );
        assert!(e.to_string().contains("earlier lookup"), "{e}");
        // Another path is looked up meanwhile.
        let other = stat_with(
            Path::new("/proc/self/root"),
            Path::new("/"),
            Duration::from_secs(5),
            fsx::stat_proc_link,
        );
        assert!(other.is_ok(), "{other:?}");
        *GATE.lock().unwrap() = true;
        let t = Instant::now();
        while LOOKUPS_IN_FLIGHT
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|f| !f.is_empty())
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            stat_with(root, hung, Duration::from_secs(5), hangs).unwrap(),
            (FileType::Directory, 1, 2)
        );
        assert!(unanswered().1 >= 2);
    }
}
