//! The liveness rule attacked the way real nodes break it (issue "Never remove a live
//! executor's store"): a janitor in a PID namespace of its own with its own /proc, wall-clock
//! steps too small to be seen one by one, a `/proc/uptime` rewritten as LXCFS does, an executor
//! given 40 minutes to reach its driver, and roots configured inside other roots. In each, a
//! live executor owns an empty, quiet store: it must stay. Every scenario gives the binary a node
//! of its own (a PID namespace with its own /proc) so nothing else on the machine decides.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Node, NodeChild};
use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("liveness_own_pid_namespace", own_pid_namespace),
    ("liveness_clock_steps_add_up", |sc| clock_steps(sc, false)),
    ("liveness_clock_step_under_lxcfs_uptime", |sc| clock_steps(sc, true)),
    ("liveness_daemon_steps_undone", daemon_steps_undone),
    ("liveness_executor_network_timeout", network_timeout),
    ("liveness_nested_roots", nested_roots),
];

/// A process that looks like a Spark executor to `/proc`, in `node` (or on the host), with
/// `extra` arguments before the backend's class.
fn executor(node: Option<&Node>, extra: &str) -> Option<NodeChild> {
    let script =
        format!("exec -a java perl -e 'sleep 600' -- {extra} org.apache.spark.executor.CoarseGrainedExecutorBackend");
    let child = match node {
        Some(n) => {
            let mut c = n.command("bash");
            c.arg("-c").arg(script).stdin(Stdio::null());
            n.spawn(c)
        }
        // On the host: a child of an `nsenter`-less wrapper, killed the same way.
        None => {
            let outer = std::process::Command::new("bash")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let pid = outer.id();
            NodeChild::adopt(outer, pid)
        }
    };
    for _ in 0..200 {
        let cmd = std::fs::read(format!("/proc/{}/cmdline", child.pid)).unwrap_or_default();
        if cmd.starts_with(b"java\0") {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn empty_store(dir: &Path) -> PathBuf {
    for nn in ["00", "0c"] {
        std::fs::create_dir_all(dir.join(nn)).unwrap();
    }
    dir.to_path_buf()
}

fn write_config(s: &Scratch, roots: &[&Path], stores: &str) -> PathBuf {
    let config = s.join("liveness.toml");
    let state = s.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        &config,
        config_text(
            roots,
            &format!(
                "state_dir = {:?}\n[watermark]\nhigh = 0.999\nlow = 0.998\n[stores]\nmin_idle = \"1s\"\nexecutor_startup = \"1m\"\n{stores}",
                state.display().to_string()
            ),
        ),
    )
    .unwrap();
    config
}

/// The janitor in a container without the host's PID namespace (its own /proc): it sees none of
/// the node's JVMs, so it must remove nothing. The executor runs on the host; the janitor in a
/// node of its own, told nothing (the default `pid_namespace = "node"`).
fn own_pid_namespace(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let Some(mut exec) = executor(None, "") else {
        return sc.skip("no process could be made to look like an executor");
    };
    std::thread::sleep(Duration::from_millis(3000));
    let store = empty_store(&root.join(bm("live")));
    // A store older than the executor: dead whoever looks.
    let Some(node) = Node::new("liveness_own_pid_namespace") else {
        return sc.skip("no PID namespace of its own can be made here (root needed)");
    };
    std::thread::sleep(Duration::from_millis(1200));
    let config = write_config(&s, &[&root], "");
    let (code, report, stderr) = sweep_in(&node, &config);
    sc.iterations += 1;
    exec.kill();
    sc.check(code == 0, || format!("sweep failed ({code}): {stderr}"));
    if !store.join("00").is_dir() {
        sc.violation(format!(
            "the live executor's store was removed by a janitor that cannot see it: {report}"
        ));
    }
    let unknown = report["liveness_unknown"].as_str().unwrap_or_default().to_string();
    sc.check(unknown.contains("PID namespace of its own"), || {
        format!("the report does not say why stores are kept: {report}")
    });
    sc.note(format!("blind, and said so: {unknown}"));
}

/// Steps the wall clock by `ns` nanoseconds (CLOCK_REALTIME), as ntpdate or a hypervisor's
/// tools do.
fn step_clock(ns: i64) -> bool {
    use rustix::time::{ClockId, Timespec};
    let now = rustix::time::clock_gettime(ClockId::Realtime);
    let t = now.tv_sec as i128 * 1_000_000_000 + now.tv_nsec as i128 + ns as i128;
    let to = Timespec {
        tv_sec: (t.div_euclid(1_000_000_000)) as i64,
        tv_nsec: (t.rem_euclid(1_000_000_000)) as i64,
    };
    rustix::time::clock_settime(ClockId::Realtime, to).is_ok()
}

/// Puts the wall clock back by what it was stepped, whatever happens to the scenario.
struct Stepped(i64);

impl Drop for Stepped {
    fn drop(&mut self) {
        if self.0 != 0 {
            step_clock(-self.0);
        }
    }
}

/// Eight forward steps of 0.8 s (each under the 2 s that was taken for rounding), a sweep after
/// each: 6.4 s in all. A store born 3 s after its executor started must not be judged born
/// before it. With `lxcfs`, the node's `/proc/uptime` says the container's uptime (5 s), as
/// LXCFS makes it, and there is one step of 8 s.
fn clock_steps(sc: &mut Sc, lxcfs: bool) {
    if !step_clock(0) {
        return sc.skip("the wall clock cannot be set here (CAP_SYS_TIME)");
    }
    let s = Scratch::new();
    let root = s.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let Some(node) = Node::new("liveness_clock_steps") else {
        return sc.skip("no PID namespace of its own can be made here (root needed)");
    };
    if lxcfs {
        let fake = s.join("uptime");
        std::fs::write(&fake, "5.00 9.00\n").unwrap();
        let ok = node
            .command("mount")
            .arg("--bind")
            .arg(&fake)
            .arg("/proc/uptime")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return sc.skip("/proc/uptime cannot be bind-mounted over in the node");
        }
    }
    let Some(mut exec) = executor(Some(&node), "") else {
        return sc.skip("no process could be made to look like an executor");
    };
    std::thread::sleep(Duration::from_millis(3000));
    let store = empty_store(&root.join(bm("born-3s-after")));
    std::thread::sleep(Duration::from_millis(1200));
    let config = write_config(&s, &[&root], "pid_namespace = \"own\"");
    // The first look sets the baseline.
    let (code, report, stderr) = sweep_in(&node, &config);
    sc.check(code == 0, || format!("sweep failed ({code}): {stderr}"));
    sc.check(report["reaped"]["stores"] == 0, || {
        format!("reaped before any step: {report}")
    });
    let mut stepped = Stepped(0);
    let steps: &[i64] = if lxcfs { &[8_000_000_000] } else { &[800_000_000; 8] };
    for &step in steps {
        if !step_clock(step) {
            return sc.skip("the wall clock could not be stepped");
        }
        stepped.0 += step;
        let (code, report, stderr) = sweep_in(&node, &config);
        sc.iterations += 1;
        sc.check(code == 0, || format!("sweep failed ({code}): {stderr}"));
        if !store.join("00").is_dir() {
            sc.violation(format!(
                "the live executor's store was removed after the clock moved {} ms: {report}",
                stepped.0 / 1_000_000
            ));
            break;
        }
    }
    drop(stepped);
    exec.kill();
    // Its executor gone, the store is dead.
    let (_, report, _) = sweep_in(&node, &config);
    sc.check(!store.exists(), || format!("the dead store was kept: {report}"));
    sc.deletions = jnum(&report, &["reaped", "stores"]);
    sc.note(format!(
        "{} steps, store kept while its executor lived, removed after",
        steps.len()
    ));
}

/// The daemon runs; an executor starts; the wall clock is set back 30 s, the executor's store is
/// made (its birth stamped 30 s early, before the executor's start on the wall clock), and the
/// clock is set forward again, all between two sweeps: the boot time reads as before, and only
/// the kernel's word that the clock was set tells. The store must stay while its executor lives.
fn daemon_steps_undone(sc: &mut Sc) {
    if !step_clock(0) {
        return sc.skip("the wall clock cannot be set here (CAP_SYS_TIME)");
    }
    let s = Scratch::new();
    let root = s.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let state = s.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let Some(node) = Node::new("liveness_daemon_steps_undone") else {
        return sc.skip("no PID namespace of its own can be made here (root needed)");
    };
    let body = config_text(
        &[&root],
        &format!(
            "state_dir = {:?}\ninterval = \"1s\"\n[watermark]\nhigh = 0.999\nlow = 0.998\npoll = \"1s\"\n[stores]\nmin_idle = \"1s\"\nexecutor_startup = \"1m\"\npid_namespace = \"own\"",
            state.display().to_string()
        ),
    );
    let mut daemon = Daemon::start_in(&node, s.path(), &body);
    let Some(mut exec) = executor(Some(&node), "") else {
        return sc.skip("no process could be made to look like an executor");
    };
    std::thread::sleep(Duration::from_millis(1500));
    let store = root.join(bm("made-while-set-back"));
    {
        let mut stepped = Stepped(0);
        if !step_clock(-30_000_000_000) {
            return sc.skip("the wall clock could not be stepped");
        }
        stepped.0 = -30_000_000_000;
        empty_store(&store);
        drop(stepped);
    }
    // Sweeps every second, min_idle 1 s: judged many times over while the executor lives.
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        sc.iterations += 1;
        if !store.join("00").is_dir() {
            sc.violation(format!(
                "the live executor's store was removed after the clock was set back and forth: {}",
                daemon.log_tail(20)
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    exec.kill();
    let gone = daemon
        .wait_metric(
            "shuffle_janitor_reaped_stores_total",
            &[],
            Duration::from_secs(10),
            |v| v >= 1.0,
        )
        .is_some_and(|v| v >= 1.0);
    sc.check(gone && !store.exists(), || {
        format!("its executor gone, the store stayed: {}", daemon.log_tail(20))
    });
    sc.deletions = u64::from(!store.exists());
    daemon.no_panic(sc);
    let _ = daemon.stop(Duration::from_secs(5));
}

/// An executor whose command line gives it 80 minutes to reach its driver
/// (`-Dspark.network.timeout=600s`, as Spark passes it: 80 minutes by Spark's budget) creates its
/// store 62 s after its start,
/// past `stores.executor_startup` (1m): still its own.
fn network_timeout(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let Some(node) = Node::new("liveness_executor_network_timeout") else {
        return sc.skip("no PID namespace of its own can be made here (root needed)");
    };
    let Some(mut exec) = executor(Some(&node), "-Dspark.network.timeout=600s") else {
        return sc.skip("no process could be made to look like an executor");
    };
    let older = empty_store(&root.join(bm("older")));
    let _ = older;
    std::thread::sleep(Duration::from_secs(62));
    let store = empty_store(&root.join(bm("slow-start")));
    std::thread::sleep(Duration::from_millis(1200));
    let config = write_config(&s, &[&root], "pid_namespace = \"own\"");
    let (code, report, stderr) = sweep_in(&node, &config);
    sc.iterations += 1;
    exec.kill();
    sc.check(code == 0, || format!("sweep failed ({code}): {stderr}"));
    if !store.join("00").is_dir() {
        sc.violation(format!(
            "the store a slow executor made 62 s after its start was removed: {report}"
        ));
    }
    let (_, report, _) = sweep_in(&node, &config);
    sc.check(!store.exists(), || {
        format!("its executor gone, the store stays: {report}")
    });
    sc.deletions = jnum(&report, &["reaped", "stores"]);
}

/// `roots = ["R", "R/blockmgr-j", "R/spark-w/executor-1", "R/blockmgr-m/00/mnt"]`: the inner
/// roots are stores and an executor directory of the outer one's layout, empty and quiet, and
/// one is not there yet, below a store. A root, and what is above one, is never removed.
fn nested_roots(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let inner = empty_store(&root.join(bm("j")));
    let exec_dir = root.join("spark-w/executor-1");
    let in_exec = empty_store(&exec_dir.join(bm("k")));
    let dead = empty_store(&root.join(bm("dead")));
    // A root configured below a store, not there yet (disks are mounted late).
    let above_missing = empty_store(&root.join(bm("above-missing")));
    let missing = above_missing.join("00/mnt");
    let Some(node) = Node::new("liveness_nested_roots") else {
        return sc.skip("no PID namespace of its own can be made here (root needed)");
    };
    std::thread::sleep(Duration::from_millis(1200));
    let config = write_config(&s, &[&root, &inner, &exec_dir, &missing], "pid_namespace = \"own\"");
    let (code, report, stderr) = sweep_in(&node, &config);
    sc.iterations += 1;
    sc.check(code == 0, || format!("sweep failed ({code}): {stderr}"));
    for (what, p) in [
        ("a configured root", &inner),
        ("a configured root", &exec_dir),
        ("a store above a configured root", &above_missing),
    ] {
        if !p.is_dir() {
            sc.violation(format!("{what} was removed: {}: {report}", p.display()));
        }
    }
    sc.check(!dead.exists() && !in_exec.exists(), || {
        format!("the dead stores that are no root stayed: {report}")
    });
    sc.deletions = jnum(&report, &["reaped", "stores"]);
}
