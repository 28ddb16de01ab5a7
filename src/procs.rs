//! The node's processes, as far as a store's liveness goes: which Spark JVMs run and since
//! when, which executor directories standalone executors were given, and which directories any
//! process holds open or works in. Read from `/proc` once per sweep, and only when some store
//! is empty and idle long enough to be reaped.
//!
//! "Cannot tell" means alive: when the daemon cannot see every process (it runs in a PID
//! namespace of its own, `/proc` is mounted with `hidepid=` and it lacks `CAP_SYS_PTRACE`, a
//! process's command line cannot be read, or a Spark JVM's open files cannot be), the snapshot
//! says why, and no store is reaped.

use std::collections::HashSet;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::policy::{Nanos, Owner, OwnerKind};

/// Spark's executor backends (Spark 2.x to 4.x, every cluster manager).
const EXECUTORS: [&str; 4] = [
    "org.apache.spark.executor.CoarseGrainedExecutorBackend",
    "org.apache.spark.executor.YarnCoarseGrainedExecutorBackend",
    "org.apache.spark.executor.MesosExecutorBackend",
    "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
];

/// Spark (and Hadoop) services that never create a block store of their own: the standalone
/// master and worker, the shuffle services, the history server, the Mesos dispatcher, YARN's
/// node manager (which hosts the YARN shuffle service), and the launcher that builds a command.
const SERVICES: [&str; 8] = [
    "org.apache.spark.deploy.worker.Worker",
    "org.apache.spark.deploy.master.Master",
    "org.apache.spark.deploy.ExternalShuffleService",
    "org.apache.spark.deploy.history.HistoryServer",
    "org.apache.spark.deploy.mesos.MesosClusterDispatcher",
    "org.apache.spark.deploy.mesos.MesosExternalShuffleService",
    "org.apache.hadoop.yarn.server.nodemanager.NodeManager",
    "org.apache.spark.launcher.Main",
];

/// What a JVM is to the liveness rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// May own a store created within moments of its start.
    Executor,
    /// Any other JVM with Spark on its command line (spark-submit, a driver, pyspark's JVM, a
    /// Thrift server, Livy...): may own a store it created at any time since its start.
    Driver,
    /// Owns no store.
    Service,
}

/// Classifies a command line (`/proc/PID/cmdline`, NUL-separated); `None` when it is not a
/// Spark JVM.
pub fn classify(cmdline: &[u8]) -> Option<Role> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
    let argv0 = *args.first()?;
    let exe = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    if !exe.starts_with(b"java") {
        return None;
    }
    let has = |class: &str| args.contains(&class.as_bytes());
    if EXECUTORS.iter().any(|c| has(c)) {
        return Some(Role::Executor);
    }
    if SERVICES.iter().any(|c| has(c)) {
        return Some(Role::Service);
    }
    let spark = args.iter().any(|a| {
        let lower = a.to_ascii_lowercase();
        lower.windows(5).any(|w| w == b"spark")
    });
    spark.then_some(Role::Driver)
}

/// The processes that may own a store, and the directories held open.
#[derive(Debug, Default)]
pub struct Procs {
    /// Why some process could not be seen: then no store may be judged dead.
    pub blind: Option<String>,
    pub owners: Vec<Owner>,
    /// `(device, inode)` of every directory a process has open or as its working directory.
    pub dirs_in_use: HashSet<(u64, u64)>,
}

/// The field of `/proc/PID/stat` after the command (which may hold spaces and parentheses).
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let rest = &stat[stat.rfind(')')? + 1..];
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

