//! The defects of the safety-defects and watch-defects issues, as scenarios with oracles, so that
//! none comes back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("regress_chattr_nn_dir", chattr_nn),
    ("regress_ro_bind_nn_and_file_over_index", ro_bind),
    ("regress_protect_pattern_shapes", protect_shapes),
    ("regress_root_shapes", root_shapes),
    ("regress_units_renamed_in_during_purge", renamed_in_purge),
    ("regress_root_recreated_within_poll", root_recreated),
    ("regress_mv_executor_then_new_one", mv_executor),
    ("regress_mmap_with_fd_closed", mmapped),
    ("regress_young_writer_no_pressure_storm", young_writer),
];

fn two_nn_unit(store: &Path, m: u64, age: Duration) -> Vec<PathBuf> {
    let f = vec![
        store.join(format!("0a/shuffle_1_{m}_0.data")),
        store.join(format!("1b/shuffle_1_{m}_0.index")),
    ];
    write_unit(&f, 10, age);
    f
}

fn chattr_nn(sc: &mut Sc) {
    for attr in ["i", "a"] {
        let s = Scratch::new();
        let root = s.join("local");
        let mut oracle = Oracle::default();
        let u = two_nn_unit(&root.join(bm("c")), 1, 48 * HOUR);
        oracle.unit(u, true);
        let other = unit_paths(&root.join(bm("d")), 1, 1);
        write_unit(&other, 10, 48 * HOUR);
        oracle.unit(other.clone(), false);
        let Some(_undo) = Chattr::set(&root.join(bm("c")).join("1b"), attr, sc.name) else {
            return sc.skip("chattr is not supported here");
        };
        let cfg = s.join("c.toml");
        std::fs::write(&cfg, config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"")).unwrap();
        sc.iterations += 1;
        let (code, report, err) = sweep(&cfg, &[]);
        sc.check(code == 1 && jnum(&report, &["errors_by_op", "unlink"]) == 1, || {
            format!("chattr +{attr}: exit {code}: {report} {err}")
        });
        // The daemon too.
        let mut d = Daemon::start(
            s.path(),
            &config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\""),
        );
        d.wait_sweeps(2.0, Duration::from_secs(10));
        sc.iterations += 1;
        d.no_panic(sc);
        let _ = d.stop(Duration::from_secs(5));
        oracle.tally(sc);
    }
}

fn ro_bind(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("needs root to mount");
    }
    let s = Scratch::new();
    let root = s.join("local");
    let mut oracle = Oracle::default();
    let u = two_nn_unit(&root.join(bm("ro")), 1, 48 * HOUR);
    oracle.unit(u, true);
    let nn = root.join(bm("ro")).join("1b");
    let ro = Mounted::bind(&nn, &nn, true);
    let cfg = s.join("c.toml");
    std::fs::write(&cfg, config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"")).unwrap();
    sc.iterations += 1;
    let _ = sweep(&cfg, &[]);
    let mut d = Daemon::start(
        s.path(),
        &config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\""),
    );
    d.wait_sweeps(2.0, Duration::from_secs(10));
    let _ = d.stop(Duration::from_secs(5));
    sc.iterations += 1;
    oracle.tally(sc);
    drop(ro);
    // A file bind-mounted over the .index.
    let mut oracle = Oracle::default();
    let u = two_nn_unit(&root.join(bm("busy")), 2, 48 * HOUR);
    oracle.unit(u.clone(), true);
    let elsewhere = s.join("outside/some-file");
    write_aged(&elsewhere, 10, 48 * HOUR);
    let _busy = Mounted::bind(&elsewhere, &u[1], false);
    oracle.victim(&s.join("outside"));
    sc.iterations += 1;
    let (code, report, _) = sweep(&cfg, &[]);
    sc.check(code == 1 && jnum(&report, &["errors_by_op", "unlink"]) == 1, || {
        format!("file over .index: exit {code}: {}", report["errors_by_op"])
    });
    let mut d = Daemon::start(
        s.path(),
        &config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\""),
    );
    d.wait_sweeps(2.0, Duration::from_secs(10));
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    sc.iterations += 1;
    oracle.tally(sc);
}

fn protect_shapes(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let r = root.display().to_string();
    let mut oracle = Oracle::default();
    let shapes = [
        ("keep1", format!("{r}/{}/", bm("keep1"))),
        ("keep2", format!("{r}//./{}", bm("keep2"))),
        ("keep3", format!("{r}/./{}/**", bm("keep3"))),
        ("keep4", format!("{r}//{}//0a/", bm("keep4"))),
    ];
    let mut protect = Vec::new();
    for (tag, pattern) in &shapes {
        let u = two_nn_unit(&root.join(bm(tag)), 1, 48 * HOUR);
        // keep4 protects only its 0a: the unit has a file there, so the whole unit stays.
        oracle.unit(u, true);
        protect.push(format!("{pattern:?}"));
    }
    let gone = two_nn_unit(&root.join(bm("other")), 1, 48 * HOUR);
    oracle.unit(gone, false);
    let body = config_text(
        &[&root],
        &format!(
            "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\"\nprotect = [{}]",
            protect.join(", ")
        ),
    );
    let cfg = s.join("c.toml");
    std::fs::write(&cfg, &body).unwrap();
    sc.iterations += 1;
    let (code, report, err) = sweep(&cfg, &["--purge"]);
    sc.check(code == 0, || format!("exit {code}: {err}"));
    sc.check(jnum(&report, &["skipped", "protected"]) == 8, || {
        format!("{}", report["skipped"])
    });
    let mut d = Daemon::start(s.path(), &body);
    d.wait_sweeps(2.0, Duration::from_secs(10));
    d.signal(Signal::USR2);
    d.wait_sweeps(1.0, Duration::from_secs(10));
    sc.iterations += 2;
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
}

