//! Scenario 2, foreign filesystems and links: tmpfs and bind mounts on an `NN`, on a store and
//! between the root and a store; hard links out of a store; FIFOs, sockets and devices named
//! like block files; directories named like block files. Through `sweep` and the daemon.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("foreign_mounts_sweep", |sc| mounts(sc, false)),
    ("foreign_mounts_daemon", |sc| mounts(sc, true)),
    ("foreign_special_files", special_files),
    ("foreign_hard_links_accounting", hard_links),
];

/// Spark-named stale files in `dir` (inside a mount or a victim tree): nothing may touch them.
fn spark_tree(dir: &Path, tag: u32) {
    for (rel, m) in [
        ("", 1u64),
        ("0a/", 2),
        (&format!("{}/0b/", bm("v")), 3),
        (&format!("spark-v/{}/0c/", bm("w")), 4),
    ] {
        write_aged(&dir.join(format!("{rel}shuffle_{tag}_{m}_0.data")), 64, 48 * HOUR);
        write_aged(&dir.join(format!("{rel}shuffle_{tag}_{m}_0.index")), 16, 48 * HOUR);
    }
}

fn mounts(sc: &mut Sc, daemon: bool) {
    if !is_root() {
        return sc.skip("needs root to mount");
    }
    let s = Scratch::new();
    let root = s.join("local");
    let victim = s.join("victim"); // same filesystem as the root (ext4): bind mounts
    spark_tree(&victim, 9);
    let mut oracle = Oracle::default();
    // The root's own stores: a stale unit in each store that also has a foreign NN, and clean stores.
    let a = root.join(bm("a")); // tmpfs on its 0a
    let b = root.join(bm("b")); // bind of the victim on its 0a
    let mut mounts = Vec::new();
    for store in [&a, &b] {
        // A unit with a file in the NN that a mount will hide: kept whole ("incomplete").
        let f = vec![
            store.join("0a/shuffle_1_1_0.data"),
            store.join("1b/shuffle_1_1_0.index"),
        ];
        write_unit(&f, 10, 48 * HOUR);
        oracle.unit(vec![f[1].clone()], true);
    }
    mounts.push(Mounted::tmpfs(&a.join("0a"), "size=1m").unwrap());
    mounts.push(Mounted::bind(&victim, &b.join("0a"), false).unwrap());
    // Mounted on a store and between the root and a store.
    let tm = [root.join(bm("t")), root.join("spark-t")];
    for p in &tm {
        mounts.push(Mounted::tmpfs(p, "size=1m").unwrap());
        spark_tree(p, 7);
        // Under the tmpfs itself, layouts the walk would recognise.
        let inner = unit_paths(&p.join(bm("inner")), 7, 9);
        write_unit(&inner, 10, 48 * HOUR);
    }
    mounts.push(Mounted::bind(&victim, &root.join(bm("v2")), false).unwrap());
    mounts.push(Mounted::bind(&victim, &root.join("spark-v2"), false).unwrap());
    // A tmpfs anywhere below the root does not stop the walk: stores beside and after it go.
    mounts.push(Mounted::tmpfs(&root.join("m"), "size=1m").unwrap());
    mounts.push(Mounted::tmpfs(&root.join("spark-1/m"), "size=1m").unwrap());
    let mut stale = Vec::new();
    for store in [
        bm("0"),
        bm("zz"),
        format!("spark-1/{}", bm("x")),
        format!("spark-zz/executor-1/{}", bm("y")),
    ] {
        let u = unit_paths(&root.join(store), 2, 2);
        write_unit(&u, 10, 48 * HOUR);
        stale.push(oracle.unit(u.clone(), false));
    }
    let young = unit_paths(&root.join(bm("0")), 2, 3);
    write_unit(&young, 10, Duration::ZERO);
    oracle.unit(young, true);
    for m in [a.join("0a"), b.join("0a")] {
        oracle.victim(&m);
    }
    for p in tm.iter().chain([&victim]) {
        oracle.victim(p);
    }
    let body = config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\"");
    if daemon {
        let mut d = Daemon::start(s.path(), &body);
        d.wait_sweeps(3.0, Duration::from_secs(20));
        d.signal(Signal::USR2); // a purge too
        d.wait_sweeps(1.0, Duration::from_secs(20));
        sc.iterations = 4;
        d.no_panic(sc);
        let _ = d.stop(Duration::from_secs(5));
    } else {
        let cfg = s.join("c.toml");
        std::fs::write(&cfg, &body).unwrap();
        for extra in [&[][..], &["--purge"][..]] {
            sc.iterations += 1;
            let (code, _, err) = sweep(&cfg, extra);
            sc.check(code == 0 || code == 1, || format!("exit {code}: {err}"));
        }
    }
    for i in stale {
        let gone = oracle.units[i].files.iter().all(|p| !p.exists());
        let first = oracle.units[i].files[0].display().to_string();
        sc.check(gone, || format!("the walk stopped before {first}"));
    }
    oracle.tally(sc);
    drop(mounts);
}

