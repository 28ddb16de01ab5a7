//! The decision: which units go, and why. Pure: it sees facts (last use, bytes, flags), the
//! filesystem's usage, the rules and *now*; it never touches the OS, so tests call it directly.
//!
//! A *unit* is what is deleted whole or not at all: one map output (every file with the same
//! `shuffle_S_M_R` stem in one block store), one merged shuffle partition, or a single file of
//! another kind. The rules, in the order they are applied to a unit:
//!
//! 1. a kind the config does not allow is out of scope (`Exempt`);
//! 2. a unit with a protected file is kept (`protected`);
//! 3. a unit used less than `min_age` ago is kept, whatever the pressure (`young`);
//! 4. a unit with a file held open is kept (`open`);
//! 5. a unit unused for more than `max_age` goes (`ttl`), unless it may have been used while the
//!    daemon could not see it (before its watch started, during a lost stretch of events) and its
//!    timestamps cannot prove otherwise: then it is kept from the TTL (`unwatched`) until the
//!    daemon has watched it for `max_age`;
//! 6. the rest may go under pressure, least recently used first, until the filesystem's projected
//!    use is at the low watermark (`pressure`, or `manual` for a purge).
//!
//! One [`Planner`] serves one filesystem: the sweep feeds it each unit as it scans, deletes the
//! TTL ones at once, and asks [`Planner::finish`] which pooled units pressure takes.

use std::time::Duration;

use serde::Serialize;

use crate::spark::Kind;

/// Nanoseconds since the Unix epoch (file timestamps and *now* alike).
pub type Nanos = i64;

pub fn nanos(d: Duration) -> Nanos {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Whole seconds from `then` to `now`, 0 when `then` is in the future; never overflows
/// (timestamps far in the past saturate).
pub fn age_seconds(now: Nanos, then: Nanos) -> u64 {
    (now.saturating_sub(then).max(0) / 1_000_000_000) as u64
}

/// Why a unit is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Unused for longer than `max_age`.
    Ttl,
    /// Its filesystem was above the high watermark.
    Pressure,
    /// A purge (`sweep --purge`, SIGUSR2) down to the low watermark.
    Manual,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ttl => "ttl",
            Reason::Pressure => "pressure",
            Reason::Manual => "manual",
        }
    }
}

/// Why a file that might have gone was kept. `Changed`, `Unknown` and `Incomplete` are decided
/// at the edges (deletion, classification and reading); the policy gives the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Skip {
    Young,
    Open,
    Protected,
    /// Changed (or used) between the decision and the deletion.
    Changed,
    /// Not Spark's, or not where Spark puts its files.
    Unknown,
    /// In a store that could not be listed whole: none of its units is known whole.
    Incomplete,
    /// Past `max_age` by its timestamps, but it may have been used while the daemon could not
    /// watch it (see the module docs).
    Unwatched,
}

impl Skip {
    pub const ALL: [Skip; 7] = [
        Skip::Young,
        Skip::Open,
        Skip::Protected,
        Skip::Changed,
        Skip::Unknown,
        Skip::Incomplete,
        Skip::Unwatched,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Young => "young",
            Skip::Open => "open",
            Skip::Protected => "protected",
            Skip::Changed => "changed",
            Skip::Unknown => "unknown",
            Skip::Incomplete => "incomplete",
            Skip::Unwatched => "unwatched",
        }
    }

    /// What the reason means, for people (the text output and the README's table).
    pub fn meaning(self) -> &'static str {
        match self {
            Skip::Young => "used within min_age: never deleted, not even under pressure",
            Skip::Open => "held open or mapped by a process (skip_open_files)",
            Skip::Protected => "matches a protect glob",
            Skip::Changed => "changed or used between the decision and the deletion: kept whole",
            Skip::Unknown => "not Spark's, or not where Spark puts its files: never touched",
            Skip::Incomplete => "in a store that could not be listed whole: none of its units is known whole",
            Skip::Unwatched => "past max_age by its timestamps, but the daemon has not watched it for max_age yet",
        }
    }
}

