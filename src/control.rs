//! The daemon's control socket: a Unix socket (`control_socket`, by default under the unit's
//! `RuntimeDirectory=`) through which `status`, `plan` and `explain` ask the running daemon for its
//! own view. Read-only: no request changes anything. One JSON request line per connection, one
//! JSON response, then the connection is closed; the request is bounded in size
//! ([`MAX_REQUEST`]) and time ([`REQUEST_TIMEOUT`]), the answer in time ([`ANSWER_STALL`],
//! [`ANSWER_TIMEOUT`]): a client that stops reading is dropped, never waited on. The socket is
//! the owner's only (0600): its answers name files, which the metrics port never does.
//!
//! This module is the protocol and the client; [`crate::daemon::control`] serves it.

use std::io::{self, BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The largest request read (a request names a few paths).
pub const MAX_REQUEST: u64 = 64 << 10;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client waits for the answer: `plan` and `explain` judge every unit of the index
/// and check the chosen ones on disk, as a sweep does.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// The daemon drops a client that lets this long pass without taking any of its answer (it
/// asked and does not read: `plan | less` left on one page), and one that has not taken all of
/// it within [`ANSWER_TIMEOUT`] (reading a byte at a time): a client never holds the daemon.
pub const ANSWER_STALL: Duration = Duration::from_secs(10);

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "lowercase")]
pub enum Request {
    /// The daemon's state at a glance.
    Status,
    /// The candidates of the next sweep.
    Plan,
    /// The daemon's verdict on each path.
    Explain { paths: Vec<String> },
}

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing listens there (no daemon, or one without the socket).
    #[error("no daemon answers on {path} ({source})")]
    NoDaemon { path: String, source: io::Error },
    #[error("the daemon's answer on {path} could not be read: {source}")]
    Io { path: String, source: io::Error },
    #[error("the daemon refused the request: {0}")]
    Refused(String),
}

/// Sends `req` to the daemon listening on `socket`; returns the connection to read its answer.
fn send(socket: &Path, req: &Request) -> Result<UnixStream, AskError> {
    let path = socket.display().to_string();
    let mut stream = UnixStream::connect(socket).map_err(|source| AskError::NoDaemon {
        path: path.clone(),
        source,
    })?;
    let io_err = |source| AskError::Io {
        path: path.clone(),
        source,
    };
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(io_err)?;
    let mut line = serde_json::to_vec(req).expect("a request serialises");
    line.push(b'\n');
    stream.write_all(&line).map_err(io_err)?;
    Ok(stream)
}

/// Sends `req` to the daemon listening on `socket` and returns its answer.
pub fn ask(socket: &Path, req: &Request) -> Result<Value, AskError> {
    let stream = send(socket, req)?;
    let mut answer = String::new();
    io::BufReader::new(stream.take(256 << 20))
        .read_line(&mut answer)
        .map_err(|source| AskError::Io {
            path: socket.display().to_string(),
            source,
        })?;
    refused(serde_json::from_str(&answer).map_err(|e| AskError::Io {
        path: socket.display().to_string(),
        source: io::Error::other(e),
    })?)
}

fn refused(v: Value) -> Result<Value, AskError> {
    match v.get("error").and_then(Value::as_str) {
        Some(e) => Err(AskError::Refused(e.to_owned())),
        None => Ok(v),
    }
}

/// Parses one request line (at most [`MAX_REQUEST`] bytes).
pub fn parse(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| {
        format!(
            "not a request ({e}): send one JSON line, {{\"request\": \"status\"}}, {{\"request\": \"plan\"}} or \
             {{\"request\": \"explain\", \"paths\": [...]}}"
        )
    })
}

/// What a client command printed and whether it got the daemon's answer.
pub struct Output {
    pub text: String,
    /// The daemon answered (else the text says so, and what could be said without it).
    pub answered: bool,
}

fn socket_of(cfg: &crate::config::Config) -> Result<&Path, AskError> {
    cfg.control_socket.as_deref().ok_or_else(|| AskError::NoDaemon {
        path: "(none)".into(),
        source: io::Error::other("control_socket is \"\" in the config"),
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0))
}

