//! Whether a JVM that is neither an executor nor a known service can create Spark block stores.
//!
//! A block store exists only if its creator loaded `org.apache.spark.storage.DiskBlockManager`,
//! and a JVM keeps open every jar it has loaded a class from (the class loaders open a jar when a
//! lookup first reaches it and keep it open). So a JVM that has made a store has, open now, a jar
//! that holds that class, or a fat jar holding Spark's jars (Spring Boot's `BOOT-INF/lib/`), or it
//! loaded the class from a directory, which is not held open. The rule, for such a JVM:
//!
//! - an open file named `spark-core*`, an open archive with an entry `.../DiskBlockManager.class`
//!   (any package prefix: shaded copies too) or a nested `spark-core*.jar`, or with a jar stored
//!   whole in it (Spring Boot's `BOOT-INF/lib/`) that has such an entry: it **has Spark**;
//! - a directory on its class path (command line, `CLASSPATH`, its working directory) holding
//!   `org/apache/spark/storage/DiskBlockManager.class`: it has Spark;
//! - what cannot be judged: it **may have Spark** (a class path this module cannot read: an
//!   `@argfile`, `JDK_JAVA_OPTIONS`/`JAVA_TOOL_OPTIONS`/`_JAVA_OPTIONS` naming one, a JVM not started
//!   by the `java` launcher, a launcher that unpacks jars into directories; an environment, a
//!   directory or an open archive that cannot be read);
//! - otherwise it **has no Spark**: it owns no store.
//!
//! A store that counts for reaping has been quiet for `stores.min_idle`, so its creator loaded
//! the class long before this look; a JVM that loads Spark only now creates stores that are new.
//!
//! Reading archives is the only reading outside the roots besides `/proc`: verdicts are cached by
//! `(device, inode, size, mtime)` for the life of the process, so the daemon reads each jar once.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The class that creates block stores, as a path in an archive or a class path directory.
pub const DISK_BLOCK_MANAGER: &str = "org/apache/spark/storage/DiskBlockManager.class";

/// What a JVM's open files and class path say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It can create stores: why (which file, which rule).
    Spark(String),
    /// It cannot: Spark's store-making class is nowhere it can load classes from.
    NoSpark,
    /// It cannot be judged: why.
    Unknown(String),
}

/// Main classes that load classes from directories of their own making: `hadoop jar` unpacks
/// the jar it runs into a temporary directory and loads from there.
const UNPACKERS: [&str; 1] = ["org.apache.hadoop.util.RunJar"];

/// Environment variables through which a JVM may take options from outside its command line.
const OPTION_VARS: [&[u8]; 3] = [b"JDK_JAVA_OPTIONS=", b"JAVA_TOOL_OPTIONS=", b"_JAVA_OPTIONS="];

/// Launcher options whose value is a path list the JVM may load classes from.
const PATH_OPTIONS: [&str; 6] = [
    "-cp",
    "-classpath",
    "--class-path",
    "-p",
    "--module-path",
    "--upgrade-module-path",
];

/// The same, written `option=value` or `optionvalue`.
const PATH_PREFIXES: [&str; 8] = [
    "--class-path=",
    "--module-path=",
    "--upgrade-module-path=",
    "-Djava.class.path=",
    "-Xbootclasspath/a:",
    "-Xbootclasspath/p:",
    "-Xbootclasspath:",
    "-Djava.ext.dirs=",
];

