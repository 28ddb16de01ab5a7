//! Scenario 6, signals and shutdown: SIGHUP storms alternating good and bad configs, SIGUSR1 and
//! SIGUSR2 storms during a sweep, SIGTERM during a large deletion (never a unit in part), and
//! SIGHUP with dry_run = true during a long purge.

use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("signals_sighup_storm", sighup_storm),
    ("signals_usr_storm_during_sweep", usr_storm),
    ("signals_sigterm_mid_deletion", sigterm_mid_deletion),
    ("signals_sighup_dry_run_stops_purge", dry_run_reload),
];

fn sighup_storm(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let stale = unit_paths(&root.join(bm("h")), 1, 1);
    write_unit(&stale, 10, 48 * HOUR);
    let good = |max_age: u32| {
        config_text(
            &[&root],
            &format!("dry_run = true\nmax_age = \"{max_age}s\"\nmin_age = \"1s\"\ninterval = \"1s\""),
        )
    };
    let bad = format!(
        "{}\nmax_aeg = \"1s\"\ndry_run = false",
        config_text(&[&root], "max_age = \"1s\"")
    );
    let mut d = Daemon::start(s.path(), &good(3600));
    d.wait_sweeps(1.0, Duration::from_secs(10));
    let (rss0, fds0) = (d.rss_kib(), d.fds());
    let n = sc.size(1000, 1000);
    let t = Instant::now();
    for i in 0..n {
        if i % 2 == 0 {
            d.write_config(&good(3600 + i as u32));
        } else {
            d.write_config(&bad);
        }
        d.signal(Signal::HUP);
        // 1,000 in about a second.
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(8));
        }
    }
    let storm = t.elapsed();
    // The last one good, with a value of its own.
    d.reload(&good(7777));
    let ok = d.wait_metric(
        "shuffle_janitor_config_seconds",
        &[("setting", "max_age")],
        Duration::from_secs(10),
        |v| v == 7777.0,
    );
    sc.iterations = n as u64 + 1;
    sc.check(ok == Some(7777.0), || {
        format!("the last good config is not in force: max_age {ok:?}")
    });
    let g = d.wait_metric(
        "shuffle_janitor_config_last_reload_successful",
        &[],
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    sc.check(g == Some(1.0), || format!("reload gauge {g:?} after a good reload"));
    std::thread::sleep(Duration::from_secs(1));
    let (rss1, fds1) = (d.rss_kib(), d.fds());
    sc.check(fds1 <= fds0 + 4, || format!("fds {fds0} -> {fds1}"));
    sc.check(rss1 < rss0 + 8 * 1024, || format!("RSS {rss0} KiB -> {rss1} KiB"));
    sc.check(d.alive(), || "daemon died".into());
    d.no_panic(sc);
    let mut oracle = Oracle::default();
    oracle.unit(stale, true); // every good config is a dry run; the bad ones would delete
    oracle.tally(sc);
    sc.note(format!(
        "{n} SIGHUPs in {:.2}s; RSS {rss0}->{rss1} KiB, fds {fds0}->{fds1}",
        storm.as_secs_f64()
    ));
}

/// Never two sweeps at once: "sweep starting" and "sweep finished" alternate in the log.
fn overlapping_sweeps(log: &str) -> Option<String> {
    let mut running = false;
    for l in log.lines() {
        if l.contains("sweep starting") {
            if running {
                return Some(l.to_string());
            }
            running = true;
        } else if l.contains("sweep finished") {
            running = false;
        }
    }
    None
}

fn usr_storm(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let mut oracle = Oracle::default();
    // Enough stale units that a sweep takes a while; purgeable ones (past min_age) too.
    for m in 0..6000u64 {
        let u = unit_paths(&root.join(bm(&format!("{}", m % 4))), 1, m);
        let young = m % 50 == 0;
        write_unit(&u, 1, if young { Duration::ZERO } else { 2 * HOUR });
        oracle.unit(u, young);
    }
    let body = config_text(
        &[&root],
        "max_age = \"6h\"\nmin_age = \"1m\"\ninterval = \"1h\"\n[watermark]\nhigh = 0.999\nlow = 0.0001",
    );
    let mut d = Daemon::start(s.path(), &body);
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    for i in 0..500 {
        d.signal(if i % 3 == 0 { Signal::USR2 } else { Signal::USR1 });
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The first purge deletes thousands of units; then what the storm folded into one
    // follow-up runs. Wait until the count stops moving.
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "signal")],
        Duration::from_secs(60),
        |v| v >= 1.0,
    );
    let mut signal_sweeps = 0.0;
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = d
            .metric("shuffle_janitor_sweeps_total", &[("trigger", "signal")])
            .unwrap_or(0.0);
        if now == signal_sweeps {
            break;
        }
        signal_sweeps = now;
    }
    sc.iterations = 500;
    sc.check((1.0..=20.0).contains(&signal_sweeps), || {
        format!("{signal_sweeps} sweeps for 500 signals (coalesced?)")
    });
    let log = d.log_text();
    if let Some(l) = overlapping_sweeps(&log) {
        sc.violation(format!("two sweeps at once: {l}"));
    }
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
    sc.note(format!("500 SIGUSR1/2 -> {signal_sweeps} sweeps"));
}

