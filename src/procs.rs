//! The node's processes, as far as a store's liveness goes: which JVMs run and since when,
//! which executor directories their environments name, and which directories any process
//! holds open or works in. Read from `/proc` once per sweep, and only when some store is empty
//! and idle long enough to be reaped.
//!
//! "Cannot tell" means alive: when the daemon cannot see every process (it runs in a PID
//! namespace of its own or cannot tell, `/proc` is mounted with `hidepid=` and it lacks
//! `CAP_SYS_PTRACE`, a process's command line cannot be read, or a JVM's open files cannot be),
//! the snapshot says why, and no store is reaped. A JVM is known by its name (`java*`, as soon as
//! it is exec'd) or by `libjvm.so` mapped (whatever started it: the dynamic loader, `jshell`, a
//! JNI host such as Python, a renamed launcher); a process whose memory map even
//! `CAP_SYS_PTRACE` may not read is judged by its threads' names (`VM Thread`...), and one whose
//! map and threads cannot be read makes the snapshot blind. An executor is known by its backend's class; the known services own
//! nothing; any other JVM may be running Spark (an application can embed it with no "spark" on
//! its command line) and counts as a possible driver unless its open jars and class path show
//! it cannot load Spark's store-making class ([`crate::spark_jvm`]). A JVM's start time is
//! computed from the boot time, which moves
//! with every step of the wall clock: a JVM that started before a step seen (here or by an
//! earlier run, [`STEPS_FILE`]) has no trusted start.

use std::collections::HashSet;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::FileType;

use crate::fsx;
use crate::policy::{Nanos, Owner, OwnerKind};
use crate::spark_jvm;

/// Spark's executor backends (Spark 2.x to 4.x, every cluster manager).
const EXECUTORS: [&str; 4] = [
    "org.apache.spark.executor.CoarseGrainedExecutorBackend",
    "org.apache.spark.executor.YarnCoarseGrainedExecutorBackend",
    "org.apache.spark.executor.MesosExecutorBackend",
    "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
];

/// JVMs that never create a block store of their own: Spark's master and worker, the shuffle
/// services, the history server, the Mesos dispatcher, the YARN client-mode launcher (an
/// application master without a SparkContext), the launcher that builds a command; Hadoop's
/// daemons (the node manager hosts the YARN shuffle service), ZooKeeper and Kafka.
const SERVICES: [&str; 18] = [
    "org.apache.spark.deploy.worker.Worker",
    "org.apache.spark.deploy.master.Master",
    "org.apache.spark.deploy.ExternalShuffleService",
    "org.apache.spark.deploy.history.HistoryServer",
    "org.apache.spark.deploy.mesos.MesosClusterDispatcher",
    "org.apache.spark.deploy.mesos.MesosExternalShuffleService",
    "org.apache.spark.deploy.yarn.ExecutorLauncher",
    "org.apache.spark.launcher.Main",
    "org.apache.hadoop.yarn.server.nodemanager.NodeManager",
    "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager",
    "org.apache.hadoop.yarn.server.applicationhistoryservice.ApplicationHistoryServer",
    "org.apache.hadoop.hdfs.server.datanode.DataNode",
    "org.apache.hadoop.hdfs.server.namenode.NameNode",
    "org.apache.hadoop.hdfs.server.namenode.SecondaryNameNode",
    "org.apache.hadoop.hdfs.qjournal.server.JournalNode",
    "org.apache.hadoop.mapreduce.v2.hs.JobHistoryServer",
    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
    "kafka.Kafka",
];

/// The file in `state_dir` recording the clock steps seen, so that a later run (a restart, or
/// the next one-shot sweep) still knows which JVMs started before one.
pub const STEPS_FILE: &str = "clock-steps.json";

/// What a JVM is to the liveness rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// May own a store created within moments of its start.
    Executor,
    /// Any other JVM (spark-submit, a driver, pyspark's JVM, a Thrift server, Livy, an
    /// application embedding Spark...): may own a store it created at any time since its start.
    Driver,
    /// Owns no store.
    Service,
}

fn base(name: &[u8]) -> &[u8] {
    name.rsplit(|&b| b == b'/').next().unwrap_or(name)
}

/// Whether a program name (`argv[0]`, or the executable's path) is a JVM launcher's.
fn is_java(name: &[u8]) -> bool {
    base(name).starts_with(b"java")
}

