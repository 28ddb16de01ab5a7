//! The daemon's Prometheus metrics. Names and labels are a contract with dashboards and alerts
//! (`deploy/` and the README list them); change them only with a deprecation.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::config::Config;
use crate::policy::{IdleReason, Reason, Skip};
use crate::report::{Op, Report};
use crate::spark::Kind;

/// Why a sweep ran (the `trigger` label of `shuffle_janitor_sweeps_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Interval,
    Pressure,
    Signal,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Interval => "interval",
            Trigger::Pressure => "pressure",
            Trigger::Signal => "signal",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    reclaimed_bytes: IntCounterVec,
    deleted_files: IntCounterVec,
    oldest_file_age: GaugeVec,
    tracked_bytes: GaugeVec,
    tracked_files: GaugeVec,
    pub filesystem_used_ratio: GaugeVec,
    watermark_ratio: GaugeVec,
    config_seconds: GaugeVec,
    skipped_files: IntCounterVec,
    errors: IntCounterVec,
    sweeps: IntCounterVec,
    pub sweeps_postponed: IntCounterVec,
    sweep_duration: Histogram,
    last_sweep_timestamp: Gauge,
    pub unfreed_bytes: IntGauge,
    pressure_unmet: GaugeVec,
    pub inotify_active: IntGauge,
    pub inotify_overflows: IntCounter,
    pub unwatched_dirs: IntGauge,
    pub index_units: IntGauge,
    pub index_drift: IntCounterVec,
    pub clock_steps: IntCounter,
    pub control_clients_dropped: IntCounter,
    stores: GaugeVec,
    idle_stores: GaugeVec,
    reaped_stores: IntCounter,
    reaped_dirs: IntCounter,
    store_liveness_unknown: IntGauge,
    proc_unanswered: IntCounterVec,
    /// Serialises [`Metrics::render`]'s catching up of `proc_unanswered`.
    proc_unanswered_sync: std::sync::Mutex<()>,
    /// The stores by state as the last sweep that judged them found them, for `status`.
    last_stores: std::sync::Mutex<serde_json::Value>,
    job_running_seconds: Gauge,
    stuck: IntGauge,
    pub health: super::health::Health,
    pub config_last_reload_successful: IntGauge,
    dry_run: IntGauge,
    dry_run_bytes: IntCounterVec,
    journal_lines_lost: IntCounter,
}

