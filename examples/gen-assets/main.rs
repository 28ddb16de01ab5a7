//! Generates what the Debian package and the release tarball ship beside the binary, each from
//! the one source it documents, so that none of it can drift:
//!
//! - `man/shuffle-janitor.8`: the clap definitions (`shuffle_janitor::cli::Cli`) through
//!   clap_mangen, every command with its options, then EXIT STATUS, SIGNALS, FILES, HTTP
//!   ENDPOINTS and METRICS from the README's tables ([`command_page`]);
//! - `man/shuffle-janitor.toml.5`: config/shuffle-janitor.toml, its comments and `key = default`
//!   lines ([`config_page`]);
//! - `completions/shuffle-janitor.bash`, `_shuffle-janitor` (zsh), `shuffle-janitor.fish`: the same
//!   clap definitions through clap_complete.
//!
//! ```sh
//! cargo run --locked --example gen-assets [-- OUTDIR]    # OUTDIR defaults to target/assets
//! ```
//!
//! Why an example, run before `cargo deb` (tests/package.sh and scripts/release-tarball.sh do),
//! with its output named in Cargo.toml's `[package.metadata.deb] assets` under target/assets/:
//! - cargo-deb (3.x) builds the binary and then packages files that exist; nothing of ours runs
//!   in between, so the files must be there before it starts.
//! - A build script could not describe the library (it runs before the library is compiled, so
//!   it cannot see `Cli` or the config's defaults), and it may write only into `OUT_DIR`, a path
//!   cargo-deb cannot know.
//! - A subcommand would put the generator, the README's tables and three crates into the daemon.
//! - An example links the library exactly as the binary does, and needs only dev-dependencies
//!   (clap_mangen, clap_complete, roff); its tests run with `cargo test` (`test = true`).
//! - Nothing generated is committed: a config key or option the lead adds appears on the pages
//!   at the next package build, and the tests here fail if one would be missing.

mod command_page;
mod config_page;
mod markdown;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use roff::Roff;

use shuffle_janitor::cli::Cli;

const NAME: &str = "shuffle-janitor";

/// What both pages say in their title line.
pub struct Meta {
    /// `YYYY-MM-DD`: `SOURCE_DATE_EPOCH`'s day, else the last commit's, else none.
    pub date: String,
    /// `shuffle-janitor <version>`.
    pub source: String,
    /// Where the package installs the config.
    pub config_path: &'static str,
}

impl Meta {
    fn new() -> Meta {
        Meta {
            date: page_date(),
            source: format!("{NAME} {}", env!("CARGO_PKG_VERSION")),
            config_path: shuffle_janitor::config::DEFAULT_PATH,
        }
    }
}

fn main() -> ExitCode {
    let out = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/assets"),
        PathBuf::from,
    );
    match generate(&out) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-assets: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The documents the command page's tables come from, as one text: the README, then
/// docs/install.md (the package's files).
pub fn docs_source(source: impl Fn(&str) -> Result<String, String>) -> Result<String, String> {
    Ok(format!("{}\n{}", source("README.md")?, source("docs/install.md")?))
}

/// Writes every file below `out` and returns their paths.
fn generate(out: &Path) -> Result<Vec<PathBuf>, String> {
    let source = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let meta = Meta::new();
    let mut files = vec![
        (
            "man/shuffle-janitor.8",
            command_page::render(Cli::command(), &docs_source(source)?, &meta)?,
        ),
        (
            "man/shuffle-janitor.toml.5",
            config_page::render(&source("config/shuffle-janitor.toml")?, &meta)?,
        ),
    ];
    for (shell, file) in [
        (Shell::Bash, "completions/shuffle-janitor.bash"),
        (Shell::Zsh, "completions/_shuffle-janitor"),
        (Shell::Fish, "completions/shuffle-janitor.fish"),
    ] {
        files.push((file, completion(shell)));
    }
    let mut written = Vec::new();
    for (name, text) in files {
        let path = out.join(name);
        let dir = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn completion(shell: Shell) -> String {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), NAME, &mut buf);
    let script = String::from_utf8(buf).expect("clap_complete writes UTF-8");
    match shell {
        Shell::Bash => bash_case_labels(&script),
        _ => script,
    }
}

