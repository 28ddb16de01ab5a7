//! The liveness rule against real JVMs (a compiled `Sleep` class; SKIPPED without a JDK): a JVM
//! is known by `libjvm.so` mapped whatever started it, and a JVM that cannot load Spark's
//! store-making class does not stop reaping, while one that can (or cannot be judged) does.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::jvm;
use common::*;

// Each test gives the binary a node of its own (`Node`: a PID namespace with its own /proc),
// with the JVMs it starts: what else runs on the machine cannot change what it decides.

fn empty_store(root: &Path, rel: &str) -> PathBuf {
    let store = root.join(rel);
    std::fs::create_dir_all(store.join("00")).unwrap();
    store
}

fn config(env: &TestEnv) -> PathBuf {
    env.config("state_dir = \"\"\n[stores]\nmin_idle = \"1s\"\npid_namespace = \"own\"\n")
}

/// Past `min_idle` (1 s), and past the 2 s of slack between a JVM's start and a store's birth.
fn quiet() {
    std::thread::sleep(Duration::from_millis(1300));
}

/// Ends a JVM now (it is killed when dropped).
fn stop(c: jvm::Jvm) {
    drop(c);
}

/// The JDK, or why the test is skipped.
fn jdk(env: &TestEnv, test: &str) -> Option<(PathBuf, PathBuf)> {
    let classes = env.outside().join("classes");
    match jvm::sleep_class(&classes) {
        Ok(java) => Some((java, classes)),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

fn reasons(report: &serde_json::Value) -> serde_json::Value {
    report["roots"][0]["idle_reasons"].clone()
}

#[test]
fn an_executor_started_through_the_dynamic_loader_keeps_its_store() {
    let env = TestEnv::new();
    let Some((java, classes)) = jdk(&env, "an_executor_started_through_the_dynamic_loader") else {
        return;
    };
    let Some(node) = Node::new("an_executor_started_through_the_dynamic_loader") else {
        return;
    };
    let Some(ld) = jvm::loader() else {
        eprintln!("SKIPPED an_executor_started_through_the_dynamic_loader: no dynamic loader at a known path");
        return;
    };
    let root = env.root();
    let cp = classes.to_str().unwrap();
    let args = [
        "-cp",
        cp,
        "Sleep",
        "60",
        "org.apache.spark.executor.CoarseGrainedExecutorBackend",
    ];
    // argv[0] and /proc/PID/exe are the loader's; the launcher is its first argument.
    let loaded = jvm::start(&node, &[&ld, &java], &args, &[], &[]);
    // The same under a name that is not java's: only libjvm.so mapped shows a JVM.
    let svc = env.outside().join("bin/svc");
    std::fs::create_dir_all(svc.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&java, &svc).unwrap();
    let jdk_lib = java.parent().unwrap().parent().unwrap().join("lib");
    let mapped = jvm::start(&node, &[&ld, &svc], &args, &[("LD_LIBRARY_PATH", &jdk_lib)], &[]);
    let pids = [loaded.ns_pid(), mapped.ns_pid()];
    // Born after both started, within stores.executor_startup: may be theirs.
    let a = empty_store(&root, "blockmgr-loaded");
    let b = empty_store(&root, "blockmgr-mapped");
    quiet();
    let (code, report) = node.sweep_json(&config(&env), &[]);
    stop(loaded);
    stop(mapped);
    assert_eq!(code, 0, "{report}");
    assert!(a.is_dir() && b.is_dir(), "live executors' stores kept: {report}");
    assert_eq!(reasons(&report)["executor"], 2, "{report}");
    let by: Vec<u64> = report["stores_kept_by"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["pid"].as_u64())
        .collect();
    assert!(
        by.iter().all(|p| pids.contains(&(*p as u32))),
        "kept by the two executors: {report}"
    );
}

#[test]
fn a_jvm_without_spark_does_not_stop_reaping_and_one_with_spark_does() {
    let env = TestEnv::new();
    let test = "a_jvm_without_spark_does_not_stop_reaping";
    let Some((java, classes)) = jdk(&env, test) else {
        return;
    };
    let Some(node) = Node::new(test) else {
        return;
    };
    let out = env.outside();
    let plain = jvm::sleep_jar(&classes, &out.join("app/service.jar"));
    let root = env.root();
    // A long-lived JVM with no Spark anywhere it loads classes from (HBase, Kafka Connect...).
    let service = jvm::start(
        &node,
        &[&java],
        &["-cp", plain.to_str().unwrap(), "Sleep", "60"],
        &[],
        &[&plain],
    );
    // Born after it started, outside any executor-* directory: only a driver could own it.
    let dead = empty_store(&root, "spark-mesos/blockmgr-dead");
    quiet();
    let (code, report) = node.sweep_json(&config(&env), &[]);
    assert_eq!(code, 0, "{report}");
    assert!(!dead.exists(), "a JVM without Spark owns no store: {report}");

    // A JVM with Spark's store-making class in an open jar named like none of Spark's (the jar
    // first on its class path: looking up Sleep opens it).
    let engine = jvm::spark_jar(&out.join("lib/engine.jar"));
    let cp = format!("{}:{}", engine.display(), plain.display());
    let driver = jvm::start(&node, &[&java], &["-cp", &cp, "Sleep", "60"], &[], &[&engine, &plain]);
    let owned = empty_store(&root, "spark-mesos/blockmgr-owned");
    quiet();
    let (code, report) = node.sweep_json(&config(&env), &[]);
    let text = node
        .command(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["report", "--config", config(&env).to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    stop(driver);
    assert_eq!(code, 0, "{report}");
    assert!(owned.is_dir(), "a JVM with Spark's classes may own it: {report}");
    assert_eq!(reasons(&report)["spark_jvm"], 1, "{report}");
    let process = report["stores_kept_by"][0]["process"].as_str().unwrap_or_default();
    assert!(
        process.contains("engine.jar") && process.contains("DiskBlockManager.class"),
        "{report}"
    );
    assert!(
        text.contains("1 idle (spark_jvm)") && text.contains("engine.jar"),
        "{text}"
    );

    // A JVM whose class path is in an argument file cannot be judged: it may own stores. It
    // starts more than the 2 s of slack (and the second `btime` may round off) after the last store was born: not that store's owner.
    std::thread::sleep(Duration::from_millis(3500));
    let args = out.join("jvm.args");
    std::fs::write(&args, format!("-cp {}\nSleep\n", plain.display())).unwrap();
    let argfile = jvm::start(
        &node,
        &[&java],
        &[&format!("@{}", args.display()), "60"],
        &[],
        &[&plain],
    );
    let unjudged = empty_store(&root, "spark-mesos/blockmgr-unjudged");
    quiet();
    let (code, report) = node.sweep_json(&config(&env), &[]);
    stop(argfile);
    assert_eq!(code, 0, "{report}");
    assert!(unjudged.is_dir(), "{report}");
    assert!(!owned.exists(), "its JVM gone, the store goes: {report}");
    assert_eq!(reasons(&report)["unknown_jvm"], 1, "{report}");
    // And a directory on the class path holding the class: it has Spark.
    std::thread::sleep(Duration::from_millis(3500));
    let spark_classes = out.join("spark-classes");
    std::fs::create_dir_all(spark_classes.join("org/apache/spark/storage")).unwrap();
    std::fs::write(
        spark_classes.join("org/apache/spark/storage/DiskBlockManager.class"),
        b"",
    )
    .unwrap();
    let cp = format!("{}:{}", spark_classes.display(), classes.display());
    let from_dir = jvm::start(&node, &[&java], &["-cp", &cp, "Sleep", "60"], &[], &[]);
    let in_dir = empty_store(&root, "spark-mesos/blockmgr-dir");
    quiet();
    let (code, report) = node.sweep_json(&config(&env), &[]);
    stop(from_dir);
    stop(service);
    assert_eq!(code, 0, "{report}");
    assert!(in_dir.is_dir() && !unjudged.exists(), "{report}");
    assert_eq!(reasons(&report)["spark_jvm"], 1, "{report}");
}
