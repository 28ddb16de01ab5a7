//! Regressions of the hostile review (issue "Safety defects found by a hostile review"), each
//! through the binary: the attack as the review ran it, and what must survive. Tests that need
//! root (mounts, chattr, another user) say SKIPPED without it.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

const BM: &str = "blockmgr-1d2c3b4a-5e6f-4a0b-8c9d-0e1f2a3b4c5d";

/// A map output whose two files sit in two NN directories, two days old: the review's `mk`.
fn map_output(root: &Path, store: &str, id: u32) -> [PathBuf; 2] {
    let data = root.join(format!("{store}/0a/shuffle_1_{id}_3.data"));
    let index = root.join(format!("{store}/1b/shuffle_1_{id}_3.index"));
    write_aged(&data, 10, 48 * HOUR);
    write_aged(&index, 10, 48 * HOUR);
    [data, index]
}

fn whole(unit: &[PathBuf]) -> bool {
    unit.iter().all(|p| p.exists()) || unit.iter().all(|p| !p.exists())
}

fn config_at(env: &TestEnv, name: &str, root: &Path, extra: &str) -> PathBuf {
    env.write_config(
        name,
        &format!(
            "roots = [{:?}]\nmax_age = \"1h\"\nmin_age = \"1m\"\n{extra}\n",
            root.display().to_string()
        ),
    )
}

