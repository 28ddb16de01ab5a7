use super::*;

const MIN: i64 = 60_000_000_000;

fn rules() -> Rules {
    Rules {
        max_age: Duration::from_secs(360 * 60),
        min_age: Duration::from_secs(15 * 60),
        kinds: vec![Kind::Shuffle, Kind::Temp],
    }
}

fn unit(age_min: i64) -> UnitFacts {
    UnitFacts {
        kind: Kind::Shuffle,
        last_use: 1_000_000 * MIN - age_min * MIN,
        bytes: 100,
        protected: false,
        open: false,
        unseen_until: Nanos::MIN,
    }
}

const NOW: Nanos = 1_000_000 * MIN;

#[test]
fn rules_apply_in_order() {
    let r = rules();
    assert_eq!(judge(&unit(361), &r, NOW), Verdict::Delete(Reason::Ttl));
    assert_eq!(judge(&unit(360), &r, NOW), Verdict::Eligible);
    assert_eq!(judge(&unit(15), &r, NOW), Verdict::Eligible);
    assert_eq!(judge(&unit(14), &r, NOW), Verdict::Keep(Skip::Young));
    assert_eq!(
        judge(&unit(-60), &r, NOW),
        Verdict::Keep(Skip::Young),
        "future timestamps are young"
    );
    assert_eq!(
        judge(
            &UnitFacts {
                open: true,
                ..unit(999)
            },
            &r,
            NOW
        ),
        Verdict::Keep(Skip::Open)
    );
    assert_eq!(
        judge(&UnitFacts { open: true, ..unit(1) }, &r, NOW),
        Verdict::Keep(Skip::Young)
    );
    assert_eq!(
        judge(
            &UnitFacts {
                protected: true,
                ..unit(999)
            },
            &r,
            NOW
        ),
        Verdict::Keep(Skip::Protected)
    );
    assert_eq!(
        judge(
            &UnitFacts {
                kind: Kind::Rdd,
                ..unit(999)
            },
            &r,
            NOW
        ),
        Verdict::Exempt
    );
    assert_eq!(
        judge(
            &UnitFacts {
                kind: Kind::Other,
                ..unit(999)
            },
            &r,
            NOW
        ),
        Verdict::Exempt
    );
}

#[test]
fn a_unit_possibly_used_unseen_waits_for_max_age_of_watching_before_the_ttl() {
    let r = rules();
    // Written long ago; the daemon started watching 10 minutes ago.
    let watched_10_min = UnitFacts {
        unseen_until: NOW - 10 * MIN,
        ..unit(999)
    };
    assert_eq!(judge(&watched_10_min, &r, NOW), Verdict::Unwatched);
    // Watched for longer than max_age: timestamps and the watch cover all of it.
    let watched_7_h = UnitFacts {
        unseen_until: NOW - 420 * MIN,
        ..unit(999)
    };
    assert_eq!(judge(&watched_7_h, &r, NOW), Verdict::Delete(Reason::Ttl));
    // Pressure may still take it, least recently used first.
    let mut p = Planner::new(r, NOW, Some((50, Reason::Pressure)));
    assert_eq!(p.offer(&watched_10_min, || 7), Verdict::Unwatched);
    assert_eq!(p.finish().chosen, [7]);
}

#[test]
fn need_follows_the_watermarks() {
    let u = Usage { used: 90, avail: 10 };
    assert_eq!(pressure_need(u, 0.85, 0.75, Mode::Sweep), Some((15, Reason::Pressure)));
    assert_eq!(pressure_need(u, 0.95, 0.75, Mode::Sweep), None);
    assert_eq!(pressure_need(u, 0.95, 0.75, Mode::Purge), Some((15, Reason::Manual)));
    let low = Usage { used: 50, avail: 50 };
    assert_eq!(pressure_need(low, 0.85, 0.75, Mode::Purge), None);
    assert_eq!(
        pressure_need(Usage { used: 0, avail: 0 }, 0.85, 0.75, Mode::Purge),
        None
    );
    assert_eq!(Usage { used: 85, avail: 15 }.ratio(), 0.85);
}

