//! Property tests: the policy over random units and clocks, and whole sweeps over random trees
//! on a real filesystem. Whatever the input, nothing outside the roots, nothing unknown, nothing
//! protected and nothing younger than `min_age` is deleted, and no unit is deleted in part.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use shuffle_janitor::config::Config;
use shuffle_janitor::policy::{Mode, Planner, Reason, Rules, Skip, UnitFacts, Verdict};
use shuffle_janitor::spark::{self, Kind};
use shuffle_janitor::sweep;

const MINUTE: i64 = 60_000_000_000;
const NOW: i64 = 1_000_000 * MINUTE;

fn unit_strategy() -> impl Strategy<Value = UnitFacts> {
    (
        0..Kind::ALL.len(),
        -30i64..2000,
        0u64..10_000,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(k, age, bytes, protected, open)| UnitFacts {
            kind: Kind::ALL[k],
            last_use: NOW - age * MINUTE,
            bytes,
            protected,
            open,
            unseen_until: i64::MIN,
        })
}

fn rules_strategy() -> impl Strategy<Value = Rules> {
    (0u64..120, 0u64..900, prop::collection::vec(0..6usize, 0..6)).prop_map(|(min, extra, kinds)| Rules {
        min_age: Duration::from_secs(min * 60),
        max_age: Duration::from_secs((min + extra) * 60),
        kinds: kinds.into_iter().map(|k| Kind::ALL[k]).collect(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_planner_never_takes_what_it_must_keep(
        units in prop::collection::vec(unit_strategy(), 0..60),
        rules in rules_strategy(),
        need in prop::option::of((0u64..400_000, prop::bool::ANY)),
    ) {
        let need = need.map(|(n, manual)| (n, if manual { Reason::Manual } else { Reason::Pressure }));
        let mut p = Planner::new(rules.clone(), NOW, need);
        let mut ttl_freed = 0;
        let mut ttl = Vec::new();
        let mut eligible = Vec::new();
        for (i, u) in units.iter().enumerate() {
            match p.offer(u, || i) {
                Verdict::Delete(reason) => {
                    prop_assert_eq!(reason, Reason::Ttl);
                    ttl_freed += u.bytes;
                    p.freed(u.bytes);
                    ttl.push(i);
                }
                Verdict::Eligible | Verdict::Unwatched => eligible.push(i),
                Verdict::Keep(Skip::Young) => prop_assert!(NOW - u.last_use < rules.min_age.as_nanos() as i64),
                Verdict::Keep(Skip::Protected) => prop_assert!(u.protected),
                Verdict::Keep(Skip::Open) => prop_assert!(u.open),
                Verdict::Keep(other) => prop_assert!(false, "the policy never says {:?}", other),
                Verdict::Exempt => prop_assert!(!rules.kinds.contains(&u.kind)),
            }
        }
        let s = p.finish();
        let age = |i: usize| NOW - units[i].last_use;
        for &i in ttl.iter().chain(&s.chosen) {
            let u = &units[i];
            prop_assert!(rules.kinds.contains(&u.kind), "kind {:?} not allowed", u.kind);
            prop_assert!(!u.protected && !u.open);
            prop_assert!(age(i) >= rules.min_age.as_nanos() as i64, "younger than min_age");
        }
        for &i in &ttl {
            prop_assert!(age(i) > rules.max_age.as_nanos() as i64);
        }
        match need {
            None => prop_assert!(s.chosen.is_empty() && s.shortfall.is_none()),
            Some((need, reason)) => {
                prop_assert_eq!(s.reason, Some(reason));
                // Pressure considers exactly the eligible units, oldest first.
                let mut all: Vec<usize> = s.chosen.iter().chain(&s.spared).copied().collect();
                all.sort();
                prop_assert_eq!(&all, &eligible);
                if let (Some(newest_chosen), Some(oldest_spared)) =
                    (s.chosen.iter().map(|&i| units[i].last_use).max(), s.spared.iter().map(|&i| units[i].last_use).min())
                {
                    prop_assert!(newest_chosen <= oldest_spared, "least recently used first");
                }
                // It stops as soon as the projected use is at the low watermark...
                let freed = ttl_freed + s.chosen.iter().map(|&i| units[i].bytes).sum::<u64>();
                if let Some(&last) = s.chosen.last() {
                    prop_assert!(freed - units[last].bytes < need, "took one unit too many");
                }
                // ...and is short only when nothing eligible is left.
                match s.shortfall {
                    None => prop_assert!(freed >= need),
                    Some(sf) => {
                        prop_assert!(s.spared.is_empty());
                        prop_assert_eq!(sf.missing_bytes, need - freed);
                    }
                }
            }
        }
    }
}

/// One file of a random tree: where it is, what it is called, how old it is.
#[derive(Clone, Debug)]
struct GenFile {
    layout: usize,
    store: usize,
    subdir: usize,
    name: String,
    age_tens_of_minutes: u64,
}

const LAYOUTS: [&str; 5] = [
    "",
    "spark-0d7c/executor-595b/",
    "usercache/alice/appcache/application_1700000000000_0001/",
    "spark-0d7c/",
    "not-spark/", // a look-alike outside any Spark layout: never touched
];

fn name_strategy() -> impl Strategy<Value = String> {
    let uuid = "94c8e855-5b9c-4832-bc04-1aa4f2b6903b";
    // Few stems, so that the files of one map output often share a store (and straddle the
    // limits with different ages).
    prop_oneof![
        6 => (0..2u32, 0..2u32, 0..4usize).prop_map(move |(s, m, ext)| {
            let ext = ["data", "index", "checksum.ADLER32", &format!("data.{uuid}")][ext].to_string();
            format!("shuffle_{s}_{m}_0.{ext}")
        }),
        1 => (0..3u32).prop_map(|n| format!("temp_shuffle_0be8a54c-b7f5-4f0e-b4c1-9f86469369a{n}")),
        1 => (0..3u32).prop_map(|n| format!("rdd_1_{n}")),
        1 => (0..3u32).prop_map(|n| format!("broadcast_{n}_piece0")),
        1 => Just("shuffle_0_1_0.data.tmp".to_string()),
        1 => Just("core.4242".to_string()),
        1 => "[a-z_0-9][a-z_.0-9]{0,11}",
    ]
}

fn tree_strategy() -> impl Strategy<Value = Vec<GenFile>> {
    prop::collection::vec(
        (0..LAYOUTS.len(), 0..2usize, 0..4usize, name_strategy(), 0..60u64).prop_map(
            |(layout, store, subdir, name, age)| GenFile {
                layout,
                store,
                subdir,
                name,
                age_tens_of_minutes: age,
            },
        ),
        1..40,
    )
}

fn rel_path(f: &GenFile) -> String {
    // A store's sub-directories; "0G" is not Spark's (upper case, not hex).
    let subdir = ["00", "0f", "3e", "0G"][f.subdir];
    format!("{}blockmgr-{}/{subdir}/{}", LAYOUTS[f.layout], f.store, f.name)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_sweep_never_deletes_what_it_must_keep(
        tree in tree_strategy(),
        min_tens in 0u64..6,
        extra_tens in 0u64..30,
        purge in prop::bool::ANY,
        protect_store in prop::option::of(0..2usize),
        rdd in prop::bool::ANY,
    ) {
        let env = TestEnv::new();
        let root = env.root();
        // Ages are multiples of 10 minutes and the limits sit 5 minutes off them, so a second
        // spent running the test cannot move a file across a limit.
        let min_age = min_tens * 10 + 5;
        let max_age = min_age + extra_tens * 10;
        let mut ages: BTreeMap<String, u64> = BTreeMap::new();
        for f in &tree {
            let rel = rel_path(f);
            let age = ages.entry(rel.clone()).or_insert(f.age_tens_of_minutes * 10);
            write_aged(&root.join(&rel), 10, Duration::from_secs(*age * 60));
        }
        // Old Spark files beside the root: never touched.
        let outside = env.outside().join("blockmgr-0/00/shuffle_0_0_0.data");
        write_aged(&outside, 10, 100 * HOUR);

        let protect = protect_store
            .map(|s| format!("protect = [\"{}/**/blockmgr-{s}\"]", root.display()))
            .unwrap_or_default();
        let kinds = if rdd { "kinds = [\"shuffle\", \"temp\", \"rdd\"]" } else { "" };
        // `high` = 1: a sweep never evicts for pressure, whatever the host's disk holds (at 0.5
        // a disk more than half full made pressure delete units younger than max_age, which
        // the TTL oracle below rightly refused); a purge goes down to `low` whatever `high` is.
        let text = format!(
            "roots = [{:?}]\nmin_age = \"{min_age}m\"\nmax_age = \"{max_age}m\"\n{protect}\n{kinds}\n\
             [watermark]\nhigh = 1.0\nlow = 0.000001\n",
            root.display().to_string()
        );
        let text = own_state(&env.dir.path().join("state"), &text) + &text;
        let cfg = Config::from_toml(&text, None).unwrap();
        let opts = sweep::Options { mode: if purge { Mode::Purge } else { Mode::Sweep }, dry_run: false, list_files: true, listing: None, opens: None, now: None };
        let report = sweep::run(&cfg, &opts, &AtomicBool::new(false));
        prop_assert_eq!(report.error_count(), 0);

        // Units as the janitor must see them: (store dir, stem) -> files.
        let mut units: BTreeMap<(PathBuf, String), Vec<String>> = BTreeMap::new();
        for rel in ages.keys() {
            if let Some(block) = spark::classify_relative(rel) {
                let store = Path::new(rel).parent().unwrap().parent().unwrap().to_owned();
                units.entry((store, block.stem.to_string())).or_default().push(rel.clone());
            }
        }
        let deleted: BTreeSet<String> = ages.keys().filter(|rel| !root.join(rel).exists()).cloned().collect();
        let listed: BTreeSet<String> = report
            .candidates
            .iter()
            .map(|c| c.path.strip_prefix(&root).expect("deleted below the root").to_str().unwrap().to_string())
            .collect();
        prop_assert_eq!(&deleted, &listed, "the report lists exactly what is gone");
        prop_assert!(outside.exists(), "nothing outside the roots");

        for rel in &deleted {
            let block = spark::classify_relative(rel);
            prop_assert!(block.is_some(), "{} is not a Spark block in a Spark layout", rel);
            let block = block.unwrap();
            prop_assert!(cfg.may_delete(block.kind), "{} is of a kind not allowed", rel);
            if let Some(s) = protect_store {
                prop_assert!(!rel.contains(&format!("blockmgr-{s}/")), "{} is protected", rel);
            }
        }
        for ((_, stem), files) in &units {
            let gone = files.iter().filter(|f| deleted.contains(*f)).count();
            prop_assert!(gone == 0 || gone == files.len(), "unit {} deleted in part: {:?}", stem, files);
            if gone > 0 {
                let newest = files.iter().map(|f| ages[f]).min().unwrap();
                prop_assert!(newest >= min_age, "unit {} used {}m ago, min_age {}m", stem, newest, min_age);
                if !purge {
                    prop_assert!(newest > max_age, "unit {} deleted by TTL at {}m", stem, newest);
                }
            } else if newest_age(files, &ages) > max_age && unit_deletable(files, &cfg, protect_store) {
                prop_assert!(false, "unit {} older than max_age was kept: {:?}", stem, files);
            }
        }
    }
}

fn newest_age(files: &[String], ages: &BTreeMap<String, u64>) -> u64 {
    files.iter().map(|f| ages[f]).min().unwrap()
}

fn unit_deletable(files: &[String], cfg: &Config, protect_store: Option<usize>) -> bool {
    let kind = spark::classify_relative(&files[0]).unwrap().kind;
    let protected = protect_store.is_some_and(|s| files[0].contains(&format!("blockmgr-{s}/")));
    cfg.may_delete(kind) && !protected
}

/// A JVM of a simulated node: it starts, creates its block store some time later (an executor
/// within its startup window, a driver whenever it creates a SparkContext), in its own
/// `executor-*` directory or not, and is alive now or not.
#[derive(Clone, Debug)]
struct SimJvm {
    executor: bool,
    start_min: i64,
    create_after_min: i64,
    /// Seconds between the start and the creation, on top of the minutes.
    create_after_sec: i64,
    /// The `executor-*` directory its store is in (standalone), named in its environment.
    dir: Option<(u64, u64)>,
    /// Whether /proc let the janitor read its environment.
    env_readable: bool,
    /// Whether its start time can be trusted (no clock step seen since it started).
    start_known: bool,
    alive: bool,
    /// Its store's birth time is recorded (statx), or only a later ctime.
    birth_recorded: bool,
    changed_after_min: i64,
    /// An executor's own startup window by its command line's timeouts (minutes), where it can
    /// be read: it may create its store that late when that is longer than the configured one.
    own_window_min: Option<i64>,
    /// How long after its birth its store was first seen (seconds), when it was.
    seen_after_sec: Option<i64>,
    /// How /proc shows it: started by the `java` launcher (its name says it is a JVM), or some
    /// other way (the dynamic loader, jshell, a JNI host): then only `libjvm.so` in its map does.
    named: bool,
    /// Whether its classes could be judged (it made a store: Spark's are there) or not.
    classes_judged: bool,
}

fn sim_jvm(startup_min: i64) -> impl Strategy<Value = SimJvm> {
    (
        prop::bool::ANY,
        0i64..20_000,
        0i64..5_000,
        0i64..60,
        prop::option::of((0u64..3, 0u64..3)),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
        prop::bool::ANY,
        prop::bool::weighted(0.8),
        0i64..3000,
        (prop::option::weighted(0.8, 0i64..120), prop::option::of(0i64..100_000)),
        (prop::bool::ANY, prop::bool::ANY),
    )
        .prop_map(
            move |(
                executor,
                start_min,
                after,
                create_after_sec,
                dir,
                env_readable,
                start_known,
                alive,
                birth_recorded,
                changed_after_min,
                (own_window_min, seen_after_sec),
                (named, classes_judged),
            )| SimJvm {
                executor,
                start_min,
                // An executor makes its store within its startup window.
                create_after_min: match (executor, own_window_min) {
                    (true, Some(own)) => after % startup_min.max(own).max(1),
                    _ => after,
                },
                create_after_sec: if executor { 0 } else { create_after_sec },
                dir,
                env_readable,
                start_known,
                alive,
                birth_recorded,
                changed_after_min,
                own_window_min,
                seen_after_sec,
                named,
                classes_judged,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// A simulated node, independent of the rule: JVMs start at random times, each creates its
    /// store the way Spark does, some are alive now. Whatever the timeline, a store whose
    /// creator is alive is never judged dead (the rule sees the live JVMs as /proc shows them:
    /// their starts, their environment when readable, no start when a clock step was seen); nor
    /// is any store while the processes cannot all be seen, while it holds a file, within
    /// `min_idle`, or while a process holds it.
    #[test]
    fn a_store_is_never_dead_while_its_creator_lives(
        startup_min in 1i64..60,
        jvms in prop::collection::vec(sim_jvm(60), 1..6),
        idle_min in 0i64..30_000,
        min_idle_min in 1u64..3000,
        empty in prop::bool::weighted(0.9),
        held in prop::bool::weighted(0.1),
        blind in prop::bool::weighted(0.1),
    ) {
        use shuffle_janitor::policy::{judge_store, Owner, OwnerKind, StoreFacts, StoreState};
        let jvms: Vec<SimJvm> = jvms
            .into_iter()
            .map(|mut j| {
                // An executor makes its store within the longer of the configured window and its
                // own; at any time after its start when its own cannot be read.
                if j.executor && let Some(own) = j.own_window_min {
                    j.create_after_min %= startup_min.max(own).max(1);
                }
                j
            })
            .collect();
        use shuffle_janitor::procs::{classify, Role};
        // What /proc shows of each live JVM, classified as the snapshot does: one that made a
        // store has run Java code, so libjvm.so is mapped in it whatever its name.
        let live: Vec<Owner> = jvms
            .iter()
            .enumerate()
            .filter(|(_, j)| j.alive)
            .filter_map(|(pid, j)| {
                let dirs = j.env_readable.then(|| j.dir.into_iter().collect::<Vec<_>>());
                let main = if j.executor { "org.apache.spark.executor.CoarseGrainedExecutorBackend" } else { "com.acme.Main" };
                let (cmdline, exe): (Vec<u8>, &[u8]) = if j.named {
                    (format!("java\0-cp\0/opt/app/*\0{main}\0").into_bytes(), b"/opt/jdk/bin/java")
                } else {
                    (
                        format!("/lib64/ld-linux-x86-64.so.2\0/opt/jdk/bin/.java-wrapped\0{main}\0").into_bytes(),
                        b"/usr/lib/ld-linux-x86-64.so.2",
                    )
                };
                let kind = match classify(&cmdline, Some(exe), true)? {
                    Role::Executor => OwnerKind::Executor { dirs },
                    Role::Driver => OwnerKind::Driver { dirs },
                    Role::Service => return None,
                };
                Some(Owner {
                    pid: pid as u32,
                    start: j.start_known.then_some(NOW - j.start_min * MINUTE),
                    // The clock of start times never steps: always known.
                    start_boot: Some(NOW - j.start_min * MINUTE),
                    kind,
                    startup: j.own_window_min.map(|w| Duration::from_secs(w.max(0) as u64 * 60)),
                    about: String::new(),
                    unjudged: !j.classes_judged,
                })
            })
            .collect();
        let (min_idle, startup) = (Duration::from_secs(min_idle_min * 60), Duration::from_secs(startup_min as u64 * 60));
        for (i, j) in jvms.iter().enumerate() {
            let born = NOW - j.start_min * MINUTE + j.create_after_min * MINUTE + j.create_after_sec * 1_000_000_000;
            if born > NOW {
                continue; // not created yet
            }
            let facts = StoreFacts {
                empty,
                last_activity: (born + (NOW - born).min(idle_min * MINUTE)).min(NOW),
                birth: j.birth_recorded.then_some(born),
                changed: (born + j.changed_after_min * MINUTE).min(NOW),
                executor_dir: j.dir,
                held,
                shared_fs: false,
                // First seen at or after its birth (by a daemon watching, or a later read).
                seen_boot: j.seen_after_sec.map(|d| born + d * 1_000_000_000),
            };
            let state = judge_store(&facts, (!blind).then_some(live.as_slice()), NOW, min_idle, startup);
            if state != StoreState::Dead {
                continue;
            }
            prop_assert!(empty && !held && !blind, "dead while full, held or blind: {facts:?}");
            prop_assert!(NOW - facts.last_activity >= min_idle.as_nanos() as i64, "dead within min_idle");
            prop_assert!(!j.alive, "the store of live JVM {i} ({j:?}) judged dead: {facts:?}");
        }
    }
}

proptest! {
    /// Whatever its command line and executable, a process with `libjvm.so` mapped is a JVM to
    /// the liveness rule (a JVM found only by its mapping is never missed), and an archive with
    /// Spark's store-making class among any other entries is always one that can make stores.
    #[test]
    fn a_mapped_jvm_and_an_archive_with_spark_are_never_missed(
        args in prop::collection::vec(prop::collection::vec(1u8..=255, 0..20), 0..8),
        exe in prop::option::of(prop::collection::vec(1u8..=255, 1..30)),
        names in prop::collection::vec("[a-zA-Z/._-]{0,30}", 0..20),
        at in any::<prop::sample::Index>(),
    ) {
        use shuffle_janitor::procs::classify;
        use shuffle_janitor::spark_jvm::{spark_entry, DISK_BLOCK_MANAGER};
        let cmdline: Vec<u8> = args.iter().flat_map(|a| a.iter().copied().chain([0])).collect();
        prop_assert!(classify(&cmdline, exe.as_deref(), true).is_some());
        let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
        let i = at.index(names.len() + 1);
        names.insert(i, DISK_BLOCK_MANAGER);
        prop_assert!(spark_entry(names.iter().map(|n| n.as_bytes())).is_some());
    }
}