/// Where a JVM started by the `java` launcher may load classes from, as its command line and
/// environment say: the entries of every path list (the class path, module paths, boot class
/// path additions), unexpanded. `Err` when that cannot be told.
pub fn class_path_entries(launcher_args: &[&[u8]], environ: Option<&[u8]>) -> Result<Vec<Vec<u8>>, String> {
    let Some(environ) = environ else {
        return Err("its environment cannot be read (CLASSPATH, JAVA_TOOL_OPTIONS)".into());
    };
    let vars = || environ.split(|&b| b == 0);
    for name in OPTION_VARS {
        if let Some(v) = vars().find_map(|v| v.strip_prefix(name)) {
            let v = String::from_utf8_lossy(v);
            // Options from there may name a class path or an @argfile: not followed here.
            if [
                "class.path",
                "-cp",
                "classpath",
                "class-path",
                "module-path",
                "patch-module",
                "@",
            ]
            .iter()
            .any(|k| v.contains(k))
            {
                let var = String::from_utf8_lossy(&name[..name.len() - 1]);
                return Err(format!("{var} may name a class path ({v})"));
            }
        }
    }
    let mut lists: Vec<&[u8]> = Vec::new();
    if let Some(cp) = vars().find_map(|v| v.strip_prefix(b"CLASSPATH=")) {
        lists.push(cp);
    }
    // Every argument is looked at, past the main class too: an application argument taken for
    // an option only adds places to look.
    let mut args = launcher_args.iter();
    while let Some(&arg) = args.next() {
        let text = String::from_utf8_lossy(arg);
        if text.starts_with('@') {
            return Err(format!("its options are in an argument file ({text})"));
        }
        if UNPACKERS.contains(&text.as_ref()) {
            return Err(format!("{text} loads classes from a directory it unpacks"));
        }
        if PATH_OPTIONS.contains(&text.as_ref()) {
            if let Some(&v) = args.next() {
                lists.push(v);
            }
        } else if text == "--patch-module" {
            if let Some(&v) = args.next() {
                lists.push(v.splitn(2, |&b| b == b'=').nth(1).unwrap_or_default());
            }
        } else if let Some(p) = PATH_PREFIXES.iter().find(|p| text.starts_with(*p)) {
            lists.push(&arg[p.len()..]);
        } else if text == "-jar"
            && let Some(&v) = args.next()
        {
            lists.push(v);
        }
    }
    let mut entries: Vec<Vec<u8>> = lists
        .into_iter()
        .flat_map(|l| l.split(|&b| b == b':'))
        // An empty entry is the working directory, which is always looked at.
        .filter(|e| !e.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    // The default class path, and what an empty entry means.
    entries.push(b".".to_vec());
    Ok(entries)
}

/// Whether a file's name says it is Spark's core jar (`spark-core_2.13-4.0.0.jar`).
pub fn is_spark_core(name: &[u8]) -> bool {
    let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    base.starts_with(b"spark-core")
}

/// Whether a file's name says it is an archive a class loader reads.
pub fn archive_name(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    [&b".jar"[..], b".zip", b".war", b".ear"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// The entry among an archive's entry names that makes it a source of Spark's stores: the class
/// that creates them (under any prefix: Spring Boot's `BOOT-INF/classes/`, a shaded copy), or a
/// nested jar of Spark's core (`BOOT-INF/lib/spark-core_2.13-4.0.0.jar`).
pub fn spark_entry<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Option<&'a [u8]> {
    names.into_iter().find(|n| {
        let base = n.rsplit(|&b| b == b'/').next().unwrap_or(n);
        base == b"DiskBlockManager.class" || (base.starts_with(b"spark-core") && archive_name(base))
    })
}

/// What one open file is, cached.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FileVerdict {
    /// An archive with the entry named.
    Spark(String),
    /// An archive without, or not an archive.
    Clean,
}

/// `(device, inode, size, mtime in ns)`: an archive changed in place has another key.
type Key = (u64, u64, u64, i64);

static CACHE: Mutex<Option<HashMap<Key, FileVerdict>>> = Mutex::new(None);

/// The verdicts of one snapshot: those of the last one are reused, and only the files seen now
/// are kept, so the cache holds what the node's JVMs have open and no more.
#[derive(Debug, Default)]
pub struct Cache {
    old: HashMap<Key, FileVerdict>,
    new: HashMap<Key, FileVerdict>,
}

impl Cache {
    pub fn take() -> Cache {
        let old = CACHE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        Cache {
            old,
            new: HashMap::new(),
        }
    }

    pub fn put_back(self) {
        *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.new);
    }
}