/// `shuffle-janitor status`.
pub fn status(cfg: &crate::config::Config, json: bool) -> Output {
    match socket_of(cfg).and_then(|p| ask(p, &Request::Status)) {
        Ok(v) if json => Output {
            text: format!("{v}\n"),
            answered: true,
        },
        Ok(v) => Output {
            text: status_text(&v),
            answered: true,
        },
        Err(e) => Output {
            text: format!(
                "{e}\nno running daemon's state to show; `systemctl status shuffle-janitor` says whether it runs, \
                 `shuffle-janitor report` what is on disk now\n"
            ),
            answered: false,
        },
    }
}

fn status_text(v: &Value) -> String {
    let mut out = format!(
        "shuffle-janitor {} (revision {}), pid {}, running since {}\nconfig: {} (loaded {}){}\n",
        s(&v["version"]),
        s(&v["revision"]),
        s(&v["pid"]),
        s(&v["started"]),
        s(&v["config"]),
        s(&v["config_loaded"]),
        if v["dry_run"] == true {
            "\nDRY RUN: nothing is deleted"
        } else {
            ""
        }
    );
    out.push_str("roots:\n");
    for r in v["roots"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {} on {}: {} used (high {}, low {}){}\n",
            s(&r["path"]),
            s(&r["mountpoint"]),
            pct(&r["used_ratio"]),
            pct(&r["high"]),
            pct(&r["low"]),
            if r["above_high"] == true { ", ABOVE HIGH" } else { "" }
        ));
    }
    let i = &v["index"];
    out.push_str(&format!(
        "index: {} units, {} bytes, oldest last use {}{}\n",
        s(&i["units"]),
        s(&i["bytes"]),
        s(&i["oldest_last_use"]),
        if i["walked"] == true {
            ""
        } else {
            " (first walk not finished)"
        }
    ));
    let w = &v["watch"];
    let drift = &w["index_drift"];
    out.push_str(&format!(
        "watch: inotify {}, {} directories watched{}, {} unwatched (walked at every interval), {} overflows; \
         index drift found by walks: {} missing, {} extra, {} stale\n",
        if w["inotify"] == true { "on" } else { "OFF" },
        s(&w["watched_dirs"]),
        if w["watch_limit_reached"] == true {
            " (LIMIT REACHED: raise fs.inotify.max_user_watches)"
        } else {
            ""
        },
        s(&w["unwatched_dirs"]),
        s(&w["overflows"]),
        s(&drift["missing"]),
        s(&drift["extra"]),
        s(&drift["stale"]),
    ));
    out.push_str(&clock_text(&v["clock"]));
    out.push_str(&stores_text(&v["stores"]));
    out.push_str(&format!(
        "control socket: {} clients dropped for being too slow (to ask, or to read the answer)\n",
        s(&v["control"]["clients_dropped"])
    ));
    out.push_str(&format!(
        "journal: {} ({} lines lost)\n",
        s(&v["journal"]["path"]),
        s(&v["journal"]["lines_lost"])
    ));
    out.push_str("last sweeps:\n");
    for sw in v["last_sweeps"].as_array().into_iter().flatten() {
        let kept: Vec<String> = sw["kept_files"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!(
            "  {} {}{}: {} {} files ({} bytes), {} stores removed; kept: {}{}\n",
            s(&sw["ended"]),
            s(&sw["trigger"]),
            if sw["purge"] == true { " (purge)" } else { "" },
            if sw["dry_run"] == true {
                "would delete"
            } else {
                "deleted"
            },
            s(&sw["deleted_files"]),
            s(&sw["deleted_bytes"]),
            s(&sw["stores_removed"]),
            if kept.is_empty() {
                "none".into()
            } else {
                kept.join(", ")
            },
            if sw["cancelled"] == true {
                " (cancelled: runs again)"
            } else {
                ""
            }
        ));
    }
    out.push_str(&format!(
        "next interval sweep: {}{}\n",
        s(&v["next_sweep"]),
        if v["sweep_running"] == true {
            " (a sweep is running)"
        } else {
            ""
        }
    ));
    out
}

