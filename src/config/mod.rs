//! Configuration: a TOML file is parsed into [`RawConfig`] (serde, unknown keys rejected), then
//! validated into [`Config`], the only type the rest of the program sees.
//!
//! The file format is a contract with config management (Chef, Puppet, Ansible templates):
//! `config/shuffle-janitor.toml` documents every key and is parsed by a test.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use globset::{GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::spark::Kind;

/// Where the packaged config lives; used when `--config` is not given and the file exists.
pub const DEFAULT_PATH: &str = "/etc/shuffle-janitor/config.toml";
/// Where the daemon keeps its state by default (the unit's `StateDirectory=`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/shuffle-janitor";

/// A configuration error: which file, which key, what value, and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "{path}, line {line}: unknown key {key}; {expected}. Correct its name or remove it \
         (`shuffle-janitor check-config` prints every key in effect)"
    )]
    UnknownKey {
        path: PathBuf,
        line: usize,
        /// With its table: `metrics.max_agee`.
        key: String,
        /// TOML's list of the keys its table takes: "expected `listen` or `web_config_file`".
        expected: String,
    },
    #[error("{origin}: {key} ({value}) {problem}")]
    Invalid {
        origin: String,
        key: String,
        value: String,
        problem: String,
    },
}

/// Which timestamps make a file's last use; the newest of the chosen ones wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Timestamp {
    Mtime,
    Atime,
    Ctime,
}

/// The file as written: every key optional (defaults below), nothing validated yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub roots: Vec<String>,
    pub max_age: String,
    pub min_age: String,
    pub age_basis: Vec<Timestamp>,
    #[serde(deserialize_with = "deletable_kinds")]
    pub kinds: Vec<Kind>,
    pub protect: Vec<String>,
    pub interval: String,
    pub rescan_interval: String,
    pub stuck_after: String,
    pub dry_run: bool,
    pub skip_open_files: bool,
    pub state_dir: String,
    /// The deletion journal's bound in MiB over its two files (see [`crate::journal`]); 0: none.
    pub journal_max_mib: u64,
    pub control_socket: String,
    pub watermark: RawWatermark,
    pub stores: RawStores,
    pub metrics: RawMetrics,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStores {
    pub reap: bool,
    pub min_idle: String,
    pub executor_startup: String,
    pub pid_namespace: PidNamespace,
}

impl Default for RawStores {
    fn default() -> Self {
        RawStores {
            reap: true,
            min_idle: "auto".into(),
            executor_startup: "10m".into(),
            pid_namespace: PidNamespace::Node,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWatermark {
    pub high: f64,
    pub low: f64,
    pub poll: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub listen: String,
    /// The exporter toolkit's web config file (TLS, basic auth); "" serves plain HTTP.
    pub web_config_file: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            roots: vec!["/tmp".into()],
            max_age: "6h".into(),
            min_age: "15m".into(),
            age_basis: vec![Timestamp::Mtime, Timestamp::Atime],
            kinds: vec![Kind::Shuffle, Kind::Temp],
            protect: vec![],
            interval: "10m".into(),
            rescan_interval: "24h".into(),
            stuck_after: "10m".into(),
            dry_run: false,
            skip_open_files: true,
            state_dir: DEFAULT_STATE_DIR.into(),
            journal_max_mib: 64,
            control_socket: "/run/shuffle-janitor/control.sock".into(),
            watermark: RawWatermark::default(),
            stores: RawStores::default(),
            metrics: RawMetrics::default(),
        }
    }
}

impl Default for RawWatermark {
    fn default() -> Self {
        RawWatermark {
            high: 0.85,
            low: 0.75,
            poll: "5s".into(),
        }
    }
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: "0.0.0.0:19337".into(),
            web_config_file: String::new(),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for the built-in defaults.
    pub source: Option<PathBuf>,
    /// Absolute paths or shell globs, expanded at every sweep (disks are mounted late).
    pub roots: Vec<String>,
    pub max_age: Duration,
    pub min_age: Duration,
    pub age_basis: Vec<Timestamp>,
    /// Kinds that may be deleted.
    pub kinds: Vec<Kind>,
    pub protect: Protect,
    pub interval: Duration,
    /// How often the daemon walks everything to check its index against the disk.
    pub rescan_interval: Duration,
    /// The daemon is stuck when its walk or sweep in hand has listed or deleted nothing, or its
    /// loop has not run, for this long (see [`crate::daemon::health`]).
    pub stuck_after: Duration,
    pub dry_run: bool,
    pub skip_open_files: bool,
    /// Where the daemon keeps what its watch saw across restarts; `None`: nowhere.
    pub state_dir: Option<PathBuf>,
    /// The most the deletion journal in `state_dir` holds (both files), in bytes; 0: no journal.
    pub journal_max_bytes: u64,
    /// The daemon's control socket (`status`, `plan`, `explain`); `None`: none.
    pub control_socket: Option<PathBuf>,
    pub watermark: Watermark,
    pub stores: Stores,
    pub listen: SocketAddr,
    /// The web config file for the metrics endpoint (`metrics.web_config_file`).
    pub web_config_file: Option<PathBuf>,
}

/// The command line's settings that replace config keys (`--web.listen-address`,
/// `--web.config.file`), applied at every load, reloads included, so a flag always wins.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub web_config_file: Option<PathBuf>,
    /// `run --dry-run`: dry whatever the file says, reloads included.
    pub dry_run: bool,
}

