//! What a sweep did and saw: totals by reason and kind, skips by reason, errors by operation,
//! an inventory per root, and (on request) every file deleted. Rendered as text or JSON by the
//! CLI and turned into metrics by the daemon.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::policy::{self, IdleReason, Kept, Nanos, Reason, Shortfall, Skip};
use crate::spark::Kind;
use crate::store_dir::Failure;

/// A path as text: as it is when it is UTF-8; otherwise each byte that is not UTF-8 is written
/// `\xNN` (as `ls --quoting-style=escape` and Python's backslashreplace do), so a report never
/// fails, and never loses which file it means, on a name that is not UTF-8.
pub fn path_text(path: &Path) -> Cow<'_, str> {
    let bytes = path.as_os_str().as_bytes();
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

fn ser_path<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path_text(path))
}

fn ser_opt_path<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.serialize_str(&path_text(p)),
        None => s.serialize_none(),
    }
}

/// The fields that hold a time in Unix nanoseconds; the JSON report gives each as RFC 3339 too,
/// in `<field>_rfc3339` beside it.
const TIME_FIELDS: [&str; 4] = ["now", "oldest_last_use", "oldest_kept_last_use", "young_until"];

/// A time in Unix nanoseconds as RFC 3339 in UTC (`2026-12-03T16:42:31.264367Z`); `None` before
/// 1970, which no file of a live node has.
pub fn rfc3339(ns: Nanos) -> Option<String> {
    let ns = u64::try_from(ns).ok()?;
    Some(humantime::format_rfc3339(std::time::UNIX_EPOCH + Duration::from_nanos(ns)).to_string())
}

/// Adds `<field>_rfc3339` beside every [`TIME_FIELDS`] field of `v`, at any depth.
fn add_rfc3339(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(obj) => {
            for key in TIME_FIELDS {
                if let Some(ns) = obj.get(key).map(|t| t.as_i64()) {
                    let text = ns.and_then(rfc3339).map_or(serde_json::Value::Null, Into::into);
                    obj.insert(format!("{key}_rfc3339"), text);
                }
            }
            obj.values_mut().for_each(add_rfc3339);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(add_rfc3339),
        _ => {}
    }
}

/// A byte count for people: the exact count, then in binary units (`3221225472 (3.0 GiB)`).
pub fn bytes_text(n: u64) -> String {
    if n < 1024 {
        return n.to_string();
    }
    format!("{n} ({})", bytesize::ByteSize::b(n).display().iec())
}

/// [`bytes_text`] in a sentence: `3221225472 bytes (3.0 GiB)`.
pub fn bytes_words(n: u64) -> String {
    match bytes_text(n).split_once(' ') {
        Some((n, human)) => format!("{n} bytes {human}"),
        None => format!("{n} bytes"),
    }
}

/// The operation an error happened in (the `op` label of `shuffle_janitor_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Walk,
    Stat,
    Unlink,
    Statvfs,
    Watch,
    Config,
}

/// What a store's read or deletion failed at, as the operation it is counted under.
impl From<Failure> for Op {
    fn from(f: Failure) -> Op {
        match f {
            Failure::Walk => Op::Walk,
            Failure::Stat => Op::Stat,
            Failure::Unlink => Op::Unlink,
        }
    }
}

impl Op {
    pub const ALL: [Op; 6] = [Op::Walk, Op::Stat, Op::Unlink, Op::Statvfs, Op::Watch, Op::Config];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Walk => "walk",
            Op::Stat => "stat",
            Op::Unlink => "unlink",
            Op::Statvfs => "statvfs",
            Op::Watch => "watch",
            Op::Config => "config",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.files = self.files.saturating_add(other.files);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// One file deleted (or, in a dry run, that would be).
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// What deleting it frees (reclaims): its allocated blocks, or nothing when another hard
    /// link keeps them.
    pub bytes: u64,
    /// Its apparent size, as `ls -l` shows it.
    pub size: u64,
    pub kind: Kind,
    pub reason: Reason,
    pub age_seconds: u64,
}