/// The dynamic loader's options that take a value (`ld.so --library-path DIR PROGRAM ...`).
const LOADER_VALUE_OPTIONS: [&[u8]; 7] = [
    b"--library-path",
    b"--preload",
    b"--argv0",
    b"--audit",
    b"--inhibit-rpath",
    b"--glibc-hwcaps-prefix",
    b"--glibc-hwcaps-mask",
];

/// Where the `java` launcher's own arguments start in a command line: after `argv[0]` when it is
/// the launcher (by its name or its executable's), after the program when the dynamic loader
/// runs it (`ld-linux-x86-64.so.2 /usr/lib/jvm/.../bin/java ...`: then `argv[0]` and the
/// executable are the loader's). `None` when no `java` launcher is named: not a JVM by name.
pub fn launcher_start(args: &[&[u8]], exe: Option<&[u8]>) -> Option<usize> {
    let argv0 = args.first().copied().unwrap_or_default();
    if is_java(argv0) || exe.is_some_and(is_java) {
        return Some(1);
    }
    let loader = |n: &[u8]| {
        let b = base(n);
        b.starts_with(b"ld-linux") || b.starts_with(b"ld.so") || b.starts_with(b"ld-musl") || b.starts_with(b"ld64.so")
    };
    if !(loader(argv0) || exe.is_some_and(loader)) {
        return None;
    }
    let mut i = 1;
    while let Some(a) = args.get(i) {
        if LOADER_VALUE_OPTIONS.contains(a) {
            i += 2;
        } else if a.starts_with(b"--") {
            i += 1;
        } else {
            return is_java(a).then_some(i + 1);
        }
    }
    None
}

/// Whether a memory map (`/proc/PID/maps`) shows a JVM: HotSpot's `libjvm.so` (OpenJ9 has one
/// too, beside its `libj9vm*.so`) mapped, even from a file deleted since (a JDK upgraded under
/// a running JVM).
pub fn maps_show_jvm(maps: &[u8]) -> bool {
    maps.split(|&b| b == b'\n').any(|line| {
        // address perms offset dev inode path: the path is what follows the fifth field.
        let mut rest = line;
        for _ in 0..5 {
            let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
            rest = &rest[start..];
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            rest = &rest[end..];
        }
        let path = rest.trim_ascii_start();
        let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
        let b = base(path);
        b == b"libjvm.so" || (b.starts_with(b"libj9vm") && b.ends_with(b".so"))
    })
}

/// Threads every JVM that ever ran Java code has (`/proc/PID/task/TID/comm`, 15 bytes at most):
/// HotSpot's VM thread and signal dispatcher, the JDK's reference handler, finalizer and cleaner,
/// the compilers; OpenJ9's JIT and signal reporter.
const JVM_THREADS: [&[u8]; 9] = [
    b"VM Thread",
    b"Signal Dispatch",
    b"Reference Handl",
    b"Finalizer",
    b"Common-Cleaner",
    b"C1 CompilerThre",
    b"C2 CompilerThre",
    b"JIT Compilation",
    b"Signal Reporter",
];

/// Whether a process's thread names show a JVM (for a process whose map cannot be read).
pub fn threads_show_jvm<'a>(mut names: impl Iterator<Item = &'a [u8]>) -> bool {
    names.any(|n| {
        let n = n.strip_suffix(b"\n").unwrap_or(n);
        JVM_THREADS.iter().any(|t| n.starts_with(t))
    })
}

fn thread_names(proc_pid: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(proc_pid.join("task"))?.flatten() {
        // A thread that ended meanwhile is not read.
        if let Ok(name) = std::fs::read(t.path().join("comm")) {
            out.push(name);
        }
    }
    Ok(out)
}

/// A JVM's command line, short, for the reports: the program's name and the arguments that are
/// not options (the main class first), at most 100 characters.
pub fn short_command(args: &[&[u8]]) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut skip_next = false;
    for (i, a) in args.iter().enumerate() {
        if i == 0 {
            words.push(String::from_utf8_lossy(base(a)).into_owned());
            continue;
        }
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if a.starts_with(b"-") {
            skip_next = [&b"-cp"[..], b"-classpath", b"--class-path", b"-p", b"--module-path"].contains(a);
            continue;
        }
        words.push(String::from_utf8_lossy(a).into_owned());
    }
    let mut s = words.join(" ");
    if s.chars().count() > 100 {
        s = s.chars().take(99).collect::<String>() + "…";
    }
    s
}