/// The removal of dead executors' empty block stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stores {
    /// Remove dead stores (only ever where every process can be seen).
    pub reap: bool,
    /// How long an empty store must have been quiet.
    pub min_idle: Duration,
    /// The longest an executor takes from its start to creating its store, unless its own
    /// command line says it may take longer (see [`crate::procs`]).
    pub executor_startup: Duration,
    /// Which PID namespace holds every process that may own a store.
    pub pid_namespace: PidNamespace,
}

/// Which PID namespace's processes the liveness rule must see (`stores.pid_namespace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PidNamespace {
    /// The node's (the kernel's initial PID namespace): a janitor in any other one (a container
    /// without the host's PID namespace, a Mesos task with the `namespaces/pid` isolator) sees
    /// only part of the node and removes no store.
    #[default]
    Node,
    /// The janitor's own: every process that may use the roots runs in the namespace the janitor
    /// runs in (the tests give the binary a node of its own this way). Wrong on a real node
    /// unless that is true: a JVM outside it is invisible.
    Own,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermark {
    pub high: f64,
    pub low: f64,
    pub poll: Duration,
}

/// The `protect` globs, compiled once. A file is protected when a pattern matches its path or
/// the path of any directory above it, so `"/data/spark/spark-keep*"` protects a whole tree.
#[derive(Debug, Clone, Default)]
pub struct Protect {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Protect {
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` itself matches a pattern (callers check the ancestors they walk through).
    pub fn matches(&self, path: &Path) -> bool {
        !self.patterns.is_empty() && self.set.is_match(path)
    }

    /// The first pattern (as the config gives it, cleaned) that matches `path` itself, for
    /// `explain`.
    pub fn matching(&self, path: &Path) -> Option<&str> {
        if self.patterns.is_empty() {
            return None;
        }
        let first = self.set.matches(path).into_iter().min()?;
        self.patterns.get(first).map(String::as_str)
    }
}

/// The kinds a configuration may name: every [`Kind`] but `other` (Spark names that are never
/// deleted), so that the list an error offers is the list that is accepted.
const DELETABLE_KINDS: [&str; 6] = ["shuffle", "temp", "merged", "rdd", "broadcast", "taskresult"];

fn deletable_kinds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Kind>, D::Error> {
    use serde::de::{Error, IntoDeserializer};
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|name| {
            if !DELETABLE_KINDS.contains(&name.as_str()) {
                return Err(D::Error::unknown_variant(name, &DELETABLE_KINDS));
            }
            Kind::deserialize(name.as_str().into_deserializer())
                .map_err(|e: serde::de::value::Error| D::Error::custom(e))
        })
        .collect()
}

/// The dotted name of the table that byte `offset` of `text` lies in ("" at the top level): the
/// last `[table]` header before it. For messages only.
fn table_at(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l[1..].split(']').next())
        .map(|t| {
            t.split('.')
                .map(|p| p.trim().trim_matches('"'))
                .collect::<Vec<_>>()
                .join(".")
        })
        .unwrap_or_default()
}

impl Config {
    /// Loads `path` if given; otherwise [`DEFAULT_PATH`] when it exists, else the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Config::from_file(path),
            None if Path::new(DEFAULT_PATH).exists() => Config::from_file(Path::new(DEFAULT_PATH)),
            None => RawConfig::default().validate(None),
        }
    }

    /// [`Config::load`], then the command line's [`Overrides`].
    pub fn load_with(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut cfg = Config::load(path)?;
        if let Some(listen) = &overrides.listen {
            cfg.listen = parse_listen(listen).map_err(|problem| ConfigError::Invalid {
                origin: "command line".into(),
                key: "--web.listen-address".into(),
                value: format!("{listen:?}"),
                problem,
            })?;
        }
        if let Some(file) = &overrides.web_config_file {
            // Relative to the directory the daemon was started in, as any path on a command line.
            let file = std::path::absolute(file).map_err(|e| ConfigError::Invalid {
                origin: "command line".into(),
                key: "--web.config.file".into(),
                value: format!("{:?}", file.display().to_string()),
                problem: e.to_string(),
            })?;
            cfg.web_config_file = Some(file);
        }
        cfg.dry_run |= overrides.dry_run;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, Some(path))
    }

    pub fn from_toml(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let path_or = || path.map_or_else(|| PathBuf::from("<config>"), Path::to_owned);
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // TOML names an unknown key without its table (`max_agee`, whether at the top or
            // in `[metrics]`): name it whole, as the docs and `check-config` do.
            match (e.message().strip_prefix("unknown field `"), e.span()) {
                (Some(rest), Some(span)) if rest.contains('`') => {
                    let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
                    let table = table_at(text, span.start);
                    ConfigError::UnknownKey {
                        path: path_or(),
                        line: text.get(..span.start).unwrap_or(text).matches('\n').count() + 1,
                        key: if table.is_empty() {
                            field.to_string()
                        } else {
                            format!("{table}.{field}")
                        },
                        expected: expected.trim_start_matches([',', ' ']).to_string(),
                    }
                }
                _ => ConfigError::Parse {
                    path: path_or(),
                    source: Box::new(e),
                },
            }
        })?;
        raw.validate(path)
    }

    /// The effective configuration in the file's own format, for `check-config`.
    pub fn to_toml(&self) -> String {
        let raw = RawConfig {
            roots: self.roots.clone(),
            max_age: humantime::format_duration(self.max_age).to_string(),
            min_age: humantime::format_duration(self.min_age).to_string(),
            age_basis: self.age_basis.clone(),
            kinds: self.kinds.clone(),
            protect: self.protect.patterns.clone(),
            interval: humantime::format_duration(self.interval).to_string(),
            rescan_interval: humantime::format_duration(self.rescan_interval).to_string(),
            stuck_after: humantime::format_duration(self.stuck_after).to_string(),
            dry_run: self.dry_run,
            skip_open_files: self.skip_open_files,
            state_dir: self
                .state_dir
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
            journal_max_mib: self.journal_max_bytes >> 20,
            control_socket: self
                .control_socket
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
            watermark: RawWatermark {
                high: self.watermark.high,
                low: self.watermark.low,
                poll: humantime::format_duration(self.watermark.poll).to_string(),
            },
            stores: RawStores {
                reap: self.stores.reap,
                min_idle: humantime::format_duration(self.stores.min_idle).to_string(),
                executor_startup: humantime::format_duration(self.stores.executor_startup).to_string(),
                pid_namespace: self.stores.pid_namespace,
            },
            metrics: RawMetrics {
                listen: self.listen.to_string(),
                web_config_file: self
                    .web_config_file
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string()),
            },
        };
        toml::to_string(&raw).expect("a config always serialises")
    }

    pub fn may_delete(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// An address:port to listen on.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| "is not an address:port; write e.g. \"0.0.0.0:19337\" or \"127.0.0.1:19337\"".into())
}

