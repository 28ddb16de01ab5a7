//! The documentation against the code, so neither drifts: every relative link of the README and
//! of `docs/` names a file that exists (and a heading that exists, for `#anchor`s into Markdown);
//! every page of `docs/` is linked from the README; every config key the binary knows, every
//! metric the code names, every skip reason, error operation and reason an idle store is kept
//! appears in the documents. The lists come from the code itself (`check-config`'s effective
//! settings, the `shuffle_janitor_*` names in `src/`, the enums' `ALL`), so a new one fails here
//! until it is documented.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use shuffle_janitor::policy::{IdleReason, Skip};
use shuffle_janitor::report::Op;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README and every page of `docs/`, by path relative to the repository.
fn documents() -> Vec<(String, String)> {
    let mut docs = vec![("README.md".to_string(), read(&root().join("README.md")))];
    let mut pages: Vec<_> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    for p in pages {
        let rel = p.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
        docs.push((rel, read(&p)));
    }
    docs
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut in_code = false;
    text.lines().filter(move |l| {
        if l.starts_with("```") {
            in_code = !in_code;
            return false;
        }
        !in_code
    })
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// The targets of the inline links `[text](target)` of a document.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_names_a_file_and_heading_that_exist() {
    let mut broken = Vec::new();
    for (doc, text) in documents() {
        let dir = root().join(&doc).parent().unwrap().to_path_buf();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                root().join(&doc)
            } else {
                dir.join(file)
            };
            if !path.exists() {
                broken.push(format!("{doc}: ({target}): no such file {}", path.display()));
                continue;
            }
            if let Some(anchor) = anchor
                && path.extension().is_some_and(|x| x == "md")
                && !anchors(&read(&path)).contains(anchor)
            {
                broken.push(format!("{doc}: ({target}): no heading with that anchor"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_docs_page_is_linked_from_the_readme() {
    let readme = read(&root().join("README.md"));
    let linked: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|t| t.split('#').next().unwrap().to_string())
        .collect();
    let missing: Vec<_> = documents()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with("docs/") && !linked.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "docs pages the README does not link to: {missing:?}"
    );
}

/// Every key of the effective config, `table.key` for the keys of a table, as `check-config`
/// prints them.
fn config_keys() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["check-config", "--config", "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut table = String::new();
    let mut keys = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        if let Some(t) = line.strip_prefix('[') {
            table = t.trim_end_matches(']').to_string();
        } else if let Some((key, _)) = line.split_once(" = ") {
            keys.push(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    assert!(keys.len() > 15, "check-config printed only {keys:?}");
    keys
}

/// The names that have no row of their own (`| `name` |`) in the README's tables.
fn without_a_readme_row(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let readme = read(&root().join("README.md"));
    names
        .into_iter()
        .filter(|n| !readme.contains(&format!("| `{n}` |")))
        .collect()
}

#[test]
fn every_config_key_is_in_the_readme_table() {
    let missing = without_a_readme_row(config_keys());
    assert!(
        missing.is_empty(),
        "config keys without a row in the README's table: {missing:?}"
    );
}

/// Every `shuffle_janitor_*` name written as a string in `src/`.
fn metric_names() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = read(&p);
                for (i, _) in text.match_indices("\"shuffle_janitor_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    out.insert(name);
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(&root().join("src"), &mut names);
    assert!(names.len() > 20, "found only {names:?}");
    names
}

#[test]
fn every_metric_is_in_the_readme_table() {
    let missing = without_a_readme_row(metric_names());
    assert!(
        missing.is_empty(),
        "metrics without a row in the README's table: {missing:?}"
    );
}

#[test]
fn every_skip_reason_error_op_and_idle_reason_is_defined_in_a_table() {
    let page = read(&root().join("docs/troubleshooting.md"));
    let rows: Vec<&str> = prose(&page).filter(|l| l.starts_with("| `")).collect();
    let defined = |value: &str| rows.iter().filter(|r| r.starts_with(&format!("| `{value}` |"))).count();
    let mut wrong = Vec::new();
    let values = Skip::ALL
        .iter()
        .map(|s| s.as_str())
        .chain(Op::ALL.iter().map(|o| o.as_str()))
        .chain(IdleReason::ALL.iter().map(|r| r.as_str()));
    for value in values {
        if defined(value) != 1 {
            wrong.push(format!("`{value}`: {} rows", defined(value)));
        }
    }
    assert!(
        wrong.is_empty(),
        "each skip reason, error op and idle reason needs exactly one row in docs/troubleshooting.md: {wrong:?}"
    );
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(slug(" Debian package (apt, dpkg)"), "debian-package-apt-dpkg");
    assert_eq!(slug(" `sweep` against `find`"), "sweep-against-find");
    assert_eq!(
        slug(" What it does, and what it does not"),
        "what-it-does-and-what-it-does-not"
    );
}