#[test]
fn pressure_takes_least_recently_used_first_and_stops_at_low() {
    let mut p = Planner::new(rules(), NOW, Some((250, Reason::Pressure)));
    for (i, age) in [20, 300, 100, 200, 30].into_iter().enumerate() {
        assert_eq!(p.offer(&unit(age), || i), Verdict::Eligible);
    }
    let s = p.finish();
    assert_eq!(s.chosen, [1, 3, 2], "ages 300, 200, 100 minutes");
    assert_eq!(s.spared, [4, 0]);
    assert_eq!(s.reason, Some(Reason::Pressure));
    assert_eq!(s.shortfall, None);
}

#[test]
fn ttl_deletions_count_towards_the_need() {
    let mut p = Planner::new(rules(), NOW, Some((150, Reason::Pressure)));
    assert_eq!(p.offer(&unit(400), || 9), Verdict::Delete(Reason::Ttl));
    p.freed(100);
    p.offer(&unit(100), || 0);
    p.offer(&unit(200), || 1);
    assert_eq!(p.finish().chosen, [1]);
}

#[test]
fn planners_of_one_filesystem_merge_into_one_order() {
    let need = Some((250, Reason::Pressure));
    let (mut a, mut b) = (Planner::new(rules(), NOW, need), Planner::new(rules(), NOW, need));
    a.offer(&unit(20), || 0);
    a.offer(&unit(300), || 1);
    b.offer(&unit(100), || 2);
    b.offer(&unit(200), || 3);
    b.offer(&unit(5), || 4);
    a.freed(50);
    a.absorb(b);
    let s = a.finish();
    assert_eq!(s.chosen, [1, 3], "300 and 200 minutes, plus the 50 bytes freed by TTL");
    assert_eq!(s.spared, [2, 0]);
}

#[test]
fn a_shortfall_says_what_held_the_bytes_back() {
    let mut p = Planner::new(rules(), NOW, Some((1000, Reason::Manual)));
    p.offer(&unit(5), || 0);
    p.offer(
        &UnitFacts {
            open: true,
            ..unit(500)
        },
        || 1,
    );
    p.offer(
        &UnitFacts {
            protected: true,
            ..unit(500)
        },
        || 2,
    );
    p.offer(&unit(100), || 3);
    let s = p.finish();
    assert_eq!(s.chosen, [3]);
    assert_eq!(
        s.shortfall,
        Some(Shortfall {
            missing_bytes: 900,
            young_bytes: 100,
            open_bytes: 100,
            protected_bytes: 100,
            young_until: Some(NOW - 5 * MIN + 15 * MIN),
        })
    );
}

#[test]
fn without_pressure_nothing_is_pooled() {
    let mut p: Planner<usize> = Planner::new(rules(), NOW, None);
    assert_eq!(p.offer(&unit(100), || unreachable!("not pooled")), Verdict::Eligible);
    let s = p.finish();
    assert!(s.chosen.is_empty() && s.spared.is_empty() && s.shortfall.is_none());
}

const SEC: Nanos = 1_000_000_000;
const DAY: Duration = Duration::from_secs(86_400);
const WINDOW: Duration = Duration::from_secs(600);

fn dead_store(now: Nanos) -> StoreFacts {
    StoreFacts {
        empty: true,
        last_activity: now - 2 * 86_400 * SEC,
        birth: Some(now - 3 * 86_400 * SEC),
        changed: now - 2 * 86_400 * SEC,
        executor_dir: None,
        held: false,
        shared_fs: false,
        seen_boot: None,
    }
}

