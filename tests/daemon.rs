//! The daemon, end to end: the real binary on a temporary config, scraped over HTTP with a real
//! client, driven by real signals, on real (tmpfs) filesystems where the test runs as root.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use rustix::process::{Pid, Signal, kill_process};

const BM: &str = "blockmgr-646dd966-f4a1-418b-90b6-9ce0ed5d3da5";

/// The tests here measure latencies: one daemon at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    fn start(env: &TestEnv, config: &Path) -> Daemon {
        Daemon::start_with(env, config, &[])
    }

    /// With `extra` arguments to `run`.
    fn start_with(env: &TestEnv, config: &Path, extra: &[&str]) -> Daemon {
        let log = env.dir.path().join("daemon.log");
        let port = free_port();
        // The test's config names the port by placeholder.
        let text = std::fs::read_to_string(config)
            .unwrap()
            .replace("PORT", &port.to_string());
        std::fs::write(config, text).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
            .args(["run", "--log-level", "debug", "--config"])
            .arg(config)
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the daemon");
        let d = Daemon { child, port, log };
        d.wait_for("ready", Duration::from_secs(10), || {
            d.get("/-/ready").is_some_and(|(s, _, _)| s == 200)
        });
        d
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Status, Content-Type and body; `None` when nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut resp = agent.get(&self.url(path)).call().ok()?;
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.body_mut().read_to_string().ok()?;
        Some((resp.status().as_u16(), ctype, body))
    }

    fn metrics(&self) -> String {
        let (status, _, body) = self.get("/metrics").expect("metrics answer");
        assert_eq!(status, 200);
        body
    }

    /// One sample of the scrape: `name` with all of `labels`.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample(&self.metrics(), name, labels)
    }

    fn signal(&self, sig: Signal) {
        kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), sig).unwrap();
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; daemon log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_metric(&self, name: &str, labels: &[(&str, &str)], pred: impl Fn(f64) -> bool) -> f64 {
        let mut last = None;
        self.wait_for(&format!("{name}{labels:?}"), Duration::from_secs(10), || {
            last = self.metric(name, labels);
            last.is_some_and(&pred)
        });
        last.unwrap()
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (n == name && all).then(|| value.parse().unwrap())
    })
}

fn config(env: &TestEnv, extra: &str) -> PathBuf {
    env.config(&format!("{extra}\n[metrics]\nlisten = \"127.0.0.1:PORT\"\n"))
}

#[test]
fn metrics_after_a_sweep_match_what_was_deleted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let old = [
        env.file(&format!("{BM}/0c/shuffle_0_0_0.data"), 5000, 8 * HOUR),
        env.file(&format!("{BM}/30/shuffle_0_0_0.index"), 16, 8 * HOUR),
        env.file(
            &format!("{BM}/13/temp_shuffle_b7d08763-d2f3-4573-95fe-53ce0765f38c"),
            700,
            8 * HOUR,
        ),
    ];
    let fresh = env.file(&format!("{BM}/0d/shuffle_0_3_0.index"), 24, 20 * MIN);
    let young = env.file(&format!("{BM}/1d/shuffle_0_4_0.index"), 24, MIN);
    // Reclaimed bytes are the blocks deleting frees (what `du` counts), not apparent sizes.
    let old_blocks: u64 = old.iter().map(|p| allocated(p)).sum();
    let kept_blocks = allocated(&fresh) + allocated(&young);
    let d = Daemon::start(&env, &config(&env, ""));
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);

    let (status, ctype, text) = d.get("/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    for p in &old {
        assert!(!p.exists());
    }
    assert!(fresh.exists() && young.exists());
    let root = env.root().canonicalize().unwrap().display().to_string();
    let m = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("{name}{labels:?} in\n{text}"))
    };
    assert_eq!(
        m("shuffle_janitor_reclaimed_bytes_total", &[("reason", "ttl")]),
        old_blocks as f64
    );
    assert_eq!(
        m("shuffle_janitor_reclaimed_bytes_total", &[("reason", "pressure")]),
        0.0
    );
    assert_eq!(m("shuffle_janitor_reclaimed_bytes_total", &[("reason", "manual")]), 0.0);
    assert_eq!(
        m(
            "shuffle_janitor_deleted_files_total",
            &[("reason", "ttl"), ("kind", "shuffle")]
        ),
        2.0
    );
    assert_eq!(
        m(
            "shuffle_janitor_deleted_files_total",
            &[("reason", "ttl"), ("kind", "temp")]
        ),
        1.0
    );
    assert_eq!(
        m("shuffle_janitor_tracked_files", &[("root", &root), ("kind", "shuffle")]),
        2.0
    );
    assert_eq!(
        m("shuffle_janitor_tracked_bytes", &[("root", &root), ("kind", "shuffle")]),
        kept_blocks as f64
    );
    let oldest = m("shuffle_janitor_oldest_file_age_seconds", &[("root", &root)]);
    assert!((1200.0..1300.0).contains(&oldest), "the 20-minute-old unit: {oldest}");
    assert_eq!(m("shuffle_janitor_skipped_files_total", &[("reason", "young")]), 1.0);
    for reason in ["open", "protected", "changed", "unknown"] {
        assert_eq!(
            m("shuffle_janitor_skipped_files_total", &[("reason", reason)]),
            0.0,
            "{reason}"
        );
    }
    for op in ["walk", "stat", "unlink", "statvfs", "watch", "config"] {
        assert_eq!(m("shuffle_janitor_errors_total", &[("op", op)]), 0.0, "{op}");
    }
    for trigger in ["interval", "pressure", "signal"] {
        assert_eq!(
            m("shuffle_janitor_sweeps_total", &[("trigger", trigger)]),
            0.0,
            "{trigger}"
        );
    }
    assert_eq!(m("shuffle_janitor_sweep_duration_seconds_count", &[]), 1.0);
    let last = m("shuffle_janitor_last_sweep_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - 60.0..=now).contains(&last), "{last} vs {now}");
    let used = sample(&text, "shuffle_janitor_filesystem_used_ratio", &[]).expect("a filesystem");
    assert!((0.0..=1.0).contains(&used));
    // The configured ones: the tests' configs set them out of a host disk's reach (own_state).
    assert_eq!(m("shuffle_janitor_watermark_ratio", &[("level", "high")]), 1.0);
    assert_eq!(m("shuffle_janitor_watermark_ratio", &[("level", "low")]), 0.99);
    for (setting, secs) in [
        ("interval", 600.0),
        ("max_age", 21600.0),
        ("min_age", 900.0),
        ("poll", 5.0),
    ] {
        assert_eq!(
            m("shuffle_janitor_config_seconds", &[("setting", setting)]),
            secs,
            "{setting}"
        );
    }
    assert_eq!(m("shuffle_janitor_unfreed_bytes", &[]), 0.0);
    assert_eq!(m("shuffle_janitor_inotify_active", &[]), 1.0);
    assert_eq!(m("shuffle_janitor_config_last_reload_successful", &[]), 1.0);
    // The build facts, against what git and rustc say here (build.rs reads them at build time).
    let said = |cmd: &str, args: &[&str]| {
        let out = std::process::Command::new(cmd).args(args).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let revision = said("git", &["rev-parse", "HEAD"]);
    let rustc = said(
        &std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()),
        &["--version"],
    );
    let rustversion = rustc.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(revision.len(), 40, "git rev-parse HEAD: {revision:?}");
    assert_eq!(
        m(
            "shuffle_janitor_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", &revision),
                ("rustversion", &rustversion)
            ]
        ),
        1.0,
        "{text}"
    );
    assert!(m("process_resident_memory_bytes", &[]) > 0.0);
    assert!(text.contains("# TYPE shuffle_janitor_pressure_unmet gauge"), "{text}");

    let (status, _, body) = d.get("/-/healthy").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, ctype, body) = d.get("/").unwrap();
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"));
    for link in ["metrics", "-/healthy", "-/ready"] {
        assert!(body.contains(&format!("href=\"{link}\"")), "{body}");
    }
    assert_eq!(d.get("/nope").unwrap().0, 404);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_running() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    // Watermarks no host disk reaches (see common::own_state); the reload breaks them.
    let cfg = config(&env, "max_age = \"6h\"\nwatermark.high = 1.0\nwatermark.low = 0.99");
    let d = Daemon::start(&env, &cfg);
    let good = std::fs::read_to_string(&cfg).unwrap();

    std::fs::write(
        &cfg,
        good.replace(
            "watermark.high = 1.0\nwatermark.low = 0.99",
            "watermark.low = 0.9\nwatermark.high = 0.8",
        ),
    )
    .unwrap();
    d.signal(Signal::HUP);
    d.wait_metric("shuffle_janitor_config_last_reload_successful", &[], |v| v == 0.0);
    assert_eq!(d.metric("shuffle_janitor_errors_total", &[("op", "config")]), Some(1.0));
    assert!(
        d.log_text()
            .contains("watermark.low (0.9) must be below watermark.high (0.8)"),
        "{}",
        d.log_text()
    );
    assert_eq!(
        d.metric("shuffle_janitor_watermark_ratio", &[("level", "low")]),
        Some(0.99),
        "old config in force"
    );

    // Fixed: the new values are in force and the gauge is back to 1.
    std::fs::write(&cfg, good.replace("watermark.low = 0.99", "watermark.low = 0.5")).unwrap();
    d.signal(Signal::HUP);
    d.wait_metric("shuffle_janitor_config_last_reload_successful", &[], |v| v == 1.0);
    assert_eq!(
        d.metric("shuffle_janitor_watermark_ratio", &[("level", "low")]),
        Some(0.5)
    );
}