/// The stores by state and root, and why the idle ones are kept, as `report` judged them.
fn stores_status(report: &Report) -> serde_json::Value {
    let roots: Vec<serde_json::Value> = report
        .roots
        .iter()
        .filter(|r| r.present)
        .map(|r| {
            serde_json::json!({
                "root": crate::journal::lossy(&r.path),
                "live": r.stores.live,
                "idle": r.stores.idle,
                "dead": r.stores.dead,
                "idle_kept": r.idle_reasons.iter().map(|(k, n)| (k.as_str().to_owned(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    serde_json::json!({
        "judged": crate::journal::rfc3339(report.now),
        "dry_run": report.dry_run,
        "removed": report.reaped.stores,
        "liveness_unknown": report.liveness_unknown,
        "roots": roots,
    })
}

impl Metrics {
    /// For `status`: the stores by state, as the last sweep that judged them found them (null
    /// before the first).
    pub fn stores_status(&self) -> serde_json::Value {
        self.last_stores.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// For `status`: what the walks found the index to differ from the disk in, by kind.
    pub fn drift_status(&self) -> serde_json::Value {
        ["missing", "extra", "stale"]
            .iter()
            .map(|k| {
                (
                    (*k).to_owned(),
                    serde_json::json!(self.index_drift.with_label_values(&[k]).get()),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

fn int_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let m = Metrics {
            reclaimed_bytes: counter_vec(
                &r,
                "shuffle_janitor_reclaimed_bytes_total",
                "Bytes freed by deleting Spark files, by reason (ttl, pressure, manual): the blocks each \
                 deletion returned to its filesystem (allocated size; nothing for a file another hard \
                 link keeps).",
                &["reason"],
            ),
            deleted_files: counter_vec(
                &r,
                "shuffle_janitor_deleted_files_total",
                "Spark files deleted, by reason and kind.",
                &["reason", "kind"],
            ),
            oldest_file_age: gauge_vec(
                &r,
                "shuffle_janitor_oldest_file_age_seconds",
                "Age of the oldest last use among deletable files kept by the last sweep; 0 when none.",
                &["root"],
            ),
            tracked_bytes: gauge_vec(
                &r,
                "shuffle_janitor_tracked_bytes",
                "Bytes of Spark files left after the last sweep, by root and kind.",
                &["root", "kind"],
            ),
            tracked_files: gauge_vec(
                &r,
                "shuffle_janitor_tracked_files",
                "Spark files left after the last sweep, by root and kind.",
                &["root", "kind"],
            ),
            filesystem_used_ratio: gauge_vec(
                &r,
                "shuffle_janitor_filesystem_used_ratio",
                "Fraction of each filesystem holding a root in use, as df counts it.",
                &["mountpoint"],
            ),
            watermark_ratio: gauge_vec(
                &r,
                "shuffle_janitor_watermark_ratio",
                "Configured watermarks (high, low) as fractions of a filesystem.",
                &["level"],
            ),
            config_seconds: gauge_vec(
                &r,
                "shuffle_janitor_config_seconds",
                "Configured durations (interval, max_age, min_age, poll), so alerts can follow them.",
                &["setting"],
            ),
            skipped_files: counter_vec(
                &r,
                "shuffle_janitor_skipped_files_total",
                "Files kept although judged, by reason (young, open, protected, changed, unknown, \
                 incomplete, unwatched).",
                &["reason"],
            ),
            errors: counter_vec(
                &r,
                "shuffle_janitor_errors_total",
                "Errors by operation (walk, stat, unlink, statvfs, watch, config).",
                &["op"],
            ),
            sweeps: counter_vec(
                &r,
                "shuffle_janitor_sweeps_total",
                "Sweeps run, by trigger (startup, interval, pressure, signal).",
                &["trigger"],
            ),
            sweeps_postponed: counter_vec(
                &r,
                "shuffle_janitor_sweeps_postponed_total",
                "Sweeps that decided nothing and run again, by reason (events_lost: the watch lost \
                 events after the sweep began; watch_behind: the watch had not caught up with its \
                 events).",
                &["reason"],
            ),
            sweep_duration: {
                let opts = HistogramOpts::new("shuffle_janitor_sweep_duration_seconds", "Duration of sweeps.")
                    .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]);
                let h = Histogram::with_opts(opts).expect("valid metric");
                r.register(Box::new(h.clone())).expect("registered once");
                h
            },
            last_sweep_timestamp: {
                let g = Gauge::new(
                    "shuffle_janitor_last_sweep_timestamp_seconds",
                    "Unix time at which the last sweep ended.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            unfreed_bytes: int_gauge(
                &r,
                "shuffle_janitor_unfreed_bytes",
                "Bytes of deleted Spark files still held open by a process, so not yet returned to the filesystem.",
            ),
            pressure_unmet: gauge_vec(
                &r,
                "shuffle_janitor_pressure_unmet",
                "1 while a filesystem is above the high watermark and nothing more may be deleted.",
                &["mountpoint"],
            ),
            inotify_active: int_gauge(
                &r,
                "shuffle_janitor_inotify_active",
                "1 while inotify watches every Spark directory, 0 while some are judged by timestamps \
                 alone (watch limit, errors, no inotify).",
            ),
            inotify_overflows: int_counter(
                &r,
                "shuffle_janitor_inotify_overflows_total",
                "Times the kernel's inotify queue overflowed (events lost; everything is walked again \
                 and the TTL waits max_age for what may have been used unseen).",
            ),
            unwatched_dirs: int_gauge(
                &r,
                "shuffle_janitor_unwatched_dirs",
                "Spark directories without an inotify watch, walked at every interval instead.",
            ),
            index_units: int_gauge(
                &r,
                "shuffle_janitor_index_units",
                "Units (map outputs and single files) in the daemon's index.",
            ),
            index_drift: counter_vec(
                &r,
                "shuffle_janitor_index_drift_total",
                "Differences a walk found between the index and the disk, by kind (missing, extra, \
                 stale); 0 while no inotify event is lost.",
                &["kind"],
            ),
            stores: gauge_vec(
                &r,
                "shuffle_janitor_stores",
                "Block stores by root and state after the last sweep that judged them (live: holds files \
                 or used within stores.min_idle; idle: empty and quiet but a process may own it, or the \
                 processes cannot all be seen; dead: judged dead but still there, as in a dry run or when \
                 the removal failed).",
                &["root", "state"],
            ),
            idle_stores: gauge_vec(
                &r,
                "shuffle_janitor_idle_stores",
                "Idle block stores (empty and quiet, kept) by root and why after the last sweep that \
                 judged them: unseen (the processes cannot all be seen), held (a process holds it), \
                 shared_fs, executor (a live executor may own it), spark_jvm (a live JVM with Spark's \
                 classes may), unknown_jvm (a live JVM whose classes cannot be judged may), clock_step \
                 (a JVM whose start cannot be trusted may), unverified (not read again).",
                &["root", "reason"],
            ),
            reaped_stores: int_counter(
                &r,
                "shuffle_janitor_reaped_stores_total",
                "Dead block stores removed (empty stores of executors that are gone).",
            ),
            reaped_dirs: int_counter(
                &r,
                "shuffle_janitor_reaped_dirs_total",
                "Directories removed with dead stores: the stores, their NN sub-directories and \
                 emptied executor-* directories.",
            ),
            store_liveness_unknown: int_gauge(
                &r,
                "shuffle_janitor_store_liveness_unknown",
                "1 when the last sweep could not judge whether empty stores are dead (the node's \
                 processes cannot all be seen): none is removed.",
            ),
            proc_unanswered: counter_vec(
                &r,
                "shuffle_janitor_proc_unanswered_total",
                "Reads of the node's processes that did not answer in time (a hung mount): scan, the \
                 whole scan of /proc (that sweep removed no store); lookup, a JVM's local directory \
                 (that JVM may own any store).",
                &["what"],
            ),
            proc_unanswered_sync: std::sync::Mutex::new(()),
            last_stores: std::sync::Mutex::new(serde_json::Value::Null),
            job_running_seconds: {
                let g = Gauge::new(
                    "shuffle_janitor_job_running_seconds",
                    "How long the walk or sweep in hand has been running; 0 when none.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            stuck: int_gauge(
                &r,
                "shuffle_janitor_stuck",
                "1 while the daemon is stuck (/-/healthy answers 503 with the reason, the systemd \
                 watchdog is not fed): the walk or sweep in hand has listed or deleted nothing for \
                 stuck_after, or the loop has not run for that long (a hung filesystem).",
            ),
            health: super::health::Health::new(Duration::from_secs(600)),
            clock_steps: int_counter(
                &r,
                "shuffle_janitor_clock_steps_total",
                "Steps of the wall clock (more than 60 s away from the monotonic clock); after one, \
                 ages are measured on the clock carried on from before it for max_age.",
            ),
            control_clients_dropped: int_counter(
                &r,
                "shuffle_janitor_control_clients_dropped_total",
                "Clients of the control socket dropped for being too slow: no request within 2 s, \
                 nothing of the answer read for 10 s, or not all of it within 120 s.",
            ),
            config_last_reload_successful: int_gauge(
                &r,
                "shuffle_janitor_config_last_reload_successful",
                "1 if the last configuration (re)load succeeded, 0 if it failed and the old one runs on.",
            ),
            dry_run: int_gauge(
                &r,
                "shuffle_janitor_dry_run",
                "1 while the daemon runs dry (dry_run = true or run --dry-run): it decides and counts, and                  deletes nothing.",
            ),
            dry_run_bytes: counter_vec(
                &r,
                "shuffle_janitor_dry_run_would_reclaim_bytes_total",
                "In a dry run, the bytes the sweeps would have freed, by reason (never counted in                  shuffle_janitor_reclaimed_bytes_total). Units stay, so each sweep counts them again.",
                &["reason"],
            ),
            journal_lines_lost: int_counter(
                &r,
                "shuffle_janitor_journal_lines_lost_total",
                "Lines of the deletion journal that could not be written (a full or read-only disk);                  deleting went on without them.",
            ),
            registry: r,
        };
        let build = GaugeVec::new(
            Opts::new("shuffle_janitor_build_info", "Build of the running daemon; always 1."),
            &["version", "revision", "rustversion"],
        )
        .expect("valid metric");
        build
            .with_label_values(&[crate::VERSION, crate::REVISION, crate::RUSTVERSION])
            .set(1.0);
        m.registry.register(Box::new(build)).expect("registered once");
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("registered once");
        // Label values known up front are exported at 0, so rate() and alerts work from the start.
        for r in [Reason::Ttl, Reason::Pressure, Reason::Manual] {
            m.reclaimed_bytes.with_label_values(&[r.as_str()]);
            m.dry_run_bytes.with_label_values(&[r.as_str()]);
            for k in Kind::ALL.into_iter().filter(|&k| k != Kind::Other) {
                m.deleted_files.with_label_values(&[r.as_str(), k.as_str()]);
            }
        }
        for s in Skip::ALL {
            m.skipped_files.with_label_values(&[s.as_str()]);
        }
        for op in Op::ALL {
            m.errors.with_label_values(&[op.as_str()]);
        }
        for t in [Trigger::Startup, Trigger::Interval, Trigger::Pressure, Trigger::Signal] {
            m.sweeps.with_label_values(&[t.as_str()]);
        }
        for r in ["events_lost", "watch_behind"] {
            m.sweeps_postponed.with_label_values(&[r]);
        }
        for k in ["missing", "extra", "stale"] {
            m.index_drift.with_label_values(&[k]);
        }
        for w in ["scan", "lookup"] {
            m.proc_unanswered.with_label_values(&[w]);
        }
        m.config_last_reload_successful.set(1);
        m
    }

    /// Exports the settings that dashboards and alerts compare against.
    pub fn set_config(&self, cfg: &Config) {
        self.watermark_ratio
            .with_label_values(&["high"])
            .set(cfg.watermark.high);
        self.watermark_ratio.with_label_values(&["low"]).set(cfg.watermark.low);
        for (setting, d) in [
            ("interval", cfg.interval),
            ("max_age", cfg.max_age),
            ("min_age", cfg.min_age),
            ("poll", cfg.watermark.poll),
        ] {
            self.config_seconds.with_label_values(&[setting]).set(d.as_secs_f64());
        }
        self.health.set_stuck_after(cfg.stuck_after);
        self.dry_run.set(i64::from(cfg.dry_run));
    }

    /// Catches the journal's lost lines up with the process's count (see [`crate::journal`]).
    pub fn journal_lost(&self, lost: u64) {
        let have = self.journal_lines_lost.get();
        if lost > have {
            self.journal_lines_lost.inc_by(lost - have);
        }
    }

    pub fn error(&self, op: Op) {
        self.errors.with_label_values(&[op.as_str()]).inc();
    }

    /// Folds one sweep's report into the metrics.
    pub fn record_sweep(&self, trigger: Trigger, report: &Report, ended_unix: f64) {
        self.sweeps.with_label_values(&[trigger.as_str()]).inc();
        self.sweep_duration.observe(report.duration_seconds);
        self.last_sweep_timestamp.set(ended_unix);
        if report.dry_run {
            for (reason, kinds) in &report.deleted {
                let bytes = kinds.values().map(|t| t.bytes).fold(0u64, u64::saturating_add);
                self.dry_run_bytes.with_label_values(&[reason.as_str()]).inc_by(bytes);
            }
        } else {
            for (reason, kinds) in &report.deleted {
                for (kind, t) in kinds {
                    self.reclaimed_bytes
                        .with_label_values(&[reason.as_str()])
                        .inc_by(t.bytes);
                    self.deleted_files
                        .with_label_values(&[reason.as_str(), kind.as_str()])
                        .inc_by(t.files);
                }
            }
        }
        for (skip, n) in &report.skipped {
            self.skipped_files.with_label_values(&[skip.as_str()]).inc_by(*n);
        }
        for (op, n) in &report.errors {
            self.errors.with_label_values(&[op.as_str()]).inc_by(*n);
        }
        if !report.dry_run {
            self.reaped_stores.inc_by(report.reaped.stores);
            self.reaped_dirs.inc_by(report.reaped.dirs);
        }
        // Stores are judged by interval and signal sweeps, not under pressure: the gauges keep
        // what the last sweep that judged them found.
        if report.stores_judged {
            self.store_liveness_unknown
                .set(i64::from(report.liveness_unknown.is_some()));
            self.stores.reset();
            self.idle_stores.reset();
            for root in report.roots.iter().filter(|r| r.present) {
                let name = root.path.to_string_lossy();
                let st = &root.stores;
                // Dead ones still there: a dry run, or a removal that failed.
                for (state, n) in [("live", st.live), ("idle", st.idle), ("dead", st.dead)] {
                    self.stores.with_label_values(&[&name, state]).set(n as f64);
                }
                // Every reason, 0 when none: the set is fixed, and alerts need no absent().
                for reason in IdleReason::ALL {
                    let n = root.idle_reasons.get(&reason).copied().unwrap_or(0);
                    self.idle_stores
                        .with_label_values(&[&name, reason.as_str()])
                        .set(n as f64);
                }
            }
            *self.last_stores.lock().unwrap_or_else(|e| e.into_inner()) = stores_status(report);
        }
        // Per-root gauges describe the tree now: reset so vanished roots and kinds disappear.
        self.oldest_file_age.reset();
        self.tracked_bytes.reset();
        self.tracked_files.reset();
        for root in report.roots.iter().filter(|r| r.present) {
            let name = root.path.to_string_lossy();
            let age = root
                .oldest_kept_last_use
                .map_or(0.0, |t| (report.now.saturating_sub(t).max(0) as f64) / 1e9);
            self.oldest_file_age.with_label_values(&[&name]).set(age);
            for kind in Kind::ALL {
                let seen = root.kinds.get(&kind).cloned().unwrap_or_default();
                let gone = if report.dry_run {
                    Default::default()
                } else {
                    root.deleted.get(&kind).copied().unwrap_or_default()
                };
                if seen.files == 0 {
                    continue;
                }
                // Saturating: a unit that appeared after the inventory and was deleted would
                // otherwise wrap these to 1.8e19.
                self.tracked_files
                    .with_label_values(&[&name, kind.as_str()])
                    .set(seen.files.saturating_sub(gone.files) as f64);
                self.tracked_bytes
                    .with_label_values(&[&name, kind.as_str()])
                    .set(seen.bytes.saturating_sub(gone.bytes) as f64);
            }
        }
        let mut unmet: BTreeMap<String, f64> = BTreeMap::new();
        for fs in &report.filesystems {
            let name = fs.mountpoint.to_string_lossy().into_owned();
            self.filesystem_used_ratio
                .with_label_values(&[&name])
                .set(fs.used_ratio);
            let v = if fs.shortfall.is_some() && fs.need_reason == Some(Reason::Pressure) {
                1.0
            } else {
                0.0
            };
            unmet.insert(name, v);
        }
        self.pressure_unmet.reset();
        for (name, v) in unmet {
            self.pressure_unmet.with_label_values(&[&name]).set(v);
        }
    }

    /// Drops the series of a filesystem that no longer holds a root.
    pub fn forget_filesystem(&self, mountpoint: &str) {
        let _ = self.filesystem_used_ratio.remove_label_values(&[mountpoint]);
        let _ = self.pressure_unmet.remove_label_values(&[mountpoint]);
    }

    /// Counts index drift found by a walk.
    pub fn drift(&self, d: &crate::index::Drift) {
        for (k, n) in [("missing", d.missing), ("extra", d.extra), ("stale", d.stale)] {
            self.index_drift.with_label_values(&[k]).inc_by(n);
        }
    }

    /// Clears `pressure_unmet` for a filesystem that went back under the high watermark.
    pub fn pressure_relieved(&self, mountpoint: &str) {
        if let Ok(g) = self.pressure_unmet.get_metric_with_label_values(&[mountpoint]) {
            g.set(0.0);
        }
    }

    /// The text exposition format and its Content-Type.
    pub fn render(&self) -> (Vec<u8>, String) {
        self.job_running_seconds.set(self.health.job_seconds());
        self.stuck.set(i64::from(self.health.stuck().is_some()));
        {
            // Counted where they happen (any thread, the CLI too); caught up here.
            let _one = self.proc_unanswered_sync.lock().unwrap_or_else(|e| e.into_inner());
            let (scans, lookups) = crate::procs_bounded::unanswered();
            for (what, total) in [("scan", scans), ("lookup", lookups)] {
                let c = self.proc_unanswered.with_label_values(&[what]);
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
        let encoder = TextEncoder::new();
        let mut buf = Vec::new();
        encoder
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding to memory");
        (buf, encoder.format_type().to_string())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Kept;
    use crate::report::RootReport;

    #[test]
    fn idle_stores_are_exported_by_reason_beside_the_stores_by_state() {
        let m = Metrics::new();
        let mut report = Report::new(false, false, 0);
        report.roots.push(RootReport::new("/r".into(), true, None));
        report.stores_judged = true;
        let kept = Kept {
            reason: IdleReason::SparkJvm,
            pid: Some(42),
        };
        report.kept(
            0,
            kept,
            Some("42 (java com.acme.Main): its open archive /a.jar holds ..."),
        );
        report.kept(0, kept, None);
        assert_eq!(report.stores_kept_by.len(), 1, "one line per reason and process");
        assert_eq!(report.stores_kept_by[0].stores, 2);
        m.record_sweep(Trigger::Interval, &report, 0.0);
        let (text, _) = m.render();
        let text = String::from_utf8(text).unwrap();
        // The existing series unchanged; the new gauge with every reason, 0 when none.
        assert!(
            text.contains("shuffle_janitor_stores{root=\"/r\",state=\"idle\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("shuffle_janitor_idle_stores{reason=\"spark_jvm\",root=\"/r\"} 2"),
            "{text}"
        );
        for r in IdleReason::ALL.iter().filter(|r| **r != IdleReason::SparkJvm) {
            let line = format!("shuffle_janitor_idle_stores{{reason=\"{}\",root=\"/r\"}} 0", r.as_str());
            assert!(text.contains(&line), "{line}: {text}");
        }
    }
}
