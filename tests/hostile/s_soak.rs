//! Scenario 9, soak: a Spark-like churn generator (map outputs written under in-progress names and
//! renamed as Spark commits them, some re-read, others left, stores created and abandoned or
//! removed) beside the daemon at a short interval, the filesystem cycling across `high`. A ledger
//! of every unit's last use proves that nothing used within `max_age` went by TTL and nothing
//! younger than `min_age` went at all; RSS and open fds stay flat (first/last/max reported).
//!
//! `HOSTILE_SOAK_MINUTES` sets the length (CI: 5); `tests/hostile/soak.sh --minutes 60` runs the
//! long one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::kit::*;

pub const ALL: &[Scenario] = &[("soak_spark_churn", soak)];

const MAX_AGE: u64 = 20;
const MIN_AGE: u64 = 5;
/// A unit seen with some of its files, not all, for this long was deleted in part (the daemon
/// unlinks a unit's files within microseconds; the checker looks every 200 ms).
const PARTIAL_FOR: Duration = Duration::from_secs(3);

/// One unit of the ledger.
struct Entry {
    files: Vec<PathBuf>,
    /// Its last use: the commit, then every read.
    last_use: Instant,
    /// Last time it was seen whole (by the checker).
    seen_whole: Instant,
    gone: bool,
    /// When the checker first saw some of its files but not all: a unit's files are unlinked
    /// one by one, so only a unit that stays so is deleted in part.
    partial_since: Option<Instant>,
    /// Its store was removed by the generator (an application ended): not the janitor's doing.
    removed: bool,
}

