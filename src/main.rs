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
    /// Standard output was closed before all was written (`| head`): what a shell reports for a
    /// process killed by SIGPIPE (128 + 13), which is what coreutils do. Quietly, and a deleting
    /// sweep stops at a unit boundary first (and says so).
    Closed = 141,
}

impl Exit {
    /// The one to report of two outcomes: bad usage, then closed output, then partial.
    fn worst(self, other: Exit) -> Exit {
        let rank = |e: Exit| match e {
            Exit::Done => 0,
            Exit::Partial => 1,
            Exit::Closed => 2,
            Exit::Usage => 3,
        };
        if rank(other) > rank(self) { other } else { self }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `sweep` and `report` read and delete on several threads a filesystem, each holding a
    // store's directories open; a shell's or cron's soft limit is 1024.
    sweep::raise_fd_limit();
    init_logging(&cli);
    let exit = match cli.command {
        Command::Run(args) => run(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Sweep(args) => sweep_cmd(&args),
        Command::Report(args) => report_cmd(&args),
        Command::Status(args) => ask_cmd(&args, control::status),
        Command::Plan(args) => plan_cmd(&args),
        Command::Explain(args) => ask_cmd(&args.ask, |cfg, json| control::explain(cfg, &args.paths, json)),
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
                    Ok(web) => {
                        let wrote = print_out(&format!(
                            "# web configuration OK ({}): {}\n",
                            file.display(),
                            web.describe()
                        ));
                        if wrote != Exit::Done {
                            return wrote;
                        }
                    }
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
            ))
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
    // A reader that goes away stops the sweep at its next unit boundary, as a signal does.
    let cancel = stop_on_signals();
    let listing = (json || args.dry_run || cfg.dry_run)
        .then(|| Arc::new(StreamList::new(std::io::stdout(), json).stop_on_error(cancel.clone())));
    let closed = listing.is_some().then(|| stop_when_stdout_closes(cancel.clone()));
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
    let report = sweep::run(&cfg, &opts, &cancel);
    let stopped_early = report.cancelled
        && (listing.as_ref().is_some_and(|l| l.failed())
            || closed
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)));
    let wrote = finish(listing.as_deref(), &report, json, Report::to_text);
    if stopped_early && !(opts.dry_run || cfg.dry_run) {
        // The one thing worth saying when the output went: deletion stopped before the end.
        let done = report.deleted_total();
        eprintln!(
            "shuffle-janitor: {}: stopped after the unit in hand ({} files deleted, no unit in part); run it again \
             to finish",
            if wrote == Exit::Closed {
                "standard output was closed"
            } else {
                "standard output could not be written"
            },
            done.files
        );
    }
    outcome(&report).worst(wrote)
}

/// Writes the summary after the files already streamed (or alone, when none were listed).
fn finish(listing: Option<&StreamList>, report: &Report, json: bool, text: fn(&Report) -> String) -> Exit {
    let error = match (listing, json) {
        (Some(l), true) => l.finish_json(report.to_json()),
        (Some(l), false) => l.finish_text(&text(report)),
        (None, true) => return print_out(&format!("{}\n", report.to_json())),
        (None, false) => return print_out(&text(report)),
    };
    write_outcome(error)
}

/// A closed pipe exits [`Exit::Closed`] quietly; another write error says what it was.
fn write_outcome(error: Option<std::io::Error>) -> Exit {
    match error {
        None => Exit::Done,
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Closed,
        Some(e) => {
            eprintln!("shuffle-janitor: cannot write to standard output: {e}");
            Exit::Partial
        }
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

/// Sets `cancel` (and the flag returned) as soon as standard output's reader is gone (a pipe
/// whose reader closed, a socket shut down): the list a sweep writes is buffered, and written
/// only once a store is let go, so the failing write alone would stop a deleting sweep only
/// after the whole store in hand (every unit of a store of a million files after `| head`).
/// A file, `/dev/null` or a terminal never wakes it: poll with no events asked reports only
/// POLLERR and POLLHUP.
fn stop_when_stdout_closes(cancel: Arc<AtomicBool>) -> Arc<AtomicBool> {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::sync::atomic::Ordering;
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let _ = std::thread::Builder::new().name("stdout-watch".into()).spawn(move || {
        let out = std::io::stdout();
        let mut fds = [PollFd::new(&out, PollFlags::empty())];
        loop {
            match poll(&mut fds, None) {
                Ok(_) if fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP) => {
                    flag.store(true, Ordering::Relaxed);
                    cancel.store(true, Ordering::Relaxed);
                    return;
                }
                Ok(_) if fds[0].revents().contains(PollFlags::NVAL) => return,
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
        }
    });
    closed
}

fn report_cmd(args: &ReportArgs) -> Exit {
    let cfg = match Config::load(args.config.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => return config_error(&e),
    };
    // JSON lists every file a sweep would take, as found; text gives the inventory only.
    let json = args.format == Format::Json;
    let cancel = Arc::new(AtomicBool::new(false));
    let listing = json.then(|| Arc::new(StreamList::new(std::io::stdout(), true).stop_on_error(cancel.clone())));
    let opts = Options {
        mode: Mode::Sweep,
        dry_run: true,
        list_files: false,
        listing: listing.clone().map(|l| l as Arc<dyn Listing>),
        opens: None,
        now: None,
    };
    let report = sweep::run(&cfg, &opts, &cancel);
    let wrote = finish(listing.as_deref(), &report, json, Report::inventory_text);
    outcome(&report).worst(wrote)
}

/// `status`, `explain`: exit 1 when no daemon answered (what could be said without it is
/// printed all the same).
fn ask_cmd(args: &AskArgs, ask: impl FnOnce(&Config, bool) -> control::Output) -> Exit {
    let cfg = match Config::load(args.config.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => return config_error(&e),
    };
    let json = args.format == Format::Json;
    let out = ask(&cfg, json);
    // In JSON, standard output holds JSON or nothing (`| jq`): `status` without a daemon has
    // only a text saying so, which goes to standard error.
    if json && !out.answered && !out.text.starts_with('{') {
        eprint!("{}", out.text);
        return Exit::Partial;
    }
    let wrote = print_out(&out.text);
    if out.answered { Exit::Done } else { Exit::Partial }.worst(wrote)
}

/// `plan`: the daemon's plan, written as it streams in; exit 1 when there is no whole one.
fn plan_cmd(args: &AskArgs) -> Exit {
    let cfg = match Config::load(args.config.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => return config_error(&e),
    };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let answered = control::plan(&cfg, args.format == Format::Json, &mut out);
    let wrote = write_outcome(out.flush().err());
    match answered {
        Ok(Ok(())) => wrote,
        // Not part of the plan: on standard error, after what was listed (a plan in part is
        // not finished by a line of text, nor its JSON by something that is not).
        Ok(Err(why)) => {
            eprint!("shuffle-janitor: {why}");
            Exit::Partial.worst(wrote)
        }
        Err(e) => write_outcome(Some(e)),
    }
}

fn outcome(report: &Report) -> Exit {
    if report.error_count() > 0 {
        Exit::Partial
    } else {
        Exit::Done
    }
}

/// Writes to standard output. A reader that went away (`| head`) is not worth a panic or a
/// message: [`Exit::Closed`] says the output is incomplete.
fn print_out(text: &str) -> Exit {
    let mut out = std::io::stdout().lock();
    write_outcome(out.write_all(text.as_bytes()).and_then(|()| out.flush()).err())
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
