//! Whether the daemon is doing its work, for `/-/healthy`, `shuffle_janitor_stuck` and the
//! systemd watchdog.
//!
//! It is stuck when the walk or sweep in hand has made no progress (listed no directory,
//! deleted no unit: [`crate::fsx::progress`]) for `stuck_after`, or when its loop has not run
//! for that long: both mean a system call that does not return, which a hung NFS or FUSE mount
//! below a root (a walk, a read, a `statvfs`) causes, and which no timeout inside the job can
//! end. A job that is merely long (the first walk of ten million files) keeps making progress
//! and is not stuck, however long it runs. Then `/-/healthy` answers 503 with the reason, the
//! gauge says 1, and the watchdog is no longer fed (systemd restarts the daemon).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the daemon's loop tells the edges.
pub struct Health {
    origin: Instant,
    /// When the job in hand started (milliseconds since `origin`, plus 1); 0: none.
    job_started: AtomicU64,
    /// 1: a walk, 2: a sweep.
    job_kind: AtomicU8,
    /// [`crate::fsx::progress`] as last seen, and when it was seen to move (ms since origin).
    progress: AtomicU64,
    progress_at: AtomicU64,
    /// When the loop last ran (ms since origin, plus 1); 0: not yet.
    beat: AtomicU64,
    stuck_after_ms: AtomicU64,
    /// The work counter ([`crate::fsx::progress`]; another in tests).
    counter: fn() -> u64,
}

/// The kind of a job, for the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Walk = 1,
    Sweep = 2,
}

impl Health {
    pub fn new(stuck_after: Duration) -> Health {
        Health::counting(stuck_after, crate::fsx::progress)
    }

    fn counting(stuck_after: Duration, counter: fn() -> u64) -> Health {
        let h = Health {
            origin: Instant::now(),
            job_started: AtomicU64::new(0),
            job_kind: AtomicU8::new(0),
            progress: AtomicU64::new(counter()),
            progress_at: AtomicU64::new(0),
            beat: AtomicU64::new(0),
            stuck_after_ms: AtomicU64::new(0),
            counter,
        };
        h.set_stuck_after(stuck_after);
        h
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn set_stuck_after(&self, d: Duration) {
        self.stuck_after_ms
            .store(u64::try_from(d.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn job_started(&self, kind: JobKind) {
        self.observe();
        self.job_kind.store(kind as u8, Ordering::Relaxed);
        self.job_started.store(self.now_ms() + 1, Ordering::Relaxed);
    }

    pub fn job_ended(&self) {
        self.job_started.store(0, Ordering::Relaxed);
    }

    /// The loop ran.
    pub fn beat(&self) {
        self.beat.store(self.now_ms() + 1, Ordering::Relaxed);
    }

    /// Notes whether the work counter moved since last seen.
    fn observe(&self) {
        let p = (self.counter)();
        if self.progress.swap(p, Ordering::Relaxed) != p {
            self.progress_at.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// How long the job in hand has been running; 0 when none.
    pub fn job_seconds(&self) -> f64 {
        match self.job_started.load(Ordering::Relaxed) {
            0 => 0.0,
            s => self.now_ms().saturating_sub(s - 1) as f64 / 1e3,
        }
    }

    /// Why the daemon is stuck, if it is.
    pub fn stuck(&self) -> Option<String> {
        self.observe();
        let now = self.now_ms();
        let limit = self.stuck_after_ms.load(Ordering::Relaxed);
        let secs = |ms: u64| ms as f64 / 1e3;
        let beat = self.beat.load(Ordering::Relaxed);
        if beat != 0 && now.saturating_sub(beat - 1) > limit {
            return Some(format!(
                "the daemon's loop has not run for {:.0}s (stuck_after = {:.0}s): a stat or statvfs of a \
                 root on a filesystem that does not answer?",
                secs(now.saturating_sub(beat - 1)),
                secs(limit)
            ));
        }
        let started = self.job_started.load(Ordering::Relaxed);
        if started == 0 {
            return None;
        }
        let since = (started - 1).max(self.progress_at.load(Ordering::Relaxed));
        let idle = now.saturating_sub(since);
        if idle <= limit {
            return None;
        }
        let kind = match self.job_kind.load(Ordering::Relaxed) {
            1 => "walk",
            _ => "sweep",
        };
        Some(format!(
            "the {kind} in hand has run for {:.0}s and listed or deleted nothing for the last {:.0}s \
             (stuck_after = {:.0}s): a filesystem below a root that does not answer? The log's last \
             lines of the {kind} name the root",
            secs(now.saturating_sub(started - 1)),
            secs(idle),
            secs(limit)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_without_progress_for_stuck_after_is_stuck_and_progress_clears_it() {
        // A counter of its own: the other tests of this process list directories meanwhile.
        static WORK: AtomicU64 = AtomicU64::new(0);
        let h = Health::counting(Duration::from_millis(150), || WORK.load(Ordering::Relaxed));
        h.beat();
        assert_eq!(h.stuck(), None, "no job");
        h.job_started(JobKind::Walk);
        assert_eq!(h.stuck(), None);
        std::thread::sleep(Duration::from_millis(200));
        h.beat();
        let why = h.stuck().expect("stuck");
        assert!(why.contains("walk in hand"), "{why}");
        assert!(h.job_seconds() >= 0.2);
        WORK.fetch_add(1, Ordering::Relaxed);
        assert_eq!(h.stuck(), None, "it moved");
        h.job_ended();
        std::thread::sleep(Duration::from_millis(200));
        let why = h.stuck().expect("the loop did not beat");
        assert!(why.contains("loop has not run"), "{why}");
        h.beat();
        assert_eq!(h.stuck(), None);
        assert_eq!(h.job_seconds(), 0.0);
    }
}