fn soak(sc: &mut Sc) {
    let minutes: f64 = std::env::var("HOSTILE_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(if sc.full { 60.0 } else { 5.0 });
    let s = Scratch::new();
    let fs = s.join("fs");
    let Some(_m) = Mounted::tmpfs(&fs, "size=64m,nr_inodes=200000") else {
        return sc.skip("needs root to mount a tmpfs that can fill");
    };
    let root = fs.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let body = config_text(
        &[&root],
        &format!(
            "max_age = \"{MAX_AGE}s\"\nmin_age = \"{MIN_AGE}s\"\ninterval = \"2s\"\nstate_dir = {:?}\n[watermark]\nhigh = 0.7\nlow = 0.5\npoll = \"1s\"",
            s.join("state").display().to_string()
        ),
    );
    let mut d = Daemon::start(s.path(), &body);
    let ledger: Arc<Mutex<HashMap<u64, Entry>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    // Generators: executors writing, reading and dying.
    let mut threads = Vec::new();
    for g in 0..2u64 {
        let (ledger, stop, root) = (ledger.clone(), stop.clone(), root.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0x1234 + g);
            let mut id = g << 40;
            let mut stores: Vec<(PathBuf, bool)> = Vec::new(); // (store, alive)
            let mut writes = 0u64;
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if stores.iter().filter(|s| s.1).count() < 2 || rng.below(200) == 0 {
                    let store = if rng.below(2) == 0 {
                        root.join(format!("spark-{g}-{}/{}", rng.below(4), bm(&uuid(&mut rng))))
                    } else {
                        root.join(bm(&uuid(&mut rng)))
                    };
                    stores.push((store, true));
                }
                // An executor dies (its store abandoned), or an application ends (removed).
                if rng.below(150) == 0
                    && let Some(s) = stores.iter_mut().find(|s| s.1)
                {
                    s.1 = false;
                }
                if rng.below(400) == 0 && stores.len() > 3 {
                    let (store, _) = stores.remove(0);
                    let mut l = ledger.lock().unwrap();
                    for e in l.values_mut().filter(|e| e.files[0].starts_with(&store)) {
                        e.removed = true;
                    }
                    drop(l);
                    let _ = std::fs::remove_dir_all(&store);
                }
                let alive: Vec<PathBuf> = stores.iter().filter(|s| s.1).map(|s| s.0.clone()).collect();
                // Write a map output the way Spark commits one.
                let store = rng.pick(&alive).clone();
                id += 1;
                let files = unit_paths(&store, (id >> 8) as u32 & 0xff, id);
                let len = 4096 * (1 + rng.below(64) as usize);
                let mut committed = 0;
                // The unit's last use is its newest mtime, that of its last write: the oracle's
                // clock is read just before it, so it is never later than the janitor's (a clock
                // read after the ledger's lock, which the checker holds while it scans, ran up to
                // tens of ms late on a loaded machine and made a unit 5.0 s old look 4.97 s).
                let mut last_write = Instant::now();
                for (i, f) in files.iter().enumerate() {
                    let tmp = PathBuf::from(format!("{}.{}", f.display(), uuid(&mut rng)));
                    last_write = Instant::now();
                    let written = std::fs::create_dir_all(f.parent().unwrap())
                        .and_then(|()| std::fs::write(&tmp, vec![7u8; if i == 0 { len } else { 64 }]))
                        .and_then(|()| std::fs::rename(&tmp, f));
                    if written.is_err() {
                        let _ = std::fs::remove_file(&tmp);
                        break;
                    }
                    committed += 1;
                }
                if committed < files.len() {
                    // ENOSPC (everything younger than min_age can outgrow the filesystem): the task
                    // failed and, as Spark does, removes what it committed. Not a unit of the ledger.
                    for f in &files[..committed] {
                        let _ = std::fs::remove_file(f);
                    }
                    failed += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                writes += 1;
                ledger.lock().unwrap().insert(
                    id,
                    Entry {
                        files,
                        last_use: last_write,
                        seen_whole: Instant::now(),
                        gone: false,
                        partial_since: None,
                        removed: false,
                    },
                );
                // Re-read some recent outputs (the shuffle service serving them).
                for _ in 0..2 {
                    let pick = {
                        let l = ledger.lock().unwrap();
                        let keys: Vec<u64> = l
                            .iter()
                            .filter(|(_, e)| !e.gone && e.last_use.elapsed() < Duration::from_secs(MAX_AGE * 2))
                            .map(|(k, _)| *k)
                            .take(64)
                            .collect();
                        (!keys.is_empty()).then(|| keys[rng.below(keys.len() as u64) as usize])
                    };
                    let Some(k) = pick else { break };
                    let files = ledger.lock().unwrap()[&k].files.clone();
                    let at = Instant::now();
                    // Opened before the use is recorded: a read that fails found it gone.
                    if files.iter().all(|f| std::fs::read(f).is_ok())
                        && let Some(e) = ledger.lock().unwrap().get_mut(&k)
                    {
                        e.last_use = e.last_use.max(at);
                    }
                }
                std::thread::sleep(Duration::from_millis(20 + rng.below(40)));
            }
            (writes, failed)
        }));
    }
    // Checker: when a unit vanishes, was it allowed to?
    {
        let (ledger, stop, violations) = (ledger.clone(), stop.clone(), violations.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let mut l = ledger.lock().unwrap();
                for e in l.values_mut().filter(|e| !e.gone) {
                    let present = e.files.iter().filter(|f| f.exists()).count();
                    if present == e.files.len() {
                        e.seen_whole = now;
                        e.partial_since = None;
                        continue;
                    }
                    if present > 0 && !e.removed {
                        // Between two unlinks of one deletion, or left in part?
                        let since = *e.partial_since.get_or_insert(now);
                        if now.duration_since(since) < PARTIAL_FOR {
                            continue;
                        }
                        e.gone = true;
                        violations.lock().unwrap().push(format!(
                            "unit deleted in part ({present} of {} left for {:.1}s): {}",
                            e.files.len(),
                            now.duration_since(since).as_secs_f64(),
                            e.files[0].display()
                        ));
                        continue;
                    }
                    e.gone = true;
                    if e.removed {
                        continue;
                    }
                    // Deleted at some time in (seen_whole, now]. Seen whole half a second after its
                    // last use (past any deletion already in flight at that use) and gone before
                    // min_age had passed since: younger than min_age.
                    let seen_after_use = e.seen_whole.saturating_duration_since(e.last_use);
                    let age_at_latest = now.saturating_duration_since(e.last_use);
                    if seen_after_use > Duration::from_millis(500) && age_at_latest < Duration::from_secs(MIN_AGE) {
                        violations.lock().unwrap().push(format!(
                            "deleted {:.1}s after its last use (min_age {MIN_AGE}s): {}",
                            age_at_latest.as_secs_f64(),
                            e.files[0].display()
                        ));
                    }
                }
                // Forget what is long gone (memory stays flat for an hour).
                l.retain(|_, e| !e.gone || e.last_use.elapsed() < Duration::from_secs(MAX_AGE * 4));
                drop(l);
                std::thread::sleep(Duration::from_millis(200));
            }
            (0, 0)
        }));
    }
    // Samples: RSS, fds, usage; the TTL's deletions are checked against the ledger from the log.
    let t = Instant::now();
    let (mut rss, mut fds, mut above) = (Vec::new(), Vec::new(), 0u32);
    let mut samples = 0u32;
    while t.elapsed() < Duration::from_secs_f64(minutes * 60.0) {
        std::thread::sleep(Duration::from_secs(5));
        rss.push(d.rss_kib());
        fds.push(d.fds());
        samples += 1;
        if shuffle_janitor::disk::usage(&fs).map_or(0.0, |u| u.ratio()) >= 0.7 {
            above += 1;
        }
        if !d.alive() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (mut writes, mut failed) = (0, 0);
    for th in threads {
        let (w, f) = th.join().unwrap_or((0, 0));
        writes += w;
        failed += f;
    }
    sc.check(d.alive(), || format!("the daemon died:\n{}", d.log_tail(20)));
    // The checker has stopped: a unit seen in part at its last look, or now, is looked at again
    // after the longest an unlink in flight could take.
    let partial = |e: &Entry| {
        let present = e.files.iter().filter(|f| f.exists()).count();
        !e.gone && !e.removed && present > 0 && present < e.files.len()
    };
    let suspects: Vec<u64> = ledger
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| partial(e))
        .map(|(k, _)| *k)
        .collect();
    if !suspects.is_empty() {
        std::thread::sleep(PARTIAL_FOR);
        let l = ledger.lock().unwrap();
        for e in suspects.iter().filter_map(|k| l.get(k)).filter(|e| partial(e)) {
            violations
                .lock()
                .unwrap()
                .push(format!("unit left in part at the end: {}", e.files[0].display()));
        }
    }
    // TTL: every unit the daemon says it deleted by TTL must be unused for max_age by the ledger.
    let log = d.log_text();
    let ledger = ledger.lock().unwrap();
    let by_path: HashMap<&PathBuf, &Entry> = ledger
        .values()
        .flat_map(|e| e.files.iter().map(move |f| (f, e)))
        .collect();
    let mut ttl = 0;
    for line in log
        .lines()
        .filter(|l| l.contains("reason=ttl") && l.contains(" delete"))
    {
        ttl += 1;
        let Some(path) = line.split("path=").nth(1).and_then(|r| r.split_whitespace().next()) else {
            continue;
        };
        if let Some(e) = by_path.get(&PathBuf::from(path))
            && e.seen_whole.saturating_duration_since(e.last_use) > Duration::from_millis(500)
            && e.last_use.elapsed() < Duration::from_secs(MAX_AGE)
        {
            violations.lock().unwrap().push(format!(
                "TTL took a unit used {:.0}s ago: {path}",
                e.last_use.elapsed().as_secs_f64()
            ));
        }
    }
    for v in violations.lock().unwrap().iter() {
        sc.violation(v);
    }
    let errors = d.metric_sum("shuffle_janitor_errors_total");
    sc.check(errors == 0.0, || format!("{errors} errors counted during the soak"));
    sc.check(above > 0 && (above as usize) < rss.len(), || {
        format!("usage above high in {above} of {} samples: it did not cycle", rss.len())
    });
    let (rss0, rss_last, rss_max) = (
        rss.first().copied().unwrap_or(0),
        rss.last().copied().unwrap_or(0),
        rss.iter().max().copied().unwrap_or(0),
    );
    let (fd0, fd_last, fd_max) = (
        fds.first().copied().unwrap_or(0),
        fds.last().copied().unwrap_or(0),
        fds.iter().max().copied().unwrap_or(0),
    );
    sc.check(rss_last < rss0 * 2 + 8 * 1024, || {
        format!("RSS grew: {rss0} -> {rss_last} KiB")
    });
    sc.check(fd_last <= fd0 + 8, || format!("fds grew: {fd0} -> {fd_last}"));
    d.no_panic(sc);
    let deleted = d.metric_sum("shuffle_janitor_deleted_files_total");
    let _ = d.stop(Duration::from_secs(5));
    sc.iterations = samples as u64;
    sc.judged = writes * 3;
    sc.deletions = deleted as u64;
    sc.note(format!(
        "{minutes} min: {writes} units written ({failed} failed on a full disk), {deleted} files deleted ({ttl} by TTL), above high in {above}/{samples} samples; \
         RSS first/last/max {rss0}/{rss_last}/{rss_max} KiB; fds first/last/max {fd0}/{fd_last}/{fd_max}"
    ));
}