/// What the policy knows of one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitFacts {
    pub kind: Kind,
    /// The newest last use of its files (by `age_basis`, and the opens the watch saw).
    pub last_use: Nanos,
    /// The latest time it may have been used without anyone seeing it: the start of the
    /// daemon's watch of its store (or of the last stretch of events it lost), unless its
    /// timestamps prove no read since an earlier time. `Nanos::MIN` when nothing is unseen
    /// (a one-off `sweep` judges by timestamps alone).
    pub unseen_until: Nanos,
    /// Disk space its deletion returns (allocated blocks, not apparent size).
    pub bytes: u64,
    /// Some file matches a `protect` glob.
    pub protected: bool,
    /// Some file is held open by a process (only set when `skip_open_files` is on).
    pub open: bool,
}

/// The age rules, taken from the validated config.
#[derive(Clone, Debug)]
pub struct Rules {
    pub max_age: Duration,
    pub min_age: Duration,
    pub kinds: Vec<Kind>,
}

/// The policy's answer for one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delete now.
    Delete(Reason),
    /// Keep, and count why.
    Keep(Skip),
    /// A kind the config does not allow to delete: not a candidate at all.
    Exempt,
    /// Old enough to go under pressure; kept unless pressure takes it.
    Eligible,
    /// Past `max_age` but possibly used unseen: eligible under pressure, kept from the TTL.
    Unwatched,
}

/// Whether the filesystem must shed load in this sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// TTL, plus pressure when use is at or above the high watermark.
    Sweep,
    /// TTL, plus eviction down to the low watermark whatever the use (`--purge`, SIGUSR2).
    Purge,
}

/// A filesystem's usage as `df` counts it: `used / (used + avail)` is its use ratio
/// (the root-reserved blocks are in neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub avail: u64,
}

impl Usage {
    pub fn ratio(&self) -> f64 {
        let size = self.used.saturating_add(self.avail);
        if size == 0 { 0.0 } else { self.used as f64 / size as f64 }
    }

    /// Bytes to free to bring use down to `low` (0 when it is there already).
    pub fn above(&self, low: f64) -> u64 {
        let size = self.used.saturating_add(self.avail) as f64;
        let target = (low * size).floor() as u64;
        self.used.saturating_sub(target)
    }
}

/// How many bytes this sweep must free on a filesystem, and under which reason.
pub fn pressure_need(usage: Usage, high: f64, low: f64, mode: Mode) -> Option<(u64, Reason)> {
    let need = usage.above(low);
    match mode {
        Mode::Purge if need > 0 => Some((need, Reason::Manual)),
        Mode::Sweep if usage.ratio() >= high && need > 0 => Some((need, Reason::Pressure)),
        _ => None,
    }
}

/// Judges one unit by the rules at `now` (see the module docs for the order).
pub fn judge(unit: &UnitFacts, rules: &Rules, now: Nanos) -> Verdict {
    if !rules.kinds.contains(&unit.kind) {
        return Verdict::Exempt;
    }
    if unit.protected {
        return Verdict::Keep(Skip::Protected);
    }
    // A last use in the future (clock skew, a restored backup) is young: keep.
    let age = now.saturating_sub(unit.last_use);
    if age < nanos(rules.min_age) {
        return Verdict::Keep(Skip::Young);
    }
    if unit.open {
        return Verdict::Keep(Skip::Open);
    }
    if age > nanos(rules.max_age) {
        let unseen_age = now.saturating_sub(unit.last_use.max(unit.unseen_until));
        return if unseen_age > nanos(rules.max_age) {
            Verdict::Delete(Reason::Ttl)
        } else {
            Verdict::Unwatched
        };
    }
    Verdict::Eligible
}

/// Why pressure could not free all it had to: the bytes it was short by and the bytes the rules
/// held back, so an operator sees what is filling the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Shortfall {
    pub missing_bytes: u64,
    pub young_bytes: u64,
    pub open_bytes: u64,
    pub protected_bytes: u64,
    /// When the first unit held back as young reaches `min_age` (Unix nanoseconds).
    pub young_until: Option<Nanos>,
}

/// What [`Planner::finish`] decided for the pooled units.
#[derive(Debug)]
pub struct Selection<H> {
    /// Units pressure takes, least recently used first, with the reason (pressure or manual).
    pub chosen: Vec<H>,
    pub reason: Option<Reason>,
    /// Pooled units left alone (pressure was met before them).
    pub spared: Vec<H>,
    /// Set when the filesystem still needs space and nothing more may go.
    pub shortfall: Option<Shortfall>,
}

