//! Dead executors' stores (issue "Reclaim the block stores of executors that are gone"), raced:
//! while `sweep` runs in a loop with a short `stores.min_idle`, a writer keeps creating files in
//! the `NN` directories of empty stores that are about to be judged dead (as a live process
//! would, the moment before an `rmdir`), and new empty stores keep appearing; a process that
//! looks like a live executor owns stores of its own, empty and quiet. Every file the writer
//! created must survive (the removal may take the directory it was about to write in, never a
//! file), the live executor's stores must all stay, and nothing outside the root may change.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Node, NodeChild};
use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("reap_while_writing", reap_while_writing),
    ("reap_beside_real_jvms", reap_beside_real_jvms),
];

/// A process that looks like a standalone Spark executor to `/proc`, in `node`: its worker named
/// its `executor-*` directory in `SPARK_EXECUTOR_DIRS`.
fn fake_executor(node: &Node, executor_dir: &std::path::Path) -> NodeChild {
    let mut c = node.command("bash");
    c.arg("-c")
        .arg("exec -a java perl -e 'sleep 600' org.apache.spark.executor.CoarseGrainedExecutorBackend")
        .env("SPARK_EXECUTOR_DIRS", executor_dir)
        .stdin(Stdio::null());
    let child = node.spawn(c);
    for _ in 0..200 {
        let cmd = std::fs::read(format!("/proc/{}/cmdline", child.pid)).unwrap_or_default();
        if cmd.starts_with(b"java\0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn empty_store(dir: &std::path::Path, nn: u32) {
    for i in 0..nn {
        std::fs::create_dir_all(dir.join(format!("{i:02x}"))).unwrap();
    }
}

fn reap_while_writing(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let victim = s.join("victim");
    write_aged(&victim.join("shuffle_1_1_0.data"), 10, 48 * HOUR);
    let mut oracle = Oracle::default();
    oracle.victim(&victim);
    // Born before the live executor starts (more than the 2 s of slack): dead once quiet.
    let pool = sc.size(30, 300);
    let dead = |i: usize| root.join(format!("spark-s/executor-d/{}", bm(&format!("dead{i}"))));
    for i in 0..pool {
        empty_store(&dead(i), 4);
    }
    std::thread::sleep(Duration::from_millis(2500));
    let executor_dir = root.join("spark-s/executor-l");
    std::fs::create_dir_all(&executor_dir).unwrap();
    // A node of its own: no other JVM of the machine keeps the dead stores.
    let Some(node) = Node::new("reap_while_writing") else {
        return sc.skip("no PID namespace of its own can be made here (root needed)");
    };
    let mut exec = fake_executor(&node, &executor_dir);
    // Born after it started, within stores.executor_startup: the live executor's own.
    let live: Vec<PathBuf> = (0..5).map(|i| executor_dir.join(bm(&format!("live{i}")))).collect();
    for l in &live {
        empty_store(l, 3);
    }
    std::thread::sleep(Duration::from_millis(1200));
    let config = s.join("reap.toml");
    std::fs::write(
        &config,
        config_text(
            &[&root],
            "state_dir = \"\"\n[watermark]\nhigh = 0.999\nlow = 0.998\n[stores]\nmin_idle = \"1s\"\nexecutor_startup = \"1m\"\npid_namespace = \"own\"",
        ),
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let created: Arc<Mutex<Vec<PathBuf>>> = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (stop, created, root) = (stop.clone(), created.clone(), root.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(0x5eed_7a9e);
            let mut n = 0u64;
            let mut next_store = pool;
            while !stop.load(Ordering::Relaxed) {
                // Into a store that may be judged dead this very moment.
                let i = rng.below(next_store as u64) as usize;
                let nn = rng.below(4);
                let p = root.join(format!(
                    "spark-s/executor-d/{}/{nn:02x}/shuffle_9_{n}_0.data",
                    bm(&format!("dead{i}"))
                ));
                n += 1;
                // Created only where the directory is (never with its parents: a process
                // writes into the directory it cached).
                if std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&p)
                    .is_ok()
                {
                    created.lock().unwrap().push(p);
                }
                // Now and then a new empty store, dead as soon as it is quiet.
                if n.is_multiple_of(25) {
                    let d = root.join(format!("spark-s/executor-d/{}", bm(&format!("dead{next_store}"))));
                    empty_store(&d, 4);
                    next_store += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let until = Instant::now() + Duration::from_secs(sc.size(12, 120) as u64);
    let mut reaped = 0u64;
    while Instant::now() < until {
        let (code, report, stderr) = sweep_in(&node, &config);
        sc.iterations += 1;
        if code == 2 || report.is_null() {
            sc.violation(format!("sweep failed ({code}): {stderr}"));
            break;
        }
        reaped += jnum(&report, &["reaped", "stores"]);
        // Between sweeps, long enough for some stores to be quiet for min_idle.
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // One last sweep, the writer stopped: every file it made must still be there.
    let (_, report, _) = sweep_in(&node, &config);
    reaped += jnum(&report, &["reaped", "stores"]);
    exec.kill();
    let created = created.lock().unwrap().clone();
    for p in &created {
        oracle.keep(p.clone());
    }
    for l in &live {
        oracle.keep(l.join("00"));
    }
    oracle.tally(sc);
    sc.deletions = reaped;
    sc.check(reaped > 0, || "no store was reaped: the race was not run".into());
    let kept_files = created.iter().filter(|p| p.exists()).count();
    let kept_live = live.iter().filter(|l| l.join("00").is_dir()).count();
    sc.note(format!(
        "{} files created in stores being reaped, {kept_files} kept; {reaped} stores reaped; {kept_live} of the live executor's {} stores kept",
        created.len(),
        live.len()
    ));
}

/// Issue 21, items 4 and 9, with real JVMs (a compiled `Sleep` class): a JVM that loads no Spark
/// (a long-lived service run from a jar of its own) must not stop the removal of a dead store
/// outside `executor-*` directories; an executor started through the dynamic loader (argv[0]
/// and `/proc/PID/exe` are the loader's, invisible to a test of names) and a JVM with Spark's
/// `DiskBlockManager.class` in an open jar named like none of Spark's must keep the stores born
/// after they started, sweep after sweep.
fn reap_beside_real_jvms(sc: &mut Sc) {
    use crate::common::jvm;
    let s = Scratch::new();
    let classes = s.join("classes");
    let java = match jvm::sleep_class(&classes) {
        Ok(j) => j,
        Err(why) => return sc.skip(&why),
    };
    let Some(ld) = jvm::loader() else {
        return sc.skip("no dynamic loader at a known path");
    };
    // A node of its own: no other JVM of the machine keeps what this expects removed.
    let Some(node) = Node::new("reap_beside_real_jvms") else {
        return sc.skip("no PID namespace of its own can be made here (root needed)");
    };
    let root = s.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let config = s.join("reap.toml");
    std::fs::write(
        &config,
        config_text(
            &[&root],
            "state_dir = \"\"\n[stores]\nmin_idle = \"1s\"\npid_namespace = \"own\"",
        ),
    )
    .unwrap();
    // Killed when dropped.
    let kill = |c: jvm::Jvm| drop(c);
    let plain = jvm::sleep_jar(&classes, &s.join("app/service.jar"));
    let service = jvm::start(
        &node,
        &[&java],
        &["-cp", plain.to_str().unwrap(), "Sleep", "120"],
        &[],
        &[&plain],
    );
    // Born after the service started, outside any executor-* directory.
    let dead: Vec<PathBuf> = (0..5)
        .map(|i| root.join(format!("spark-mesos/{}", bm(&format!("dead{i}")))))
        .collect();
    for d in &dead {
        empty_store(d, 3);
    }
    std::thread::sleep(Duration::from_millis(1300));
    let (code, report, stderr) = sweep_in(&node, &config);
    sc.iterations += 1;
    sc.check(code == 0, || format!("sweep failed ({code}): {stderr}"));
    let removed = dead.iter().filter(|d| !d.exists()).count();
    sc.deletions += removed as u64;
    sc.check(removed == dead.len(), || {
        format!(
            "a JVM without Spark kept {} dead stores: {report}",
            dead.len() - removed
        )
    });

    // The service gone, which on a rule that counts every JVM would keep everything below.
    kill(service);
    // Each alone, so that neither keeps the other's stores: first the executor started
    // through the dynamic loader, then the JVM with Spark's class in an open jar.
    let cp = classes.to_str().unwrap();
    let executor = jvm::start(
        &node,
        &[&ld, &java],
        &[
            "-cp",
            cp,
            "Sleep",
            "120",
            "org.apache.spark.executor.CoarseGrainedExecutorBackend",
        ],
        &[],
        &[],
    );
    let (mut kept, mut owned_all) = owned_by(sc, &node, &root, "exec", &config, "executor");
    kill(executor);
    // Past the 2 s of slack (and the rounding of btime) before the next JVM starts.
    std::thread::sleep(Duration::from_millis(3500));
    let engine = jvm::spark_jar(&s.join("lib/engine.jar"));
    let cp = format!("{}:{}", engine.display(), plain.display());
    let driver = jvm::start(&node, &[&java], &["-cp", &cp, "Sleep", "120"], &[], &[&engine]);
    let (k, n) = owned_by(sc, &node, &root, "driver", &config, "engine.jar");
    kill(driver);
    kept += k;
    owned_all += n;
    sc.note(format!(
        "{removed} of {} dead stores beside a JVM without Spark removed; {kept} of {owned_all} stores of an executor started by ld.so and a JVM with DiskBlockManager in an open jar kept",
        dead.len(),
    ));
}

/// Stores born now, which the one live JVM that may own stores must keep through every sweep,
/// each report naming it (`name` in `stores_kept_by`): (kept, made).
fn owned_by(
    sc: &mut Sc,
    node: &Node,
    root: &std::path::Path,
    tag: &str,
    config: &std::path::Path,
    name: &str,
) -> (usize, usize) {
    let mut oracle = Oracle::default();
    let owned: Vec<PathBuf> = (0..5)
        .map(|i| root.join(format!("spark-mesos/{}", bm(&format!("{tag}{i}")))))
        .collect();
    for o in &owned {
        empty_store(o, 2);
        oracle.keep(o.join("00"));
    }
    std::thread::sleep(Duration::from_millis(1300));
    for _ in 0..sc.size(5, 50) {
        let (code, report, stderr) = sweep_in(node, config);
        sc.iterations += 1;
        if !sc.check(code == 0, || format!("sweep failed ({code}): {stderr}")) {
            break;
        }
        sc.deletions += jnum(&report, &["reaped", "stores"]);
        let kept_by = report["stores_kept_by"].to_string();
        sc.check(kept_by.contains(name), || format!("no reason names {name}: {report}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    oracle.tally(sc);
    (owned.iter().filter(|o| o.join("00").is_dir()).count(), owned.len())
}