/// Runs `sweep --format json` as uid/gid 65534 (nobody), as the review did with setpriv.
fn sweep_as_nobody(config: &Path) -> (i32, serde_json::Value) {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["sweep", "--format", "json", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

fn chown_nobody(path: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn defect_1_a_store_with_an_unreadable_nn_directory_keeps_every_unit_whole() {
    if !is_root() {
        eprintln!("SKIPPED defect_1 (EACCES): needs root to hand the tree to another user");
        return;
    }
    let env = TestEnv::new();
    let root = env.dir.path().join("r");
    let unit = map_output(&root, BM, 2);
    let other = map_output(&root, "blockmgr-2", 2);
    std::fs::set_permissions(env.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    chown_nobody(&root);
    std::fs::set_permissions(
        root.join(BM).join("1b"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let cfg = config_at(&env, "c.toml", &root, "skip_open_files = false");
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, report) = sweep_as_nobody(&cfg);
    std::fs::set_permissions(
        root.join(BM).join("1b"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(code, 1, "an unreadable directory is an error: {report}");
    assert!(
        unit[0].exists() && unit[1].exists(),
        "the .data stays with its .index: {report}"
    );
    assert_eq!(report["skipped"]["incomplete"], 1, "{report}");
    assert_eq!(report["errors_by_op"]["walk"], 1, "{report}");
    assert!(
        other.iter().all(|p| !p.exists()),
        "other stores are still swept: {report}"
    );
}

#[test]
fn defect_1_an_fd_shortage_splits_no_unit() {
    let env = TestEnv::new();
    let root = env.root();
    let mut units = Vec::new();
    for i in 0..200u32 {
        let a = root.join(format!("{BM}/{:02x}/shuffle_0_{i}_0.data", i % 64));
        let b = root.join(format!("{BM}/{:02x}/shuffle_0_{i}_0.index", (i + 17) % 64));
        write_aged(&a, 10, 48 * HOUR);
        write_aged(&b, 10, 48 * HOUR);
        units.push([a, b]);
    }
    let cfg = env.config("skip_open_files = false");
    // 20 descriptors: stdio, the runtime, a few directories; opening the NN directories runs
    // out part way.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 20 && exec {} sweep --format json --config {}",
            env!("CARGO_BIN_EXE_shuffle-janitor"),
            cfg.display()
        ))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let split = units.iter().filter(|u| !whole(&u[..])).count();
    assert_eq!(split, 0, "units deleted in part: {report}");
}

#[test]
fn defect_2_a_directory_that_refuses_unlinks_keeps_its_units_whole() {
    for attr in ["i", "a"] {
        let env = TestEnv::new();
        let unit = map_output(&env.root(), BM, 2);
        let Some(_undo) = Chattr::set(&env.root().join(BM).join("1b"), attr, "defect_2 (chattr on an NN dir)") else {
            return;
        };
        let (code, report) = env.sweep_json(&env.config(""), &[]);
        assert_eq!(code, 1, "chattr +{attr}: {report}");
        assert!(
            unit.iter().all(|p| p.exists()),
            "chattr +{attr}: nothing of the unit goes: {report}"
        );
        assert_eq!(report["errors_by_op"]["unlink"], 1, "{report}");
    }
}

#[test]
fn defect_2_a_read_only_nn_directory_or_a_file_mounted_over_the_index_keeps_the_unit_whole() {
    let env = TestEnv::new();
    let unit = map_output(&env.root(), BM, 2);
    // A read-only bind mount of one NN directory (over itself).
    let nn = env.root().join(BM).join("1b");
    let Some(_ro) = Mounted::bind(&nn, &nn, true) else {
        eprintln!("SKIPPED defect_2 (EROFS, EBUSY): needs root to mount");
        return;
    };
    let (_, report) = env.sweep_json(&env.config(""), &[]);
    assert!(unit.iter().all(|p| p.exists()), "read-only NN: {report}");
    drop(_ro);

    // A file bind-mounted over the .index.
    let elsewhere = env.outside().join("some-file");
    write_aged(&elsewhere, 10, 48 * HOUR);
    let Some(_busy) = Mounted::bind(&elsewhere, &unit[1], false) else {
        return;
    };
    let (code, report) = env.sweep_json(&env.config(""), &[]);
    assert!(unit[0].exists(), "the .data stays while its .index cannot go: {report}");
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["deleted_files"], 0, "{report}");
}

#[test]
fn defect_3_a_bind_mount_of_the_same_filesystem_is_never_crossed() {
    let env = TestEnv::new();
    let victim = env.outside().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let precious = victim.join("shuffle_0_0_0.data");
    write_aged(&precious, 9, 48 * HOUR);
    // On an NN directory, on a blockmgr-* directory, and on a directory between root and store.
    let on_nn = env.root().join(format!("{BM}/0a"));
    let on_store = env.root().join("blockmgr-2");
    let on_scratch = env.root().join("spark-1");
    std::fs::create_dir_all(victim.join("0a")).unwrap();
    std::fs::create_dir_all(victim.join("blockmgr-3/0a")).unwrap();
    write_aged(&victim.join("0a/shuffle_0_1_0.data"), 9, 48 * HOUR);
    write_aged(&victim.join("blockmgr-3/0a/shuffle_0_2_0.data"), 9, 48 * HOUR);
    let Some(_a) = Mounted::bind(&victim, &on_nn, false) else {
        eprintln!("SKIPPED defect_3: needs root to bind-mount");
        return;
    };
    let _b = Mounted::bind(&victim, &on_store, false);
    let _c = Mounted::bind(&victim, &on_scratch, false);
    let kept = map_output(&env.root(), "blockmgr-4", 7);
    let before = files_below(&victim);
    let (_, report) = env.sweep_json(&env.config(""), &[]);
    assert_eq!(
        files_below(&victim),
        before,
        "nothing outside the roots is touched: {report}"
    );
    assert!(
        kept.iter().all(|p| !p.exists()),
        "the roots' own stores are swept: {report}"
    );
}

#[test]
fn defect_5_protect_patterns_with_a_trailing_slash_or_dot_components_protect() {
    let env = TestEnv::new();
    let keep = map_output(&env.root(), "blockmgr-keep", 1);
    let keep2 = map_output(&env.root(), "blockmgr-keep2", 1);
    let root = env.root().display().to_string();
    let cfg = env.config(&format!(
        "protect = [\"{root}/blockmgr-keep/\", \"{root}//./blockmgr-keep2\"]"
    ));
    let out = env.run(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success());
    let (code, report) = env.sweep_json(&cfg, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(keep.iter().chain(&keep2).all(|p| p.exists()), "{report}");
    assert_eq!(report["skipped"]["protected"], 4, "{report}");
}

#[test]
fn defect_6_a_mount_point_below_a_root_does_not_stop_the_walk() {
    let env = TestEnv::new();
    // Stores listed before and after the mount point in the root's directory order.
    let units: Vec<[PathBuf; 2]> = ["blockmgr-a", "blockmgr-z", "spark-1/blockmgr-b", "spark-zz/blockmgr-c"]
        .iter()
        .map(|s| map_output(&env.root(), s, 1))
        .collect();
    let Some(_m) = Mounted::tmpfs(&env.root().join("m"), "size=1m") else {
        eprintln!("SKIPPED defect_6: needs root to mount");
        return;
    };
    let _n = Mounted::tmpfs(&env.root().join("spark-1/m"), "size=1m");
    let (code, report) = env.sweep_json(&env.config(""), &[]);
    assert_eq!(code, 0, "{report}");
    for u in &units {
        assert!(u.iter().all(|p| !p.exists()), "{} was swept: {report}", u[0].display());
    }
}

#[test]
fn defect_7_a_root_naming_a_store_or_nested_in_another_is_swept_and_globstar_refused() {
    let env = TestEnv::new();
    let store_root = env.root().join("spark-1/executor-2").join(BM);
    let as_store = map_output(&env.root(), &format!("spark-1/executor-2/{BM}"), 1);
    let (code, report) = env.sweep_json(&config_at(&env, "store.toml", &store_root, ""), &[]);
    assert_eq!(code, 0, "{report}");
    assert!(
        as_store.iter().all(|p| !p.exists()),
        "a root that names a store is swept: {report}"
    );

    let nested = map_output(&env.root(), &format!("spark-1/executor-2/{BM}"), 2);
    let cfg = env.write_config(
        "nested.toml",
        &format!(
            "roots = [{:?}, {:?}]\nmax_age = \"1h\"\nmin_age = \"1m\"\n",
            env.root().join("spark-1").display().to_string(),
            env.root().display().to_string()
        ),
    );
    let (code, report) = env.sweep_json(&cfg, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(
        nested.iter().all(|p| !p.exists()),
        "a root inside another root's layout: {report}"
    );

    let executor_root = map_output(&env.root(), &format!("spark-1/executor-9/{BM}"), 3);
    let (_, report) = env.sweep_json(&config_at(&env, "exec.toml", &env.root().join("spark-1"), ""), &[]);
    assert!(
        executor_root.iter().all(|p| !p.exists()),
        "a spark-* dir as a root: {report}"
    );

    let star = config_at(&env, "star.toml", &env.root().join("**"), "");
    let out = env.run(&["sweep", "--config", star.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not use \"**\""));
}

#[test]
fn defect_10_a_root_that_is_not_utf8_still_gives_json_and_deletes() {
    let env = TestEnv::new();
    let root = env.dir.path().join(std::ffi::OsStr::from_bytes(b"local-\xff"));
    let unit = map_output(&root, BM, 1);
    // TOML strings are UTF-8: the root is named through a symlink; its canonical path is not.
    let link = env.dir.path().join("link");
    symlink(&root, &link).unwrap();
    let cfg = config_at(&env, "c.toml", &link, "");
    for cmd in ["report", "sweep"] {
        let out = env.run(&[cmd, "--format", "json", "--config", cfg.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{cmd}: {stderr}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let path = json["roots"][0]["path"].as_str().unwrap().to_string();
        assert!(path.ends_with("local-\\xff"), "{cmd}: {path}");
    }
    assert!(unit.iter().all(|p| !p.exists()));
}

#[test]
fn defect_11_a_closed_pipe_is_not_a_panic() {
    let env = TestEnv::new();
    for i in 0..2000u32 {
        write_aged(&env.root().join(format!("{BM}/0a/shuffle_1_{i}_0.data")), 1, 48 * HOUR);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["sweep", "--dry-run", "--config", env.config("").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: read one line and close the pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    // Quietly, but not as if all was written: 141, as the README's exit codes say (issue 23).
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

#[test]
fn defect_13_reclaimed_bytes_are_blocks_freed_not_sizes_or_links() {
    let env = TestEnv::new();
    // A 10 GiB sparse .data frees a few blocks; a hard-linked stale .data frees nothing.
    let sparse = env.root().join(format!("{BM}/0a/shuffle_1_1_0.data"));
    std::fs::create_dir_all(sparse.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(10 << 30).unwrap();
    std::io::Write::write_all(&mut &f, b"x").unwrap();
    drop(f);
    set_age(&sparse, 48 * HOUR);
    let sparse_blocks = allocated(&sparse);
    assert!(sparse_blocks < 1 << 20);
    let linked = env.file(&format!("{BM}/0b/shuffle_1_2_0.data"), 8192, 48 * HOUR);
    let elsewhere = env.outside().join("keeps-the-data");
    std::fs::hard_link(&linked, &elsewhere).unwrap();
    let (code, report) = env.sweep_json(&env.config(""), &[]);
    assert_eq!(code, 0, "{report}");
    assert!(!sparse.exists() && !linked.exists(), "{report}");
    assert!(elsewhere.exists(), "the other link is not the janitor's");
    assert_eq!(report["deleted_files"], 2, "{report}");
    assert_eq!(report["deleted_bytes"], sparse_blocks, "{report}");
    let sizes: Vec<u64> = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .collect();
    assert!(sizes.contains(&(10 << 30)) && sizes.contains(&8192), "{report}");
}

#[test]
fn smaller_a_symlinked_root_into_a_system_directory_is_refused() {
    let env = TestEnv::new();
    let link = env.dir.path().join("etc-link");
    symlink("/etc", &link).unwrap();
    let cfg = config_at(&env, "c.toml", &link, "");
    let out = env.run(&["sweep", "--format", "json", "--config", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("resolves to /etc"), "{stderr}");
}

#[test]
fn smaller_a_glob_matching_a_file_is_said_once_and_is_not_an_error() {
    let env = TestEnv::new();
    let unit = map_output(&env.root(), BM, 1);
    std::fs::write(env.dir.path().join("local-file"), b"x").unwrap();
    let cfg = env.write_config(
        "c.toml",
        &format!(
            "roots = [{:?}]\nmax_age = \"1h\"\nmin_age = \"1m\"\n",
            env.dir.path().join("local*").display().to_string()
        ),
    );
    let (code, report) = env.sweep_json(&cfg, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(unit.iter().all(|p| !p.exists()));
}

#[test]
fn smaller_timestamps_before_1677_read_as_very_old_not_zero() {
    let env = TestEnv::new();
    // ext4 stores nothing before 1901; tmpfs keeps any 64-bit time.
    let Some(_fs) = Mounted::tmpfs(&env.root(), "size=1m") else {
        eprintln!("SKIPPED smaller_timestamps_before_1677: needs root to mount a tmpfs");
        return;
    };
    let old = env.root().join(format!("{BM}/0a/shuffle_1_1_0.data"));
    write_aged(&old, 10, Duration::ZERO);
    let ancient = filetime::FileTime::from_unix_time(-12_000_000_000, 0);
    filetime::set_file_times(&old, ancient, ancient).unwrap();
    // A report (the debug build panicked on the overflow), then a sweep.
    let cfg = env.config("");
    let out = env.run(&["report", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(" 0s "), "{text}");
    assert!(text.contains("years"), "{text}");
    let (code, report) = env.sweep_json(&cfg, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(!old.exists(), "older than max_age by any measure: {report}");
}

use std::time::Duration;
