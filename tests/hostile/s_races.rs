//! Scenario 1, races, continuous: while `sweep` runs in a loop (and then the daemon with a short
//! interval, under pressure), other threads keep swapping an `NN` directory, a store and a
//! directory on a store's path for symlinks to a victim tree and back (atomically, with
//! RENAME_EXCHANGE), replacing stale files with fresh inodes of the same name, renaming stale
//! files into fresh units, touching files of stale units and holding files of stale units open.
//! Victim trees must stay intact, no unit may be deleted in part, and every file the rules keep
//! at the moment the janitor decides must be there.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{CWD, RenameFlags};

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("races_daemon_nn_swapped_then_purge", nn_swapped_then_purge),
    ("races_sweep_loop", |sc| races(sc, false)),
    ("races_daemon_under_pressure", |sc| races(sc, true)),
];

/// The race the continuous scenario found, made deterministic: an `NN` directory exchanged for a
/// symlink (or moved away) while the daemon runs; a purge then; the directory back. The store
/// has an `NN` it cannot list: every unit of it must be kept whole (as `sweep` keeps them).
fn nn_swapped_then_purge(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let store = root.join(bm("s"));
    let unit = vec![
        store.join("0a/shuffle_1_1_0.data"),
        store.join("1b/shuffle_1_1_0.index"),
    ];
    write_unit(&unit, 10, 2 * HOUR);
    let victim = s.join("victim");
    write_aged(&victim.join("shuffle_1_1_0.data"), 10, 48 * HOUR);
    let link = s.join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let mut oracle = Oracle::default();
    oracle.unit(unit.clone(), true);
    oracle.victim(&victim);
    let body = config_text(
        &[&root],
        "max_age = \"6h\"\nmin_age = \"1m\"\ninterval = \"1h\"\nstate_dir = \"\"\n[watermark]\nhigh = 0.99\nlow = 0.000001",
    );
    let mut d = Daemon::start(s.path(), &body);
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(10),
        |v| v >= 1.0,
    );
    for how in ["symlink", "moved away"] {
        sc.iterations += 1;
        let nn = store.join("0a");
        let hold = s.join("hold-0a");
        if how == "symlink" {
            assert!(exchange(&nn, &link));
        } else {
            std::fs::rename(&nn, &hold).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        d.signal(rustix::process::Signal::USR2);
        d.wait_sweeps(1.0, Duration::from_secs(10));
        if how == "symlink" {
            assert!(exchange(&nn, &link));
        } else {
            std::fs::rename(&hold, &nn).unwrap();
        }
        if !unit[1].exists() {
            sc.violation(format!(
                "NN {how} during a purge: {} deleted, {} kept",
                unit[1].display(),
                unit[0].display()
            ));
            move_in(&unit[1..], 10, 2 * HOUR, &s.join("stage"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
}

/// Findings of the attacking threads (they run beside the scenario's own checks).
#[derive(Default)]
struct Findings {
    violations: Mutex<Vec<String>>,
    ops: AtomicU64,
}

impl Findings {
    fn violation(&self, s: String) {
        self.violations.lock().unwrap().push(s);
    }
}

/// Files held open by the attacker: (unit, opened at).
type Held = Arc<Mutex<BTreeMap<usize, Instant>>>;

fn exchange(a: &Path, b: &Path) -> bool {
    rustix::fs::renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).is_ok()
}

fn races(sc: &mut Sc, daemon: bool) {
    let s = Scratch::new();
    let secs = if sc.full { 60 } else { 10 };
    let fs = s.join("fs");
    let mounted = Mounted::tmpfs(&fs, "size=96m,nr_inodes=200000");
    if daemon && mounted.is_none() {
        return sc.skip("needs root to mount a tmpfs for pressure");
    }
    let root = fs.join("local");
    let stage = fs.join("stage");
    let victim = fs.join("victim"); // same filesystem, outside the root
    std::fs::create_dir_all(&stage).unwrap();
    // Victims: an NN-like dir, a store-like dir and a scratch-like dir full of stale Spark names.
    for m in 0..20u64 {
        write_aged(&victim.join(format!("nn/shuffle_3_{m}_0.data")), 64, 48 * HOUR);
        for p in unit_paths(&victim.join(format!("store/{}", bm("v"))), 3, m) {
            write_aged(&p, 64, 48 * HOUR);
        }
        for p in unit_paths(&victim.join(format!("scratch/spark-v/{}", bm("w"))), 3, m) {
            write_aged(&p, 64, 48 * HOUR);
        }
    }
    let other_fs = s.join("victim-ext4"); // another filesystem too
    for p in unit_paths(&other_fs.join(bm("x")), 4, 1) {
        write_aged(&p, 64, 48 * HOUR);
    }
    let mut oracle = Oracle::default();
    oracle.victim(&victim);
    oracle.victim(&other_fs);
    // Symlinks to the victims, ready to be exchanged with the real directories.
    let swaps: Vec<(PathBuf, PathBuf)> = vec![
        (root.join(format!("{}/0a", bm("swap"))), victim.join("nn")),
        (root.join(bm("swapstore")), victim.join(format!("store/{}", bm("v")))),
        (root.join("spark-swap"), victim.join("scratch/spark-v")),
        (root.join(format!("{}/0b", bm("swap"))), other_fs.join(bm("x"))),
    ];
    for (i, (real, target)) in swaps.iter().enumerate() {
        std::fs::create_dir_all(real).unwrap();
        std::os::unix::fs::symlink(target, root.join(format!("swap-link-{i}"))).unwrap();
    }
    let mut rng = Rng(0xdead_beef);
    // Stale units (may go, whole), young ones (must stay), and units for each attack.
    let stores = [
        bm("swap"),
        bm("swapstore"),
        format!("spark-swap/{}", bm("in")),
        bm("plain"),
        format!("spark-1/executor-1/{}", bm("e")),
    ];
    let units_per = if sc.full { 400 } else { 120 };
    let mut all = Vec::new();
    for (si, st) in stores.iter().enumerate() {
        for m in 0..units_per as u64 {
            let u = unit_paths(&root.join(st), si as u32, m);
            let young = m % 10 == 0;
            // Young (must stay), past min_age but inside max_age (pressure may take it), stale.
            let age = match m % 10 {
                0 => Duration::ZERO,
                5 => 30 * MIN,
                _ => 48 * HOUR + Duration::from_secs(rng.below(3600)),
            };
            write_unit(&u, 2048, age);
            all.push((oracle.unit(u, young), si, m));
        }
    }
    // Under pressure: ballast that is not Spark's holds the filesystem above high.
    if mounted.is_some() {
        let _ = sh(&format!(
            "dd if=/dev/zero of='{}' bs=1M count=60 2>/dev/null",
            fs.join("ballast").display()
        ));
    }
    let oracle = Arc::new(Mutex::new(oracle));
    let findings = Arc::new(Findings::default());
    let stop = Arc::new(AtomicBool::new(false));
    let held: Held = Arc::default();
    let mut threads = Vec::new();
    // 1. Exchanges with symlinks to victims, and back.
    {
        let (stop, f, root, swaps) = (stop.clone(), findings.clone(), root.clone(), swaps.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(1);
            while !stop.load(Ordering::Relaxed) {
                let i = rng.below(swaps.len() as u64) as usize;
                let link = root.join(format!("swap-link-{i}"));
                if exchange(&swaps[i].0, &link) {
                    std::thread::sleep(Duration::from_micros(rng.below(3000)));
                    assert!(exchange(&swaps[i].0, &link), "exchange back");
                    f.ops.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(rng.below(2000)));
            }
        }));
    }
    // 2. Stale files replaced by fresh inodes of the same name: the fresh inode must stay.
    // 3. A stale unit's file renamed into a fresh unit: the fresh unit must stay whole.
    // 4. Files of stale units touched: once a touch succeeded, the unit must stay whole.
    // 5. Files of stale units held open.
    let plain = root.join(bm("plain"));
    let attack_units: Vec<(usize, u64)> = all
        .iter()
        .filter(|(_, si, m)| *si == 3 && m % 10 != 0)
        .map(|(i, _, m)| (*i, *m))
        .collect();
    {
        let (stop, f, oracle, plain, stage) = (
            stop.clone(),
            findings.clone(),
            oracle.clone(),
            plain.clone(),
            stage.clone(),
        );
        let held = held.clone();
        let targets = attack_units.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(2);
            let mut fresh: BTreeMap<PathBuf, u64> = BTreeMap::new();
            let mut touched: Vec<usize> = Vec::new();
            let mut receiver = 0u64;
            let mut open: Vec<(usize, std::fs::File, Instant)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // Every fresh inode made so far must still be there.
                // (A deletion in flight may hold it under its private name for a moment before
                // putting it back: looked at again before it counts.)
                fresh.retain(|p, ino| {
                    let same = || std::fs::symlink_metadata(p).is_ok_and(|m| m.ino() == *ino);
                    if !same() {
                        std::thread::sleep(Duration::from_millis(100));
                        if !same() {
                            f.violation(format!("fresh inode deleted or replaced: {}", p.display()));
                            return false;
                        }
                    }
                    true
                });
                let &(ui, m) = rng.pick(&targets);
                let files = oracle.lock().unwrap().units[ui].files.clone();
                match rng.below(4) {
                    0 => {
                        // A fresh inode of the same name (renamed over the stale one).
                        let p = &files[rng.below(files.len() as u64) as usize];
                        if fresh.contains_key(p) || !p.exists() {
                            continue;
                        }
                        let tmp = stage.join("fresh");
                        std::fs::write(&tmp, b"fresh").unwrap();
                        let ino = std::fs::metadata(&tmp).unwrap().ino();
                        if std::fs::rename(&tmp, p).is_ok() {
                            fresh.insert(p.clone(), ino);
                            oracle.lock().unwrap().units[ui].attacked = true;
                        }
                    }
                    1 => {
                        // Into a fresh unit: shuffle_9_R_0 (young), given the stale checksum.
                        let from = &files[2];
                        // (A fresh inode given away is no longer the attacker's to check there.)
                        fresh.remove(from);
                        let young = unit_paths(&plain, 9, receiver);
                        receiver += 1;
                        write_unit(&young[..2], 100, Duration::ZERO);
                        let ok = std::fs::rename(from, &young[2]).is_ok();
                        let mut o = oracle.lock().unwrap();
                        o.units[ui].attacked = true;
                        o.units[ui].must_survive = false;
                        let files = if ok { young } else { young[..2].to_vec() };
                        o.unit(files, true);
                    }
                    2 => {
                        // Touched: a use now.
                        let p = &files[rng.below(files.len() as u64) as usize];
                        let now = filetime::FileTime::now();
                        if filetime::set_file_mtime(p, now).is_ok() {
                            touched.push(ui);
                            let mut o = oracle.lock().unwrap();
                            if !o.units[ui].attacked {
                                o.units[ui].must_survive = true;
                            }
                        }
                    }
                    _ => {
                        if let Ok(file) = std::fs::File::open(&files[0]) {
                            held.lock().unwrap().insert(ui, Instant::now());
                            open.push((ui, file, Instant::now()));
                        }
                        let _ = m;
                    }
                }
                // Files held open for about a second, then closed.
                open.retain(|(ui, _, at)| {
                    let keep = at.elapsed() < Duration::from_millis(1200);
                    if !keep {
                        held.lock().unwrap().remove(ui);
                    }
                    keep
                });
                f.ops.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(rng.below(20)));
            }
            // Touched units: whole at the end (checked by the oracle as must_survive).
            let _ = touched;
        }));
    }
    // Refill: stale units keep arriving, a store at a time (renamed in whole: a unit whose files
    // were renamed in one by one could rightly go with only its first file there).
    {
        let (stop, oracle, root, stage) = (stop.clone(), oracle.clone(), root.clone(), stage.clone());
        threads.push(std::thread::spawn(move || {
            let mut m = 100_000u64;
            while !stop.load(Ordering::Relaxed) {
                let name = bm(&format!("refill-{m}"));
                let mut units = Vec::new();
                for k in 0..5 {
                    let u = unit_paths(&stage.join(&name), 7, m + k);
                    write_unit(&u, 4096, 48 * HOUR);
                    units.push(unit_paths(&root.join(&name), 7, m + k));
                }
                std::fs::rename(stage.join(&name), root.join(&name)).unwrap();
                let mut o = oracle.lock().unwrap();
                for u in units {
                    o.unit(u, false);
                }
                drop(o);
                m += 5;
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    let t = Instant::now();
    let mut sweeps = 0u64;
    let body = config_text(
        &[&root],
        "max_age = \"1h\"\nmin_age = \"10m\"\ninterval = \"1s\"\n[watermark]\nhigh = 0.5\nlow = 0.3\npoll = \"1s\"",
    );
    if daemon {
        let mut d = Daemon::start(s.path(), &body);
        let start = d.sweeps();
        let mut confirmed: BTreeMap<usize, Instant> = BTreeMap::new();
        while t.elapsed() < Duration::from_secs(secs) {
            std::thread::sleep(Duration::from_millis(250));
            // Units held open and seen whole more than half a second after the open: in use,
            // must stay whole while held.
            check_held(&held, &oracle, &findings, Duration::from_millis(500), &mut confirmed);
            d.signal(rustix::process::Signal::USR1);
        }
        sweeps = (d.sweeps() - start) as u64;
        d.no_panic(sc);
        let _ = d.stop(Duration::from_secs(5));
    } else {
        let cfg = s.join("c.toml");
        std::fs::write(&cfg, &body).unwrap();
        while t.elapsed() < Duration::from_secs(secs) {
            // Held open when this sweep starts (so its /proc scan sees them) and still held at its
            // end: must be whole.
            let before: Vec<(usize, Instant)> = {
                let h = held.lock().unwrap();
                let o = oracle.lock().unwrap();
                h.iter()
                    .filter(|(ui, _)| !o.units[**ui].attacked && o.units[**ui].files.iter().all(|p| p.exists()))
                    .map(|(u, t)| (*u, *t))
                    .collect()
            };
            let extra: &[&str] = if sweeps % 3 == 2 { &["--purge"] } else { &[] };
            let (code, _, err) = sweep(&cfg, extra);
            sc.check(code == 0 || code == 1, || format!("exit {code}: {err}"));
            sc.check(!err.contains("panicked"), || err.clone());
            let now = held.lock().unwrap();
            let o = oracle.lock().unwrap();
            for (ui, at) in &before {
                if now.get(ui) == Some(at)
                    && !o.units[*ui].attacked
                    && let Some(p) = o.units[*ui].files.iter().find(|p| !p.exists())
                {
                    findings.violation(format!(
                        "unit held open across a whole sweep was deleted: {}",
                        p.display()
                    ));
                }
            }
            sweeps += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        th.join().expect("attacker thread");
    }
    // Everything back in place before the oracle looks.
    for (i, (real, _)) in swaps.iter().enumerate() {
        let link = root.join(format!("swap-link-{i}"));
        if std::fs::symlink_metadata(real).is_ok_and(|m| m.file_type().is_symlink()) {
            exchange(real, &link);
        }
    }
    for v in findings.violations.lock().unwrap().iter() {
        sc.violation(v);
    }
    sc.iterations = sweeps;
    oracle.lock().unwrap().tally(sc);
    sc.note(format!(
        "{sweeps} sweeps, {} attacks in {secs}s",
        findings.ops.load(Ordering::Relaxed)
    ));
    sc.check(sc.deletions > 0, || {
        "nothing was deleted: the scenario attacked nothing".into()
    });
}

/// Daemon: a unit held open and seen whole `grace` after its open (past the in-flight window of
/// a deletion that had checked it just before) must stay whole while it is held.
fn check_held(
    held: &Held,
    oracle: &Arc<Mutex<Oracle>>,
    f: &Findings,
    grace: Duration,
    confirmed: &mut BTreeMap<usize, Instant>,
) {
    let held = held.lock().unwrap();
    let o = oracle.lock().unwrap();
    confirmed.retain(|ui, at| held.get(ui) == Some(at));
    for (ui, at) in held.iter() {
        if at.elapsed() < grace || o.units[*ui].attacked {
            continue;
        }
        let files = &o.units[*ui].files;
        let whole = files.iter().all(|p| p.exists());
        match confirmed.get(ui) {
            Some(_) if !whole => {
                f.violation(format!(
                    "unit in use (held open {:?}) deleted: {}",
                    at.elapsed(),
                    files[0].display()
                ));
                confirmed.remove(ui);
            }
            Some(_) => {}
            None if whole => {
                confirmed.insert(*ui, *at);
            }
            None => {}
        }
    }
}
