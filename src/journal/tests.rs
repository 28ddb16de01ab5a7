use super::*;

fn st(mtime: Nanos, atime: Nanos, ctime: Nanos) -> FileStat {
    FileStat {
        dev: 1,
        ino: 2,
        size: 3,
        alloc: 4096,
        nlink: 1,
        mtime,
        atime,
        ctime,
    }
}

#[test]
fn evidence_names_the_timestamp_or_the_open_that_made_the_last_use() {
    let a = st(10, 30, 20);
    let b = st(40, 5, 5);
    let basis = [Timestamp::Mtime, Timestamp::Atime];
    assert_eq!(evidence([&a], &basis, Nanos::MIN), (30, Evidence::Atime));
    assert_eq!(evidence([&a, &b], &basis, Nanos::MIN), (40, Evidence::Mtime));
    assert_eq!(evidence([&a], &[Timestamp::Ctime], 0), (20, Evidence::Ctime));
    assert_eq!(evidence([&a], &basis, 31), (31, Evidence::Open));
    // A tie goes to the timestamp: it is on disk for anyone to check.
    assert_eq!(evidence([&a], &basis, 30), (30, Evidence::Atime));
    // Ties between timestamps go to the first listed.
    assert_eq!(
        evidence([&st(7, 7, 7)], &[Timestamp::Atime, Timestamp::Mtime], 0).1,
        Evidence::Atime
    );
}

#[test]
fn rfc3339_is_utc_with_nanoseconds() {
    assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
    assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000000000Z");
}

fn unit<'a>(files: Vec<String>) -> UnitRecord<'a> {
    UnitRecord {
        reason: Reason::Pressure,
        root: Path::new("/data"),
        store: Path::new("/data/blockmgr-x"),
        stem: b"shuffle_0_1_0",
        kind: Kind::Shuffle,
        files,
        last_use: 1_700_000_000_000_000_000,
        evidence: Evidence::Open,
        age_seconds: 7200,
        rule: Rule::Pressure {
            mountpoint: "/data".into(),
            used_before: 0.93,
            high: 0.9,
            low: 0.8,
            rank: Some(3),
        },
    }
}

#[test]
fn a_deleted_line_has_every_field_explain_reads() {
    let files = vec![
        "0c/shuffle_0_1_0.data".to_string(),
        "30/shuffle_0_1_0.index".to_string(),
    ];
    let u = unit(files.clone());
    let v: Value = serde_json::from_str(&deleted_line("9.a.1", 5, By::Daemon, &u, 8192, &files)).unwrap();
    assert_eq!(v["event"], "deleted");
    assert_eq!(v["id"], "9.a.1");
    assert_eq!(v["time_ns"], 5);
    assert_eq!(v["time"], "1970-01-01T00:00:00.000000005Z");
    assert_eq!(v["by"], "daemon");
    assert_eq!(v["trigger"], "pressure");
    assert_eq!(v["store"], "/data/blockmgr-x");
    assert_eq!(v["unit"]["stem"], "shuffle_0_1_0");
    assert_eq!(v["unit"]["kind"], "shuffle");
    assert_eq!(v["unit"]["files"][1], "30/shuffle_0_1_0.index");
    assert_eq!(v["partial"], false);
    assert_eq!(v["bytes_freed"], 8192);
    assert_eq!(v["last_use"], "2023-11-14T22:13:20.000000000Z");
    assert_eq!(v["evidence"], "open");
    assert_eq!(v["age_seconds"], 7200);
    assert_eq!(v["rule"]["name"], "pressure");
    assert_eq!(v["rule"]["used_before"], 0.93);
    assert_eq!(v["rule"]["rank"], 3);
    // One unlink failed half-way: the line says which file is left.
    let v: Value = serde_json::from_str(&deleted_line("i", 5, By::Sweep, &u, 1, &files[..1])).unwrap();
    assert_eq!(v["partial"], true);
    assert_eq!(v["files_kept"][0], "30/shuffle_0_1_0.index");
    assert_eq!(v["by"], "sweep");
}

#[test]
fn a_path_that_is_not_utf8_is_written_not_refused() {
    use std::os::unix::ffi::OsStrExt;
    let store = Path::new(std::ffi::OsStr::from_bytes(b"/data/\xff/blockmgr-x"));
    let mut u = unit(vec!["0c/a.data".into()]);
    u.store = store;
    u.root = store;
    let line = deleted_line("i", 1, By::Daemon, &u, 1, &u.files.clone());
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["store"], "/data/\u{fffd}/blockmgr-x");
    let v: Value = serde_json::from_str(&intent_line("i", 1, store, &u.files)).unwrap();
    assert_eq!(v["store"], "/data/\u{fffd}/blockmgr-x");
}

