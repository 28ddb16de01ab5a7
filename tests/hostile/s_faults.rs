//! Scenario 3, faults mid-sweep: EACCES (as root and as nobody), EROFS (the root's tmpfs
//! remounted read-only during a deletion run), ENOENT (stores and NN directories removed during
//! the walk), ENOSPC (the daemon on a full filesystem), a root that disappears and is mounted
//! again, and a root not mounted yet at start. Each error counted by operation, logged once with
//! its path, the sweep going on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("faults_eacces_as_nobody", eacces_nobody),
    ("faults_erofs_remount_mid_deletion", erofs),
    ("faults_enoent_removed_during_walk", enoent),
    ("faults_enoent_dirs_flapping", enoent_flapping),
    ("faults_enospc_daemon_keeps_serving", enospc),
    ("faults_root_unmounted_and_back", root_cycle),
    ("faults_fd_shortage_ulimit_20", fd_shortage),
];

fn mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
}

fn count_warns(stderr: &str, op: &str) -> usize {
    stderr
        .lines()
        .filter(|l| {
            l.contains("WARN") && l.contains(&format!("op={op}"))
                || l.contains("WARN") && l.contains(&format!("op=\"{op}\""))
        })
        .count()
}

fn eacces_nobody(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("needs root to hand the tree to another user (setpriv)");
    }
    let s = Scratch::new();
    mode(s.path(), 0o755);
    let root = s.join("local");
    let mut oracle = Oracle::default();
    // A store with an NN mode 000 (its units kept whole), a store mode 000, a spark-* dir mode
    // 000, and stores beside them that are swept.
    let split = vec![
        root.join(format!("{}/0a/shuffle_1_1_0.data", bm("x"))),
        root.join(format!("{}/1b/shuffle_1_1_0.index", bm("x"))),
    ];
    write_unit(&split, 10, 48 * HOUR);
    oracle.unit(split, true);
    let closed_store = unit_paths(&root.join(bm("closed")), 1, 2);
    write_unit(&closed_store, 10, 48 * HOUR);
    oracle.unit(closed_store, true);
    let closed_scratch = unit_paths(&root.join(format!("spark-closed/{}", bm("y"))), 1, 3);
    write_unit(&closed_scratch, 10, 48 * HOUR);
    oracle.unit(closed_scratch, true);
    let mut swept = Vec::new();
    for st in [bm("a"), bm("z"), format!("spark-a/{}", bm("b"))] {
        let u = unit_paths(&root.join(st), 1, 4);
        write_unit(&u, 10, 48 * HOUR);
        swept.push(oracle.unit(u, false));
    }
    assert!(sh(&format!("chown -R 65534:65534 '{}'", root.display())));
    mode(&root.join(bm("x")).join("1b"), 0);
    mode(&root.join(bm("closed")), 0);
    mode(&root.join("spark-closed"), 0);
    let cfg = s.join("c.toml");
    std::fs::write(
        &cfg,
        config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\nskip_open_files = false"),
    )
    .unwrap();
    mode(&cfg, 0o644);
    let (code, report, err) = sweep_via(
        "setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all",
        &cfg,
    );
    mode(&root.join(bm("x")).join("1b"), 0o755);
    mode(&root.join(bm("closed")), 0o755);
    mode(&root.join("spark-closed"), 0o755);
    sc.iterations = 1;
    sc.check(code == 1, || format!("exit {code} (errors must make it 1): {err}"));
    let walk = jnum(&report, &["errors_by_op", "walk"]);
    sc.check(walk == 3, || format!("walk errors {walk}, expected 3: {report}"));
    sc.check(jnum(&report, &["skipped", "incomplete"]) == 1, || {
        format!("{}", report["skipped"])
    });
    let warns = count_warns(&err, "walk");
    sc.check(warns == 1, || {
        format!("{warns} warn lines for walk errors (logged once with its path):\n{err}")
    });
    sc.check(err.contains("1b") || err.contains("closed"), || {
        format!("the path is not logged:\n{err}")
    });
    for i in swept {
        let ok = oracle.units[i].files.iter().all(|p| !p.exists());
        sc.check(ok, || "the sweep did not go on past EACCES".into());
    }
    oracle.tally(sc);
}