/// Where a sweep hands each file it deletes (or, in a dry run, would delete) as it goes, so a
/// list of a million files is written out instead of held ([`crate::sweep::Options::listing`]).
/// Called from the sweep's worker threads.
pub trait Listing: Send + Sync + std::fmt::Debug {
    fn file(&self, c: &Candidate);
}

/// A [`Listing`] that writes each file to `out` as it comes: in text, a `would delete` line (a
/// dry run's list); in JSON, an element of the `candidates` array that opens the report's
/// object, whose other fields follow at [`StreamList::finish_json`]. Memory stays flat however
/// many files go. A reader that went away (`| head`) stops the writing, never the sweep.
pub struct StreamList {
    json: bool,
    state: std::sync::Mutex<StreamState>,
    /// Set at the first write that fails: the reader went away (`| head`), so the sweep stops at
    /// its next unit boundary instead of working on for nobody.
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

struct StreamState {
    out: Box<dyn std::io::Write + Send>,
    files: u64,
    error: Option<std::io::Error>,
}

impl std::fmt::Debug for StreamList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamList")
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

impl StreamList {
    /// `out` is buffered here.
    pub fn new(out: impl std::io::Write + Send + 'static, json: bool) -> Self {
        StreamList {
            json,
            state: std::sync::Mutex::new(StreamState {
                out: Box::new(std::io::BufWriter::with_capacity(64 * 1024, out)),
                files: 0,
                error: None,
            }),
            stop: None,
        }
    }

