//! The last time each unit was opened, as inotify reported it: a last use that does not depend
//! on atime (data disks are often `noatime`, and `relatime` can be a day stale). The daemon's
//! watcher writes it; sweeps read it. One entry per unit (store directory, stem), not per event,
//! and entries that can no longer matter are pruned, so memory stays bounded.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::policy::Nanos;
use crate::spark;

/// Most units remembered; past this, new opens are not recorded (and timestamps decide).
pub const MAX_UNITS: usize = 1 << 20;

/// Stem (raw bytes, as the sweep reads names) -> last open.
type Stems = HashMap<Box<[u8]>, Nanos>;

#[derive(Debug, Default)]
pub struct OpenLog {
    // store directory -> its units' last opens
    units: Mutex<HashMap<PathBuf, Stems>>,
}

impl OpenLog {
    /// Records that `path` (a file in a store's `NN` sub-directory) was opened at `at`.
    /// Returns false when the path is not a Spark block file or the log is full.
    pub fn record(&self, path: &Path, at: Nanos) -> bool {
        let (Some(name), Some(store)) = (
            path.file_name().map(|n| n.as_bytes()),
            path.parent().and_then(Path::parent),
        ) else {
            return false;
        };
        let Some((_, stem_len)) = spark::parse_block_name(name) else {
            return false;
        };
        let stem = &name[..stem_len];
        let mut units = self.units.lock().expect("open log poisoned");
        if let Some(t) = units.get_mut(store).and_then(|stems| stems.get_mut(stem)) {
            *t = (*t).max(at);
            return true;
        }
        if units.values().map(Stems::len).sum::<usize>() >= MAX_UNITS {
            return false;
        }
        units.entry(store.to_owned()).or_default().insert(stem.into(), at);
        true
    }

    /// The last open of the unit `stem` in the store at `store`, if seen.
    pub fn last_open(&self, store: &Path, stem: &[u8]) -> Option<Nanos> {
        self.units
            .lock()
            .expect("open log poisoned")
            .get(store)?
            .get(stem)
            .copied()
    }

    /// Forgets opens before `before`: a unit last opened that long ago is judged by the
    /// same TTL either way.
    pub fn prune(&self, before: Nanos) {
        let mut units = self.units.lock().expect("open log poisoned");
        units.retain(|_, stems| {
            stems.retain(|_, t| *t >= before);
            !stems.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.units
            .lock()
            .expect("open log poisoned")
            .values()
            .map(Stems::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_are_kept_per_unit_newest_wins_and_pruned() {
        let log = OpenLog::default();
        let store = Path::new("/data/blockmgr-1");
        assert!(log.record(&store.join("0c/shuffle_0_4_0.data"), 10));
        assert!(log.record(&store.join("30/shuffle_0_4_0.index"), 30));
        assert!(log.record(&store.join("0c/shuffle_0_4_0.data"), 20));
        assert!(!log.record(&store.join("0c/core.1"), 40), "not a Spark file");
        assert_eq!(log.last_open(store, b"shuffle_0_4_0"), Some(30));
        assert_eq!(log.last_open(Path::new("/data/blockmgr-2"), b"shuffle_0_4_0"), None);
        assert_eq!(log.len(), 1);
        log.prune(31);
        assert!(log.is_empty());
    }
}
