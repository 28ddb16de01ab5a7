//! The deletion journal: every unit and every store shuffle-janitor deletes, one JSON line each,
//! in `state_dir` (`deletions.jsonl`, rotated to `deletions.jsonl.1`), so that "did the janitor
//! delete my shuffle file?" has an answer days later (`shuffle-janitor explain PATH`).
//!
//! Lines (every one has `event`, `time_ns` and `time`, RFC 3339 in UTC):
//! - `intent`: a unit about to be deleted (its store and file names), written out with one
//!   `write(2)` before its first unlink, so that a crash in the middle of a unit is seen;
//! - `deleted`: the unit, gone: trigger, root, store, stem, kind, files, bytes freed, its last
//!   use and the evidence that set it, its age, and the rule that decided;
//! - `kept`: a unit of an `intent` that changed at its last check and was not deleted;
//! - `store_removed`: a dead block store removed;
//! - `interrupted`: written at the daemon's start for an `intent` without its `deleted` (the
//!   process died in between): which of its files are gone and which are left.
//!
//! Writing never holds a deletion back: lines are buffered (flushed with the next intent, at
//! 64 KiB, and at the end of each sweep), never fsync'ed, and a line that cannot be written (a
//! full disk) is dropped and counted ([`Journal::lost`], the metric
//! `shuffle_janitor_journal_lines_lost_total`); a line a full disk cut short (this process's, or
//! another writer's: a `sweep` next to the daemon) is followed by a fresh line, never glued to the
//! next, and readers skip it and count it. The two files together
//! stay under `journal_max_mib`: the current one is rotated when it passes half of it (so right
//! after a rotation only half of it is history). A file moved away by something else (logrotate)
//! is noticed before the next write and the path opened again.
//!
//! One journal per process, like the log: [`install`] sets it, the deletion paths ask
//! [`current`] (the daemon and `sweep` install it; library users and tests that do not, write
//! none).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::config::Timestamp;
use crate::disk::FileStat;
use crate::policy::{Nanos, Reason};
use crate::spark::Kind;

/// The current file's name in `state_dir`.
pub const FILE_NAME: &str = "deletions.jsonl";
/// The previous file's name (one rotation kept).
pub const OLD_NAME: &str = "deletions.jsonl.1";
/// Buffered lines are written out past this many bytes.
const FLUSH_AT: usize = 64 << 10;

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

/// An `intent` line, as read back.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Intent {
    pub id: String,
    pub time_ns: Nanos,
    pub store: PathBuf,
    pub files: Vec<String>,
}

#[derive(Deserialize)]
struct Event {
    event: String,
    #[serde(default)]
    id: Option<String>,
}

/// The intents among `lines` that no `deleted` (or `kept`, or `interrupted`) line with the same id follows:
/// units whose deletion a crash interrupted. Lines that are not JSON (a line cut by a crash)
/// are skipped.
pub fn unmatched_intents<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> Vec<Intent> {
    // Only the intents still open are held (with their order), not the journal: it is read as
    // a stream, so a full one costs no more memory than its open intents.
    let mut open: HashMap<String, (u64, Intent)> = HashMap::new();
    let mut n = 0u64;
    for line in lines {
        let line = line.as_ref();
        let Ok(ev) = serde_json::from_str::<Event>(line) else {
            continue;
        };
        match (ev.event.as_str(), ev.id) {
            ("intent", Some(id)) => {
                if let Ok(i) = serde_json::from_str::<Intent>(line) {
                    open.insert(id, (n, i));
                    n += 1;
                }
            }
            ("deleted" | "kept" | "interrupted", Some(id)) => {
                open.remove(&id);
            }
            _ => {}
        }
    }
    let mut left: Vec<(u64, Intent)> = open.into_values().collect();
    left.sort_by_key(|(n, _)| *n);
    left.into_iter().map(|(_, i)| i).collect()
}

/// The writer's process of an intent id (`<pid>.<start>.<n>`), when it is a shuffle-janitor that
/// still runs (a `sweep` next to the daemon): its intents are not interrupted.
fn writer_alive(id: &str) -> bool {
    let Some(pid) = id.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id()
        && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "shuffle-janitor")
}