fn root_shapes(sc: &mut Sc) {
    let s = Scratch::new();
    let base = s.join("local");
    let mut oracle = Oracle::default();
    let store = base.join(format!("spark-1/executor-2/{}", bm("s")));
    let a = two_nn_unit(&store, 1, 48 * HOUR);
    let a_young = two_nn_unit(&store, 2, Duration::ZERO);
    oracle.unit(a, false);
    oracle.unit(a_young, true);
    let b = two_nn_unit(&base.join(format!("spark-3/executor-4/{}", bm("t"))), 1, 48 * HOUR);
    oracle.unit(b, false);
    // A root naming a store, a root nested in another's layout, a spark-* dir as a root.
    for roots in [
        vec![store.clone()],
        vec![base.join("spark-1"), base.clone()],
        vec![base.join("spark-3")],
    ] {
        let refs: Vec<&Path> = roots.iter().map(PathBuf::as_path).collect();
        let cfg = s.join("c.toml");
        std::fs::write(&cfg, config_text(&refs, "max_age = \"1h\"\nmin_age = \"1m\"")).unwrap();
        sc.iterations += 1;
        let (code, _, err) = sweep(&cfg, &[]);
        sc.check(code == 0, || format!("{roots:?}: exit {code}: {err}"));
    }
    oracle.tally(sc);
    let deleted = sc.deletions;
    sc.check(deleted == 4, || format!("{deleted} files deleted, expected 4"));
    let cfg = s.join("star.toml");
    std::fs::write(&cfg, config_text(&[&base.join("**")], "")).unwrap();
    let (code, _, _) = sweep(&cfg, &[]);
    sc.check(code == 2, || "roots with ** accepted".into());
}

/// Units renamed into a root during a purge: the second pass deletes only what the first counted,
/// and `tracked_files` never wraps.
fn renamed_in_purge(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let stage = s.join("stage");
    let mut oracle = Oracle::default();
    for m in 0..3000u64 {
        let u = unit_paths(&root.join(bm("p")), 1, m);
        write_unit(&u, 1, 2 * HOUR);
        oracle.unit(u, false);
    }
    let body = config_text(
        &[&root],
        "max_age = \"6h\"\nmin_age = \"1m\"\ninterval = \"1h\"\n[watermark]\nhigh = 0.99\nlow = 0.000001",
    );
    let d = Daemon::start(s.path(), &body);
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(10),
        |v| v >= 1.0,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let (r2, stage2) = (root.clone(), stage.clone());
    let mover = std::thread::spawn(move || {
        let mut moved = Vec::new();
        let mut m = 10_000u64;
        while !st.load(Ordering::Relaxed) {
            // Young units renamed in: a purge must never take them (younger than min_age).
            let u = unit_paths(&r2.join(bm("p")), 2, m);
            move_in(&u, 1, Duration::ZERO, &stage2);
            moved.push(u);
            m += 1;
        }
        moved
    });
    d.signal(Signal::USR2);
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "signal")],
        Duration::from_secs(30),
        |v| v >= 1.0,
    );
    stop.store(true, Ordering::Relaxed);
    for u in mover.join().unwrap() {
        oracle.unit(u, true);
    }
    sc.iterations = 1;
    let text = d.metrics();
    for line in text.lines().filter(|l| l.starts_with("shuffle_janitor_tracked_files")) {
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        sc.check((0.0..1e12).contains(&v), || format!("tracked_files wrapped: {line}"));
    }
    oracle.tally(sc);
}

