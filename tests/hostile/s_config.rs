//! Scenario 5, configuration: random TOML for `check-config`, `sweep` and a SIGHUP reload (never a
//! panic, exit 0 or 2 with a message naming the key, never a deletion from a refused config), and
//! roots that must be refused or swept in bounded time.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("config_fuzz_check_and_sweep", fuzz),
    ("config_fuzz_sighup", fuzz_sighup),
    ("config_hostile_roots", hostile_roots),
    ("config_glob_10000_dirs", glob_many),
];

const KEYS: &[&str] = &[
    "roots",
    "max_age",
    "min_age",
    "age_basis",
    "kinds",
    "protect",
    "interval",
    "rescan_interval",
    "stuck_after",
    "dry_run",
    "skip_open_files",
    "state_dir",
];
const WM_KEYS: &[&str] = &["high", "low", "poll"];
const STORES_KEYS: &[&str] = &["reap", "min_idle", "executor_startup", "pid_namespace"];

/// A random value: wrong types, odd durations, NaN/inf, empty lists, odd globs.
fn value(rng: &mut Rng, root: &str) -> String {
    let durations = [
        "\"6h\"",
        "\"0s\"",
        "\"-5m\"",
        "\"300000000000y\"",
        "\"11years\"",
        "\"1ns\"",
        "\"18446744073709551615s\"",
        "\"1h 1h 1h\"",
        "\"\"",
        "\"1.5h\"",
        "\"9999999999999999999999d\"",
        "\"10y\"",
        "\"59s\"",
        "\"1m\"",
    ];
    let globs = [
        format!("\"{root}/**\""),
        format!("\"{root}/[\""),
        format!("\"{root}//./x/\""),
        "\"/x/../y\"".into(),
        "\"relative/*\"".into(),
        "\"/\"".into(),
        format!("\"{root}/blockmgr-*/{{a,b}}\""),
        "\"/tmp/\\u0000\"".into(),
    ];
    let roots = [
        format!("[\"{root}\"]"),
        "[]".into(),
        "[\"/\"]".into(),
        "[\"/tmp/../etc\"]".into(),
        "[\"/proc\"]".into(),
        "[\"//\"]".into(),
        "[\"/tmp/**\"]".into(),
        "[\"/*\"]".into(),
        "[\"relative\"]".into(),
        format!("[\"{root}\", \"{root}\"]"),
        "[1, 2]".into(),
    ];
    match rng.below(12) {
        0 => rng.pick(&durations).to_string(),
        1 => rng
            .pick(&["nan", "inf", "-inf", "-0.0", "1e308", "0.5", "0.9", "2", "-1"])
            .to_string(),
        2 => rng
            .pick(&["true", "false", "0", "\"yes\"", "[]", "{}", "1979-05-27"])
            .to_string(),
        3 => format!("[{}]", rng.pick(&globs)),
        4 => rng.pick(&roots).clone(),
        5 => rng
            .pick(&[
                "[\"mtime\"]",
                "[\"birth\"]",
                "[]",
                "[\"atime\", \"atime\"]",
                "\"mtime\"",
            ])
            .to_string(),
        6 => rng
            .pick(&[
                "[\"shuffle\"]",
                "[\"other\"]",
                "[]",
                "[\"rdd\", \"shufle\"]",
                "[\"temp\",\"temp\"]",
            ])
            .to_string(),
        7 => format!("\"{}\"", "x".repeat(rng.below(5000) as usize)),
        8 => rng
            .pick(&["\"\"", "\"relative\"", "\"/nonexistent/state\""])
            .to_string(),
        9 => format!("{}", rng.next() as i64),
        10 => "\"\\ud800\"".into(),
        _ => rng.pick(&durations).to_string(),
    }
}

