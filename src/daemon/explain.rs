//! The answers to `plan` and `explain` from the daemon's own view: both run the daemon's sweep
//! ([`crate::sweep::indexed`]) as a dry run at this moment, on its index and the opens its watch
//! saw, so the answer is its decision, not a second copy of the rules. Run on a blocking thread;
//! nothing is deleted and nothing in the index changes but what a sweep's checks find gone.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Config;
use crate::index::Index;
use crate::journal::{lossy, rfc3339};
use crate::policy::{self, Mode, Nanos, Skip, Verdict};
use crate::report::Report;
use crate::sweep::indexed::{IndexedRoot, Probe, Probed, run_probed};
use crate::sweep::{self, Options};

/// A dry run of the daemon's next sweep at this moment.
/// Returns, of the files in `asked`, those it would delete and why.
fn dry_sweep(
    cfg: &Config,
    present: &[IndexedRoot],
    index: &Mutex<Index>,
    probe: Option<&Probe>,
    asked: &[&str],
    cancel: &AtomicBool,
) -> (Report, rustc_hash::FxHashMap<PathBuf, policy::Reason>) {
    let goes = std::sync::Arc::new(Goes {
        asked: asked.iter().map(PathBuf::from).collect(),
        found: Mutex::default(),
    });
    let opts = Options {
        mode: Mode::Sweep,
        dry_run: true,
        list_files: false,
        listing: Some(goes.clone() as std::sync::Arc<dyn crate::report::Listing>),
        opens: None,
        now: None,
    };
    let report = run_probed(cfg, present, index, &opts, cancel, None, probe);
    let found = std::mem::take(&mut *goes.found.lock().unwrap_or_else(|e| e.into_inner()));
    (report, found)
}

/// The dry sweep's candidates that were asked about, with their reasons: only those are kept
/// (all of them, a million files, were held for a few answers, and each answer looked for its
/// path among them, under the index's lock).
#[derive(Debug)]
struct Goes {
    asked: rustc_hash::FxHashSet<PathBuf>,
    found: Mutex<rustc_hash::FxHashMap<PathBuf, policy::Reason>>,
}

impl crate::report::Listing for Goes {
    fn file(&self, c: &crate::report::Candidate) {
        if self.asked.contains(&c.path) {
            self.found
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(c.path.clone(), c.reason);
        }
    }
}

/// Where a file is in the daemon's roots: root number, store, and the unit's stem.
fn locate(present: &[IndexedRoot], path: &Path) -> Result<(u32, PathBuf, Vec<u8>, PathBuf), &'static str> {
    let (n, root) = present
        .iter()
        .filter(|(_, r)| path.starts_with(&r.path))
        .max_by_key(|(_, r)| r.path.as_os_str().len())
        .ok_or("not below any of the daemon's roots: never deleted")?;
    let rel = path.strip_prefix(&root.path).unwrap_or(path);
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let store = rel
        .parent()
        .and_then(Path::parent)
        .filter(|s| s.file_name().and_then(|n| n.to_str()).is_some_and(crate::spark::is_store_name))
        .ok_or("not in a sub-directory of a block store (blockmgr-*/NN/ or merge_manager*/NN/): not Spark's, never deleted")?;
    let block = crate::spark::parse_block_file(name).ok_or("not one of Spark's block file names: never deleted")?;
    Ok((*n, store.to_owned(), block.stem.as_bytes().to_vec(), root.path.clone()))
}

