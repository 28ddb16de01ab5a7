//! The command line: clap definitions only; `main.rs` wires them to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Deletes stale Apache Spark shuffle files from a node's local dirs.";

const LONG_ABOUT: &str = "\
Deletes stale Apache Spark shuffle files from a node's local dirs, replacing the hourly
`find /data/spark -type f -mmin +360 -delete` cron job. Only files with Spark's own names inside
a block store (blockmgr-*/NN/ or merge_manager*/NN/) below a configured root are ever deleted;
a map output's data, index and checksum files go together or not at all.

Start with a dry run to see what it would do with your config:

    shuffle-janitor sweep --dry-run --config /etc/shuffle-janitor/config.toml

Without --config, /etc/shuffle-janitor/config.toml is read when it exists, else the built-in
defaults apply (root /tmp, max_age 6h, min_age 15m). `check-config` prints the effective
configuration.

Exit codes: 0 done; 1 done, but some files could not be deleted or read (see the log);
2 bad usage or bad config, and then nothing was deleted; 141 standard output was closed
before all was written (`| head`; a deleting sweep then stops after the unit in hand).";

#[derive(Debug, Parser)]
#[command(name = "shuffle-janitor", version = crate::LONG_VERSION, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG, when set, takes precedence.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    /// Log format, on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: a sweep at start and every `interval`, eviction as soon as a filesystem
    /// crosses the high watermark, metrics on `metrics.listen`. Signals: SIGHUP reloads the
    /// config, SIGUSR1 sweeps now, SIGUSR2 purges to the low watermark now, SIGTERM stops.
    Run(RunArgs),
    /// One pass: delete units unused for longer than max_age, and evict least recently used
    /// units from any filesystem above the high watermark until it is at the low one.
    Sweep(SweepArgs),
    /// Validate the configuration and print the effective settings.
    CheckConfig(RunArgs),
    /// Read-only inventory per root and kind (files, bytes, oldest last use, age histogram)
    /// and what a sweep would reclaim now. Deletes nothing.
    Report(ReportArgs),
    /// Ask the running daemon for its state: version, config, dry run, roots against the
    /// watermarks, index, watch, last sweeps, next sweep (through control_socket).
    Status(AskArgs),
    /// Ask the running daemon which files its next sweep would delete, now (a dry run of its
    /// own decision: for a canary, run it with dry_run, read this, then switch dry_run off).
    Plan(AskArgs),
    /// Say why each file is kept or goes, from the running daemon's view; for a file that is
    /// gone, whether shuffle-janitor deleted it, when and why (its journal). Without a daemon,
    /// answers from the journal and the file's own timestamps, and says so.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub ask: AskArgs,

    /// Files to explain.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Config file [default: /etc/shuffle-janitor/config.toml if it exists, else built-in defaults]
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// Address:port to serve metrics on; replaces metrics.listen.
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub web_listen_address: Option<String>,

    /// Web config file (the Prometheus exporter toolkit's format: TLS, client certificates,
    /// basic auth with bcrypt hashes); replaces metrics.web_config_file. Re-read on SIGHUP.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Decide and count, but delete no file and remove no store, whatever the config's dry_run
    /// says (as dry_run = true; for a canary, read `plan`).
    #[arg(long)]
    pub dry_run: bool,
}

impl RunArgs {
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            listen: self.web_listen_address.clone(),
            web_config_file: self.web_config_file.clone(),
            dry_run: self.dry_run,
        }
    }
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// Decide and list what would go (one line per file), delete nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Also evict least recently used units down to the low watermark, even below the high
    /// one (min_age, protect and open files still hold).
    #[arg(long)]
    pub purge: bool,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}
