//! shuffle-janitor.toml(5), generated from the documented example `config/shuffle-janitor.toml`:
//! its opening comment is the DESCRIPTION, each `[table]` a section, and each `key = default`
//! line (or run of adjacent ones) an entry described by the comment above it. A key added to
//! the file appears on the page with no change here; a key without a comment above it is an
//! error, and a test fails when a key of the effective configuration is not on the page.

use roff::{Roff, bold, roman};

use crate::Meta;
use crate::markdown::inline;

/// Where the file comes from, for error messages.
const SOURCE: &str = "config/shuffle-janitor.toml";

/// One `[table]` of the file (the top level has no name).
#[derive(Debug, Default)]
struct Table {
    name: Option<String>,
    items: Vec<Item>,
}

#[derive(Debug)]
enum Item {
    /// A comment followed by a blank line: text of the section.
    Note(Vec<String>),
    /// Adjacent `key = value` lines and the comment above them.
    Keys {
        comment: Vec<String>,
        keys: Vec<(String, toml::Value)>,
    },
}

/// The file's opening comment and its tables, in order.
#[derive(Debug)]
struct Parsed {
    header: Vec<String>,
    tables: Vec<Table>,
}

fn parse(text: &str) -> Result<Parsed, String> {
    let lines: Vec<&str> = text.lines().collect();
    let err = |i: usize, what: String| format!("{SOURCE}:{}: {what}", i + 1);
    let comment = |l: &str| {
        l.strip_prefix('#')
            .map(|c| c.strip_prefix(' ').unwrap_or(c).to_string())
    };

    let mut i = 0;
    let mut header = Vec::new();
    while let Some(c) = lines.get(i).and_then(|l| comment(l)) {
        header.push(c);
        i += 1;
    }
    let mut tables = vec![Table::default()];
    let mut pending: Vec<String> = Vec::new();
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.trim().is_empty() {
            if !pending.is_empty() {
                let note = std::mem::take(&mut pending);
                tables.last_mut().unwrap().items.push(Item::Note(note));
            }
            i += 1;
        } else if let Some(c) = comment(line.trim_start()) {
            pending.push(c);
            i += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if name.starts_with('[') || !is_bare_key(name) {
                return Err(err(
                    i,
                    format!("the table header {line} is not supported on the man page"),
                ));
            }
            tables.push(Table {
                name: Some(name.to_string()),
                items: Vec::new(),
            });
            if !pending.is_empty() {
                let note = std::mem::take(&mut pending);
                tables.last_mut().unwrap().items.push(Item::Note(note));
            }
            i += 1;
        } else {
            let mut keys = Vec::new();
            while let Some(line) = lines
                .get(i)
                .filter(|l| !l.trim().is_empty() && !l.starts_with(['#', '[']))
            {
                let (key, _) = line
                    .split_once('=')
                    .ok_or_else(|| err(i, format!("expected `key = value`, found {line:?}")))?;
                let key = key.trim();
                if !is_bare_key(key) {
                    return Err(err(
                        i,
                        format!("the key {key:?} is not a bare key (letters, digits, _ and -)"),
                    ));
                }
                // A value may go on over several lines (an array, say): add lines until it parses.
                let start = i;
                let mut value_text = line.to_string();
                let value = loop {
                    match toml::from_str::<toml::Table>(&value_text) {
                        Ok(mut t) => break t.remove(key).expect("the key just parsed"),
                        Err(e) => match lines.get(i + 1).filter(|l| !l.trim().is_empty()) {
                            Some(next) => {
                                value_text.push('\n');
                                value_text.push_str(next);
                                i += 1;
                            }
                            None => return Err(err(start, format!("cannot parse the value of {key}: {e}"))),
                        },
                    }
                };
                keys.push((key.to_string(), value));
                i += 1;
            }
            if pending.is_empty() {
                return Err(err(
                    i - 1,
                    format!(
                        "{} has no comment above it: say what it does, the man page is made from it",
                        keys[0].0
                    ),
                ));
            }
            let comment = std::mem::take(&mut pending);
            tables.last_mut().unwrap().items.push(Item::Keys { comment, keys });
        }
    }
    if !pending.is_empty() {
        tables.last_mut().unwrap().items.push(Item::Note(pending));
    }
    Ok(Parsed { header, tables })
}