/// `explain PATH...`: for each path, the journal's entries when it is gone, else the daemon's
/// verdict on its unit now. `cancel` stops the dry sweep (the client went away): the answer is
/// then incomplete, and goes nowhere.
pub fn explain(
    cfg: &Config,
    present: &[IndexedRoot],
    index: &Mutex<Index>,
    paths: &[String],
    cancel: &AtomicBool,
) -> Value {
    let mut answers: Vec<Value> = Vec::new();
    // (answer slot, path) of the paths that are gone: the journal is read once for them all.
    let mut gone_at: Vec<(usize, PathBuf)> = Vec::new();
    let mut wanted = Vec::new();
    // (answer slot, root number, store, stem)
    let mut asked: Vec<(usize, u32, PathBuf, Vec<u8>)> = Vec::new();
    for p in paths {
        let path = PathBuf::from(p);
        if !path.is_absolute() {
            answers.push(json!({"path": p, "error": "give an absolute path"}));
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            gone_at.push((answers.len(), path));
            answers.push(Value::Null);
            continue;
        };
        // The directory resolved (roots are canonical), the name itself not: a symlink is
        // explained as the link it is, never as its target.
        let path = canonical_prefix(&path);
        let mut answer = json!({
            "path": lossy(&path),
            "exists": true,
            "mtime": rfc3339(meta.mtime() * 1_000_000_000 + meta.mtime_nsec()),
            "atime": rfc3339(meta.atime() * 1_000_000_000 + meta.atime_nsec()),
            "ctime": rfc3339(meta.ctime() * 1_000_000_000 + meta.ctime_nsec()),
        });
        let located = if meta.is_dir() {
            Err(
                "a directory: explain takes files (a dead block store's removal is in the journal, see status for stores)",
            )
        } else if !meta.is_file() {
            Err("not a regular file (a symlink, a socket...): never deleted, never followed")
        } else {
            locate(present, &path)
        };
        match located {
            Err(why) => {
                answer["verdict"] = json!(if meta.is_dir() { "unknown" } else { "never" });
                answer["why"] = json!(why);
            }
            Ok((n, store, stem, root)) => {
                answer["root"] = json!(lossy(&root));
                answer["store"] = json!(lossy(&root.join(&store)));
                answer["stem"] = json!(String::from_utf8_lossy(&stem));
                wanted.push((n, store.clone(), stem.clone()));
                asked.push((answers.len(), n, store, stem));
            }
        }
        answers.push(answer);
    }
    if !gone_at.is_empty() {
        let paths: Vec<PathBuf> = gone_at.iter().map(|(_, p)| p.clone()).collect();
        for ((slot, _), a) in gone_at.iter().zip(gone_many(cfg, &paths)) {
            answers[*slot] = a;
        }
    }
    if !asked.is_empty() {
        let probe = Probe::new(wanted);
        let asked_paths: Vec<&str> = asked
            .iter()
            .map(|(slot, ..)| answers[*slot]["path"].as_str().unwrap_or_default())
            .collect();
        let (report, goes) = dry_sweep(cfg, present, index, Some(&probe), &asked_paths, cancel);
        let found = probe.found();
        // Under the index's lock only what is read from it (the rest reads /proc and the disk).
        let last_opens: Vec<Option<Nanos>> = {
            let index = index.lock().unwrap_or_else(|e| e.into_inner());
            asked
                .iter()
                .map(|(_, n, store, stem)| {
                    index
                        .find(*n, store)
                        .and_then(|id| index.store(id))
                        .and_then(|s| s.find_unit(stem).map(|u| u.last_open))
                        .filter(|t| *t > Nanos::MIN)
                })
                .collect()
        };
        // (answer slot, its files' (device, inode)) of the units kept open.
        let mut open: Vec<(usize, Vec<(u64, u64)>)> = Vec::new();
        for ((slot, n, store, stem), last_open) in asked.into_iter().zip(last_opens) {
            let answer = &mut answers[slot];
            let path = PathBuf::from(answer["path"].as_str().unwrap_or_default());
            let probed = found.iter().find(|p| p.root == n && p.rel == store && p.stem == stem);
            verdict(cfg, report.now, probed, goes.get(&path).copied(), last_open, answer);
            if let Some(root) = present.iter().find(|(m, _)| *m == n).map(|(_, r)| r) {
                let files: Vec<PathBuf> = probed
                    .map(|p| p.files.iter().map(|f| store.join(f)).collect())
                    .unwrap_or_default();
                if let Some(keys) = details(cfg, root, &files, probed.and_then(|p| p.pressure_rank), answer) {
                    open.push((slot, keys));
                }
            }
        }
        // Who holds each open unit: /proc read once for them all, now (the sweep's scan keeps
        // (device, inode) pairs only), the index's lock let go.
        let all: Vec<(u64, u64)> = open.iter().flat_map(|(_, k)| k.iter().copied()).collect();
        let by_file = crate::open_files::holders_by_file(Path::new("/proc"), &all);
        for (slot, keys) in open {
            let mut by: Vec<&(u32, String)> = keys.iter().filter_map(|k| by_file.get(k)).flatten().collect();
            by.sort();
            by.dedup();
            answers[slot]["open_by"] = json!(
                by.iter()
                    .map(|(pid, comm)| json!({"pid": pid, "command": comm}))
                    .collect::<Vec<_>>()
            );
        }
    }
    json!({ "answers": answers })
}

