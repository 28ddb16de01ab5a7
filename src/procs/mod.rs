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
use std::path::Path;
use std::sync::Mutex;

use rustix::fs::FileType;

use crate::config::PidNamespace;
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

/// Whether this process has `CAP_SYS_PTRACE` (bit 19) in its effective set (`proc`'s
/// `self/status`, `CapEff:`).
pub fn has_cap_sys_ptrace(proc: &Path) -> bool {
    read_status_line(proc, "CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << 19) != 0)
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

/// The inode of the kernel's initial PID namespace (`PROC_PID_INIT_INO`, fixed since Linux 3.8):
/// the node's.
const INITIAL_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// Whether the procfs at `proc` is of the PID namespace this process runs in: `/proc/self`
/// names this process by its PID in the procfs's namespace, so a procfs of any other namespace
/// (the host's seen from a container, or a container's) names another PID or none.
fn procfs_is_own(proc: &Path) -> Result<(), String> {
    let me = std::process::id();
    match std::fs::read_link(proc.join("self")) {
        Ok(p) if p.to_str().and_then(|s| s.parse::<u32>().ok()) == Some(me) => Ok(()),
        Ok(p) => Err(format!(
            "{} is the /proc of another PID namespace (its self is {}, this process is {me}): its processes are not this namespace's",
            proc.display(),
            p.display()
        )),
        Err(e) => Err(format!("cannot read {}/self ({e})", proc.display())),
    }
}

/// Whether this process runs in the node's PID namespace, judged by the namespace's own inode
/// (`/proc/self/ns/pid` is a handle on the namespace, not a view of a procfs): a procfs mounted
/// in a namespace of its own lists only that namespace's processes, and says nothing of a parent.
fn in_node_pid_namespace(proc: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(proc.join("self/ns/pid")) {
        Ok(m) if m.ino() == INITIAL_PID_NS_INO => Ok(()),
        Ok(m) => Err(format!(
            "it runs in a PID namespace of its own (pid:[{}], the node's is pid:[{INITIAL_PID_NS_INO}]) and cannot see the node's processes: run it in the host's (hostPID on Kubernetes, no namespaces/pid isolation on Mesos), or set stores.pid_namespace = \"own\" only if every Spark JVM runs in its namespace",
            m.ino()
        )),
        Err(e) => Err(format!(
            "cannot tell whether it runs in the node's PID namespace ({}/self/ns/pid: {e}; Linux 3.8 or later has it)",
            proc.display()
        )),
    }
}

/// Why this process cannot see every process of the node (or, with [`PidNamespace::Own`], of
/// its own PID namespace), if it cannot.
fn blindness(proc: &Path, ns: PidNamespace) -> Option<String> {
    if let Err(why) = procfs_is_own(proc) {
        return Some(why);
    }
    if ns == PidNamespace::Node
        && let Err(why) = in_node_pid_namespace(proc)
    {
        return Some(why);
    }
    let mounts = std::fs::read_to_string(proc.join("self/mountinfo")).unwrap_or_default();
    let proc_opts = proc_mount_options(&mounts);
    let hidden = proc_opts
        .split(',')
        .any(|o| o.strip_prefix("hidepid=").is_some_and(|v| v != "0" && v != "off") || o == "subset=pid");
    // CAP_SYS_PTRACE sees through hidepid.
    if hidden && !has_cap_sys_ptrace(proc) {
        return Some(format!(
            "/proc is mounted with {proc_opts}: other users' processes are hidden (grant CAP_SYS_PTRACE)"
        ));
    }
    None
}

/// How far the boot time (wall clock minus time since boot) may move before it counts as a step
/// of the wall clock. Both clocks are slewed alike by NTP, so the boot time moves only when the
/// wall clock is set; this absorbs only the moment between the two reads and a leap second.
const STEP_TOLERANCE_NS: i64 = 1_000_000_000;

/// The steps of the wall clock seen in this boot: every step moves the boot time (the wall
/// clock minus `CLOCK_BOOTTIME`), so a boot time away from the baseline is a step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Steps {
    boot_id: String,
    /// The baseline in whole seconds (what versions before `baseline_ns` kept, and still read).
    btime: i64,
    /// The boot time steps are judged against (nanoseconds): the one first read in this boot, or
    /// at the last step flagged. It does not follow the boot time read each time, so steps too
    /// small to be flagged one by one (ntpdate from cron, a hypervisor's tools) add up until
    /// they are.
    #[serde(default)]
    baseline_ns: Option<i64>,
    /// Clock ticks since boot when a step was last seen: JVMs started before it have no trusted
    /// start. 0: none seen.
    suspect_before: i64,
}

static STEPS: Mutex<Option<Steps>> = Mutex::new(None);

/// Clock ticks since boot at the last setting of the wall clock the kernel reported to the daemon
/// ([`watch_clock_sets`]); 0: none. Steps that a later step undoes between two looks at the
/// boot time leave it where it was: only this sees them.
static CLOCK_SET_AT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Records the boot time read now (`btime_ns`), and returns the clock ticks since boot before
/// which a JVM's start cannot be trusted (a step was seen since, by this process or, through
/// `state_dir`, an earlier run in this boot). An error when the record in `state_dir` cannot be
/// read or written: a later run could not know of this step, nor this one of an earlier.
fn steps_seen(
    cell: &Mutex<Option<Steps>>,
    proc: &Path,
    state_dir: Option<&Path>,
    btime_ns: i64,
    now_ticks: i64,
) -> Result<i64, String> {
    let boot_id = std::fs::read_to_string(proc.join("sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut held = cell.lock().unwrap_or_else(|e| e.into_inner());
    // A record that cannot be trusted (not ours, cut short, edited): what happened to the clock
    // since the boot is unknown, which is what a step now means.
    let mut unknown_past = false;
    if held.as_ref().is_none_or(|s| s.boot_id != boot_id) {
        *held = match state_dir.map(|d| (d.join(STEPS_FILE), read_steps(&d.join(STEPS_FILE)))) {
            None => None,
            Some((_, Err(e))) if e.kind() == io::ErrorKind::NotFound => None,
            Some((path, Err(e))) => {
                return Err(format!(
                    "cannot read the record of clock steps {} ({e}): fix its permissions, or set state_dir = \"\"",
                    path.display()
                ));
            }
            Some((_, Ok(bytes))) => match serde_json::from_slice::<Steps>(&bytes) {
                Ok(s) => Some(s).filter(|s| s.boot_id == boot_id),
                Err(_) => {
                    unknown_past = true;
                    None
                }
            },
        };
    }
    let before = held.clone();
    let steps = held.get_or_insert_with(|| Steps {
        boot_id,
        btime: btime_ns.div_euclid(1_000_000_000),
        baseline_ns: Some(btime_ns),
        suspect_before: 0,
    });
    // A file of an earlier version knows the baseline to the second: its fraction is unknown,
    // so it is taken as the one that puts the boot time read now nearest to it.
    let baseline = steps.baseline_ns.unwrap_or_else(|| {
        let s = steps.btime.saturating_mul(1_000_000_000);
        btime_ns.clamp(s, s.saturating_add(999_999_999))
    });
    let moved = btime_ns.saturating_sub(baseline);
    let set_at = CLOCK_SET_AT.load(std::sync::atomic::Ordering::Relaxed);
    if moved.saturating_abs() >= STEP_TOLERANCE_NS || unknown_past {
        steps.suspect_before = now_ticks;
        steps.baseline_ns = Some(btime_ns);
        steps.btime = btime_ns.div_euclid(1_000_000_000);
        tracing::warn!(
            boot_time_moved_by_ms = moved / 1_000_000,
            unknown_past,
            "the wall clock was stepped: the JVMs running now may own any block store until they exit"
        );
    } else {
        steps.baseline_ns = Some(baseline);
    }
    if set_at > steps.suspect_before {
        // The kernel said the clock was set, whatever the boot time reads now.
        steps.suspect_before = set_at;
        steps.baseline_ns = Some(btime_ns);
        steps.btime = btime_ns.div_euclid(1_000_000_000);
    }
    let changed = before.as_ref() != Some(steps);
    if changed && let Some(dir) = state_dir {
        // Written atomically.
        let text = serde_json::to_vec(steps).expect("a record always serialises");
        if let Err(e) = crate::state::write_atomically(dir, STEPS_FILE, &text, false) {
            // Kept in memory for this process; but a later run would not know of it.
            return Err(format!(
                "cannot keep the record of clock steps in {} ({e}): create the directory writable for this user, or set state_dir = \"\" (then a one-shot sweep cannot know of steps before it)",
                dir.join(STEPS_FILE).display()
            ));
        }
    }
    Ok(steps.suspect_before)
}

/// The record of clock steps, read as every file of `state_dir` is (never through a symlink,
/// never hanging on a FIFO) and bounded: it is a few hundred bytes.
fn read_steps(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    crate::state::open_to_read(path)?
        .take(64 << 10)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Looks at the boot time now, so that a step is judged against a baseline taken early (at the
/// daemon's start and at every sweep, whether or not a store is to be judged). An error when
/// the record cannot be kept (see [`steps_seen`]).
pub fn note_clock(state_dir: Option<&Path>) -> Result<(), String> {
    let (boot, since_boot) = boot_clock();
    let now_ticks = (i128::from(since_boot) * i128::from(clock_ticks()) / 1_000_000_000) as i64;
    steps_seen(&STEPS, Path::new("/proc"), state_dir, boot, now_ticks).map(drop)
}

/// Has the kernel tell this process of every setting of the wall clock (`timerfd` with
/// `TFD_TIMER_CANCEL_ON_SET`): a step and the step that undoes it, between two looks at the
/// boot time, are then still seen. For the daemon; a one-shot sweep sees only the boot time as
/// it is when it runs.
pub fn watch_clock_sets() {
    use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
    let spawned = std::thread::Builder::new().name("clock-set".into()).spawn(|| {
        let Ok(fd) = rustix::time::timerfd_create(TimerfdClockId::Realtime, TimerfdFlags::CLOEXEC) else {
            tracing::warn!("cannot watch for settings of the wall clock (timerfd): only steps that last until a sweep are seen");
            return;
        };
        loop {
            // Armed far ahead: it never expires, it is only cancelled by a setting of the clock.
            let far = Itimerspec {
                it_interval: Timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: Timespec {
                    tv_sec: i64::from(i32::MAX) * 2,
                    tv_nsec: 0,
                },
            };
            if let Err(e) = rustix::time::timerfd_settime(
                &fd,
                TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
                &far,
            ) {
                tracing::warn!(error = %e, "cannot watch for settings of the wall clock (timerfd): only steps that last until a sweep are seen");
                return;
            }
            let mut buf = [0u8; 8];
            match rustix::io::read(&fd, &mut buf) {
                Err(rustix::io::Errno::CANCELED) => {
                    let now_ticks =
                        (i128::from(since_boot_ns()) * i128::from(clock_ticks()) / 1_000_000_000) as i64;
                    CLOCK_SET_AT.fetch_max(now_ticks, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!("the wall clock was set: the JVMs running now may own any block store until they exit");
                }
                Err(rustix::io::Errno::INTR) | Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "lost the watch for settings of the wall clock (timerfd)");
                    return;
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the watch for settings of the wall clock");
    }
}

/// Nanoseconds on `clock`.
fn clock_ns(clock: rustix::time::ClockId) -> i64 {
    let t = rustix::time::clock_gettime(clock);
    t.tv_sec.saturating_mul(1_000_000_000).saturating_add(t.tv_nsec)
}

/// Nanoseconds of `CLOCK_BOOTTIME` now: the clock of `/proc/PID/stat` start times.
pub fn since_boot_ns() -> i64 {
    clock_ns(rustix::time::ClockId::Boottime)
}

/// The boot time (Unix nanoseconds) and the time since boot, from the clocks themselves:
/// `CLOCK_BOOTTIME` is the clock of `/proc/PID/stat` start times (in this process's time
/// namespace, as the kernel shows them to it). Not `/proc/uptime` or `/proc/stat`, which a
/// container runtime may rewrite (LXCFS shows the container's uptime).
fn boot_clock() -> (i64, i64) {
    use rustix::time::ClockId;
    let since_boot = clock_ns(ClockId::Boottime);
    let wall = clock_ns(ClockId::Realtime);
    (wall - since_boot, since_boot)
}

/// The longest an executor may take from its start to creating its block store, by Spark's own
/// budget (`CoarseGrainedExecutorBackend` and `SparkEnv.create`, Spark 3 and 4): up to
/// `EXECUTOR_DRIVER_PROPS_FETCHER_MAX_ATTEMPTS` (3) lookups of its driver, an ask for the
/// application's config (and, on Kubernetes, one for its id), then three more lookups (the map
/// output tracker, the block manager master, the heartbeat receiver) before the block manager
/// makes the store. Lookups wait `spark.rpc.lookupTimeout`, asks `spark.rpc.askTimeout`, both
/// `spark.network.timeout` when unset, 120 s by default: 16 minutes in all; 80 at the common
/// `600s`. Spark passes these settings on the executor's command line (`-Dspark.network.timeout=`);
/// `JAVA_TOOL_OPTIONS`, `JDK_JAVA_OPTIONS` and `_JAVA_OPTIONS` in its environment count too (the
/// longest value wins). `None` when no bound is known: a value that cannot be read, an
/// `@argfile`, an environment that cannot be read.
pub fn executor_window(cmdline: &[u8], environ: Option<&[u8]>) -> Option<std::time::Duration> {
    let environ = environ?;
    let var = |name: &[u8]| {
        environ
            .split(|&b| b == 0)
            .find_map(|v| v.strip_prefix(name).and_then(|v| v.strip_prefix(b"=")))
    };
    let mut tokens: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    for name in [&b"JAVA_TOOL_OPTIONS"[..], b"JDK_JAVA_OPTIONS", b"_JAVA_OPTIONS"] {
        if let Some(v) = var(name) {
            tokens.extend(v.split(|b| b.is_ascii_whitespace()));
        }
    }
    // (network, ask, lookup): unset, or the longest value seen (`None` when one is unreadable).
    let mut found: [Option<Option<f64>>; 3] = [None; 3];
    for t in tokens {
        if t.starts_with(b"@") {
            return None; // options from a file this process cannot see
        }
        let Some(kv) = t.strip_prefix(b"-D") else { continue };
        let Ok(kv) = std::str::from_utf8(kv) else { continue };
        let Some((k, v)) = kv.split_once('=') else { continue };
        let i = match k {
            "spark.network.timeout" => 0,
            "spark.rpc.askTimeout" => 1,
            "spark.rpc.lookupTimeout" => 2,
            _ => continue,
        };
        let v = spark_seconds(v);
        found[i] = Some(match (found[i], v) {
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
            (None, v) => v,
            _ => None,
        });
    }
    let default = found[0].unwrap_or(Some(120.0))?;
    let ask = found[1].unwrap_or(Some(default))?;
    let lookup = found[2].unwrap_or(Some(default))?;
    let attempts = match var(b"EXECUTOR_DRIVER_PROPS_FETCHER_MAX_ATTEMPTS") {
        None => 3.0,
        Some(v) => std::str::from_utf8(v).ok()?.trim().parse::<u32>().ok()? as f64,
    };
    let secs = (attempts + 3.0) * lookup + 2.0 * ask;
    (secs.is_finite() && secs < 1e12).then(|| std::time::Duration::from_secs_f64(secs))
}

/// A Spark time string in seconds (`JavaUtils.timeStringAs`: a number and an optional unit,
/// seconds when none).
fn spark_seconds(v: &str) -> Option<f64> {
    let v = v.trim().to_ascii_lowercase();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: f64 = v[..digits].parse().ok()?;
    let unit = match &v[digits..] {
        "" | "s" => 1.0,
        "us" => 1e-6,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    Some(n * unit)
}

impl Procs {
    /// Reads `proc` (normally `/proc`), which must show the node's PID namespace. `state_dir`
    /// keeps the clock steps seen across runs.
    pub fn read(proc: &Path, state_dir: Option<&Path>) -> Procs {
        Procs::read_in(proc, state_dir, PidNamespace::Node)
    }

    /// [`Procs::read`], with `ns` the PID namespace that must be seen whole
    /// (`stores.pid_namespace`).
    pub fn read_in(proc: &Path, state_dir: Option<&Path>, ns: PidNamespace) -> Procs {
        let mut out = Procs {
            blind: blindness(proc, ns),
            ..Procs::default()
        };
        if out.blind.is_some() {
            return out;
        }
        let ticks = clock_ticks();
        let (boot, since_boot) = boot_clock();
        let now_ticks = (i128::from(since_boot) * i128::from(ticks) / 1_000_000_000) as i64;
        let suspect_before = match steps_seen(&STEPS, proc, state_dir, boot, now_ticks) {
            Ok(t) => t,
            Err(why) => {
                out.blind = Some(why);
                return out;
            }
        };
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
        let startup = match role {
            Role::Executor => executor_window(&cmdline, environ.as_deref()),
            _ => Some(std::time::Duration::ZERO),
        };
        self.owners.push(Owner {
            pid,
            start,
            start_boot: Some(start_ticks.saturating_mul(1_000_000_000) / clock.ticks),
            kind,
            startup,
            about,
            unjudged,
        });
        Ok(())
    }
}

/// What a JVM's start time is computed from.
struct Clock {
    /// The boot time, Unix nanoseconds.
    boot: i64,
    ticks: i64,
    suspect_before: i64,
}

/// `(device, inode)` of the directories a JVM's environment names as its local directories
/// (`SPARK_EXECUTOR_DIRS`, `SPARK_LOCAL_DIRS`), resolved in its own mount namespace (through
/// `/proc/PID/root`: a containerised worker's paths are not this process's). `None` when the
/// environment cannot be read or a directory it names cannot be resolved (in time: see
/// [`crate::procs_bounded`]): then it may use any.
fn env_dirs(proc_pid: &Path, env: &[u8]) -> Option<Vec<(u64, u64)>> {
    let root = proc_pid.join("root");
    let mut out = Vec::new();
    for var in [&b"SPARK_EXECUTOR_DIRS="[..], b"SPARK_LOCAL_DIRS="] {
        let Some(value) = env.split(|&b| b == 0).find_map(|v| v.strip_prefix(var)) else {
            continue;
        };
        for d in value.split(|&b| b == b':' || b == b',').filter(|d| !d.is_empty()) {
            let path = Path::new(std::ffi::OsStr::from_bytes(d));
            // Bounded in time: a directory on a hung mount must not stall the sweep; no answer
            // makes it unknown, so this JVM may own any store.
            let (_, dev, ino) = crate::procs_bounded::stat_in_root(&root, path).ok()?;
            out.push((dev, ino));
        }
    }
    Some(out)
}

/// The wall-clock start of process `pid` (`/proc/PID/stat`), for tests.
pub fn start_of(proc: &Path, pid: u32) -> Option<Nanos> {
    let stat = std::fs::read(proc.join(pid.to_string()).join("stat")).ok()?;
    let t: i64 = stat_field(&stat, 22)?.parse().ok()?;
    Some(boot_clock().0 + t * 1_000_000_000 / clock_ticks())
}

#[cfg(test)]
mod tests;
