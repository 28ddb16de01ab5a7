//! The journal's lines as written: the evidence of a last use, the rule that decided, and one
//! builder per kind of line.

use super::*;

/// Which timestamp (or observation) made a unit's last use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Evidence {
    Mtime,
    Atime,
    Ctime,
    /// An open of one of its files seen by the daemon's watch (or restored from before a
    /// restart): newer than any of its timestamps.
    Open,
}

impl Evidence {
    pub fn text(self) -> &'static str {
        match self {
            Evidence::Mtime => "its newest mtime",
            Evidence::Atime => "its newest atime",
            Evidence::Ctime => "its newest ctime",
            Evidence::Open => "an open seen by the daemon's watch",
        }
    }
}

/// A unit's last use and what set it: the newest of the `basis` timestamps of its files, or
/// `last_open` when that is newer. Ties go to the first timestamp of `basis` (the one the
/// operator listed first), then to the timestamps over an open.
pub fn evidence<'s>(
    stats: impl IntoIterator<Item = &'s FileStat>,
    basis: &[Timestamp],
    last_open: Nanos,
) -> (Nanos, Evidence) {
    let mut best: Option<(Nanos, Evidence)> = None;
    for st in stats {
        for t in basis {
            let (v, e) = match t {
                Timestamp::Mtime => (st.mtime, Evidence::Mtime),
                Timestamp::Atime => (st.atime, Evidence::Atime),
                Timestamp::Ctime => (st.ctime, Evidence::Ctime),
            };
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, e));
            }
        }
    }
    match best {
        Some((v, e)) if v >= last_open => (v, e),
        _ => (last_open, Evidence::Open),
    }
}

/// The rule that decided a deletion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Rule {
    /// Unused for longer than `max_age`.
    Ttl { max_age_seconds: u64 },
    /// Its filesystem was at or above the high watermark (`pressure`), or a purge asked to bring
    /// it to the low one (`manual`): least recently used first; `rank` is the unit's place in
    /// that order (1 = the least recently used), where the sweep knows it.
    Pressure {
        mountpoint: String,
        used_before: f64,
        high: f64,
        low: f64,
        rank: Option<u64>,
    },
    Manual {
        mountpoint: String,
        used_before: f64,
        low: f64,
        rank: Option<u64>,
    },
    /// A block store no process owns any more, empty and quiet for `min_idle`.
    Dead { min_idle_seconds: u64 },
}

impl Rule {
    /// The rule for `reason`, on a filesystem `used_before` full, at `rank` in pressure's order.
    pub fn of(
        reason: Reason,
        cfg: &crate::config::Config,
        mountpoint: &Path,
        used_before: f64,
        rank: Option<u64>,
    ) -> Rule {
        match reason {
            Reason::Ttl => Rule::Ttl {
                max_age_seconds: cfg.max_age.as_secs(),
            },
            Reason::Pressure => Rule::Pressure {
                mountpoint: lossy(mountpoint),
                used_before,
                high: cfg.watermark.high,
                low: cfg.watermark.low,
                rank,
            },
            Reason::Manual => Rule::Manual {
                mountpoint: lossy(mountpoint),
                used_before,
                low: cfg.watermark.low,
                rank,
            },
        }
    }

    /// In words, for `explain`.
    pub fn text(&self) -> String {
        let pct = |r: f64| format!("{:.1}%", r * 100.0);
        let rank = |r: &Option<u64>| r.map_or_else(String::new, |r| format!(", rank {r} least recently used"));
        match self {
            Rule::Ttl { max_age_seconds } => format!(
                "ttl: unused for longer than max_age ({})",
                humantime::format_duration(Duration::from_secs(*max_age_seconds))
            ),
            Rule::Pressure {
                mountpoint,
                used_before,
                high,
                low,
                rank: r,
            } => format!(
                "pressure: {} was {} used (high watermark {}), evicting least recently used first down to {}{}",
                mountpoint,
                pct(*used_before),
                pct(*high),
                pct(*low),
                rank(r)
            ),
            Rule::Manual {
                mountpoint,
                used_before,
                low,
                rank: r,
            } => format!(
                "purge (SIGUSR2 or sweep --purge): {} was {} used, evicting least recently used first down to {}{}",
                mountpoint,
                pct(*used_before),
                pct(*low),
                rank(r)
            ),
            Rule::Dead { min_idle_seconds } => format!(
                "dead store: no live process owns it, and it was empty and quiet for stores.min_idle ({})",
                humantime::format_duration(Duration::from_secs(*min_idle_seconds))
            ),
        }
    }
}

