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
fn dry_sweep(cfg: &Config, present: &[IndexedRoot], index: &Mutex<Index>, probe: Option<&Probe>) -> Report {
    let opts = Options {
        mode: Mode::Sweep,
        dry_run: true,
        list_files: true,
        listing: None,
        opens: None,
        now: None,
    };
    run_probed(cfg, present, index, &opts, &AtomicBool::new(false), None, probe)
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
/// verdict on its unit now.
pub fn explain(cfg: &Config, present: &[IndexedRoot], index: &Mutex<Index>, paths: &[String]) -> Value {
    let mut answers: Vec<Value> = Vec::new();
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
            answers.push(gone(cfg, &path));
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
    if !asked.is_empty() {
        let probe = Probe::new(wanted);
        let report = dry_sweep(cfg, present, index, Some(&probe));
        let found = probe.found();
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        for (slot, n, store, stem) in asked {
            let answer = &mut answers[slot];
            let path = PathBuf::from(answer["path"].as_str().unwrap_or_default());
            let last_open = index
                .find(n, &store)
                .and_then(|id| index.store(id))
                .and_then(|s| s.find_unit(&stem).map(|u| u.last_open))
                .filter(|t| *t > Nanos::MIN);
            let probed = found.iter().find(|p| p.root == n && p.rel == store && p.stem == stem);
            let goes = report.candidates.iter().find(|c| c.path == path);
            verdict(cfg, report.now, probed, goes.map(|c| c.reason), last_open, answer);
        }
    }
    json!({ "answers": answers })
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

/// A path that is not there: what the journal says of it.
pub fn gone(cfg: &Config, path: &Path) -> Value {
    // The journal names canonical paths: resolve what is left of this one (a symlinked root).
    let path = &canonical_prefix(path);
    let Some(dir) = cfg.state_dir.as_deref().filter(|_| cfg.journal_max_bytes > 0) else {
        return json!({"path": lossy(path), "exists": false, "verdict": "unknown",
                      "why": "not there, and no deletion journal is kept (state_dir or journal_max_mib): cannot say who deleted it"});
    };
    let (found, start) = crate::journal::lookup(dir, path);
    if found.is_empty() {
        let since = start.map_or_else(|| "its journal began (it is empty)".to_owned(), rfc3339);
        return json!({"path": lossy(path), "exists": false, "verdict": "not_deleted",
                      "why": format!("not deleted by shuffle-janitor since {since}"),
                      "journal_start": start.map(rfc3339)});
    }
    let entries: Vec<Value> = found.into_iter().map(|f| f.line).collect();
    json!({"path": lossy(path), "exists": false, "verdict": "deleted", "journal": entries})
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