fn clock_text(c: &Value) -> String {
    let mut out = format!("clock: {} wall-clock steps seen", s(&c["steps"]));
    if let Some(l) = c["last_step"].as_object() {
        out.push_str(&format!(", the last at {} by {} s", s(&l["at"]), s(&l["by_seconds"])));
    }
    if c["held_until"].is_string() {
        out.push_str(&format!(
            "; ages measured on the clock carried on from before it ({} s behind the wall clock) until {}",
            s(&c["rules_behind_seconds"]),
            s(&c["held_until"])
        ));
    }
    out + "\n"
}

fn stores_text(st: &Value) -> String {
    if st.is_null() {
        return "stores: not judged yet (the first interval sweep judges them)\n".into();
    }
    let mut out = format!(
        "stores, as the sweep at {} judged them{}:\n",
        s(&st["judged"]),
        match (st["liveness_unknown"].as_str(), st["dry_run"] == true) {
            (Some(why), _) => format!(" (which are live is unknown: {why})"),
            (None, true) => format!(" (dry run: {} dead ones would have been removed)", s(&st["removed"])),
            (None, false) => format!(" ({} dead ones removed)", s(&st["removed"])),
        }
    );
    for r in st["roots"].as_array().into_iter().flatten() {
        let kept: Vec<String> = r["idle_kept"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!(
            "  {}: {} live, {} idle{}, {} dead\n",
            s(&r["root"]),
            s(&r["live"]),
            s(&r["idle"]),
            if kept.is_empty() {
                String::new()
            } else {
                format!(" (kept: {})", kept.join(", "))
            },
            s(&r["dead"])
        ));
    }
    out
}

/// `shuffle-janitor plan`, written to `out` as the daemon streams it (a plan of a million files
/// is never held): in JSON, the daemon's lines as they come (the shape of `sweep --dry-run
/// --format json`); in text, a line per file and the summary last. `Err` is an error writing
/// `out`; `Ok(Err(text))` says why there is no plan, or no whole one.
pub fn plan(cfg: &crate::config::Config, json: bool, out: &mut dyn Write) -> io::Result<Result<(), String>> {
    let stream = match socket_of(cfg).and_then(|p| send(p, &Request::Plan)) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Err(format!(
                "{e}\nno running daemon to ask; what a one-shot sweep would delete now: shuffle-janitor sweep --dry-run\n"
            )));
        }
    };
    let mut reader = io::BufReader::new(stream);
    let mut line = String::new();
    let mut files = 0u64;
    let mut next = |line: &mut String| -> Result<bool, String> {
        line.clear();
        reader
            .read_line(line)
            .map(|n| n > 0)
            .map_err(|e| format!("the daemon's plan could not be read: {e}\n"))
    };
    let ended = |files| {
        Err(format!(
            "the daemon's plan ended early, after {files} files: ask again\n"
        ))
    };
    match next(&mut line) {
        Ok(true) => {}
        Ok(false) => return Ok(ended(0)),
        Err(e) => return Ok(Err(e)),
    }
    // `{"candidates":[` alone opens a list; anything else is the whole answer on one line.
    if line.trim_end() != r#"{"candidates":["# {
        let v: Value = match serde_json::from_str(&line)
            .map_err(|e| e.to_string())
            .and_then(|v| refused(v).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => return Ok(Err(format!("{e}\n"))),
        };
        if json {
            out.write_all(line.as_bytes())?;
        } else {
            out.write_all(plan_summary(&v, 0).as_bytes())?;
        }
        return Ok(Ok(()));
    }
    if json {
        out.write_all(line.as_bytes())?;
    }
    loop {
        match next(&mut line) {
            Ok(true) => {}
            Ok(false) => return Ok(ended(files)),
            Err(e) => return Ok(Err(e)),
        }
        let t = line.trim_end();
        if let Some(rest) = t.strip_prefix(']') {
            if json {
                out.write_all(line.as_bytes())?;
            } else {
                let summary: Value =
                    serde_json::from_str(&format!("{{{}", rest.trim_start_matches(','))).unwrap_or_default();
                out.write_all(plan_summary(&summary, files).as_bytes())?;
            }
            return Ok(Ok(()));
        }
        files += 1;
        if json {
            out.write_all(line.as_bytes())?;
            continue;
        }
        let Ok(c) = serde_json::from_str::<Value>(t.trim_end_matches(',')) else {
            return Ok(Err(format!("the daemon's plan has a line that is not a file: {t}\n")));
        };
        writeln!(
            out,
            "{}\t{}\t{}\t{}s\t{}",
            s(&c["reason"]),
            s(&c["kind"]),
            s(&c["bytes"]),
            s(&c["age_seconds"]),
            s(&c["path"])
        )?;
    }
}

