//! Parses the command line, sets up logging, dispatches, and maps outcomes to exit codes.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use shuffle_janitor::cli::{Cli, Command, Format, LogFormat};
use shuffle_janitor::config::Config;
use shuffle_janitor::policy::Mode;
use shuffle_janitor::sweep::{self, Options};

/// 0 done; 1 done but some files could not be deleted; 2 bad usage or config (nothing deleted).
const EXIT_PARTIAL: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match cli.command {
        Command::Run(args) => {
            let cfg = match Config::load(args.config.as_deref()) {
                Ok(cfg) => cfg,
                Err(e) => return config_error(&e),
            };
            let path = cfg.source.clone();
            match shuffle_janitor::daemon::run(path, cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("shuffle-janitor: {e}");
                    ExitCode::from(EXIT_PARTIAL)
                }
            }
        }
        Command::CheckConfig(args) => match Config::load(args.config.as_deref()) {
            Ok(cfg) => {
                let source = cfg
                    .source
                    .as_ref()
                    .map_or_else(|| "built-in defaults".into(), |p| p.display().to_string());
                println!("# configuration OK ({source}); effective settings:");
                print!("{}", cfg.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Sweep(args) => {
            let cfg = match Config::load(args.config.config.as_deref()) {
                Ok(cfg) => cfg,
                Err(e) => return config_error(&e),
            };
            let opts = Options {
                mode: if args.purge { Mode::Purge } else { Mode::Sweep },
                dry_run: args.dry_run,
                list_files: args.format == Format::Json || args.dry_run || cfg.dry_run,
                opens: None,
            };
            let report = sweep::run(&cfg, &opts, &AtomicBool::new(false));
            match args.format {
                Format::Text => print!("{}", report.to_text()),
                Format::Json => println!("{}", report.to_json()),
            }
            if report.error_count() > 0 {
                ExitCode::from(EXIT_PARTIAL)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Report(args) => {
            let cfg = match Config::load(args.config.config.as_deref()) {
                Ok(cfg) => cfg,
                Err(e) => return config_error(&e),
            };
            let opts = Options {
                mode: Mode::Sweep,
                dry_run: true,
                list_files: args.format == Format::Json,
                opens: None,
            };
            let report = sweep::run(&cfg, &opts, &AtomicBool::new(false));
            match args.format {
                Format::Text => print!("{}", report.inventory_text()),
                Format::Json => println!("{}", report.to_json()),
            }
            if report.error_count() > 0 {
                ExitCode::from(EXIT_PARTIAL)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

fn config_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("shuffle-janitor: bad configuration, nothing was deleted: {e}");
    ExitCode::from(EXIT_USAGE)
}

fn init_logging(cli: &Cli) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // notify warns for every watched directory Spark removes (its watch is gone with it):
        // expected here, and a flood when an application ends.
        EnvFilter::try_new(format!("{},notify=error", cli.log_level)).unwrap_or_else(|e| {
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