/// The decisions for one filesystem in one sweep. `H` is whatever the caller needs to find a
/// pooled unit's files again (the sweep keeps paths; tests keep indices).
#[derive(Debug)]
pub struct Planner<H> {
    rules: Rules,
    now: Nanos,
    need: Option<(u64, Reason)>,
    freed: u64,
    held: Shortfall,
    pool: Vec<(Nanos, u64, H)>,
}

impl<H> Planner<H> {
    pub fn new(rules: Rules, now: Nanos, need: Option<(u64, Reason)>) -> Self {
        Planner {
            rules,
            now,
            need,
            freed: 0,
            held: Shortfall::default(),
            pool: Vec::new(),
        }
    }

    /// Whether pooled units may be taken by pressure (if not, `Eligible` units are just kept).
    pub fn under_pressure(&self) -> bool {
        self.need.is_some()
    }

    /// Judges a unit; an `Eligible` (or `Unwatched`) one is pooled for pressure when there is
    /// pressure.
    /// `handle` is called only for units that are pooled.
    pub fn offer(&mut self, unit: &UnitFacts, handle: impl FnOnce() -> H) -> Verdict {
        let verdict = judge(unit, &self.rules, self.now);
        match verdict {
            Verdict::Eligible | Verdict::Unwatched if self.need.is_some() => {
                self.pool.push((unit.last_use, unit.bytes, handle()))
            }
            Verdict::Keep(Skip::Young) => {
                self.held.young_bytes += unit.bytes;
                let ripe = unit.last_use.saturating_add(nanos(self.rules.min_age));
                self.held.young_until = Some(self.held.young_until.map_or(ripe, |t| t.min(ripe)));
            }
            Verdict::Keep(Skip::Open) => self.held.open_bytes += unit.bytes,
            Verdict::Keep(Skip::Protected) => self.held.protected_bytes += unit.bytes,
            _ => {}
        }
        verdict
    }

    /// Counts bytes freed by TTL deletions (as planned, in a dry run), which pressure then need
    /// not free again.
    pub fn freed(&mut self, bytes: u64) {
        self.freed = self.freed.saturating_add(bytes);
    }

    /// Takes over what another planner of the same filesystem saw (the sweep reads stores on
    /// several threads, each with its own planner).
    pub fn absorb(&mut self, other: Planner<H>) {
        self.freed = self.freed.saturating_add(other.freed);
        self.held.young_bytes += other.held.young_bytes;
        self.held.open_bytes += other.held.open_bytes;
        self.held.protected_bytes += other.held.protected_bytes;
        self.held.young_until = match (self.held.young_until, other.held.young_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.pool.extend(other.pool);
    }

    /// Takes pooled units, least recently used first, until the projected use is at the low
    /// watermark.
    pub fn finish(mut self) -> Selection<H> {
        let Some((need, reason)) = self.need else {
            return Selection {
                chosen: Vec::new(),
                reason: None,
                spared: self.pool.into_iter().map(|(_, _, h)| h).collect(),
                shortfall: None,
            };
        };
        // Stable: ties keep scan order, so a dry run and the real run pick the same units.
        self.pool.sort_by_key(|&(last_use, _, _)| last_use);
        let mut freed = self.freed;
        let mut chosen = Vec::new();
        let mut spared = Vec::new();
        for (_, bytes, handle) in self.pool {
            if freed < need {
                freed = freed.saturating_add(bytes);
                chosen.push(handle);
            } else {
                spared.push(handle);
            }
        }
        let shortfall = (freed < need).then(|| Shortfall {
            missing_bytes: need - freed,
            ..self.held
        });
        Selection {
            chosen,
            reason: Some(reason),
            spared,
            shortfall,
        }
    }
}

/// A process that may own a block store: a live Spark JVM (see [`crate::procs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// When it started (Unix nanoseconds); `None` when that cannot be trusted (it started before
    /// a step of the wall clock, which moves every start time computed from the boot time, but
    /// not the birth times of the directories made before the step): then it may own any store.
    pub start: Option<Nanos>,
    /// When it started on `CLOCK_BOOTTIME` (nanoseconds, the clock tick's floor): no step of the
    /// wall clock moves it, so it is compared with [`StoreFacts::seen_boot`] even when `start`
    /// is not trusted.
    pub start_boot: Option<Nanos>,
    pub kind: OwnerKind,
    /// For an executor: the longest it may take from its start to creating its store by its own
    /// command line's timeouts ([`crate::procs::executor_window`]); the rule allows the larger
    /// of this and `stores.executor_startup`. `None`: no bound is known (a timeout it sets could
    /// not be read), so any store born after its start may be its own.
    pub startup: Option<Duration>,
    /// Which process and why it counts, for the reports: `1234 (java com.acme.Main): its open
    /// archive /opt/app.jar holds org/apache/spark/storage/DiskBlockManager.class`.
    pub about: String,
    /// A JVM counted because what it can load could not be judged, not because Spark's classes
    /// were seen (see [`crate::spark_jvm`]).
    pub unjudged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    /// An executor creates its store once, within moments of its start (after it reached its
    /// driver). `dirs`: the `executor-*` directories its environment names
    /// (`SPARK_EXECUTOR_DIRS`, standalone), as `(device, inode)`, when it could be read.
    Executor { dirs: Option<Vec<(u64, u64)>> },
    /// A driver (or any other JVM that may run Spark) creates a store with each SparkContext, at
    /// any time, and removes it when the context stops. Below an `executor-*` directory only
    /// when that directory is one its environment names (`SPARK_EXECUTOR_DIRS` inherited by a
    /// local-mode session started from an executor, or a `SPARK_LOCAL_DIRS` so named): `dirs`,
    /// as `(device, inode)`, when the environment could be read.
    Driver { dirs: Option<Vec<(u64, u64)>> },
}