#[test]
fn sigusr1_sweeps_now_and_sigusr2_purges_to_low() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    // No filesystem is under this low watermark: a purge takes everything past min_age.
    let d = Daemon::start(
        &env,
        &config(&env, "interval = \"1h\"\n[watermark]\nhigh = 0.999\nlow = 0.000001"),
    );
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);

    // Written beside the root and moved in: writing them in place is an open the daemon's
    // watch rightly counts as use now, whatever mtime the test sets afterwards.
    let moved_in = |rel: &str, len, age| {
        let staged = env.outside().join(rel.replace('/', "_"));
        write_aged(&staged, len, age);
        let dest = env.root().join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::rename(&staged, &dest).unwrap();
        dest
    };
    let old = moved_in(&format!("{BM}/0c/shuffle_1_0_0.data"), 100, 8 * HOUR);
    let eligible = moved_in(&format!("{BM}/0c/shuffle_1_1_0.data"), 200, HOUR);
    let young = moved_in(&format!("{BM}/0c/shuffle_1_2_0.data"), 300, 2 * MIN);
    let (old_blocks, eligible_blocks) = (allocated(&old), allocated(&eligible));
    d.signal(Signal::USR1);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "signal")], |v| v == 1.0);
    assert!(
        !old.exists(),
        "SIGUSR1 swept: the old unit is gone\n{}",
        std::fs::read_to_string(&d.log).unwrap_or_default()
    );
    assert!(eligible.exists() && young.exists());

    d.signal(Signal::USR2);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "signal")], |v| v == 2.0);
    assert!(!eligible.exists(), "SIGUSR2 purged a unit older than min_age");
    assert!(young.exists(), "a purge never takes what is younger than min_age");
    assert_eq!(
        d.metric("shuffle_janitor_reclaimed_bytes_total", &[("reason", "manual")]),
        Some(eligible_blocks as f64)
    );
    assert_eq!(
        d.metric("shuffle_janitor_reclaimed_bytes_total", &[("reason", "ttl")]),
        Some(old_blocks as f64)
    );
}

/// Issue 23: SIGUSR2 below `watermark.low` did nothing and said nothing.
#[test]
fn sigusr2_below_low_says_there_is_nothing_to_purge_and_why() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    // Every filesystem a test runs on is below this low watermark.
    let d = Daemon::start(
        &env,
        &config(&env, "interval = \"1h\"\n[watermark]\nhigh = 0.9999\nlow = 0.9998"),
    );
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    d.signal(Signal::USR2);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "signal")], |v| v == 1.0);
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("nothing to purge"))
        .unwrap_or_else(|| panic!("no word of the purge:\n{log}"));
    assert!(line.contains("at or below watermark.low"), "{line}");
    assert!(line.contains("low=0.9998"), "{line}");
    assert!(line.contains("used=") && line.contains("mountpoint="), "{line}");
}

#[test]
fn sigterm_stops_the_daemon_with_exit_0_within_5s() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    for i in 0..200 {
        env.file(&format!("{BM}/{:02x}/shuffle_2_{i}_0.data", i % 64), 10, 8 * HOUR);
    }
    let mut d = Daemon::start(&env, &config(&env, ""));
    let start = Instant::now();
    d.signal(Signal::TERM);
    let status = d
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running after 5 s:\n{}", d.log_text()));
    assert!(status.success(), "{status:?}: {}", d.log_text());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(d.log_text().contains("shuffle-janitor stopped"));
}

