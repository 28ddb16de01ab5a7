//! shuffle-janitor(8): NAME, SYNOPSIS, DESCRIPTION and OPTIONS from the clap definitions
//! (clap_mangen), then COMMANDS, each with its synopsis, description and options, also from
//! clap; then EXIT STATUS, SIGNALS, FILES, HTTP ENDPOINTS and METRICS from the README's tables,
//! which stay their one source.

use clap::{ArgAction, Command};
use clap_mangen::Man;
use roff::{Inline, Roff, bold, italic, roman};

use crate::markdown::{Section, inline, section};
use crate::{Meta, without_preamble};

/// The headings whose tables become sections of the page: in the README, but for the package's
/// files, which are in docs/install.md (the documents are read as one, README first).
const EXIT_CODES: &str = "### Exit codes";
const SIGNALS: &str = "### Signals";
const PACKAGE: &str = "## Debian package (apt, dpkg)";
const METRICS: &str = "### Metrics";

pub fn render(cmd: clap::Command, readme: &str, meta: &Meta) -> Result<String, String> {
    let mut cmd = cmd.disable_help_subcommand(true).subcommand_value_name("COMMAND");
    cmd.build();
    let man = Man::new(cmd.clone())
        .title("SHUFFLE-JANITOR")
        .section("8")
        .date(&meta.date)
        .source(&meta.source)
        .manual("System Manager's Manual");

    let mut page = piece(|w| man.render_title(w));
    // No hyphenation and a ragged right margin: paths, commands and metric names stay whole.
    page.push_str(".nh\n.ad l\n");
    page.push_str(&preformatted(without_preamble(&piece(|w| man.render_name_section(w)))));
    let mut r = Roff::new();
    r.control("SH", ["SYNOPSIS"]);
    r.text(synopsis(&cmd));
    page.push_str(without_preamble(&r.render()));
    for part in [Man::render_description_section, Man::render_options_section] {
        page.push_str(&code_spans(&preformatted(without_preamble(&piece(|w| part(&man, w))))));
    }

    page.push_str(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // The global options and --help are described once, under OPTIONS.
        let shared: Vec<String> = sub
            .get_arguments()
            .filter(|a| a.is_global_set() || a.get_id() == "help")
            .map(|a| a.get_id().to_string())
            .collect();
        let mut sub = sub.clone();
        for id in shared {
            sub = sub.mut_arg(id, |a| a.hide(true));
        }
        let has_options = sub.get_arguments().any(|a| !a.is_hide_set());
        let name = sub.get_bin_name().unwrap_or(sub.get_name()).replace('-', "\\-");
        let mut r = Roff::new();
        r.text(synopsis(&sub));
        let man = Man::new(sub);
        page.push_str(&format!(".SS \"{name}\"\n"));
        page.push_str(without_preamble(&r.render()));
        page.push_str(".PP\n");
        page.push_str(&code_spans(&preformatted(&body(&piece(|w| {
            man.render_description_section(w)
        })))));
        if has_options {
            page.push_str(&code_spans(&preformatted(&body(&piece(|w| {
                man.render_options_section(w)
            })))));
        }
    }

    let mut r = Roff::new();
    exit_status(&mut r, &section(readme, EXIT_CODES)?)?;
    signals(&mut r, &section(readme, SIGNALS)?)?;
    files(&mut r, &section(readme, PACKAGE)?)?;
    metrics(&mut r, &section(readme, METRICS)?)?;
    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("shuffle-janitor.toml"),
        roman("(5), "),
        bold("systemctl"),
        roman("(1), "),
        bold("/usr/share/doc/shuffle-janitor/README.md"),
    ]);
    page.push_str(without_preamble(&r.render()));
    Ok(page)
}

