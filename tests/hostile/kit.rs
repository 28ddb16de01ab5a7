//! What every scenario shares: its row of the table, the oracle (what must survive, computed
//! from what the test itself created), snapshots of victim trees, the binary run as `sweep` and
//! as a daemon, and guards that undo what a scenario changed on the machine (sysctls, mounts).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

pub use crate::common::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_shuffle-janitor");

/// What a scenario ended as.
#[derive(Clone, Debug)]
pub enum Status {
    Pass,
    Fail(String),
    Skipped(String),
}

/// A scenario: its name (for the table and the command line's filter) and its body.
pub type Scenario = (&'static str, fn(&mut Sc));

/// One row of the table, filled by the scenario as it runs.
pub struct Sc {
    pub name: &'static str,
    /// `--full`: the sizes the issue names instead of CI's.
    pub full: bool,
    pub iterations: u64,
    pub judged: u64,
    pub deletions: u64,
    pub violations: u64,
    pub failures: Vec<String>,
    pub skipped: Option<String>,
    pub notes: Vec<String>,
}

impl Sc {
    pub fn new(name: &'static str, full: bool) -> Sc {
        Sc {
            name,
            full,
            iterations: 0,
            judged: 0,
            deletions: 0,
            violations: 0,
            failures: Vec::new(),
            skipped: None,
            notes: Vec::new(),
        }
    }

    /// A file deleted outside the rules, a unit deleted in part, or anything touched outside the
    /// roots or on another filesystem.
    pub fn violation(&mut self, what: impl AsRef<str>) {
        self.violations += 1;
        if self.violations <= 20 {
            eprintln!("VIOLATION {}: {}", self.name, what.as_ref());
        }
    }

    /// An assertion of the scenario (not a deletion): recorded, the scenario goes on.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if !ok {
            let mut w = what();
            if w.len() > 1500 {
                let mut cut = 1500;
                while !w.is_char_boundary(cut) {
                    cut -= 1;
                }
                w.truncate(cut);
                w.push_str(" [...]");
            }
            eprintln!("FAILED {}: {w}", self.name);
            self.failures.push(w);
        }
        ok
    }

    /// Root-only steps (mount, sysctl, chattr, setpriv) call this when they cannot run.
    pub fn skip(&mut self, reason: &str) {
        eprintln!("SKIPPED {}: {reason}", self.name);
        self.skipped = Some(reason.to_string());
    }

    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        eprintln!("  {}: {s}", self.name);
        self.notes.push(s);
    }

    pub fn status(&self) -> Status {
        if !self.failures.is_empty() || self.violations > 0 {
            Status::Fail(self.failures.first().cloned().unwrap_or_else(|| "violations".into()))
        } else if let Some(s) = &self.skipped {
            Status::Skipped(s.clone())
        } else {
            Status::Pass
        }
    }

    /// Scales a CI size to the size under `--full`.
    pub fn size(&self, ci: usize, full: usize) -> usize {
        if self.full { full } else { ci }
    }
}

// ---------------------------------------------------------------------------------------------
// Trees and oracles

/// A `blockmgr-*` name.
pub fn bm(tag: &str) -> String {
    format!("blockmgr-{tag}")
}

/// `NN` for a name, as Spark spreads a map output's files over its store.
pub fn nn_for(name: &str, subdirs: u32) -> String {
    let h = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("{:02x}", h % subdirs)
}

/// The three files of map output `shuffle_S_M_0` in `store`, hashed into `NN` directories
/// (not created).
pub fn unit_paths(store: &Path, s: u32, m: u64) -> Vec<PathBuf> {
    ["data", "index", "checksum.ADLER32"]
        .iter()
        .map(|ext| {
            let name = format!("shuffle_{s}_{m}_0.{ext}");
            store.join(nn_for(&name, 64)).join(name)
        })
        .collect()
}

/// Writes a map output's files, `len` bytes for the data, last used `age` ago and provably
/// unread since (see `set_age`).
pub fn write_unit(files: &[PathBuf], len: usize, age: Duration) {
    for (i, f) in files.iter().enumerate() {
        write_aged(f, if i == 0 { len } else { 16 }, age);
    }
}

