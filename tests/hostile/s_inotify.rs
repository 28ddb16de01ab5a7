//! Scenario 7, inotify limits: `max_user_watches` low (fall back to timestamps, metric and one log
//! line, recovery when watches free up) and `max_queued_events` low with a burst of opens (an
//! overflow must never let the TTL take a unit opened within `max_age`). Every sysctl restored.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("inotify_watch_limit_and_recovery", watch_limit),
    ("inotify_overflow_while_read", overflow),
];

/// inotify watches held now by uid 0 (other processes' too: the limit is per user).
fn watches_in_use() -> u64 {
    let mut n = 0;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for p in procs.flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(t) = std::fs::read_to_string(fd.path()) {
                n += t.lines().filter(|l| l.starts_with("inotify wd:")).count() as u64;
            }
        }
    }
    n
}

fn watch_limit(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("needs root to set fs.inotify.max_user_watches");
    }
    let s = Scratch::new();
    let root = s.join("local");
    let mut oracle = Oracle::default();
    // 2 stores of 64 NN: 130 directories to watch, far more than the limit leaves.
    for st in ["a", "b"] {
        for i in 0..64 {
            std::fs::create_dir_all(root.join(bm(st)).join(format!("{i:02x}"))).unwrap();
        }
        let stale = unit_paths(&root.join(bm(st)), 1, 1);
        write_unit(&stale, 10, 48 * HOUR);
        oracle.unit(stale, false);
        let young = unit_paths(&root.join(bm(st)), 1, 2);
        write_unit(&young, 10, Duration::ZERO);
        oracle.unit(young, true);
    }
    let in_use = watches_in_use();
    let guard = Sysctl::set("fs.inotify.max_user_watches", &(in_use + 20).to_string()).unwrap();
    let body = config_text(
        &[&root],
        "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"2s\"\n[watermark]\nhigh = 0.99\nlow = 0.98\npoll = \"1s\"",
    );
    let mut d = Daemon::start(s.path(), &body);
    d.wait_sweeps(2.0, Duration::from_secs(15));
    let active = d.metric("shuffle_janitor_inotify_active", &[]);
    sc.check(active == Some(0.0), || {
        format!("inotify_active {active:?} at the watch limit")
    });
    let unwatched = d.metric("shuffle_janitor_unwatched_dirs", &[]).unwrap_or(0.0);
    sc.check(unwatched > 0.0, || "unwatched_dirs 0 at the watch limit".into());
    let lines = d
        .log_text()
        .lines()
        .filter(|l| l.contains("inotify watch limit reached"))
        .count();
    sc.check(lines == 1, || {
        format!("{lines} log lines about the watch limit (one expected)")
    });
    // Timestamps still prove the stale units unread: they go.
    sc.check(!oracle.units[0].files[0].exists(), || {
        "fallback to timestamps: the provably stale unit stayed".into()
    });
    // Watches free up: raise the limit, add a store; within an interval or two it is all watched.
    guard.update("1000000");
    let st = unit_paths(&root.join(bm("c")), 1, 3);
    write_unit(&st, 10, Duration::ZERO);
    oracle.unit(st, true);
    let t = Instant::now();
    let back = d.wait_metric("shuffle_janitor_inotify_active", &[], Duration::from_secs(6), |v| {
        v == 1.0
    });
    sc.iterations = 2;
    sc.check(back == Some(1.0), || {
        format!(
            "inotify_active {back:?} {:.0}s after the limit was raised (unwatched_dirs {:?})",
            t.elapsed().as_secs_f64(),
            d.metric("shuffle_janitor_unwatched_dirs", &[])
        )
    });
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    drop(guard);
    oracle.tally(sc);
}

/// A unit read every 2 s on a noatime tmpfs (only the watch can see the reads) while bursts of
/// opens overflow a 64-event queue: it must survive the TTL.
fn overflow(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("needs root to set fs.inotify.max_queued_events and mount");
    }
    let s = Scratch::new();
    let root = s.join("local");
    let _fs = Mounted::tmpfs(&root, "size=64m,noatime").unwrap();
    let _q = Sysctl::set("fs.inotify.max_queued_events", "64").unwrap();
    let mut oracle = Oracle::default();
    let read = unit_paths(&root.join(bm("o")), 1, 1);
    write_unit(&read, 4096, 2 * HOUR);
    oracle.unit(read.clone(), true);
    // Files to open in bursts.
    let burst: Vec<_> = (0..500u64)
        .flat_map(|m| unit_paths(&root.join(bm("burst")), 2, m))
        .collect();
    for p in &burst {
        write_aged(p, 10, Duration::ZERO);
    }
    let max_age = 20;
    let body = config_text(
        &[&root],
        &format!("max_age = \"{max_age}s\"\nmin_age = \"2s\"\ninterval = \"1s\"\nstate_dir = \"\""),
    );
    let d = Daemon::start(s.path(), &body);
    let t = Instant::now();
    let total = Duration::from_secs(max_age + 15);
    let mut last_read = Instant::now();
    while t.elapsed() < total {
        // A burst of opens overflows the queue; the read comes right after, in the lost stretch.
        for p in &burst {
            let _ = std::fs::File::open(p);
        }
        for p in &read {
            let _ = std::fs::read(p);
        }
        last_read = Instant::now();
        sc.iterations += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    let overflows = d.metric("shuffle_janitor_inotify_overflows_total", &[]).unwrap_or(0.0);
    sc.check(overflows >= 1.0, || {
        "no overflow counted: the test did not overflow the queue".into()
    });
    oracle.tally(sc);
    sc.note(format!(
        "{overflows} overflows; last read {:.1}s before the end",
        last_read.elapsed().as_secs_f64()
    ));
    let _ = Path::new("");
}