/// Classifies a process by its command line (`/proc/PID/cmdline`, NUL-separated), its
/// executable's path (`/proc/PID/exe`) when it could be read, and whether `libjvm.so` is mapped
/// in it ([`maps_show_jvm`]); `None` when it is not a JVM.
pub fn classify(cmdline: &[u8], exe: Option<&[u8]>, jvm_mapped: bool) -> Option<Role> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
    // By name too: a JVM early in its start has not mapped libjvm.so yet.
    if !jvm_mapped && launcher_start(&args, exe).is_none() {
        return None;
    }
    let has = |class: &str| args.contains(&class.as_bytes());
    if EXECUTORS.iter().any(|c| has(c)) {
        return Some(Role::Executor);
    }
    if SERVICES.iter().any(|c| has(c)) {
        return Some(Role::Service);
    }
    Some(Role::Driver)
}

/// The processes that may own a store, and the directories held open.
#[derive(Debug, Default)]
pub struct Procs {
    /// Why some process could not be seen: then no store may be judged dead.
    pub blind: Option<String>,
    pub owners: Vec<Owner>,
    /// `(device, inode)` of every directory a process has open or as its working directory.
    pub dirs_in_use: HashSet<(u64, u64)>,
    /// The verdicts on open archives, kept from one snapshot to the next.
    cache: Option<spark_jvm::Cache>,
}

/// The field of `/proc/PID/stat` after the command (which may hold spaces, parentheses and
/// bytes that are not UTF-8).
fn stat_field(stat: &[u8], n: usize) -> Option<&str> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Fields after the command start at 3 (state).
    rest.split_whitespace().nth(n.checked_sub(3)?)
}

/// Clock ticks per second, for `/proc/PID/stat` start times.
fn clock_ticks() -> i64 {
    // SAFETY: sysconf reads a constant of the system; no memory of ours is touched.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t } else { 100 }
}

