//! The classifier and a sweep on file lists recorded from real Spark 4.3.0 runs
//! (`tests/fixtures/`, copied from the project's shared notes).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use common::*;
use shuffle_janitor::config::Config;
use shuffle_janitor::policy::Mode;
use shuffle_janitor::spark::{self, Kind};
use shuffle_janitor::sweep;

const FIXTURES: [&str; 2] = ["spark-4.3.0-local-mode-seen.txt", "spark-4.3.0-standalone-ess-seen.txt"];

fn lines(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// What a person reading the listing says each file is: the name's prefix, if the file sits in
/// a two-hex-digit sub-directory of a `blockmgr-*` directory.
fn by_eye(line: &str) -> Option<Kind> {
    let parts: Vec<&str> = line.split('/').collect();
    let n = parts.len();
    let in_store = n >= 3 && parts[n - 3].starts_with("blockmgr-") && parts[n - 2].len() == 2;
    let name = parts[n - 1];
    match () {
        _ if !in_store => None,
        _ if name.starts_with("temp_shuffle_") => Some(Kind::Temp),
        _ if name.starts_with("shuffle_") => Some(Kind::Shuffle),
        _ if name.starts_with("rdd_") => Some(Kind::Rdd),
        _ => None,
    }
}

#[test]
fn every_file_spark_wrote_is_recognised_and_nothing_else() {
    for fixture in FIXTURES {
        let mut counts: BTreeMap<Option<Kind>, usize> = BTreeMap::new();
        for line in lines(fixture) {
            let got = spark::classify_relative(&line).map(|b| b.kind);
            assert_eq!(got, by_eye(&line), "{fixture}: {line}");
            *counts.entry(got).or_default() += 1;
        }
        let expected: BTreeMap<Option<Kind>, usize> = match fixture {
            "spark-4.3.0-local-mode-seen.txt" => [
                (None, 2),
                (Some(Kind::Shuffle), 39),
                (Some(Kind::Temp), 22),
                (Some(Kind::Rdd), 6),
            ]
            .into(),
            _ => [(None, 1), (Some(Kind::Shuffle), 27), (Some(Kind::Temp), 32)].into(),
        };
        assert_eq!(counts, expected, "{fixture}");
    }
}

#[test]
fn in_progress_and_checksum_files_join_their_map_output() {
    let lines = lines("spark-4.3.0-standalone-ess-seen.txt");
    let unit: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.contains("blockmgr-17ee28d4") && spark::classify_relative(l).is_some_and(|b| b.stem == "shuffle_0_1_0")
        })
        .collect();
    // .index, .checksum.ADLER32, its in-progress name, .data and its in-progress name.
    assert_eq!(unit.len(), 5, "{unit:?}");
}

#[test]
fn a_sweep_over_a_real_listing_removes_old_shuffle_files_and_keeps_the_rest() {
    for fixture in FIXTURES {
        let env = TestEnv::new();
        let all = lines(fixture);
        for line in &all {
            env.file(line, 64, 7 * HOUR);
        }
        let text = format!("roots = [{:?}]", env.root().display().to_string());
        let text = own_state(&env.dir.path().join("state"), &text) + &text;
        let cfg = Config::from_toml(&text, None).unwrap();
        let opts = sweep::Options {
            mode: Mode::Sweep,
            dry_run: false,
            list_files: true,
            listing: None,
            opens: None,
            now: None,
        };
        let report = sweep::run(&cfg, &opts, &AtomicBool::new(false));
        assert_eq!(report.error_count(), 0, "{fixture}");
        for line in &all {
            let should_go = matches!(by_eye(line), Some(Kind::Shuffle | Kind::Temp));
            assert_eq!(!env.root().join(line).exists(), should_go, "{fixture}: {line}");
        }
        assert_eq!(
            report.candidates.len(),
            all.iter()
                .filter(|l| matches!(by_eye(l), Some(Kind::Shuffle | Kind::Temp)))
                .count()
        );
    }
}