impl RawConfig {
    /// Turns the parsed file into a [`Config`], or says which key is wrong and what is allowed.
    pub fn validate(self, path: Option<&Path>) -> Result<Config, ConfigError> {
        let origin = path.map_or_else(|| "built-in defaults".to_string(), |p| p.display().to_string());
        let invalid = |key: &str, value: &dyn fmt::Display, problem: String| ConfigError::Invalid {
            origin: origin.clone(),
            key: key.to_string(),
            value: value.to_string(),
            problem,
        };
        let duration = |key: &str, value: &str| {
            let d = humantime::parse_duration(value).map_err(|e| {
                invalid(
                    key,
                    &format!("{value:?}"),
                    format!("is not a duration ({e}); write e.g. \"90s\", \"15m\" or \"6h\""),
                )
            })?;
            // Every timer and age is computed from these: bounded, nothing can overflow.
            if d > MAX_DURATION {
                return Err(invalid(key, &format!("{value:?}"), "must be at most 10 years".into()));
            }
            Ok::<_, ConfigError>(d)
        };

        if self.roots.is_empty() {
            return Err(invalid("roots", &"[]", "must name at least one Spark local dir".into()));
        }
        for root in &self.roots {
            if let Err(problem) = check_root_pattern(root) {
                return Err(invalid("roots", &format!("{root:?}"), problem));
            }
        }
        let max_age = duration("max_age", &self.max_age)?;
        if max_age.is_zero() {
            return Err(invalid(
                "max_age",
                &format!("{:?}", self.max_age),
                "must be longer than 0s (0s would delete every closed map output at once)".into(),
            ));
        }
        let min_age = duration("min_age", &self.min_age)?;
        if min_age > max_age {
            return Err(invalid(
                "min_age",
                &format!("{:?}", self.min_age),
                format!("must not be longer than max_age ({:?})", self.max_age),
            ));
        }
        if self.age_basis.is_empty() {
            return Err(invalid(
                "age_basis",
                &"[]",
                "must name at least one of \"mtime\", \"atime\", \"ctime\"".into(),
            ));
        }
        if self.kinds.is_empty() {
            return Err(invalid(
                "kinds",
                &"[]",
                "must name at least one kind (shuffle, temp, merged, rdd, broadcast, taskresult); \
                 to delete nothing, set dry_run = true"
                    .into(),
            ));
        }
        if self.kinds.contains(&Kind::Other) {
            return Err(invalid(
                "kinds",
                &"\"other\"",
                "is not a kind that may be deleted; allowed: shuffle, temp, merged, rdd, broadcast, taskresult".into(),
            ));
        }
        let mut builder = GlobSetBuilder::new();
        let mut protect = Vec::with_capacity(self.protect.len());
        for given in &self.protect {
            if !given.starts_with('/') {
                return Err(invalid(
                    "protect",
                    &format!("{given:?}"),
                    "must be an absolute path glob".into(),
                ));
            }
            // Matched against clean paths: "/a//b/", "/a/./b" would never match, so they are
            // written the way paths are ("/a/b"). ".." cannot be matched at all.
            let pattern =
                normalize_glob(given).map_err(|problem| invalid("protect", &format!("{given:?}"), problem))?;
            let glob = globset::GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    invalid(
                        "protect",
                        &format!("{given:?}"),
                        format!("is not a valid glob: {}", e.kind()),
                    )
                })?;
            builder.add(glob);
            protect.push(pattern);
        }
        let set = builder
            .build()
            .map_err(|e| invalid("protect", &format!("{:?}", self.protect), e.to_string()))?;
        let interval = duration("interval", &self.interval)?;
        if interval.is_zero() {
            return Err(invalid(
                "interval",
                &format!("{:?}", self.interval),
                "must be longer than 0s".into(),
            ));
        }
        let rescan_interval = duration("rescan_interval", &self.rescan_interval)?;
        if rescan_interval < Duration::from_secs(60) {
            return Err(invalid(
                "rescan_interval",
                &format!("{:?}", self.rescan_interval),
                "must be at least 1m (it walks every root: \"24h\" is the default)".into(),
            ));
        }
        let stuck_after = duration("stuck_after", &self.stuck_after)?;
        if stuck_after < Duration::from_secs(1) {
            return Err(invalid(
                "stuck_after",
                &format!("{:?}", self.stuck_after),
                "must be at least 1s (\"10m\" is the default)".into(),
            ));
        }
        let state_dir = match self.state_dir.as_str() {
            "" => None,
            dir if dir.starts_with('/') => Some(PathBuf::from(dir)),
            dir => {
                return Err(invalid(
                    "state_dir",
                    &format!("{dir:?}"),
                    "must be an absolute path, or \"\" to keep nothing across restarts".into(),
                ));
            }
        };
        let control_socket = match self.control_socket.as_str() {
            "" => None,
            p if p.starts_with('/') => Some(PathBuf::from(p)),
            p => {
                return Err(invalid(
                    "control_socket",
                    &format!("{p:?}"),
                    "must be an absolute path, or \"\" for no control socket".into(),
                ));
            }
        };
        if self.journal_max_mib > 1 << 20 {
            return Err(invalid(
                "journal_max_mib",
                &self.journal_max_mib,
                "must be at most 1048576 (MiB), or 0 to keep no deletion journal; 64 is the default".into(),
            ));
        }
        let wm = &self.watermark;
        for (key, value) in [("watermark.high", wm.high), ("watermark.low", wm.low)] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(invalid(
                    key,
                    &value,
                    "must be a fraction of the filesystem in (0, 1], e.g. 0.85".into(),
                ));
            }
        }
        if wm.low >= wm.high {
            return Err(invalid(
                "watermark.low",
                &wm.low,
                format!("must be below watermark.high ({})", wm.high),
            ));
        }
        let poll = duration("watermark.poll", &wm.poll)?;
        if poll.is_zero() {
            return Err(invalid(
                "watermark.poll",
                &format!("{:?}", wm.poll),
                "must be longer than 0s".into(),
            ));
        }
        let min_idle = match self.stores.min_idle.as_str() {
            "auto" => max_age.max(Duration::from_secs(24 * 3600)),
            other => duration("stores.min_idle", other)?,
        };
        if min_idle < Duration::from_secs(1) {
            return Err(invalid(
                "stores.min_idle",
                &format!("{:?}", self.stores.min_idle),
                "must be at least 1s, or \"auto\" (the larger of max_age and 24h)".into(),
            ));
        }
        let executor_startup = duration("stores.executor_startup", &self.stores.executor_startup)?;
        // Shorter than an executor really takes would make a live executor's store look like
        // another's: a floor well above the seconds a JVM needs on a loaded node.
        if executor_startup < Duration::from_secs(60) {
            return Err(invalid(
                "stores.executor_startup",
                &format!("{:?}", self.stores.executor_startup),
                "must be at least 1m (an executor may take minutes to reach its driver; \"10m\" is the default)".into(),
            ));
        }
        let listen = parse_listen(&self.metrics.listen)
            .map_err(|problem| invalid("metrics.listen", &format!("{:?}", self.metrics.listen), problem))?;
        let web_config_file = match self.metrics.web_config_file.as_str() {
            "" => None,
            file if file.starts_with('/') => Some(PathBuf::from(file)),
            file => {
                return Err(invalid(
                    "metrics.web_config_file",
                    &format!("{file:?}"),
                    "must be an absolute path, or \"\" to serve plain HTTP without authentication".into(),
                ));
            }
        };

        let mut age_basis = self.age_basis;
        age_basis.dedup();
        let mut kinds = self.kinds;
        kinds.sort();
        kinds.dedup();
        Ok(Config {
            source: path.map(Path::to_owned),
            roots: self.roots,
            max_age,
            min_age,
            age_basis,
            kinds,
            protect: Protect { patterns: protect, set },
            interval,
            rescan_interval,
            stuck_after,
            dry_run: self.dry_run,
            skip_open_files: self.skip_open_files,
            state_dir,
            journal_max_bytes: self.journal_max_mib << 20,
            control_socket,
            watermark: Watermark {
                high: wm.high,
                low: wm.low,
                poll,
            },
            stores: Stores {
                reap: self.stores.reap,
                min_idle,
                executor_startup,
                pid_namespace: self.stores.pid_namespace,
            },
            listen,
            web_config_file,
        })
    }
}

