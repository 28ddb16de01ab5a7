//! Scenario 10, clock: the wall clock stepped forward and back by days under the daemon
//! (libfaketime, changed while it runs; the monotonic clock left alone), files dated in the future,
//! and a daemon restart while Spark reads its map outputs (state kept across restarts).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("clock_steps_under_the_daemon", clock_steps),
    ("clock_future_dated_files", future_files),
    ("clock_restart_while_read_relatime", |sc| restart_while_read(sc, false)),
    ("clock_restart_while_read_noatime", |sc| restart_while_read(sc, true)),
];

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

fn clock_steps(sc: &mut Sc) {
    if !Path::new(FAKETIME_LIB).exists() {
        return sc.skip("libfaketime is not installed (apt-get install faketime)");
    }
    let s = Scratch::new();
    let root = s.join("local");
    let mut oracle = Oracle::default();
    // Used ten minutes ago (TTL 1 h): any step forward by days makes them look stale.
    for m in 0..50u64 {
        let u = unit_paths(&root.join(bm("c")), 1, m);
        write_unit(&u, 10, 10 * MIN);
        oracle.unit(u, true);
    }
    // Dated in the future.
    for m in 0..10u64 {
        let u = unit_paths(&root.join(bm("f")), 1, m);
        write_unit(&u, 10, Duration::ZERO);
        for p in &u {
            let t = filetime::FileTime::from_unix_time(
                filetime::FileTime::now().unix_seconds() + 86_400 * (1 + m as i64 * 400),
                0,
            );
            filetime::set_file_times(p, t, t).unwrap();
        }
        oracle.unit(u, true);
    }
    let stale = unit_paths(&root.join(bm("c")), 2, 1);
    write_unit(&stale, 10, 48 * HOUR);
    oracle.unit(stale.clone(), false);
    let rc = s.join("faketime.rc");
    std::fs::write(&rc, "+0\n").unwrap();
    let env = [
        ("LD_PRELOAD", FAKETIME_LIB),
        ("FAKETIME_TIMESTAMP_FILE", rc.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    let body = config_text(
        &[&root],
        "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\"\n[watermark]\nhigh = 0.99\nlow = 0.98\npoll = \"1s\"",
    );
    let mut d = Daemon::start_with(s.path(), &body, &env, "");
    d.wait_sweeps(2.0, Duration::from_secs(10));
    sc.check(!stale[0].exists(), || {
        "the really stale unit was not deleted before the steps".into()
    });
    for step in ["+3d", "-2d", "+30d", "+0"] {
        std::fs::write(&rc, format!("{step}\n")).unwrap();
        let t = Instant::now();
        d.wait_sweeps(3.0, Duration::from_secs(15));
        sc.iterations += 1;
        let (j, gone) = oracle.verify(&mut Sc::new("probe", false));
        let _ = j;
        // Only the really stale unit may have gone.
        sc.check(gone <= stale.len() as u64, || {
            format!("after a step of {step}: {gone} files gone in {:?}", t.elapsed())
        });
    }
    let steps = d.metric("shuffle_janitor_clock_steps_total", &[]).unwrap_or(0.0);
    sc.check(steps >= 3.0, || format!("{steps} clock steps counted for 4 steps"));
    let logged = d
        .log_text()
        .lines()
        .filter(|l| l.contains("wall clock stepped"))
        .count();
    sc.check(logged >= 3, || format!("{logged} log lines about clock steps"));
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
    sc.note(format!("{steps} steps counted"));
}

fn future_files(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let mut oracle = Oracle::default();
    for (m, secs) in [86_400i64, 365 * 86_400, 100 * 365 * 86_400, 2_000_000_000]
        .iter()
        .enumerate()
    {
        let u = unit_paths(&root.join(bm("f")), 1, m as u64);
        write_unit(&u, 10, Duration::ZERO);
        for p in &u {
            let t = filetime::FileTime::from_unix_time(filetime::FileTime::now().unix_seconds() + secs, 0);
            filetime::set_file_times(p, t, t).unwrap();
        }
        oracle.unit(u, true);
    }
    let cfg = s.join("c.toml");
    std::fs::write(
        &cfg,
        config_text(
            &[&root],
            "max_age = \"1h\"\nmin_age = \"1m\"\n[watermark]\nhigh = 0.9\nlow = 0.0001",
        ),
    )
    .unwrap();
    for extra in [&[][..], &["--purge"][..]] {
        sc.iterations += 1;
        let (code, _, err) = sweep(&cfg, extra);
        sc.check(code == 0, || format!("exit {code}: {err}"));
    }
    let mut d = Daemon::start(
        s.path(),
        &config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\""),
    );
    d.wait_sweeps(2.0, Duration::from_secs(10));
    d.signal(rustix::process::Signal::USR2);
    d.wait_sweeps(1.0, Duration::from_secs(10));
    sc.iterations += 3;
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
}

/// A unit read every 4 s across a daemon restart (max_age 20 s): it must survive. On a relatime
/// directory (the machine's root filesystem) and on a noatime tmpfs, where only the watch and the
/// state kept across the restart know of the reads.
fn restart_while_read(sc: &mut Sc, noatime: bool) {
    let s = Scratch::new();
    let root = s.join("local");
    let _fs = if noatime {
        match Mounted::tmpfs(&root, "size=16m,noatime") {
            Some(m) => Some(m),
            None => return sc.skip("needs root to mount a noatime tmpfs"),
        }
    } else {
        None
    };
    let mut oracle = Oracle::default();
    let read = unit_paths(&root.join(bm("r")), 1, 1);
    write_unit(&read, 4096, 2 * HOUR);
    oracle.unit(read.clone(), true);
    let unread = unit_paths(&root.join(bm("r")), 1, 2);
    write_unit(&unread, 4096, 2 * HOUR);
    oracle.unit(unread.clone(), false);
    let state = s.join("state");
    let body = config_text(
        &[&root],
        &format!(
            "max_age = \"20s\"\nmin_age = \"1s\"\ninterval = \"1s\"\nstate_dir = {:?}",
            state.display().to_string()
        ),
    );
    let reader = {
        let read = read.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let mut n = 0;
            while t.elapsed() < Duration::from_secs(50) {
                for p in &read {
                    let _ = std::fs::read(p);
                }
                n += 1;
                std::thread::sleep(Duration::from_secs(4));
            }
            n
        })
    };
    let mut d = Daemon::start(s.path(), &body);
    std::thread::sleep(Duration::from_secs(14));
    let stopped = d.stop(Duration::from_secs(5));
    sc.check(stopped.is_some(), || "no exit after SIGTERM".into());
    std::thread::sleep(Duration::from_secs(2));
    let mut d = Daemon::start(s.path(), &body);
    let n = reader.join().unwrap();
    sc.iterations = n;
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
}
