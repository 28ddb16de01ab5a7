//! A temporary Spark local dir with back-dated files, and helpers to run the binary on it.
#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use filetime::FileTime;

pub const HOUR: Duration = Duration::from_secs(3600);
pub const MIN: Duration = Duration::from_secs(60);

pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The Spark local dir the janitor is pointed at.
    pub fn root(&self) -> PathBuf {
        let r = self.dir.path().join("local");
        std::fs::create_dir_all(&r).unwrap();
        r
    }

    /// A directory beside the root, never to be touched.
    pub fn outside(&self) -> PathBuf {
        let r = self.dir.path().join("outside");
        std::fs::create_dir_all(&r).unwrap();
        r
    }

    /// Creates `rel` below the root with `len` bytes, last modified and accessed `age` ago.
    pub fn file(&self, rel: &str, len: usize, age: Duration) -> PathBuf {
        let p = self.root().join(rel);
        write_aged(&p, len, age);
        p
    }

    pub fn config(&self, extra: &str) -> PathBuf {
        let p = self.dir.path().join("config.toml");
        let own = own_state(&self.dir.path().join("state"), extra);
        let text = format!("roots = [{:?}]\n{own}{extra}\n", self.root().display().to_string());
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes a hand-written config `name` beside the root, with the keys that give the binary
    /// a state of its own ([`own_state`]) first, before any table the text opens.
    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        let own = own_state(&self.dir.path().join("state"), text);
        std::fs::write(&p, format!("{own}{text}\n")).unwrap();
        p
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run shuffle-janitor")
    }

    /// `sweep --format json` with the given extra arguments; returns the parsed report.
    pub fn sweep_json(&self, config: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec!["sweep", "--format", "json", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), json)
    }
}

pub fn write_aged(p: &Path, len: usize, age: Duration) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, vec![b'x'; len]).unwrap();
    set_age(p, age);
}

/// Makes `p` a file written `age` ago and never read since: mtime `age` ago, atime a day before
/// (a file's atime is its creation while nothing reads it). A day, so that even under `relatime`
/// the timestamps alone prove it unread since its write: the daemon, which must not delete by
/// TTL what may have been read while it was not watching, may then delete it at once.
pub fn set_age(p: &Path, age: Duration) {
    let m = FileTime::from_system_time(SystemTime::now() - age);
    let a = FileTime::from_system_time(SystemTime::now() - age - 24 * HOUR);
    filetime::set_file_times(p, a, m).unwrap();
}

/// Paths listed in a JSON report's `candidates`, sorted.
pub fn candidate_paths(report: &serde_json::Value) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = report["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| PathBuf::from(c["path"].as_str().unwrap()))
        .collect();
    v.sort();
    v
}