/// What the liveness rule knows of an empty store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFacts {
    /// It holds no file at all, Spark's or anyone's: only empty `NN` directories.
    pub empty: bool,
    /// The last creation, removal, rename, open or write in it (directory timestamps and what
    /// the watch saw).
    pub last_activity: Nanos,
    /// When it was created (statx birth time), where the filesystem records it.
    pub birth: Option<Nanos>,
    /// Its last change (ctime): never earlier than its birth.
    pub changed: Nanos,
    /// The `executor-*` directory it is in (standalone layout), as `(device, inode)`.
    pub executor_dir: Option<(u64, u64)>,
    /// A process holds it (or one of its directories) open or works in it.
    pub held: bool,
    /// It is on a network or FUSE filesystem: processes of other machines (or sandboxes) that
    /// this one cannot see may use it.
    pub shared_fs: bool,
    /// When it was first seen to exist, on `CLOCK_BOOTTIME` ([`crate::store_dir::DirFacts`]).
    pub seen_boot: Option<Nanos>,
}

/// Why an empty, quiet store is kept (the `reason` label of `shuffle_janitor_idle_stores`): a
/// small fixed set, so that an operator sees at a glance what stops reaping on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleReason {
    /// The node's processes cannot all be seen.
    Unseen,
    /// A process holds it open or works in it.
    Held,
    /// It is on a network or FUSE filesystem.
    SharedFs,
    /// A live executor may own it.
    Executor,
    /// A live JVM with Spark's classes (a driver) may own it.
    SparkJvm,
    /// A live JVM whose classes could not be judged may own it.
    UnknownJvm,
    /// A live JVM whose start cannot be trusted after a step of the wall clock may own it.
    ClockStep,
    /// The daemon's index judged it dead but it was not read again in this sweep.
    Unverified,
}