fn is_bare_key(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The heading of a table's section; [`documented_keys`] reads it back.
fn table_heading(name: &str) -> String {
    format!("[{name}] TABLE")
}

/// The page, in roff.
pub fn render(text: &str, meta: &Meta) -> Result<String, String> {
    let parsed = parse(text)?;
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "SHUFFLE-JANITOR.TOML",
            "5",
            &meta.date,
            &meta.source,
            "File Formats Manual",
        ],
    );
    // No hyphenation and a ragged right margin: paths, globs and values stay whole.
    r.control("nh", []);
    r.control("ad", ["l"]);
    r.control("SH", ["NAME"]);
    r.text([roman("shuffle-janitor.toml - configuration file of shuffle-janitor(8)")]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([bold(meta.config_path)]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([
        bold("shuffle-janitor"),
        roman("(8) reads its settings from "),
        bold(meta.config_path),
        roman(" when that file exists, or from the file named with "),
        bold("--config"),
        roman(". The file is TOML."),
    ]);
    // The opening comment's first line names the file, as the SYNOPSIS does.
    comment_text(&mut r, parsed.header.get(1..).unwrap_or_default(), "PP");
    for table in &parsed.tables {
        if table.items.is_empty() {
            continue;
        }
        match &table.name {
            None => r.control("SH", ["KEYS"]),
            Some(name) => r.control("SH", [table_heading(name).as_str()]),
        };
        for item in &table.items {
            match item {
                Item::Note(lines) => comment_text(&mut r, lines, "PP"),
                Item::Keys { comment, keys } => {
                    for (n, (key, value)) in keys.iter().enumerate() {
                        if n > 0 {
                            // Several tags for one description: no space between them.
                            r.control("PD", ["0"]);
                        }
                        r.control("TP", []);
                        r.text([bold(key.as_str()), roman(format!(" = {value}"))]);
                    }
                    if keys.len() > 1 {
                        r.control("PD", []);
                    }
                    comment_text(&mut r, comment, "IP");
                }
            }
        }
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([bold("shuffle-janitor"), roman("(8)")]);
    Ok(r.render())
}

/// Comment lines as roff: paragraphs split at empty lines (started with `.{para}`), runs of
/// indented lines as a list (`term  description`, two spaces or more apart) or as they are.
fn comment_text(r: &mut Roff, lines: &[String], para: &str) {
    for (n, paragraph) in lines
        .split(|l| l.trim().is_empty())
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        if n > 0 || para == "PP" {
            r.control(para, []);
        }
        let mut rest = paragraph;
        while !rest.is_empty() {
            let indented = rest[0].starts_with(char::is_whitespace);
            let len = rest
                .iter()
                .position(|l| l.starts_with(char::is_whitespace) != indented)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(len);
            rest = tail;
            if !indented {
                r.text(inline(&run.join(" ")));
                continue;
            }
            let items = definition_list(run);
            r.control("RS", []);
            match items {
                Some(items) => {
                    let width = items.iter().map(|(t, _)| t.chars().count()).max().unwrap_or(0) + 2;
                    for (term, desc) in items {
                        r.control("TP", [width.to_string().as_str()]);
                        r.text([bold(term)]);
                        r.text(inline(desc));
                    }
                }
                None => {
                    r.control("nf", []);
                    for l in run {
                        r.text([roman(l.trim())]);
                    }
                    r.control("fi", []);
                }
            }
            r.control("RE", []);
        }
    }
}

/// Indented lines that are `term  description`, the descriptions aligned in one column (or a
/// single line with two spaces or more after its term), as (term, description).
fn definition_list(lines: &[String]) -> Option<Vec<(&str, &str)>> {
    let mut column = None;
    let mut items = Vec::new();
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        let (term, rest) = line.trim_start().split_once(char::is_whitespace)?;
        let desc = rest.trim_start();
        let gap = rest.len() - desc.len();
        let start = indent + term.len() + 1 + gap;
        if desc.is_empty() || *column.get_or_insert(start) != start || (lines.len() == 1 && gap < 1) {
            return None;
        }
        items.push((term, desc.trim_end()));
    }
    Some(items)
}