#[test]
fn a_fifo_or_a_symlink_in_place_of_a_state_file_is_refused_and_never_hangs_the_start() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let old = [
        env.file(&format!("{BM}/0c/shuffle_0_0_0.data"), 50, 8 * HOUR),
        env.file(&format!("{BM}/30/shuffle_0_0_0.index"), 16, 8 * HOUR),
    ];
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // What whoever can write state_dir could leave: FIFOs (a plain open waits for a writer for
    // ever), and a link under the temporary name the record of clock steps is written through.
    for name in ["opens.json", "clock-steps.json"] {
        let fifo = std::ffi::CString::new(state.join(name).into_os_string().into_encoded_bytes()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo.as_c_str(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
    let victim = env.outside().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    std::os::unix::fs::symlink(&victim, state.join(".opens.json.tmp")).unwrap();
    let cfg = config(&env, &format!("state_dir = {:?}", state.display().to_string()));
    let mut d = Daemon::start(&env, &cfg);
    d.wait_for("the refusal said", Duration::from_secs(10), || {
        d.log_text().contains("opens.json: cannot read") && d.log_text().contains("not a regular file")
    });
    d.wait_for("the first sweep", Duration::from_secs(10), || {
        old.iter().all(|p| !p.exists())
    });
    // The state is written anew at shutdown, in place of the FIFO, never through the link.
    d.signal(Signal::TERM);
    assert!(
        d.wait_exit(Duration::from_secs(5)).is_some_and(|s| s.success()),
        "{}",
        d.log_text()
    );
    assert!(
        std::fs::symlink_metadata(state.join("opens.json"))
            .unwrap()
            .file_type()
            .is_file()
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}

#[test]
fn a_nearly_full_filesystem_is_brought_under_low_fast_and_nothing_young_goes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let Some(_fs) = Mounted::tmpfs(&env.root(), "size=64m") else {
        eprintln!("SKIPPED a_nearly_full_filesystem: mounting a tmpfs needs root");
        return;
    };
    const MB: usize = 1 << 20;
    // 44 MiB of map outputs last used two hours ago (older than min_age, younger than max_age),
    // and 4 MiB written a minute ago: 75 % of 64 MiB, under the high watermark.
    let mut aged = Vec::new();
    for i in 0..44 {
        aged.push(env.file(
            &format!("{BM}/{:02x}/shuffle_0_{i}_0.data", i % 64),
            MB,
            2 * HOUR + i as u32 * MIN,
        ));
        aged.push(env.file(
            &format!("{BM}/{:02x}/shuffle_0_{i}_0.index", (i + 7) % 64),
            64,
            2 * HOUR + i as u32 * MIN,
        ));
    }
    let mut young: Vec<PathBuf> = (0..4)
        .map(|i| env.file(&format!("{BM}/3f/shuffle_1_{i}_0.data"), MB, MIN))
        .collect();
    // Default settings (poll every 5 s, high 0.85, low 0.75) but for the roots and the port;
    // the watermarks named, as the tests' configs otherwise set them out of a host disk's reach.
    let d = Daemon::start(&env, &config(&env, "watermark.high = 0.85\nwatermark.low = 0.75"));
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    assert!(aged.iter().all(|p| p.exists()), "below high, nothing but TTL goes");
    let usage = || shuffle_janitor::disk::usage(&env.root()).unwrap().ratio();
    assert!(usage() < 0.85, "{}", usage());

    // A new executor writes 10 MiB: past the high watermark.
    let new_store = "blockmgr-0be8a54c-b7f5-4f0e-b4c1-9f86469369af";
    for i in 0..10 {
        young.push(env.file(
            &format!("{new_store}/{:02x}/shuffle_0_{i}_0.data", i),
            MB,
            Duration::ZERO,
        ));
    }
    let crossed = Instant::now();
    let above = usage();
    assert!(above >= 0.85, "the test must cross high: {above}");
    let first = loop {
        if aged.iter().any(|p| !p.exists()) {
            break crossed.elapsed();
        }
        assert!(
            crossed.elapsed() < Duration::from_secs(10),
            "nothing deleted:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    d.wait_for("use under low", Duration::from_secs(10), || usage() <= 0.75);
    let under = crossed.elapsed();
    eprintln!("tmpfs at {above:.3} of 64 MiB: first deletion after {first:?}, under low after {under:?}");
    assert!(
        first <= Duration::from_secs(2),
        "from crossing high to the first deletion: {first:?}"
    );
    for p in &young {
        assert!(p.exists(), "{} is younger than min_age", p.display());
    }
    // Least recently used first (unit i was last used 2 h + i minutes ago), and whole units.
    let gone: Vec<usize> = (0..44).filter(|i| !aged[2 * i].exists()).collect();
    assert!(!gone.is_empty());
    assert_eq!(gone, (44 - gone.len()..44).collect::<Vec<_>>(), "oldest first");
    for i in 0..44 {
        assert_eq!(aged[2 * i].exists(), aged[2 * i + 1].exists(), "unit {i} whole");
    }
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "pressure")], |v| v >= 1.0);
    assert!(
        d.metric("shuffle_janitor_reclaimed_bytes_total", &[("reason", "pressure")])
            .unwrap()
            > 0.0
    );
    let ratio = d.wait_metric("shuffle_janitor_filesystem_used_ratio", &[], |v| v <= 0.75);
    assert!(ratio > 0.5, "it stops at low: {ratio}");
}

#[test]
fn a_map_output_read_after_its_mtime_survives_a_ttl_its_mtime_alone_would_fail() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    // On a noatime mount a read does not move atime; without root (no mount), leaving atime out
    // of age_basis makes the same point.
    let fs = Mounted::tmpfs(&env.root(), "size=16m,noatime");
    let basis = if fs.is_some() { "" } else { "age_basis = [\"mtime\"]" };
    let read = [
        env.file(&format!("{BM}/0c/shuffle_3_0_0.data"), 100, Duration::ZERO),
        env.file(&format!("{BM}/30/shuffle_3_0_0.index"), 16, Duration::ZERO),
    ];
    let unread = [
        env.file(&format!("{BM}/0d/shuffle_3_1_0.data"), 100, Duration::ZERO),
        env.file(&format!("{BM}/31/shuffle_3_1_0.index"), 16, Duration::ZERO),
    ];
    let t0 = Instant::now();
    let d = Daemon::start(
        &env,
        &config(
            &env,
            &format!("max_age = \"6s\"\nmin_age = \"1s\"\ninterval = \"1s\"\n{basis}"),
        ),
    );
    assert_eq!(d.metric("shuffle_janitor_inotify_active", &[]), Some(1.0));

    std::thread::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed()));
    for p in &read {
        let before = std::fs::metadata(p).unwrap();
        std::fs::read(p).unwrap();
        if fs.is_some() {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(
                std::fs::metadata(p).unwrap().atime(),
                before.atime(),
                "noatime: atime does not move"
            );
        }
    }
    // At 8 s the unread unit is 8 s past its write (TTL 6 s); the read one only 5 s past its read.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(t0.elapsed()));
    assert!(
        unread.iter().all(|p| !p.exists()),
        "never read: deleted by TTL\n{}",
        d.log_text()
    );
    assert!(
        read.iter().all(|p| p.exists()),
        "read at 3 s: still in use\n{}",
        d.log_text()
    );
    // And it is tracked, not exempt: 6 s after its read it goes too.
    d.wait_for("the read unit's TTL", Duration::from_secs(6), || {
        read.iter().all(|p| !p.exists())
    });
}

/// The deletion journal's lines (both files, oldest first), parsed.
fn journal_lines(state: &Path) -> Vec<serde_json::Value> {
    ["deletions.jsonl.1", "deletions.jsonl"]
        .iter()
        .filter_map(|n| std::fs::read_to_string(state.join(n)).ok())
        .flat_map(|t| t.lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<_>>())
        .collect()
}