fn read_status_line(proc: &Path, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(proc.join("self/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// The options of the `/proc` in effect: the last mount on `/proc` in `mountinfo` (a later
/// mount hides the earlier ones).
fn proc_mount_options(mountinfo: &str) -> &str {
    mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some("/proc"))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|l| l.split(' ').nth(2))
        .unwrap_or("")
}

/// Why this process cannot see every process of the node, if it cannot.
fn blindness(proc: &Path) -> Option<String> {
    // "NSpid: 1234 1" lists the PID in each nested namespace: more than one, and this is not
    // the node's PID namespace. Kernels before 4.1 have no such line: then it cannot be told.
    match read_status_line(proc, "NSpid:") {
        None => {
            return Some(
                "cannot tell whether it runs in the node's PID namespace (no NSpid in /proc/self/status:                  a kernel older than 4.1)"
                    .into(),
            );
        }
        Some(v) if v.split_whitespace().count() > 1 => {
            return Some(
                "it runs in a PID namespace of its own and cannot see the node's processes (run it in the                  host's: hostPID on Kubernetes)"
                    .into(),
            );
        }
        Some(_) => {}
    }
    let mounts = std::fs::read_to_string(proc.join("self/mountinfo")).unwrap_or_default();
    let proc_opts = proc_mount_options(&mounts);
    let hidden = proc_opts
        .split(',')
        .any(|o| o.strip_prefix("hidepid=").is_some_and(|v| v != "0" && v != "off") || o == "subset=pid");
    // CAP_SYS_PTRACE (19) sees through hidepid.
    let ptrace = read_status_line(proc, "CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << 19) != 0);
    if hidden && !ptrace {
        return Some(format!(
            "/proc is mounted with {proc_opts}: other users' processes are hidden (grant CAP_SYS_PTRACE)"
        ));
    }
    None
}

/// The steps of the wall clock seen in this boot: every step moves `/proc/stat`'s `btime` (the
/// boot time is computed from the wall clock), so a change of it between two reads is a step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Steps {
    boot_id: String,
    /// The boot time last read (seconds).
    btime: i64,
    /// Clock ticks since boot when a step was last seen: JVMs started before it have no trusted
    /// start. 0: none seen.
    suspect_before: i64,
}

static STEPS: Mutex<Option<Steps>> = Mutex::new(None);

/// Records the boot time read now, and returns the clock ticks since boot before which a JVM's
/// start cannot be trusted (a step was seen since, by this process or, through `state_dir`, an
/// earlier run in this boot). Changes of less than 2 s are the rounding of `btime` and the slew
/// of NTP, not steps.
fn steps_seen(cell: &Mutex<Option<Steps>>, proc: &Path, state_dir: Option<&Path>, btime: i64, now_ticks: i64) -> i64 {
    let boot_id = std::fs::read_to_string(proc.join("sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut held = cell.lock().unwrap_or_else(|e| e.into_inner());
    if held.as_ref().is_none_or(|s| s.boot_id != boot_id) {
        *held = state_dir
            .and_then(|d| std::fs::read(d.join(STEPS_FILE)).ok())
            .and_then(|b| serde_json::from_slice::<Steps>(&b).ok())
            .filter(|s| s.boot_id == boot_id);
    }
    let before = held.clone();
    let steps = held.get_or_insert_with(|| Steps {
        boot_id,
        btime,
        suspect_before: 0,
    });
    if (btime - steps.btime).abs() >= 2 {
        steps.suspect_before = now_ticks;
        tracing::warn!(
            boot_time_moved_by_seconds = btime - steps.btime,
            "the wall clock was stepped: the JVMs running now may own any block store until they exit"
        );
    }
    steps.btime = btime;
    let changed = before.as_ref() != Some(steps);
    if changed && let Some(dir) = state_dir {
        // Best effort, written atomically; without it a later run only misses this step.
        let tmp = dir.join(format!(".{STEPS_FILE}.tmp"));
        if let Ok(text) = serde_json::to_vec(steps)
            && std::fs::write(&tmp, text).is_ok()
        {
            let _ = std::fs::rename(&tmp, dir.join(STEPS_FILE));
        }
    }
    steps.suspect_before
}

/// Clock ticks since boot, from `/proc/uptime` (the clock of `/proc/PID/stat` start times).
fn uptime_ticks(proc: &Path, ticks: i64) -> Option<i64> {
    let up = std::fs::read_to_string(proc.join("uptime")).ok()?;
    let secs: f64 = up.split_whitespace().next()?.parse().ok()?;
    Some((secs * ticks as f64) as i64)
}

impl Procs {
    /// Reads `proc` (normally `/proc`). `state_dir` keeps the clock steps seen across runs.
    pub fn read(proc: &Path, state_dir: Option<&Path>) -> Procs {
        let mut out = Procs {
            blind: blindness(proc),
            ..Procs::default()
        };
        if out.blind.is_some() {
            return out;
        }
        let boot = std::fs::read_to_string(proc.join("stat")).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
        });
        let ticks = clock_ticks();
        let (Some(boot), Some(now_ticks)) = (boot, uptime_ticks(proc, ticks)) else {
            out.blind = Some("cannot read the boot time from /proc/stat and /proc/uptime".into());
            return out;
        };
        let suspect_before = steps_seen(&STEPS, proc, state_dir, boot, now_ticks);
        let entries = match std::fs::read_dir(proc) {
            Ok(e) => e,
            Err(e) => {
                out.blind = Some(format!("cannot list /proc: {e}"));
                return out;
            }
        };
        let me = std::process::id();
        let clock = Clock {
            boot,
            ticks,
            suspect_before,
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // This process's own fds are the sweep's, not holds.
            if pid == me {
                continue;
            }
            if let Err(why) = out.read_process(&e.path(), pid, &clock) {
                out.blind = Some(why);
                break;
            }
        }
        if let Some(c) = out.cache.take() {
            c.put_back();
        }
        out
    }

    fn read_process(&mut self, dir: &Path, pid: u32, clock: &Clock) -> Result<(), String> {
        let gone = |e: &io::Error| matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(libc::ESRCH);
        let refused = |what: &str, e: &io::Error| {
            format!("cannot read {what} of process {pid} ({e}): it may own a store (grant CAP_SYS_PTRACE)")
        };
        // Every process's command line must be readable: that is what tells a JVM.
        let cmdline = match std::fs::read(dir.join("cmdline")) {
            Ok(c) => c,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(refused("the command line", &e)),
        };
        let exe = std::fs::read_link(dir.join("exe")).ok();
        let exe = exe.as_ref().map(|p| p.as_os_str().as_bytes());
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
        // Not a JVM by name: by what it has mapped. Every process's map must be readable then,
        // as its command line must: a JVM started some other way shows only there.
        let mapped = launcher_start(&args, exe).is_none() && {
            match std::fs::read(dir.join("maps")) {
                Ok(maps) => maps_show_jvm(&maps),
                Err(e) if gone(&e) => return Ok(()),
                // A process that even CAP_SYS_PTRACE may not inspect (a sandbox's init, one an
                // LSM guards): its threads' names, which anyone may read, show a JVM as well.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => match thread_names(dir) {
                    Ok(names) => threads_show_jvm(names.iter().map(Vec::as_slice)),
                    Err(e) if gone(&e) => return Ok(()),
                    Err(_) => return Err(refused("the memory map", &e)),
                },
                Err(e) => return Err(refused("the memory map", &e)),
            }
        };
        let role = classify(&cmdline, exe, mapped);
        // Directories held: the working directory and every open directory. A process that is
        // not a JVM cannot own a store, so its holds, when they cannot be read, are not needed
        // (removing a directory someone works in harms them nothing: they cannot create files
        // in it). A JVM's must be read.
        let jvm = matches!(role, Some(Role::Executor | Role::Driver));
        match fsx::stat_proc_link(&dir.join("cwd")) {
            Ok((_, dev, ino)) => {
                self.dirs_in_use.insert((dev, ino));
            }
            Err(e) if gone(&e) => return Ok(()),
            Err(e) if jvm => return Err(refused("the working directory", &e)),
            Err(_) => {}
        }
        // A possible driver's open regular files: they tell whether it has Spark.
        let mut files = Vec::new();
        match std::fs::read_dir(dir.join("fd")) {
            Ok(fds) => {
                for fd in fds.flatten() {
                    match fsx::stat_proc_link(&fd.path()) {
                        Ok((FileType::Directory, dev, ino)) => {
                            self.dirs_in_use.insert((dev, ino));
                        }
                        Ok((FileType::RegularFile, _, _)) if role == Some(Role::Driver) => files.push(fd.path()),
                        Ok(_) => {}
                        Err(e) if jvm && e.kind() == io::ErrorKind::PermissionDenied => {
                            return Err(refused("the open files", &e));
                        }
                        Err(_) => {} // closed meanwhile, or not a JVM's
                    }
                }
            }
            Err(e) if gone(&e) => return Ok(()),
            Err(e) if jvm => return Err(refused("the open files", &e)),
            Err(_) => {}
        }
        let Some(role) = role else { return Ok(()) };
        if role == Role::Service {
            return Ok(());
        }
        let stat = match std::fs::read(dir.join("stat")) {
            Ok(s) => s,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(refused("the start time", &e)),
        };
        let Some(start_ticks) = stat_field(&stat, 22).and_then(|t| t.parse::<i64>().ok()) else {
            return Err(format!("cannot read the start time of process {pid}"));
        };
        let start = (start_ticks >= clock.suspect_before).then(|| {
            clock
                .boot
                .saturating_mul(1_000_000_000)
                .saturating_add(start_ticks.saturating_mul(1_000_000_000) / clock.ticks)
        });
        let environ = std::fs::read(dir.join("environ")).ok();
        let dirs = environ.as_deref().and_then(|env| env_dirs(dir, env));
        let command = short_command(&args);
        let (kind, about, unjudged) = match role {
            Role::Executor => (OwnerKind::Executor { dirs }, format!("{pid} ({command})"), false),
            _ => {
                let launcher = launcher_start(&args, exe).map(|i| &args[i.min(args.len())..]);
                let cache = self.cache.get_or_insert_with(spark_jvm::Cache::take);
                match spark_jvm::judge(dir, launcher, environ.as_deref(), &files, cache) {
                    spark_jvm::Verdict::NoSpark => {
                        tracing::debug!(pid, command, "a JVM without Spark's classes: it owns no block store");
                        return Ok(());
                    }
                    spark_jvm::Verdict::Spark(why) => {
                        (OwnerKind::Driver { dirs }, format!("{pid} ({command}): {why}"), false)
                    }
                    spark_jvm::Verdict::Unknown(why) => {
                        (OwnerKind::Driver { dirs }, format!("{pid} ({command}): {why}"), true)
                    }
                }
            }
        };
        self.owners.push(Owner {
            pid,
            start,
            kind,
            about,
            unjudged,
        });
        Ok(())
    }
}

