use super::*;

fn err(text: &str) -> String {
    Config::from_toml(text, Some(Path::new("/etc/sj.toml")))
        .expect_err(text)
        .to_string()
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::from_toml("", None).unwrap();
    assert_eq!(c.roots, ["/tmp"]);
    assert_eq!(c.max_age, Duration::from_secs(6 * 3600));
    assert_eq!(c.min_age, Duration::from_secs(15 * 60));
    assert_eq!(c.age_basis, [Timestamp::Mtime, Timestamp::Atime]);
    assert_eq!(c.kinds, [Kind::Shuffle, Kind::Temp]);
    assert!(c.protect.is_empty());
    assert_eq!(c.interval, Duration::from_secs(600));
    assert_eq!(c.rescan_interval, Duration::from_secs(24 * 3600));
    assert_eq!(c.state_dir.as_deref(), Some(Path::new("/var/lib/shuffle-janitor")));
    assert!(!c.dry_run);
    assert!(c.skip_open_files);
    assert_eq!(
        c.watermark,
        Watermark {
            high: 0.85,
            low: 0.75,
            poll: Duration::from_secs(5)
        }
    );
    assert_eq!(c.listen, "0.0.0.0:19337".parse().unwrap());
    assert_eq!(
        c.stores,
        Stores {
            reap: true,
            min_idle: Duration::from_secs(24 * 3600),
            executor_startup: Duration::from_secs(600),
            pid_namespace: PidNamespace::Node,
        }
    );
    let longer = Config::from_toml("max_age = \"2days\"", None).unwrap();
    assert_eq!(
        longer.stores.min_idle,
        Duration::from_secs(48 * 3600),
        "auto: the larger of max_age and 24h"
    );
}

#[test]
fn errors_name_file_key_value_and_what_is_allowed() {
    assert_eq!(
        err("[watermark]\nlow = 0.9"),
        "/etc/sj.toml: watermark.low (0.9) must be below watermark.high (0.85)"
    );
    let e = err("max_age = \"6x\"");
    assert!(e.starts_with("/etc/sj.toml: max_age (\"6x\") is not a duration"), "{e}");
    let e = err("min_age = \"7h\"");
    assert!(
        e.contains("min_age (\"7h\") must not be longer than max_age (\"6h\")"),
        "{e}"
    );
    let e = err("[watermark]\nhigh = 1.5");
    assert!(e.contains("watermark.high (1.5) must be a fraction"), "{e}");
    let e = err("[watermark]\nlow = 0");
    assert!(e.contains("watermark.low (0) must be a fraction"), "{e}");
    let e = err("[metrics]\nlisten = \"localhost\"");
    assert!(
        e.contains("metrics.listen (\"localhost\") is not an address:port"),
        "{e}"
    );
    let e = err("protect = [\"relative/*\"]");
    assert!(
        e.contains("protect (\"relative/*\") must be an absolute path glob"),
        "{e}"
    );
    let e = err("protect = [\"/a/[\"]");
    assert!(e.contains("protect (\"/a/[\") is not a valid glob"), "{e}");
    let e = err("kinds = [\"other\"]");
    assert!(e.contains("unknown variant `other`, expected one of `shuffle`"), "{e}");
    let e = err("interval = \"0s\"");
    assert!(e.contains("interval (\"0s\") must be longer than 0s"), "{e}");
    let e = err("max_age = \"0s\"\nmin_age = \"0s\"");
    assert!(e.contains("max_age (\"0s\") must be longer than 0s"), "{e}");
    let e = err("kinds = []");
    assert!(e.contains("kinds ([]) must name at least one kind"), "{e}");
    assert!(e.contains("dry_run = true"), "{e}");
    for (key, text) in [
        ("interval", "interval = \"300000000000y\""),
        ("max_age", "max_age = \"11y\""),
        ("watermark.poll", "[watermark]\npoll = \"11years\""),
    ] {
        let e = err(text);
        assert!(
            e.contains(&format!("{key} (")) && e.contains("must be at most 10 years"),
            "{e}"
        );
    }
    let e = err("[stores]\nexecutor_startup = \"0s\"");
    assert!(
        e.contains("stores.executor_startup (\"0s\") must be at least 1m"),
        "{e}"
    );
    let e = err("roots = [\"/data/**\"]");
    assert!(e.contains("must not use \"**\""), "{e}");
    let e = err("protect = [\"/data/../etc\"]");
    assert!(e.contains("protect (\"/data/../etc\") must not contain"), "{e}");
}