fn nanos_of(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

#[test]
fn every_unit_the_daemon_deletes_is_in_the_journal_with_the_evidence_of_its_last_use() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // mtime only: a read is seen by the watch, never by a timestamp (as on a noatime mount).
    let old = [
        env.file(&format!("{BM}/0c/shuffle_4_0_0.data"), 5000, 8 * HOUR),
        env.file(&format!("{BM}/30/shuffle_4_0_0.index"), 16, 8 * HOUR),
    ];
    // The unit's last use: the newest mtime of its files.
    let old_mtime = old
        .iter()
        .map(|p| nanos_of(std::fs::metadata(p).unwrap().modified().unwrap()))
        .max()
        .unwrap();
    let read = env.file(&format!("{BM}/0d/shuffle_4_1_0.data"), 100, Duration::ZERO);
    let t0 = Instant::now();
    let d = Daemon::start(
        &env,
        &config(
            &env,
            &format!(
                // Watermarks out of reach: the machine's own disk use must not make pressure here.
                "max_age = \"6s\"\nmin_age = \"1s\"\ninterval = \"1s\"\nage_basis = [\"mtime\"]\nstate_dir = {:?}\n\
                 [watermark]\nhigh = 0.9999\nlow = 0.9998",
                state.display().to_string()
            ),
        ),
    );
    d.wait_for("the old unit's deletion", Duration::from_secs(10), || {
        old.iter().all(|p| !p.exists())
    });
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed()));
    let read_at = nanos_of(std::time::SystemTime::now());
    std::fs::read(&read).unwrap();
    d.wait_for("the read unit's TTL", Duration::from_secs(15), || !read.exists());
    // Lines are written out at the end of each sweep.
    let store = env.root().canonicalize().unwrap().join(BM);
    let mut lines = Vec::new();
    d.wait_for("both units in the journal", Duration::from_secs(5), || {
        lines = journal_lines(&state);
        lines.iter().filter(|l| l["event"] == "deleted").count() == 2
    });
    let deleted: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "deleted").collect();
    let old_line = deleted[0];
    assert_eq!(old_line["unit"]["stem"], "shuffle_4_0_0", "{old_line}");
    assert_eq!(old_line["unit"]["kind"], "shuffle");
    // In the order the unit's directories were read (ext4 and tmpfs list them differently).
    let mut files: Vec<&str> = old_line["unit"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    files.sort_unstable();
    assert_eq!(files, ["0c/shuffle_4_0_0.data", "30/shuffle_4_0_0.index"], "{old_line}");
    assert_eq!(old_line["store"], store.display().to_string());
    assert_eq!(
        old_line["root"],
        env.root().canonicalize().unwrap().display().to_string()
    );
    assert_eq!(old_line["by"], "daemon");
    assert_eq!(old_line["trigger"], "ttl");
    assert_eq!(
        old_line["rule"],
        serde_json::json!({"name": "ttl", "max_age_seconds": 6})
    );
    assert_eq!(old_line["evidence"], "mtime");
    assert_eq!(old_line["last_use_ns"], old_mtime);
    assert!(old_line["age_seconds"].as_u64().unwrap() >= 8 * 3600);
    assert!(old_line["bytes_freed"].as_u64().unwrap() >= 5000);
    assert_eq!(old_line["partial"], false);
    assert!(old_line["time"].as_str().unwrap().ends_with('Z'));

    let read_line = deleted[1];
    assert_eq!(
        read_line["unit"]["files"],
        serde_json::json!(["0d/shuffle_4_1_0.data"]),
        "{read_line}"
    );
    assert_eq!(
        read_line["evidence"], "open",
        "the read the watch saw made its last use: {read_line}"
    );
    let last_use = read_line["last_use_ns"].as_i64().unwrap();
    assert!(
        (read_at - 1_000_000_000..read_at + 1_000_000_000).contains(&last_use),
        "last use {last_use} at the read {read_at}"
    );
    // Every intent was followed by its deletion: nothing is left for a restart to report.
    let intents: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "intent").collect();
    assert_eq!(intents.len(), 2);
    for (i, d) in intents.iter().zip(&deleted) {
        assert_eq!(i["id"], d["id"]);
    }
    assert_eq!(d.metric("shuffle_janitor_journal_lines_lost_total", &[]), Some(0.0));
}

#[test]
fn a_deletion_cut_by_a_crash_is_marked_interrupted_at_the_next_start() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let store = env.root().canonicalize().unwrap().join(BM);
    // What a daemon killed between the unlinks of a unit leaves: its intent, one file gone.
    let left = env.file(&format!("{BM}/30/shuffle_5_0_0.index"), 16, 10 * MIN);
    let intent = serde_json::json!({
        "event": "intent", "id": "0.a.1", "time_ns": 1, "time": "1970-01-01T00:00:00.000000001Z",
        "store": store, "files": ["0c/shuffle_5_0_0.data", "30/shuffle_5_0_0.index"],
    });
    std::fs::write(state.join("deletions.jsonl"), format!("{intent}\n")).unwrap();
    let d = Daemon::start(
        &env,
        &config(&env, &format!("state_dir = {:?}", state.display().to_string())),
    );
    let lines = journal_lines(&state);
    let marked = lines
        .iter()
        .find(|l| l["event"] == "interrupted")
        .unwrap_or_else(|| panic!("{lines:?}\n{}", d.log_text()));
    assert_eq!(marked["id"], "0.a.1");
    assert_eq!(marked["files_gone"], serde_json::json!(["0c/shuffle_5_0_0.data"]));
    assert_eq!(marked["files_left"], serde_json::json!(["30/shuffle_5_0_0.index"]));
    assert!(d.log_text().contains("deletion was interrupted"), "{}", d.log_text());
    assert!(
        left.exists(),
        "what is left is judged by the rules, not removed for being left"
    );
}

#[test]
fn explain_reports_a_deletion_started_and_cut_and_then_its_recovery() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    // No daemon yet (a config without a metrics port to fill in): the journal alone answers.
    let cfg = env.config("");
    let state = env.dir.path().join("state");
    let store = env.root().canonicalize().unwrap().join(BM);
    // What a sweep killed between the unlinks of a unit leaves: its intent, the data file gone,
    // the index left (young: no sweep takes it, so only the journal speaks of the unit).
    let left = env.file(&format!("{BM}/30/shuffle_5_0_0.index"), 16, Duration::ZERO);
    let gone = store.join("0c/shuffle_5_0_0.data");
    let intent = serde_json::json!({
        "event": "intent", "id": "0.a.1", "time_ns": 1_700_000_000_000_000_000i64,
        "time": "2023-11-14T22:13:20.000000000Z",
        "store": store, "files": ["0c/shuffle_5_0_0.data", "30/shuffle_5_0_0.index"],
    });
    std::fs::write(state.join("deletions.jsonl"), format!("{intent}\n")).unwrap();
    let (_, v) = ask_json(&env, &cfg, &["explain", gone.to_str().unwrap()]);
    let a = &v["answers"][0];
    assert_eq!(a["verdict"], "deletion_started", "{v}");
    assert_eq!(a["journal"][0]["event"], "intent", "{v}");
    assert_eq!(a["journal"][0]["writer_running"], false, "{v}");
    assert!(a["why"].as_str().unwrap().contains("2023-11-14T22:13:20"), "{v}");
    let out = env.run(&["explain", "--config", cfg.to_str().unwrap(), gone.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("its deletion was started at 2023-11-14T22:13:20") && text.contains("may be partial"),
        "{text}"
    );
    assert!(!text.contains("not deleted by shuffle-janitor"), "{text}");
    // The daemon's start marks it interrupted; explain then says what the recovery found.
    let (cfg, _) = config_with_socket(&env, "");
    let d = Daemon::start(&env, &cfg);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    let (ok, v) = ask_json(&env, &cfg, &["explain", gone.to_str().unwrap()]);
    assert!(ok, "{v}");
    let a = &v["answers"][0];
    assert_eq!(a["verdict"], "deleted", "{v}");
    let events: Vec<&str> = a["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["interrupted"],
        "the intent is closed by the recovery's line: {v}"
    );
    assert_eq!(
        a["journal"][0]["files_left"],
        serde_json::json!(["30/shuffle_5_0_0.index"])
    );
    assert!(left.exists());
}