/// What a JVM's start time is computed from.
struct Clock {
    boot: i64,
    ticks: i64,
    suspect_before: i64,
}

/// `(device, inode)` of the directories a JVM's environment names as its local directories
/// (`SPARK_EXECUTOR_DIRS`, `SPARK_LOCAL_DIRS`), resolved in its own mount namespace (through
/// `/proc/PID/root`: a containerised worker's paths are not this process's). `None` when the
/// environment cannot be read or a directory it names cannot be resolved: then it may use any.
fn env_dirs(proc_pid: &Path, env: &[u8]) -> Option<Vec<(u64, u64)>> {
    let root = proc_pid.join("root");
    let mut out = Vec::new();
    for var in [&b"SPARK_EXECUTOR_DIRS="[..], b"SPARK_LOCAL_DIRS="] {
        let Some(value) = env.split(|&b| b == 0).find_map(|v| v.strip_prefix(var)) else {
            continue;
        };
        for d in value.split(|&b| b == b':' || b == b',').filter(|d| !d.is_empty()) {
            let path = Path::new(std::ffi::OsStr::from_bytes(d));
            let inside: PathBuf = root.join(path.strip_prefix("/").unwrap_or(path));
            let (_, dev, ino) = fsx::stat_proc_link(&inside).ok()?;
            out.push((dev, ino));
        }
    }
    Some(out)
}

