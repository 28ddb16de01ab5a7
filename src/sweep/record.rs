//! What a sweep says about itself in the log: the first error of each operation (and the first
//! store skipped or kept incomplete) at warn with its path, the rest at debug, so a bad disk
//! gives a few lines per sweep, not one per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::fsx::DirError;
use crate::policy::Shortfall;
use crate::report::{Op, Report};

/// Which notices this sweep has given already, shared by its threads.
#[derive(Debug, Default)]
pub struct FirstNotices(AtomicU32);

const SKIPPED: u32 = 1 << 16;
const INCOMPLETE: u32 = 1 << 17;
const PARTIAL: u32 = 1 << 18;

impl FirstNotices {
    /// True the first time `bit` is asked for in this sweep.
    fn first(&self, bit: u32) -> bool {
        self.0.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }
}

/// The shortfall warning repeats at most this often per filesystem: pressure that cannot be met
/// is retried every few seconds, and the gauge `shuffle_janitor_pressure_unmet` says it anyway.
const SHORTFALL_EVERY: Duration = Duration::from_secs(300);

/// One thread's view of a sweep's notices.
pub struct Recorder<'a> {
    first: &'a FirstNotices,
}

impl<'a> Recorder<'a> {
    pub fn new(first: &'a FirstNotices) -> Self {
        Recorder { first }
    }

    /// Counts an error; logs the first of each operation in the sweep at warn with its path.
    pub fn error(&self, report: &mut Report, op: Op, path: &Path, e: &dyn std::fmt::Display) {
        report.error(op);
        if self.first.first(1 << op as u32) {
            warn!(op = op.as_str(), path = %path.display(), error = %e, "error (further ones of this kind at debug)");
        } else {
            debug!(op = op.as_str(), path = %path.display(), error = %e, "error");
        }
    }

    /// A directory of a layout not entered: a mount point, a bind mount or a symlink in place
    /// of one of Spark's directories.
    pub fn skipped(&self, path: &Path, why: &DirError) {
        if self.first.first(SKIPPED) {
            warn!(path = %path.display(), "not entered: it {why} (further ones at debug)");
        } else {
            debug!(path = %path.display(), "not entered: it {why}");
        }
    }

    /// A store whose units are all kept because part of it could not be read.
    pub fn incomplete(&self, store: &Path, why: &str, files: usize) {
        if self.first.first(INCOMPLETE) {
            warn!(store = %store.display(), files, "store not listed completely ({why}): none of its units is known \
                  whole, so all are kept (further ones at debug)");
        } else {
            debug!(store = %store.display(), files, "store not listed completely ({why}); its units are kept");
        }
    }

    /// A unit of which some files went and the last could not be unlinked.
    pub fn partial(&self, first_file: &Path, removed: usize, files: usize) {
        if self.first.first(PARTIAL) {
            warn!(path = %first_file.display(), removed, files, "unit deleted only in part");
        } else {
            debug!(path = %first_file.display(), removed, files, "unit deleted only in part");
        }
    }

    /// Pressure could not free enough on `mountpoint`.
    pub fn shortfall(&self, mountpoint: &Path, sf: &Shortfall) {
        static LAST: Mutex<Option<HashMap<PathBuf, Instant>>> = Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let map = last.get_or_insert_with(HashMap::new);
        let now = Instant::now();
        let due = map
            .get(mountpoint)
            .is_none_or(|t| now.duration_since(*t) >= SHORTFALL_EVERY);
        if due {
            map.insert(mountpoint.to_owned(), now);
            warn!(
                mountpoint = %mountpoint.display(),
                missing_bytes = sf.missing_bytes,
                young_bytes = sf.young_bytes,
                open_bytes = sf.open_bytes,
                protected_bytes = sf.protected_bytes,
                "cannot free enough: everything left is young, open or protected (repeated at most every 5 minutes)"
            );
        } else {
            debug!(mountpoint = %mountpoint.display(), missing_bytes = sf.missing_bytes, "cannot free enough");
        }
    }
}

/// A purge (SIGUSR2, `sweep --purge`) on a filesystem already at or below `watermark.low` has
/// nothing to do: say so and why, or the request seems ignored.
pub fn nothing_to_purge(mountpoint: &Path, used: f64, low: f64) {
    info!(
        mountpoint = %mountpoint.display(),
        used,
        low,
        "nothing to purge on this filesystem: its use is at or below watermark.low"
    );
}
