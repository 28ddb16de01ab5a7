//! End to end: the `shuffle-janitor` binary on temporary Spark local dirs with back-dated files.

mod common;

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use common::*;

const BM: &str = "blockmgr-8ef70c7d-f7b0-46e5-a2b0-ccbc7824c13e";
const UUID: &str = "d4b709a2-9f76-464d-83d2-3da158a06ef0";

/// A small store with one map output per situation.
struct Tree {
    old: Vec<PathBuf>,
    fresh: Vec<PathBuf>,
    half_fresh: Vec<PathBuf>,
    old_temp: PathBuf,
    unknown: Vec<PathBuf>,
}

fn tree(env: &TestEnv) -> Tree {
    let old = vec![
        env.file(&format!("{BM}/04/shuffle_0_8_0.data"), 3000, 8 * HOUR),
        env.file(&format!("{BM}/08/shuffle_0_8_0.index"), 72, 8 * HOUR),
        env.file(&format!("{BM}/25/shuffle_0_8_0.checksum.ADLER32"), 40, 8 * HOUR),
        env.file(&format!("{BM}/04/shuffle_0_8_0.data.{UUID}"), 100, 9 * HOUR),
    ];
    let fresh = vec![
        env.file(&format!("{BM}/06/shuffle_1_2_0.data"), 3000, 5 * MIN),
        env.file(&format!("{BM}/0a/shuffle_1_2_0.index"), 72, 5 * MIN),
    ];
    // Data written long ago, index rewritten recently: the unit's last use is recent.
    let half_fresh = vec![
        env.file(&format!("{BM}/0c/shuffle_2_19_0.data"), 3000, 8 * HOUR),
        env.file(&format!("{BM}/11/shuffle_2_19_0.index"), 72, 30 * MIN),
    ];
    let old_temp = env.file(
        &format!("{BM}/15/temp_shuffle_3e906d6e-e8fd-485b-86ee-c7aaff2629b5"),
        500,
        8 * HOUR,
    );
    let unknown = vec![
        env.file(&format!("{BM}/15/rdd_1_0"), 100, 8 * HOUR), // kind not allowed by default
        env.file(&format!("{BM}/15/core.1234"), 100, 8 * HOUR),
        env.file(&format!("{BM}/15/shuffle_0_9_0.data.tmp"), 100, 8 * HOUR),
        env.file(&format!("{BM}/shuffle_0_10_0.data"), 100, 8 * HOUR), // not in an NN dir
        env.file("shuffle_0_11_0.data", 100, 8 * HOUR),                // loose in the root
        env.file(&format!("other/{BM}/00/shuffle_0_12_0.data"), 100, 8 * HOUR), // not a Spark layout
        env.file("spark-1/pyspark-2/tmp60mx6sg0", 100, 8 * HOUR),
    ];
    Tree {
        old,
        fresh,
        half_fresh,
        old_temp,
        unknown,
    }
}