#[test]
fn a_store_is_dead_only_when_empty_quiet_and_ownerless() {
    let now = NOW;
    let f = dead_store(now);
    assert_eq!(judge_store(&f, Some(&[]), now, DAY, WINDOW), StoreState::Dead);
    let full = StoreFacts {
        empty: false,
        ..f.clone()
    };
    assert_eq!(judge_store(&full, Some(&[]), now, DAY, WINDOW), StoreState::Live);
    let recent = StoreFacts {
        last_activity: now - 3600 * SEC,
        ..f.clone()
    };
    assert_eq!(judge_store(&recent, Some(&[]), now, DAY, WINDOW), StoreState::Live);
    assert!(matches!(judge_store(&f, None, now, DAY, WINDOW), StoreState::Idle(_)));
    let held = StoreFacts {
        held: true,
        ..f.clone()
    };
    assert!(matches!(
        judge_store(&held, Some(&[]), now, DAY, WINDOW),
        StoreState::Idle(_)
    ));
    let exec = |start: Nanos, dirs| Owner {
        pid: 7,
        start: Some(start),
        start_boot: None,
        kind: OwnerKind::Executor { dirs },
        startup: Some(Duration::ZERO),
        about: String::new(),
        unjudged: false,
    };
    let born = f.birth.unwrap();
    // An executor that started after the store was born cannot own it.
    assert_eq!(
        judge_store(&f, Some(&[exec(born + 60 * SEC, None)]), now, DAY, WINDOW),
        StoreState::Dead
    );
    // One that started just before it was born may.
    assert!(matches!(
        judge_store(&f, Some(&[exec(born - 5 * SEC, None)]), now, DAY, WINDOW),
        StoreState::Idle(_)
    ));
    // One that started long before: it made its own store within the window, not this one.
    assert_eq!(
        judge_store(&f, Some(&[exec(born - 3600 * SEC, None)]), now, DAY, WINDOW),
        StoreState::Dead
    );
    // An executor whose command line gives it longer to reach its driver (40 minutes at
    // spark.network.timeout=600s) may own a store born 30 minutes after its start; one
    // whose window cannot be read may own any born after its start.
    for own in [Some(Duration::from_secs(2400)), None] {
        let slow = Owner {
            startup: own,
            ..exec(born - 1800 * SEC, None)
        };
        assert!(
            matches!(judge_store(&f, Some(&[slow]), now, DAY, WINDOW), StoreState::Idle(_)),
            "{own:?}"
        );
    }
    // A shorter window of its own never shortens the configured one.
    let quick = Owner {
        startup: Some(Duration::from_secs(60)),
        ..exec(born - 300 * SEC, None)
    };
    assert!(matches!(
        judge_store(&f, Some(&[quick]), now, DAY, WINDOW),
        StoreState::Idle(_)
    ));
    // Without a birth time the window cannot be applied: kept while it lives.
    let no_birth = StoreFacts {
        birth: None,
        ..f.clone()
    };
    assert!(matches!(
        judge_store(&no_birth, Some(&[exec(born - 3600 * SEC, None)]), now, DAY, WINDOW),
        StoreState::Idle(_)
    ));
    // A standalone executor that names other executor-* directories does not own it.
    let in_exec = StoreFacts {
        executor_dir: Some((1, 2)),
        ..f.clone()
    };
    assert_eq!(
        judge_store(
            &in_exec,
            Some(&[exec(born - 5 * SEC, Some(vec![(1, 3)]))]),
            now,
            DAY,
            WINDOW
        ),
        StoreState::Dead
    );
    assert!(matches!(
        judge_store(
            &in_exec,
            Some(&[exec(born - 5 * SEC, Some(vec![(1, 2)]))]),
            now,
            DAY,
            WINDOW
        ),
        StoreState::Idle(_)
    ));
    // A driver started before the store may own it (a late SparkContext), but not one in an
    // executor-* directory its environment does not name.
    let driver = |dirs| Owner {
        pid: 9,
        start: Some(born - 30 * 86_400 * SEC),
        start_boot: None,
        kind: OwnerKind::Driver { dirs },
        startup: Some(Duration::ZERO),
        about: String::new(),
        unjudged: false,
    };
    assert!(matches!(
        judge_store(&f, Some(&[driver(Some(vec![]))]), now, DAY, WINDOW),
        StoreState::Idle(_)
    ));
    assert_eq!(
        judge_store(&in_exec, Some(&[driver(Some(vec![(1, 3)]))]), now, DAY, WINDOW),
        StoreState::Dead
    );
    // A local-mode session started from an executor inherits its executor directory.
    for dirs in [Some(vec![(1, 2)]), None] {
        assert!(matches!(
            judge_store(&in_exec, Some(&[driver(dirs)]), now, DAY, WINDOW),
            StoreState::Idle(_)
        ));
    }
    // A JVM whose start cannot be trusted (it started before a clock step) may own anything.
    let stepped = Owner {
        start: None,
        ..exec(born + 60 * SEC, None)
    };
    assert!(matches!(
        judge_store(&f, Some(&[stepped]), now, DAY, WINDOW),
        StoreState::Idle(_)
    ));
    // Seen to exist before the JVM started, on the clock of start times: not its store, even
    // when its start on the wall clock cannot be trusted; seen only after: it may be.
    let boot = |seen: Nanos, start: Nanos| {
        let facts = StoreFacts {
            seen_boot: Some(seen),
            ..f.clone()
        };
        let owner = Owner {
            start: None,
            start_boot: Some(start),
            ..exec(born + 60 * SEC, None)
        };
        judge_store(&facts, Some(&[owner]), now, DAY, WINDOW)
    };
    assert_eq!(boot(1_000 * SEC, 1_000 * SEC + 1), StoreState::Dead);
    assert!(matches!(boot(1_000 * SEC, 1_000 * SEC), StoreState::Idle(_)));
    assert!(matches!(boot(2_000 * SEC, 1_000 * SEC), StoreState::Idle(_)));
    // On a network filesystem other machines' processes may use it.
    let shared = StoreFacts {
        shared_fs: true,
        ..f.clone()
    };
    assert!(matches!(
        judge_store(&shared, Some(&[]), now, DAY, WINDOW),
        StoreState::Idle(_)
    ));
}

