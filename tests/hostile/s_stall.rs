//! Filesystems that do not behave (issue 21, items 5 and 6).
//!
//! - A mount that never answers: a FUSE mount whose device nobody reads (made here with
//!   `mount(2)` on `/dev/fuse`, no libfuse): every lookup below it blocks until the connection is
//!   aborted. A live executor whose `SPARK_LOCAL_DIRS` is on it must not stall `sweep` nor the
//!   daemon's sweeps, and may own any store; a walk stuck on it must show (`/-/healthy` 503,
//!   `shuffle_janitor_stuck`, no watchdog pings).
//! - A filesystem without `d_type` (ext4 made with `-O ^filetype`, on a loop device): getdents
//!   says `DT_UNKNOWN` for everything, and dead stores must still be removed, their stale files
//!   deleted, a store with files kept.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("stall_no_dtype_reaps", no_dtype_reaps),
    ("stall_hung_local_dir_sweep", hung_local_dir_sweep),
    ("stall_hung_local_dir_daemon", hung_local_dir_daemon),
    ("stall_stuck_walk_unhealthy", stuck_walk_unhealthy),
];

/// A FUSE mount that never answers: its device fd is held here and never read. Every lookup
/// below it blocks (killably) until [`HungFuse::abort`] or drop, which abort the connection (so
/// whatever blocked fails with ENOTCONN) and unmount it.
struct HungFuse {
    at: PathBuf,
    fd: Option<OwnedFd>,
    /// Its number in /sys/fs/fuse/connections (the minor of its device).
    conn: Option<String>,
}