/// Writes files in `stage` (same filesystem) and renames them in: a daemon's watch sees a
/// rename, not an open, so the files keep the age they were given.
pub fn move_in(files: &[PathBuf], len: usize, age: Duration, stage: &Path) {
    std::fs::create_dir_all(stage).unwrap();
    for (i, f) in files.iter().enumerate() {
        let tmp = stage.join(format!("{}-{i}", f.file_name().unwrap().to_string_lossy()));
        write_aged(&tmp, if i == 0 { len } else { 16 }, age);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::rename(&tmp, f).unwrap();
    }
}

/// A unit as the test made it, and whether the rules let it go.
#[derive(Clone, Debug)]
pub struct OUnit {
    pub files: Vec<PathBuf>,
    pub must_survive: bool,
    /// Something other than the janitor may remove files of it: no whole-unit check.
    pub attacked: bool,
}

/// The test's own account of what may go: units, single files that must stay, and trees that
/// nothing may change.
#[derive(Default)]
pub struct Oracle {
    pub units: Vec<OUnit>,
    pub keep: Vec<PathBuf>,
    pub victims: Vec<(PathBuf, Snapshot)>,
}

impl Oracle {
    pub fn unit(&mut self, files: Vec<PathBuf>, must_survive: bool) -> usize {
        self.units.push(OUnit {
            files,
            must_survive,
            attacked: false,
        });
        self.units.len() - 1
    }

    pub fn keep(&mut self, p: impl Into<PathBuf>) {
        self.keep.push(p.into());
    }

    /// A tree nothing may change (outside the roots, another filesystem): snapshot now.
    pub fn victim(&mut self, dir: &Path) {
        self.victims.push((dir.to_owned(), Snapshot::of(dir)));
    }

    /// Counts violations; returns (files judged, files deleted).
    pub fn verify(&self, sc: &mut Sc) -> (u64, u64) {
        let (mut judged, mut deleted) = (0u64, 0u64);
        for u in &self.units {
            let present = u.files.iter().filter(|p| exists(p)).count();
            judged += u.files.len() as u64;
            deleted += (u.files.len() - present) as u64;
            if u.must_survive {
                for p in u.files.iter().filter(|p| !exists(p)) {
                    sc.violation(format!("must survive, gone: {}", p.display()));
                }
            } else if !u.attacked && present != 0 && present != u.files.len() {
                sc.violation(format!(
                    "unit deleted in part ({present} of {} left): {}",
                    u.files.len(),
                    u.files[0].display()
                ));
            }
        }
        for p in &self.keep {
            judged += 1;
            if !exists(p) {
                sc.violation(format!("must survive, gone: {}", p.display()));
            }
        }
        for (dir, before) in &self.victims {
            let after = Snapshot::of(dir);
            judged += before.0.len() as u64;
            for d in before.diff(&after) {
                sc.violation(format!("outside the rules, changed: {d}"));
            }
        }
        (judged, deleted)
    }