/// The longest duration accepted anywhere in the config.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A path glob written the way clean paths are: no empty or `.` components, no trailing slash.
fn normalize_glob(pattern: &str) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len());
    for part in pattern.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err("must not contain \"..\"; write the directory itself".into());
        }
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Directories that are never a Spark local dir. The classifier alone would keep them safe (it
/// only deletes Spark names inside `blockmgr-*` trees); refusing them catches a typo early.
const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys", "/usr",
];
const SYSTEM_DIRS: &[&str] = &["/", "/home", "/media", "/mnt", "/opt", "/root", "/run", "/srv", "/var"];

/// Checks one `roots` entry, literal or glob. `Err` says what is wrong and what to write.
pub fn check_root_pattern(root: &str) -> Result<(), String> {
    let path = Path::new(root);
    if !path.is_absolute() {
        return Err("must be an absolute path (a Spark local dir such as \"/data1/spark\")".into());
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err("must not contain \".\" or \"..\"; write the directory itself".into());
    }
    if let Err(e) = glob::Pattern::new(root) {
        return Err(format!("is not a valid glob: {e}"));
    }
    if root.contains("**") {
        // It would make every directory below a root a root of its own (stores and NN
        // directories included), which is never what a Spark local dir is.
        return Err("must not use \"**\"; name the Spark local dirs themselves (\"/data*/spark\" is fine)".into());
    }
    // "/*" or "/*/spark" would match every top directory, system ones included.
    let first = path.components().nth(1).map(|c| c.as_os_str().to_string_lossy());
    if first.is_some_and(|c| c.starts_with(['*', '?', '['])) {
        return Err("must start with a literal top directory (\"/data*/spark\" is fine, \"/*/spark\" is not)".into());
    }
    check_root_path(path)
}