/// The plan's last line, in text.
fn plan_summary(v: &Value, files: u64) -> String {
    let kept: Vec<String> = v["kept_files"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64() != Some(0))
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!(
        "# the next sweep at {} would delete {files} files ({} bytes){}; keeps: {}\n",
        s(&v["now"]),
        s(&v["would_free_bytes"]),
        if v["daemon_dry_run"] == true {
            " (the daemon runs dry: it deletes nothing)"
        } else {
            ""
        },
        if kept.is_empty() {
            "none".into()
        } else {
            kept.join(", ")
        }
    )
}

/// `shuffle-janitor explain PATH...`: the daemon's answer, or without it, the journal's and the
/// files' own timestamps.
pub fn explain(cfg: &crate::config::Config, paths: &[std::path::PathBuf], json: bool) -> Output {
    let paths: Vec<std::path::PathBuf> = paths
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    // A name that is not UTF-8 cannot be sent to the daemon (JSON), and made lossy it names
    // another path: one that is not there, "not deleted" said of a file that is.
    let asked: Vec<String> = paths.iter().filter_map(|p| p.to_str().map(str::to_owned)).collect();
    let (mut v, answered, note) = match socket_of(cfg).and_then(|p| ask_explain(p, &asked)) {
        Ok(v) => (v, true, None),
        Err(e) => (
            offline(cfg, &asked),
            false,
            Some(format!(
                "{e}: answering from the journal and the files' own timestamps (the daemon's view, the opens its \
                 watch saw and the rest of each unit, is not available)"
            )),
        ),
    };
    if asked.len() < paths.len() {
        let mut got = std::mem::take(&mut v["answers"])
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter();
        let all: Vec<Value> = paths
            .iter()
            .map(|p| match p.to_str() {
                Some(_) => got.next().unwrap_or_default(),
                None => json!({"path": crate::journal::lossy(p), "error":
                    "its name is not UTF-8: explain cannot ask about it (Spark's names always are; the journal \
                     writes such names with U+FFFD: grep it there)"}),
            })
            .collect();
        v["answers"] = json!(all);
    }
    if json {
        let mut v = v;
        v["daemon"] = json!(answered);
        return Output {
            text: format!("{v}\n"),
            answered,
        };
    }
    let mut out = note.map_or_else(String::new, |n| format!("# {n}\n"));
    for a in v["answers"].as_array().into_iter().flatten() {
        out.push_str(&explain_text(a));
    }
    Output { text: out, answered }
}

/// Asks the daemon to explain `paths`, in as many requests as it takes for each to stay under
/// [`MAX_REQUEST`] (about 600 paths a request): one request of them all was refused past it, and
/// `explain` of a few thousand paths then answered without the daemon's view.
fn ask_explain(socket: &Path, paths: &[String]) -> Result<Value, AskError> {
    let mut answers: Vec<Value> = Vec::with_capacity(paths.len());
    for batch in request_batches(paths, MAX_REQUEST as usize - 1) {
        let v = ask(socket, &Request::Explain { paths: batch.to_vec() })?;
        match v["answers"].as_array() {
            Some(a) if a.len() == batch.len() => answers.extend(a.iter().cloned()),
            _ => {
                return Err(AskError::Io {
                    path: socket.display().to_string(),
                    source: io::Error::other(format!("an answer without one entry per path asked: {v}")),
                });
            }
        }
    }
    Ok(json!({ "answers": answers }))
}