#[test]
fn an_idle_store_says_which_rule_and_which_process_keep_it() {
    let f = dead_store(NOW);
    let born = f.birth.unwrap();
    let o = |kind, start, unjudged| Owner {
        pid: 5,
        start,
        start_boot: None,
        kind,
        startup: Some(Duration::ZERO),
        about: String::new(),
        unjudged,
    };
    let why = |owners: Option<&[Owner]>, f: &StoreFacts| match judge_store(f, owners, NOW, DAY, WINDOW) {
        StoreState::Idle(k) => (k.reason, k.pid),
        s => panic!("{s:?}"),
    };
    let exec = OwnerKind::Executor { dirs: None };
    let driver = OwnerKind::Driver { dirs: None };
    let before = Some(born - SEC);
    assert_eq!(
        why(Some(&[o(exec.clone(), before, false)]), &f),
        (IdleReason::Executor, Some(5))
    );
    assert_eq!(
        why(Some(&[o(driver.clone(), before, false)]), &f),
        (IdleReason::SparkJvm, Some(5))
    );
    assert_eq!(
        why(Some(&[o(driver.clone(), before, true)]), &f),
        (IdleReason::UnknownJvm, Some(5))
    );
    assert_eq!(
        why(Some(&[o(driver, None, true)]), &f),
        (IdleReason::ClockStep, Some(5))
    );
    assert_eq!(why(None, &f), (IdleReason::Unseen, None));
    let held = StoreFacts {
        held: true,
        ..f.clone()
    };
    assert_eq!(why(Some(&[]), &held), (IdleReason::Held, None));
}

#[test]
fn an_executor_dir_stays_while_a_live_executor_may_use_it() {
    let dir = (1, 42);
    let owner = |kind| Owner {
        pid: 7,
        start: Some(0),
        start_boot: None,
        kind,
        startup: Some(Duration::ZERO),
        about: String::new(),
        unjudged: false,
    };
    let names = |d: Vec<(u64, u64)>| owner(OwnerKind::Executor { dirs: Some(d) });
    assert!(executor_dir_removable(dir, &[]));
    assert!(executor_dir_removable(
        dir,
        &[owner(OwnerKind::Driver { dirs: Some(vec![]) }), names(vec![(1, 41)])]
    ));
    // Named by a live executor (one starting up creates its store there next).
    assert!(!executor_dir_removable(dir, &[names(vec![(1, 41), (1, 42)])]));
    // Some JVM's directories unknown: it may be this one.
    assert!(!executor_dir_removable(
        dir,
        &[owner(OwnerKind::Executor { dirs: None })]
    ));
    assert!(!executor_dir_removable(dir, &[owner(OwnerKind::Driver { dirs: None })]));
}

#[test]
fn grouping_puts_equal_stems_together() {
    let mut g = Grouping::default();
    g.group(&["b", "a", "b", "c", "a", "b"], |f| f.as_bytes(), |_| 0);
    assert_eq!(g.files, ["a", "a", "b", "b", "b", "c"]);
    assert_eq!(g.units, [0..2, 2..5, 5..6]);
    // Hash ties between different stems still make different units; and the buffers of
    // the last store are reused, not appended to.
    g.group(
        &["bb", "a", "cc", "bb", "a", "cc"],
        |f| f.as_bytes(),
        |f| f.len() as u32,
    );
    assert_eq!(g.files, ["a", "a", "bb", "bb", "cc", "cc"]);
    assert_eq!(g.units, [0..2, 2..4, 4..6]);
    g.group(&[], |f: &&str| f.as_bytes(), |_| 0);
    assert!(g.files.is_empty() && g.units.is_empty());
}