/// A command's synopsis: its name, each visible option with its argument (`[--log-level LEVEL]`,
/// `[--log-format text|json]`), its positionals and `COMMAND`. clap_mangen's (0.3) writes an
/// option without its argument (`[--log-level]`), which reads as a flag.
fn synopsis(cmd: &Command) -> Vec<Inline> {
    let mut line = vec![bold(cmd.get_bin_name().unwrap_or(cmd.get_name()))];
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set() && !a.is_positional()) {
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(s), Some(l)) => format!("-{s}|--{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => continue,
        };
        let optional = !arg.is_required_set();
        line.push(roman(if optional { " [" } else { " " }));
        line.push(bold(flag));
        if arg.get_action().takes_values() {
            line.push(roman(" "));
            line.push(italic(value_name(arg)));
        }
        if matches!(arg.get_action(), ArgAction::Count | ArgAction::Append) {
            line.push(roman("..."));
        }
        if optional {
            line.push(roman("]"));
        }
    }
    for arg in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let optional = !arg.is_required_set();
        line.push(roman(if optional { " [" } else { " " }));
        line.push(italic(value_name(arg)));
        if optional {
            line.push(roman("]"));
        }
    }
    if cmd.has_subcommands() {
        line.push(roman(" "));
        line.push(italic(cmd.get_subcommand_value_name().unwrap_or("COMMAND")));
    }
    line
}

/// What an option takes: its possible values (`text|json`: clap derive names an enum's argument
/// after its field, `LOG_FORMAT`, which says less), else its value name, else its id.
fn value_name(arg: &clap::Arg) -> String {
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() {
        return values.join("|");
    }
    match arg.get_value_names() {
        Some(names) => names.join(" "),
        None => arg.get_id().as_str().to_uppercase(),
    }
}

/// Markdown code spans in clap's help texts (`` `check-config` ``) in bold: a backtick reaches a
/// rendered page as a quotation mark. Requests (lines starting with `.` or `'`) are left alone, and
/// so is a line with an odd number of backticks (the test of the page finds it).
fn code_spans(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    for line in roff.split_inclusive('\n') {
        if line.starts_with(['.', '\'']) || line.matches('`').count() % 2 == 1 {
            out.push_str(line);
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 1 {
                out.push_str("\\fB");
                out.push_str(part);
                out.push_str("\\fP");
            } else {
                out.push_str(part);
            }
        }
    }
    out
}

/// One clap_mangen rendering, as text.
fn piece(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut buf = Vec::new();
    f(&mut buf).expect("writing to memory");
    String::from_utf8(buf).expect("clap_mangen writes UTF-8")
}