#[test]
fn rules_read_as_sentences() {
    assert_eq!(
        Rule::Ttl { max_age_seconds: 21600 }.text(),
        "ttl: unused for longer than max_age (6h)"
    );
    let t = unit(vec![]).rule.text();
    assert!(
        t.contains("/data was 93.0% used (high watermark 90.0%)") && t.contains("rank 3"),
        "{t}"
    );
}

#[test]
fn an_intent_without_its_deleted_line_is_unmatched() {
    let files = vec!["0c/a.data".to_string()];
    let s = Path::new("/r/blockmgr-x");
    let lines = [
        intent_line("1.a.1", 1, s, &files),
        deleted_line("1.a.1", 2, By::Daemon, &unit(files.clone()), 1, &files),
        intent_line("1.a.2", 3, s, &files),
        "{\"event\":\"deleted\",\"id\":\"1.a.".to_string(), // cut by the crash
        intent_line("1.a.3", 4, s, &files),
        "{\"event\":\"interrupted\",\"id\":\"1.a.3\"}".to_string(),
    ];
    let left = unmatched_intents(lines.iter().map(String::as_str));
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, "1.a.2");
    assert_eq!(left[0].store, s);
    assert_eq!(left[0].files, files);
}

#[test]
fn a_lookup_keeps_an_intent_only_while_nothing_closes_it_and_skips_broken_lines() {
    let dir = tempfile::tempdir().unwrap();
    let s = Path::new("/data/blockmgr-x");
    let a = vec!["0c/a.data".to_string(), "0d/a.index".to_string()];
    let b = vec!["0e/b.data".to_string()];
    let lines = [
        intent_line("1.a.1", 1, s, &a),
        deleted_line("1.a.1", 2, By::Daemon, &unit(a.clone()), 1, &a[..1]),
        "{\"event\":\"intent\",\"id\":\"1.a.".to_string(), // cut by a full disk
        intent_line("1.a.2", 3, s, &b),
        store_line(
            4,
            By::Daemon,
            &StoreRecord {
                root: Path::new("/data"),
                store: Path::new("/data/blockmgr-y"),
                dirs: 1,
                last_activity: 0,
                min_idle: Duration::ZERO,
            },
        ),
    ];
    std::fs::write(dir.path().join(FILE_NAME), lines.join("\n") + "\n").unwrap();
    let asked = [
        s.join(&a[0]),
        s.join(&a[1]),
        s.join(&b[0]),
        PathBuf::from("/data/blockmgr-y/11/c.data"),
        PathBuf::from("/data/blockmgr-x/0f/d.data"),
    ];
    let refs: Vec<&Path> = asked.iter().map(PathBuf::as_path).collect();
    let l = lookup_many(dir.path(), &refs);
    let events = |i: usize| -> Vec<&str> { l.found[i].iter().map(|f| f.line["event"].as_str().unwrap()).collect() };
    assert_eq!(events(0), ["deleted"], "its intent closed");
    assert!(events(1).is_empty(), "not removed (the unlink failed): not claimed");
    assert_eq!(events(2), ["intent"], "started, never finished");
    assert_eq!(events(3), ["store_removed"]);
    assert!(events(4).is_empty());
    assert_eq!((l.start, l.broken), (Some(1), 1));
}

#[test]
fn the_two_files_stay_under_the_bound_and_the_newest_lines_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), 8192, By::Daemon).unwrap();
    let files = vec!["0c/shuffle_0_1_0.data".to_string()];
    for _ in 0..200 {
        let id = j.intent(Path::new("/data/blockmgr-x"), &files);
        j.deleted(&id, &unit(files.clone()), 1, &files);
    }
    j.flush();
    let size = |n: &str| std::fs::metadata(dir.path().join(n)).map_or(0, |m| m.len());
    assert!(
        size(FILE_NAME) + size(OLD_NAME) <= 8192,
        "{} + {}",
        size(FILE_NAME),
        size(OLD_NAME)
    );
    assert!(size(OLD_NAME) > 0, "rotated");
    let lines: Vec<String> = read_lines(dir.path()).filter_map(Result::ok).collect();
    assert!(lines.last().unwrap().contains(".200\""), "{:?}", lines.last());
    assert!(unmatched_intents(lines.iter().map(String::as_str)).is_empty());
    assert_eq!(j.lost(), 0);
}