/// Adds to a kept unit's answer what its reason rests on: which pattern protects it
/// (`protected`), and its place in pressure's order when it is in the pool; for a unit kept
/// `open`, returns its files' (device, inode), whose holders the caller finds for all at once.
/// `files`: the unit's files, relative to the root.
fn details(
    cfg: &Config,
    root: &crate::sweep::Root,
    files: &[PathBuf],
    rank: Option<(u64, u64)>,
    answer: &mut Value,
) -> Option<Vec<(u64, u64)>> {
    if let Some((rank, of)) = rank {
        answer["pressure_rank"] = json!({"rank": rank, "of": of});
    }
    match answer["reason"].as_str() {
        Some("open") => {
            return Some(
                files
                    .iter()
                    .filter_map(|f| std::fs::symlink_metadata(root.path.join(f)).ok())
                    .map(|m| (m.dev(), m.ino()))
                    .collect(),
            );
        }
        Some("protected") => {
            // As the sweep matches: the file and every directory above it, under each of the
            // root's names (its canonical path, and the path as configured).
            let pattern = root.names().find_map(|name| {
                files
                    .iter()
                    .find_map(|f| name.join(f).ancestors().find_map(|a| cfg.protect.matching(a)))
            });
            answer["protect_pattern"] = json!(pattern);
        }
        _ => {}
    }
    None
}

/// The lines of [`details`], for people.
pub fn details_text(a: &Value) -> String {
    let mut out = String::new();
    if let Some(by) = a["open_by"].as_array() {
        let named: Vec<String> = by
            .iter()
            .map(|p| format!("PID {} ({})", p["pid"], p["command"].as_str().unwrap_or("?")))
            .collect();
        out.push_str(&if named.is_empty() {
            "  open by: no process now (closed since the sweep looked, or one /proc does not let us read)\n".to_owned()
        } else {
            format!("  open by: {}\n", named.join(", "))
        });
    }
    if let Some(p) = a.get("protect_pattern") {
        out.push_str(&format!(
            "  protected by the pattern {}\n",
            p.as_str()
                .map_or_else(|| "(none found now)".to_owned(), |p| format!("{p:?}"))
        ));
    }
    if let Some(r) = a.get("pressure_rank") {
        out.push_str(&format!(
            "  under pressure: taken {} of {} on its filesystem (least recently used first)\n",
            r["rank"], r["of"]
        ));
    }
    out
}