/// Whether a zip archive read from `r` holds Spark's store-making class (the entry's name), or
/// `None`; `Err` when it cannot be read as an archive.
pub fn archive_spark_entry<R: Read + Seek>(r: R) -> zip::result::ZipResult<Option<String>> {
    let zip = zip::ZipArchive::new(r)?;
    Ok(spark_entry(zip.file_names_raw()).map(|n| String::from_utf8_lossy(n).into_owned()))
}

/// A part of a file, read in place: a jar stored whole inside another.
struct Window<'f> {
    file: &'f std::fs::File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        let n = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let pos = match to {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// Like [`archive_spark_entry`] for an archive file, looking also into the jars stored whole in
/// it (Spring Boot's `BOOT-INF/lib/`, which its class loader reads in place: a shaded Spark
/// bundle there is named like anything). Compressed nested jars are not looked into: Spring
/// Boot refuses them, and no class loader reads them in place.
pub fn file_spark_entry(file: &std::fs::File) -> zip::result::ZipResult<Option<String>> {
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file))?;
    if let Some(n) = spark_entry(zip.file_names_raw()) {
        return Ok(Some(String::from_utf8_lossy(n).into_owned()));
    }
    let nested: Vec<usize> = zip
        .file_names_raw()
        .enumerate()
        .filter(|(_, n)| n.to_ascii_lowercase().ends_with(b".jar"))
        .map(|(i, _)| i)
        .collect();
    for i in nested {
        let (name, start, len) = {
            let f = zip.by_index_raw(i)?;
            if f.compression() != zip::CompressionMethod::Stored {
                continue;
            }
            let Some(start) = f.data_start() else { continue };
            (
                String::from_utf8_lossy(f.name_raw()).into_owned(),
                start,
                f.compressed_size(),
            )
        };
        let window = io::BufReader::new(Window {
            file,
            start,
            len,
            pos: 0,
        });
        match archive_spark_entry(window) {
            Ok(Some(inner)) => return Ok(Some(format!("{name}!/{inner}"))),
            Ok(None) => {}
            // A stored entry named .jar that is no archive: nothing a class loader reads.
            Err(zip::result::ZipError::InvalidArchive(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Judges one open file of a JVM (`fd`: `/proc/PID/fd/N`). `Ok(None)`: it holds nothing of Spark
/// (or is gone); `Err`: it cannot be judged.
fn judge_file(fd: &Path, cache: &mut Cache) -> Result<Option<String>, String> {
    let target = match std::fs::read_link(fd) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read which file {} is ({e})", fd.display())),
    };
    let raw = target.as_os_str().as_bytes();
    let name = raw.strip_suffix(b" (deleted)").unwrap_or(raw);
    let shown = String::from_utf8_lossy(name).into_owned();
    if is_spark_core(name) {
        return Ok(Some(format!("it has {shown} open")));
    }
    // Opened without blocking: the descriptor may be a FIFO by now.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(fd)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open its open file {shown} ({e}): grant CAP_SYS_PTRACE")),
    };
    let meta = file.metadata().map_err(|e| format!("cannot stat {shown} ({e})"))?;
    if !meta.is_file() {
        return Ok(None);
    }
    let key = (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
    );
    let verdict = match cache.old.get(&key).or_else(|| cache.new.get(&key)) {
        Some(v) => v.clone(),
        None => read_file_verdict(file, name)
            .map_err(|e| format!("cannot read the archive {shown} ({e}): it may hold Spark"))?,
    };
    cache.new.insert(key, verdict.clone());
    Ok(match verdict {
        FileVerdict::Spark(entry) => Some(format!("its open archive {shown} holds {entry}")),
        FileVerdict::Clean => None,
    })
}

fn read_file_verdict(file: std::fs::File, name: &[u8]) -> io::Result<FileVerdict> {
    if !archive_name(name) {
        // Any file can be on a class path; an archive not named as one is told by the magic of
        // its first entry (a jar with a script in front of it is named .jar).
        use std::os::unix::fs::FileExt;
        let mut magic = [0u8; 4];
        let n = file.read_at(&mut magic, 0)?;
        if n < 4 || magic != *b"PK\x03\x04" {
            return Ok(FileVerdict::Clean);
        }
    }
    match file_spark_entry(&file) {
        Ok(Some(entry)) => Ok(FileVerdict::Spark(entry)),
        Ok(None) => Ok(FileVerdict::Clean),
        // Not a zip at all (a data file named .zip): nothing a class loader reads.
        Err(zip::result::ZipError::InvalidArchive(_)) => Ok(FileVerdict::Clean),
        Err(zip::result::ZipError::Io(e)) => Err(e),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// Judges a directory on a JVM's class path, `entry` as the command line gave it, resolved in
/// the JVM's mount namespace (`/proc/PID/root`) and working directory (`/proc/PID/cwd`).
fn judge_entry(proc_pid: &Path, entry: &[u8]) -> Result<Option<String>, String> {
    // A wildcard names the jars in a directory: they are judged when open.
    if entry == b"*" || entry.ends_with(b"/*") {
        return Ok(None);
    }
    let shown = String::from_utf8_lossy(entry).into_owned();
    let path = Path::new(OsStr::from_bytes(entry));
    let inside: PathBuf = match path.strip_prefix("/") {
        Ok(rel) => proc_pid.join("root").join(rel),
        Err(_) => proc_pid.join("cwd").join(path),
    };
    let class = inside.join(DISK_BLOCK_MANAGER);
    match std::fs::symlink_metadata(&class) {
        Ok(_) => Ok(Some(format!(
            "its class path directory {shown} holds {DISK_BLOCK_MANAGER}"
        ))),
        // Not there: no class of it comes from there (a jar entry is judged when open).
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => Ok(None),
        Err(e) => Err(format!("cannot look into its class path entry {shown} ({e})")),
    }
}

/// Judges a JVM that is neither an executor nor a known service: `proc_pid` its `/proc/PID`,
/// `launcher_args` its arguments after the `java` launcher's name (`None` when it was not started
/// by the launcher: its class path cannot be read), `environ` its environment when readable,
/// `files` the `/proc/PID/fd/N` of its open regular files.
pub fn judge(
    proc_pid: &Path,
    launcher_args: Option<&[&[u8]]>,
    environ: Option<&[u8]>,
    files: &[PathBuf],
    cache: &mut Cache,
) -> Verdict {
    // Open files first: a Spark driver is known by them whatever else cannot be read.
    let mut unknown = None;
    for fd in files {
        match judge_file(fd, cache) {
            Ok(Some(why)) => return Verdict::Spark(why),
            Ok(None) => {}
            Err(why) => unknown = unknown.or(Some(why)),
        }
    }
    let entries = match launcher_args {
        None => Err("it was not started by the java launcher: its class path cannot be read".into()),
        Some(args) => class_path_entries(args, environ),
    };
    match entries {
        Ok(entries) => {
            for e in &entries {
                match judge_entry(proc_pid, e) {
                    Ok(Some(why)) => return Verdict::Spark(why),
                    Ok(None) => {}
                    Err(why) => unknown = unknown.or(Some(why)),
                }
            }
        }
        Err(why) => unknown = unknown.or(Some(why)),
    }
    match unknown {
        Some(why) => Verdict::Unknown(why),
        None => Verdict::NoSpark,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn args(a: &[&'static str]) -> Vec<&'static [u8]> {
        a.iter().map(|s| s.as_bytes()).collect()
    }

    fn entries(a: &[&'static str], env: &str) -> Result<Vec<String>, String> {
        let env: Vec<u8> = env
            .split(' ')
            .filter(|s| !s.is_empty())
            .flat_map(|v| v.bytes().chain([0]))
            .collect();
        class_path_entries(&args(a), Some(&env)).map(|v| v.into_iter().map(|e| String::from_utf8(e).unwrap()).collect())
    }

    #[test]
    fn every_place_a_class_may_come_from_is_found_on_the_command_line() {
        assert_eq!(
            entries(&["-Xmx1g", "-cp", "/etc/hbase/conf:/usr/lib/hbase/lib/*", "Main"], "").unwrap(),
            ["/etc/hbase/conf", "/usr/lib/hbase/lib/*", "."]
        );
        assert_eq!(
            entries(
                &["--class-path=a.jar::b", "-jar", "app.jar", "-p", "mods"],
                "CLASSPATH=/x:y"
            )
            .unwrap(),
            ["/x", "y", "a.jar", "b", "app.jar", "mods", "."]
        );
        assert_eq!(
            entries(
                &[
                    "-Xbootclasspath/a:/boot",
                    "--patch-module",
                    "m=/patch",
                    "-Djava.class.path=/d",
                    "M"
                ],
                ""
            )
            .unwrap(),
            ["/boot", "/patch", "/d", "."]
        );
        // No class path at all: the working directory.
        assert_eq!(entries(&["Sleep"], "").unwrap(), ["."]);
        // What cannot be followed.
        assert!(
            entries(&["@/etc/app/jvm.args", "Main"], "")
                .unwrap_err()
                .contains("argument file")
        );
        assert!(
            entries(&["Main"], "JDK_JAVA_OPTIONS=-cp=/x")
                .unwrap_err()
                .contains("JDK_JAVA_OPTIONS")
        );
        assert!(entries(&["Main"], "JAVA_TOOL_OPTIONS=-Djava.class.path=/x").is_err());
        assert!(entries(&["Main"], "_JAVA_OPTIONS=@f").is_err());
        assert!(entries(&["Main"], "JAVA_TOOL_OPTIONS=-Xmx1g").is_ok());
        assert!(entries(&["org.apache.hadoop.util.RunJar", "app.jar"], "").is_err());
        assert!(class_path_entries(&args(&["Main"]), None).is_err());
    }

    #[test]
    fn spark_is_known_by_its_class_or_its_core_jar() {
        let n = |v: &[&'static str]| spark_entry(v.iter().map(|s| s.as_bytes())).map(|e| e.to_vec());
        assert_eq!(
            n(&["META-INF/MANIFEST.MF", DISK_BLOCK_MANAGER]),
            Some(DISK_BLOCK_MANAGER.as_bytes().to_vec())
        );
        assert!(n(&["BOOT-INF/lib/spark-core_2.13-4.0.0.jar"]).is_some());
        assert!(n(&["BOOT-INF/classes/org/apache/spark/storage/DiskBlockManager.class"]).is_some());
        assert!(n(&["shaded/org/apache/spark/storage/DiskBlockManager.class"]).is_some());
        assert_eq!(
            n(&["org/apache/spark/sql/Dataset.class", "spark-core.txt", "Sleep.class"]),
            None
        );
        assert!(is_spark_core(b"/opt/spark/jars/spark-core_2.12-3.5.1.jar"));
        assert!(!is_spark_core(b"/opt/spark/jars/spark-sql_2.12-3.5.1.jar"));
        assert!(archive_name(b"/x/APP.JAR") && archive_name(b"a.zip") && !archive_name(b"x.jar.log"));
    }

    /// A zip of empty stored entries, written with the zip crate.
    pub(crate) fn zip_with(entries: &[&str]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for e in entries {
            w.start_file(*e, opts).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn open_archives_are_read_and_their_verdicts_cached() {
        let dir = tempfile::tempdir().unwrap();
        let spark = dir.path().join("app.jar");
        std::fs::write(&spark, zip_with(&["META-INF/", DISK_BLOCK_MANAGER])).unwrap();
        let plain = dir.path().join("plain.bin");
        std::fs::write(&plain, zip_with(&["Sleep.class"])).unwrap();
        // A Spring Boot jar whose nested, stored bundle holds a shaded Spark.
        let boot = dir.path().join("boot.jar");
        {
            use std::io::Write as _;
            let inner = zip_with(&["META-INF/", "shaded/org/apache/spark/storage/DiskBlockManager.class"]);
            let mut w = zip::ZipWriter::new(std::fs::File::create(&boot).unwrap());
            let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
            w.start_file("BOOT-INF/classes/com/acme/Main.class", opts).unwrap();
            w.start_file("BOOT-INF/lib/acme-spark-bundle-1.0.jar", opts).unwrap();
            w.write_all(&inner).unwrap();
            w.start_file("BOOT-INF/lib/not-a-jar.jar", opts).unwrap();
            w.write_all(b"text").unwrap();
            w.finish().unwrap();
        }
        let data = dir.path().join("data.zip");
        std::fs::File::create(&data).unwrap().write_all(b"not a zip").unwrap();
        let mut cache = Cache {
            old: HashMap::new(),
            new: HashMap::new(),
        };
        // Through symlinks, as /proc/PID/fd/N are.
        let j = |p: &Path, c: &mut Cache| {
            let link = p.with_extension("fd");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(p, &link).unwrap();
            judge_file(&link, c)
        };
        assert!(j(&spark, &mut cache).unwrap().unwrap().contains(DISK_BLOCK_MANAGER));
        assert_eq!(j(&plain, &mut cache), Ok(None), "an archive not named as one is read");
        assert_eq!(j(&data, &mut cache), Ok(None), "not an archive");
        let nested = j(&boot, &mut cache).unwrap().unwrap();
        assert!(
            nested.contains("BOOT-INF/lib/acme-spark-bundle-1.0.jar!/shaded/org"),
            "{nested}"
        );
        assert_eq!(j(&dir.path().join("gone.jar"), &mut cache), Ok(None));
        assert_eq!(cache.new.len(), 4);
        // A cached verdict is used while the file is unchanged.
        let m = std::fs::metadata(&spark).unwrap();
        let key = (m.dev(), m.ino(), m.size(), m.mtime() * 1_000_000_000 + m.mtime_nsec());
        assert!(matches!(cache.new.get(&key), Some(FileVerdict::Spark(_))));
        cache.new.insert(key, FileVerdict::Clean);
        assert_eq!(j(&spark, &mut cache), Ok(None));
    }

    #[test]
    fn class_path_directories_are_looked_into() {
        // This process's own /proc entry stands for the JVM's: its root is / and its working
        // directory is not the one looked at (entries here are absolute).
        let dir = tempfile::tempdir().unwrap();
        let with = dir.path().join("classes");
        std::fs::create_dir_all(with.join("org/apache/spark/storage")).unwrap();
        std::fs::write(with.join(DISK_BLOCK_MANAGER), b"").unwrap();
        let without = dir.path().join("conf");
        std::fs::create_dir_all(&without).unwrap();
        let me = Path::new("/proc/self");
        let e = |p: &Path| judge_entry(me, p.as_os_str().as_bytes());
        assert!(e(&with).unwrap().unwrap().contains("classes"));
        assert_eq!(e(&without), Ok(None));
        assert_eq!(e(&dir.path().join("missing")), Ok(None));
        assert_eq!(judge_entry(me, b"/opt/lib/*"), Ok(None));
        let mut cache = Cache::take();
        let cp = format!("{}:{}", without.display(), with.display());
        let a: Vec<&[u8]> = vec![b"-cp", cp.as_bytes(), b"Main"];
        assert!(matches!(
            judge(me, Some(&a), Some(b""), &[], &mut cache),
            Verdict::Spark(_)
        ));
        assert!(matches!(
            judge(me, None, Some(b""), &[], &mut cache),
            Verdict::Unknown(_)
        ));
    }
}