#[test]
fn protect_patterns_are_written_the_way_paths_are() {
    let c = Config::from_toml(
        "protect = [\"/tmp/x/r/blockmgr-keep/\", \"/tmp//x/./r/*\", \"/\"]",
        None,
    )
    .unwrap();
    assert_eq!(c.protect.patterns, ["/tmp/x/r/blockmgr-keep", "/tmp/x/r/*", "/"]);
    assert!(c.protect.matches(Path::new("/tmp/x/r/blockmgr-keep")));
    assert!(c.protect.matches(Path::new("/tmp/x/r/anything")));
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_their_location() {
    let e = err("max_age = \"6h\"\nmax_aeg = \"1h\"");
    assert!(
        e.starts_with("/etc/sj.toml, line 2: unknown key max_aeg; expected"),
        "{e}"
    );
    assert!(e.contains("`max_age`"), "{e}");
    let e = err("[watermark]\nhihg = 0.9");
    assert!(e.contains("unknown key watermark.hihg"), "{e}");
    // Issue 23: the key was named without its table.
    let e = err("max_age = \"6h\"\n\n[metrics]\nlisten = \"127.0.0.1:1\"\nmax_agee = \"1h\"");
    assert!(
        e.starts_with("/etc/sj.toml, line 5: unknown key metrics.max_agee; expected `listen` or `web_config_file`"),
        "{e}"
    );
    assert!(e.contains("Correct its name or remove it"), "{e}");
    let e = err("[ stores ]\nreap = true\n[\"metrics\"]\nlisen = \"\"");
    assert!(e.contains("unknown key metrics.lisen"), "{e}");
    let e = err("age_basis = [\"birth\"]");
    assert!(e.contains("unknown variant `birth`"), "{e}");
    assert!(e.contains("mtime"), "{e}");
    let e = err("kinds = [\"shufle\"]");
    assert!(e.contains("unknown variant `shufle`"), "{e}");
    // Issue 23: the list offered named `other`, which is then refused too.
    let e = err("kinds = [\"shuffles\"]");
    assert!(
        e.contains("expected one of `shuffle`, `temp`, `merged`, `rdd`, `broadcast`, `taskresult`"),
        "{e}"
    );
    assert!(!e.contains("`other`"), "{e}");
    let deletable: Vec<&str> = Kind::ALL
        .iter()
        .filter(|k| **k != Kind::Other)
        .map(|k| k.as_str())
        .collect();
    assert_eq!(DELETABLE_KINDS.to_vec(), deletable);
    for kind in DELETABLE_KINDS {
        let c = Config::from_toml(&format!("kinds = [\"{kind}\"]"), None).unwrap();
        assert_eq!(c.kinds.len(), 1, "{kind}");
    }
    let e = err("dry_run = \"yes\"");
    assert!(e.contains("dry_run"), "{e}");
}

#[test]
fn roots_that_are_not_spark_local_dirs_are_refused() {
    for root in [
        "/", "/etc", "/usr/lib", "/var", "/home", "/root", "/proc/1", "/dev/shm", "/bin",
    ] {
        let e = err(&format!("roots = [\"{root}\"]"));
        assert!(e.contains(&format!("roots (\"{root}\") is ")), "{e}");
        assert!(e.contains("system directory"), "{e}");
    }
    let e = err("roots = [\"data/spark\"]");
    assert!(e.contains("must be an absolute path"), "{e}");
    for glob_at_top in ["/*", "/*/spark", "/?mp", "/[dt]ata"] {
        let e = err(&format!("roots = [\"{glob_at_top}\"]"));
        assert!(e.contains("must start with a literal top directory"), "{e}");
    }
    let e = err("roots = [\"/data/../etc\"]");
    assert!(e.contains("must not contain"), "{e}");
    let e = err("roots = []");
    assert!(e.contains("roots ([]) must name at least one"), "{e}");
    for ok in [
        "/tmp",
        "/data*/spark",
        "/var/data",
        "/mnt/disk1/spark",
        "/home/spark/local",
    ] {
        Config::from_toml(&format!("roots = [\"{ok}\"]"), None).unwrap();
    }
}

#[test]
fn protect_matches_whole_names_not_across_directories() {
    let c = Config::from_toml("protect = [\"/data/*/keep_*\", \"/data/spark/spark-pin*\"]", None).unwrap();
    assert!(c.protect.matches(Path::new("/data/spark/keep_me")));
    assert!(!c.protect.matches(Path::new("/data/spark/x/keep_me")));
    assert!(c.protect.matches(Path::new("/data/spark/spark-pinned")));
}

#[test]
fn effective_config_round_trips() {
    let c = Config::from_toml(
        "roots = [\"/data*/spark\"]\nmax_age = \"90m\"\nprotect = [\"/x/*\"]",
        None,
    )
    .unwrap();
    let again = Config::from_toml(&c.to_toml(), None).unwrap();
    assert_eq!(again.roots, c.roots);
    assert_eq!(again.max_age, Duration::from_secs(5400));
    assert_eq!(again.protect.patterns, ["/x/*"]);
    assert_eq!(again.watermark, c.watermark);
}