#[test]
fn a_journal_root_creates_belongs_to_the_owner_of_state_dir() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(4321), Some(4321)).unwrap();
    let _j = Journal::open(dir.path(), 1 << 20, By::Sweep).unwrap();
    let meta = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (4321, 4321),
        "the daemon's user can append to it"
    );
    assert_eq!(meta.mode() & 0o777, 0o640);
}

#[test]
fn a_symlink_or_fifo_in_place_of_the_journal_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "root:x:0:0::/root:/bin/bash\n").unwrap();
    let before = std::fs::metadata(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join(FILE_NAME)).unwrap();
    assert!(Journal::open(dir.path(), 1 << 20, By::Sweep).is_err());
    let after = std::fs::metadata(&victim).unwrap();
    assert_eq!(
        (after.len(), after.uid()),
        (before.len(), before.uid()),
        "the target is untouched"
    );
    std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
    std::fs::hard_link(&victim, dir.path().join(FILE_NAME)).unwrap();
    assert!(
        Journal::open(dir.path(), 1 << 20, By::Sweep).is_err(),
        "a hard link is refused"
    );
    assert_eq!(std::fs::metadata(&victim).unwrap().len(), before.len());
    std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join(FILE_NAME),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // A FIFO with no reader would block an open for writing; it must not.
    assert!(Journal::open(dir.path(), 1 << 20, By::Sweep).is_err());
}

#[test]
fn a_line_that_is_not_utf8_hides_nothing_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"{\"event\":\"intent\",\"store\":\"/data/caf\xc3\n".to_vec();
    bytes.extend_from_slice(b"{\"event\":\"deleted\"}\n");
    std::fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
    assert_eq!(
        read_lines(dir.path()).collect::<Vec<_>>(),
        vec![Err(()), Ok("{\"event\":\"deleted\"}".to_string())]
    );
}

#[test]
fn a_write_that_fails_is_counted_and_dropped() {
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), 1 << 20, By::Daemon).unwrap();
    // The disk is full: every write fails with ENOSPC.
    j.lock().file = Some(OpenOptions::new().append(true).open("/dev/full").unwrap());
    // (And what is at the path cannot be opened in its place.)
    std::fs::remove_file(j.path()).unwrap();
    std::os::unix::fs::symlink("/dev/full", j.path()).unwrap();
    let files = vec!["0c/x.data".to_string()];
    let id = j.intent(Path::new("/s"), &files);
    j.deleted(&id, &unit(files.clone()), 1, &files);
    j.flush();
    assert_eq!(j.lost(), 2);
    assert!(j.lock().buf.is_empty(), "nothing held in memory");
}

#[test]
fn recover_marks_interrupted_units_with_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("blockmgr-x");
    std::fs::create_dir_all(store.join("0c")).unwrap();
    std::fs::write(store.join("0c/shuffle_0_1_0.index"), b"x").unwrap();
    let files = vec![
        "0c/shuffle_0_1_0.data".to_string(),
        "0c/shuffle_0_1_0.index".to_string(),
    ];
    // A line an earlier process (pid 0: never a shuffle-janitor) wrote before it died.
    std::fs::write(
        dir.path().join(FILE_NAME),
        format!("{}\n", intent_line("0.a.1", 1, &store, &files)),
    )
    .unwrap();
    let j = Journal::open(dir.path(), 1 << 20, By::Daemon).unwrap();
    let found = j.recover();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].gone, vec![files[0].clone()]);
    assert_eq!(found[0].left, vec![files[1].clone()]);
    // Said once: the next start finds it matched.
    assert!(j.recover().is_empty());
    let (hits, start) = lookup(dir.path(), &store.join(&files[0]));
    assert_eq!(start, Some(1));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].line["event"], "interrupted");
}

#[test]
fn a_fifo_in_place_of_the_old_journal_never_hangs_a_reader() {
    // The daemon's start reads the journal (units a crash left in part): a FIFO planted as the
    // rotated file blocked that open for ever, and every `explain`'s.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), "{\"event\":\"deleted\"}\n").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join(OLD_NAME),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let path = dir.path().to_owned();
    std::thread::spawn(move || tx.send(read_lines(&path).collect::<Vec<_>>()).unwrap());
    let lines = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the reader returns");
    assert_eq!(lines, vec![Ok("{\"event\":\"deleted\"}".to_string())]);
}
