//! The index's defects of issue 22 ("The index loses events in five ways"), as scenarios with
//! oracles: what the watch lost must never let a sweep delete part of a unit, or stop the TTL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("index_overflow_during_sweep", overflow_during_sweep),
    ("index_overflow_unread_during_sweep", overflow_unread_during_sweep),
    ("index_nn_renamed_over_another", nn_renamed_over),
    ("index_reload_drops_root_during_walk", reload_during_walk),
    ("index_state_future_open_huge_file_lock", state_file),
    ("index_12000_stores_loop_free", many_stores),
    ("index_nn_moved_out_store_read_again", nn_moved_out),
    ("index_nn_churn_slots_reused", nn_churn),
];

/// `.data` and `.index` of map output `shuffle_0_M_0` in `store`, and where its checksum goes.
fn map_output(store: &Path, m: u64) -> (Vec<PathBuf>, PathBuf) {
    let [data, index, sum] = unit_paths(store, 0, m).try_into().expect("three files");
    (vec![data, index], sum)
}

/// Item 1: an overflow while a sweep deletes. Thousands of one-hour-old map outputs (their
/// timestamps prove them unread: the TTL takes them) are moved in and a sweep is asked for; once
/// it deletes, a burst of opens overflows the queue, and then each unit still whole gets a fresh
/// `.checksum.ADLER32`. After the overflow the watch watches nothing until the walk that follows
/// it: a sweep that goes on deciding deletes the `.data` and `.index` of units whose newest file
/// is seconds old. The daemon is stopped while the checksums are written, so the sweep cannot
/// race the writer: whatever it deletes of those units afterwards, it deleted blind.
fn overflow_during_sweep(sc: &mut Sc) {
    overflow_during(sc, false)
}

/// The same, with the overflow still unread when the daemon goes on: the burst and the
/// checksums come while it is stopped, so its queue ends in the overflow behind a thousand
/// events when the sweep resumes, and the sweep must not delete until the watch has read it.
/// Only the unit the sweep was deleting when it was stopped may go (it was checked before
/// its checksum came: the race any deleter has with a writer).
fn overflow_unread_during_sweep(sc: &mut Sc) {
    overflow_during(sc, true)
}