    /// [`Oracle::verify`] into the scenario's row.
    pub fn tally(&self, sc: &mut Sc) {
        let (j, d) = self.verify(sc);
        sc.judged += j;
        sc.deletions += d;
    }
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Every entry below a directory (not following symlinks, crossing nothing): type, inode, size,
/// mtime. Reading never changes it (atime is left out).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot(pub BTreeMap<PathBuf, (char, u64, u64, i64, i64)>);

impl Snapshot {
    pub fn of(dir: &Path) -> Snapshot {
        let mut m = BTreeMap::new();
        for e in walkdir::WalkDir::new(dir).follow_links(false).into_iter().flatten() {
            let Ok(md) = e.path().symlink_metadata() else { continue };
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_fifo() {
                'p'
            } else if ft.is_socket() {
                's'
            } else if ft.is_char_device() || ft.is_block_device() {
                'c'
            } else {
                'f'
            };
            // A directory's mtime moves with the janitor's private renames only inside roots.
            let mtime = if kind == 'd' { 0 } else { md.mtime() };
            let mnsec = if kind == 'd' { 0 } else { md.mtime_nsec() };
            m.insert(e.path().to_owned(), (kind, md.ino(), md.size(), mtime, mnsec));
        }
        Snapshot(m)
    }

    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (p, v) in &self.0 {
            match after.0.get(p) {
                None => out.push(format!("{} removed", p.display())),
                Some(a) if a != v => out.push(format!("{} modified", p.display())),
                _ => {}
            }
        }
        for p in after.0.keys() {
            if !self.0.contains_key(p) {
                out.push(format!("{} added", p.display()));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The binary

/// A config of `roots` and `extra`, with a `state_dir` and `control_socket` of its own unless
/// `extra` sets them: never the machine's, which another checkout's daemon may hold. The same
/// roots get the same state (a scenario's reloads and restarts keep theirs).
pub fn config_text(roots: &[&Path], extra: &str) -> String {
    use std::hash::{Hash, Hasher};
    static STATES: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let base = STATES.get_or_init(|| tempfile::tempdir().unwrap());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    roots.hash(&mut h);
    let own = own_state(&base.path().join(format!("{:016x}", h.finish())), extra);
    let roots: Vec<String> = roots.iter().map(|r| format!("{:?}", r.display().to_string())).collect();
    format!("roots = [{}]\n{own}{extra}\n", roots.join(", "))
}

/// `sweep --format json`; (exit code, report, stderr).
pub fn sweep(config: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(BIN)
        .args(["sweep", "--format", "json", "--config"])
        .arg(config)
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    parse_sweep(out)
}

/// [`sweep`] run inside a node of its own ([`crate::common::Node`]).
pub fn sweep_in(node: &crate::common::Node, config: &Path) -> (i32, serde_json::Value, String) {
    let out = node
        .command(BIN)
        .args(["sweep", "--format", "json", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    parse_sweep(out)
}

pub fn parse_sweep(out: std::process::Output) -> (i32, serde_json::Value, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// `sweep` through a shell (for `ulimit`) or `setpriv` (as nobody).
pub fn sweep_via(prefix: &str, config: &Path) -> (i32, serde_json::Value, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{prefix} {BIN} sweep --format json --config '{}'",
            config.display()
        ))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    parse_sweep(out)
}

pub fn jnum(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

/// The daemon, on 127.0.0.1, with its log in a file.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub config: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    /// Starts `run` on `config` (its `[metrics]` is appended here), waits until ready.
    pub fn start(dir: &Path, config_body: &str) -> Daemon {
        Daemon::start_with(dir, config_body, &[], "")
    }

    /// With extra environment and a shell prefix (`ulimit -n 1024;`, `faketime ...`).
    pub fn start_with(dir: &Path, config_body: &str, env: &[(&str, &str)], prefix: &str) -> Daemon {
        Daemon::start_cmd(dir, config_body, env, |config| {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(format!(
                "{prefix} exec {BIN} run --log-level debug --config '{}'",
                config.display()
            ));
            cmd
        })
    }

    /// Inside a node of its own ([`crate::common::Node`]).
    pub fn start_in(node: &crate::common::Node, dir: &Path, config_body: &str) -> Daemon {
        Daemon::start_cmd(dir, config_body, &[], |config| {
            let mut cmd = node.command(BIN);
            cmd.args(["run", "--log-level", "debug", "--config"]).arg(config);
            cmd
        })
    }

    /// `command` makes the command for the config file; `env` is set on it after the test's own
    /// `RUST_LOG` and `NOTIFY_SOCKET` are removed (a scenario may set its own).
    fn start_cmd(
        dir: &Path,
        config_body: &str,
        env: &[(&str, &str)],
        command: impl FnOnce(&Path) -> Command,
    ) -> Daemon {
        let port = free_port();
        let config = dir.join(format!("daemon-{port}.toml"));
        std::fs::write(
            &config,
            format!("{config_body}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        )
        .unwrap();
        let log = dir.join(format!("daemon-{port}.log"));
        let mut cmd = command(&config);
        cmd.env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the daemon");
        let d = Daemon {
            child,
            port,
            log,
            config,
        };
        let t = Instant::now();
        while d.get("/-/ready").is_none_or(|(s, _)| s != 200) {
            if t.elapsed() > Duration::from_secs(15) {
                panic!("daemon not ready in 15 s:\n{}", d.log_tail(40));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        d
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Rewrites the config (keeping the metrics address) and sends SIGHUP.
    pub fn reload(&self, config_body: &str) {
        self.write_config(config_body);
        self.signal(Signal::HUP);
    }

    pub fn write_config(&self, config_body: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(
            &tmp,
            format!("{config_body}\n[metrics]\nlisten = \"127.0.0.1:{}\"\n", self.port),
        )
        .unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill_process(Pid::from_raw(self.pid()).unwrap(), sig);
    }

    /// A plain HTTP/1.0 GET with a timeout: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path, Duration::from_secs(3))
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample(&self.metrics(), name, labels)
    }

    /// Sum of a metric over all its label sets.
    pub fn metric_sum(&self, name: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, v) = l.rsplit_once(' ')?;
                let n = series.split('{').next()?;
                (n == name).then(|| v.parse::<f64>().ok()).flatten()
            })
            .sum()
    }

    /// Waits until `pred` holds on the metric (or `timeout`); returns the last value.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> Option<f64> {
        let t = Instant::now();
        loop {
            let v = self.metric(name, labels);
            if v.is_some_and(&pred) || t.elapsed() > timeout {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sweeps(&self) -> f64 {
        self.metric_sum("shuffle_janitor_sweeps_total")
    }

    /// Waits for `n` more sweeps to finish than now.
    pub fn wait_sweeps(&self, n: f64, timeout: Duration) -> bool {
        let start = self.sweeps();
        let t = Instant::now();
        while self.sweeps() < start + n {
            if t.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let t = self.log_text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status(self.pid(), "VmRSS:")
    }

    pub fn hwm_kib(&self) -> u64 {
        proc_status(self.pid(), "VmHWM:")
    }

    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// SIGTERM and the time to exit (`None`: not within `timeout`, then killed).
    pub fn stop(&mut self, timeout: Duration) -> Option<(Duration, std::process::ExitStatus)> {
        let t = Instant::now();
        self.signal(Signal::TERM);
        while t.elapsed() < timeout {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some((t.elapsed(), s));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// The log says no panic.
    pub fn no_panic(&self, sc: &mut Sc) {
        let log = self.log_text();
        sc.check(!log.contains("panicked"), || {
            format!(
                "daemon panicked: {}",
                log.lines().find(|l| l.contains("panicked")).unwrap_or("")
            )
        });
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn proc_status(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (n == name && all).then(|| value.parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------------------------
// Machine state, undone on drop

/// A sysctl set for the scenario and restored when dropped (also on a panic).
pub struct Sysctl {
    path: PathBuf,
    old: String,
}

impl Sysctl {
    pub fn set(name: &str, value: &str) -> Option<Sysctl> {
        if !is_root() {
            return None;
        }
        let path = PathBuf::from("/proc/sys").join(name.replace('.', "/"));
        let old = std::fs::read_to_string(&path).ok()?.trim().to_string();
        std::fs::write(&path, value).ok()?;
        Some(Sysctl { path, old })
    }

    pub fn update(&self, value: &str) {
        let _ = std::fs::write(&self.path, value);
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.old);
    }
}

pub fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A scratch directory removed with `rm -rf` (deep trees, read-only mounts undone first).
pub struct Scratch {
    pub env: TestEnv,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { env: TestEnv::new() }
    }

    pub fn path(&self) -> &Path {
        self.env.dir.path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.env.dir.path().join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Anything still mounted below (a scenario that failed half-way) goes first.
        let p = self.env.dir.path().display().to_string();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "chattr -R -i -a '{p}' 2>/dev/null; for m in $(awk '{{print $5}}' /proc/self/mountinfo | grep '^{p}' | sort -r); do umount -l \"$m\"; done; chmod -R u+rwx '{p}' 2>/dev/null; rm -rf '{p}'"
            ))
            .stderr(Stdio::null())
            .status();
    }
}

/// Deterministic pseudo-random numbers (xorshift), seeded per scenario: a failure repeats.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// A fresh uuid-like string (Spark's in-progress names and temp files).
pub fn uuid(rng: &mut Rng) -> String {
    let h = format!("{:016x}{:016x}", rng.next(), rng.next());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub fn used_bytes(p: &Path) -> u64 {
    shuffle_janitor::disk::usage(p).map_or(0, |u| u.used)
}