/// `paths` cut into runs whose explain request is at most `max` bytes (a path too long alone is
/// a run alone: the daemon refuses it, saying so).
fn request_batches(paths: &[String], max: usize) -> Vec<&[String]> {
    let empty = serde_json::to_vec(&Request::Explain { paths: Vec::new() }).map_or(0, |v| v.len());
    let mut out = Vec::new();
    let (mut start, mut size) = (0, empty);
    for (i, p) in paths.iter().enumerate() {
        // The path as a JSON string, and its comma.
        let n = serde_json::to_string(p).map_or(0, |s| s.len()) + 1;
        if i > start && size + n > max {
            out.push(&paths[start..i]);
            (start, size) = (i, empty);
        }
        size += n;
    }
    if start < paths.len() {
        out.push(&paths[start..]);
    }
    out
}

fn explain_text(a: &Value) -> String {
    let mut out = format!("{}\n", s(&a["path"]));
    if let Some(e) = a.get("error") {
        out.push_str(&format!("  error: {}\n", s(e)));
        return out;
    }
    if a["verdict"] == "deleted" || a["verdict"] == "deletion_started" {
        for l in a["journal"].as_array().into_iter().flatten() {
            match l["event"].as_str() {
                Some("deleted") => {
                    let rule: Option<crate::journal::Rule> = serde_json::from_value(l["rule"].clone()).ok();
                    out.push_str(&format!(
                        "  deleted at {} by the {} ({}): {}\n  unit {} ({}): {}; {} bytes freed{}\n  last use {} (evidence: {}), {} s before\n",
                        s(&l["time"]),
                        s(&l["by"]),
                        s(&l["trigger"]),
                        rule.map_or_else(|| s(&l["rule"]), |r| r.text()),
                        s(&l["unit"]["stem"]),
                        s(&l["unit"]["kind"]),
                        l["unit"]["files"]
                            .as_array()
                            .map(|f| f.iter().map(s).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default(),
                        s(&l["bytes_freed"]),
                        if l["partial"] == true { " (in part: an unlink failed)" } else { "" },
                        s(&l["last_use"]),
                        s(&l["evidence"]),
                        s(&l["age_seconds"]),
                    ));
                }
                Some("store_removed") => out.push_str(&format!(
                    "  its block store {} was removed as dead at {} by the {}: {}\n",
                    s(&l["store"]),
                    s(&l["time"]),
                    s(&l["by"]),
                    serde_json::from_value::<crate::journal::Rule>(l["rule"].clone())
                        .map_or_else(|_| s(&l["rule"]), |r| r.text())
                )),
                Some("intent") => out.push_str(&format!(
                    "  its deletion was started at {} (unit files: {}) and never recorded as finished: {}; it may \
                     be partial\n",
                    s(&l["time"]),
                    s(&l["files"]),
                    if l["writer_running"] == true {
                        "the process doing it still runs"
                    } else {
                        "the process was killed between its unlinks (the daemon's next start marks it interrupted)"
                    }
                )),
                Some("interrupted") => out.push_str(&format!(
                    "  deleted at {} by a deletion a crash interrupted (its unit's files left: {})\n",
                    s(&l["intent_time"]),
                    s(&l["files_left"])
                )),
                _ => {}
            }
        }
        return out;
    }
    let (verdict, why) = (s(&a["verdict"]), s(&a["why"]));
    // `why` mostly opens with its verdict already ("kept: ...", "goes at ..."): say it once.
    if why.starts_with(verdict.as_str()) {
        out.push_str(&format!("  {why}\n"));
    } else {
        out.push_str(&format!("  {verdict}: {why}\n"));
    }
    if a.get("stem").is_some() && a.get("kind").is_some() {
        out.push_str(&format!(
            "  unit {} ({}) in {}: {}\n",
            s(&a["stem"]),
            s(&a["kind"]),
            s(&a["store"]),
            a["files"]
                .as_array()
                .map(|f| f.iter().map(s).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ));
    }
    if a.get("last_use").is_some() {
        out.push_str(&format!(
            "  last use {} (evidence: {}), {} s ago\n",
            s(&a["last_use"]),
            s(&a["evidence"]),
            s(&a["age_seconds"])
        ));
    }
    if let Some(t) = a.get("eligible_at") {
        out.push_str(&format!("  eligible for the TTL from {}\n", s(t)));
    }
    out.push_str(&crate::daemon::explain::details_text(a));
    out
}

/// Without a daemon: the journal for paths that are gone, the file's own timestamps for the others.
fn offline(cfg: &crate::config::Config, paths: &[String]) -> Value {
    use crate::policy::{Nanos, nanos};
    use std::os::unix::fs::MetadataExt;
    let now = crate::sweep::now();
    // The journal is read once for all the paths that are gone (it is tens of MiB).
    let metas: Vec<Option<std::fs::Metadata>> = paths.iter().map(|p| std::fs::symlink_metadata(p).ok()).collect();
    let gone: Vec<std::path::PathBuf> = paths
        .iter()
        .zip(&metas)
        .filter(|(_, m)| m.is_none())
        .map(|(p, _)| p.into())
        .collect();
    let mut gone = crate::daemon::explain::gone_many(cfg, &gone).into_iter();
    let answers: Vec<Value> = paths
        .iter()
        .zip(metas)
        .map(|(p, m)| {
            let path = Path::new(p);
            let Some(m) = m else {
                return gone.next().unwrap_or_default();
            };
            let ns = |s: i64, n: i64| -> Nanos { s * 1_000_000_000 + n };
            let stat = crate::disk::FileStat {
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                alloc: m.blocks() * 512,
                nlink: m.nlink(),
                mtime: ns(m.mtime(), m.mtime_nsec()),
                atime: ns(m.atime(), m.atime_nsec()),
                ctime: ns(m.ctime(), m.ctime_nsec()),
            };
            let (last_use, evidence) = crate::journal::evidence([&stat], &cfg.age_basis, Nanos::MIN);
            let ttl_at = last_use.saturating_add(nanos(cfg.max_age));
            let why = if now > ttl_at {
                format!(
                    "its own timestamps are past max_age ({}): a sweep would delete it unless it is not Spark's, \
                     protected, open, or another file of its unit is newer",
                    humantime::format_duration(cfg.max_age)
                )
            } else {
                "its own timestamps are within max_age: the TTL would keep it".to_owned()
            };
            json!({
                "path": crate::journal::lossy(path),
                "exists": true,
                "verdict": "unknown",
                "why": why,
                "last_use": crate::journal::rfc3339(last_use),
                "evidence": evidence,
                "age_seconds": crate::policy::age_seconds(now, last_use),
                "eligible_at": crate::journal::rfc3339(ttl_at),
            })
        })
        .collect();
    json!({ "answers": answers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object_each() {
        assert_eq!(parse(br#"{"request":"status"}"#), Ok(Request::Status));
        assert_eq!(parse(br#"{"request":"plan"}"#), Ok(Request::Plan));
        assert_eq!(
            parse(br#"{"request":"explain","paths":["/a"]}"#),
            Ok(Request::Explain {
                paths: vec!["/a".into()]
            })
        );
        assert!(parse(br#"{"request":"delete"}"#).unwrap_err().contains("one JSON line"));
        assert_eq!(
            serde_json::to_string(&Request::Explain { paths: vec![] }).unwrap(),
            r#"{"request":"explain","paths":[]}"#
        );
    }

    #[test]
    fn an_explain_of_many_paths_is_asked_in_requests_under_the_bound() {
        let paths: Vec<String> = (0..5000)
            .map(|i| format!("/data/blockmgr-x/0c/shuffle_{i}_\"0_0.data"))
            .collect();
        let batches = request_batches(&paths, MAX_REQUEST as usize - 1);
        assert!(batches.len() > 1);
        assert_eq!(batches.concat(), paths, "every path, once, in order");
        for b in &batches {
            let req = serde_json::to_vec(&Request::Explain { paths: b.to_vec() }).unwrap();
            assert!(req.len() < MAX_REQUEST as usize, "{}", req.len());
        }
        assert!(request_batches(&[], 100).is_empty());
        let long = vec!["x".repeat(200)];
        assert_eq!(
            request_batches(&long, 100),
            vec![&long[..]],
            "alone, and refused by the daemon"
        );
    }
}
