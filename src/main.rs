//! Parses the command line, sets up logging, dispatches, and maps outcomes to exit codes.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use shuffle_janitor::cli::{AskArgs, Cli, Command, Format, LogFormat, ReportArgs, RunArgs, SweepArgs};
use shuffle_janitor::config::{Config, ConfigError};
use shuffle_janitor::control;
use shuffle_janitor::journal;
use shuffle_janitor::policy::Mode;
use shuffle_janitor::report::{Listing, Report, StreamList};
use shuffle_janitor::sweep::{self, Options};
use shuffle_janitor::web_config::WebConfig;

/// The exit codes, as documented in `--help` and the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// Done.
    Done = 0,
    /// Done, but some files could not be deleted or read (or the daemon could not start).
    Partial = 1,
    /// Bad usage or bad configuration: nothing at all was deleted.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let exit = match cli.command {
        Command::Run(args) => run(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Sweep(args) => sweep_cmd(&args),
        Command::Report(args) => report_cmd(&args),
        Command::Status(args) => ask_cmd(&args, control::status),
        Command::Plan(args) => ask_cmd(&args, control::plan),
        Command::Explain(args) => {
            let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
            ask_cmd(&args.ask, |cfg, json| control::explain(cfg, &paths, json))
        }
    };
    exit.into()
}

fn run(args: &RunArgs) -> Exit {
    let overrides = args.overrides();
    let cfg = match Config::load_with(args.config.config.as_deref(), &overrides) {
        Ok(cfg) => cfg,
        Err(e) => return config_error(&e),
    };
    let web = match &cfg.web_config_file {
        None => WebConfig::plain(),
        Some(file) => match WebConfig::load(file) {
            Ok(web) => web,
            Err(e) => {
                eprintln!("shuffle-janitor: bad web configuration, nothing was deleted: {e}");
                return Exit::Usage;
            }
        },
    };
    let path = cfg.source.clone();
    match shuffle_janitor::daemon::run(path, overrides, cfg, web) {
        Ok(()) => Exit::Done,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("shuffle-janitor: {e}");
            Exit::Partial
        }
    }
}

fn check_config(args: &RunArgs) -> Exit {
    match Config::load_with(args.config.config.as_deref(), &args.overrides()) {
        Ok(cfg) => {
            if let Some(file) = &cfg.web_config_file {
                match WebConfig::load(file) {
                    Ok(web) => print_out(&format!(
                        "# web configuration OK ({}): {}\n",
                        file.display(),
                        web.describe()
                    )),
                    Err(e) => {
                        eprintln!("shuffle-janitor: bad web configuration: {e}");
                        return Exit::Usage;
                    }
                }
            }
            let source = cfg
                .source
                .as_ref()
                .map_or_else(|| "built-in defaults".into(), |p| p.display().to_string());
            print_out(&format!(
                "# configuration OK ({source}); effective settings:\n{}",
                cfg.to_toml()
            ));
            Exit::Done
        }
        Err(e) => config_error(&e),
    }
}

fn sweep_cmd(args: &SweepArgs) -> Exit {
    let cfg = match Config::load(args.config.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => return config_error(&e),
    };
    // Files are written as they are found (a million would not fit in memory as a list): JSON
    // always lists them, text only in a dry run.
    let json = args.format == Format::Json;
    let listing = (json || args.dry_run || cfg.dry_run).then(|| Arc::new(StreamList::new(std::io::stdout(), json)));
    let opts = Options {
        mode: if args.purge { Mode::Purge } else { Mode::Sweep },
        dry_run: args.dry_run,
        list_files: false,
        listing: listing.clone().map(|l| l as Arc<dyn Listing>),
        opens: None,
        now: None,
    };
    // What it deletes goes to the daemon's journal too, when state_dir lets this user write it.
    if !(opts.dry_run || cfg.dry_run) {
        journal::install(journal::open_for(&cfg, journal::By::Sweep));
    }
    let cancel = stop_on_signals();
    let report = sweep::run(&cfg, &opts, &cancel);
    finish(listing.as_deref(), &report, json, Report::to_text);
    outcome(&report)
}

/// Writes the summary after the files already streamed (or alone, when none were listed).
fn finish(listing: Option<&StreamList>, report: &Report, json: bool, text: fn(&Report) -> String) {
    let error = match (listing, json) {
        (Some(l), true) => l.finish_json(report.to_json()),
        (Some(l), false) => l.finish_text(&text(report)),
        (None, true) => return print_out(&format!("{}\n", report.to_json())),
        (None, false) => return print_out(&text(report)),
    };
    if let Some(e) = error.filter(|e| e.kind() != std::io::ErrorKind::BrokenPipe) {
        eprintln!("shuffle-janitor: cannot write to standard output: {e}");
    }
}

/// SIGTERM, SIGINT and SIGHUP stop a sweep at the next unit boundary instead of killing it
/// (a unit in hand is finished: never one deleted in part). Handlers are in place before the
/// sweep starts.
fn stop_on_signals() -> Arc<AtomicBool> {
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = Arc::new(AtomicBool::new(false));
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return cancel;
    };
    let signals = rt.block_on(async {
        Some((
            signal(SignalKind::terminate()).ok()?,
            signal(SignalKind::interrupt()).ok()?,
            signal(SignalKind::hangup()).ok()?,
        ))
    });
    let Some((mut term, mut int, mut hup)) = signals else {
        return cancel;
    };
    let flag = cancel.clone();
    std::thread::spawn(move || {
        rt.block_on(async {
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = hup.recv() => {}
                }
                eprintln!("shuffle-janitor: stopping after the unit in hand");
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        })
    });
    cancel
}

fn report_cmd(args: &ReportArgs) -> Exit {
    let cfg = match Config::load(args.config.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => return config_error(&e),
    };
    // JSON lists every file a sweep would take, as found; text gives the inventory only.
    let json = args.format == Format::Json;
    let listing = json.then(|| Arc::new(StreamList::new(std::io::stdout(), true)));
    let opts = Options {
        mode: Mode::Sweep,
        dry_run: true,
        list_files: false,
        listing: listing.clone().map(|l| l as Arc<dyn Listing>),
        opens: None,
        now: None,
    };
    let report = sweep::run(&cfg, &opts, &AtomicBool::new(false));
    finish(listing.as_deref(), &report, json, Report::inventory_text);
    outcome(&report)
}

/// `status`, `plan`, `explain`: exit 1 when no daemon answered (what could be said without it
/// is printed all the same).
fn ask_cmd(args: &AskArgs, ask: impl FnOnce(&Config, bool) -> control::Output) -> Exit {
    let cfg = match Config::load(args.config.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => return config_error(&e),
    };
    let out = ask(&cfg, args.format == Format::Json);
    print_out(&out.text);
    if out.answered { Exit::Done } else { Exit::Partial }
}

fn outcome(report: &Report) -> Exit {
    if report.error_count() > 0 {
        Exit::Partial
    } else {
        Exit::Done
    }
}

/// Writes to standard output. A reader that went away (`| head`) is not an error worth a
/// panic or a message: what was done is done, and the exit code says how it went.
fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("shuffle-janitor: cannot write to standard output: {e}");
    }
}

fn config_error(e: &ConfigError) -> Exit {
    eprintln!("shuffle-janitor: bad configuration, nothing was deleted: {e}");
    Exit::Usage
}

fn init_logging(cli: &Cli) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::try_new(&cli.log_level).unwrap_or_else(|e| {
            eprintln!(
                "shuffle-janitor: --log-level {:?} is not a level ({e}); using info",
                cli.log_level
            );
            EnvFilter::new("info")
        })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