/// Both files' lines, oldest first, as a stream (a journal is tens of MiB). A line that is not
/// UTF-8 (cut inside a character by a full disk) is given as `Err`, not the end of the file:
/// what follows it is still read. Empty lines (a writer starting afresh after a cut line that
/// happened to end whole) are left out.
fn read_lines(dir: &Path) -> impl Iterator<Item = Result<String, ()>> + use<> {
    // Both files are opened before either is read, the current one first: a rotation while the
    // old one is read (tens of MiB) would otherwise hand over a fresh current file, and the
    // lines that just became the old one were never read (explain said "not deleted" of a file
    // they named). A rotation between the two opens gives the same file twice: read once.
    let current = File::open(dir.join(FILE_NAME)).ok();
    let id = |f: &File| f.metadata().ok().map(|m| (m.dev(), m.ino()));
    let old = File::open(dir.join(OLD_NAME))
        .ok()
        .filter(|o| current.as_ref().is_none_or(|c| id(c) != id(o)));
    [old, current].into_iter().flatten().flat_map(|f| {
        io::BufReader::new(f)
            .split(b'\n')
            .map_while(Result::ok)
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8(l).map_err(drop))
    })
}

/// What a reader of the journal finds about one path.
#[derive(Clone, Debug)]
pub struct Found {
    /// The line, as written.
    pub line: Value,
}

/// The journal's entries about `path` (a file of a deleted unit, or a removed store or a path
/// inside one), oldest first; and when the journal begins (its first line's time).
pub fn lookup(dir: &Path, path: &Path) -> (Vec<Found>, Option<Nanos>) {
    let mut l = lookup_many(dir, &[path]);
    (l.found.pop().unwrap_or_default(), l.start)
}

/// What the journal says of several paths, read in one pass.
#[derive(Debug, Default)]
pub struct Lookup {
    /// For each path asked, in order: its entries, oldest first. An `intent` is among them only
    /// while no `deleted`, `kept` or `interrupted` line closes it: a deletion started and never
    /// finished (the process was killed, or is still at it), so the file may be gone by it.
    pub found: Vec<Vec<Found>>,
    /// When the journal begins (its first readable line's time).
    pub start: Option<Nanos>,
    /// Lines that could not be read (cut by a full disk or a crash, then glued to nothing):
    /// skipped, never half-read.
    pub broken: u64,
}

/// The fields of a line a lookup needs to decide whether to read the rest.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    event: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    time_ns: Option<Nanos>,
    /// An intent's files.
    #[serde(default)]
    files: Vec<String>,
    /// A deleted unit's.
    #[serde(default)]
    unit: Option<HeadUnit>,
    /// An interrupted unit's, gone.
    #[serde(default)]
    files_gone: Vec<String>,
}

#[derive(Deserialize)]
struct HeadUnit {
    #[serde(default)]
    files: Vec<String>,
}

impl Head {
    /// The paths asked about (their numbers, from `asked`) that this line, whose store is
    /// `store` with `under` below it, is about.
    fn hits(&self, store: &Path, under: &[usize], asked: &HashMap<&Path, Vec<usize>>) -> Vec<usize> {
        let named = |files: &[String]| -> Vec<usize> {
            files
                .iter()
                .filter_map(|f| asked.get(store.join(f).as_path()))
                .flatten()
                .copied()
                .collect()
        };
        match self.event.as_str() {
            "store_removed" => under.to_vec(),
            "deleted" => self.unit.as_ref().map_or_else(Vec::new, |u| named(&u.files)),
            "interrupted" => named(&self.files_gone),
            "intent" => named(&self.files),
            _ => Vec::new(),
        }
    }
}

/// The journal's entries about each of `paths` (see [`Lookup`]), in one pass over the journal
/// (a journal is tens of MiB, and `explain` may be asked about many paths): a line is read in
/// full only when its store is one of the paths' directories, and only the lines about them
/// are kept.
pub fn lookup_many(dir: &Path, paths: &[&Path]) -> Lookup {
    // Every directory above an asked path, to the paths below it: a line's store is one of them.
    // The path itself too: a removed store asked about by its own path is in the journal.
    let mut below: HashMap<&Path, Vec<usize>> = HashMap::new();
    let mut asked: HashMap<&Path, Vec<usize>> = HashMap::new();
    for (i, p) in paths.iter().enumerate() {
        asked.entry(p).or_default().push(i);
        for a in p.ancestors() {
            below.entry(a).or_default().push(i);
        }
    }
    // Entries in journal order: (path asked, the line); an intent closed later is taken out.
    let mut entries: Vec<(usize, Option<Value>)> = Vec::new();
    let mut open: HashMap<String, Vec<usize>> = HashMap::new();
    let mut start = None;
    let mut broken = 0;
    for line in read_lines(dir) {
        let Some((line, head)) = line
            .ok()
            .and_then(|l| serde_json::from_str::<Head>(&l).ok().map(|h| (l, h)))
        else {
            broken += 1;
            continue;
        };
        if start.is_none() {
            start = head.time_ns;
        }
        if let ("deleted" | "kept" | "interrupted", Some(id)) = (head.event.as_str(), head.id.as_deref())
            && let Some(slots) = open.remove(id)
        {
            for e in slots {
                entries[e].1 = None;
            }
        }
        let Some(store) = head.store.as_deref().map(Path::new) else {
            continue;
        };
        let Some(under) = below.get(store) else {
            continue;
        };
        let hits = head.hits(store, under, &asked);
        if hits.is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            broken += 1;
            continue;
        };
        for i in hits {
            if let ("intent", Some(id)) = (head.event.as_str(), head.id.as_deref()) {
                open.entry(id.to_owned()).or_default().push(entries.len());
            }
            entries.push((i, Some(v.clone())));
        }
    }
    let mut found: Vec<Vec<Found>> = vec![Vec::new(); paths.len()];
    for (i, line) in entries {
        if let Some(line) = line {
            found[i].push(Found { line });
        }
    }
    Lookup { found, start, broken }
}