/// Checks a concrete root (also each path a glob expands to, at every sweep).
pub fn check_root_path(path: &Path) -> Result<(), String> {
    let normal: PathBuf = path.components().collect();
    if SYSTEM_DIRS.iter().any(|d| normal == Path::new(d)) {
        return Err("is a system directory, not a Spark local dir".into());
    }
    if SYSTEM_TREES.iter().any(|d| normal.starts_with(d)) {
        return Err("is inside a system directory, not a Spark local dir".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod shipped_file {
    use super::*;

    /// The shipped file documents every key with its default value.
    #[test]
    fn the_shipped_config_sets_every_key_to_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/shuffle-janitor.toml");
        let shipped = Config::from_file(&path).unwrap();
        let defaults = RawConfig::default().validate(None).unwrap();
        assert_eq!(shipped.to_toml(), defaults.to_toml());
        let text = std::fs::read_to_string(&path).unwrap();
        let keys = toml::from_str::<toml::Table>(&defaults.to_toml()).unwrap();
        for (key, value) in &keys {
            match value.as_table() {
                Some(section) => {
                    assert!(text.contains(&format!("\n[{key}]\n")), "section [{key}] is documented");
                    for sub in section.keys() {
                        assert!(text.contains(&format!("\n{sub} = ")), "{key}.{sub} is set in the file");
                    }
                }
                None => assert!(text.contains(&format!("\n{key} = ")), "{key} is set in the file"),
            }
        }
    }
}