/// The wall-clock start of process `pid` (`/proc/PID/stat`), for tests.
pub fn start_of(proc: &Path, pid: u32) -> Option<Nanos> {
    let boot = std::fs::read_to_string(proc.join("stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())?;
    let stat = std::fs::read(proc.join(pid.to_string()).join("stat")).ok()?;
    let t: i64 = stat_field(&stat, 22)?.parse().ok()?;
    Some(boot * 1_000_000_000 + t * 1_000_000_000 / clock_ticks())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn cmd(args: &[&str]) -> Vec<u8> {
        args.iter().flat_map(|a| a.bytes().chain([0])).collect()
    }

    #[test]
    fn command_lines_are_classified_and_unknown_jvms_may_be_drivers() {
        let exec = cmd(&[
            "/usr/lib/jvm/java-17/bin/java",
            "-cp",
            "/opt/spark/conf/:/opt/spark/jars/*",
            "-Xmx1024M",
            "org.apache.spark.executor.CoarseGrainedExecutorBackend",
            "--driver-url",
            "spark://CoarseGrainedScheduler@10.0.0.1:7078",
        ]);
        assert_eq!(classify(&exec, None, false), Some(Role::Executor));
        let k8s = cmd(&[
            "java",
            "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        ]);
        assert_eq!(classify(&k8s, None, false), Some(Role::Executor));
        let worker = cmd(&[
            "/usr/bin/java",
            "-cp",
            "/opt/spark/jars/*",
            "org.apache.spark.deploy.worker.Worker",
        ]);
        assert_eq!(classify(&worker, None, false), Some(Role::Service));
        let ess = cmd(&["java", "-cp", "x", "org.apache.spark.deploy.ExternalShuffleService"]);
        assert_eq!(classify(&ess, None, false), Some(Role::Service));
        assert_eq!(
            classify(&cmd(&["java", "kafka.Kafka", "server.properties"]), None, false),
            Some(Role::Service)
        );
        let submit = cmd(&[
            "java",
            "-cp",
            "/opt/spark/jars/*",
            "org.apache.spark.deploy.SparkSubmit",
            "pyspark-shell",
        ]);
        assert_eq!(classify(&submit, None, false), Some(Role::Driver));
        // Spark embedded with nothing on the command line that says so (the class path a
        // wildcard the JVM expands, an @argfile, a fat jar): a possible driver all the same.
        for embedded in [
            cmd(&["java", "-cp", "/opt/app/lib/*", "com.acme.ReportService"]),
            cmd(&["java", "@/etc/app/jvm.args"]),
            cmd(&["java", "-jar", "service.jar"]),
        ] {
            assert_eq!(classify(&embedded, None, false), Some(Role::Driver));
        }
        // A JVM renamed through argv[0] is still known by its executable.
        let renamed = cmd(&["report-service", "-cp", "x", "com.acme.Main"]);
        assert_eq!(
            classify(&renamed, Some(b"/usr/lib/jvm/java-17/bin/java"), false),
            Some(Role::Driver)
        );
        assert_eq!(classify(&renamed, None, false), None);
        assert_eq!(
            classify(
                &cmd(&["python3", "my_pyspark_job.py"]),
                Some(b"/usr/bin/python3.11"),
                false
            ),
            None
        );
        assert_eq!(classify(b"", None, false), None);
        // Known by libjvm.so mapped, whatever its name: jshell, a JNI host, a renamed launcher.
        let python = cmd(&["python3", "-c", "import jpype; jpype.startJVM()"]);
        assert_eq!(
            classify(&python, Some(b"/usr/bin/python3.11"), true),
            Some(Role::Driver)
        );
        assert_eq!(classify(&renamed, None, true), Some(Role::Driver));
        // Started through the dynamic loader: argv[0] and the executable are the loader's.
        let loaded = cmd(&[
            "/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
            "-cp",
            "/opt/spark/jars/*",
            "org.apache.spark.executor.CoarseGrainedExecutorBackend",
        ]);
        let loader = Some(&b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"[..]);
        assert_eq!(
            classify(&loaded, loader, false),
            Some(Role::Executor),
            "by name, before libjvm is mapped"
        );
        assert_eq!(classify(&loaded, loader, true), Some(Role::Executor));
        assert_eq!(
            classify(&cmd(&["/lib64/ld-linux-x86-64.so.2", "/bin/ls"]), loader, false),
            None
        );
    }

    #[test]
    fn the_java_launcher_is_found_behind_the_dynamic_loader() {
        let a = |v: &[&'static str]| v.iter().map(|s| s.as_bytes()).collect::<Vec<_>>();
        assert_eq!(launcher_start(&a(&["java", "-cp", "x", "M"]), None), Some(1));
        assert_eq!(launcher_start(&a(&["app", "M"]), Some(b"/opt/jdk/bin/java")), Some(1));
        assert_eq!(
            launcher_start(
                &a(&[
                    "/lib/ld-linux-x86-64.so.2",
                    "--library-path",
                    "/l",
                    "--inhibit-cache",
                    "/jdk/bin/java",
                    "M"
                ]),
                None
            ),
            Some(5)
        );
        assert_eq!(
            launcher_start(&a(&["ld-linux-aarch64.so.1", "/jdk/bin/java"]), None),
            Some(2)
        );
        assert_eq!(launcher_start(&a(&["ld-musl-x86_64.so.1", "/bin/sh"]), None), None);
        assert_eq!(launcher_start(&a(&["jshell", "--execution", "local"]), None), None);
        assert_eq!(
            short_command(&a(&[
                "/usr/bin/java",
                "-Xmx1g",
                "-cp",
                "/a:/b",
                "com.acme.Main",
                "--port",
                "80"
            ])),
            "java com.acme.Main 80"
        );
        let long = "x".repeat(300);
        assert_eq!(short_command(&[b"java", long.as_bytes()]).chars().count(), 100);
    }

    #[test]
    fn a_jvm_is_known_by_the_libjvm_it_maps() {
        let hotspot =
            b"55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1311 /usr/lib/jvm/java-17-openjdk-amd64/bin/java\n\
7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0 \n\
7f3a2b200000-7f3a2b4ad000 r--p 00000000 08:01 1442 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so\n";
        assert!(maps_show_jvm(hotspot));
        // A JDK upgraded under a running JVM; a path with spaces; OpenJ9.
        assert!(maps_show_jvm(
            b"7f00-7f01 r-xp 00000000 08:01 9 /opt/jdk/lib/server/libjvm.so (deleted)\n"
        ));
        assert!(maps_show_jvm(
            b"7f00-7f01 r-xp 00000000 08:01 9 /opt/my jdk/lib/server/libjvm.so"
        ));
        assert!(maps_show_jvm(
            b"7f00-7f01 r-xp 00000000 08:01 9 /opt/j9/lib/default/libj9vm29.so\n"
        ));
        // Not a JVM: a library of a similar name, a file named so elsewhere on the line, nothing.
        for other in [
            &b"7f00-7f01 r-xp 00000000 08:01 9 /usr/lib/libjvmti_helper.so\n"[..],
            b"7f00-7f01 r-xp 00000000 08:01 9 /tmp/libjvm.so.txt\n",
            b"7f00-7f01 r-xp 00000000 08:01 9 [heap]\n",
            b"",
        ] {
            assert!(!maps_show_jvm(other), "{}", String::from_utf8_lossy(other));
        }
        // This test process maps no JVM.
        assert!(!maps_show_jvm(&std::fs::read("/proc/self/maps").unwrap()));
        // Its threads' names show a JVM whose map cannot be read.
        let names: [&[u8]; 3] = [b"java\n", b"GC Thread#0\n", b"VM Thread\n"];
        assert!(threads_show_jvm(names.into_iter()));
        let j9: [&[u8]; 2] = [b"main\n", b"JIT Compilation\n"];
        assert!(threads_show_jvm(j9.into_iter()));
        let other: [&[u8]; 3] = [b"process_api\n", b"tokio-rt-worker\n", b"VM\n"];
        assert!(!threads_show_jvm(other.into_iter()));
        let me = thread_names(Path::new("/proc/self")).unwrap();
        assert!(!threads_show_jvm(me.iter().map(Vec::as_slice)));
    }

    #[test]
    fn the_stat_line_and_the_proc_mount_are_read_as_the_kernel_writes_them() {
        assert_eq!(stat_field(b"1 (a b) c) S 0 1 2", 4), Some("0"));
        // A command name that is not UTF-8 does not hide the fields after it.
        assert_eq!(stat_field(b"7 (j\xffv\xfe)) S 1 2 3", 5), Some("2"));
        let mountinfo = "22 1 0:5 / /proc rw,nosuid - proc proc rw\n\
                         30 22 0:40 / /proc rw,relatime - proc proc rw,hidepid=invisible\n\
                         31 1 0:41 / /sys rw - sysfs sysfs rw\n";
        assert_eq!(proc_mount_options(mountinfo), "rw,hidepid=invisible");
    }

    #[test]
    fn a_step_of_the_boot_time_is_seen_and_kept_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let proc = Path::new("/proc");
        let seen = |state: Option<&Path>, btime, now| {
            // Each call is a run of its own: nothing held in memory.
            let cell = Mutex::new(None);
            steps_seen(&cell, proc, state, btime, now)
        };
        assert_eq!(seen(Some(dir.path()), 1_000, 500), 0);
        assert_eq!(seen(Some(dir.path()), 1_001, 600), 0, "rounding, not a step");
        assert_eq!(seen(Some(dir.path()), 1_300, 700), 700, "a step forward");
        assert_eq!(seen(Some(dir.path()), 1_300, 800), 700, "remembered by the file");
        assert_eq!(seen(Some(dir.path()), 1_100, 900), 900, "a step back");
        assert_eq!(seen(None, 1_100, 950), 0, "nothing kept: nothing known");
        // Within one run, memory is enough.
        let cell = Mutex::new(None);
        assert_eq!(steps_seen(&cell, proc, None, 5_000, 10), 0);
        assert_eq!(steps_seen(&cell, proc, None, 5_060, 20), 20);
    }

    #[test]
    fn a_process_working_in_a_directory_is_seen_and_this_one_is_not() {
        let held = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(held.path())
            .spawn()
            .unwrap();
        let procs = Procs::read(Path::new("/proc"), None);
        let _ = child.kill();
        let _ = child.wait();
        if let Some(why) = &procs.blind {
            eprintln!("SKIPPED a_process_working_in_a_directory_is_seen: {why}");
            return;
        }
        let m = std::fs::metadata(held.path()).unwrap();
        // Seen even while it may still be in the middle of its exec (no command line yet).
        assert!(procs.dirs_in_use.contains(&(m.dev(), m.ino())));
        assert!(procs.owners.iter().all(|o| o.pid != std::process::id()));
        let me = start_of(Path::new("/proc"), std::process::id()).unwrap();
        let now = crate::policy::nanos(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap(),
        );
        assert!(me <= now && me > now - 3_600_000_000_000, "{me} vs {now}");
    }
}