/// Whether the process that wrote intent `id` still runs (a `sweep` at it now): else it was
/// killed before it finished the unit.
pub fn intent_writer_alive(id: &str) -> bool {
    writer_alive(id) || id.split('.').next() == Some(&std::process::id().to_string())
}

struct Inner {
    file: Option<File>,
    /// Bytes in the current file, as this process knows it (others may append too).
    size: u64,
    buf: Vec<u8>,
    /// Lines in `buf`.
    buf_lines: u64,
    next: u64,
    /// The file may end inside a line (a write cut short by a full disk, here or by another
    /// process): the next write starts with a newline, so that its first line is not glued to
    /// the cut one and lost with it.
    torn: bool,
    /// When the file held was last checked to be still the one at the path ([`Journal::follow`]).
    followed: Option<Instant>,
}

/// The journal of one `state_dir`, shared by a process's sweep threads.
pub struct Journal {
    dir: PathBuf,
    /// The most both files hold together.
    max_bytes: u64,
    by: By,
    /// This process's id prefix for intents: `<pid>.<time it opened the journal>`.
    id_prefix: String,
    inner: Mutex<Inner>,
    lost: AtomicU64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

static CURRENT: RwLock<Option<Arc<Journal>>> = RwLock::new(None);
/// Lines lost by every journal of the process (one reopened after a reload starts from 0).
static LOST: AtomicU64 = AtomicU64::new(0);
/// Times the file was found moved, removed or replaced by another process and opened again.
static REOPENED: AtomicU64 = AtomicU64::new(0);

/// Times this process found its journal file moved away (logrotate, an operator) and opened
/// the one at the path again.
pub fn reopened() -> u64 {
    REOPENED.load(Ordering::Relaxed)
}

/// How often a write checks that the file held is still the one at the path (two stats): a
/// unit's intent is written alone, and thousands of units a second need not pay for them each.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Lines that could not be written by this process, for the metric.
pub fn lines_lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// Sets the process's journal (`None`: none).
pub fn install(j: Option<Arc<Journal>>) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = j;
}

/// The process's journal, if any.
pub fn current() -> Option<Arc<Journal>> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Opens the journal file for appending, creating it 0640. Never through a symlink nor onto
/// anything but a regular file with one link, and never blocking (a FIFO): whoever can write
/// `state_dir` (the daemon's user) must not make a `sweep` run by root append to, hand over, or
/// hang on another file. A file this call creates as root (a `sweep` run by root) is given to
/// the owner of its directory, the daemon's user: else the daemon could no longer append to it,
/// nor to the one a rotation by root starts. A file that was already there is never chowned.
fn open_file(path: &Path) -> io::Result<File> {
    let flags =
        (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC).bits() as i32;
    // Readable too: its last byte says whether it ends inside a line ([`ends_torn`]).
    let (f, created) = match OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
            OpenOptions::new()
                .read(true)
                .append(true)
                .custom_flags(flags)
                .open(path)?,
            false,
        ),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(io::Error::other(format!(
            "{}: not a regular file of its own (a link, a FIFO or a device?): remove it",
            path.display()
        )));
    }
    if created
        && let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok())
        && meta.uid() != dir.uid()
        && rustix::process::geteuid().is_root()
    {
        let _ = std::os::unix::fs::fchown(&f, Some(dir.uid()), Some(dir.gid()));
    }
    Ok(f)
}

/// Whether `f`, `size` bytes long, ends inside a line (its last byte is not a newline).
fn ends_torn(f: &File, size: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut last = [b'\n'];
    size > 0 && f.read_exact_at(&mut last, size - 1).is_ok() && last[0] != b'\n'
}