/// The keys the page documents, as `key` and `table.key`, read back from the roff.
#[cfg(test)]
pub fn documented_keys(page: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut table: Option<String> = None;
    let mut tag_next = false;
    for line in page.lines() {
        if let Some(h) = line.strip_prefix(".SH ") {
            let h = h.trim_matches('"');
            table = h
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix("] TABLE"))
                .map(str::to_string);
        } else if line == ".TP" {
            tag_next = true;
        } else if std::mem::take(&mut tag_next)
            && let Some(key) = line.strip_prefix(r"\fB").and_then(|l| l.split_once(r"\fR = "))
        {
            let key = key.0.replace(r"\-", "-");
            keys.push(match &table {
                Some(t) => format!("{t}.{key}"),
                None => key,
            });
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::meta;

    fn shipped() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/shuffle-janitor.toml")).unwrap()
    }

    /// Every key of the effective configuration (what `check-config` prints for the defaults),
    /// as `key` and `table.key`.
    fn effective_keys() -> Vec<String> {
        let defaults = shuffle_janitor::config::RawConfig::default().validate(None).unwrap();
        let table: toml::Table = toml::from_str(&defaults.to_toml()).unwrap();
        let mut keys = Vec::new();
        for (key, value) in table {
            match value {
                toml::Value::Table(t) => keys.extend(t.keys().map(|k| format!("{key}.{k}"))),
                _ => keys.push(key),
            }
        }
        keys
    }

    #[test]
    fn every_key_of_the_effective_config_is_on_the_page_and_no_other() {
        let page = render(&shipped(), &meta()).unwrap();
        let mut documented = documented_keys(&page);
        let mut effective = effective_keys();
        for key in &effective {
            assert!(
                documented.contains(key),
                "{key} is a key of the effective config but shuffle-janitor.toml(5) does not document it: \
                 add it to {SOURCE} with its default and a comment above it"
            );
        }
        documented.sort();
        effective.sort();
        assert_eq!(
            documented, effective,
            "the page documents exactly the effective config's keys"
        );
    }

    #[test]
    fn each_key_is_shown_with_its_value_and_the_comment_above_it() {
        let page = render(&shipped(), &meta()).unwrap();
        assert!(page.contains("\n.SH KEYS\n"), "{page}");
        assert!(
            page.contains("\n.TP\n\\fBmax_age\\fR = \"6h\"\nTTL: a map output not used"),
            "{page}"
        );
        assert!(page.contains("\\fBage_basis\\fR = [\"mtime\", \"atime\"]\n"), "{page}");
        assert!(page.contains("\n.SH \"[watermark] TABLE\"\n"), "{page}");
        // Adjacent keys share the comment above them.
        assert!(
            page.contains("\\fBhigh\\fR = 0.85\n.PD 0\n.TP\n\\fBlow\\fR = 0.75\n.PD\nFractions of a filesystem"),
            "{page}"
        );
        // The aligned list of kinds becomes a list.
        assert!(page.contains(".TP 14\n\\fB\"shuffle\"\\fR\nmap outputs"), "{page}");
        // The opening comment is the description.
        assert!(page.contains("Unknown keys are refused"), "{page}");
    }

    #[test]
    fn new_keys_tables_and_multi_line_values_need_no_change_here() {
        let text = "# Head.\n\n# Where state lives.\nstate_dir = \"/var/lib/x\"\n\n\
                    # Stores.\n[stores]\n# Reap them.\nreap = true\n# Idle for.\nmin_idle = [\n  \"1h\",\n  \"2h\",\n]\n";
        let page = render(text, &meta()).unwrap();
        assert_eq!(documented_keys(&page), ["state_dir", "stores.reap", "stores.min_idle"]);
        assert!(
            page.contains("\\fBmin_idle\\fR = [\"1h\", \"2h\"]\nIdle for.\n"),
            "{page}"
        );
        assert!(page.contains(".SH \"[stores] TABLE\"\n.PP\nStores.\n"), "{page}");
    }

    #[test]
    fn a_key_without_a_comment_is_refused_with_its_line() {
        let e = render("# Head.\n\n# A.\na = 1\n\nb = 2\n", &meta()).unwrap_err();
        assert_eq!(
            e,
            "config/shuffle-janitor.toml:6: b has no comment above it: say what it does, the man page is made from it"
        );
        let e = render("# Head.\n\n# A.\na = [1,\n\nb = 2\n", &meta()).unwrap_err();
        assert!(
            e.starts_with("config/shuffle-janitor.toml:4: cannot parse the value of a"),
            "{e}"
        );
    }
}