#[test]
fn the_journal_moved_away_by_another_process_is_written_at_its_path_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let (cfg, state) = config_with_socket(&env, "max_age = \"2s\"\nmin_age = \"1s\"\ninterval = \"1s\"");
    let first = env.file(&format!("{BM}/0c/shuffle_9_0_0.data"), 100, 8 * HOUR);
    let d = Daemon::start(&env, &cfg);
    d.wait_for("the first unit's deletion", Duration::from_secs(10), || !first.exists());
    let journal = state.join("deletions.jsonl");
    let deleted_in = |p: &Path, stem: &str| {
        std::fs::read_to_string(p).unwrap_or_default().lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["event"] == "deleted" && v["unit"]["stem"] == stem)
        })
    };
    d.wait_for("the first unit in the journal", Duration::from_secs(5), || {
        deleted_in(&journal, "shuffle_9_0_0")
    });
    // Moved away twice (as logrotate without copytruncate does, or an operator): each time the
    // next deletions go to a file at the journal's path, not to the one moved.
    for (n, stem) in [(1, "shuffle_9_1_0"), (2, "shuffle_9_2_0")] {
        let moved = state.join(format!("deletions.jsonl.moved{n}"));
        std::fs::rename(&journal, &moved).unwrap();
        let p = env.file(&format!("{BM}/0d/{stem}.data"), 100, 8 * HOUR);
        d.wait_for("the unit's deletion", Duration::from_secs(15), || !p.exists());
        d.wait_for("its line at the journal's path", Duration::from_secs(5), || {
            deleted_in(&journal, stem)
        });
        assert!(!deleted_in(&moved, stem), "not in the file moved away");
    }
    assert!(d.log_text().contains("moved away"), "{}", d.log_text());
}

#[test]
fn a_line_another_writer_left_cut_does_not_swallow_the_daemons_next_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let (cfg, state) = config_with_socket(&env, "max_age = \"2s\"\nmin_age = \"1s\"\ninterval = \"1s\"");
    let first = env.file(&format!("{BM}/0c/shuffle_9_0_0.data"), 100, 8 * HOUR);
    let d = Daemon::start(&env, &cfg);
    d.wait_for("the first unit's deletion", Duration::from_secs(10), || !first.exists());
    let journal = state.join("deletions.jsonl");
    let events_of = |stem: &str| -> Vec<String> {
        std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.to_string().contains(stem))
            .map(|v| v["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    d.wait_for("the first unit in the journal", Duration::from_secs(5), || {
        events_of("shuffle_9_0_0").contains(&"deleted".to_owned())
    });
    // A `sweep` next to the daemon whose write a full disk cut short: its line ends mid-way.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(br#"{"event":"deleted","id":"1.a.1","trigger":"tt"#)
            .unwrap();
    }
    let second = env.file(&format!("{BM}/0d/shuffle_9_1_0.data"), 100, 8 * HOUR);
    d.wait_for("the second unit's deletion", Duration::from_secs(15), || {
        !second.exists()
    });
    d.wait_for("its deleted line", Duration::from_secs(5), || {
        events_of("shuffle_9_1_0").contains(&"deleted".to_owned())
    });
    assert_eq!(
        events_of("shuffle_9_1_0"),
        ["intent", "deleted"],
        "the daemon's next line starts on a line of its own:\n{}",
        std::fs::read_to_string(&journal).unwrap()
    );
}

#[test]
fn explain_never_says_not_deleted_when_the_daemon_could_not_keep_its_journal() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let (cfg, state) = config_with_socket(&env, "");
    // Something not a file in the journal's place: the daemon deletes on, unjournaled.
    std::fs::create_dir(state.join("deletions.jsonl")).unwrap();
    let stale = env.file(&format!("{BM}/0c/shuffle_9_4_0.data"), 100, 8 * HOUR);
    let d = Daemon::start(&env, &cfg);
    d.wait_for("the unit's deletion", Duration::from_secs(10), || !stale.exists());
    assert!(
        d.log_text().contains("cannot open the deletion journal"),
        "{}",
        d.log_text()
    );
    let path = stale
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap()
        .join("shuffle_9_4_0.data");
    // Asked of the daemon, and without one (the journal alone).
    let offline = env.write_config(
        "offline.toml",
        &format!(
            "roots = [{:?}]\nstate_dir = {:?}\ncontrol_socket = {:?}",
            env.root().display().to_string(),
            state.display().to_string(),
            env.dir.path().join("none.sock").display().to_string()
        ),
    );
    for (cfg, daemon) in [(&cfg, true), (&offline, false)] {
        let (_, v) = ask_json(&env, cfg, &["explain", path.to_str().unwrap()]);
        assert_eq!(v["daemon"], daemon, "{v}");
        let a = &v["answers"][0];
        assert_eq!(a["verdict"], "unknown", "the janitor did delete it: {v}");
        assert!(a["why"].as_str().unwrap().contains("no deletion journal"), "{v}");
    }
}

#[test]
fn explain_never_says_not_deleted_when_the_daemon_lost_journal_lines_to_a_full_disk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let (cfg, state) = config_with_socket(&env, "max_age = \"2s\"\nmin_age = \"1s\"\ninterval = \"1s\"");
    let Some(_fs) = Mounted::tmpfs(&state, "size=256k") else {
        eprintln!("SKIPPED explain_never_says_not_deleted_when_the_daemon_lost_journal_lines: root needed");
        return;
    };
    let d = Daemon::start(&env, &cfg);
    // state_dir's filesystem fills up after the start: the journal is open, and cannot grow.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(state.join("filler")).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let stale = env.file(&format!("{BM}/0c/shuffle_9_5_0.data"), 100, 8 * HOUR);
    d.wait_for("the unit's deletion", Duration::from_secs(10), || !stale.exists());
    d.wait_for("its lines counted lost", Duration::from_secs(5), || {
        d.metric("shuffle_janitor_journal_lines_lost_total", &[])
            .is_some_and(|n| n > 0.0)
    });
    let path = stale
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap()
        .join("shuffle_9_5_0.data");
    let (_, v) = ask_json(&env, &cfg, &["explain", path.to_str().unwrap()]);
    let a = &v["answers"][0];
    assert_eq!(a["verdict"], "unknown", "the daemon did delete it: {v}");
    assert!(a["journal_lines_lost"].as_u64().unwrap_or(0) > 0, "{v}");
}