/// A clap_mangen section without its preamble and `.SH` line, to go under a command's `.SS`.
/// (Should a command's options ever get help headings of their own, each becomes a bold line.)
fn body(rendered: &str) -> String {
    let mut lines = without_preamble(rendered).lines();
    let first = lines.next().unwrap_or_default();
    debug_assert!(first.starts_with(".SH "), "{first}");
    let mut out = String::new();
    for line in lines {
        match line.strip_prefix(".SH ") {
            Some(heading) => out.push_str(&format!(".PP\n\\fB{}\\fR\n", heading.trim_matches('"'))),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// clap_mangen with the indented lines of a help text (an example command, say) kept as they
/// are, indented, instead of filled into the paragraph around them.
fn preformatted(roff: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in roff.lines() {
        let indented = line.starts_with(' ');
        if indented != in_block {
            out.push_str(if indented { ".RS 4\n.nf\n" } else { ".fi\n.RE\n" });
            in_block = indented;
        }
        let line = if indented { line.trim_start() } else { line };
        if indented && line.starts_with(['.', '\'']) {
            out.push_str("\\&"); // not a request, though it now starts the line
        }
        out.push_str(line);
        out.push('\n');
    }
    if in_block {
        out.push_str(".fi\n.RE\n");
    }
    out
}

/// Paragraphs of Markdown as roff paragraphs.
fn paragraphs(r: &mut Roff, paragraphs: &[String]) {
    for p in paragraphs {
        r.control("PP", []);
        r.text(inline(p));
    }
}

/// One `.TP` entry: the tag, then the body.
fn entry(r: &mut Roff, tag: Vec<Inline>, body: Vec<Inline>) {
    r.control("TP", []);
    r.text(tag);
    r.text(body);
}

fn exit_status(r: &mut Roff, s: &Section) -> Result<(), String> {
    let (code, meaning) = (s.column(EXIT_CODES, "code")?, s.column(EXIT_CODES, "meaning")?);
    r.control("SH", ["EXIT STATUS"]);
    paragraphs(r, &s.before);
    for row in &s.rows {
        entry(r, vec![bold(&row[code])], inline(&row[meaning]));
    }
    paragraphs(r, &s.after);
    Ok(())
}

fn signals(r: &mut Roff, s: &Section) -> Result<(), String> {
    let signal = s.column(SIGNALS, "signal")?;
    let to = s.column(SIGNALS, "to")?;
    let run = s.column(SIGNALS, "run")?;
    r.control("SH", ["SIGNALS"]);
    paragraphs(r, &s.before);
    for row in &s.rows {
        let mut body = inline(&row[to]);
        body.push(roman(". Under systemd: "));
        body.extend(inline(&row[run]));
        entry(r, vec![bold(&row[signal])], body);
    }
    paragraphs(r, &s.after);
    Ok(())
}

/// The files the program uses, from the package's table: all but those under /usr/share.
fn files(r: &mut Roff, s: &Section) -> Result<(), String> {
    let (path, what) = (s.column(PACKAGE, "path")?, s.column(PACKAGE, "what")?);
    r.control("SH", ["FILES"]);
    for row in s.rows.iter().filter(|row| !row[path].starts_with("`/usr/share/")) {
        entry(r, inline(&row[path]), inline(&row[what]));
    }
    Ok(())
}

/// The paragraph above the README's metrics table names the endpoints; the table, the metrics.
fn metrics(r: &mut Roff, s: &Section) -> Result<(), String> {
    let metric = s.column(METRICS, "metric")?;
    let labels = s.column(METRICS, "labels")?;
    let meaning = s.column(METRICS, "meaning")?;
    r.control("SH", ["HTTP ENDPOINTS"]);
    paragraphs(r, &s.before);
    r.control("SH", ["METRICS"]);
    for row in &s.rows {
        let mut body = inline(&row[meaning]);
        if !row[labels].is_empty() {
            body.push(roman("; labels: "));
            body.extend(inline(&row[labels]));
        }
        entry(r, inline(&row[metric]), body);
    }
    // Only the first sentence after the table: the rest is about files in the source tree.
    if let Some(first) = s.after.first() {
        let sentence = first.split_inclusive(". ").next().unwrap_or(first).trim_end();
        paragraphs(r, &[sentence.to_string()]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::tests::meta;
    use shuffle_janitor::cli::Cli;

    fn page() -> String {
        let readme = crate::docs_source(|name| {
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name))
                .map_err(|e| e.to_string())
        })
        .unwrap();
        render(Cli::command(), &readme, &meta()).unwrap()
    }

    fn roff_escaped(s: &str) -> String {
        s.replace('-', "\\-")
    }

    #[test]
    fn every_command_and_option_of_the_cli_is_on_the_page() {
        let page = page();
        let mut cmd = Cli::command();
        cmd.build();
        let mut commands = 0;
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            commands += 1;
            let heading = format!(".SS \"shuffle\\-janitor {}\"", roff_escaped(sub.get_name()));
            assert!(page.contains(&heading), "no {heading} in\n{page}");
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let flag = format!("\\fB\\-\\-{}\\fR", roff_escaped(long));
                    assert!(page.contains(&flag), "{} lacks {flag}", sub.get_name());
                }
            }
        }
        assert!(commands >= 4, "{commands} commands");
        for global in ["log\\-level", "log\\-format", "version"] {
            assert!(page.contains(&format!("\\fB\\-\\-{global}\\fR")), "{global}");
        }
        // Global options are listed once, not under each command.
        assert_eq!(
            page.matches("\\fB\\-\\-log\\-level\\fR").count(),
            2,
            "synopsis and OPTIONS"
        );
        assert!(page.starts_with(
            ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH SHUFFLE-JANITOR 8 2026-11-30 \"shuffle-janitor 0.1.0\""
        ));
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble");
    }

    #[test]
    fn the_synopsis_shows_what_each_option_takes() {
        let page = page();
        // The top synopsis: global options with their arguments, then the command.
        assert!(
            page.contains("[\\fB\\-\\-log\\-level\\fR \\fILEVEL\\fR]"),
            "no [--log-level LEVEL] in\n{page}"
        );
        assert!(
            page.contains("[\\fB\\-\\-log\\-format\\fR \\fItext|json\\fR]"),
            "{page}"
        );
        assert!(page.contains("\\fICOMMAND\\fR"), "{page}");
        // A command's options: a flag has no argument, an option has its argument.
        assert!(page.contains("[\\fB\\-\\-dry\\-run\\fR]"), "{page}");
        assert!(page.contains("[\\fB\\-c|\\-\\-config\\fR \\fIFILE\\fR]"), "{page}");
    }

    #[test]
    fn code_spans_become_bold_and_no_backtick_is_left() {
        assert_eq!(
            code_spans("Prints `check-config` and `x`.\n.TP\n`odd\n"),
            "Prints \\fBcheck-config\\fP and \\fBx\\fP.\n.TP\n`odd\n"
        );
        let page = page();
        let left: Vec<&str> = page.lines().filter(|l| l.contains('`')).collect();
        assert!(left.is_empty(), "backticks left on the page: {left:?}");
    }

    #[test]
    fn indented_help_lines_stay_lines_of_their_own() {
        let roff = "Start with:\n.PP\n    shuffle\\-janitor sweep\n    .hidden\n.PP\nThen.\n";
        assert_eq!(
            preformatted(roff),
            "Start with:\n.PP\n.RS 4\n.nf\nshuffle\\-janitor sweep\n\\&.hidden\n.fi\n.RE\n.PP\nThen.\n"
        );
    }

    #[test]
    fn exit_status_signals_files_endpoints_and_metrics_come_from_the_readme() {
        let page = page();
        for section in [
            "EXIT STATUS",
            "SIGNALS",
            "FILES",
            "HTTP ENDPOINTS",
            "METRICS",
            "SEE ALSO",
        ] {
            assert!(page.contains(&format!("\n.SH \"{section}\"\n")) || page.contains(&format!("\n.SH {section}\n")));
        }
        assert!(
            page.contains(".TP\n\\fB2\\fR\nbad usage or bad configuration"),
            "{page}"
        );
        for signal in ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTERM"] {
            assert!(page.contains(&format!(".TP\n\\fB{signal}\\fR\n")), "{signal}");
        }
        assert!(
            page.contains("Under systemd: \\fBsystemctl reload shuffle\\-janitor\\fR"),
            "{page}"
        );
        assert!(
            page.contains(".TP\n\\fB/etc/shuffle\\-janitor/config.toml\\fR\n"),
            "{page}"
        );
        assert!(!page.contains(".TP\n\\fB/usr/share/"), "FILES leaves out documentation");
        for endpoint in ["/metrics", "/\\-/healthy", "/\\-/ready"] {
            assert!(page.contains(&format!("\\fB{endpoint}\\fR")), "{endpoint}");
        }
    }

    /// The README's metrics table is checked against a live daemon by tests/deploy.sh; this checks
    /// the page against the metrics the daemon registers.
    #[test]
    fn every_metric_the_daemon_exports_is_on_the_page() {
        let page = page();
        let (text, _) = shuffle_janitor::daemon::metrics::Metrics::new().render();
        let text = String::from_utf8(text).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# HELP shuffle_janitor_"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(names.len() >= 8, "{names:?}");
        for name in names {
            let tag = format!(".TP\n\\fBshuffle_janitor_{name}\\fR\n");
            assert!(page.contains(&tag), "METRICS lacks shuffle_janitor_{name}");
        }
    }
}
