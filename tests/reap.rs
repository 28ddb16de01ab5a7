//! Dead executors' block stores: removed bottom-up once empty, quiet for `stores.min_idle` and
//! ownerless, through the binary on real directories; never what a live process may own, never
//! a store with anything in it, never through a symlink or a mount.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use shuffle_janitor::fsx::{self, MountId};
use shuffle_janitor::store_dir::{Listing, StoreDir};

// The liveness rule looks at every process on the node: each test here gives the binary a node
// of its own (`Node`: a PID namespace with its own /proc), so what else runs on the machine
// (another JVM, another test's fake executor) cannot change what it decides.

/// Empty `NN` directories of a store (as a dead executor leaves them once its files are gone).
fn empty_store(root: &Path, rel: &str, subdirs: &[&str]) -> PathBuf {
    let store = root.join(rel);
    for s in subdirs {
        std::fs::create_dir_all(store.join(s)).unwrap();
    }
    store
}

fn config(env: &TestEnv, extra: &str) -> PathBuf {
    env.config(&format!(
        "state_dir = \"\"\n{extra}\n[stores]\nmin_idle = \"1s\"\npid_namespace = \"own\"\n"
    ))
}

/// Waits past `min_idle` (1 s) so the stores made now count as quiet.
fn quiet() {
    std::thread::sleep(Duration::from_millis(1300));
}

/// A process that looks like a Spark executor JVM to `/proc` (argv[0] `java`, the backend's
/// class on its command line), optionally working in `cwd`, optionally given `executor_dirs` as
/// a standalone worker gives them (`SPARK_EXECUTOR_DIRS`).
fn fake_executor(node: &Node, cwd: Option<&Path>, executor_dirs: Option<&Path>) -> NodeChild {
    let env: Vec<(&str, &Path)> = executor_dirs.map(|d| ("SPARK_EXECUTOR_DIRS", d)).into_iter().collect();
    fake_jvm(
        node,
        &["org.apache.spark.executor.CoarseGrainedExecutorBackend"],
        &env,
        cwd,
    )
}