impl HungFuse {
    fn mount(at: &Path) -> Result<HungFuse, String> {
        if !is_root() {
            return Err("mounting FUSE needs root".into());
        }
        std::fs::create_dir_all(at).unwrap();
        // CLOEXEC: a child holding the device would keep the connection alive after the abort.
        let fd = rustix::fs::open(
            "/dev/fuse",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| format!("cannot open /dev/fuse: {e}"))?;
        let opts = CString::new(format!("fd={},rootmode=40000,user_id=0,group_id=0", fd.as_raw_fd())).unwrap();
        let target = CString::new(at.as_os_str().as_bytes()).unwrap();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let r = unsafe {
            libc::mount(
                c"hung".as_ptr(),
                target.as_ptr(),
                c"fuse".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                opts.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(format!("mount -t fuse: {}", std::io::Error::last_os_error()));
        }
        // Not by a stat of the mount: that would hang.
        let conn = std::fs::read_to_string("/proc/self/mountinfo").ok().and_then(|m| {
            m.lines()
                .rfind(|l| l.split(' ').nth(4) == Some(at.to_str().unwrap()))
                .and_then(|l| l.split(' ').nth(2)?.split(':').nth(1).map(str::to_string))
        });
        Ok(HungFuse {
            at: at.to_owned(),
            fd: Some(fd),
            conn,
        })
    }

    /// Aborts the connection: what was blocked below it fails (ENOTCONN) from now on.
    fn abort(&mut self) {
        if let Some(c) = &self.conn {
            // Where fusectl is mounted; closing the device below aborts it anyway.
            let _ = std::fs::write(format!("/sys/fs/fuse/connections/{c}/abort"), "1");
        }
        drop(self.fd.take());
    }
}

impl Drop for HungFuse {
    fn drop(&mut self) {
        self.abort();
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// A process that looks like a Spark executor JVM to `/proc` (argv[0] `java`, the backend's
/// class), its environment naming `local_dirs` as `SPARK_LOCAL_DIRS`.
fn fake_executor(local_dirs: &Path) -> Child {
    let child = Command::new("bash")
        .arg("-c")
        .arg("exec -a java perl -e 'sleep 600' org.apache.spark.executor.CoarseGrainedExecutorBackend")
        .env("SPARK_LOCAL_DIRS", local_dirs)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        let cmd = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
        if cmd.starts_with(b"java\0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Kills a child when dropped (a fake JVM).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn empty_store(dir: &Path, nn: &[&str]) {
    for n in nn {
        std::fs::create_dir_all(dir.join(n)).unwrap();
    }
}

/// `sweep --format json`, killed after `deadline`: `None` when it did not finish by then.
fn sweep_within(config: &Path, deadline: Duration) -> Option<(i32, serde_json::Value, String, Duration)> {
    let t = Instant::now();
    let mut child = Command::new(BIN)
        .args(["sweep", "--log-level", "debug", "--format", "json", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while t.elapsed() < deadline {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let (code, json, stderr) = parse_sweep(out);
            return Some((code, json, stderr, t.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Whether the processes can all be seen (else the liveness rule is blind and nothing here can
/// be shown).
fn liveness_seen(sc: &mut Sc) -> bool {
    let procs = shuffle_janitor::procs::Procs::read(Path::new("/proc"), None);
    if let Some(why) = procs.blind {
        sc.skip(&format!("the processes cannot all be seen here: {why}"));
        return false;
    }
    true
}

/// Item 5, `sweep`: a live executor's `SPARK_LOCAL_DIRS` on a mount that never answers. The
/// sweep ends in bounded time; the executor may own any store (its directories unknown), so a
/// store born after its start in an `executor-*` directory is kept; the scan went on (not
/// blind), so a store born before it started is removed.
fn hung_local_dir_sweep(sc: &mut Sc) {
    let s = Scratch::new();
    let mut fuse = match HungFuse::mount(&s.join("hung")) {
        Ok(f) => f,
        Err(why) => return sc.skip(&why),
    };
    if !liveness_seen(sc) {
        return;
    }
    let root = s.join("local");
    let exec_dir = root.join("spark-w/executor-app");
    let old = exec_dir.join(bm("old"));
    empty_store(&old, &["00", "0c"]);
    // More than START_SLACK (2 s) plus the error of a start time computed from /proc/stat's
    // btime (whole seconds, and off by up to a second more where the clock was slewed).
    std::thread::sleep(Duration::from_millis(4000));
    let _exec = Reaped(fake_executor(&s.join("hung/spark")));
    let new = exec_dir.join(bm("new"));
    empty_store(&new, &["00", "0d"]);
    std::thread::sleep(Duration::from_millis(1300));
    let config = s.join("stall.toml");
    std::fs::write(
        &config,
        config_text(
            &[&root],
            "state_dir = \"\"\n[stores]\nmin_idle = \"1s\"\nexecutor_startup = \"1m\"",
        ),
    )
    .unwrap();
    let mut last = String::new();
    for run in 0..2 {
        sc.iterations += 1;
        let Some((code, report, stderr, took)) = sweep_within(&config, Duration::from_secs(30)) else {
            sc.check(false, || {
                format!("run {run}: sweep did not finish in 30 s (a hung lookup stalls it)")
            });
            break;
        };
        sc.note(format!("run {run}: sweep took {:.1}s", took.as_secs_f64()));
        last = format!("{report}\n{stderr}");
        sc.check(took < Duration::from_secs(15), || {
            format!("run {run}: sweep took {took:?}, more than 15 s")
        });
        sc.check(code == 0, || format!("run {run}: exit {code}: {stderr}"));
        sc.check(report["liveness_unknown"].is_null(), || {
            format!(
                "run {run}: blind, the scan did not go on: {}",
                report["liveness_unknown"]
            )
        });
        sc.check(run > 0 || stderr.contains("cannot be looked up"), || {
            format!("run {run}: the log does not say which directory does not answer: {stderr}")
        });
    }
    sc.check(!old.exists(), || {
        format!("a store born before every live JVM was not removed: {last}")
    });
    sc.judged += 2;
    if new.join("00").is_dir() {
        sc.deletions += 1;
    } else {
        sc.violation(format!("removed, but the live executor may own it: {}", new.display()));
    }
    fuse.abort();
}

/// Item 5, the daemon: the same executor; sweeps keep coming and a stale unit written later is
/// deleted on time; the hung lookup is not started again at every sweep (the thread count stays
/// flat), it is counted, and `/-/healthy` stays 200 (a bounded lookup is not a stuck job).
fn hung_local_dir_daemon(sc: &mut Sc) {
    let s = Scratch::new();
    let mut fuse = match HungFuse::mount(&s.join("hung")) {
        Ok(f) => f,
        Err(why) => return sc.skip(&why),
    };
    if !liveness_seen(sc) {
        return;
    }
    let root = s.join("local");
    let _exec = Reaped(fake_executor(&s.join("hung/spark")));
    // Its store, maybe: empty and quiet, in an executor-* directory.
    let maybe = root.join("spark-w/executor-app").join(bm("maybe"));
    empty_store(&maybe, &["00"]);
    let data = root.join(bm("data"));
    empty_store(&data, &["0c", "0d", "0e"]);
    std::thread::sleep(Duration::from_millis(1300));
    let mut d = Daemon::start(
        s.path(),
        &config_text(
            &[&root],
            "state_dir = \"\"\ninterval = \"1s\"\nmax_age = \"1h\"\n[stores]\nmin_idle = \"1s\"\nexecutor_startup = \"1m\"",
        ),
    );
    if !sc.check(d.wait_sweeps(2.0, Duration::from_secs(20)), || {
        format!("fewer than 2 sweeps in 20 s: a sweep is stalled\n{}", d.log_tail(20))
    }) {
        return;
    }
    let threads = proc_status(d.pid(), "Threads:");
    // A stale map output, renamed in (the watch sees no write): deleted within a few intervals.
    let mut oracle = Oracle::default();
    let stale = unit_paths(&data, 3, 7);
    move_in(&stale, 1000, 48 * HOUR, &s.join("stage"));
    oracle.unit(stale.clone(), false);
    let t = Instant::now();
    while stale.iter().any(|p| exists(p)) && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    sc.check(stale.iter().all(|p| !exists(p)), || {
        format!("a stale unit was not deleted within 15 s\n{}", d.log_tail(20))
    });
    sc.check(d.wait_sweeps(5.0, Duration::from_secs(30)), || "sweeps stopped".into());
    let after = proc_status(d.pid(), "Threads:");
    sc.check(after <= threads + 1, || {
        format!("threads grew from {threads} to {after} over 5 sweeps: hung lookups pile up")
    });
    let lookups = d.metric("shuffle_janitor_proc_unanswered_total", &[("what", "lookup")]);
    sc.check(lookups.is_some_and(|n| n >= 1.0), || {
        format!("shuffle_janitor_proc_unanswered_total{{what=\"lookup\"}} = {lookups:?}")
    });
    let health = d.get("/-/healthy");
    sc.check(health.as_ref().is_some_and(|(c, _)| *c == 200), || {
        format!("/-/healthy: {health:?}")
    });
    let log = d.log_text();
    sc.check(log.matches("cannot be looked up").count() == 1, || {
        "the hung directory is not said exactly once in the log".into()
    });
    sc.iterations = d.sweeps() as u64;
    oracle.keep(maybe.join("00"));
    oracle.tally(sc);
    d.no_panic(sc);
    d.stop(Duration::from_secs(10));
    fuse.abort();
}

/// The general case of item 5: a walk blocked on a mount that never answers (a FUSE mount at a
/// `spark-*` directory below a root) shows: `/-/healthy` answers 503 with the reason,
/// `shuffle_janitor_stuck` is 1, the watchdog is no longer fed; once the mount is aborted, the
/// walk ends and all is well again.
fn stuck_walk_unhealthy(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let mut fuse = match HungFuse::mount(&root.join("spark-hung")) {
        Ok(f) => f,
        Err(why) => return sc.skip(&why),
    };
    let sock_path = s.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let pings = |sock: &UnixDatagram| {
        let mut n = 0;
        let mut buf = [0u8; 512];
        while let Ok(len) = sock.recv(&mut buf) {
            n += String::from_utf8_lossy(&buf[..len]).matches("WATCHDOG=1").count();
        }
        n
    };
    let d = Daemon::start_with(
        s.path(),
        &config_text(&[&root], "state_dir = \"\"\ninterval = \"1s\"\nstuck_after = \"2s\""),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
        "",
    );
    let t = Instant::now();
    let mut health = d.get("/-/healthy");
    while health.as_ref().is_none_or(|(c, _)| *c != 503) && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        health = d.get("/-/healthy");
    }
    sc.iterations += 1;
    let stuck_ok = sc.check(
        health
            .as_ref()
            .is_some_and(|(c, b)| *c == 503 && b.contains("walk in hand")),
        || format!("/-/healthy while a walk hangs for 15 s: {health:?}\n{}", d.log_tail(10)),
    );
    if stuck_ok {
        sc.note(format!("/-/healthy: {}", health.as_ref().unwrap().1.trim()));
        let stuck = d.metric("shuffle_janitor_stuck", &[]);
        sc.check(stuck == Some(1.0), || format!("shuffle_janitor_stuck = {stuck:?}"));
        let running = d.metric("shuffle_janitor_job_running_seconds", &[]);
        sc.check(running.is_some_and(|r| r >= 2.0), || {
            format!("shuffle_janitor_job_running_seconds = {running:?}")
        });
        // A ping decided a moment before the job became stuck may still be on its way (the
        // loop's thread descheduled between its check and its send on a loaded machine).
        std::thread::sleep(Duration::from_millis(500));
        pings(&sock);
        std::thread::sleep(Duration::from_millis(1500));
        let n = pings(&sock);
        // Fed, the watchdog gets a ping every 200 ms: 7 in this window. One CI run under load saw
        // a single ping here (a late one, or a moment the process-wide progress counter moved);
        // more than one is a watchdog still fed.
        sc.check(n <= 1, || {
            format!("{n} watchdog pings in 1.5 s while stuck (7 when fed)")
        });
    }
    // The mount aborted, the walk fails there and ends: healthy again, the watchdog fed.
    fuse.abort();
    let t = Instant::now();
    let mut health = d.get("/-/healthy");
    while health.as_ref().is_none_or(|(c, _)| *c != 200) && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        health = d.get("/-/healthy");
    }
    sc.check(health.as_ref().is_some_and(|(c, _)| *c == 200), || {
        format!("/-/healthy after the mount was aborted: {health:?}")
    });
    let stuck = d.metric("shuffle_janitor_stuck", &[]);
    sc.check(stuck == Some(0.0), || format!("shuffle_janitor_stuck after: {stuck:?}"));
    pings(&sock);
    std::thread::sleep(Duration::from_millis(1000));
    let n = pings(&sock);
    sc.check(n > 0, || "no watchdog ping once well again".into());
    d.no_panic(sc);
}

/// Item 6: ext4 without `filetype` (getdents gives `DT_UNKNOWN` for every entry), on a loop
/// device: a dead store is removed, a stale map output deleted, a store with files kept.
fn no_dtype_reaps(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("mounting a loop device needs root");
    }
    if !sh("command -v mkfs.ext4") {
        return sc.skip("no mkfs.ext4 (e2fsprogs)");
    }
    if !liveness_seen(sc) {
        return;
    }
    let s = Scratch::new();
    let img = s.join("nodtype.img");
    let root = s.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let made = sh(&format!(
        "truncate -s 64M '{0}' && mkfs.ext4 -q -F -O ^filetype '{0}' && mount -o loop '{0}' '{1}'",
        img.display(),
        root.display()
    ));
    if !sc.check(made, || "cannot make and mount an ext4 image without filetype".into()) {
        return;
    }
    // Scratch unmounts what is below it when dropped; the loop device goes with the mount.
    // In executor-* directories: a JVM of the node's own (a Spark test running beside this one)
    // whose environment names other directories cannot own them.
    let dead = root.join("spark-s/executor-2").join(bm("dead"));
    empty_store(&dead, &["00", "0c", "3f"]);
    let exec_dead = root.join("spark-s/executor-1").join(bm("gone"));
    empty_store(&exec_dead, &["01"]);
    let data = root.join(bm("data"));
    let stale = unit_paths(&data, 1, 1);
    write_unit(&stale, 4096, 48 * HOUR);
    let young = unit_paths(&data, 1, 2);
    write_unit(&young, 4096, Duration::from_secs(60));
    let with_file = root.join(bm("notes"));
    write_aged(&with_file.join("07/notes.txt"), 10, 48 * HOUR);
    // The filesystem indeed does not say: an NN directory lists as DT_UNKNOWN.
    let fd = rustix::fs::open(
        &dead,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let mut buf = Vec::with_capacity(8192);
    let mut types = Vec::new();
    let mut dir = rustix::fs::RawDir::new(&fd, buf.spare_capacity_mut());
    while let Some(Ok(e)) = dir.next() {
        if e.file_name().to_bytes() == b"00" {
            types.push(e.file_type());
        }
    }
    drop(fd);
    if !sc.check(types == [rustix::fs::FileType::Unknown], || {
        format!("the image lists NN directories as {types:?}, not DT_UNKNOWN")
    }) {
        return;
    }
    // Born more than START_SLACK before any JVM starts from now on; quiet for min_idle.
    std::thread::sleep(Duration::from_millis(2500));
    let mut oracle = Oracle::default();
    oracle.unit(stale.clone(), false);
    oracle.unit(young.clone(), true);
    oracle.keep(with_file.join("07/notes.txt"));
    let config = s.join("nodtype.toml");
    std::fs::write(
        &config,
        config_text(
            &[&root],
            "state_dir = \"\"\nmax_age = \"1h\"\n[stores]\nmin_idle = \"1s\"",
        ),
    )
    .unwrap();
    let (code, report, stderr) = sweep(&config, &[]);
    sc.iterations += 1;
    sc.check(code == 0, || format!("exit {code}: {stderr}"));
    sc.check(!dead.exists() && !exec_dead.exists(), || {
        format!(
            "dead stores not removed on a filesystem without d_type: {} {}\n{report}",
            dead.exists(),
            exec_dead.exists()
        )
    });
    sc.check(stale.iter().all(|p| !exists(p)), || {
        format!("the stale map output was not deleted: {report}")
    });
    sc.check(data.is_dir() && with_file.is_dir(), || {
        "a store with files was removed".into()
    });
    sc.check(jnum(&report, &["reaped", "stores"]) == 2, || {
        format!("reaped.stores != 2: {report}")
    });
    oracle.tally(sc);
}
