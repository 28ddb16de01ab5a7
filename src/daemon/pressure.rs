//! When the daemon evicts: which filesystems are at or above the high watermark, and the
//! back-off after an eviction that could not free enough. That back-off ends early only when
//! it can make a difference: the filesystem grew materially since (new data may be deletable,
//! and the need is larger), or a unit held back as young reaches `min_age`. New files alone do
//! not end it: a writer adding files every fraction of a second would otherwise make the daemon
//! run a full eviction pass each time, for nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::policy::Nanos;

/// How long to wait after an eviction that could not free enough (at most `interval`).
pub const UNMET_BACKOFF: Duration = Duration::from_secs(30);
/// Growth of a filesystem's use that ends the back-off: this share of its size...
const GROWTH_SHARE: f64 = 0.01;
/// ...or at least this many bytes.
const GROWTH_MIN: u64 = 64 << 20;

/// What the last unmet eviction left.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Unmet {
    until: Instant,
    used: u64,
    size: u64,
    /// When the first unit held back as young becomes eligible.
    young_until: Option<Nanos>,
}

#[derive(Debug, Default)]
pub struct Pressure {
    /// Filesystems (by mount point) at or above the high watermark at the last reading.
    above: BTreeMap<PathBuf, bool>,
    unmet: BTreeMap<PathBuf, Unmet>,
}

impl Pressure {
    /// Records a reading of `mountpoint`; returns true when it just crossed the high watermark.
    pub fn reading(&mut self, mountpoint: &Path, above: bool) -> bool {
        let was = self.above.insert(mountpoint.to_owned(), above).unwrap_or(false);
        above && !was
    }

    pub fn any_above(&self) -> bool {
        self.above.values().any(|&a| a)
    }

    /// Forgets filesystems that no longer hold a root (a reload moved the roots away).
    pub fn keep_only(&mut self, mountpoints: &[PathBuf]) -> Vec<PathBuf> {
        let gone: Vec<PathBuf> = self
            .above
            .keys()
            .filter(|m| !mountpoints.contains(m))
            .cloned()
            .collect();
        for m in &gone {
            self.above.remove(m);
            self.unmet.remove(m);
        }
        gone
    }

    /// An eviction on `mountpoint` ended short: wait `backoff` unless things change.
    pub fn unmet(
        &mut self,
        mountpoint: &Path,
        now: Instant,
        backoff: Duration,
        used: u64,
        size: u64,
        young_until: Option<Nanos>,
    ) {
        self.unmet.insert(
            mountpoint.to_owned(),
            Unmet {
                until: now + backoff,
                used,
                size,
                young_until,
            },
        );
    }

    /// An eviction on `mountpoint` met its need (or there was none).
    pub fn met(&mut self, mountpoint: &Path) {
        self.unmet.remove(mountpoint);
    }

    /// Whether an eviction on `mountpoint` may run now, given its use now (`used` of `size`
    /// bytes) and the rules' clock.
    pub fn may_evict(&mut self, mountpoint: &Path, now: Instant, used: u64, wall: Nanos) -> bool {
        let Some(u) = self.unmet.get(mountpoint).copied() else {
            return true;
        };
        let grew = used.saturating_sub(u.used) >= ((u.size as f64 * GROWTH_SHARE) as u64).max(GROWTH_MIN);
        let young_ripe = u.young_until.is_some_and(|t| wall >= t);
        if now >= u.until || grew || young_ripe {
            self.unmet.remove(mountpoint);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_ends_on_time_on_growth_or_when_young_units_ripen_not_on_new_files() {
        let mut p = Pressure::default();
        let m = Path::new("/data");
        let t0 = Instant::now();
        assert!(p.reading(m, true), "crossed");
        assert!(!p.reading(m, true), "still above: not a new crossing");
        p.unmet(m, t0, UNMET_BACKOFF, 900 << 20, 1 << 30, Some(5_000));
        // A little more data (a new small unit): still waiting.
        assert!(!p.may_evict(m, t0 + Duration::from_secs(1), (900 << 20) + 4096, 1_000));
        // A young unit reaches min_age.
        assert!(p.may_evict(m, t0 + Duration::from_secs(2), 900 << 20, 5_000));
        p.unmet(m, t0, UNMET_BACKOFF, 900 << 20, 1 << 30, None);
        // Grew by 64 MiB (more than 1 % of 1 GiB).
        assert!(p.may_evict(m, t0 + Duration::from_secs(3), 964 << 20, 1_000));
        p.unmet(m, t0, UNMET_BACKOFF, 900 << 20, 1 << 30, None);
        assert!(!p.may_evict(m, t0 + Duration::from_secs(29), 900 << 20, 1_000));
        assert!(p.may_evict(m, t0 + UNMET_BACKOFF, 900 << 20, 1_000));
        assert_eq!(p.keep_only(&[PathBuf::from("/other")]), [PathBuf::from("/data")]);
        assert!(!p.any_above());
    }
}