/// clap_complete's bash script (4.6) walks the words into `cmd="shuffle__janitor__subcmd__sweep"`
/// (the binary's `-` made `__`), but labels the cases that complete each subcommand's options
/// `shuffle__subcmd__janitor__subcmd__sweep)` (the `-` made `__subcmd__`): no label matches, and
/// `shuffle-janitor sweep --<TAB>` offers nothing. The labels are renamed to what `cmd` holds;
/// a script without the mismatch (a fixed clap_complete) comes out unchanged, and the test below
/// checks that every value of `cmd` has its case.
fn bash_case_labels(script: &str) -> String {
    const SEP: &str = "__subcmd__";
    let wrong = format!("{}{SEP}", NAME.replace('-', SEP));
    let right = format!("{}{SEP}", NAME.replace('-', "__"));
    script
        .split_inclusive('\n')
        .map(|line| {
            let label = line.trim_start();
            if label.starts_with(&wrong) && label.trim_end().ends_with(')') {
                line.replacen(&wrong, &right, 1)
            } else {
                line.to_string()
            }
        })
        .collect()
}

/// `rendered` without the roff crate's preamble (it defines `\*(Aq`, the apostrophe, at the start
/// of every rendering), to append to a page that has it.
pub fn without_preamble(rendered: &str) -> &str {
    let preamble = Roff::new().render();
    rendered.strip_prefix(preamble.as_str()).unwrap_or(rendered)
}

/// The day of `SOURCE_DATE_EPOCH`, else of the last commit (as scripts/release-tarball.sh dates
/// its files), so that the same sources make the same pages.
fn page_date() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| {
            let out = std::process::Command::new("git")
                .args(["-C", env!("CARGO_MANIFEST_DIR"), "log", "-1", "--format=%ct"])
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .and_then(|s| s.parse::<i64>().ok());
    epoch.map_or_else(String::new, |e| {
        let (y, m, d) = civil_from_days(e.div_euclid(86_400));
        format!("{y:04}-{m:02}-{d:02}")
    })
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn meta() -> Meta {
        Meta {
            date: "2026-11-30".into(),
            source: "shuffle-janitor 0.1.0".into(),
            config_path: shuffle_janitor::config::DEFAULT_PATH,
        }
    }

    #[test]
    fn dates_are_days_of_the_gregorian_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_422), (2025, 11, 30));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn completions_offer_every_command_and_option() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = completion(shell);
            for word in [
                "run",
                "sweep",
                "check-config",
                "report",
                "dry-run",
                "purge",
                "log-format",
                "config",
            ] {
                assert!(script.contains(word), "{shell} completion lacks {word}");
            }
        }
    }

    /// Every `cmd="..."` the bash script's word loop can set has a `...)` case that completes it.
    #[test]
    fn bash_completion_has_a_case_for_every_subcommand() {
        let script = completion(Shell::Bash);
        let values: Vec<&str> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cmd=\""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|v| !v.is_empty()) // the loop's start
            .collect();
        assert!(values.len() >= 5, "{values:?}");
        for v in values {
            assert!(
                script.lines().any(|l| l.trim() == format!("{v})")),
                "bash completion: no case {v}) for cmd=\"{v}\""
            );
        }
        // And without the workaround clap_complete's script has none for the subcommands (when
        // this fails, clap_complete is fixed and bash_case_labels can go).
        let mut buf = Vec::new();
        clap_complete::generate(Shell::Bash, &mut Cli::command(), NAME, &mut buf);
        let raw = String::from_utf8(buf).unwrap();
        assert!(!raw.lines().any(|l| l.trim() == "shuffle__janitor__subcmd__sweep)"));
    }

    #[test]
    fn every_file_is_written_below_the_directory_given() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(dir.path()).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "man/shuffle-janitor.8",
                "man/shuffle-janitor.toml.5",
                "completions/shuffle-janitor.bash",
                "completions/_shuffle-janitor",
                "completions/shuffle-janitor.fish"
            ]
            .map(PathBuf::from)
        );
        for f in files {
            assert!(std::fs::metadata(&f).unwrap().len() > 500, "{}", f.display());
        }
    }
}