/// Why this process cannot see every process of the node, if it cannot.
fn blindness(proc: &Path) -> Option<String> {
    // "NSpid: 1234 1" lists the PID in each nested namespace: more than one, and this is not
    // the node's PID namespace.
    if read_status_line(proc, "NSpid:").is_some_and(|v| v.split_whitespace().count() > 1) {
        return Some(
            "it runs in a PID namespace of its own and cannot see the node's processes (run it in the \
             host's: hostPID on Kubernetes)"
                .into(),
        );
    }
    let mounts = std::fs::read_to_string(proc.join("self/mountinfo")).unwrap_or_default();
    let proc_opts = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/proc"))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|l| l.split(' ').nth(2))
        .unwrap_or("");
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

impl Procs {
    /// Reads `proc` (normally `/proc`).
    pub fn read(proc: &Path) -> Procs {
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
        let Some(boot) = boot else {
            out.blind = Some("cannot read the boot time from /proc/stat".into());
            return out;
        };
        let ticks = clock_ticks();
        let entries = match std::fs::read_dir(proc) {
            Ok(e) => e,
            Err(e) => {
                out.blind = Some(format!("cannot list /proc: {e}"));
                return out;
            }
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let dir = e.path();
            if let Err(why) = out.read_process(&dir, pid, boot, ticks) {
                out.blind = Some(why);
                return out;
            }
        }
        out
    }

    fn read_process(&mut self, dir: &Path, pid: u32, boot: i64, ticks: i64) -> Result<(), String> {
        let gone = |e: &io::Error| matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(libc::ESRCH);
        let refused = |what: &str, e: &io::Error| {
            format!("cannot read {what} of process {pid} ({e}): it may own a store (grant CAP_SYS_PTRACE)")
        };
        // Every process's command line must be readable: that is what tells a Spark JVM.
        let cmdline = match std::fs::read(dir.join("cmdline")) {
            Ok(c) => c,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(refused("the command line", &e)),
        };
        let role = classify(&cmdline);
        // Directories held: the working directory and every open directory. A process that is
        // not a Spark JVM cannot own a store, so its holds, when they cannot be read, are not
        // needed (removing a directory someone works in harms them nothing: they cannot create
        // files in it). A Spark JVM's must be read.
        let spark = matches!(role, Some(Role::Executor | Role::Driver));
        match std::fs::metadata(dir.join("cwd")) {
            Ok(m) => {
                self.dirs_in_use.insert((m.dev(), m.ino()));
            }
            Err(e) if gone(&e) => return Ok(()),
            Err(e) if spark => return Err(refused("the working directory", &e)),
            Err(_) => {}
        }
        match std::fs::read_dir(dir.join("fd")) {
            Ok(fds) => {
                for fd in fds.flatten() {
                    match std::fs::metadata(fd.path()) {
                        Ok(m) if m.is_dir() => {
                            self.dirs_in_use.insert((m.dev(), m.ino()));
                        }
                        Ok(_) => {}
                        Err(e) if spark && e.kind() == io::ErrorKind::PermissionDenied => {
                            return Err(refused("the open files", &e));
                        }
                        Err(_) => {} // closed meanwhile, or not a Spark JVM's
                    }
                }
            }
            Err(e) if gone(&e) => return Ok(()),
            Err(e) if spark => return Err(refused("the open files", &e)),
            Err(_) => {}
        }
        let Some(role) = role else { return Ok(()) };
        let stat = match std::fs::read_to_string(dir.join("stat")) {
            Ok(s) => s,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(refused("the start time", &e)),
        };
        let Some(start_ticks) = stat_field(&stat, 22).and_then(|t| t.parse::<i64>().ok()) else {
            return Err(format!("cannot read the start time of process {pid}"));
        };
        let start = boot
            .saturating_mul(1_000_000_000)
            .saturating_add(start_ticks.saturating_mul(1_000_000_000) / ticks);
        let kind = match role {
            Role::Service => return Ok(()),
            Role::Driver => OwnerKind::Driver,
            Role::Executor => OwnerKind::Executor {
                dirs: executor_dirs(&dir.join("environ")),
            },
        };
        self.owners.push(Owner { pid, start, kind });
        Ok(())
    }
}

/// `(device, inode)` of the directories in a standalone executor's `SPARK_EXECUTOR_DIRS`, when
/// its environment can be read (it narrows which stores it may own; without it, any).
fn executor_dirs(environ: &Path) -> Option<Vec<(u64, u64)>> {
    let env = std::fs::read(environ).ok()?;
    let value = env
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"SPARK_EXECUTOR_DIRS="))?;
    let dirs: Vec<(u64, u64)> = value
        .split(|&b| b == b':')
        .filter(|d| !d.is_empty())
        .filter_map(|d| {
            let m = std::fs::metadata(Path::new(std::ffi::OsStr::from_bytes(d))).ok()?;
            Some((m.dev(), m.ino()))
        })
        .collect();
    Some(dirs)
}