fn overflow_during(sc: &mut Sc, unread: bool) {
    if !is_root() {
        return sc.skip("needs root to mount a tmpfs and set fs.inotify.max_queued_events");
    }
    let s = Scratch::new();
    let fs = s.join("t");
    let _mnt = Mounted::tmpfs(&fs, "size=512m").unwrap();
    let root = fs.join("local");
    std::fs::create_dir_all(&root).unwrap();
    // Files to open in the burst (young: they stay).
    let burst: Vec<PathBuf> = (0..3000u64)
        .map(|m| {
            root.join(bm("burst"))
                .join(format!("{:02x}/shuffle_9_{m}_0.data", m % 64))
        })
        .collect();
    for p in &burst {
        write_aged(p, 1, Duration::ZERO);
    }
    let n = sc.size(20_000, 20_000) as u64;
    let staged = fs.join("stage").join(bm("old"));
    let units: Vec<(Vec<PathBuf>, PathBuf)> = (0..n)
        .map(|m| {
            let (files, sum) = map_output(&staged, m);
            write_unit(&files, 10, HOUR);
            let moved = |p: &PathBuf| root.join(bm("old")).join(p.strip_prefix(&staged).unwrap());
            (files.iter().map(moved).collect(), moved(&sum))
        })
        .collect();
    // Unread, the overflow sits behind the whole queue: a long one, for the sweep to have time
    // to go on blind while the watch reads its way to it.
    let queue = if unread { 16384 } else { 1024 };
    let _q = Sysctl::set("fs.inotify.max_queued_events", &queue.to_string()).unwrap();
    let body = config_text(
        &[&root],
        "max_age = \"30m\"\nmin_age = \"60s\"\ninterval = \"1h\"\nstate_dir = \"\"\n[watermark]\nhigh = 0.99\nlow = 0.98",
    );
    let d = Daemon::start(s.path(), &body);
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    std::fs::rename(&staged, root.join(bm("old"))).unwrap();
    let indexed = d.wait_metric("shuffle_janitor_index_units", &[], Duration::from_secs(30), |v| {
        v >= (n + 3000) as f64
    });
    sc.check(indexed.is_some_and(|v| v >= (n + 3000) as f64), || {
        format!("the store moved in is not indexed: {indexed:?}")
    });
    d.signal(Signal::USR1);
    let t = Instant::now();
    while units.iter().all(|(f, _)| exists(&f[0])) {
        if t.elapsed() > Duration::from_secs(30) {
            sc.check(false, || format!("the sweep deleted nothing:\n{}", d.log_tail(30)));
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The burst, while the daemon cannot drain its queue: it overflows.
    d.signal(Signal::STOP);
    for _ in 0..queue / 1000 {
        for p in &burst {
            let _ = std::fs::File::open(p);
        }
    }
    if !unread {
        d.signal(Signal::CONT);
        std::thread::sleep(Duration::from_millis(300));
        d.signal(Signal::STOP);
    }
    let mut oracle = Oracle::default();
    for (files, sum) in &units {
        if files.iter().all(|p| exists(p)) {
            write_aged(sum, 16, Duration::ZERO);
            let mut all = files.clone();
            all.push(sum.clone());
            oracle.unit(all, true);
        }
    }
    let fresh = oracle.units.len();
    d.signal(Signal::CONT);
    // The sweep ends (abandoned, or having gone on), the walk reads the store again, and the
    // sweep that follows takes what is old: not these.
    let t = Instant::now();
    let mut last = d.sweeps();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(4) && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
        let now = d.sweeps();
        if now != last {
            last = now;
            quiet = Instant::now();
        }
    }
    let overflows = d.metric("shuffle_janitor_inotify_overflows_total", &[]).unwrap_or(0.0);
    sc.check(overflows >= 1.0, || {
        "no overflow: the test did not overflow the queue".into()
    });
    sc.check(fresh > 0, || {
        "the sweep finished before the burst: no unit left to attack".into()
    });
    sc.iterations = 1;
    if unread {
        let hit: Vec<&OUnit> = oracle
            .units
            .iter()
            .filter(|u| u.files.iter().any(|p| !exists(p)))
            .collect();
        sc.judged += oracle.units.iter().map(|u| u.files.len() as u64).sum::<u64>();
        sc.deletions += hit
            .iter()
            .map(|u| u.files.iter().filter(|p| !exists(p)).count() as u64)
            .sum::<u64>();
        if hit.len() > 1 {
            for u in &hit {
                sc.violation(format!("deleted blind after the overflow: {}", u.files[0].display()));
            }
        }
        sc.note(format!(
            "{} unit(s) with a fresh checksum lost files (1 may: in flight)",
            hit.len()
        ));
    } else {
        oracle.tally(sc);
    }
    sc.note(format!(
        "{fresh} of {n} units given a fresh checksum after the overflow; {} postponed, {overflows} overflows",
        d.metric("shuffle_janitor_sweeps_postponed_total", &[("reason", "events_lost")])
            .unwrap_or(0.0)
    ));
    d.no_panic(sc);
}

/// Item 2: `rename(X/0a, Y/0a)` over Y's empty `0a`. The replaced directory's `IN_DELETE_SELF`
/// comes after the `IN_MOVED_TO`: it must not clear the slot the new `0a` took. Then a map output
/// of Y, an old `.index` moved into `1b` and a `.data` moved into `0a` anew every second (written
/// beside and renamed in, as a writer's temporary file is, without an open in `0a`): its newest
/// file is a second old, so nothing of it may go.
fn nn_renamed_over(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("needs root to mount a tmpfs");
    }
    let s = Scratch::new();
    let fs = s.join("t");
    let _mnt = Mounted::tmpfs(&fs, "size=64m").unwrap();
    let root = fs.join("local");
    let (x, y) = (root.join(bm("x")), root.join(bm("y")));
    for d in [x.join("0a"), y.join("0a"), y.join("1b")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let body = config_text(
        &[&root],
        "max_age = \"6s\"\nmin_age = \"1s\"\ninterval = \"1s\"\nstate_dir = \"\"\n[watermark]\nhigh = 0.99\nlow = 0.98\npoll = \"500ms\"",
    );
    let d = Daemon::start(s.path(), &body);
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    std::fs::rename(x.join("0a"), y.join("0a")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let data = y.join("0a/shuffle_0_1_0.data");
    let index = y.join("1b/shuffle_0_1_0.index");
    let stage = fs.join("stage");
    move_in(std::slice::from_ref(&data), 100, Duration::ZERO, &stage);
    move_in(std::slice::from_ref(&index), 16, HOUR, &stage);
    let mut oracle = Oracle::default();
    oracle.unit(vec![data.clone(), index.clone()], true);
    // Three times max_age, the .data renewed every second.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(18) {
        move_in(std::slice::from_ref(&data), 100, Duration::ZERO, &stage);
        sc.iterations += 1;
        if !index.exists() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    oracle.tally(sc);
    // Both stores are watched whole again (X was read again: its 0a moved away).
    let unwatched = d.metric("shuffle_janitor_unwatched_dirs", &[]);
    let active = d.metric("shuffle_janitor_inotify_active", &[]);
    sc.check(unwatched == Some(0.0) && active == Some(1.0), || {
        format!(
            "unwatched_dirs {unwatched:?}, inotify_active {active:?}:\n{}",
            d.log_tail(20)
        )
    });
    d.no_panic(sc);
}

/// Item 3: a reload removes a root while the startup walk reads it. The walk must add nothing of
/// it after the reload (stores nobody sweeps, whose units, once written to, wait for a refresh
/// that never comes), and the sweeps of the remaining root must go on: a stale unit moved into it
/// afterwards goes within a few intervals.
fn reload_during_walk(sc: &mut Sc) {
    let s = Scratch::new();
    // On a tmpfs when it can be had: 80,000 names are made in a moment there.
    let _mnt = Mounted::tmpfs(&s.join("t"), "size=256m");
    let (a, b) = (s.join("t/a"), s.join("t/b"));
    std::fs::create_dir_all(&b).unwrap();
    let stores = sc.size(400, 2000) as u64;
    let one = s.join("t/one");
    std::fs::write(&one, b"x").unwrap();
    for st in 0..stores {
        for m in 0..100u64 {
            // Hard links to one file: the walk stats 80,000 names without as many inodes.
            for (i, p) in unit_paths(&a.join(bm(&format!("a{st}"))), 0, m)
                .iter()
                .take(2)
                .enumerate()
            {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                if i == 0 || m % 2 == 0 {
                    std::fs::hard_link(&one, p).unwrap();
                }
            }
        }
    }
    let rules =
        "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\"\nstate_dir = \"\"\n[watermark]\nhigh = 0.99\nlow = 0.98";
    let d = Daemon::start(s.path(), &config_text(&[&a, &b], rules));
    d.reload(&config_text(&[&b], rules));
    // The walk ends, and a write in each of A's stores touches a unit (of an orphan store, if
    // the walk added any).
    std::thread::sleep(Duration::from_secs(4));
    for st in 0..stores {
        let p = &unit_paths(&a.join(bm(&format!("a{st}"))), 0, 1)[0];
        let _ = std::fs::OpenOptions::new().append(true).open(p).map(|mut f| {
            use std::io::Write;
            f.write_all(b"y")
        });
    }
    let mut oracle = Oracle::default();
    let stale = unit_paths(&b.join(bm("b")), 0, 1);
    move_in(&stale, 10, 48 * HOUR, &s.join("t/stage"));
    oracle.unit(stale.clone(), false);
    let t = Instant::now();
    while stale.iter().any(|p| exists(p)) && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    sc.iterations = 1;
    sc.check(stale.iter().all(|p| !exists(p)), || {
        format!(
            "a stale unit of the remaining root stayed 15 s ({} sweeps postponed):\n{}",
            d.metric("shuffle_janitor_sweeps_postponed_total", &[("reason", "watch_behind")])
                .unwrap_or(0.0),
            d.log_tail(20)
        )
    });
    let units = d.metric("shuffle_janitor_index_units", &[]).unwrap_or(-1.0);
    sc.check(units == 0.0, || {
        format!("{units} units left in the index: the removed root's")
    });
    oracle.tally(sc);
    d.no_panic(sc);
}

/// Items 7 and 8, and the lock on `state_dir`: an open dated ten years ahead in `opens.json`
/// is restored as an open now (its stale unit goes once `max_age` has passed, not never); a
/// 100 MB state file is refused before it is read (the daemon's peak memory stays small); a
/// second daemon on the same `state_dir` refuses to start and names the first one's pid.
fn state_file(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let state = s.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let store = root.join(bm("f"));
    let stale = unit_paths(&store, 0, 1);
    write_unit(&stale, 10, 48 * HOUR);
    let mut oracle = Oracle::default();
    oracle.unit(stale.clone(), false);
    let ahead = (std::time::SystemTime::now() + 3650 * 24 * HOUR)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::fs::write(
        state.join("opens.json"),
        format!(
            "{{\"version\":1,\"written_at\":0,\"opens\":{{{:?}:[[\"shuffle_0_1_0\",{ahead}]]}}}}",
            store.display().to_string()
        ),
    )
    .unwrap();
    let rules = format!(
        "max_age = \"4s\"\nmin_age = \"1s\"\ninterval = \"1s\"\nstate_dir = {:?}\n[watermark]\nhigh = 0.99\nlow = 0.98",
        state.display().to_string()
    );
    let mut d = Daemon::start(s.path(), &config_text(&[&root], &rules));
    let t = Instant::now();
    while stale.iter().any(|p| exists(p)) && t.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(200));
    }
    sc.iterations += 1;
    sc.check(stale.iter().all(|p| !exists(p)), || {
        format!(
            "an open dated ten years ahead kept a stale unit 12 s (max_age 4 s):\n{}",
            d.log_tail(10)
        )
    });
    // A second daemon on the same state_dir.
    let port = free_port();
    let second = s.join("second.toml");
    std::fs::write(
        &second,
        format!(
            "{}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            config_text(&[&root], &rules)
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&second)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // One that starts runs until stopped: 5 s, then it is.
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    sc.iterations += 1;
    sc.check(
        !out.status.success() && err.contains(&format!("in use by another shuffle-janitor daemon (pid {})", d.pid())),
        || format!("a second daemon on the same state_dir: {:?}, {err}", out.status),
    );
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    // A huge state file: refused before it is read.
    let mut big = String::with_capacity(110 << 20);
    big.push_str("{\"version\":1,\"written_at\":0,\"opens\":{\"/nowhere/blockmgr-1\":[");
    for m in 0..3_000_000u64 {
        if m > 0 {
            big.push(',');
        }
        big.push_str(&format!("[\"shuffle_0_{m}_0\",1]"));
    }
    big.push_str("]}}");
    std::fs::write(state.join("opens.json"), &big).unwrap();
    drop(big);
    let d = Daemon::start(s.path(), &config_text(&[&root], &rules));
    let t = Instant::now();
    while !d.log_text().contains("opens.json") && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let hwm = d.hwm_kib();
    sc.iterations += 1;
    sc.check(d.log_text().contains("bytes, more than") && hwm < 100 * 1024, || {
        format!("a 100 MB state file: peak RSS {hwm} KiB:\n{}", d.log_tail(10))
    });
    sc.note(format!("peak RSS with a 100 MB state file: {} MiB", hwm / 1024));
    oracle.tally(sc);
}

/// Item 4: the startup walk of 12,000 stores, with `stuck_after` at 2 s. The loop must stay free
/// (it judges pressure, signals and the watch's news): `/-/healthy`, asked every 100 ms from the
/// start to a few seconds after the first sweep, never says the loop has not run. Applying a
/// full walk compared every store with every store found, on the loop, with the index locked (8.7 s
/// at 12,000 stores in a release build).
fn many_stores(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("needs root to mount a tmpfs");
    }
    let s = Scratch::new();
    let _mnt = Mounted::tmpfs(&s.join("t"), "size=256m,nr_inodes=0").unwrap();
    let root = s.join("t/local");
    let stores = sc.size(12_000, 12_000);
    for n in 0..stores {
        std::fs::create_dir_all(root.join(format!("blockmgr-{n:08x}-0000-4000-8000-{n:012x}/00"))).unwrap();
    }
    let rules = "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1h\"\nstate_dir = \"\"\nstuck_after = \"2s\"\n[stores]\nreap = false\n[watermark]\nhigh = 0.99\nlow = 0.98";
    let d = Daemon::start(s.path(), &config_text(&[&root], rules));
    let t = Instant::now();
    let mut swept_at: Option<Instant> = None;
    let mut stalls = Vec::new();
    while swept_at.is_none_or(|w| w.elapsed() < Duration::from_secs(4)) && t.elapsed() < Duration::from_secs(300) {
        if let Some((503, body)) = d.get("/-/healthy")
            && body.contains("loop has not run")
        {
            stalls.push(format!("{:.1}s: {}", t.elapsed().as_secs_f64(), body.trim()));
        }
        if swept_at.is_none() && d.sweeps() >= 1.0 {
            swept_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sc.iterations = 1;
    sc.check(swept_at.is_some(), || {
        format!("no sweep within 300 s of the start:\n{}", d.log_tail(10))
    });
    sc.check(stalls.is_empty(), || {
        format!(
            "the loop stalled during the startup walk of {stores} stores ({} answers of 503), first: {}",
            stalls.len(),
            stalls[0]
        )
    });
    sc.note(format!(
        "{stores} stores: first sweep {:.1} s after the start",
        swept_at.map_or(f64::NAN, |w| (w - t).as_secs_f64())
    ));
    d.no_panic(sc);
}

/// Item 6: one `NN` directory moved out of a store. The store is read again at the next sweep,
/// so a stale unit moved in afterwards goes within a few intervals (not at the full walk a day
/// later); but a unit whose `.data` went with the directory keeps its `.index` here, however old
/// it looks (made a day old after the move, without an open), through that read, a purge, and the
/// directory coming back: it is part of a unit. The read finds the store whole without the
/// directory (c4cd1fb read it and then let a purge take such an `.index`).
fn nn_moved_out(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let store = root.join(bm("m"));
    let (data, index) = (
        store.join("0a/shuffle_5_1_0.data"),
        store.join("1b/shuffle_5_1_0.index"),
    );
    write_unit(&[data.clone(), index.clone()], 10, Duration::ZERO);
    let mut oracle = Oracle::default();
    let rules =
        "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\"\nstate_dir = \"\"\n[watermark]\nhigh = 0.99\nlow = 0.98";
    let d = Daemon::start(s.path(), &config_text(&[&root], rules));
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    let away = s.join("0a-moved");
    std::fs::rename(store.join("0a"), &away).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    set_age(&index, 48 * HOUR);
    oracle.keep(index.clone());
    let stale = unit_paths(&store, 0, 1);
    move_in(&stale, 10, 48 * HOUR, &s.join("stage"));
    oracle.unit(stale.clone(), false);
    let t = Instant::now();
    while stale.iter().any(|p| exists(p)) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    sc.iterations += 1;
    sc.check(stale.iter().all(|p| !exists(p)), || {
        format!(
            "a stale unit stayed 10 s in a store an NN directory moved out of:\n{}",
            d.log_tail(10)
        )
    });
    // A purge, then the directory back (its unit whole again, and still kept: the daemon cannot
    // tell what happened to it while it was away).
    let n = d.sweeps();
    d.signal(Signal::USR2);
    d.wait_sweeps(n + 1.0, Duration::from_secs(10));
    sc.iterations += 1;
    std::fs::rename(&away, store.join("0a")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    sc.iterations += 1;
    oracle.unit(vec![data, index], true);
    oracle.tally(sc);
    d.no_panic(sc);
}

/// Item 5: `NN` directories created and removed over and over (90,000 in all, 2,000 at a time,
/// each seen by the watch), then a stale map output in a re-created `NN`: it goes within a few
/// intervals once the watch has drained its queue. Removed directories' slots were never reused:
/// past 65,536 a file in a new `NN` no longer fitted, and the store was not whole for good (a
/// rescan included).
fn nn_churn(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("needs root to mount a tmpfs and set fs.inotify.max_queued_events");
    }
    let s = Scratch::new();
    let _mnt = Mounted::tmpfs(&s.join("t"), "size=64m").unwrap();
    // No overflow: the events lost with it would leave directories unseen (no slot taken).
    let _q = Sysctl::set("fs.inotify.max_queued_events", "1048576").unwrap();
    let root = s.join("t/local");
    let store = root.join(bm("c"));
    std::fs::create_dir_all(store.join("00")).unwrap();
    let rules =
        "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\"\nstate_dir = \"\"\n[watermark]\nhigh = 0.99\nlow = 0.98";
    let d = Daemon::start(s.path(), &config_text(&[&root], rules));
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    let rounds = sc.size(45, 45) as u64;
    for r in 0..rounds {
        let names: Vec<PathBuf> = (0..2000u64)
            .map(|i| store.join(format!("{:05x}", r * 2000 + i + 0x100)))
            .collect();
        for p in &names {
            std::fs::create_dir(p).unwrap();
        }
        // Each one watched and listed before it goes (a directory gone first takes no slot).
        std::thread::sleep(Duration::from_millis(300));
        for p in &names {
            std::fs::remove_dir(p).unwrap();
        }
        sc.iterations += 1;
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut oracle = Oracle::default();
    let stale = vec![
        store.join("3e/shuffle_0_1_0.data"),
        store.join("00/shuffle_0_1_0.index"),
    ];
    move_in(&stale, 10, 48 * HOUR, &s.join("t/stage"));
    oracle.unit(stale.clone(), false);
    // The watch drains what the churn queued first (sweeps wait for it meanwhile).
    let t = Instant::now();
    while stale.iter().any(|p| exists(p)) && t.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(200));
    }
    sc.check(stale.iter().all(|p| !exists(p)), || {
        format!(
            "a stale unit stayed 40 s in a store after {} NN directories came and went:\n{}",
            rounds * 2000,
            d.log_tail(10)
        )
    });
    oracle.tally(sc);
    d.no_panic(sc);
}