/// Fills `answer` with the verdict the sweep gave the unit.
fn verdict(
    cfg: &Config,
    now: Nanos,
    probed: Option<&Probed>,
    goes: Option<policy::Reason>,
    last_open: Option<Nanos>,
    answer: &mut Value,
) {
    let at = |t: Nanos| rfc3339(t);
    let after = |t: Nanos, d: Duration| t.saturating_add(policy::nanos(d));
    let Some(p) = probed else {
        answer["verdict"] = json!("unknown");
        answer["why"] = json!(
            "the daemon's index has no such unit (its store not walked yet, or not a unit the watch saw): ask again after the next walk"
        );
        return;
    };
    answer["files"] = json!(p.files);
    let Some(facts) = p.facts else {
        answer["verdict"] = json!("kept");
        answer["reason"] = json!(Skip::Incomplete.as_str());
        answer["why"] = json!(
            "its store could not be listed whole (a sub-directory unreadable, or moved): none of its units is known whole, so all are kept"
        );
        return;
    };
    answer["kind"] = json!(facts.kind.as_str());
    answer["last_use_ns"] = json!(facts.last_use);
    answer["last_use"] = json!(at(facts.last_use));
    let evidence = if last_open.is_some_and(|o| o >= facts.last_use) {
        "an open seen by the daemon's watch"
    } else {
        "the newest age_basis timestamp of its files"
    };
    answer["evidence"] = json!(evidence);
    if let Some(o) = last_open {
        answer["last_open_seen"] = json!(at(o));
    }
    answer["age_seconds"] = json!(policy::age_seconds(now, facts.last_use));
    let ttl_at = after(facts.last_use.max(facts.unseen_until), cfg.max_age);
    if let Some(reason) = goes {
        answer["verdict"] = json!("goes");
        answer["reason"] = json!(reason.as_str());
        answer["why"] = json!(match reason {
            policy::Reason::Ttl => format!(
                "goes at the next sweep: unused for longer than max_age ({})",
                humantime::format_duration(cfg.max_age)
            ),
            _ => "goes at the next sweep: its filesystem is above the high watermark, least recently used first"
                .to_owned(),
        });
        if cfg.dry_run {
            // The rules say it goes; the daemon, running dry, deletes nothing.
            answer["daemon_dry_run"] = json!(true);
            answer["why"] = json!(format!(
                "{} (but the daemon runs dry: it deletes nothing)",
                answer["why"].as_str().unwrap_or_default()
            ));
        }
        return;
    }
    let (reason, why, eligible): (&str, String, Option<Nanos>) = match (p.verdict, p.verdict_at_check) {
        (_, Some(Verdict::Keep(Skip::Open))) => (
            "open",
            "kept: a process holds one of its files open or mapped (the /proc scan before deleting found it)".into(),
            None,
        ),
        (_, Some(_)) => (
            "changed",
            "kept: it changed (or was used) since it was judged; judged again at the next sweep".into(),
            None,
        ),
        (Some(Verdict::Exempt), _) => (
            "kind",
            format!("never deleted: its kind ({}) is not in kinds", facts.kind.as_str()),
            None,
        ),
        (Some(Verdict::Keep(Skip::Protected)), _) => (
            "protected",
            "never deleted: a protect pattern matches it (see check-config)".into(),
            None,
        ),
        (Some(Verdict::Keep(Skip::Young)), _) => {
            let t = after(facts.last_use, cfg.min_age);
            (
                "young",
                format!(
                    "kept: young, used less than min_age ({}) ago; nothing may take it before {}",
                    humantime::format_duration(cfg.min_age),
                    at(t)
                ),
                Some(ttl_at),
            )
        }
        (Some(Verdict::Keep(Skip::Open)), _) => (
            "open",
            "kept: the daemon could not read /proc, so every unit counts as open".into(),
            None,
        ),
        (Some(Verdict::Unwatched), _) => (
            "unwatched",
            format!(
                "kept from the TTL: it may have been used while the daemon could not see it (not watched, or events \
                 lost); the TTL may take it from {}, pressure before",
                at(ttl_at)
            ),
            Some(ttl_at),
        ),
        (Some(Verdict::Eligible), _) => (
            "recent",
            format!(
                "kept: used within max_age ({}); the TTL takes it from {}, pressure may take it before (least \
                 recently used first)",
                humantime::format_duration(cfg.max_age),
                at(ttl_at)
            ),
            Some(ttl_at),
        ),
        (Some(Verdict::Delete(_)), _) | (Some(Verdict::Keep(_)), _) | (None, None) => (
            "other",
            "kept by this sweep (see the daemon's log at debug)".into(),
            None,
        ),
    };
    answer["verdict"] = json!(if reason == "kind" || reason == "protected" {
        "never"
    } else {
        "kept"
    });
    answer["reason"] = json!(reason);
    answer["why"] = json!(why);
    if let Some(t) = eligible {
        answer["eligible_at"] = json!(at(t));
    }
}

