//! Just enough Markdown to lift a section of the README into a man page: its paragraphs, its one
//! table, and inline code spans and links. The man page's EXIT STATUS, SIGNALS, FILES, HTTP
//! ENDPOINTS and METRICS come from the README this way, so the README stays their one source
//! (and tests/deploy.sh checks its metrics table against a live daemon).

use roff::{Inline, bold, roman};

/// What follows a heading, up to the next heading: paragraphs before its table, the table, and
/// paragraphs after it. Code blocks are left out.
#[derive(Debug, Default)]
pub struct Section {
    pub before: Vec<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub after: Vec<String>,
}

impl Section {
    /// The index of the column headed `name`, or an error naming the section.
    pub fn column(&self, heading: &str, name: &str) -> Result<usize, String> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "README.md or docs/install.md: the table under '{heading}' has no column '{name}' (it has {:?}); \
                 the man page reads it from there",
                self.header
            )
        })
    }
}

/// The section under the line `heading` (for example `### Signals`), which must hold a table.
pub fn section(doc: &str, heading: &str) -> Result<Section, String> {
    let mut lines = doc.lines().skip_while(|l| *l != heading);
    if lines.next().is_none() {
        return Err(format!(
            "README.md or docs/install.md: no heading '{heading}'; the man page takes a section from there"
        ));
    }
    let mut s = Section::default();
    let mut paragraph = String::new();
    let mut in_code = false;
    let mut table_done = false;
    // A paragraph ends at a blank line or a table; it goes before or after the table.
    fn flush(paragraph: &mut String, s: &mut Section) {
        if !paragraph.is_empty() {
            let p = std::mem::take(paragraph);
            if s.header.is_empty() {
                s.before.push(p)
            } else {
                s.after.push(p)
            }
        }
    }
    for line in lines {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            break;
        }
        let table_seen = !s.header.is_empty();
        if let Some(row) = line.strip_prefix('|') {
            if table_done {
                return Err(format!(
                    "README.md or docs/install.md: more than one table under '{heading}'"
                ));
            }
            flush(&mut paragraph, &mut s);
            let mut cells = split_row(row);
            if s.header.is_empty() {
                s.header = cells;
            } else if !cells
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| "-: ".contains(ch)))
            {
                cells.resize(s.header.len().max(cells.len()), String::new());
                s.rows.push(cells);
            }
        } else if line.trim().is_empty() {
            table_done |= table_seen;
            flush(&mut paragraph, &mut s);
        } else {
            table_done |= table_seen;
            if !paragraph.is_empty() {
                paragraph.push(' ');
            }
            paragraph.push_str(line.trim());
        }
    }
    flush(&mut paragraph, &mut s);
    if s.rows.is_empty() {
        return Err(format!(
            "README.md or docs/install.md: no table under '{heading}'; the man page takes its rows from there"
        ));
    }
    Ok(s)
}

/// The cells of a table row (without its leading `|`), split at unescaped `|`, trimmed, with
/// `\|` turned back into `|`.
fn split_row(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().unwrap().push('|');
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    if cells.last().is_some_and(|c| c.trim().is_empty()) {
        cells.pop();
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// Markdown inline text as roff: code spans in bold, links as their text, the rest as it is.
pub fn inline(md: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = md;
    while let Some(i) = rest.find(['`', '[']) {
        let (head, tail) = rest.split_at(i);
        text.push_str(head);
        if let Some(code) = tail.strip_prefix('`')
            && let Some(end) = code.find('`')
        {
            if !text.is_empty() {
                out.push(roman(std::mem::take(&mut text)));
            }
            out.push(bold(&code[..end]));
            rest = &code[end + 1..];
        } else if let Some((label, after)) = link(tail) {
            if !text.is_empty() {
                out.push(roman(std::mem::take(&mut text)));
            }
            out.extend(inline(label));
            rest = after;
        } else {
            text.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(roman(text));
    }
    out
}

/// `[label](target)rest` -> (label, rest).
fn link(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix('[')?;
    let close = s.find("](")?;
    let after = &s[close + 2..];
    let end = after.find(')')?;
    Some((&s[..close], &after[end + 1..]))
}

/// The text of `inlines` without formatting, for tests and messages.
#[cfg(test)]
pub fn plain(inlines: &[Inline]) -> String {
    inlines
        .iter()
        .map(|i| match i {
            Inline::Roman(t) | Inline::Italic(t) | Inline::Bold(t) => t.as_str(),
            Inline::LineBreak => "\n",
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# Title

### Codes

Before the table,
in two lines.

```sh
# not a heading
```

| code | meaning |
| ---: | --- |
| 0 | done, `a\\|b` |
| 1 | see [`x.md`](x.md) |
| 3 |

After it.

### Next

| a | b |
| --- | --- |
| other | table |
";

    #[test]
    fn a_section_is_its_paragraphs_and_its_table_up_to_the_next_heading() {
        let s = section(DOC, "### Codes").unwrap();
        assert_eq!(s.before, ["Before the table, in two lines."]);
        assert_eq!(s.header, ["code", "meaning"]);
        assert_eq!(s.rows, [["0", "done, `a|b`"], ["1", "see [`x.md`](x.md)"], ["3", ""]]);
        assert_eq!(s.after, ["After it."]);
        assert_eq!(s.column("### Codes", "meaning").unwrap(), 1);
        let e = s.column("### Codes", "signal").unwrap_err();
        assert!(e.contains("no column 'signal'"), "{e}");
    }

    #[test]
    fn a_missing_heading_or_table_is_an_error_that_names_it() {
        let e = section(DOC, "### Signals").unwrap_err();
        assert!(e.contains("no heading '### Signals'"), "{e}");
        let e = section(DOC, "# Title").unwrap_err();
        assert!(e.contains("no table under '# Title'"), "{e}");
    }

    #[test]
    fn code_spans_are_bold_and_links_keep_their_text() {
        let i = inline("run `kill -HUP PID`, see [`deploy/x.json`](deploy/x.json) or [the unit](u) [sic");
        assert_eq!(plain(&i), "run kill -HUP PID, see deploy/x.json or the unit [sic");
        assert!(matches!(&i[1], Inline::Bold(t) if t == "kill -HUP PID"));
        assert!(matches!(&i[3], Inline::Bold(t) if t == "deploy/x.json"));
        assert!(matches!(&i[4], Inline::Roman(t) if t == " or "));
    }
}