fn sigterm_mid_deletion(sc: &mut Sc) {
    let s = Scratch::new();
    let fs = s.join("fs");
    // Each file takes a page on tmpfs: 30,000 units of five files need about 600 MiB.
    let on_tmpfs = Mounted::tmpfs(&fs, "size=1g,nr_inodes=1000000");
    let root = fs.join("local");
    let units = if on_tmpfs.is_some() {
        sc.size(30_000, 100_000)
    } else {
        8000
    };
    let rounds = 4;
    for round in 0..rounds {
        let mut oracle = Oracle::default();
        for m in 0..units as u64 {
            // Five files per unit (data, index, checksum and two in-progress names): more unlinks
            // per unit, a wider window for the grace to end inside one.
            let store = root.join(bm(&format!("{round}-{}", m % 8)));
            let mut u = unit_paths(&store, 1, m);
            u.push(store.join(format!(
                "3e/shuffle_1_{m}_0.data.d4b709a2-9f76-464d-83d2-3da158a06e{:02x}",
                m % 256
            )));
            u.push(store.join(format!(
                "3f/shuffle_1_{m}_0.index.d4b709a2-9f76-464d-83d2-3da158a06e{:02x}",
                m % 256
            )));
            write_unit(&u, 1, 48 * HOUR);
            oracle.unit(u, false);
        }
        let body = config_text(
            &[&root],
            "max_age = \"1h\"\nmin_age = \"1m\"\nskip_open_files = false\nstate_dir = \"\"",
        );
        let mut d = Daemon::start(s.path(), &body);
        // Wait until deletions are under way, then a varying delay.
        let probe = &oracle.units[0].files;
        let t = Instant::now();
        while oracle.units.iter().take(2000).all(|u| u.files[0].exists()) && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = probe;
        std::thread::sleep(Duration::from_millis(30 * round as u64));
        let stopped = d.stop(Duration::from_secs(5));
        sc.iterations += 1;
        match stopped {
            Some((took, status)) => {
                sc.check(took < Duration::from_secs(5), || format!("exit took {took:?}"));
                sc.check(status.success(), || format!("exit {status:?}"));
            }
            None => {
                sc.check(false, || {
                    format!("still running 5 s after SIGTERM:\n{}", d.log_tail(10))
                });
            }
        }
        oracle.tally(sc);
        // Leftovers under the private name would be units in part too.
        let leftovers = files_below(&root)
            .iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".shuffle-janitor-deleting."))
            })
            .count();
        if leftovers > 0 {
            sc.violation(format!("{leftovers} files left under the private name after SIGTERM"));
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// SIGHUP with dry_run = true during a long purge: the deletions stop.
fn dry_run_reload(sc: &mut Sc) {
    let s = Scratch::new();
    let fs = s.join("fs");
    let _m = Mounted::tmpfs(&fs, "size=512m,nr_inodes=1000000");
    let root = fs.join("local");
    let n = 40_000u64;
    let mut oracle = Oracle::default();
    for m in 0..n {
        let u = unit_paths(&root.join(bm(&format!("{}", m % 8))), 1, m);
        write_unit(&u, 1, 2 * HOUR);
        oracle.unit(u, false);
    }
    let purge = "max_age = \"6h\"\nmin_age = \"1m\"\ninterval = \"1h\"\nskip_open_files = false\n[watermark]\nhigh = 0.999\nlow = 0.000001";
    let mut d = Daemon::start(s.path(), &config_text(&[&root], purge));
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(30),
        |v| v >= 1.0,
    );
    d.signal(Signal::USR2);
    let t = Instant::now();
    while oracle.units.iter().take(4000).all(|u| u.files[0].exists()) && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    d.reload(&format!("dry_run = true\n{}", config_text(&[&root], purge)));
    d.wait_metric(
        "shuffle_janitor_config_last_reload_successful",
        &[],
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    std::thread::sleep(Duration::from_millis(300));
    let count = || oracle.units.iter().filter(|u| u.files[0].exists()).count();
    let at_reload = count();
    std::thread::sleep(Duration::from_secs(3));
    let later = count();
    sc.iterations = 1;
    sc.check(later == at_reload, || {
        format!("deletions went on after dry_run = true: {at_reload} -> {later} units")
    });
    sc.check(later > 0, || {
        "the purge finished before the reload: make it longer".into()
    });
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
    sc.note(format!("{} of {n} units left when dry_run took over", later));
}