/// Every regular file and symlink below `dir`, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// Bytes allocated to a file (`st_blocks * 512`): what deleting its only link frees.
pub fn allocated(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().blocks() * 512
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A mount made by a test (root only), lazily unmounted when dropped.
pub struct Mounted(PathBuf);

impl Mounted {
    /// `mount -t tmpfs -o OPTIONS tmpfs AT`; `None` without root.
    pub fn tmpfs(at: &Path, options: &str) -> Option<Mounted> {
        Mounted::run(at, &["-t", "tmpfs", "-o", options, "tmpfs"])
    }

    /// `mount --bind FROM AT`, then read-only if asked; `None` without root.
    pub fn bind(from: &Path, at: &Path, read_only: bool) -> Option<Mounted> {
        let m = Mounted::run(at, &["--bind", from.to_str().unwrap()])?;
        if read_only {
            let ok = Command::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(at)
                .status()
                .unwrap();
            assert!(ok.success(), "remount {} read-only", at.display());
        }
        Some(m)
    }

    fn run(at: &Path, args: &[&str]) -> Option<Mounted> {
        if !is_root() {
            return None;
        }
        if !at.exists() {
            std::fs::create_dir_all(at).unwrap();
        }
        let ok = Command::new("mount").args(args).arg(at).status().unwrap();
        assert!(ok.success(), "mount {args:?} at {}", at.display());
        Some(Mounted(at.to_owned()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `chattr +ATTR` on a path, undone when dropped (so the temporary directory can be removed).
pub struct Chattr(PathBuf, &'static str);

impl Chattr {
    /// `None`, after a SKIPPED line naming `test`, where the filesystem does not support it.
    pub fn set(path: &Path, attr: &'static str, test: &str) -> Option<Chattr> {
        let ok = Command::new("chattr")
            .arg(format!("+{attr}"))
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED {test}: chattr +{attr} is not supported here");
        }
        ok.then(|| Chattr(path.to_owned(), attr))
    }
}

impl Drop for Chattr {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg(format!("-{}", self.1)).arg(&self.0).status();
    }
}

/// A node of the test's own: a PID namespace with its own `/proc`, in a mount namespace copied
/// from the test's when the node is made (make mounts first: later ones reach it only where the
/// host's mounts are shared). The liveness rule sees only the processes the
/// test starts there, whatever else runs on the machine (another checkout's Spark, an IDE's
/// JVM), and the binary is told that this namespace is the node (`stores.pid_namespace =
/// "own"`, [`Node::CONFIG`]): without it, it is rightly blind there.
pub struct Node {
    holder: std::process::Child,
    /// The namespace's PID 1 (as this process sees it).
    init: u32,
}

/// A process started in a [`Node`].
pub struct NodeChild {
    outer: std::process::Child,
    /// Its PID as this process sees it.
    pub pid: u32,
}

impl NodeChild {
    /// A process started some other way, killed the same way.
    pub fn adopt(outer: std::process::Child, pid: u32) -> NodeChild {
        NodeChild { outer, pid }
    }

    pub fn kill(&mut self) {
        let _ = Command::new("kill")
            .arg("-9")
            .arg(self.pid.to_string())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.outer.kill();
        let _ = self.outer.wait();
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first child of process `pid`, once it has one (up to 5 s).
fn first_child(pid: u32) -> Option<u32> {
    for _ in 0..500 {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = children.split_whitespace().next().and_then(|c| c.parse().ok()) {
            return Some(c);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

impl Node {
    /// The config lines that make the binary take the node's namespace as the node.
    pub const CONFIG: &'static str = "[stores]\npid_namespace = \"own\"\n";

    /// A new node, or `None` (having said `SKIPPED` and why) where namespaces cannot be made.
    pub fn new(test: &str) -> Option<Node> {
        let holder = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--propagation",
                "slave",
                "sleep",
                "3600",
            ])
            .stdin(std::process::Stdio::null())
            .spawn();
        let Ok(mut holder) = holder else {
            eprintln!("SKIPPED {test}: unshare cannot be run here");
            return None;
        };
        let init = first_child(holder.id());
        let ready = init.is_some_and(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid")).ok() != std::fs::read_link("/proc/self/ns/pid").ok()
        });
        match (init, ready) {
            (Some(init), true) => Some(Node { holder, init }),
            _ => {
                let _ = holder.kill();
                let _ = holder.wait();
                eprintln!("SKIPPED {test}: no PID namespace of its own could be made here (root needed)");
                None
            }
        }
    }

    /// `program` to be run inside the node (its PID and mount namespaces).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("--target")
            .arg(self.init.to_string())
            .args(["--pid", "--mount", "--"])
            .arg(program);
        c
    }

    /// Starts `c` (made by [`Node::command`]) and waits until its process inside exists.
    pub fn spawn(&self, mut c: Command) -> NodeChild {
        let outer = c.stdin(std::process::Stdio::null()).spawn().expect("nsenter");
        let pid = first_child(outer.id()).expect("a process in the node");
        NodeChild { outer, pid }
    }

    /// `sweep --format json` run inside the node, as [`TestEnv::sweep_json`].
    pub fn sweep_json(&self, config: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
        let out = self
            .command(env!("CARGO_BIN_EXE_shuffle-janitor"))
            .args(["sweep", "--format", "json", "--config", config.to_str().unwrap()])
            .args(extra)
            .env_remove("RUST_LOG")
            .output()
            .expect("run shuffle-janitor in the node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), json)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Its PID 1 gone, the kernel ends every process of the namespace.
        let _ = Command::new("kill")
            .arg("-9")
            .arg(self.init.to_string())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Real JVMs for the liveness tests: a `Sleep` class compiled with `javac`, jars written with the
/// zip crate, and processes started the ways the liveness rule must see.
pub mod jvm {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// The JDK: `java` resolved through its symlinks (`/usr/lib/jvm/.../bin/java`) and a compiled
    /// `Sleep` class (it sleeps for its first argument's seconds, 60 without) in `dir`. `Err`
    /// with the reason when there is no JDK.
    pub fn sleep_class(dir: &Path) -> Result<PathBuf, String> {
        let java = which("java").ok_or("no java on PATH (apt-get install default-jdk-headless)")?;
        which("javac").ok_or("no javac on PATH (apt-get install default-jdk-headless)")?;
        let java = std::fs::canonicalize(&java).map_err(|e| format!("{}: {e}", java.display()))?;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("Sleep.java"),
            "public class Sleep { public static void main(String[] a) throws Exception { \
             Thread.sleep(a.length > 0 && a[0].matches(\"[0-9]+\") ? Long.parseLong(a[0]) * 1000 : 60000); } }\n",
        )
        .unwrap();
        let out = Command::new("javac")
            .arg("-d")
            .arg(dir)
            .arg(dir.join("Sleep.java"))
            .output()
            .map_err(|e| format!("javac: {e}"))?;
        if !out.status.success() {
            return Err(format!("javac failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(java)
    }

    fn which(name: &str) -> Option<PathBuf> {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    }

    /// A jar at `path` with `entries` (name, bytes), stored.
    pub fn write_jar(path: &Path, entries: &[(&str, &[u8])]) {
        use std::io::Write;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("META-INF/MANIFEST.MF", opts).unwrap();
        w.write_all(b"Manifest-Version: 1.0\r\n\r\n").unwrap();
        for (name, bytes) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap();
    }

    /// A jar holding only Spark's store-making class's entry (empty: never loaded).
    pub fn spark_jar(path: &Path) -> PathBuf {
        write_jar(path, &[("org/apache/spark/storage/DiskBlockManager.class", b"")]);
        path.to_path_buf()
    }

    /// A jar holding the compiled `Sleep` class of `classes`.
    pub fn sleep_jar(classes: &Path, path: &Path) -> PathBuf {
        let class = std::fs::read(classes.join("Sleep.class")).unwrap();
        write_jar(path, &[("Sleep.class", &class)]);
        path.to_path_buf()
    }

    /// A JVM started by a test in a [`super::Node`], killed when dropped (a failed assertion too
    /// leaves none behind).
    pub struct Jvm {
        outer: Child,
        pid: u32,
    }

    impl Jvm {
        /// Its PID as the test sees it.
        pub fn id(&self) -> u32 {
            self.pid
        }

        /// Its PID in the node (what the binary, running there, reports).
        pub fn ns_pid(&self) -> u32 {
            std::fs::read_to_string(format!("/proc/{}/status", self.pid))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|v| v.split_whitespace().last()?.parse().ok())
                })
                .unwrap_or(self.pid)
        }
    }

    impl Drop for Jvm {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .arg("-9")
                .arg(self.pid.to_string())
                .stderr(Stdio::null())
                .status();
            let _ = self.outer.kill();
            let _ = self.outer.wait();
        }
    }

    /// Starts `program args` in `node` and waits until the JVM in it has mapped `libjvm.so` and
    /// opened every file of `open` (its class loader reached them), at most 20 s.
    pub fn start(node: &super::Node, program: &[&Path], args: &[&str], env: &[(&str, &Path)], open: &[&Path]) -> Jvm {
        let mut c = node.command(program[0].to_str().unwrap());
        c.args(&program[1..])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let outer = c.spawn().unwrap();
        let pid = super::first_child(outer.id()).expect("a process in the node");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
            let fds: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).collect())
                .unwrap_or_default();
            if maps.contains("/libjvm.so") && open.iter().all(|f| fds.iter().any(|o| o == f)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Jvm { outer, pid }
    }

    /// The dynamic loader of this system, when there is one at the usual place.
    pub fn loader() -> Option<PathBuf> {
        ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    }
}

/// The keys that give a test's binary a world of its own, for a config whose `extra` does not
/// set them: without them it would use the machine's `/var/lib/shuffle-janitor` (its lock, its
/// journal) and `/run/shuffle-janitor`, which another checkout's tests or a real daemon may hold;
/// and the default watermarks (0.85) would judge the host's disk, where the test's tempdir
/// lives: on a host more than 85% full, the daemon under test evicted for pressure what the test
/// expected it to keep. A test of pressure sets its watermarks (on a filesystem of its own).
/// Top-level dotted keys, so that they stand before any table the text opens and a key the
/// test appends after the text is still top-level.
pub fn own_state(dir: &Path, extra: &str) -> String {
    let mut keys = String::new();
    if !extra.contains("watermark") {
        keys += "watermark.high = 1.0\nwatermark.low = 0.99\n";
    }
    if !extra.contains("state_dir") {
        std::fs::create_dir_all(dir).unwrap();
        keys += &format!("state_dir = {:?}\n", dir.display().to_string());
    }
    if !extra.contains("control_socket") {
        keys += &format!(
            "control_socket = {:?}\n",
            dir.join("control.sock").display().to_string()
        );
    }
    keys
}