#[test]
fn dry_run_deletes_nothing_and_lists_exactly_what_a_real_run_deletes() {
    let env = TestEnv::new();
    let t = tree(&env);
    let cfg = env.config("");
    let before = files_below(&env.root());
    let blocks: u64 = t.old.iter().chain([&t.old_temp]).map(|p| allocated(p)).sum();

    let (code, dry) = env.sweep_json(&cfg, &["--dry-run"]);
    assert_eq!(code, 0, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(files_below(&env.root()), before, "a dry run deletes nothing");
    let listed = candidate_paths(&dry);
    let mut expected: Vec<PathBuf> = t.old.iter().cloned().chain([t.old_temp.clone()]).collect();
    expected.sort();
    assert_eq!(listed, expected);

    let (code, real) = env.sweep_json(&cfg, &[]);
    assert_eq!(code, 0, "{real}");
    assert_eq!(
        candidate_paths(&real),
        listed,
        "the real run deletes what the dry run listed"
    );
    assert_eq!(real["deleted_files"], 5);
    // Reclaimed bytes are the blocks the deletions freed, as `du` counts them.
    assert_eq!(dry["deleted_bytes"], blocks);
    assert_eq!(real["deleted_bytes"], blocks);
    assert_eq!(real["errors"], 0);
    for c in real["candidates"].as_array().unwrap() {
        assert_eq!(c["reason"], "ttl");
        assert!(c["age_seconds"].as_u64().unwrap() >= 8 * 3600, "{c}");
    }
    let after = files_below(&env.root());
    let gone: Vec<PathBuf> = before.iter().filter(|p| !after.contains(p)).cloned().collect();
    assert_eq!(gone, listed);
}

#[test]
fn ttl_deletes_old_units_whole_and_keeps_fresh_ones() {
    let env = TestEnv::new();
    let t = tree(&env);
    let out = env.run(&["sweep", "--config", env.config("").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ttl        shuffle"), "{text}");
    for p in t.old.iter().chain([&t.old_temp]) {
        assert!(!p.exists(), "{} should be gone", p.display());
    }
    for p in t.fresh.iter().chain(&t.half_fresh).chain(&t.unknown) {
        assert!(p.exists(), "{} should be kept", p.display());
    }
}

#[test]
fn min_age_holds_even_for_a_purge() {
    let env = TestEnv::new();
    let t = tree(&env);
    // A purge to a low watermark no real filesystem is under: everything allowed must go.
    let cfg = env.config("[watermark]\nhigh = 0.5\nlow = 0.000001");
    let (code, report) = env.sweep_json(&cfg, &["--purge"]);
    assert_eq!(code, 0, "{report}");
    for p in t.fresh.iter().chain(&t.unknown) {
        assert!(
            p.exists(),
            "{} is younger than min_age or not Spark's: kept",
            p.display()
        );
    }
    for p in t.half_fresh.iter().chain(&t.old) {
        assert!(!p.exists(), "{} is older than min_age: purged", p.display());
    }
    let reasons: Vec<&str> = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"manual") && reasons.contains(&"ttl"), "{reasons:?}");
    assert_eq!(report["skipped"]["young"], 2);
    assert!(report["filesystems"][0]["shortfall"].is_object(), "{report}");
}

#[test]
fn protected_and_symlinked_files_survive() {
    let env = TestEnv::new();
    let outside = env.outside();
    let victim = outside.join("shuffle_5_5_0.data");
    write_aged(&victim, 100, 9 * HOUR);
    let victim_dir = outside.join("nn");
    let victim_in_dir = victim_dir.join("shuffle_6_6_0.index");
    write_aged(&victim_in_dir, 100, 9 * HOUR);
    // A symlink with a Spark name; a whole NN directory that is a symlink (in a store of its
    // own: Spark would write through it, so that store's units are not known whole and it is
    // left alone entirely); a store that is a symlink.
    let link = env.root().join(format!("{BM}/0d/shuffle_5_5_0.data"));
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    symlink(&victim, &link).unwrap();
    let linked_nn_store = "blockmgr-0ddc1b5e-7b52-4a0b-9d55-5e38a0f9f1a1";
    let beside_linked_nn = env.file(&format!("{linked_nn_store}/0f/shuffle_6_6_0.data"), 100, 9 * HOUR);
    symlink(&victim_dir, env.root().join(format!("{linked_nn_store}/0e"))).unwrap();
    symlink(&victim_dir, env.root().join(format!("{BM}-link"))).unwrap();
    let protected = env.file(
        &format!("spark-pin/executor-1/{BM}/01/shuffle_7_7_0.data"),
        100,
        9 * HOUR,
    );
    let protected_file = env.file(&format!("{BM}/02/shuffle_8_8_0.index"), 100, 9 * HOUR);
    let doomed = env.file(&format!("{BM}/03/shuffle_9_9_0.index"), 100, 9 * HOUR);
    let root = env.root().display().to_string();
    let cfg = env.config(&format!("protect = [\"{root}/spark-pin\", \"{root}/*/*/shuffle_8_*\"]"));

    let (code, report) = env.sweep_json(&cfg, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(candidate_paths(&report), std::slice::from_ref(&doomed));
    assert!(!doomed.exists());
    for p in [&victim, &victim_in_dir, &protected, &protected_file, &beside_linked_nn] {
        assert!(p.exists(), "{} must survive", p.display());
    }
    assert!(link.symlink_metadata().is_ok(), "a symlink is never deleted");
    assert_eq!(report["skipped"]["protected"], 2);
    assert_eq!(report["skipped"]["incomplete"], 1, "{report}");
}

#[test]
fn files_on_another_filesystem_survive() {
    let env = TestEnv::new();
    let Some(_mnt) = Mounted::tmpfs(&env.root().join(format!("{BM}/1f")), "size=1m") else {
        eprintln!("SKIPPED files_on_another_filesystem_survive: mounting a tmpfs needs root");
        return;
    };
    let other_fs = env.file(&format!("{BM}/1f/shuffle_3_3_0.data"), 100, 9 * HOUR);
    // The other half of that unit, and a whole unit, in the same store on the root's disk:
    // with one of the store's NN directories on another filesystem, no unit of it is known
    // whole, so nothing of the store goes (a unit split over 1f and 20 would lose its half).
    let other_half = env.file(&format!("{BM}/20/shuffle_3_3_0.index"), 100, 9 * HOUR);
    let same_store = env.file(&format!("{BM}/20/shuffle_4_4_0.data"), 100, 9 * HOUR);
    let other_store = env.file("blockmgr-2/20/shuffle_4_4_0.data", 100, 9 * HOUR);
    let (code, report) = env.sweep_json(&env.config(""), &[]);
    assert_eq!(code, 0, "{report}");
    assert!(other_fs.exists(), "a file on another filesystem is never deleted");
    assert!(other_half.exists() && same_store.exists(), "{report}");
    assert_eq!(report["skipped"]["incomplete"], 2, "{report}");
    assert!(!other_store.exists(), "the sweep goes on in other stores");
}

#[test]
fn layouts_of_standalone_and_yarn_are_swept() {
    let env = TestEnv::new();
    let standalone = env.file(
        &format!("spark-0d7c7cd6-70e7-4627-8195-dcbaba50fa9d/executor-595b98f6-1747-4ac5-ace8-57c288df367f/{BM}/0f/shuffle_0_1_0.index"),
        10,
        9 * HOUR,
    );
    let yarn = env.file(
        &format!("usercache/alice/appcache/application_1700000000000_0001/{BM}/0f/shuffle_0_1_0.index"),
        10,
        9 * HOUR,
    );
    let k8s = env.file(&format!("spark-0d7c/{BM}/0f/shuffle_0_1_0.index"), 10, 9 * HOUR);
    let (code, report) = env.sweep_json(&env.config(""), &[]);
    assert_eq!(code, 0, "{report}");
    let mut expected = vec![standalone, yarn, k8s];
    expected.sort();
    assert_eq!(candidate_paths(&report), expected);
}

#[test]
fn bad_configs_exit_2_name_the_key_and_delete_nothing() {
    let env = TestEnv::new();
    let t = tree(&env);
    let root = env.root().display().to_string();
    for (text, needle) in [
        (
            format!("roots = [{root:?}]\n[watermark]\nlow = 0.9"),
            "watermark.low (0.9) must be below watermark.high (0.85)",
        ),
        (format!("roots = [{root:?}]\nmax_aeg = \"1h\""), "max_aeg"),
        (
            "roots = [\"relative/dir\"]".to_string(),
            "roots (\"relative/dir\") must be an absolute path",
        ),
        (
            "roots = [\"/etc\"]".to_string(),
            "roots (\"/etc\") is inside a system directory",
        ),
        (
            format!("roots = [{root:?}]\nmin_age = \"7h\""),
            "min_age (\"7h\") must not be longer than max_age",
        ),
        (
            format!("roots = [{root:?}]\nmax_age = \"soon\""),
            "max_age (\"soon\") is not a duration",
        ),
    ] {
        let cfg = env.dir.path().join("bad.toml");
        std::fs::write(&cfg, &text).unwrap();
        for cmd in ["sweep", "check-config", "report"] {
            let out = env.run(&[cmd, "--config", cfg.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} with {text}: {stderr}");
            assert!(stderr.contains(needle), "{cmd} with {text}: {stderr}");
            assert!(stderr.contains(cfg.to_str().unwrap()), "names the file: {stderr}");
        }
    }
    let out = env.run(&[
        "sweep",
        "--config",
        env.dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml: cannot read the config file"));
    let out = env.run(&["sweep", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    for p in t.old.iter().chain(&t.fresh) {
        assert!(p.exists(), "{} must survive a bad config", p.display());
    }
}

#[test]
fn a_root_that_does_not_exist_yet_is_reported_not_fatal() {
    let env = TestEnv::new();
    let old = env.file(&format!("{BM}/00/shuffle_0_0_0.data"), 10, 9 * HOUR);
    let missing = env.dir.path().join("not-mounted-yet");
    let cfg = env.write_config(
        "c.toml",
        &format!(
            "roots = [{:?}, {:?}]",
            missing.display().to_string(),
            env.root().display().to_string()
        ),
    );
    let (code, report) = env.sweep_json(&cfg, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(!old.exists());
    let roots = report["roots"].as_array().unwrap();
    assert!(
        roots
            .iter()
            .any(|r| r["path"] == missing.to_str().unwrap() && r["present"] == false),
        "{report}"
    );
}

#[test]
fn check_config_prints_the_effective_settings_and_report_inventories() {
    let env = TestEnv::new();
    let _t = tree(&env);
    let cfg = env.config("max_age = \"2h\"");
    let out = env.run(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max_age = \"2h\""), "{text}");
    assert!(text.contains("min_age = \"15m\""), "{text}");
    // The defaults but for what the tests set (own_state: watermarks out of a host disk's reach).
    assert!(text.contains("interval = \"10m\""), "{text}");
    assert!(text.contains("high = 1.0") || text.contains("high = 1\n"), "{text}");

    let before = files_below(&env.root());
    let out = env.run(&["report", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shuffle"), "{text}");
    assert!(text.contains("a sweep now would reclaim 5 files"), "{text}");
    let out = env.run(&["report", "--format", "json", "--config", cfg.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shuffle = &json["roots"][0]["kinds"]["shuffle"];
    assert_eq!(shuffle["files"], 8, "{json}");
    assert_eq!(json["deleted_files"], 5);
    assert_eq!(files_below(&env.root()), before, "report deletes nothing");
}

#[test]
fn an_undeletable_file_exits_1_and_the_sweep_goes_on() {
    let env = TestEnv::new();
    let stuck = env.file(&format!("{BM}/00/shuffle_0_0_0.data"), 10, 9 * HOUR);
    let other = env.file(&format!("{BM}/01/shuffle_0_1_0.data"), 10, 9 * HOUR);
    let Some(_unset) = Chattr::set(&stuck, "i", "an_undeletable_file_exits_1") else {
        return;
    };
    let (code, report) = env.sweep_json(&env.config(""), &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["errors_by_op"]["unlink"], 1, "{report}");
    assert!(stuck.exists());
    assert!(!other.exists(), "the sweep went on after the error");
}

#[test]
fn a_unit_with_one_undeletable_file_is_kept_whole() {
    let env = TestEnv::new();
    let data = env.file(&format!("{BM}/0c/shuffle_2_5_0.data"), 10, 9 * HOUR);
    let index = env.file(&format!("{BM}/30/shuffle_2_5_0.index"), 10, 9 * HOUR);
    let Some(_unset) = Chattr::set(&index, "i", "a_unit_with_one_undeletable_file") else {
        return;
    };
    let (code, report) = env.sweep_json(&env.config(""), &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["errors_by_op"]["unlink"], 1, "{report}");
    assert!(index.exists());
    assert!(data.exists(), "a .data without its .index is worse than both: {report}");
    assert_eq!(report["deleted_files"], 0, "{report}");
}

#[test]
fn protect_holds_through_a_symlinked_root_and_above_the_root() {
    let env = TestEnv::new();
    let via_link = env.file(&format!("{BM}/01/shuffle_1_1_0.data"), 100, 9 * HOUR);
    let unprotected = env.file(&format!("{BM}/02/shuffle_2_2_0.data"), 100, 9 * HOUR);
    // The operator names the root through a symlink and writes protect globs against that name.
    let link = env.dir.path().join("link");
    symlink(env.root(), &link).unwrap();
    let link_s = link.display().to_string();
    let cfg = env.write_config(
        "link.toml",
        &format!("roots = [\"{link_s}\"]\nprotect = [\"{link_s}/*/*/shuffle_1_*\"]\n"),
    );
    let (code, report) = env.sweep_json(&cfg, &["--dry-run"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["skipped"]["protected"], 1, "{report}");
    let listed = candidate_paths(&report);
    assert_eq!(listed.len(), 1, "{report}");
    assert!(listed[0].ends_with(format!("{BM}/02/shuffle_2_2_0.data")), "{report}");

    // A glob matching a directory above the root protects everything below it.
    let above = env.dir.path().display().to_string();
    let (code, report) = env.sweep_json(&env.config(&format!("protect = [\"{above}\"]")), &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted_files"], 0, "{report}");
    assert_eq!(report["skipped"]["protected"], 2, "{report}");
    assert!(via_link.exists() && unprotected.exists());
}

#[test]
fn version_names_the_commit_and_the_compiler() {
    let out = TestEnv::new().run(&["--version"]);
    let said = |cmd: &str, args: &[&str]| {
        let out = std::process::Command::new(cmd).args(args).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let revision = said("git", &["rev-parse", "HEAD"]);
    let rustc = said(
        &std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()),
        &["--version"],
    );
    let rustversion = rustc.split_whitespace().nth(1).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "shuffle-janitor {} (revision {revision}, rustc {rustversion})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// Issue 23: lists are streamed (`{"candidates":[` first, one file a line, the summary's fields
/// after it). The stream must stay one JSON document holding exactly the files the library's
/// in-memory list holds, for `sweep` in JSON and text and for `report`.
#[test]
fn streamed_lists_parse_and_hold_the_same_files_as_the_in_memory_list() {
    use shuffle_janitor::config::Config;
    use shuffle_janitor::policy::Mode;
    use shuffle_janitor::sweep;
    use std::sync::atomic::AtomicBool;

    let env = TestEnv::new();
    for s in 0..3 {
        let bm = format!("blockmgr-8ef70c7d-f7b0-46e5-a2b0-ccbc7824c13{s}");
        for m in 0..60 {
            env.file(
                &format!("{bm}/{:02x}/shuffle_{s}_{m}_0.data", m % 64),
                100 + m,
                8 * HOUR,
            );
            env.file(
                &format!("{bm}/{:02x}/shuffle_{s}_{m}_0.index", (m + 1) % 64),
                16,
                8 * HOUR,
            );
            env.file(
                &format!("{bm}/{:02x}/shuffle_{s}_{}_0.data", m % 64, m + 100),
                10,
                5 * MIN,
            );
        }
    }
    let cfg = env.config("");
    let key = |c: &serde_json::Value| {
        (
            c["path"].as_str().unwrap().to_string(),
            c["bytes"].as_u64().unwrap(),
            c["size"].as_u64().unwrap(),
            c["kind"].as_str().unwrap().to_string(),
            c["reason"].as_str().unwrap().to_string(),
        )
    };
    let loaded = Config::load(Some(&cfg)).unwrap();
    let opts = sweep::Options {
        mode: Mode::Sweep,
        dry_run: true,
        list_files: true,
        listing: None,
        opens: None,
        now: None,
    };
    let in_memory = sweep::run(&loaded, &opts, &AtomicBool::new(false));
    let mut expected: Vec<_> = in_memory
        .candidates
        .iter()
        .map(|c| key(&serde_json::to_value(c).unwrap()))
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 3 * 60 * 2);

    let out = env.run(&[
        "sweep",
        "--dry-run",
        "--format",
        "json",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("{\"candidates\":[\n"),
        "streamed first: {}",
        &stdout[..80]
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    let mut streamed: Vec<_> = json["candidates"].as_array().unwrap().iter().map(key).collect();
    streamed.sort();
    assert_eq!(streamed, expected);
    assert_eq!(json["deleted_files"], expected.len());
    assert_eq!(json["dry_run"], true);

    let out = env.run(&["report", "--format", "json", "--config", cfg.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let mut reported: Vec<_> = json["candidates"].as_array().unwrap().iter().map(key).collect();
    reported.sort();
    assert_eq!(reported, expected);
    assert_eq!(json["roots"][0]["kinds"]["shuffle"]["files"], 3 * 60 * 3);

    let out = env.run(&["sweep", "--dry-run", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut listed: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("would delete "))
        .filter(|l| !l.starts_with("(total)"))
        .map(|l| l.split(" (").next().unwrap().to_string())
        .collect();
    listed.sort();
    let paths: Vec<String> = expected.iter().map(|k| k.0.clone()).collect();
    assert_eq!(listed, paths);
    assert!(text.contains("\n\nreason "), "a blank line, then the summary: {text}");

    // Nothing to list: still one document, with an empty array.
    let empty = TestEnv::new();
    let (code, json) = empty.sweep_json(&empty.config(""), &["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(json["candidates"], serde_json::json!([]));
    assert_eq!(json["deleted_files"], 0);
}

/// Issue 23: "no Spark files", then "skipped files: unknown 41" read like an error; byte counts
/// were raw; JSON times were nanoseconds only.
#[test]
fn outputs_say_what_skips_mean_give_human_sizes_and_rfc3339_times() {
    let env = TestEnv::new();
    for i in 0..41 {
        env.file(&format!("file{i}.txt"), 10, 8 * HOUR);
    }
    let cfg = env.config("");
    let out = env.run(&["report", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("no Spark files"), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("unknown "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(" 41 ") && line.contains("not Spark's"), "{line}");
    let out = env.run(&["sweep", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("never touched"), "{text}");

    let env = TestEnv::new();
    env.file(&format!("{BM}/04/shuffle_0_8_0.data"), 3 << 20, 8 * HOUR);
    let cfg = env.config("");
    let out = env.run(&["report", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(" (3.0 MiB)"), "{text}");
    assert!(
        text.contains("would reclaim 1 files, 3145728 bytes (3.0 MiB)"),
        "{text}"
    );

    let (_, json) = env.sweep_json(&cfg, &["--dry-run"]);
    let ns = json["now"].as_i64().unwrap();
    let at = humantime::parse_rfc3339(json["now_rfc3339"].as_str().unwrap()).unwrap();
    let at_ns = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert_eq!(at_ns, ns, "{json}");
    let kind = &json["roots"][0]["kinds"]["shuffle"];
    let oldest = humantime::parse_rfc3339(kind["oldest_last_use_rfc3339"].as_str().unwrap()).unwrap();
    let oldest_ns = oldest.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert_eq!(oldest_ns, kind["oldest_last_use"].as_i64().unwrap(), "{json}");
}

/// The docs' table of skip reasons is the code's.
#[test]
fn the_docs_explain_every_skip_reason_as_the_output_does() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/troubleshooting.md")).unwrap();
    for skip in shuffle_janitor::policy::Skip::ALL {
        let row = format!("| `{}` | {} |", skip.as_str(), skip.meaning());
        assert!(page.contains(&row), "docs/troubleshooting.md lacks {row}");
    }
}

#[test]
fn sweep_writes_what_it_deletes_to_the_journal_in_state_dir_and_a_dry_run_writes_nothing() {
    let env = TestEnv::new();
    let t = tree(&env);
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Watermarks out of reach: the machine's own disk use must not make pressure here.
    let config = env.config(&format!(
        "state_dir = {:?}\n[watermark]\nhigh = 0.9999\nlow = 0.9998",
        state.display().to_string()
    ));
    let journal = state.join("deletions.jsonl");
    let out = env.run(&["sweep", "--dry-run", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        std::fs::read_to_string(&journal).unwrap_or_default().is_empty(),
        "a dry run deletes nothing"
    );

    let out = env.run(&["sweep", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let deleted: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "deleted").collect();
    // The old map output (with its in-progress file) and the old temp file: two units.
    assert_eq!(deleted.len(), 2, "{lines:?}");
    let unit = deleted
        .iter()
        .find(|l| l["unit"]["stem"] == "shuffle_0_8_0")
        .expect("the map output");
    let mut files: Vec<String> = serde_json::from_value(unit["unit"]["files"].clone()).unwrap();
    files.sort();
    let mut want: Vec<String> = t
        .old
        .iter()
        .map(|p| p.strip_prefix(env.root().join(BM)).unwrap().display().to_string())
        .collect();
    want.sort();
    assert_eq!(files, want);
    assert_eq!(unit["by"], "sweep");
    assert_eq!(unit["trigger"], "ttl");
    assert_eq!(
        unit["evidence"], "mtime",
        "the in-progress file's mtime, 8 h ago, is the newest"
    );
    assert_eq!(lines.iter().filter(|l| l["event"] == "intent").count(), 2);
}

#[test]
fn a_journal_line_cut_by_a_full_disk_hides_no_line_written_after_it() {
    let env = TestEnv::new();
    // state_dir on a small filesystem of its own, filled up below.
    let state = env.dir.path().join("state");
    let Some(_mount) = Mounted::tmpfs(&state, "size=256k") else {
        eprintln!("SKIPPED a_journal_line_cut_by_a_full_disk: root needed to mount a tmpfs");
        return;
    };
    let config = env.config("");
    let journal = state.join("deletions.jsonl");
    // A journal whose last page has 60 bytes left: the next line fits in part only.
    let head = r#"{"event":"kept","id":"0.0.0","time_ns":1,"pad":""#;
    let line = format!("{head}{}\"}}\n", "x".repeat(4096 - 60 - head.len() - 3));
    std::fs::write(&journal, &line).unwrap();
    let filler = state.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let first = [
        env.file(&format!("{BM}/04/shuffle_3_0_0.data"), 3000, 8 * HOUR),
        env.file(&format!("{BM}/08/shuffle_3_0_0.index"), 72, 8 * HOUR),
    ];
    env.run(&["sweep", "--config", config.to_str().unwrap()]);
    assert!(
        first.iter().all(|p| !p.exists()),
        "a full disk never holds a deletion back"
    );
    let bytes = std::fs::read(&journal).unwrap();
    assert_eq!(bytes.len(), 4096, "the intent was cut at the end of the page");
    assert_ne!(bytes.last(), Some(&b'\n'));
    // Space again; a later sweep's lines must all be readable.
    std::fs::remove_file(&filler).unwrap();
    let second = env.file(&format!("{BM}/05/shuffle_3_1_0.data"), 3000, 8 * HOUR);
    let out = env.run(&["sweep", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!second.exists());
    let text = std::fs::read_to_string(&journal).unwrap();
    let read: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let of_second: Vec<&str> = read
        .iter()
        .filter(|l| l.to_string().contains("shuffle_3_1_0"))
        .map(|l| l["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        of_second,
        ["intent", "deleted"],
        "{}",
        &text[text.len().saturating_sub(1200)..]
    );
    // explain reads past the cut line, and says it skipped one.
    let canon = |p: &PathBuf| p.parent().unwrap().canonicalize().unwrap().join(p.file_name().unwrap());
    let out = env.run(&[
        "explain",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
        canon(&second).to_str().unwrap(),
        first[0].to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answers"][0]["verdict"], "deleted", "{v}");
    // The first unit's lines were lost to the full disk: not claimed, the cut line counted, and
    // never "not deleted" (the sweep did delete it; the cut line may have said so).
    assert_eq!(v["answers"][1]["verdict"], "unknown", "{v}");
    assert_eq!(v["answers"][1]["journal_broken_lines"], 1, "{v}");
}

#[test]
fn explain_of_a_name_that_is_not_utf8_never_says_it_is_gone() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let config = env.config("");
    // A root's directory named in Latin-1 (`café`), a Spark file below it: it is there.
    let dir = env
        .root()
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .join(BM)
        .join("0c");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shuffle_1_2_0.data");
    std::fs::write(&file, b"x").unwrap();
    let young = env.file(&format!("{BM}/0d/shuffle_1_3_0.data"), 10, std::time::Duration::ZERO);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["explain", "--format", "json", "--config", config.to_str().unwrap()])
        .arg(&file)
        .arg(&young)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &v["answers"][0];
    assert_ne!(a["exists"], false, "it is there: {v}");
    assert_ne!(a["verdict"], "not_deleted", "{v}");
    assert!(a["error"].as_str().unwrap_or_default().contains("not UTF-8"), "{v}");
    assert_eq!(v["answers"][1]["exists"], true, "the others answered, in order: {v}");
}

#[test]
fn explain_of_a_removed_store_by_its_own_path_finds_its_removal() {
    let env = TestEnv::new();
    let config = env.config("");
    let state = env.dir.path().join("state");
    let root = env.root().canonicalize().unwrap();
    let store = root.join(BM);
    let line = format!(
        r#"{{"event":"store_removed","time_ns":5,"time":"1970-01-01T00:00:00.000000005Z","by":"daemon","trigger":"reap","root":"{}","store":"{}","dirs":3,"last_activity_ns":1,"last_activity":"1970-01-01T00:00:00.000000001Z","rule":{{"name":"dead","min_idle_seconds":600}}}}"#,
        root.display(),
        store.display()
    );
    std::fs::write(state.join("deletions.jsonl"), line + "\n").unwrap();
    // The store itself (an executor's directory an operator misses), and a file that was in it.
    let out = env.run(&[
        "explain",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
        store.to_str().unwrap(),
        store.join("0c/shuffle_1_1_0.data").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for i in 0..2 {
        let a = &v["answers"][i];
        assert_eq!(a["verdict"], "deleted", "{v}");
        assert_eq!(a["journal"][0]["event"], "store_removed", "{v}");
    }
}

#[test]
fn explain_during_a_rotation_of_the_journal_reads_the_lines_rotated() {
    let env = TestEnv::new();
    let config = env.config("");
    let state = env.dir.path().join("state");
    let store = env.root().canonicalize().unwrap().join(BM);
    // The old file: about 40 MB of lines about nothing asked (a second or more to read).
    let pad = "x".repeat(400);
    let mut old = String::with_capacity(41 << 20);
    for n in 0..100_000u32 {
        old +=
            &format!(r#"{{"event":"kept","id":"1.a.{n}","time_ns":{n},"time":"1970-01-01T00:00:00Z","pad":"{pad}"}}"#);
        old.push('\n');
    }
    std::fs::write(state.join("deletions.jsonl.1"), &old).unwrap();
    drop(old);
    // The current file: the deletion asked about.
    let files = r#"["3f/shuffle_1_7_0.data"]"#;
    let current = format!(
        "{}\n{}\n",
        format_args!(
            r#"{{"event":"intent","id":"1.b.1","time_ns":5,"time":"1970-01-01T00:00:00Z","store":"{}","files":{files}}}"#,
            store.display()
        ),
        format_args!(
            r#"{{"event":"deleted","id":"1.b.1","time_ns":6,"time":"1970-01-01T00:00:00Z","by":"daemon","trigger":"ttl","root":"{}","store":"{}","unit":{{"stem":"shuffle_1_7_0","kind":"shuffle","files":{files}}},"partial":false,"files_kept":[],"bytes_freed":8192,"last_use_ns":0,"last_use":"1970-01-01T00:00:00Z","evidence":"mtime","age_seconds":86400,"rule":{{"name":"ttl","max_age_seconds":21600}}}}"#,
            env.root().canonicalize().unwrap().display(),
            store.display()
        )
    );
    let journal = state.join("deletions.jsonl");
    std::fs::write(&journal, current).unwrap();
    let path = store.join("3f/shuffle_1_7_0.data");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["explain", "--format", "json", "--config", config.to_str().unwrap()])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While it reads the old file, the writer rotates: the current file becomes the old one,
    // and a new, empty one starts.
    std::thread::sleep(std::time::Duration::from_millis(400));
    std::fs::rename(&journal, state.join("deletions.jsonl.1")).unwrap();
    std::fs::write(&journal, "").unwrap();
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answers"][0]["verdict"], "deleted", "{v}");
}

#[test]
fn explain_reads_a_big_journal_once_for_many_paths() {
    let env = TestEnv::new();
    let config = env.config("");
    let state = env.dir.path().join("state");
    let store = env.root().canonicalize().unwrap().join(BM);
    // A journal of 64,000 units (128,000 lines, about 50 MB), none of them the paths asked
    // about but the last.
    let mut text = String::with_capacity(44 << 20);
    for n in 0..64_000u32 {
        let files = format!(
            r#"["{:02x}/shuffle_1_{n}_0.data","{:02x}/shuffle_1_{n}_0.index"]"#,
            n % 64,
            (n + 7) % 64
        );
        text += &format!(
            r#"{{"event":"intent","id":"1.a.{n}","time_ns":{n},"time":"1970-01-01T00:00:00Z","store":"{}","files":{files}}}"#,
            store.display()
        );
        text.push('\n');
        text += &format!(
            r#"{{"event":"deleted","id":"1.a.{n}","time_ns":{n},"time":"1970-01-01T00:00:00Z","by":"daemon","trigger":"ttl","root":"{}","store":"{}","unit":{{"stem":"shuffle_1_{n}_0","kind":"shuffle","files":{files}}},"partial":false,"files_kept":[],"bytes_freed":8192,"last_use_ns":0,"last_use":"1970-01-01T00:00:00Z","evidence":"mtime","age_seconds":86400,"rule":{{"name":"ttl","max_age_seconds":21600}}}}"#,
            env.root().canonicalize().unwrap().display(),
            store.display()
        );
        text.push('\n');
    }
    std::fs::write(state.join("deletions.jsonl"), &text).unwrap();
    drop(text);
    // 200 paths: read once per path, that is 10 GB of JSON (minutes); once for all, seconds.
    let mut args: Vec<String> = ["explain", "--format", "json", "--config", config.to_str().unwrap()]
        .map(String::from)
        .to_vec();
    args.extend((0..199).map(|n| store.join(format!("3f/shuffle_2_{n}_0.data")).display().to_string()));
    args.push(store.join("3f/shuffle_1_63999_0.data").display().to_string());
    let t = std::time::Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let limit = std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("explain of 200 paths over a 50 MB journal still ran after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let answers = v["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 200);
    assert!(
        answers[..199].iter().all(|a| a["verdict"] == "not_deleted"),
        "{}",
        answers[0]
    );
    assert_eq!(answers[199]["verdict"], "deleted", "{}", answers[199]);
    assert_eq!(
        answers[199]["journal"].as_array().unwrap().len(),
        1,
        "its intent is closed by its deleted line"
    );
}

/// Each thread of a sweep holds a store's `NN` directories open while it reads and deletes
/// there, and a sweep runs several threads a filesystem. Under a shell's or cron's default soft
/// limit on open files (1024, here 60) stores would go unread (EMFILE: kept, but counted as
/// errors, exit 1) unless the sweep raises its soft limit to the hard one, as the daemon does;
/// under a hard limit too low for its threads (here 300: 8 threads of 67 fds would not fit) it
/// runs fewer threads.
#[test]
fn a_low_limit_on_open_files_leaves_no_store_unread() {
    for limit in ["ulimit -Sn 60", "ulimit -n 300"] {
        let env = TestEnv::new();
        let mut old = Vec::new();
        // 12 stores of 64 units, each unit's two files in two of the 64 `NN` directories: a
        // thread deleting a store holds them all open.
        for s in 0..12 {
            let bm = format!("blockmgr-8ef70c7d-f7b0-46e5-a2b0-ccbc7824c1{s:02}");
            for m in 0..64 {
                let (a, b) = (m, (m + 1) % 64);
                old.push(env.file(&format!("{bm}/{a:02x}/shuffle_0_{m}_0.data"), 100, 8 * HOUR));
                old.push(env.file(&format!("{bm}/{b:02x}/shuffle_0_{m}_0.index"), 16, 8 * HOUR));
            }
        }
        let cfg = env.config("");
        for command in ["report", "sweep"] {
            let out = std::process::Command::new("sh")
                .args([
                    "-c",
                    &format!("{limit} && exec \"$0\" {command} --format json --config \"$1\""),
                ])
                .arg(env!("CARGO_BIN_EXE_shuffle-janitor"))
                .arg(&cfg)
                .env_remove("RUST_LOG")
                .output()
                .expect("run shuffle-janitor under a low limit on open files");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let report: serde_json::Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
            assert_eq!(report["errors"], 0, "{limit}; {command}: {stdout}");
            assert_eq!(out.status.code(), Some(0), "{limit}; {command}: {stdout}");
        }
        for p in &old {
            assert!(!p.exists(), "{limit}: {} should be gone", p.display());
        }
    }
}