/// Who deleted: the daemon, or a `sweep` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Daemon,
    Sweep,
}

/// A unit being deleted, as the journal records it.
#[derive(Clone, Debug)]
pub struct UnitRecord<'a> {
    pub reason: Reason,
    pub root: &'a Path,
    /// The store's absolute path.
    pub store: &'a Path,
    pub stem: &'a [u8],
    pub kind: Kind,
    /// Its files, relative to the store (`0c/shuffle_0_0_0.data`).
    pub files: Vec<String>,
    pub last_use: Nanos,
    pub evidence: Evidence,
    pub age_seconds: u64,
    pub rule: Rule,
}

/// A path as the journal writes it. JSON strings are UTF-8: a name that is not (Spark never
/// writes one, but a root may be) is written with U+FFFD in place of its bad bytes, never
/// refused: a line must never stop a deletion, and `serde_json` refuses such a `Path`.
pub fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// RFC 3339 in UTC with nanoseconds; times before 1970 (bad clocks) as the epoch.
pub fn rfc3339(ns: Nanos) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_nanos(t).to_string()
}

fn by_str(by: By) -> &'static str {
    match by {
        By::Daemon => "daemon",
        By::Sweep => "sweep",
    }
}

/// The `intent` line of unit `id`.
pub fn intent_line(id: &str, now: Nanos, store: &Path, files: &[String]) -> String {
    json!({
        "event": "intent",
        "id": id,
        "time_ns": now,
        "time": rfc3339(now),
        "store": lossy(store),
        "files": files,
    })
    .to_string()
}

/// The `deleted` line of unit `id`: `freed` bytes, `removed` of its files (all of them unless an
/// unlink failed half-way, then `partial`).
pub fn deleted_line(id: &str, now: Nanos, by: By, u: &UnitRecord, freed: u64, removed: &[String]) -> String {
    let partial = removed.len() != u.files.len();
    json!({
        "event": "deleted",
        "id": id,
        "time_ns": now,
        "time": rfc3339(now),
        "by": by_str(by),
        "trigger": u.reason.as_str(),
        "root": lossy(u.root),
        "store": lossy(u.store),
        "unit": {
            "stem": String::from_utf8_lossy(u.stem),
            "kind": u.kind.as_str(),
            "files": removed,
        },
        "partial": partial,
        "files_kept": if partial { u.files.iter().filter(|f| !removed.contains(f)).cloned().collect::<Vec<_>>() } else { Vec::new() },
        "bytes_freed": freed,
        "last_use_ns": u.last_use,
        "last_use": rfc3339(u.last_use),
        "evidence": u.evidence,
        "age_seconds": u.age_seconds,
        "rule": u.rule,
    })
    .to_string()
}

/// A store removed as dead.
#[derive(Clone, Debug)]
pub struct StoreRecord<'a> {
    pub root: &'a Path,
    pub store: &'a Path,
    /// Its sub-directories removed with it.
    pub dirs: u32,
    pub last_activity: Nanos,
    pub min_idle: Duration,
}

pub fn store_line(now: Nanos, by: By, s: &StoreRecord) -> String {
    json!({
        "event": "store_removed",
        "time_ns": now,
        "time": rfc3339(now),
        "by": by_str(by),
        "trigger": "reap",
        "root": lossy(s.root),
        "store": lossy(s.store),
        "dirs": s.dirs,
        "last_activity_ns": s.last_activity,
        "last_activity": rfc3339(s.last_activity),
        "rule": Rule::Dead { min_idle_seconds: s.min_idle.as_secs() },
    })
    .to_string()
}