fn erofs(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("fs");
    let Some(_fs) = Mounted::tmpfs(&root, "size=256m,nr_inodes=400000") else {
        return sc.skip("needs root to mount and remount a tmpfs");
    };
    let units = sc.size(20_000, 100_000);
    let mut oracle = Oracle::default();
    let mut rng = Rng(7);
    for m in 0..units as u64 {
        let store = root.join(bm(&format!("{}", m % 8)));
        let u = unit_paths(&store, (m / 8) as u32, m);
        write_unit(&u, 1, 48 * HOUR);
        oracle.unit(u, false);
    }
    let _ = rng.next();
    let cfg = s.join("c.toml");
    std::fs::write(
        &cfg,
        config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\nskip_open_files = false"),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["sweep", "--format", "json", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Remount read-only as soon as deletions start, retrying while the janitor's write guard
    // holds it off (EBUSY).
    let t = Instant::now();
    let first_store = root.join(bm("0"));
    let start_files = files_below(&first_store).len();
    while files_below(&first_store).len() == start_files && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut attempts = 0;
    let ro = loop {
        attempts += 1;
        if sh(&format!("mount -o remount,ro '{}'", root.display())) {
            break true;
        }
        if t.elapsed() > Duration::from_secs(30) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = child.wait_with_output().unwrap();
    let (code, report, err) = parse_sweep(out);
    sc.iterations = attempts;
    sc.check(ro, || "never remounted read-only".into());
    sc.check(!err.contains("panicked"), || err.clone());
    let unlink = jnum(&report, &["errors_by_op", "unlink"]);
    let deleted = jnum(&report, &["deleted_files"]);
    // The write guard holds the remount off (EBUSY) while a store is being deleted in; when it
    // lands in between, what follows fails with EROFS, counted once.
    if deleted < units as u64 * 3 {
        sc.check(code == 1 && unlink >= 1, || {
            format!("EROFS not counted: exit {code}, unlink errors {unlink}")
        });
        let warns = count_warns(&err, "unlink");
        sc.check(warns == 1, || {
            format!(
                "{warns} warn lines for unlink errors:\n{}",
                err.lines().take(5).collect::<Vec<_>>().join("\n")
            )
        });
    }
    sh(&format!("mount -o remount,rw '{}'", root.display()));
    oracle.tally(sc);
    sc.note(format!(
        "read-only after {attempts} remount attempts, {deleted} files deleted before"
    ));
    // Read-only from the start of a sweep: every unit fails its write guard (EROFS), counted
    // under unlink, logged once, nothing deleted, the sweep goes on to the end.
    let mut oracle = Oracle::default();
    for m in 0..200u64 {
        let u = unit_paths(&root.join(bm(&format!("ro{}", m % 4))), 1, m);
        write_unit(&u, 1, 48 * HOUR);
        oracle.unit(u, true);
    }
    assert!(sh(&format!("mount -o remount,ro '{}'", root.display())));
    let (code, report, err) = sweep(&cfg, &[]);
    sh(&format!("mount -o remount,rw '{}'", root.display()));
    sc.iterations += 1;
    let unlink = jnum(&report, &["errors_by_op", "unlink"]);
    sc.check(code == 1 && unlink >= 1, || {
        format!("read-only root: exit {code}, unlink errors {unlink}: {err}")
    });
    let warns = count_warns(&err, "unlink");
    sc.check(warns == 1, || {
        format!("{warns} warn lines for EROFS (logged once):\n{err}")
    });
    oracle.tally(sc);
}

fn enoent(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let mut oracle = Oracle::default();
    let stores = 40;
    let mut attacked_stores = Vec::new();
    for st in 0..stores {
        let store = root.join(bm(&format!("{st:02}")));
        for m in 0..150u64 {
            let u = unit_paths(&store, 1, m);
            write_unit(&u, 1, 48 * HOUR);
            let i = oracle.unit(u, false);
            if st % 2 == 1 {
                oracle.units[i].attacked = true;
            }
        }
        if st % 2 == 1 {
            attacked_stores.push(store);
        }
    }
    let cfg = s.join("c.toml");
    std::fs::write(
        &cfg,
        config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\nskip_open_files = false"),
    )
    .unwrap();
    // An attacker removes NN dirs and whole stores (odd ones) while the sweep walks.
    let stop = Arc::new(AtomicBool::new(false));
    let st2 = stop.clone();
    let targets = attacked_stores.clone();
    let attacker = std::thread::spawn(move || {
        let mut rng = Rng(99);
        let mut n = 0u64;
        while !st2.load(Ordering::Relaxed) {
            let store = rng.pick(&targets);
            let victim: PathBuf = if rng.below(4) == 0 {
                store.clone()
            } else {
                store.join(format!("{:02x}", rng.below(64)))
            };
            if std::fs::remove_dir_all(&victim).is_ok() {
                n += 1;
            }
            std::thread::sleep(Duration::from_micros(300));
        }
        n
    });
    let (code, report, err) = sweep(&cfg, &[]);
    stop.store(true, Ordering::Relaxed);
    let removed = attacker.join().unwrap();
    sc.iterations = removed;
    sc.check(code == 0 || code == 1, || format!("exit {code}: {err}"));
    sc.check(!err.contains("panicked"), || err.clone());
    // Vanishing is not an error (ENOENT is fine).
    let errors = jnum(&report, &["errors"]);
    sc.check(errors == 0, || {
        format!(
            "{errors} errors for directories that vanished: {}",
            report["errors_by_op"]
        )
    });
    oracle.tally(sc);
    sc.note(format!("{removed} directories removed during the sweep"));
}

/// The narrow window of the scenario above, held open: empty stores and `NN` directories are
/// created and removed in a tight loop while sweeps read them, so that many are removed between
/// the sweep's open and its getdents (which then fails with ENOENT). Gone is not an error; the
/// units beside them go at the last sweep, whole.
fn enoent_flapping(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let mut oracle = Oracle::default();
    let mut flapping = Vec::new();
    for st in 0..8 {
        let store = root.join(bm(&format!("{st:02}")));
        let mut used = std::collections::BTreeSet::new();
        for m in 0..20u64 {
            let u = unit_paths(&store, 1, m);
            used.extend(u.iter().map(|p| p.parent().unwrap().to_owned()));
            write_unit(&u, 1, 48 * HOUR);
            oracle.unit(u, false);
        }
        // NN directories no unit of the store uses, and a whole store that comes and goes.
        let free = (0..64)
            .map(|n| store.join(format!("{n:02x}")))
            .filter(|d| !used.contains(d));
        flapping.extend(free);
        flapping.push(root.join(bm(&format!("flap{st}"))));
    }
    let cfg = s.join("c.toml");
    std::fs::write(
        &cfg,
        config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\nskip_open_files = false"),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flappers: Vec<_> = flapping
        .chunks(flapping.len().div_ceil(2))
        .map(|dirs| {
            let (dirs, stop) = (dirs.to_vec(), stop.clone());
            std::thread::spawn(move || {
                let mut cycles = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for d in &dirs {
                        if std::fs::create_dir(d).is_ok() && std::fs::remove_dir(d).is_ok() {
                            cycles += 1;
                        }
                    }
                }
                cycles
            })
        })
        .collect();
    for _ in 0..80 {
        let (code, report, err) = sweep(&cfg, &["--dry-run"]);
        sc.iterations += 1;
        let errors = jnum(&report, &["errors"]);
        let ok = sc.check(code == 0 && errors == 0, || {
            format!(
                "dry run: exit {code}, {errors} errors for directories that vanished: {}\n{err}",
                report["errors_by_op"]
            )
        });
        if !ok {
            break;
        }
    }
    let (code, report, err) = sweep(&cfg, &[]);
    stop.store(true, Ordering::Relaxed);
    let cycles: u64 = flappers.into_iter().map(|t| t.join().unwrap()).sum();
    sc.iterations += 1;
    let errors = jnum(&report, &["errors"]);
    sc.check(code == 0 && errors == 0, || {
        format!(
            "sweep while flapping: exit {code}, {errors} errors: {}\n{err}",
            report["errors_by_op"]
        )
    });
    // A store seen in part keeps its units (they may go whole or not at all while flapping);
    // once nothing flaps, a sweep deletes every one of them, whole.
    let (code, report, err) = sweep(&cfg, &[]);
    sc.check(code == 0 && jnum(&report, &["errors"]) == 0, || {
        format!("final sweep: exit {code}: {err}")
    });
    let left = oracle
        .units
        .iter()
        .filter(|u| u.files.iter().any(|p| exists(p)))
        .count();
    sc.check(left == 0, || format!("{left} expired units left once nothing flaps"));
    oracle.tally(sc);
    sc.note(format!("{cycles} directories created and removed under 81 sweeps"));
}

fn enospc(sc: &mut Sc) {
    let s = Scratch::new();
    let fs = s.join("fs");
    let Some(_fs) = Mounted::tmpfs(&fs, "size=16m") else {
        return sc.skip("needs root to mount a tmpfs");
    };
    let root = fs.join("local");
    let mut oracle = Oracle::default();
    // Units older than min_age but inside max_age: only pressure can take them.
    for m in 0..8u64 {
        let u = unit_paths(&root.join(bm("f")), 1, m);
        write_unit(&u, 1 << 20, 2 * HOUR);
        oracle.unit(u, false);
    }
    let young = unit_paths(&root.join(bm("f")), 2, 1);
    write_unit(&young, 1 << 20, Duration::ZERO);
    oracle.unit(young, true);
    let state = fs.join("state");
    let body = config_text(
        &[&root],
        &format!(
            "max_age = \"6h\"\nmin_age = \"1m\"\ninterval = \"2s\"\nstate_dir = {:?}\n[watermark]\nhigh = 0.9\nlow = 0.5\npoll = \"1s\"",
            state.display().to_string()
        ),
    );
    let mut d = Daemon::start(s.path(), &body);
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(10),
        |v| v >= 1.0,
    );
    // Fill the filesystem completely with something that is not Spark's.
    let _ = sh(&format!(
        "dd if=/dev/zero of='{}' bs=64k 2>/dev/null",
        fs.join("ballast").display()
    ));
    let avail = shuffle_janitor::disk::usage(&fs).map_or(1, |u| u.avail);
    sc.check(avail == 0, || format!("not full: {avail} bytes left"));
    let t = Instant::now();
    let mut served = 0;
    while t.elapsed() < Duration::from_secs(8) {
        if d.get("/metrics").is_some_and(|(s, _)| s == 200) {
            served += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sc.iterations = served;
    sc.check(served >= 60, || {
        format!("metrics answered {served} times in 8 s on a full filesystem")
    });
    let evicted = d
        .metric("shuffle_janitor_reclaimed_bytes_total", &[("reason", "pressure")])
        .unwrap_or(0.0);
    sc.check(evicted > 0.0, || {
        format!("nothing evicted on a full filesystem:\n{}", d.log_tail(15))
    });
    // The state file cannot be written on a full filesystem: said, not fatal.
    let _ = std::fs::remove_file(fs.join("ballast"));
    d.no_panic(sc);
    let stopped = d.stop(Duration::from_secs(6));
    sc.check(stopped.is_some(), || "no exit within 6 s".into());
    oracle.tally(sc);
}

fn root_cycle(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("needs root to mount");
    }
    let s = Scratch::new();
    let root = s.join("disk");
    let late = s.join("late");
    let body = config_text(
        &[&root, &late],
        "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\"\n[watermark]\nhigh = 0.99\nlow = 0.98\npoll = \"1s\"",
    );
    // `late` does not exist at start; `disk` is a tmpfs that goes and comes back.
    let m1 = Mounted::tmpfs(&root, "size=8m").unwrap();
    let mut oracle = Oracle::default();
    let first = unit_paths(&root.join(bm("1")), 1, 1);
    write_unit(&first, 10, 48 * HOUR);
    oracle.unit(first.clone(), false);
    let mut d = Daemon::start(s.path(), &body);
    d.wait_sweeps(2.0, Duration::from_secs(10));
    sc.check(!first[0].exists(), || "first mount not swept".into());
    drop(m1);
    std::thread::sleep(Duration::from_millis(1500));
    let _m2 = Mounted::tmpfs(&root, "size=8m").unwrap();
    let second = unit_paths(&root.join(bm("2")), 1, 1);
    write_unit(&second, 10, 48 * HOUR);
    let keep = unit_paths(&root.join(bm("2")), 1, 2);
    write_unit(&keep, 10, Duration::ZERO);
    oracle.unit(second.clone(), false);
    oracle.unit(keep, true);
    std::fs::create_dir_all(&late).unwrap();
    let _m3 = Mounted::tmpfs(&late, "size=8m").unwrap();
    let third = unit_paths(&late.join(bm("3")), 1, 1);
    write_unit(&third, 10, 48 * HOUR);
    oracle.unit(third.clone(), false);
    let t = Instant::now();
    while (second[0].exists() || third[0].exists()) && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    sc.iterations = 3;
    sc.check(!second[0].exists(), || {
        format!("the remounted root was not swept again:\n{}", d.log_tail(10))
    });
    sc.check(!third[0].exists(), || {
        format!("the root mounted late was not swept:\n{}", d.log_tail(10))
    });
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
}

fn fd_shortage(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let mut oracle = Oracle::default();
    for i in 0..300u64 {
        let u = unit_paths(&root.join(bm("fd")), 0, i);
        write_unit(&u, 10, 48 * HOUR);
        oracle.unit(u, false);
    }
    let cfg = s.join("c.toml");
    std::fs::write(
        &cfg,
        config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\nskip_open_files = false"),
    )
    .unwrap();
    for n in [12, 16, 20, 24, 32] {
        sc.iterations += 1;
        let (code, _, err) = sweep_via(&format!("ulimit -n {n};"), &cfg);
        sc.check(!err.contains("panicked"), || format!("ulimit -n {n}: {err}"));
        sc.check(code == 0 || code == 1, || format!("ulimit -n {n}: exit {code}: {err}"));
    }
    oracle.tally(sc);
}