#[test]
fn dead_stores_of_every_layout_are_removed_bottom_up_and_nothing_else() {
    let env = TestEnv::new();
    let Some(node) = Node::new(current_test()) else {
        return;
    };
    let root = env.root();
    let mesos = empty_store(&root, "blockmgr-aaaa", &["00", "0c", "3f"]);
    let k8s = empty_store(&root, "spark-k/blockmgr-bbbb", &["01"]);
    let alone = empty_store(&root, "spark-s/executor-1/blockmgr-cccc", &["02", "03"]);
    let shared = empty_store(&root, "spark-s/executor-2/blockmgr-dddd", &["04"]);
    // Kept: a Spark file, a file that is not Spark's, a file loose in the store, a protected
    // store, a store in the same executor directory that still holds data.
    let with_data = root.join("spark-s/executor-2/blockmgr-eeee/05/shuffle_0_1_0.data");
    write_aged(&with_data, 10, HOUR);
    let foreign = root.join("blockmgr-ffff/06/core.1234");
    write_aged(&foreign, 10, 48 * HOUR);
    let loose = root.join("blockmgr-gggg/notes.txt");
    write_aged(&loose, 10, 48 * HOUR);
    std::fs::create_dir_all(root.join("blockmgr-gggg/07")).unwrap();
    let pinned = empty_store(&root, "blockmgr-pinned", &["08"]);
    quiet();
    let cfg = config(&env, &format!("protect = [\"{}/blockmgr-pinned\"]", root.display()));

    let before = dirs_below(&root);
    let (code, dry) = node.sweep_json(&cfg, &["--dry-run"]);
    assert_eq!(code, 0, "{dry}");
    assert_eq!(dirs_below(&root), before, "a dry run removes nothing: {dry}");
    assert_eq!(dry["reaped"]["stores"], 4, "{dry}");
    let mut listed: Vec<String> = dry["reaped"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = [&mesos, &k8s, &alone, &shared]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    let (code, report) = node.sweep_json(&cfg, &[]);
    assert_eq!(code, 0, "{report}");
    for gone in [&mesos, &k8s, &alone, &shared, &root.join("spark-s/executor-1")] {
        assert!(!gone.exists(), "{} removed: {report}", gone.display());
    }
    // 3+1 + 1+1 + 2+1+1 (its executor-* dir, left empty) + 1+1 = 12.
    assert_eq!(report["reaped"]["dirs"], 12, "{report}");
    for kept in [&with_data, &foreign, &loose, &pinned.join("08")] {
        assert!(kept.exists(), "{} kept: {report}", kept.display());
    }
    assert!(root.join("spark-s/executor-2").exists(), "it still holds a live store");
    assert!(
        root.join("spark-k").exists() && root.join("spark-s").exists(),
        "spark-* dirs are the worker's"
    );
    // Removed ones are counted in reaped, not left as dead.
    let stores = &report["roots"][0]["stores"];
    assert_eq!(
        (stores["dead"].clone(), stores["live"].clone()),
        (0.into(), 4.into()),
        "{report}"
    );
    assert_eq!(dry["roots"][0]["stores"]["dead"], 4, "{dry}");
}

#[test]
fn a_store_a_live_process_may_own_or_works_in_is_kept() {
    let env = TestEnv::new();
    let Some(node) = Node::new(current_test()) else {
        return;
    };
    let root = env.root();
    // Born before the executor started (more than the 2 s of slack, plus up to 1 s by which a
    // start computed from the whole second of `btime` comes out early): not its store.
    let older = empty_store(&root, "blockmgr-older", &["00"]);
    std::thread::sleep(Duration::from_millis(3500));
    let mut exec = fake_executor(&node, None, None);
    // Born after it started, within stores.executor_startup: may be its store.
    let newer = empty_store(&root, "blockmgr-newer", &["00"]);
    // A shell working in a store holds it.
    let worked_in = empty_store(&root, "blockmgr-cwd", &["00"]);
    std::thread::sleep(Duration::from_millis(2500));
    let mut sleeping = node.command("sleep");
    sleeping.arg("30").current_dir(worked_in.join("00"));
    let mut shell = node.spawn(sleeping);
    quiet();
    let (code, report) = node.sweep_json(&config(&env, ""), &[]);
    exec.kill();
    shell.kill();
    assert_eq!(code, 0, "{report}");
    assert!(!older.exists(), "born before every live JVM: dead: {report}");
    assert!(newer.exists(), "the live executor may own it: {report}");
    assert!(worked_in.join("00").exists(), "a process works in it: {report}");
    assert_eq!(report["roots"][0]["stores"]["idle"], 2, "{report}");
    // The executor gone, its store goes.
    let (_, report) = node.sweep_json(&config(&env, ""), &[]);
    assert!(!newer.exists() && !worked_in.exists(), "{report}");
}

#[test]
fn an_executor_dir_a_live_executor_is_given_stays() {
    let env = TestEnv::new();
    let Some(node) = Node::new(current_test()) else {
        return;
    };
    let root = env.root();
    // The dead executor's store in the application's directory, which the worker gives the next
    // executor too: that one, starting, has not created its own store in it yet.
    let dead = empty_store(&root, "spark-w/executor-app/blockmgr-dead", &["00", "01"]);
    std::thread::sleep(Duration::from_millis(3500));
    let mut next = fake_executor(&node, None, Some(&root.join("spark-w/executor-app")));
    quiet();
    let (code, report) = node.sweep_json(&config(&env, ""), &[]);
    next.kill();
    assert_eq!(code, 0, "{report}");
    assert!(!dead.exists(), "born before the live executor started: dead: {report}");
    assert!(
        root.join("spark-w/executor-app").is_dir(),
        "a live executor was given it: {report}"
    );
    // 2 NN + the store.
    assert_eq!(report["reaped"]["dirs"], 3, "{report}");
}

#[test]
fn a_file_created_at_the_last_moment_stops_the_removal() {
    let env = TestEnv::new();
    let root = env.root();
    let store = empty_store(&root, "blockmgr-late", &["00", "01", "02"]);
    let fd = rustix::fs::open(&root, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
    let mount = MountId::of(&fsx::statx_fd(&fd).unwrap());
    let mut dir = StoreDir::open(&root, Path::new("blockmgr-late"), mount).unwrap();
    dir.read(&mut Vec::new(), &mut Listing::default());
    let judged = dir.facts().activity;
    // Timestamps move by the kernel's clock tick (up to 10 ms): a change in the same tick as the
    // store's last activity could not be told from it. In the daemon that last activity is at
    // least min_idle old; here it is a moment ago, so wait past a tick.
    std::thread::sleep(Duration::from_millis(30));
    // A file appears after the store was judged: the activity check stops everything.
    std::fs::write(store.join("01/shuffle_0_0_0.data"), b"x").unwrap();
    let r = dir.reap(&mut Vec::new(), judged, true, false);
    assert_eq!((r.dirs, r.store, r.error.is_none()), (0, false, true), "{r:?}");
    assert!(r.kept.is_some());
    assert!(store.join("00").exists() && store.join("01/shuffle_0_0_0.data").exists());
    // Even judged as of now (past the activity check), every NN directory is seen empty
    // before the first is removed: nothing at all is removed.
    let r = dir.reap(&mut Vec::new(), i64::MAX, true, false);
    assert_eq!((r.dirs, r.store), (0, false), "{r:?}");
    for nn in ["00", "01", "02"] {
        assert!(store.join(nn).is_dir(), "{nn} kept: {r:?}");
    }
    assert!(store.join("01/shuffle_0_0_0.data").exists());
}

#[test]
fn an_immutable_nn_directory_keeps_the_whole_store_and_is_counted() {
    let env = TestEnv::new();
    let Some(node) = Node::new(current_test()) else {
        return;
    };
    let root = env.root();
    let store = empty_store(&root, "blockmgr-pinned-by-chattr", &["00", "01", "02", "03"]);
    if !Command::new("chattr")
        .arg("+i")
        .arg(store.join("03"))
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED an_immutable_nn_directory: chattr +i is not possible here");
        return;
    }
    quiet();
    let (dry_code, dry) = node.sweep_json(&config(&env, ""), &["--dry-run"]);
    let (code, report) = node.sweep_json(&config(&env, ""), &[]);
    let _ = Command::new("chattr").arg("-i").arg(store.join("03")).status();
    assert_eq!(dry_code, 1, "{dry}");
    assert_eq!(code, 1, "an error: {report}");
    for nn in ["00", "01", "02", "03"] {
        assert!(store.join(nn).is_dir(), "{nn} kept: {report}");
    }
    assert_eq!(report["reaped"]["dirs"], 0, "{report}");
    assert_eq!(report["errors_by_op"]["unlink"], 1, "{report}");
    assert_eq!(
        report["roots"][0]["stores"]["dead"], 1,
        "dead, and still there: {report}"
    );
}

#[test]
fn a_dry_run_counts_what_a_real_run_removes() {
    let env = TestEnv::new();
    let Some(node) = Node::new(current_test()) else {
        return;
    };
    let root = env.root();
    empty_store(&root, "blockmgr-a", &["00", "01", "02"]);
    empty_store(&root, "spark-k/blockmgr-b", &["0c"]);
    quiet();
    let (_, dry) = node.sweep_json(&config(&env, ""), &["--dry-run"]);
    let (_, real) = node.sweep_json(&config(&env, ""), &[]);
    assert_eq!(
        dry["reaped"],
        serde_json::json!({"stores": 2, "dirs": 6, "paths": dry["reaped"]["paths"]})
    );
    assert_eq!(
        (real["reaped"]["stores"].clone(), real["reaped"]["dirs"].clone()),
        (2.into(), 6.into()),
        "{real}"
    );
    assert_eq!(dry["roots"][0]["stores"]["dead"], 2, "{dry}");
    assert_eq!(real["roots"][0]["stores"]["dead"], 0, "removed, not left dead: {real}");
}

/// A process that looks like a JVM to `/proc` (argv[0] `java`; perl keeps the argv[0] it is
/// given, an interpreter shim would put its own) with `args` and `env`, working in `cwd`, in
/// `node`. With `JANITOR_TEST_HOLD` in `env`, it holds that file open, as a JVM holds the jars
/// it loaded.
fn fake_jvm(node: &Node, args: &[&str], env: &[(&str, &Path)], cwd: Option<&Path>) -> NodeChild {
    let mut c = node.command("bash");
    c.arg("-c")
        .arg(format!(
            "exec -a java perl -e 'open(my $h, \"<\", $ENV{{JANITOR_TEST_HOLD}}) if $ENV{{JANITOR_TEST_HOLD}}; sleep 60' -- {}",
            args.join(" ")
        ))
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let child = node.spawn(c);
    let hold = env.iter().find(|(k, _)| *k == "JANITOR_TEST_HOLD").map(|(_, v)| *v);
    // Until /proc shows the new command line, and the file held open.
    for _ in 0..200 {
        let cmd = std::fs::read(format!("/proc/{}/cmdline", child.pid)).unwrap_or_default();
        let held = hold.is_none_or(|h| {
            std::fs::read_dir(format!("/proc/{}/fd", child.pid))
                .map(|d| d.flatten().any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == h)))
                .unwrap_or(false)
        });
        if cmd.starts_with(b"java\0") && held {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[test]
fn stores_that_live_jvms_may_own_are_kept_however_they_show_it() {
    let env = TestEnv::new();
    let Some(node) = Node::new(current_test()) else {
        return;
    };
    let root = env.root();
    std::thread::sleep(Duration::from_millis(10));
    // Spark's store-making class in a jar named like none of Spark's.
    let engine = common::jvm::spark_jar(&env.outside().join("engine.jar"));
    let hold = ("JANITOR_TEST_HOLD", engine.as_path());
    let mut jvms = vec![
        // An application embedding Spark, with no "spark" on its command line: its open jar
        // holds DiskBlockManager.
        fake_jvm(
            &node,
            &["-cp", "/opt/app/lib/*", "com.acme.ReportService"],
            &[hold],
            None,
        ),
        // A standalone executor whose SPARK_EXECUTOR_DIRS names a path of another mount
        // namespace (a containerised worker): it cannot be resolved here.
        fake_jvm(
            &node,
            &["org.apache.spark.executor.CoarseGrainedExecutorBackend"],
            &[("SPARK_EXECUTOR_DIRS", Path::new("/nonexistent/in-container/executor-b"))],
            None,
        ),
        // A local-mode session started from an executor, inheriting its executor directory.
        fake_jvm(
            &node,
            &["org.apache.spark.deploy.SparkSubmit", "--master", "local[2]"],
            &[("SPARK_EXECUTOR_DIRS", &root.join("spark-w/executor-c")), hold],
            None,
        ),
        // A JVM whose class path is in an argument file: whether it has Spark cannot be told.
        fake_jvm(&node, &["@/etc/app/jvm.args"], &[], None),
    ];
    std::fs::create_dir_all(root.join("spark-w/executor-c")).unwrap();
    // Born after all of them started.
    std::thread::sleep(Duration::from_millis(2500));
    let embedded = empty_store(&root, "blockmgr-embedded", &["00"]);
    let contained = empty_store(&root, "spark-w/executor-b/blockmgr-live", &["0c"]);
    let local = empty_store(&root, "spark-w/executor-c/blockmgr-local", &["01"]);
    // YARN push-based shuffle's merge directory: never a reaped store.
    let merge = empty_store(
        &root,
        "usercache/u/appcache/application_1_0042/merge_manager_1",
        &["00"],
    );
    quiet();
    let (code, report) = node.sweep_json(&config(&env, ""), &[]);
    // `report` says the same, in words.
    let text = node
        .command(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["report", "--config", config(&env, "").to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    for j in &mut jvms {
        j.kill();
    }
    assert_eq!(code, 0, "{report}");
    for kept in [&embedded, &contained, &local, &merge] {
        assert!(kept.is_dir(), "{} kept: {report}", kept.display());
    }
    assert_eq!(report["reaped"]["stores"], 0, "{report}");
    // Each says why: the embedded application (its jar) or the argument file keeps the store
    // outside executor-* directories (whichever is met first), the executor and the local
    // session those in theirs.
    let reasons = &report["roots"][0]["idle_reasons"];
    assert_eq!(
        reasons["executor"].as_u64().unwrap_or(0)
            + reasons["spark_jvm"].as_u64().unwrap_or(0)
            + reasons["unknown_jvm"].as_u64().unwrap_or(0),
        3,
        "{report}"
    );
    let kept_by = report["stores_kept_by"].as_array().unwrap();
    assert!(
        kept_by
            .iter()
            .all(|k| k["pid"].is_u64() && k["process"].as_str().is_some_and(|p| p.contains("java"))),
        "{report}"
    );
    assert!(text.contains(" idle (") && text.contains("process "), "{text}");
    // Once they are gone, the stores of the JVMs go; the merge directory stays.
    let (_, report) = node.sweep_json(&config(&env, ""), &[]);
    for gone in [&embedded, &contained, &local] {
        assert!(!gone.exists(), "{} removed: {report}", gone.display());
    }
    assert!(merge.is_dir(), "{report}");
}

#[test]
fn a_store_symlinked_or_mounted_from_elsewhere_is_never_removed() {
    let env = TestEnv::new();
    let root = env.root();
    let victim = empty_store(&env.outside(), "victim-store", &["00", "01"]);
    std::os::unix::fs::symlink(&victim, root.join("blockmgr-link")).unwrap();
    let mounted_victim = empty_store(&env.outside(), "mounted-store", &["00"]);
    let on = root.join("blockmgr-mount");
    let _m = Mounted::bind(&mounted_victim, &on, false);
    // Made after the mount, so the node's mount table has it.
    let Some(node) = Node::new(current_test()) else {
        return;
    };
    quiet();
    let (code, report) = node.sweep_json(&config(&env, ""), &[]);
    assert_eq!(code, 0, "{report}");
    assert!(victim.join("00").exists() && victim.join("01").exists(), "{report}");
    assert!(mounted_victim.join("00").exists(), "{report}");
    assert_eq!(report["reaped"]["stores"], 0, "{report}");
}

fn dirs_below(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// The name of the running test, for SKIPPED lines.
fn current_test() -> &'static str {
    let name = std::thread::current().name().unwrap_or("reap").to_string();
    Box::leak(name.into_boxed_str())
}