/// A random document: known and unknown keys, duplicates, tables, garbage lines.
fn document(rng: &mut Rng, root: &str) -> String {
    let mut doc = String::new();
    let n = rng.below(6);
    for _ in 0..n {
        let key = match rng.below(10) {
            0 => format!("unknown_{}", rng.below(3)),
            1 => "max_aeg".to_string(),
            _ => rng.pick(KEYS).to_string(),
        };
        doc.push_str(&format!("{key} = {}\n", value(rng, root)));
    }
    if rng.below(3) == 0 {
        doc.push_str("[watermark]\n");
        for _ in 0..rng.below(4) {
            let key = if rng.below(8) == 0 { "hihg" } else { rng.pick(WM_KEYS) };
            doc.push_str(&format!("{key} = {}\n", value(rng, root)));
        }
    }
    if rng.below(4) == 0 {
        doc.push_str("[stores]\n");
        for _ in 0..rng.below(4) {
            let key = if rng.below(8) == 0 {
                "reapp"
            } else {
                rng.pick(STORES_KEYS)
            };
            let value = match rng.below(3) {
                0 => rng
                    .pick(&["\"node\"", "\"own\"", "\"host\"", "\"auto\"", "true"])
                    .to_string(),
                _ => value(rng, root),
            };
            doc.push_str(&format!("{key} = {value}\n"));
        }
    }
    if rng.below(6) == 0 {
        doc.push_str("[metrics]\nlisten = \"localhost\"\n");
    }
    if rng.below(8) == 0 {
        let garbage = ["[watermark\n", "= 3\n", "roots = [\n", "[[roots]]\n", "\u{feff}x=1\n"];
        let g: &str = rng.pick::<&str>(&garbage);
        doc.push_str(g);
    }
    doc
}

/// The keys a document names, for "a message naming the key".
fn names_a_key(doc: &str, stderr: &str) -> bool {
    let all = KEYS.iter().chain(WM_KEYS).chain(STORES_KEYS).chain(&[
        "unknown_0",
        "unknown_1",
        "unknown_2",
        "max_aeg",
        "listen",
        "hihg",
        "reapp",
    ]);
    all.clone().any(|k| doc.contains(k) && stderr.contains(k))
        // A syntax error has no key: TOML names the line and column.
        || stderr.contains("TOML parse error")
        || stderr.contains("line ")
}

fn fuzz(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let unit = unit_paths(&root.join(bm("fuzz")), 1, 1);
    write_unit(&unit, 100, 48 * HOUR);
    let young = unit_paths(&root.join(bm("fuzz")), 1, 2);
    write_unit(&young, 100, Duration::ZERO);
    let mut oracle = Oracle::default();
    oracle.unit(young.clone(), true);
    let rootstr = root.display().to_string();
    let n = sc.size(600, 5000);
    let mut rng = Rng(0x5eed_c0f1);
    let cfg = s.join("fuzz.toml");
    let mut accepted = 0;
    for i in 0..n {
        let doc = document(&mut rng, &rootstr);
        std::fs::write(&cfg, &doc).unwrap();
        sc.iterations += 1;
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !sc.check(code == 0 || code == 2, || {
            format!("check-config exit {code} on:\n{doc}\n{stderr}")
        }) {
            continue;
        }
        sc.check(!stderr.contains("panicked"), || format!("panic on:\n{doc}\n{stderr}"));
        if code == 2 {
            sc.check(names_a_key(&doc, &stderr), || {
                format!("no key named for:\n{doc}\n{stderr}")
            });
            // Every tenth refused config: a sweep with it deletes nothing.
            if i % 10 == 0 {
                let before = Snapshot::of(&root);
                let out = Command::new(BIN)
                    .args(["sweep", "--config"])
                    .arg(&cfg)
                    .output()
                    .unwrap();
                sc.check(out.status.code() == Some(2), || {
                    format!("sweep accepted what check-config refused:\n{doc}")
                });
                for d in before.diff(&Snapshot::of(&root)) {
                    sc.violation(format!("a refused config deleted: {d}\n{doc}"));
                }
            }
        } else {
            accepted += 1;
        }
    }
    // The stale unit was never swept: every accepted document was only checked.
    oracle.unit(unit, true);
    oracle.tally(sc);
    sc.note(format!("{n} documents, {accepted} accepted"));
}