/// Paths that are not there: what the journal says of each, read once for all of them.
pub fn gone_many(cfg: &Config, paths: &[PathBuf]) -> Vec<Value> {
    // The journal names canonical paths: resolve what is left of each (a symlinked root).
    let paths: Vec<PathBuf> = paths.iter().map(|p| canonical_prefix(p)).collect();
    let Some(dir) = cfg.state_dir.as_deref().filter(|_| cfg.journal_max_bytes > 0) else {
        return paths
            .iter()
            .map(|path| {
                json!({"path": lossy(path), "exists": false, "verdict": "unknown",
                       "why": "not there, and no deletion journal is kept (state_dir or journal_max_mib): cannot say who deleted it"})
            })
            .collect();
    };
    // "Not deleted" holds only if every deletion made it into the journal: not when there is
    // no journal file (the daemon could not open it: a FIFO or a directory in its place, a
    // read-only state_dir) nor when this process could not write some of its lines (a full
    // disk). Then the journal's silence proves nothing.
    let file = dir.join(crate::journal::FILE_NAME);
    let missing = match std::fs::symlink_metadata(&file) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some(format!("{} is not a regular file", file.display())),
        Err(e) => Some(format!("{}: {e}", file.display())),
    };
    let lost = crate::journal::lines_lost();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let l = crate::journal::lookup_many(dir, &refs);
    paths
        .iter()
        .zip(l.found)
        .map(|(path, found)| {
            let mut answer = if found.is_empty()
                && let Some(why) = &missing
            {
                json!({"path": lossy(path), "exists": false, "verdict": "unknown",
                       "why": format!("not there, and no deletion journal to read ({why}): shuffle-janitor may have \
                                       deleted it without journaling it (see its log: cannot open the deletion journal)")})
            } else if found.is_empty() && lost > 0 {
                json!({"path": lossy(path), "exists": false, "verdict": "unknown", "journal_lines_lost": lost,
                       "why": format!("not in the journal, but the daemon could not write {lost} of its lines (a full \
                                       disk?): it may have deleted it unjournaled")})
            } else if found.is_empty() {
                let since = l
                    .start
                    .map_or_else(|| "its journal began (it is empty)".to_owned(), rfc3339);
                // A line that could not be read may have been this path's deletion: the journal's
                // silence then proves nothing, and "not deleted" would be a guess.
                let (verdict, why) = if l.broken > 0 {
                    ("unknown", format!("not found in what can be read of the journal since {since}"))
                } else {
                    ("not_deleted", format!("not deleted by shuffle-janitor since {since}"))
                };
                json!({"path": lossy(path), "exists": false, "verdict": verdict, "why": why,
                       "journal_start": l.start.map(rfc3339)})
            } else {
                gone_answer(path, found.into_iter().map(|f| f.line).collect())
            };
            if l.broken > 0 {
                // A line cut by a full disk or a crash is skipped, never half-read: say that it was.
                answer["journal_broken_lines"] = json!(l.broken);
                if let Some(why) = answer["why"].as_str() {
                    answer["why"] = json!(format!(
                        "{why} ({} line(s) of the journal were cut, by a full disk or a crash, and could not be read)",
                        l.broken
                    ));
                }
            }
            answer
        })
        .collect()
}

/// The answer for a gone path the journal names: `deleted` when a line says it was, else
/// `deletion_started` (only an intent, never closed: the deletion was cut, or still runs).
fn gone_answer(path: &Path, mut entries: Vec<Value>) -> Value {
    let finished = entries.iter().any(|l| l["event"] != "intent");
    for l in entries.iter_mut().filter(|l| l["event"] == "intent") {
        let alive = l["id"].as_str().is_some_and(crate::journal::intent_writer_alive);
        l["writer_running"] = json!(alive);
    }
    if finished {
        return json!({"path": lossy(path), "exists": false, "verdict": "deleted", "journal": entries});
    }
    let t = entries.last().map(|l| l["time"].clone()).unwrap_or_default();
    json!({"path": lossy(path), "exists": false, "verdict": "deletion_started", "journal": entries,
           "why": format!("shuffle-janitor started deleting its unit at {} and did not record the end (killed \
                           between its unlinks, or still at it): it may be gone by it, in part; the daemon's next \
                           start marks it interrupted", t.as_str().unwrap_or("-"))})
}

/// The time of the next interval sweep, for `status`.
pub fn next_sweep_wall(next: tokio::time::Instant) -> Value {
    let wait = next.saturating_duration_since(tokio::time::Instant::now());
    json!(rfc3339(sweep::now().saturating_add(policy::nanos(wait))))
}

/// `path` with its longest existing proper ancestor canonicalized (the last name as given).
fn canonical_prefix(path: &Path) -> PathBuf {
    for a in path.ancestors().skip(1) {
        if let Ok(c) = a.canonicalize() {
            return c.join(path.strip_prefix(a).unwrap_or(Path::new("")));
        }
    }
    path.to_owned()
}