    /// Sets `flag` (a sweep's cancel flag) when writing fails.
    pub fn stop_on_error(mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    fn with(&self, f: impl FnOnce(&mut StreamState) -> std::io::Result<()>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.error.is_none()
            && let Err(e) = f(&mut st)
        {
            st.error = Some(e);
            if let Some(stop) = &self.stop {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Whether a write has failed (the rest of the list was not written).
    pub fn failed(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).error.is_some()
    }

    /// Ends a text list: a blank line after the files, then `summary`. Returns the first error
    /// writing met, if any.
    pub fn finish_text(&self, summary: &str) -> Option<std::io::Error> {
        self.with(|st| {
            if st.files > 0 {
                st.out.write_all(b"\n")?;
            }
            st.out.write_all(summary.as_bytes())?;
            st.out.flush()
        });
        self.state.lock().unwrap_or_else(|e| e.into_inner()).error.take()
    }

    /// Ends a JSON report: closes the `candidates` array and writes the other fields of
    /// `summary` (a JSON object; its own `candidates`, if any, is dropped) in the same object.
    pub fn finish_json(&self, mut summary: serde_json::Value) -> Option<std::io::Error> {
        if let Some(obj) = summary.as_object_mut() {
            obj.remove("candidates");
        }
        let rest = summary.to_string();
        // `{"a":1}` -> `"a":1}`; an empty object leaves just the closing brace.
        let rest = rest.strip_prefix('{').unwrap_or(&rest);
        self.with(|st| {
            if st.files == 0 {
                st.out.write_all(b"{\"candidates\":[")?;
            } else {
                st.out.write_all(b"\n")?;
            }
            st.out.write_all(b"]")?;
            if rest != "}" {
                st.out.write_all(b",")?;
            }
            st.out.write_all(rest.as_bytes())?;
            st.out.write_all(b"\n")?;
            st.out.flush()
        });
        self.state.lock().unwrap_or_else(|e| e.into_inner()).error.take()
    }
}

impl Listing for StreamList {
    fn file(&self, c: &Candidate) {
        let json = self.json;
        self.with(|st| {
            if json {
                st.out
                    .write_all(if st.files == 0 { b"{\"candidates\":[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut st.out, c)?;
            } else {
                st.out.write_all(c.dry_run_line().as_bytes())?;
            }
            st.files += 1;
            Ok(())
        });
    }
}

impl Candidate {
    /// The line a dry run prints for this file.
    pub fn dry_run_line(&self) -> String {
        let age = humantime::format_duration(Duration::from_secs(self.age_seconds));
        format!(
            "would delete {} ({} bytes, {}, {}, last used {} ago)\n",
            path_text(&self.path),
            self.bytes,
            self.kind,
            self.reason.as_str(),
            age
        )
    }
}

/// Upper bounds of the age histogram's buckets; the last bucket is everything older.
pub const AGE_BUCKETS: [(Duration, &str); 5] = [
    (Duration::from_secs(15 * 60), "15m"),
    (Duration::from_secs(3600), "1h"),
    (Duration::from_secs(6 * 3600), "6h"),
    (Duration::from_secs(24 * 3600), "1d"),
    (Duration::from_secs(7 * 24 * 3600), "7d"),
];

/// Spark files of one kind under one root, as seen before deletion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub files: u64,
    /// Allocated bytes, as `du` counts them.
    pub bytes: u64,
    /// The oldest last use (Unix nanoseconds).
    pub oldest_last_use: Option<Nanos>,
    /// Files by age of last use: under 15m, 1h, 6h, 1d, 7d, and older.
    pub age_histogram: [u64; AGE_BUCKETS.len() + 1],
}

impl Inventory {
    pub fn add(&mut self, bytes: u64, last_use: Nanos, now: Nanos) {
        self.files += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        self.oldest_last_use = Some(self.oldest_last_use.map_or(last_use, |o| o.min(last_use)));
        // In nanoseconds: this runs for every file, and the bounds are constants.
        let age = now.saturating_sub(last_use).max(0) as u128;
        let bucket = AGE_BUCKETS
            .iter()
            .position(|(b, _)| age < b.as_nanos())
            .unwrap_or(AGE_BUCKETS.len());
        self.age_histogram[bucket] += 1;
    }

    pub fn merge(&mut self, o: &Inventory) {
        self.files = self.files.saturating_add(o.files);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.oldest_last_use = match (self.oldest_last_use, o.oldest_last_use) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (a, b) in self.age_histogram.iter_mut().zip(o.age_histogram) {
            *a += b;
        }
    }
}

/// One configured root (or one path its glob expanded to).
#[derive(Clone, Debug, Serialize)]
pub struct RootReport {
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// False when it does not exist (yet): looked at again next sweep.
    pub present: bool,
    #[serde(serialize_with = "ser_opt_path")]
    pub mountpoint: Option<PathBuf>,
    /// What was there before this sweep deleted anything.
    pub kinds: BTreeMap<Kind, Inventory>,
    /// Oldest last use among files of deletable kinds that this sweep kept.
    pub oldest_kept_last_use: Option<Nanos>,
    /// Removed by this sweep, in allocated bytes like `kinds` (what is left = `kinds` minus this).
    pub deleted: BTreeMap<Kind, Tally>,
    /// Its block stores by state (see [`crate::policy::StoreState`]): a dead one counted here
    /// was removed (or, in a dry run, would be).
    pub stores: StoreCounts,
    /// Its idle stores by why they are kept.
    pub idle_reasons: BTreeMap<IdleReason, u64>,
}

/// Idle stores kept for one reason and (when a process may own them) by one process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeptBy {
    pub reason: IdleReason,
    pub pid: Option<u32>,
    /// The process and why it counts: `1234 (java com.acme.Main): its open archive ... holds ...`.
    pub process: Option<String>,
    pub stores: u64,
}

/// Block stores by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    pub live: u64,
    pub idle: u64,
    pub dead: u64,
}

impl StoreCounts {
    pub fn add(&mut self, o: StoreCounts) {
        self.live += o.live;
        self.idle += o.idle;
        self.dead += o.dead;
    }
}

/// Dead stores removed (in a dry run, that would be).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Reaped {
    pub stores: u64,
    /// Directories removed: the stores, their sub-directories, emptied `executor-*` ones.
    pub dirs: u64,
    /// The stores, when files are listed.
    #[serde(serialize_with = "ser_paths")]
    pub paths: Vec<PathBuf>,
}

fn ser_paths<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(paths.len()))?;
    for p in paths {
        seq.serialize_element(&path_text(p))?;
    }
    seq.end()
}

impl RootReport {
    pub fn new(path: PathBuf, present: bool, mountpoint: Option<PathBuf>) -> Self {
        RootReport {
            path,
            present,
            mountpoint,
            kinds: BTreeMap::new(),
            oldest_kept_last_use: None,
            deleted: BTreeMap::new(),
            stores: StoreCounts::default(),
            idle_reasons: BTreeMap::new(),
        }
    }