fn fuzz_sighup(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let stale = unit_paths(&root.join(bm("hup")), 2, 1);
    write_unit(&stale, 100, 48 * HOUR);
    let good = format!(
        "{}dry_run = true\ninterval = \"1s\"\n",
        config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"")
    );
    let mut d = Daemon::start(s.path(), &good);
    d.wait_metric(
        "shuffle_janitor_sweeps_total",
        &[("trigger", "startup")],
        Duration::from_secs(10),
        |v| v >= 1.0,
    );
    let rootstr = root.display().to_string();
    let mut rng = Rng(0xface_b00c);
    let n = sc.size(150, 1000);
    let mut refused = 0;
    for _ in 0..n {
        // Refused documents that, were they taken, would delete the stale unit.
        let doc = format!("dry_run = false\ninterval = \"1s\"\n{}", document(&mut rng, &rootstr));
        let ok = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg({
                std::fs::write(s.join("probe.toml"), &doc).unwrap();
                s.join("probe.toml")
            })
            .output()
            .unwrap()
            .status
            .success();
        if ok {
            continue;
        }
        refused += 1;
        sc.iterations += 1;
        d.reload(&doc);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    sc.check(d.alive(), || format!("daemon died:\n{}", d.log_tail(20)));
    let g = d.metric("shuffle_janitor_config_last_reload_successful", &[]);
    sc.check(g == Some(0.0), || format!("reload gauge after refused configs: {g:?}"));
    sc.check(
        d.metric("shuffle_janitor_errors_total", &[("op", "config")])
            .unwrap_or(0.0)
            >= 1.0,
        || "config errors not counted".into(),
    );
    // Huge poll and interval through a reload: refused or bounded, never a panic or a hang.
    // Dotted keys: `good` names the watermarks so already (kit::config_text).
    d.reload(&format!("{good}\nwatermark.poll = \"300000000000y\""));
    std::thread::sleep(Duration::from_millis(300));
    d.reload(&format!("{good}\nwatermark.poll = \"10y\""));
    std::thread::sleep(Duration::from_millis(300));
    sc.check(d.get("/-/healthy").is_some(), || {
        "not serving after a 10-year poll".into()
    });
    d.reload(&good);
    d.wait_metric(
        "shuffle_janitor_config_last_reload_successful",
        &[],
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    d.no_panic(sc);
    let mut oracle = Oracle::default();
    oracle.unit(stale, true);
    oracle.tally(sc);
    sc.note(format!("{refused} refused configs sent by SIGHUP"));
    d.signal(Signal::TERM);
}

fn hostile_roots(sc: &mut Sc) {
    let s = Scratch::new();
    let check = |root: &str| {
        let cfg = s.join("r.toml");
        std::fs::write(&cfg, format!("roots = [{root:?}]\n")).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for root in [
        "/tmp/../etc",
        "/proc",
        "/sys",
        "//",
        "/tmp/**",
        "/",
        "/usr/lib",
        "/etc/",
        "/x/**",
        "/proc/self/cwd",
    ] {
        sc.iterations += 1;
        let (code, err) = check(root);
        sc.check(code == 2 && err.contains("roots"), || {
            format!("root {root:?}: exit {code}: {err}")
        });
    }
    // Symlinked roots resolving into system directories: refused at every sweep (exit 1), nothing
    // below them touched.
    for target in ["/etc", "/usr", "/usr/share", "/proc/self"] {
        sc.iterations += 1;
        let link = s.join(format!("link-{}", target.replace('/', "_")));
        std::os::unix::fs::symlink(target, &link).unwrap();
        let cfg = s.join("l.toml");
        std::fs::write(&cfg, config_text(&[&link], "max_age = \"1s\"\nmin_age = \"0s\"")).unwrap();
        let (code, _, err) = sweep(&cfg, &[]);
        sc.check(code == 1 && err.contains("resolves to"), || {
            format!("root -> {target}: exit {code}: {err}")
        });
    }
    // interval = "300000000000y" refused with its key.
    let cfg = s.join("i.toml");
    std::fs::write(&cfg, "interval = \"300000000000y\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    sc.check(out.status.code() == Some(2) && err.contains("interval"), || {
        format!("huge interval: {err}")
    });
}

fn glob_many(sc: &mut Sc) {
    let s = Scratch::new();
    let n = sc.size(2000, 10_000);
    let mut oracle = Oracle::default();
    for i in 0..n {
        let dir = s.join(format!("many/d{i:05}"));
        std::fs::create_dir_all(&dir).unwrap();
        if i % 50 == 0 {
            let u = unit_paths(&dir.join(bm("g")), 1, i as u64);
            write_unit(&u, 10, 48 * HOUR);
            oracle.unit(u, false);
            let y = unit_paths(&dir.join(bm("g")), 2, i as u64);
            write_unit(&y, 10, Duration::ZERO);
            oracle.unit(y, true);
        }
    }
    let glob = s.join("many/d*");
    let cfg = s.join("g.toml");
    std::fs::write(&cfg, config_text(&[&glob], "max_age = \"1h\"\nmin_age = \"1m\"")).unwrap();
    let t = Instant::now();
    let (code, report, err) = sweep(&cfg, &[]);
    let secs = t.elapsed().as_secs_f64();
    sc.iterations = 1;
    sc.check(code == 0, || format!("exit {code}: {err}"));
    sc.check(secs < 60.0, || format!("{n} roots took {secs:.1}s"));
    oracle.tally(sc);
    sc.check(jnum(&report, &["deleted_files"]) == (n as u64).div_ceil(50) * 3, || {
        format!("deleted {}", report["deleted_files"])
    });
    sc.note(format!("{n} roots from one glob in {secs:.1}s"));
    let _ = Path::new("");
}