/// The wall-clock start of process `pid` (`/proc/PID/stat`), for tests.
pub fn start_of(proc: &Path, pid: u32) -> Option<Nanos> {
    let boot = std::fs::read_to_string(proc.join("stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())?;
    let stat = std::fs::read_to_string(proc.join(pid.to_string()).join("stat")).ok()?;
    let t: i64 = stat_field(&stat, 22)?.parse().ok()?;
    Some(boot * 1_000_000_000 + t * 1_000_000_000 / clock_ticks())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<u8> {
        args.iter().flat_map(|a| a.bytes().chain([0])).collect()
    }

    #[test]
    fn command_lines_are_classified_as_spark_sees_them() {
        let exec = cmd(&[
            "/usr/lib/jvm/java-17/bin/java",
            "-cp",
            "/opt/spark/conf/:/opt/spark/jars/*",
            "-Xmx1024M",
            "org.apache.spark.executor.CoarseGrainedExecutorBackend",
            "--driver-url",
            "spark://CoarseGrainedScheduler@10.0.0.1:7078",
        ]);
        assert_eq!(classify(&exec), Some(Role::Executor));
        let k8s = cmd(&[
            "java",
            "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        ]);
        assert_eq!(classify(&k8s), Some(Role::Executor));
        let worker = cmd(&[
            "/usr/bin/java",
            "-cp",
            "/opt/spark/jars/*",
            "org.apache.spark.deploy.worker.Worker",
        ]);
        assert_eq!(classify(&worker), Some(Role::Service));
        let ess = cmd(&["java", "-cp", "x", "org.apache.spark.deploy.ExternalShuffleService"]);
        assert_eq!(classify(&ess), Some(Role::Service));
        let submit = cmd(&[
            "java",
            "-cp",
            "/opt/spark/jars/*",
            "org.apache.spark.deploy.SparkSubmit",
            "pyspark-shell",
        ]);
        assert_eq!(classify(&submit), Some(Role::Driver));
        let livy = cmd(&[
            "java",
            "-cp",
            "/usr/lib/livy/jars/*:/usr/lib/SPARK/jars/*",
            "org.apache.livy.server.LivyServer",
        ]);
        assert_eq!(classify(&livy), Some(Role::Driver));
        assert_eq!(classify(&cmd(&["java", "-jar", "kafka.jar"])), None);
        assert_eq!(classify(&cmd(&["python3", "my_pyspark_job.py"])), None);
        assert_eq!(classify(b""), None);
    }

    #[test]
    fn this_process_is_seen_with_its_start_and_its_cwd() {
        let procs = Procs::read(Path::new("/proc"));
        if let Some(why) = &procs.blind {
            eprintln!("SKIPPED this_process_is_seen: {why}");
            return;
        }
        let cwd = std::fs::metadata(".").unwrap();
        assert!(procs.dirs_in_use.contains(&(cwd.dev(), cwd.ino())));
        let me = start_of(Path::new("/proc"), std::process::id()).unwrap();
        let now = crate::policy::nanos(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap(),
        );
        assert!(me <= now && me > now - 3_600_000_000_000, "{me} vs {now}");
        assert_eq!(stat_field("1 (a b) c) S 0 1 2", 4), Some("0"));
    }
}