#[test]
fn explain_of_many_units_held_open_reads_proc_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    // 1,500 stale units, each held open by this process since before the daemon started.
    let mut held = Vec::new();
    let mut strs = Vec::new();
    for i in 0..1500 {
        let p = env.file(&format!("{BM}/{:02x}/shuffle_8_{i}_0.data", i % 64), 10, 8 * HOUR);
        held.push(std::fs::File::open(&p).unwrap());
        strs.push(p.display().to_string());
    }
    let (cfg, _) = config_with_socket(&env, "[watermark]\nhigh = 0.9999\nlow = 0.9998");
    let d = Daemon::start(&env, &cfg);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    let mut args = vec!["explain"];
    args.extend(strs.iter().map(String::as_str));
    let t = Instant::now();
    let (ok, v) = ask_json(&env, &cfg, &args);
    let took = t.elapsed();
    assert!(ok, "{}", &v.to_string()[..500.min(v.to_string().len())]);
    let me = std::process::id();
    for a in v["answers"].as_array().unwrap() {
        assert_eq!(a["reason"], "open", "{a}");
        assert!(a["open_by"].as_array().unwrap().iter().any(|p| p["pid"] == me), "{a}");
    }
    // Each unit read every process's fds and maps again: 1,500 passes over /proc.
    assert!(took < Duration::from_secs(8), "explain took {took:?}");
}

#[test]
fn explain_of_many_paths_in_a_dry_running_daemon_with_many_stale_units_is_quick() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    // A dry-running daemon (a rollout's canary) over 100,000 stale units: every one a candidate.
    let mut strs = Vec::new();
    for i in 0..100_000u32 {
        let p = env.file(&format!("{BM}/{:02x}/shuffle_8_{i}_0.data", i % 64), 0, 8 * HOUR);
        if i < 1800 {
            strs.push(p.display().to_string());
        }
    }
    let (cfg, _) = config_with_socket(&env, "dry_run = true");
    let d = Daemon::start(&env, &cfg);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    let mut args = vec!["explain"];
    args.extend(strs.iter().map(String::as_str));
    let t = Instant::now();
    let (ok, v) = ask_json(&env, &cfg, &args);
    let took = t.elapsed();
    assert!(ok, "{}", &v.to_string()[..500.min(v.to_string().len())]);
    let answers = v["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 1800);
    assert!(answers.iter().all(|a| a["verdict"] == "goes"), "{}", answers[0]);
    eprintln!("explain of 1,800 paths over 100,000 candidates: {took:?}");
    // Each path asked was searched for among every candidate and every unit: 33 s here.
    assert!(took < Duration::from_secs(20), "explain took {took:?}");
}