/// A root removed and made again between two usage polls: reads there must keep the unit.
fn root_recreated(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let body = config_text(
        &[&root],
        "max_age = \"12s\"\nmin_age = \"1s\"\ninterval = \"1s\"\nage_basis = [\"mtime\"]\n[watermark]\nhigh = 0.99\nlow = 0.98\npoll = \"5s\"",
    );
    let d = Daemon::start(s.path(), &body);
    d.wait_sweeps(1.0, Duration::from_secs(10));
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let u = unit_paths(&root.join(bm("r")), 1, 1);
    write_unit(&u, 10, Duration::ZERO);
    // Read every 2 s for 20 s: used all along, so it must survive (mtime alone would let it go
    // at 12 s).
    let t = Instant::now();
    let mut ok = true;
    while t.elapsed() < Duration::from_secs(20) {
        for f in &u {
            ok &= std::fs::read(f).is_ok();
        }
        sc.iterations += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut oracle = Oracle::default();
    oracle.unit(u, true);
    oracle.tally(sc);
    sc.check(ok, || "a read failed".into());
}

fn mv_executor(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let e1 = root.join("spark-1/executor-1");
    let u1 = unit_paths(&e1.join(bm("a")), 1, 1);
    write_unit(&u1, 10, Duration::ZERO);
    let body = config_text(
        &[&root],
        "max_age = \"12s\"\nmin_age = \"1s\"\ninterval = \"1s\"\nage_basis = [\"mtime\"]",
    );
    let d = Daemon::start(s.path(), &body);
    d.wait_sweeps(1.0, Duration::from_secs(10));
    std::fs::rename(&e1, root.join("spark-1/executor-2")).unwrap();
    let moved: Vec<PathBuf> = u1
        .iter()
        .map(|p| PathBuf::from(p.to_string_lossy().replace("executor-1", "executor-2")))
        .collect();
    let u2 = unit_paths(&e1.join(bm("b")), 1, 2);
    write_unit(&u2, 10, Duration::ZERO);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        for f in moved.iter().chain(&u2) {
            let _ = std::fs::read(f);
        }
        sc.iterations += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut oracle = Oracle::default();
    oracle.unit(moved, true);
    oracle.unit(u2, true);
    oracle.tally(sc);
    let _ = d;
}

/// A map output mmap'ed by a process that closed its fd: in use (kept by skip_open_files).
fn mmapped(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let u = unit_paths(&root.join(bm("mm")), 1, 1);
    write_unit(&u, 8192, 48 * HOUR);
    // A child process maps the .data, closes the fd, and sleeps.
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            // ctypes: Python's own mmap keeps a dup of the fd, which /proc/PID/fd would show.
            "import ctypes,os,time\nlibc=ctypes.CDLL(None)\nlibc.mmap.restype=ctypes.c_void_p\nlibc.mmap.argtypes=[ctypes.c_void_p,ctypes.c_size_t,ctypes.c_int,ctypes.c_int,ctypes.c_int,ctypes.c_long]\nf=os.open({:?},os.O_RDONLY)\np=libc.mmap(None,8192,1,1,f,0)\nassert p not in (None,ctypes.c_void_p(-1).value)\nos.close(f)\nprint('mapped',flush=True)\ntime.sleep(60)",
            u[0].display().to_string()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(ref mut child) = child else {
        return sc.skip("python3 is missing");
    };
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    // Re-age: mapping read the file (atime).
    for f in &u {
        set_age(f, 48 * HOUR);
    }
    let cfg = s.join("c.toml");
    std::fs::write(&cfg, config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"")).unwrap();
    sc.iterations = 1;
    let _ = sweep(&cfg, &[]);
    let mut oracle = Oracle::default();
    oracle.unit(u, true);
    oracle.tally(sc);
    let _ = child.kill();
    let _ = child.wait();
}

/// A writer adds a unit every 0.2 s while everything is young and the filesystem is above high:
/// the back-off holds (no pressure sweep per file).
fn young_writer(sc: &mut Sc) {
    let s = Scratch::new();
    let fs = s.join("fs");
    let Some(_m) = Mounted::tmpfs(&fs, "size=16m") else {
        return sc.skip("needs root to mount a tmpfs");
    };
    let root = fs.join("local");
    // Young data over high: nothing may go, pressure is unmet.
    for m in 0..14u64 {
        write_unit(&unit_paths(&root.join(bm("y")), 1, m), 1 << 20, Duration::ZERO);
    }
    let body = config_text(
        &[&root],
        "max_age = \"6h\"\nmin_age = \"10m\"\ninterval = \"1h\"\n[watermark]\nhigh = 0.8\nlow = 0.5\npoll = \"1s\"",
    );
    let d = Daemon::start(s.path(), &body);
    std::thread::sleep(Duration::from_secs(2));
    let before = d
        .metric("shuffle_janitor_sweeps_total", &[("trigger", "pressure")])
        .unwrap_or(0.0);
    let t = Instant::now();
    let mut m = 100;
    let mut oracle = Oracle::default();
    while t.elapsed() < Duration::from_secs(10) {
        let u = unit_paths(&root.join(bm("y")), 2, m);
        write_unit(&u, 4096, Duration::ZERO);
        oracle.unit(u, true);
        m += 1;
        sc.iterations += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = d
        .metric("shuffle_janitor_sweeps_total", &[("trigger", "pressure")])
        .unwrap_or(0.0);
    // 30 s back-off: at most one more pressure sweep in 10 s (none is owed).
    let files = sc.iterations;
    sc.check(after - before <= 1.0, || {
        format!("{} pressure sweeps for {files} new files in 10 s", after - before)
    });
    sc.note(format!("{} pressure sweeps during 10 s of writes", after - before));
    oracle.tally(sc);
}