    fn merge(&mut self, o: &RootReport) {
        for (k, inv) in &o.kinds {
            self.kinds.entry(*k).or_default().merge(inv);
        }
        for (k, t) in &o.deleted {
            self.deleted.entry(*k).or_default().add(*t);
        }
        self.stores.add(o.stores);
        for (r, n) in &o.idle_reasons {
            *self.idle_reasons.entry(*r).or_default() += n;
        }
        self.oldest_kept_last_use = match (self.oldest_kept_last_use, o.oldest_kept_last_use) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One filesystem holding roots.
#[derive(Clone, Debug, Serialize)]
pub struct FsReport {
    #[serde(serialize_with = "ser_path")]
    pub mountpoint: PathBuf,
    pub used_ratio: f64,
    /// Bytes this sweep had to free for pressure or a purge, and why.
    pub need_bytes: u64,
    pub need_reason: Option<Reason>,
    /// Set when it could not free them all.
    pub shortfall: Option<Shortfall>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub purge: bool,
    pub now: Nanos,
    pub duration_seconds: f64,
    /// True when the sweep was stopped before its end (shutdown).
    pub cancelled: bool,
    /// Files deleted, and the bytes that freed ([`Candidate::bytes`]), by reason and kind.
    pub deleted: BTreeMap<Reason, BTreeMap<Kind, Tally>>,
    pub skipped: BTreeMap<Skip, u64>,
    pub errors: BTreeMap<Op, u64>,
    pub roots: Vec<RootReport>,
    pub filesystems: Vec<FsReport>,
    /// Processes whose open files could not be read (see `skip_open_files`).
    pub open_files_unreadable: usize,
    /// Files left by a deletion that did not finish (the process was killed mid-unit), removed.
    pub leftovers_removed: Tally,
    /// Dead stores removed.
    pub reaped: Reaped,
    /// Why no store could be judged dead this sweep (the processes could not all be seen, or
    /// `stores.reap` is off), if so.
    pub liveness_unknown: Option<String>,
    /// Why the idle stores are kept, by reason and process: what stops reaping on this node.
    pub stores_kept_by: Vec<KeptBy>,
    /// Whether this sweep judged the stores (`roots[].stores` and `liveness_unknown` mean
    /// something); a pressure sweep does not.
    #[serde(skip)]
    pub stores_judged: bool,
    pub candidates: Vec<Candidate>,
}

impl Report {
    pub fn new(dry_run: bool, purge: bool, now: Nanos) -> Self {
        Report {
            dry_run,
            purge,
            now,
            duration_seconds: 0.0,
            cancelled: false,
            deleted: BTreeMap::new(),
            skipped: BTreeMap::new(),
            errors: BTreeMap::new(),
            roots: Vec::new(),
            filesystems: Vec::new(),
            open_files_unreadable: 0,
            leftovers_removed: Tally::default(),
            reaped: Reaped::default(),
            liveness_unknown: None,
            stores_kept_by: Vec::new(),
            stores_judged: false,
            candidates: Vec::new(),
        }
    }

    pub fn deleted_total(&self) -> Tally {
        let mut t = Tally::default();
        self.deleted.values().flat_map(|m| m.values()).for_each(|x| t.add(*x));
        t
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn skip(&mut self, why: Skip, files: u64) {
        let n = self.skipped.entry(why).or_default();
        *n = n.saturating_add(files);
    }

    pub fn error(&mut self, op: Op) {
        let n = self.errors.entry(op).or_default();
        *n = n.saturating_add(1);
    }

    /// Counts an idle store of root `root` (an index in `roots`), kept for `kept`, by the
    /// process `about` describes when one may own it.
    pub fn kept(&mut self, root: usize, kept: Kept, about: Option<&str>) {
        if let Some(r) = self.roots.get_mut(root) {
            r.stores.idle += 1;
            *r.idle_reasons.entry(kept.reason).or_default() += 1;
        }
        self.add_kept_by(KeptBy {
            reason: kept.reason,
            pid: kept.pid,
            process: about.map(str::to_string),
            stores: 1,
        });
    }

    fn add_kept_by(&mut self, k: KeptBy) {
        match self
            .stores_kept_by
            .iter_mut()
            .find(|m| m.reason == k.reason && m.pid == k.pid)
        {
            Some(m) => m.stores += k.stores,
            None => self.stores_kept_by.push(k),
        }
    }

    pub fn root_mut(&mut self, path: &Path) -> Option<&mut RootReport> {
        self.roots.iter_mut().find(|r| r.path == path)
    }

    /// Adds the counts of a report made by another thread over other filesystems. Roots are
    /// matched by path; filesystems and candidates are appended.
    pub fn merge(&mut self, o: Report) {
        self.cancelled |= o.cancelled;
        for (r, kinds) in o.deleted {
            for (k, t) in kinds {
                self.deleted.entry(r).or_default().entry(k).or_default().add(t);
            }
        }
        for (s, n) in o.skipped {
            self.skip(s, n);
        }
        for (op, n) in o.errors {
            let mine = self.errors.entry(op).or_default();
            *mine = mine.saturating_add(n);
        }
        self.leftovers_removed.add(o.leftovers_removed);
        self.reaped.stores += o.reaped.stores;
        self.reaped.dirs += o.reaped.dirs;
        self.reaped.paths.extend(o.reaped.paths);
        self.liveness_unknown = self.liveness_unknown.take().or(o.liveness_unknown);
        self.stores_judged |= o.stores_judged;
        for k in o.stores_kept_by {
            self.add_kept_by(k);
        }
        for root in &o.roots {
            match self.root_mut(&root.path) {
                Some(mine) => mine.merge(root),
                None => self.roots.push(root.clone()),
            }
        }
        self.filesystems.extend(o.filesystems);
        self.candidates.extend(o.candidates);
    }

    pub fn to_json(&self) -> serde_json::Value {
        let total = self.deleted_total();
        // Paths are written as text whatever their bytes (see `path_text`): this does not fail,
        // and a report printed after deleting must never panic.
        let mut v = serde_json::to_value(self)
            .unwrap_or_else(|e| serde_json::json!({ "error": format!("cannot serialise the report: {e}") }));
        let Some(obj) = v.as_object_mut() else { return v };
        obj.insert("deleted_files".into(), total.files.into());
        obj.insert("deleted_bytes".into(), total.bytes.into());
        let by_op = obj.get("errors").cloned().unwrap_or_default();
        obj.insert("errors_by_op".into(), by_op);
        obj.insert("errors".into(), self.error_count().into());
        add_rfc3339(&mut v);
        v
    }

    /// The summary table `sweep` prints, with one line per file in a dry run.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if self.dry_run {
            for c in &self.candidates {
                s.push_str(&c.dry_run_line());
            }
            if !self.candidates.is_empty() {
                s.push('\n');
            }
        }
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        let _ = writeln!(s, "{:<10} {:<11} {:>10} {:>28}", "reason", "kind", "files", "bytes");
        for (reason, kinds) in &self.deleted {
            for (kind, t) in kinds {
                let _ = writeln!(
                    s,
                    "{:<10} {:<11} {:>10} {:>28}",
                    reason.as_str(),
                    kind.as_str(),
                    t.files,
                    bytes_text(t.bytes)
                );
            }
        }
        let total = self.deleted_total();
        let _ = writeln!(
            s,
            "{:<22} {:>10} {:>28}",
            format!("{verb} (total)"),
            total.files,
            bytes_text(total.bytes)
        );
        // Each reason with what it means: "unknown 41" alone reads like an error.
        if self.skipped.is_empty() {
            s.push_str("skipped files: none\n");
        } else {
            s.push_str("skipped files:\n");
            for (k, n) in &self.skipped {
                let _ = writeln!(s, "  {:<10} {:>10}  {}", k.as_str(), n, k.meaning());
            }
        }
        let errors: Vec<String> = self.errors.iter().map(|(k, n)| format!("{} {n}", k.as_str())).collect();
        let _ = writeln!(
            s,
            "errors: {}",
            if errors.is_empty() {
                "none".into()
            } else {
                errors.join(", ")
            }
        );
        for fs in &self.filesystems {
            let _ = write!(
                s,
                "filesystem {}: {:.1}% used",
                path_text(&fs.mountpoint),
                fs.used_ratio * 100.0
            );
            if let Some(reason) = fs.need_reason {
                let _ = write!(s, ", {} needed {} freed", reason.as_str(), bytes_words(fs.need_bytes));
            }
            if let Some(sf) = fs.shortfall {
                let _ = write!(
                    s,
                    ", {} short (held back: young {}, open {}, protected {})",
                    bytes_words(sf.missing_bytes),
                    bytes_text(sf.young_bytes),
                    bytes_text(sf.open_bytes),
                    bytes_text(sf.protected_bytes)
                );
            }
            s.push('\n');
        }
        let stores = self.roots.iter().fold(StoreCounts::default(), |mut a, r| {
            a.add(r.stores);
            a
        });
        if stores != StoreCounts::default() {
            let verb = if self.dry_run { "would remove" } else { "removed" };
            let _ = writeln!(
                s,
                "block stores: {} live, {} idle, {} dead ({verb} {} stores, {} directories)",
                stores.live, stores.idle, stores.dead, self.reaped.stores, self.reaped.dirs
            );
        }
        for k in &self.stores_kept_by {
            let _ = writeln!(
                s,
                "  {} idle ({}): {}",
                k.stores,
                k.reason.as_str(),
                k.process.as_ref().map_or_else(
                    || k.reason.text().to_string(),
                    |p| format!("{}: process {p}", k.reason.text())
                )
            );
        }
        if self.dry_run {
            for p in &self.reaped.paths {
                let _ = writeln!(s, "would remove dead store {}", path_text(p));
            }
        }
        if let Some(why) = &self.liveness_unknown {
            let _ = writeln!(s, "no block store removed: {why}");
        }
        for root in self.roots.iter().filter(|r| !r.present) {
            let _ = writeln!(
                s,
                "root {} does not exist (yet); it is looked at again next sweep",
                path_text(&root.path)
            );
        }
        if self.cancelled {
            s.push_str("cancelled before the end\n");
        }
        let _ = writeln!(s, "duration: {:.3}s", self.duration_seconds);
        s
    }

    /// The inventory `report` prints.
    pub fn inventory_text(&self) -> String {
        let mut s = String::new();
        let buckets: Vec<String> = AGE_BUCKETS
            .iter()
            .map(|(_, l)| format!("<{l}"))
            .chain([format!(">={}", AGE_BUCKETS[AGE_BUCKETS.len() - 1].1)])
            .collect();
        for root in &self.roots {
            let _ = writeln!(
                s,
                "root {}{}",
                path_text(&root.path),
                if root.present { "" } else { " (does not exist yet)" }
            );
            if root.kinds.is_empty() && root.present {
                let _ = writeln!(s, "  no Spark files");
                continue;
            }
            let _ = writeln!(
                s,
                "  {:<11} {:>9} {:>26} {:>12}  age histogram ({})",
                "kind",
                "files",
                "bytes",
                "oldest",
                buckets.join(" ")
            );
            for (kind, inv) in &root.kinds {
                let oldest = inv.oldest_last_use.map_or_else(
                    || "-".to_string(),
                    |o| humantime::format_duration(Duration::from_secs(policy::age_seconds(self.now, o))).to_string(),
                );
                let hist: Vec<String> = inv.age_histogram.iter().map(u64::to_string).collect();
                let _ = writeln!(
                    s,
                    "  {:<11} {:>9} {:>26} {:>12}  {}",
                    kind.as_str(),
                    inv.files,
                    bytes_text(inv.bytes),
                    oldest,
                    hist.join(" ")
                );
            }
        }
        let total = self.deleted_total();
        let _ = writeln!(
            s,
            "\na sweep now would reclaim {} files, {}:",
            total.files,
            bytes_words(total.bytes)
        );
        s.push_str(
            &self
                .to_text()
                .lines()
                .filter(|l| !l.starts_with("would delete "))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        s.push('\n');
        s
    }
}