fn special_files(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let nn = root.join(bm("sp")).join("0a");
    std::fs::create_dir_all(&nn).unwrap();
    let mut oracle = Oracle::default();
    let fifo = nn.join("shuffle_1_1_0.data");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    oracle.keep(&fifo);
    let sock = nn.join("shuffle_1_2_0.data");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    oracle.keep(&sock);
    if is_root() {
        let dev = nn.join("shuffle_1_3_0.index");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &dev,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        oracle.keep(&dev);
        let blk = nn.join("temp_shuffle_d4b709a2-9f76-464d-83d2-3da158a06ef0");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &blk,
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(7, 0),
        )
        .unwrap();
        oracle.keep(&blk);
    }
    // Directories named like block files, with Spark files inside.
    let d = nn.join("shuffle_1_4_0.data");
    write_aged(&d.join("shuffle_1_4_0.data"), 8, 48 * HOUR);
    oracle.keep(d.join("shuffle_1_4_0.data"));
    // Symlinks named like block files, to files outside: never followed, never deleted.
    let target = s.join("outside/shuffle_1_5_0.data");
    write_aged(&target, 8, 48 * HOUR);
    std::os::unix::fs::symlink(&target, nn.join("shuffle_1_5_0.data")).unwrap();
    oracle.keep(nn.join("shuffle_1_5_0.data"));
    oracle.victim(&s.join("outside"));
    // Their unit partners, regular and stale: a FIFO named .data next to a real .index.
    let idx = root.join(bm("sp")).join("1b/shuffle_1_1_0.index");
    write_aged(&idx, 8, 48 * HOUR);
    let real = unit_paths(&root.join(bm("sp")), 2, 2);
    write_unit(&real, 10, 48 * HOUR);
    oracle.unit(real, false);
    // Timestamps of the special files: stale.
    for p in [&fifo, &sock] {
        let t = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        let _ = filetime::set_symlink_file_times(p, t, t);
    }
    let cfg = s.join("c.toml");
    std::fs::write(&cfg, config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"")).unwrap();
    for extra in [&[][..], &["--purge"][..]] {
        sc.iterations += 1;
        let t = Instant::now();
        let child = std::process::Command::new(BIN)
            .args(["sweep", "--format", "json", "--config"])
            .arg(&cfg)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let secs = t.elapsed().as_secs_f64();
        sc.check(secs < 10.0, || format!("blocked on a special file: {secs:.1}s"));
        let (code, _, err) = parse_sweep(out);
        sc.check(code == 0, || format!("exit {code}: {err}"));
    }
    // The daemon too: it watches, and opening a FIFO would block it.
    let mut d = Daemon::start(
        s.path(),
        &config_text(&[&root], "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\""),
    );
    d.wait_sweeps(2.0, Duration::from_secs(10));
    sc.check(d.get("/-/healthy").is_some(), || "daemon stopped answering".into());
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
    let _ = PathBuf::new();
}

/// Hard links out of a store: deleting the link frees nothing, the report must not count the
/// bytes, and a purge must not stop early expecting them.
fn hard_links(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("fs/local");
    let Some(_fs) = Mounted::tmpfs(&s.join("fs"), "size=32m") else {
        return sc.skip("needs root to mount a tmpfs");
    };
    let outside = s.join("fs/outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mut oracle = Oracle::default();
    // 10 linked units of 1 MiB (oldest: pressure takes them first), then 10 plain ones.
    let mut linked_bytes = 0;
    for m in 0..10u64 {
        let u = unit_paths(&root.join(bm("hl")), 1, m);
        write_unit(&u, 1 << 20, 96 * HOUR - Duration::from_secs(m));
        std::fs::hard_link(&u[0], outside.join(format!("keep-{m}"))).unwrap();
        linked_bytes += allocated(&u[0]);
        oracle.unit(u, false);
    }
    for m in 10..20u64 {
        let u = unit_paths(&root.join(bm("hl")), 1, m);
        write_unit(&u, 1 << 20, 2 * HOUR - Duration::from_secs(m));
        oracle.unit(u, false);
    }
    // Sparse: 10 GiB apparent, one block.
    let sparse = root.join(bm("hl")).join("3f/shuffle_2_1_0.data");
    std::fs::create_dir_all(sparse.parent().unwrap()).unwrap();
    {
        let f = std::fs::File::create(&sparse).unwrap();
        f.set_len(10 << 30).unwrap();
        std::io::Write::write_all(&mut &f, b"x").unwrap();
    }
    set_age(&sparse, 96 * HOUR);
    oracle.unit(vec![sparse.clone()], false);
    oracle.victim(&outside);
    // low: 40 % of 32 MiB is 12.8 MiB: about 8 MiB must go, all of it from the plain units.
    let cfg = s.join("c.toml");
    std::fs::write(
        &cfg,
        config_text(
            &[&root],
            "max_age = \"3h\"\nmin_age = \"1m\"\n[watermark]\nhigh = 0.9\nlow = 0.4",
        ),
    )
    .unwrap();
    let before = used_bytes(&root);
    let (code, report, err) = sweep(&cfg, &["--purge"]);
    let after = used_bytes(&root);
    sc.iterations = 1;
    sc.check(code == 0, || format!("exit {code}: {err}"));
    let reported = jnum(&report, &["deleted_bytes"]);
    sc.check(reported == before - after, || {
        format!(
            "reported {reported} bytes reclaimed, the filesystem got {} back (links: {linked_bytes})",
            before as i64 - after as i64
        )
    });
    let size = 32u64 << 20;
    sc.check(after as f64 <= 0.4 * size as f64 + 4096.0, || {
        format!(
            "the purge stopped at {:.3}, above low (hard links counted as freed?)",
            after as f64 / size as f64
        )
    });
    oracle.tally(sc);
}
