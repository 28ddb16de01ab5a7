//! The control socket and the commands that ask through it (`status`, `plan`), end to end: the
//! real daemon on a temporary tree, asked by the real binary and by raw clients that misbehave;
//! and every command's output when its reader goes away (`| head`).

mod common;

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BM: &str = "blockmgr-646dd966-f4a1-418b-90b6-9ce0ed5d3da5";

struct Daemon {
    child: Child,
    log: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    /// A dry-running daemon (so its plan stays what the tree holds), answering on its socket.
    fn start(env: &TestEnv, config: &Path) -> Daemon {
        let log = env.dir.path().join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
            .args(["run", "--dry-run", "--log-level", "debug", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the daemon");
        let d = Daemon {
            child,
            log,
            socket: env.dir.path().join("state/control.sock"),
        };
        let start = Instant::now();
        loop {
            if let Ok(v) = d.ask(r#"{"request":"status"}"#, Duration::from_secs(5))
                && v["index"]["walked"] == true
                && v["last_sweeps"].as_array().is_some_and(|s| !s.is_empty())
            {
                return d;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no first sweep: {}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One request on a raw connection; the answer's first line, parsed.
    fn ask(&self, req: &str, timeout: Duration) -> std::io::Result<serde_json::Value> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(format!("{req}\n").as_bytes())?;
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line)?;
        serde_json::from_str(&line).map_err(std::io::Error::other)
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config of the test's root for a daemon, with a metrics port of its own (tests run at once).
fn daemon_config(env: &TestEnv) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.config(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"))
}

/// `n` stale units (one data file each) below the test's root.
fn stale_units(env: &TestEnv, n: usize) {
    for i in 0..n {
        env.file(&format!("{BM}/{:02x}/shuffle_1_{i}_0.data", i % 64), 10, 8 * HOUR);
    }
}

/// Issue 23: a client that asks for a plan and never reads it held a task and a connection slot
/// for ever (nine of them, the socket for everyone). It is dropped once it has read nothing for
/// 10 s, counted and logged, and meanwhile the daemon sweeps and answers others.
#[test]
fn clients_that_ask_and_never_read_are_dropped_and_hold_nothing() {
    let env = TestEnv::new();
    stale_units(&env, 6000);
    let cfg = daemon_config(&env);
    let d = Daemon::start(&env, &cfg);
    // More stuck clients than the daemon serves at once, each with a plan far larger than what
    // the socket buffers.
    let stuck: Vec<UnixStream> = (0..10)
        .map(|_| {
            let mut s = UnixStream::connect(&d.socket).unwrap();
            s.write_all(b"{\"request\":\"plan\"}\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    // Sweeps go on: a SIGUSR1 sweep is done and shows in status, asked by a well-behaved client.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(d.child.id() as i32).unwrap(),
        rustix::process::Signal::USR1,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        let v = d
            .ask(r#"{"request":"status"}"#, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("status not answered while clients hang: {e}\n{}", d.log_text()));
        if v["last_sweeps"].as_array().unwrap().len() >= 2 {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "answered only after {:?}: {}",
        start.elapsed(),
        d.log_text()
    );
    // Every stuck client is dropped, counted and logged.
    let start = Instant::now();
    loop {
        let v = d.ask(r#"{"request":"status"}"#, Duration::from_secs(30)).unwrap();
        if v["control"]["clients_dropped"] == 10 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{v}\n{status}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = d.log_text();
    assert!(
        log.contains("control socket: dropped a client: it read nothing of its answer for 10 s"),
        "{log}"
    );
    drop(stuck);
    // And the socket still serves a full plan to a client that reads.
    let out = env.run(&["plan", "--format", "json", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["candidates"].as_array().unwrap().len(), 6000);
}

/// The binary with a standard output whose reader is gone, as `| head` leaves it once it has
/// its lines; errors at `--log-level error`.
fn run_closed(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["--log-level", "error"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run shuffle-janitor")
}

/// Issue 23: a command whose output was closed early exited 0, as if it had written all.
/// Now it exits 141 (as a shell reports a process SIGPIPE killed), with nothing on stderr.
#[test]
fn read_only_commands_exit_141_quietly_when_their_output_closes() {
    let env = TestEnv::new();
    for s in 0..4 {
        for i in 0..500 {
            env.file(
                &format!("blockmgr-{s}/{:02x}/shuffle_1_{i}_0.data", i % 64),
                10,
                8 * HOUR,
            );
        }
    }
    let cfg = env.config("");
    let cfg = cfg.to_str().unwrap();
    let file = env.root().join("blockmgr-0/00/shuffle_1_0_0.data");
    for args in [
        &["sweep", "--dry-run", "--config", cfg][..],
        &["sweep", "--dry-run", "--format", "json", "--config", cfg],
        &["report", "--config", cfg],
        &["report", "--format", "json", "--config", cfg],
        &["check-config", "--config", cfg],
        // No daemon: explain answers from the files' own timestamps.
        &["explain", "--config", cfg, file.to_str().unwrap()],
        &["status", "--config", cfg],
    ] {
        let out = run_closed(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
    assert_eq!(files_below(&env.root()).len(), 2000, "a dry run deletes nothing");
}

/// Issue 23: a deleting sweep whose output closes stops after the unit in hand, every unit
/// whole (gone, or there with all its files), says so, and exits 141.
#[test]
fn a_deleting_sweep_whose_output_closes_stops_at_a_unit_boundary_and_says_so() {
    let env = TestEnv::new();
    let (stores, units) = (40, 100);
    for s in 0..stores {
        for i in 0..units {
            env.file(
                &format!("blockmgr-{s}/{:02x}/shuffle_1_{i}_0.data", i % 64),
                10,
                8 * HOUR,
            );
            env.file(
                &format!("blockmgr-{s}/{:02x}/shuffle_1_{i}_0.index", (i + 7) % 64),
                8,
                8 * HOUR,
            );
        }
    }
    let cfg = env.config("");
    let out = run_closed(&["sweep", "--format", "json", "--config", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(
        stderr.contains("standard output was closed: stopped after the unit in hand"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let mut left = 0;
    for s in 0..stores {
        for i in 0..units {
            let data = env
                .root()
                .join(format!("blockmgr-{s}/{:02x}/shuffle_1_{i}_0.data", i % 64));
            let index = env
                .root()
                .join(format!("blockmgr-{s}/{:02x}/shuffle_1_{i}_0.index", (i + 7) % 64));
            assert_eq!(data.exists(), index.exists(), "a unit in part: {}", data.display());
            left += usize::from(data.exists());
        }
    }
    assert!(left > 0, "it stopped early, not after deleting everything");
    let deleted: usize = stderr
        .split("(")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(deleted, 2 * (stores * units - left), "{stderr}");
    // Every deleted unit is in the journal.
    let journal = std::fs::read_to_string(env.dir.path().join("state/deletions.jsonl")).unwrap();
    let journaled = journal.lines().filter(|l| l.contains("\"event\":\"deleted\"")).count();
    assert_eq!(journaled, stores * units - left);
}

/// One store of `units` stale units of two files each, in different sub-directories.
fn one_big_store(env: &TestEnv, units: usize) -> Vec<(PathBuf, PathBuf)> {
    (0..units)
        .map(|i| {
            (
                env.file(&format!("{BM}/{:02x}/shuffle_1_{i}_0.data", i % 64), 10, 8 * HOUR),
                env.file(&format!("{BM}/{:02x}/shuffle_1_{i}_0.index", (i + 7) % 64), 8, 8 * HOUR),
            )
        })
        .collect()
}

/// The units of `units` left whole (both files there); panics on a unit in part.
fn whole_units_left(units: &[(PathBuf, PathBuf)]) -> usize {
    units
        .iter()
        .filter(|(data, index)| {
            assert_eq!(data.exists(), index.exists(), "a unit in part: {}", data.display());
            data.exists()
        })
        .count()
}

/// Review of issue 23: a deleting `sweep --format json` wrote its list only once a store was
/// let go, so with `| head` (or a full disk under its output) it deleted every unit of the
/// store in hand before it saw the output gone, then said "stopped after the unit in hand ...
/// run it again to finish" when it had finished: with one store, all of it. It now stops
/// within the store: a reader gone is seen at once (poll), and the list is written every few
/// hundred units, the store's write guard let go.
#[test]
fn a_deleting_sweep_stops_inside_a_big_store_when_its_output_goes() {
    let env = TestEnv::new();
    let n = 3000;
    let units = one_big_store(&env, n);
    let cfg = env.config("");
    let cfg = cfg.to_str().unwrap();
    // The reader gone before the first unit: nothing is deleted.
    let out = run_closed(&["sweep", "--format", "json", "--config", cfg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(
        stderr.contains("standard output was closed: stopped after the unit in hand (0 files deleted"),
        "{stderr}"
    );
    assert_eq!(whole_units_left(&units), n, "{stderr}");
    // An output that fails to be written (a full disk): stopped within the store, exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["--log-level", "error", "sweep", "--format", "json", "--config", cfg])
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::options().write(true).open("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains("standard output could not be written: stopped after the unit in hand"),
        "{stderr}"
    );
    let left = whole_units_left(&units);
    assert!(left > n / 2, "{left} of {n} units left: {stderr}");
    let deleted: usize = stderr
        .split("hand (")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(deleted, 2 * (n - left), "{stderr}");
}

/// Review of issue 23: without a daemon, `status --format json` and `plan --format json`
/// printed a text ("no daemon answers on ...") on standard output, where a script reads JSON
/// (`| jq`), and `plan` in text too, where it reads like one more line of the plan. It goes to
/// standard error; standard output is empty; exit 1 as before.
#[test]
fn without_a_daemon_status_and_plan_keep_standard_output_clean() {
    let env = TestEnv::new();
    let cfg = env.config("");
    let cfg = cfg.to_str().unwrap();
    for args in [
        &["status", "--format", "json", "--config", cfg][..],
        &["plan", "--format", "json", "--config", cfg],
        &["plan", "--config", cfg],
    ] {
        let out = env.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{args:?}");
        assert!(stderr.contains("no daemon answers on"), "{args:?}: {stderr}");
    }
    // In text, `status` says so where it is read, and `explain` in JSON answers in JSON.
    let out = env.run(&["status", "--config", cfg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no daemon answers on"));
    let out = env.run(&["explain", "--format", "json", "--config", cfg, "/nonexistent/x"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["daemon"], false);
}

/// Review of issue 23: `explain` looked each unit of the index up in the paths asked by a scan
/// of them, under the index's lock: with a few hundred paths (a 64 KiB request holds about
/// 600) over a store of 40,000 units the daemon's lock was held for a second (a million units:
/// minutes), and `status`, the watch and the sweeps waited. Each unit is now a hash lookup.
#[test]
fn explain_of_many_paths_holds_the_index_briefly() {
    let env = TestEnv::new();
    let n = 40_000;
    stale_units(&env, n);
    let cfg = daemon_config(&env);
    let d = Daemon::start(&env, &cfg);
    let paths: Vec<String> = (0..600)
        .map(|i| {
            env.root()
                .join(format!("{BM}/{:02x}/shuffle_1_{i}_0.data", i % 64))
                .display()
                .to_string()
        })
        .collect();
    let req = serde_json::json!({"request": "explain", "paths": paths}).to_string();
    assert!(req.len() < 64 << 10);
    let socket = d.socket.clone();
    let explain = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(format!("{req}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    // `status` takes the index's lock: while the explain runs, it must not wait on it.
    let mut worst = Duration::ZERO;
    while !explain.is_finished() {
        let t = Instant::now();
        d.ask(r#"{"request":"status"}"#, Duration::from_secs(60)).unwrap();
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let answer: serde_json::Value = serde_json::from_str(explain.join().unwrap().trim()).unwrap();
    assert_eq!(answer["answers"].as_array().unwrap().len(), 600);
    assert!(
        answer["answers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["verdict"] != "unknown"),
        "{:.600}",
        answer.to_string()
    );
    assert!(
        worst < Duration::from_millis(1200),
        "status waited {worst:?} on an explain of 600 paths"
    );
}

/// Review of issue 23: a client that connects and asks nothing (one byte a second) is dropped
/// after 2 s and counted, but `status` said the clients it counts were dropped "for not reading
/// their answer", which this one never asked for.
#[test]
fn a_client_that_asks_nothing_is_dropped_counted_and_named_so() {
    let env = TestEnv::new();
    stale_units(&env, 10);
    let cfg = daemon_config(&env);
    let d = Daemon::start(&env, &cfg);
    let mut slow = UnixStream::connect(&d.socket).unwrap();
    let start = Instant::now();
    // One byte a second: the request is never whole within 2 s.
    let mut answer = String::new();
    for b in br#"{"request":"status"}"# {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.contains("no request within 2 s"), "{answer}");
    let out = env.run(&["status", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("control socket: 1 clients dropped for being too slow (to ask, or to read the answer)"),
        "{text}"
    );
}

/// Review of issue 23: `explain` on a file whose name is not UTF-8 asked about the name with
/// U+FFFD in its place, which does not exist, and answered "not deleted by shuffle-janitor"
/// (exit 0 with a daemon), as if the file were gone. It refuses, exit 2.
#[test]
fn explain_of_a_name_it_cannot_ask_the_daemon_about_says_so_and_never_not_deleted() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    stale_units(&env, 3);
    let cfg = daemon_config(&env);
    let _d = Daemon::start(&env, &cfg);
    let dir = env.root().join(format!("{BM}/00"));
    let file = dir.join(std::ffi::OsStr::from_bytes(b"shuffle_1_\xff_0.data"));
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["explain", "--format", "json", "--config", cfg.to_str().unwrap()])
        .arg(&file)
        .arg(&dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    // An error of its own (a JSON request cannot name it), never "gone" nor "not deleted"; the
    // other path asked is answered, in order.
    let a = &v["answers"][0];
    assert!(a["error"].as_str().unwrap_or_default().contains("not UTF-8"), "{v}");
    assert_ne!(a["verdict"], "not_deleted", "{v}");
    assert_ne!(a["exists"], false, "{v}");
    assert_eq!(v["answers"][1]["exists"], true, "{v}");
    assert!(file.exists());
}

/// `status` and `plan` whose output closes: 141, quietly.
#[test]
fn status_and_plan_exit_141_quietly_when_their_output_closes() {
    let env = TestEnv::new();
    stale_units(&env, 3000);
    let cfg = daemon_config(&env);
    let _d = Daemon::start(&env, &cfg);
    let cfg = cfg.to_str().unwrap();
    for args in [
        &["status", "--config", cfg][..],
        &["status", "--format", "json", "--config", cfg],
        &["plan", "--config", cfg],
        &["plan", "--format", "json", "--config", cfg],
    ] {
        let out = run_closed(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

/// A process's peak resident memory, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Issue 23: `plan` held all its candidates in memory, in the daemon and in the client, before
/// writing any (about 1 KiB each: 115 MB at 100,000). Both now stream them: neither peak grows
/// with the plan.
#[test]
fn plan_streams_in_flat_memory() {
    let env = TestEnv::new();
    let n = 50_000;
    stale_units(&env, n);
    let cfg = daemon_config(&env);
    let d = Daemon::start(&env, &cfg);
    let before = peak_kib(d.child.id());
    let time = Path::new("/usr/bin/time");
    let mut client = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-v").arg(env!("CARGO_BIN_EXE_shuffle-janitor"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
    };
    let out = client
        .args(["plan", "--format", "json", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["candidates"].as_array().unwrap().len(), n);
    let grew = peak_kib(d.child.id()) - before;
    assert!(
        grew < 16 << 10,
        "the daemon's peak grew by {grew} KiB for a plan of {n} files"
    );
    if let Some(kib) = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
    {
        let kib: u64 = kib.parse().unwrap();
        assert!(
            kib < 24 << 10,
            "the client's peak was {kib} KiB for a plan of {n} files"
        );
    }
    assert_eq!(plan["would_delete_files"], n);
    // The text, a line per file and the summary last.
    let out = env.run(&["plan", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), n + 1);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains(&format!("would delete {n} files")),
        "{}",
        text.lines().last().unwrap()
    );
    assert!(
        text.lines().next().unwrap().starts_with("ttl\tshuffle\t"),
        "{text:.200}"
    );
}

/// Issue 23: `status` showed neither the stores by state (nor why idle ones are kept) nor the
/// watch's directories, the index's drift and the clock the rules use.
#[test]
fn status_shows_stores_by_state_the_watch_and_the_clock() {
    let env = TestEnv::new();
    stale_units(&env, 10);
    // A store with nothing in it for hours: dead, unless a process may own it.
    let empty = env.root().join("blockmgr-0a5f3c1e-0000-4000-8000-000000000001/0c");
    std::fs::create_dir_all(&empty).unwrap();
    set_age(&empty, 8 * HOUR);
    set_age(empty.parent().unwrap(), 8 * HOUR);
    let cfg = daemon_config(&env);
    let d = Daemon::start(&env, &cfg);
    let v = d.ask(r#"{"request":"status"}"#, Duration::from_secs(30)).unwrap();
    let stores = &v["stores"];
    assert!(stores["judged"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    let root = &stores["roots"][0];
    let (live, idle, dead) = (
        root["live"].as_u64().unwrap(),
        root["idle"].as_u64().unwrap(),
        root["dead"].as_u64().unwrap(),
    );
    assert_eq!(live + idle + dead, 2, "{v}");
    assert!(live >= 1, "{v}");
    let kept: u64 = root["idle_kept"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(kept, idle, "every idle store has its reason: {v}");
    let w = &v["watch"];
    assert!(w["watched_dirs"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(w["index_drift"]["missing"], 0, "{v}");
    let clock = &v["clock"];
    assert_eq!(
        (&clock["steps"], &clock["last_step"]),
        (&0.into(), &serde_json::Value::Null),
        "{v}"
    );
    assert_eq!(clock["rules_behind_seconds"], 0, "{v}");
    let out = env.run(&["status", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "stores, as the sweep at ",
        &format!("{live} live, {idle} idle"),
        "directories watched",
        "index drift found by walks: 0 missing",
        "clock: 0 wall-clock steps seen",
        "control socket: 0 clients dropped",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    eprintln!("{text}");
}

/// Issue 23's review: `plan` (and `explain`) run the sweep's decisions as a dry run, and that dry
/// run took the rate-limited "cannot free enough" warning's turn (one per filesystem per 5
/// minutes): an operator who asked for a plan silenced the next real sweep's warning. A question
/// warns of nothing; the sweep after it still does.
#[test]
fn a_plan_takes_no_turn_from_the_warning_that_pressure_cannot_be_relieved() {
    let env = TestEnv::new();
    let fs = env.dir.path().join("fs");
    let Some(_fs) = Mounted::tmpfs(&fs, "size=16m") else {
        eprintln!("SKIPPED a_plan_takes_no_turn: mounting a tmpfs needs root");
        return;
    };
    // 4 MiB of map outputs written now: young, never to go.
    let root = fs.join("local");
    for i in 0..4 {
        write_aged(
            &root.join(format!("{BM}/0{i}/shuffle_2_{i}_0.data")),
            1 << 20,
            Duration::ZERO,
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The usage is read only when asked (no poll, no interval sweep in the test's time), and the
    // ballast goes beside the root, where the watch sees no activity to read it for.
    let cfg = env.write_config(
        "config.toml",
        &format!(
            "roots = [{:?}]\ninterval = \"1h\"\nwatermark.high = 0.5\nwatermark.low = 0.4\nwatermark.poll = \"1h\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            root.display().to_string()
        ),
    );
    let d = Daemon::start(&env, &cfg);
    let warning = "cannot free enough: everything left is young";
    assert!(
        !d.log_text().contains(warning),
        "below high at start:\n{}",
        d.log_text()
    );
    write_aged(&fs.join("ballast"), 6 << 20, Duration::ZERO);

    let out = env.run(&["plan", "--format", "json", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let short = &plan["filesystems"][0]["shortfall"];
    assert!(
        short["missing_bytes"].as_u64().is_some_and(|b| b > 0),
        "the plan sees the shortfall: {plan}"
    );
    assert!(
        !d.log_text().contains(warning),
        "a plan warns of nothing:\n{}",
        d.log_text()
    );

    // A sweep now: it cannot free enough either, and says so.
    let sweeps = |v: &serde_json::Value| v["last_sweeps"].as_array().map_or(0, Vec::len);
    let before = sweeps(&d.ask(r#"{"request":"status"}"#, Duration::from_secs(10)).unwrap());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(d.child.id() as i32).unwrap(),
        rustix::process::Signal::USR1,
    )
    .unwrap();
    let start = Instant::now();
    while sweeps(&d.ask(r#"{"request":"status"}"#, Duration::from_secs(10)).unwrap()) == before {
        assert!(start.elapsed() < Duration::from_secs(20), "no sweep:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = d.log_text();
    assert_eq!(log.matches(warning).count(), 1, "the sweep warns, once:\n{log}");
}

/// The control socket was bound inside a private directory beside it, by a path 16 bytes longer
/// than its own (more for a short name): a `control_socket` that fits `sun_path` (107 bytes)
/// failed to bind ("path must be shorter than SUN_LEN"), and status, plan and explain went
/// without the daemon's view. One that does not fit is refused by its length.
#[test]
fn a_control_socket_whose_path_fits_sun_path_is_opened() {
    let env = TestEnv::new();
    let base = env.dir.path().join("s");
    let pad = 107 - base.as_os_str().len() - "/c.sock".len();
    let parent = base.join("d".repeat(pad - 1));
    std::fs::create_dir_all(&parent).unwrap();
    let socket = parent.join("c.sock");
    assert_eq!(socket.as_os_str().len(), 107);
    let cfg = env.config(&format!(
        "control_socket = {:?}\nstate_dir = \"\"",
        socket.display().to_string()
    ));
    let log = env.dir.path().join("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["run", "--dry-run", "--log-level", "debug", "--config"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the daemon");
    let d = Daemon { child, log, socket };
    let start = Instant::now();
    while !d.log_text().contains("control socket") {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = d.ask(r#"{"request":"status"}"#, Duration::from_secs(10));
    assert!(v.is_ok(), "{v:?}\n{}", d.log_text());
    let left: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["c.sock"], "no private directory is left");
    drop(d);

    // One byte longer: refused, saying why.
    let long = base.join("d".repeat(pad)).join("c.sock");
    std::fs::create_dir_all(long.parent().unwrap()).unwrap();
    let cfg = env.config(&format!(
        "control_socket = {:?}\nstate_dir = \"\"",
        long.display().to_string()
    ));
    let log = env.dir.path().join("daemon2.log");
    let child = Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["run", "--dry-run", "--log-level", "debug", "--config"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the daemon");
    let d = Daemon {
        child,
        log,
        socket: long,
    };
    let start = Instant::now();
    while !d.log_text().contains("control socket") {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.log_text().contains("108 bytes long"), "{}", d.log_text());
}

/// Review of issue 23's leftovers: an explain whose client went away was to have its dry sweep
/// stopped, but the daemon noticed a client gone only at the answer's time limit (120 s): it
/// swept on for no one, holding a connection slot. It now notices a hang-up within a second.
#[test]
fn an_explain_whose_client_hung_up_is_stopped_at_once() {
    let env = TestEnv::new();
    let n = 40_000;
    stale_units(&env, n);
    let cfg = daemon_config(&env);
    let d = Daemon::start(&env, &cfg);
    let paths: Vec<String> = (0..600)
        .map(|i| {
            env.root()
                .join(format!("{BM}/{:02x}/shuffle_1_{i}_0.data", i % 64))
                .display()
                .to_string()
        })
        .collect();
    let req = serde_json::json!({"request": "explain", "paths": paths}).to_string();
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(format!("{req}\n").as_bytes()).unwrap();
    let t = Instant::now();
    drop(s);
    let gone = "explain: the client went away";
    while !d.log_text().contains(gone) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the explain ran on for a client gone:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("stopped after {:?}", t.elapsed());

    // A client that only shuts its writing side (`socat`, `nc -N`) still gets its answer.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(format!("{req}\n").as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let answer: serde_json::Value = serde_json::from_str(answer.trim()).unwrap();
    assert_eq!(answer["answers"].as_array().map(Vec::len), Some(600), "{answer:.300}");
}