impl IdleReason {
    pub const ALL: [IdleReason; 8] = [
        IdleReason::Unseen,
        IdleReason::Held,
        IdleReason::SharedFs,
        IdleReason::Executor,
        IdleReason::SparkJvm,
        IdleReason::UnknownJvm,
        IdleReason::ClockStep,
        IdleReason::Unverified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdleReason::Unseen => "unseen",
            IdleReason::Held => "held",
            IdleReason::SharedFs => "shared_fs",
            IdleReason::Executor => "executor",
            IdleReason::SparkJvm => "spark_jvm",
            IdleReason::UnknownJvm => "unknown_jvm",
            IdleReason::ClockStep => "clock_step",
            IdleReason::Unverified => "unverified",
        }
    }

    /// The rule, in words.
    pub fn text(self) -> &'static str {
        match self {
            IdleReason::Unseen => "the node's processes cannot all be seen",
            IdleReason::Held => "a process holds it open or works in it",
            IdleReason::SharedFs => "it is on a network or FUSE filesystem, which processes elsewhere may use",
            IdleReason::Executor => "a live executor that started just before it was born may own it",
            IdleReason::SparkJvm => "a live JVM with Spark's classes that started before it was born may own it",
            IdleReason::UnknownJvm => {
                "a live JVM that started before it was born may own it: whether it has Spark's classes cannot be told"
            }
            IdleReason::ClockStep => "a live JVM whose start cannot be trusted (a step of the wall clock) may own it",
            IdleReason::Unverified => "judged dead but not read again in this sweep",
        }
    }
}

/// Why one store is kept: the rule, and the process when one may own it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    pub reason: IdleReason,
    pub pid: Option<u32>,
}

impl Kept {
    fn because(reason: IdleReason) -> StoreState {
        StoreState::Idle(Kept { reason, pid: None })
    }
}

/// Why a store that is not dead is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreState {
    /// It holds files, or something happened in it within `min_idle`.
    Live,
    /// Empty and quiet for `min_idle`, but a process may own it, or the processes cannot all
    /// be seen: kept, with why.
    Idle(Kept),
    /// Empty, quiet, and no process can own it: removed.
    Dead,
}

impl StoreState {
    pub fn as_str(&self) -> &'static str {
        match self {
            StoreState::Live => "live",
            StoreState::Idle(_) => "idle",
            StoreState::Dead => "dead",
        }
    }
}

/// Time-stamp slack between a process's start (clock ticks since boot, boot time in whole
/// seconds) and a directory's birth time: a store born this close before a JVM's start counts
/// as possibly born after it.
const START_SLACK: Nanos = 2_000_000_000;

/// Judges whether an empty store can be removed. `owners` is `None` when the processes could
/// not all be seen (then nothing is dead). A store is dead only when:
/// 1. it holds no file at all and nothing happened in it for `min_idle`;
/// 2. no process holds it open or works in it, and it is not on a filesystem shared with
///    processes this node cannot see;
/// 3. no live JVM can own it: every live executor started after it was created, or created its
///    own store within `startup` of its start, long before this one was born (or names other
///    `executor-*` directories); and every live driver started after it was created, or it is
///    in an `executor-*` directory that driver's environment does not name. A JVM whose start
///    cannot be trusted may own any store.
///
/// Without a birth time the store's last change stands in for it, which only ever makes the
/// rule keep more (a change is never before the birth).
pub fn judge_store(
    f: &StoreFacts,
    owners: Option<&[Owner]>,
    now: Nanos,
    min_idle: Duration,
    startup: Duration,
) -> StoreState {
    if !f.empty || now.saturating_sub(f.last_activity) < nanos(min_idle) {
        return StoreState::Live;
    }
    let Some(owners) = owners else {
        return Kept::because(IdleReason::Unseen);
    };
    if f.held {
        return Kept::because(IdleReason::Held);
    }
    if f.shared_fs {
        return Kept::because(IdleReason::SharedFs);
    }
    // The latest time it may have been created.
    let born_by = f.birth.unwrap_or(f.changed);
    for o in owners {
        // Created before this JVM started: not its store. Seen to exist before it started, on
        // the clock of start times (a store the daemon saw appear), whatever the wall clock did;
        // else by its birth on the wall clock, when the JVM's start on it can be trusted.
        if matches!((f.seen_boot, o.start_boot), (Some(seen), Some(start)) if seen < start) {
            continue;
        }
        if o.start.is_some_and(|start| born_by < start.saturating_sub(START_SLACK)) {
            continue;
        }
        let names = |dirs: &Option<Vec<(u64, u64)>>, e: (u64, u64)| dirs.as_ref().is_none_or(|d| d.contains(&e));
        let may_own = match &o.kind {
            OwnerKind::Executor { dirs } => {
                // An executor creates its store within `startup` of its start: a store born
                // later is another's (without a birth time, this cannot be told).
                let window = o.startup.map(|own| own.max(startup));
                let too_late =
                    matches!((o.start, f.birth, window), (Some(s), Some(b), Some(w)) if b > s.saturating_add(nanos(w)));
                let other_dirs = f.executor_dir.is_some_and(|e| !names(dirs, e));
                !too_late && !other_dirs
            }
            OwnerKind::Driver { dirs } => f.executor_dir.is_none_or(|e| names(dirs, e)),
        };
        if may_own {
            let reason = match o.kind {
                _ if o.start.is_none() => IdleReason::ClockStep,
                OwnerKind::Executor { .. } => IdleReason::Executor,
                OwnerKind::Driver { .. } if o.unjudged => IdleReason::UnknownJvm,
                OwnerKind::Driver { .. } => IdleReason::SparkJvm,
            };
            return StoreState::Idle(Kept {
                reason,
                pid: Some(o.pid),
            });
        }
    }
    StoreState::Dead
}