/// Writes `buf` to `f` with as few `write(2)`s as it takes; on an error, also how many bytes
/// went out before it (a full disk cuts a write short, then refuses the rest).
fn write_counted(f: &mut File, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        match f.write(&buf[done..]) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

impl Journal {
    /// Opens (creates) the journal in `dir`, bounded to `max_bytes` over its two files.
    pub fn open(dir: &Path, max_bytes: u64, by: By) -> io::Result<Journal> {
        let file = open_file(&dir.join(FILE_NAME))?;
        let size = file.metadata()?.len();
        let torn = ends_torn(&file, size);
        Ok(Journal {
            dir: dir.to_owned(),
            max_bytes,
            by,
            id_prefix: format!("{}.{:x}", std::process::id(), crate::sweep::now()),
            inner: Mutex::new(Inner {
                file: Some(file),
                size,
                buf: Vec::with_capacity(FLUSH_AT),
                buf_lines: 0,
                next: 0,
                torn,
                followed: Some(Instant::now()),
            }),
            lost: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lines of this journal that could not be written so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(inner: &mut Inner, line: &str) {
        inner.buf.extend_from_slice(line.as_bytes());
        inner.buf.push(b'\n');
        inner.buf_lines += 1;
    }

    /// Records that a unit is about to be deleted and writes it out, with what was buffered
    /// before it. Returns the id its `deleted` line must carry.
    pub fn intent(&self, store: &Path, files: &[String]) -> String {
        let mut inner = self.lock();
        inner.next += 1;
        let id = format!("{}.{}", self.id_prefix, inner.next);
        Self::push(&mut inner, &intent_line(&id, crate::sweep::now(), store, files));
        self.write_out(&mut inner);
        id
    }

    /// Records a unit deleted (buffered).
    pub fn deleted(&self, id: &str, u: &UnitRecord, freed: u64, removed: &[String]) {
        let line = deleted_line(id, crate::sweep::now(), self.by, u, freed, removed);
        self.buffered(&line);
    }

    /// Records that the unit of intent `id` was not deleted after all (it changed at the last
    /// check), so that it is not taken for an interrupted one.
    pub fn kept(&self, id: &str) {
        let now = crate::sweep::now();
        let line = json!({"event": "kept", "id": id, "time_ns": now, "time": rfc3339(now)}).to_string();
        self.buffered(&line);
    }

    /// Records a store removed (buffered).
    pub fn store_removed(&self, s: &StoreRecord) {
        let line = store_line(crate::sweep::now(), self.by, s);
        self.buffered(&line);
    }

    fn buffered(&self, line: &str) {
        let mut inner = self.lock();
        Self::push(&mut inner, line);
        if inner.buf.len() >= FLUSH_AT {
            self.write_out(&mut inner);
        }
    }

    /// Writes out what is buffered (at the end of a sweep).
    pub fn flush(&self) {
        let mut inner = self.lock();
        inner.followed = None;
        self.write_out(&mut inner);
    }

    /// Opens the file at the path again when the one held is no longer there: moved away
    /// (logrotate, an operator: twice, and the daemon would append to a file nobody finds),
    /// removed, or replaced. The same hardening as at the start ([`open_file`]): no symlink,
    /// FIFO or hard link. A file cut short in place (logrotate's `copytruncate`) is measured
    /// again. At most once a [`FOLLOW_EVERY`], but at every [`Journal::flush`].
    fn follow(&self, inner: &mut Inner) {
        if inner.followed.is_some_and(|t| t.elapsed() < FOLLOW_EVERY) {
            return;
        }
        inner.followed = Some(Instant::now());
        let path = self.path();
        let ours = inner.file.as_ref().and_then(|f| f.metadata().ok());
        let there = std::fs::symlink_metadata(&path).ok();
        if let (Some(o), Some(t)) = (&ours, &there)
            && (o.dev(), o.ino()) == (t.dev(), t.ino())
        {
            if o.len() < inner.size {
                inner.size = o.len();
                inner.torn = inner.file.as_ref().is_some_and(|f| ends_torn(f, o.len()));
            }
            return;
        }
        let had = ours.is_some();
        // A `sweep` next to the daemon rotates the same journal: the file held is then the
        // previous one, as it should be. Only a move by something else is worth a warning.
        let rotated_by_us = ours.as_ref().is_some_and(|o| {
            std::fs::symlink_metadata(self.dir.join(OLD_NAME)).is_ok_and(|m| (m.dev(), m.ino()) == (o.dev(), o.ino()))
        });
        match Self::reopen(inner, &path) {
            Ok(()) if rotated_by_us => {
                debug!(path = %path.display(), "the deletion journal was rotated by another shuffle-janitor: following it");
            }
            Ok(()) => {
                let n = REOPENED.fetch_add(1, Ordering::Relaxed) + 1;
                warn!(path = %path.display(), times = n,
                      "the deletion journal was moved away, removed or replaced by another process (logrotate?): \
                       writing to the file at its path again (rotation is built in: see journal_max_mib)");
            }
            Err(e) if had => warn!(path = %path.display(), error = %e,
                "the deletion journal was moved away, removed or replaced, and cannot be opened again: lines are \
                 counted lost until it can"),
            Err(e) => debug!(path = %path.display(), error = %e, "the deletion journal still cannot be opened"),
        }
    }

    /// Writes the buffer with one `write(2)` (rotating first when the file is past its half of
    /// the bound). A failure drops the buffered lines and counts them: the journal never holds
    /// a deletion back, and never grows in memory while the disk is full.
    fn write_out(&self, inner: &mut Inner) {
        if inner.buf.is_empty() {
            return;
        }
        self.follow(inner);
        // Another writer of the same file (a `sweep` next to the daemon) may have written since,
        // and a full disk may have cut its last line: our first line must not be glued to it
        // (and lost with it, uncounted). One `fstat` a write; a byte read only when it grew.
        if let Some(f) = inner.file.as_ref()
            && let Ok(len) = f.metadata().map(|m| m.len())
            && len != inner.size
        {
            inner.torn = ends_torn(f, len);
            inner.size = len;
        }
        if inner.size.saturating_add(inner.buf.len() as u64) > self.max_bytes / 2 {
            self.rotate(inner);
        }
        // After a cut line, start on a fresh one (the reader skips the cut line alone).
        let fresh = usize::from(inner.torn);
        if inner.torn {
            inner.buf.insert(0, b'\n');
        }
        let result = match inner.file.as_mut() {
            Some(f) => write_counted(f, &inner.buf),
            None => Err((
                0,
                io::Error::other("the journal file could not be opened again after a rotation"),
            )),
        };
        let written = match &result {
            Ok(()) => inner.buf.len(),
            Err((n, _)) => *n,
        };
        inner.size = inner.size.saturating_add(written as u64);
        if written > 0 {
            inner.torn = inner.buf[written - 1] != b'\n';
        }
        match result {
            Ok(()) => {}
            Err((_, e)) => {
                // The lines that went out whole are in the file; the rest (the cut one too) are lost.
                let whole = inner.buf[fresh.min(written)..written]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u64;
                let n = inner.buf_lines.saturating_sub(whole);
                LOST.fetch_add(n, Ordering::Relaxed);
                if self.lost.fetch_add(n, Ordering::Relaxed) == 0 {
                    warn!(path = %self.path().display(), error = %e, lines = n,
                          "cannot write the deletion journal: deleting goes on, and the lines lost are counted in \
                           shuffle_janitor_journal_lines_lost_total (further failures at debug)");
                } else {
                    debug!(path = %self.path().display(), error = %e, lines = n, "cannot write the deletion journal");
                }
            }
        }
        inner.buf.clear();
        inner.buf_lines = 0;
    }

    /// Moves the current file to [`OLD_NAME`] (replacing the one before) and starts a new one.
    /// Another process writing the same journal (`sweep` next to the daemon) may have rotated
    /// it already: then the file at the name is simply opened.
    fn rotate(&self, inner: &mut Inner) {
        let path = self.path();
        let ours = inner
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        let there = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        if ours.is_some()
            && ours == there
            && let Err(e) = std::fs::rename(&path, self.dir.join(OLD_NAME))
        {
            debug!(path = %path.display(), error = %e, "cannot rotate the deletion journal");
        }
        if let Err(e) = Self::reopen(inner, &path) {
            debug!(path = %path.display(), error = %e, "cannot open the deletion journal after rotating it");
        }
    }

    /// Opens the file at `path` in place of the one held (with [`open_file`]'s hardening).
    fn reopen(inner: &mut Inner, path: &Path) -> io::Result<()> {
        match open_file(path) {
            Ok(f) => {
                inner.size = f.metadata().map_or(0, |m| m.len());
                inner.torn = ends_torn(&f, inner.size);
                inner.file = Some(f);
                Ok(())
            }
            Err(e) => {
                inner.file = None;
                inner.size = 0;
                inner.torn = false;
                Err(e)
            }
        }
    }

    /// At the daemon's start: finds the units whose deletion a crash interrupted (an intent
    /// without its `deleted` line), records each as `interrupted` with which of its files are
    /// gone and which are left, and returns them.
    pub fn recover(&self) -> Vec<Interrupted> {
        let mut out = Vec::new();
        for intent in unmatched_intents(read_lines(&self.dir).filter_map(Result::ok)) {
            if writer_alive(&intent.id) {
                continue;
            }
            let (gone, left): (Vec<String>, Vec<String>) = intent
                .files
                .iter()
                .cloned()
                .partition(|f| std::fs::symlink_metadata(intent.store.join(f)).is_err());
            let now = crate::sweep::now();
            let line = json!({
                "event": "interrupted",
                "id": intent.id,
                "time_ns": now,
                "time": rfc3339(now),
                "intent_time_ns": intent.time_ns,
                "intent_time": rfc3339(intent.time_ns),
                "store": lossy(&intent.store),
                "files_gone": gone,
                "files_left": left,
            })
            .to_string();
            self.buffered(&line);
            out.push(Interrupted { intent, gone, left });
        }
        self.flush();
        out
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A unit whose deletion a crash interrupted.
#[derive(Clone, Debug)]
pub struct Interrupted {
    pub intent: Intent,
    pub gone: Vec<String>,
    pub left: Vec<String>,
}

/// Opens the journal for `cfg` (its `state_dir` and `journal_max_mib`), or says why not.
pub fn open_for(cfg: &crate::config::Config, by: By) -> Option<Arc<Journal>> {
    let dir = cfg.state_dir.as_deref()?;
    if cfg.journal_max_bytes == 0 {
        return None;
    }
    match Journal::open(dir, cfg.journal_max_bytes, by) {
        Ok(j) => Some(Arc::new(j)),
        Err(e) => {
            let path = dir.join(FILE_NAME);
            match by {
                By::Daemon => warn!(path = %path.display(), error = %e,
                    "cannot open the deletion journal: deletions are not journaled (create state_dir writable for \
                     this user, or set journal_max_mib = 0)"),
                // A `sweep` by a user who cannot write state_dir: the log says it, quietly.
                By::Sweep => debug!(path = %path.display(), error = %e, "deletion journal not written"),
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(mtime: Nanos, atime: Nanos, ctime: Nanos) -> FileStat {
        FileStat {
            dev: 1,
            ino: 2,
            size: 3,
            alloc: 4096,
            nlink: 1,
            mtime,
            atime,
            ctime,
        }
    }

    #[test]
    fn evidence_names_the_timestamp_or_the_open_that_made_the_last_use() {
        let a = st(10, 30, 20);
        let b = st(40, 5, 5);
        let basis = [Timestamp::Mtime, Timestamp::Atime];
        assert_eq!(evidence([&a], &basis, Nanos::MIN), (30, Evidence::Atime));
        assert_eq!(evidence([&a, &b], &basis, Nanos::MIN), (40, Evidence::Mtime));
        assert_eq!(evidence([&a], &[Timestamp::Ctime], 0), (20, Evidence::Ctime));
        assert_eq!(evidence([&a], &basis, 31), (31, Evidence::Open));
        // A tie goes to the timestamp: it is on disk for anyone to check.
        assert_eq!(evidence([&a], &basis, 30), (30, Evidence::Atime));
        // Ties between timestamps go to the first listed.
        assert_eq!(
            evidence([&st(7, 7, 7)], &[Timestamp::Atime, Timestamp::Mtime], 0).1,
            Evidence::Atime
        );
    }

    #[test]
    fn rfc3339_is_utc_with_nanoseconds() {
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000000000Z");
    }

    fn unit<'a>(files: Vec<String>) -> UnitRecord<'a> {
        UnitRecord {
            reason: Reason::Pressure,
            root: Path::new("/data"),
            store: Path::new("/data/blockmgr-x"),
            stem: b"shuffle_0_1_0",
            kind: Kind::Shuffle,
            files,
            last_use: 1_700_000_000_000_000_000,
            evidence: Evidence::Open,
            age_seconds: 7200,
            rule: Rule::Pressure {
                mountpoint: "/data".into(),
                used_before: 0.93,
                high: 0.9,
                low: 0.8,
                rank: Some(3),
            },
        }
    }

    #[test]
    fn a_deleted_line_has_every_field_explain_reads() {
        let files = vec![
            "0c/shuffle_0_1_0.data".to_string(),
            "30/shuffle_0_1_0.index".to_string(),
        ];
        let u = unit(files.clone());
        let v: Value = serde_json::from_str(&deleted_line("9.a.1", 5, By::Daemon, &u, 8192, &files)).unwrap();
        assert_eq!(v["event"], "deleted");
        assert_eq!(v["id"], "9.a.1");
        assert_eq!(v["time_ns"], 5);
        assert_eq!(v["time"], "1970-01-01T00:00:00.000000005Z");
        assert_eq!(v["by"], "daemon");
        assert_eq!(v["trigger"], "pressure");
        assert_eq!(v["store"], "/data/blockmgr-x");
        assert_eq!(v["unit"]["stem"], "shuffle_0_1_0");
        assert_eq!(v["unit"]["kind"], "shuffle");
        assert_eq!(v["unit"]["files"][1], "30/shuffle_0_1_0.index");
        assert_eq!(v["partial"], false);
        assert_eq!(v["bytes_freed"], 8192);
        assert_eq!(v["last_use"], "2023-11-14T22:13:20.000000000Z");
        assert_eq!(v["evidence"], "open");
        assert_eq!(v["age_seconds"], 7200);
        assert_eq!(v["rule"]["name"], "pressure");
        assert_eq!(v["rule"]["used_before"], 0.93);
        assert_eq!(v["rule"]["rank"], 3);
        // One unlink failed half-way: the line says which file is left.
        let v: Value = serde_json::from_str(&deleted_line("i", 5, By::Sweep, &u, 1, &files[..1])).unwrap();
        assert_eq!(v["partial"], true);
        assert_eq!(v["files_kept"][0], "30/shuffle_0_1_0.index");
        assert_eq!(v["by"], "sweep");
    }

    #[test]
    fn a_path_that_is_not_utf8_is_written_not_refused() {
        use std::os::unix::ffi::OsStrExt;
        let store = Path::new(std::ffi::OsStr::from_bytes(b"/data/\xff/blockmgr-x"));
        let mut u = unit(vec!["0c/a.data".into()]);
        u.store = store;
        u.root = store;
        let line = deleted_line("i", 1, By::Daemon, &u, 1, &u.files.clone());
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["store"], "/data/\u{fffd}/blockmgr-x");
        let v: Value = serde_json::from_str(&intent_line("i", 1, store, &u.files)).unwrap();
        assert_eq!(v["store"], "/data/\u{fffd}/blockmgr-x");
    }

    #[test]
    fn rules_read_as_sentences() {
        assert_eq!(
            Rule::Ttl { max_age_seconds: 21600 }.text(),
            "ttl: unused for longer than max_age (6h)"
        );
        let t = unit(vec![]).rule.text();
        assert!(
            t.contains("/data was 93.0% used (high watermark 90.0%)") && t.contains("rank 3"),
            "{t}"
        );
    }

    #[test]
    fn an_intent_without_its_deleted_line_is_unmatched() {
        let files = vec!["0c/a.data".to_string()];
        let s = Path::new("/r/blockmgr-x");
        let lines = [
            intent_line("1.a.1", 1, s, &files),
            deleted_line("1.a.1", 2, By::Daemon, &unit(files.clone()), 1, &files),
            intent_line("1.a.2", 3, s, &files),
            "{\"event\":\"deleted\",\"id\":\"1.a.".to_string(), // cut by the crash
            intent_line("1.a.3", 4, s, &files),
            "{\"event\":\"interrupted\",\"id\":\"1.a.3\"}".to_string(),
        ];
        let left = unmatched_intents(lines.iter().map(String::as_str));
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "1.a.2");
        assert_eq!(left[0].store, s);
        assert_eq!(left[0].files, files);
    }

    #[test]
    fn a_lookup_keeps_an_intent_only_while_nothing_closes_it_and_skips_broken_lines() {
        let dir = tempfile::tempdir().unwrap();
        let s = Path::new("/data/blockmgr-x");
        let a = vec!["0c/a.data".to_string(), "0d/a.index".to_string()];
        let b = vec!["0e/b.data".to_string()];
        let lines = [
            intent_line("1.a.1", 1, s, &a),
            deleted_line("1.a.1", 2, By::Daemon, &unit(a.clone()), 1, &a[..1]),
            "{\"event\":\"intent\",\"id\":\"1.a.".to_string(), // cut by a full disk
            intent_line("1.a.2", 3, s, &b),
            store_line(
                4,
                By::Daemon,
                &StoreRecord {
                    root: Path::new("/data"),
                    store: Path::new("/data/blockmgr-y"),
                    dirs: 1,
                    last_activity: 0,
                    min_idle: Duration::ZERO,
                },
            ),
        ];
        std::fs::write(dir.path().join(FILE_NAME), lines.join("\n") + "\n").unwrap();
        let asked = [
            s.join(&a[0]),
            s.join(&a[1]),
            s.join(&b[0]),
            PathBuf::from("/data/blockmgr-y/11/c.data"),
            PathBuf::from("/data/blockmgr-x/0f/d.data"),
        ];
        let refs: Vec<&Path> = asked.iter().map(PathBuf::as_path).collect();
        let l = lookup_many(dir.path(), &refs);
        let events = |i: usize| -> Vec<&str> { l.found[i].iter().map(|f| f.line["event"].as_str().unwrap()).collect() };
        assert_eq!(events(0), ["deleted"], "its intent closed");
        assert!(events(1).is_empty(), "not removed (the unlink failed): not claimed");
        assert_eq!(events(2), ["intent"], "started, never finished");
        assert_eq!(events(3), ["store_removed"]);
        assert!(events(4).is_empty());
        assert_eq!((l.start, l.broken), (Some(1), 1));
    }

    #[test]
    fn the_two_files_stay_under_the_bound_and_the_newest_lines_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 8192, By::Daemon).unwrap();
        let files = vec!["0c/shuffle_0_1_0.data".to_string()];
        for _ in 0..200 {
            let id = j.intent(Path::new("/data/blockmgr-x"), &files);
            j.deleted(&id, &unit(files.clone()), 1, &files);
        }
        j.flush();
        let size = |n: &str| std::fs::metadata(dir.path().join(n)).map_or(0, |m| m.len());
        assert!(
            size(FILE_NAME) + size(OLD_NAME) <= 8192,
            "{} + {}",
            size(FILE_NAME),
            size(OLD_NAME)
        );
        assert!(size(OLD_NAME) > 0, "rotated");
        let lines: Vec<String> = read_lines(dir.path()).filter_map(Result::ok).collect();
        assert!(lines.last().unwrap().contains(".200\""), "{:?}", lines.last());
        assert!(unmatched_intents(lines.iter().map(String::as_str)).is_empty());
        assert_eq!(j.lost(), 0);
    }

    #[test]
    fn a_journal_root_creates_belongs_to_the_owner_of_state_dir() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(4321), Some(4321)).unwrap();
        let _j = Journal::open(dir.path(), 1 << 20, By::Sweep).unwrap();
        let meta = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (4321, 4321),
            "the daemon's user can append to it"
        );
        assert_eq!(meta.mode() & 0o777, 0o640);
    }

    #[test]
    fn a_symlink_or_fifo_in_place_of_the_journal_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root:x:0:0::/root:/bin/bash\n").unwrap();
        let before = std::fs::metadata(&victim).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(FILE_NAME)).unwrap();
        assert!(Journal::open(dir.path(), 1 << 20, By::Sweep).is_err());
        let after = std::fs::metadata(&victim).unwrap();
        assert_eq!(
            (after.len(), after.uid()),
            (before.len(), before.uid()),
            "the target is untouched"
        );
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        std::fs::hard_link(&victim, dir.path().join(FILE_NAME)).unwrap();
        assert!(
            Journal::open(dir.path(), 1 << 20, By::Sweep).is_err(),
            "a hard link is refused"
        );
        assert_eq!(std::fs::metadata(&victim).unwrap().len(), before.len());
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join(FILE_NAME),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // A FIFO with no reader would block an open for writing; it must not.
        assert!(Journal::open(dir.path(), 1 << 20, By::Sweep).is_err());
    }

    #[test]
    fn a_line_that_is_not_utf8_hides_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b"{\"event\":\"intent\",\"store\":\"/data/caf\xc3\n".to_vec();
        bytes.extend_from_slice(b"{\"event\":\"deleted\"}\n");
        std::fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
        assert_eq!(
            read_lines(dir.path()).collect::<Vec<_>>(),
            vec![Err(()), Ok("{\"event\":\"deleted\"}".to_string())]
        );
    }

    #[test]
    fn a_write_that_fails_is_counted_and_dropped() {
        if !std::path::Path::new("/dev/full").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 1 << 20, By::Daemon).unwrap();
        // The disk is full: every write fails with ENOSPC.
        j.lock().file = Some(OpenOptions::new().append(true).open("/dev/full").unwrap());
        // (And what is at the path cannot be opened in its place.)
        std::fs::remove_file(j.path()).unwrap();
        std::os::unix::fs::symlink("/dev/full", j.path()).unwrap();
        let files = vec!["0c/x.data".to_string()];
        let id = j.intent(Path::new("/s"), &files);
        j.deleted(&id, &unit(files.clone()), 1, &files);
        j.flush();
        assert_eq!(j.lost(), 2);
        assert!(j.lock().buf.is_empty(), "nothing held in memory");
    }

    #[test]
    fn recover_marks_interrupted_units_with_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("blockmgr-x");
        std::fs::create_dir_all(store.join("0c")).unwrap();
        std::fs::write(store.join("0c/shuffle_0_1_0.index"), b"x").unwrap();
        let files = vec![
            "0c/shuffle_0_1_0.data".to_string(),
            "0c/shuffle_0_1_0.index".to_string(),
        ];
        // A line an earlier process (pid 0: never a shuffle-janitor) wrote before it died.
        std::fs::write(
            dir.path().join(FILE_NAME),
            format!("{}\n", intent_line("0.a.1", 1, &store, &files)),
        )
        .unwrap();
        let j = Journal::open(dir.path(), 1 << 20, By::Daemon).unwrap();
        let found = j.recover();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].gone, vec![files[0].clone()]);
        assert_eq!(found[0].left, vec![files[1].clone()]);
        // Said once: the next start finds it matched.
        assert!(j.recover().is_empty());
        let (hits, start) = lookup(dir.path(), &store.join(&files[0]));
        assert_eq!(start, Some(1));
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].line["event"], "interrupted");
    }
}
