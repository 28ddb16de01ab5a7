//! `plan`: the daemon's next sweep run as a dry run at this moment, on its index and the opens
//! its watch saw (its own decision, not a second copy of the rules), each file written to the
//! client as the sweep finds it and the summary at the end: the same streaming list, and the
//! same JSON, as `sweep --dry-run --format json` ([`StreamList`]), so memory stays flat however
//! many files the plan holds. A client that goes away or stops reading cancels the dry sweep.

use std::io::{self, Write};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::config::Config;
use crate::index::Index;
use crate::journal::{lossy, rfc3339};
use crate::policy::Mode;
use crate::report::{Listing, Report, StreamList};
use crate::sweep::Options;
use crate::sweep::indexed::{IndexedRoot, run_probed};

/// Writes the plan to `out`; returns the first error writing met.
pub fn stream(
    cfg: &Config,
    present: &[IndexedRoot],
    index: &Mutex<Index>,
    out: Box<dyn Write + Send>,
) -> Option<io::Error> {
    let cancel = Arc::new(AtomicBool::new(false));
    let listing = Arc::new(StreamList::new(out, true).stop_on_error(cancel.clone()));
    let opts = Options {
        mode: Mode::Sweep,
        dry_run: true,
        list_files: false,
        listing: Some(listing.clone() as Arc<dyn Listing>),
        opens: None,
        now: None,
    };
    let report = run_probed(cfg, present, index, &opts, &cancel, None, None);
    listing.finish_json(summary(cfg, &report))
}

/// What follows the candidates: what they free, what is kept by reason, the filesystems.
fn summary(cfg: &Config, report: &Report) -> Value {
    let kept: serde_json::Map<String, Value> = report
        .skipped
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
        .collect();
    let filesystems: Vec<Value> = report
        .filesystems
        .iter()
        .map(|f| {
            json!({
                "mountpoint": lossy(&f.mountpoint),
                "used_ratio": f.used_ratio,
                "need_bytes": f.need_bytes,
                "need_reason": f.need_reason.map(|r| r.as_str()),
                "shortfall": f.shortfall,
            })
        })
        .collect();
    let would = report.deleted_total();
    json!({
        "now_ns": report.now,
        "now": rfc3339(report.now),
        "daemon_dry_run": cfg.dry_run,
        "would_delete_files": would.files,
        "would_free_bytes": would.bytes,
        "kept_files": kept,
        "filesystems": filesystems,
        "cancelled": report.cancelled,
    })
}