#[test]
fn explain_names_the_process_holding_a_unit_the_pattern_protecting_it_and_its_rank_under_pressure() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let held = env.file(&format!("{BM}/0f/shuffle_8_3_0.data"), 3000, 8 * HOUR);
    let protected = env.file(&format!("{BM}/10/shuffle_8_4_0.data"), 3000, 8 * HOUR);
    // Pressure's pool: used within max_age, past min_age; the least recently used goes first.
    let pool = [
        env.file(&format!("{BM}/20/shuffle_8_5_0.data"), 3000, 3 * HOUR),
        env.file(&format!("{BM}/21/shuffle_8_6_0.data"), 3000, HOUR),
        env.file(&format!("{BM}/22/shuffle_8_7_0.data"), 3000, 2 * HOUR),
    ];
    // And in another store, used last: in the pool too (a sweep without pressure passes over a
    // store with nothing past max_age; the ranks must not).
    env.file(
        "blockmgr-0d7f0b8e-5a4e-4f4e-9d55-8c2f7c6b1a90/23/shuffle_8_8_0.data",
        3000,
        30 * MIN,
    );
    let _open = std::fs::File::open(&held).unwrap();
    let pattern = format!("{}/*/10/**", env.root().canonicalize().unwrap().display());
    // Watermarks out of reach: the machine's own disk use must not make pressure here.
    let (cfg, _) = config_with_socket(
        &env,
        &format!("protect = [{pattern:?}]\n[watermark]\nhigh = 0.9999\nlow = 0.9998"),
    );
    let d = Daemon::start(&env, &cfg);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    let mut args = vec!["explain"];
    let strs: Vec<String> = [&held, &protected, &pool[0], &pool[1], &pool[2]]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    args.extend(strs.iter().map(String::as_str));
    let (ok, v) = ask_json(&env, &cfg, &args);
    assert!(ok, "{v}");
    let a = |i: usize| &v["answers"][i];
    assert_eq!(a(0)["reason"], "open", "{v}");
    let me = std::process::id();
    let by = a(0)["open_by"].as_array().unwrap_or_else(|| panic!("{v}"));
    let mine = by
        .iter()
        .find(|p| p["pid"] == me)
        .unwrap_or_else(|| panic!("PID {me} in {v}"));
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(mine["command"], comm.trim_end());
    assert_eq!(a(1)["reason"], "protected", "{v}");
    assert_eq!(a(1)["protect_pattern"], pattern.as_str(), "{v}");
    let ranks: Vec<(u64, u64)> = (2..5)
        .map(|i| {
            let r = &a(i)["pressure_rank"];
            (
                r["rank"].as_u64().unwrap_or_else(|| panic!("{v}")),
                r["of"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ranks, [(1, 4), (3, 4), (2, 4)], "{v}");
    // The text says the same.
    let out = env.run(&[
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        &strs[0],
        &strs[1],
        &strs[2],
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("open by: PID {me} (")), "{text}");
    assert!(
        text.contains(&format!("protected by the pattern {pattern:?}")),
        "{text}"
    );
    assert!(text.contains("under pressure: taken 1 of 4"), "{text}");
}

#[test]
fn explain_of_thousands_of_paths_is_answered_by_the_daemon() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let young = env.file(&format!("{BM}/0c/shuffle_7_0_0.data"), 100, Duration::ZERO);
    let (cfg, _) = config_with_socket(&env, "");
    let d = Daemon::start(&env, &cfg);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    // 3,000 paths, about 250 KiB of request: one request was refused past 64 KiB (its JSON cut
    // there, "not a request"), and every path was answered without the daemon's view.
    let store = young.parent().unwrap().parent().unwrap().to_owned();
    let mut strs = vec![young.display().to_string()];
    strs.extend((1..3000).map(|i| store.join(format!("1d/shuffle_7_{i}_0.data")).display().to_string()));
    let mut args = vec!["explain"];
    args.extend(strs.iter().map(String::as_str));
    let (ok, v) = ask_json(&env, &cfg, &args);
    assert!(
        ok && v["daemon"] == true,
        "{}",
        &v.to_string()[..2000.min(v.to_string().len())]
    );
    let answers = v["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 3000);
    assert_eq!(answers[0]["reason"], "young", "{}", answers[0]);
    for (a, p) in answers.iter().zip(&strs).skip(1) {
        assert_eq!(a["verdict"], "not_deleted", "{a}");
        assert!(
            a["path"].as_str().unwrap().ends_with(&p[p.len() - 20..]),
            "in order: {a} for {p}"
        );
    }
    drop(d);
}

/// `shuffle-janitor ARGS --config CONFIG --format json`, parsed; and whether it exited 0.
fn ask_json(env: &TestEnv, config: &Path, args: &[&str]) -> (bool, serde_json::Value) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--format", "json", "--config", config.to_str().unwrap()]);
    let out = env.run(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

/// A config with its own state_dir and control socket (under the test's directory).
fn config_with_socket(env: &TestEnv, extra: &str) -> (PathBuf, PathBuf) {
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let socket = env.dir.path().join("control.sock");
    let cfg = config(
        env,
        &format!(
            "state_dir = {:?}\ncontrol_socket = {:?}\n{extra}",
            state.display().to_string(),
            socket.display().to_string()
        ),
    );
    (cfg, state)
}

#[test]
fn a_dry_run_daemon_deletes_nothing_says_so_and_plans_exactly_what_a_real_run_then_deletes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let mut stale = Vec::new();
    for m in 0..3 {
        stale.push(env.file(&format!("{BM}/0{m}/shuffle_6_{m}_0.data"), 3000, 8 * HOUR));
        stale.push(env.file(&format!("{BM}/1{m}/shuffle_6_{m}_0.index"), 24, 8 * HOUR));
    }
    stale.push(env.file(
        &format!("{BM}/15/temp_shuffle_3e906d6e-e8fd-485b-86ee-c7aaff2629b5"),
        500,
        8 * HOUR,
    ));
    let kept = [
        env.file(&format!("{BM}/20/shuffle_6_7_0.data"), 3000, HOUR),
        env.file(&format!("{BM}/21/shuffle_6_8_0.data"), 3000, 5 * MIN),
        env.file(&format!("{BM}/22/rdd_6_1"), 3000, 8 * HOUR), // a kind not in kinds
    ];
    let (cfg, state) = config_with_socket(&env, "");
    let d = Daemon::start_with(&env, &cfg, &["--dry-run"]);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    for p in stale.iter().chain(&kept) {
        assert!(p.exists(), "a dry run deletes nothing: {}", p.display());
    }
    assert_eq!(d.metric("shuffle_janitor_dry_run", &[]), Some(1.0));
    assert_eq!(
        d.metric("shuffle_janitor_reclaimed_bytes_total", &[("reason", "ttl")]),
        Some(0.0)
    );
    let would: u64 = stale.iter().map(|p| allocated(p)).sum();
    assert_eq!(
        d.metric(
            "shuffle_janitor_dry_run_would_reclaim_bytes_total",
            &[("reason", "ttl")]
        ),
        Some(would as f64)
    );
    let log = d.log_text();
    assert!(
        log.contains("dry run: sweeps decide and count, and delete nothing"),
        "{log}"
    );
    assert!(log.contains("would delete 7 files"), "{log}");
    assert!(!state.join("deletions.jsonl").exists() || journal_lines(&state).is_empty());

    let (ok, plan) = ask_json(&env, &cfg, &["plan"]);
    assert!(ok, "{plan}");
    assert_eq!(plan["daemon_dry_run"], true);
    let mut planned: Vec<String> = plan["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_owned())
        .collect();
    planned.sort();
    let mut want: Vec<String> = stale
        .iter()
        .map(|p| p.canonicalize().unwrap().display().to_string())
        .collect();
    want.sort();
    assert_eq!(planned, want, "the plan is the stale units, whole");
    drop(d);

    // The same tree, for real: what goes is what the plan said.
    let (cfg, _) = config_with_socket(&env, "");
    let d = Daemon::start(&env, &cfg);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    assert_eq!(d.metric("shuffle_janitor_dry_run", &[]), Some(0.0));
    let mut gone: Vec<String> = stale
        .iter()
        .chain(&kept)
        .filter(|p| !p.exists())
        .map(|p| {
            env.root()
                .canonicalize()
                .unwrap()
                .join(p.strip_prefix(env.root()).unwrap())
                .display()
                .to_string()
        })
        .collect();
    gone.sort();
    assert_eq!(gone, planned, "{}", d.log_text());
    let mut journaled: Vec<String> = Vec::new();
    d.wait_for("the journal", Duration::from_secs(5), || {
        journaled = journal_lines(&state)
            .iter()
            .filter(|l| l["event"] == "deleted")
            .flat_map(|l| {
                let store = l["store"].as_str().unwrap().to_owned();
                l["unit"]["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |f| format!("{store}/{}", f.as_str().unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect();
        journaled.len() == planned.len()
    });
    journaled.sort();
    assert_eq!(journaled, planned);
}

#[test]
fn explain_answers_from_the_journal_for_a_deleted_file_and_with_the_daemons_reason_for_kept_ones() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let old = env.file(&format!("{BM}/0c/shuffle_7_0_0.data"), 3000, 8 * HOUR);
    let young = env.file(&format!("{BM}/0d/shuffle_7_1_0.data"), 3000, MIN);
    let recent = env.file(&format!("{BM}/0e/shuffle_7_2_0.data"), 3000, HOUR);
    let held = env.file(&format!("{BM}/0f/shuffle_7_3_0.data"), 3000, 8 * HOUR);
    let protected = env.file(&format!("{BM}/10/shuffle_7_4_0.data"), 3000, 8 * HOUR);
    let foreign = env.file(&format!("{BM}/11/core.1234"), 3000, 8 * HOUR);
    let never = env.root().join(format!("{BM}/12/shuffle_7_9_0.data"));
    // A link with a Spark name to an old file outside: explained as the link, never its target.
    let target = env.outside().join("old.data");
    write_aged(&target, 10, 8 * HOUR);
    let link = env.root().join(format!("{BM}/13/shuffle_7_5_0.data"));
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // Held open by this test for as long as it runs: the daemon's /proc scan finds it.
    let _open = std::fs::File::open(&held).unwrap();
    let protect = env.root().canonicalize().unwrap().join(format!("{BM}/10"));
    // Watermarks out of reach: the machine's own disk use (this test's /tmp) must not make
    // pressure take the recent unit.
    let (cfg, _) = config_with_socket(
        &env,
        &format!(
            "protect = [{:?}]\n[watermark]\nhigh = 0.9999\nlow = 0.9998",
            protect.display().to_string()
        ),
    );
    let d = Daemon::start(&env, &cfg);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    assert!(!old.exists(), "{}", d.log_text());

    let paths = [&old, &young, &recent, &held, &protected, &foreign, &never, &link];
    let mut args = vec!["explain"];
    let strs: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(strs.iter().map(String::as_str));
    let (ok, v) = ask_json(&env, &cfg, &args);
    assert!(ok, "{v}");
    assert_eq!(v["daemon"], true);
    let a = |i: usize| &v["answers"][i];

    assert_eq!(a(0)["verdict"], "deleted", "{}", a(0));
    let entry = &a(0)["journal"][0];
    assert_eq!(entry["event"], "deleted");
    assert_eq!(entry["trigger"], "ttl");
    assert_eq!(entry["evidence"], "mtime");
    assert_eq!(entry["unit"]["files"], serde_json::json!(["0c/shuffle_7_0_0.data"]));

    assert_eq!(
        (&a(1)["verdict"], &a(1)["reason"]),
        (&"kept".into(), &"young".into()),
        "{}",
        a(1)
    );
    assert_eq!(
        (&a(2)["verdict"], &a(2)["reason"]),
        (&"kept".into(), &"recent".into()),
        "{}",
        a(2)
    );
    // The TTL takes it 6 h after its last use, 1 h ago: 5 h from now.
    let eligible = a(2)["eligible_at"].as_str().unwrap();
    // Its last use: the newer of mtime and atime (age_basis).
    let meta = std::fs::metadata(&recent).unwrap();
    let last_use = meta.modified().unwrap().max(meta.accessed().unwrap());
    // (Or a little later: from when the daemon last could have missed a use, if that is later.)
    let eligible = humantime::parse_rfc3339(eligible).unwrap();
    let late = eligible
        .duration_since(last_use + 6 * HOUR)
        .expect("not before its last use + max_age");
    assert!(late < Duration::from_secs(1), "{late:?}");
    assert_eq!(
        (&a(3)["verdict"], &a(3)["reason"]),
        (&"kept".into(), &"open".into()),
        "{}",
        a(3)
    );
    assert_eq!(
        (&a(4)["verdict"], &a(4)["reason"]),
        (&"never".into(), &"protected".into()),
        "{}",
        a(4)
    );
    assert_eq!(a(5)["verdict"], "never", "{}", a(5));
    assert!(a(5)["why"].as_str().unwrap().contains("not one of Spark's"), "{}", a(5));
    assert_eq!(a(6)["verdict"], "not_deleted", "{}", a(6));
    assert!(
        a(6)["why"]
            .as_str()
            .unwrap()
            .starts_with("not deleted by shuffle-janitor since 20")
    );
    assert_eq!(a(7)["verdict"], "never", "{}", a(7));
    assert!(a(7)["why"].as_str().unwrap().contains("never followed"), "{}", a(7));

    // And the daemon does what it said: a sweep keeps every one of them.
    d.signal(Signal::USR1);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "signal")], |v| v == 1.0);
    for p in [&young, &recent, &held, &protected, &foreign, &target] {
        assert!(p.exists(), "{}", p.display());
    }
    assert!(link.symlink_metadata().is_ok());
    // The text, for people.
    let out = env.run(&[
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        old.to_str().unwrap(),
        held.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("deleted at ") && text.contains("ttl: unused for longer than max_age (6h)"),
        "{text}"
    );
    assert!(text.contains("kept: a process holds one of its files open"), "{text}");

    // Without the daemon: it says so, and still answers for the deleted file from the journal.
    drop(d);
    let out = env.run(&["explain", "--config", cfg.to_str().unwrap(), old.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("no daemon answers on"), "{text}");
    assert!(text.contains("deleted at "), "{text}");
}

#[test]
fn status_shows_the_daemons_state() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    env.file(&format!("{BM}/0c/shuffle_8_0_0.data"), 3000, 8 * HOUR);
    env.file(&format!("{BM}/0d/shuffle_8_1_0.data"), 3000, HOUR);
    let (cfg, _) = config_with_socket(&env, "");
    let d = Daemon::start_with(&env, &cfg, &["--dry-run"]);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    let (ok, v) = ask_json(&env, &cfg, &["status"]);
    assert!(ok, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["config"], cfg.display().to_string());
    assert_eq!(v["index"]["units"], 2);
    assert_eq!(
        v["roots"][0]["path"],
        env.root().canonicalize().unwrap().display().to_string()
    );
    assert!(v["roots"][0]["used_ratio"].as_f64().is_some());
    let sweep = &v["last_sweeps"][0];
    assert_eq!(
        (&sweep["trigger"], &sweep["dry_run"], &sweep["deleted_files"]),
        (&"startup".into(), &true.into(), &1.into()),
        "{v}"
    );
    assert!(v["next_sweep"].as_str().unwrap().ends_with('Z'));
    let out = env.run(&["status", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DRY RUN") && text.contains("would delete 1 files"),
        "{text}"
    );
    // The socket is the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.dir.path().join("control.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A purge frees what it needs and no more: the units are taken least recently used first and
/// the first that meets the need is the last to go, as a dry run and `plan` say (r31 deleted
/// them on several threads, each taking the next unit while the need was not met yet, so a
/// unit per thread more went than the need asked for: a job's shuffle output deleted for
/// nothing).
#[test]
fn a_purge_deletes_no_unit_past_the_one_that_meets_its_need() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let Some(_fs) = Mounted::tmpfs(&env.root(), "size=8m") else {
        eprintln!("SKIPPED: needs root to mount a tmpfs");
        return;
    };
    const UNITS: usize = 200;
    const UNIT: usize = 16 * 1024;
    // Past min_age, within max_age: pressure's pool, least recently used first (unit 0).
    let units: Vec<PathBuf> = (0..UNITS)
        .map(|i| {
            env.file(
                &format!("{BM}/{:02x}/shuffle_9_{i}_0.data", i % 64),
                UNIT,
                2 * HOUR + Duration::from_secs(10 * (UNITS - i) as u64),
            )
        })
        .collect();
    let usage = rustix::fs::statvfs(env.root()).unwrap();
    let (used, size) = (
        (usage.f_blocks - usage.f_bfree) * usage.f_frsize,
        (usage.f_blocks - usage.f_bfree + usage.f_bavail) * usage.f_frsize,
    );
    // The need: 100 units and a half; 101 must go, no more.
    let want = 101;
    let low = (used - (want as u64 * UNIT as u64 - UNIT as u64 / 2)) as f64 / size as f64;
    let (cfg, state) = config_with_socket(&env, &format!("[watermark]\nhigh = 0.9999\nlow = {low}"));
    let d = Daemon::start(&env, &cfg);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "startup")], |v| v == 1.0);
    d.signal(Signal::USR2);
    d.wait_metric("shuffle_janitor_sweeps_total", &[("trigger", "signal")], |v| v == 1.0);
    let gone: Vec<usize> = (0..UNITS).filter(|i| !units[*i].exists()).collect();
    assert_eq!(
        gone,
        (0..want).collect::<Vec<_>>(),
        "the {want} least recently used units went, and only they\n{}",
        d.log_text()
    );
    assert_eq!(
        d.metric(
            "shuffle_janitor_deleted_files_total",
            &[("reason", "manual"), ("kind", "shuffle")]
        ),
        Some(want as f64)
    );
    let journal = std::fs::read_to_string(state.join("deletions.jsonl")).unwrap();
    let mut ranks: Vec<u64> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "deleted")
        .map(|v| v["rule"]["rank"].as_u64().unwrap_or_else(|| panic!("{v}")))
        .collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=want as u64).collect::<Vec<_>>());
}