/// Whether the `executor-*` directory `dir` may be removed once the dead store in it was and
/// it is empty: not while a live JVM's environment names it (an executor starting up creates
/// its store there in a moment), nor while some live JVM's directories could not be read.
pub fn executor_dir_removable(dir: (u64, u64), owners: &[Owner]) -> bool {
    owners.iter().all(|o| match &o.kind {
        OwnerKind::Executor { dirs: Some(d) } | OwnerKind::Driver { dirs: Some(d) } => !d.contains(&dir),
        OwnerKind::Executor { dirs: None } | OwnerKind::Driver { dirs: None } => false,
    })
}

/// Groups the files of one block store into units. Files of different stores must never be
/// grouped together: shuffle ids restart at 0 in every application. One `Grouping` is reused
/// store after store, so its buffers are allocated once per sweep thread.
#[derive(Debug)]
pub struct Grouping<F> {
    keys: Vec<u64>,
    /// The files of the last store grouped, ordered by (hash of the stem, stem).
    pub files: Vec<F>,
    /// For each unit, the range of its files in `files`.
    pub units: Vec<std::ops::Range<usize>>,
}

impl<F> Default for Grouping<F> {
    fn default() -> Self {
        Grouping {
            keys: Vec::new(),
            files: Vec::new(),
            units: Vec::new(),
        }
    }
}

impl<F: Clone> Grouping<F> {
    pub fn group<'s>(&mut self, files: &[F], stem: impl Fn(&F) -> &'s [u8], hash: impl Fn(&F) -> u32) {
        // Sorting plain integers (hash above, index below), stems compared only within a run
        // of equal hashes, then copying each file once, costs a fraction of sorting the files
        // by name.
        assert!(
            u32::try_from(files.len()).is_ok(),
            "more files in one store than indices"
        );
        let keys = &mut self.keys;
        keys.clear();
        keys.extend(
            files
                .iter()
                .enumerate()
                .map(|(i, f)| (u64::from(hash(f)) << 32) | i as u64),
        );
        keys.sort_unstable();
        let file = |key: &u64| &files[(key & 0xffff_ffff) as usize];
        let same_hash = |a: &u64, b: &u64| a >> 32 == b >> 32;
        self.files.clear();
        self.units.clear();
        let mut start = 0;
        while start < keys.len() {
            let len = keys[start..].iter().take_while(|k| same_hash(k, &keys[start])).count();
            let run = &mut keys[start..start + len];
            start += len;
            let first = stem(file(&run[0]));
            let at = self.files.len();
            if run[1..].iter().all(|k| stem(file(k)) == first) {
                // Mostly a run is the files of one unit.
                self.files.extend(run.iter().map(|k| file(k).clone()));
                self.units.push(at..self.files.len());
                continue;
            }
            // Stems collided: ordered by stem (stable: scan order within a unit), each stem's
            // files are neighbours.
            run.sort_by(|a, b| stem(file(a)).cmp(stem(file(b))));
            self.files.extend(run.iter().map(|k| file(k).clone()));
            let mut unit = at;
            for i in at + 1..=self.files.len() {
                if i == self.files.len() || stem(&self.files[i]) != stem(&self.files[unit]) {
                    self.units.push(unit..i);
                    unit = i;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
