//! Filesystems that do not behave (issue 21).
//!
//! - A filesystem without `d_type` (ext4 made with `-O ^filetype`, on a loop device): getdents
//!   says `DT_UNKNOWN` for everything, and dead stores must still be removed, their stale files
//!   deleted, a store with files kept.

use std::path::Path;
use std::time::Duration;

use crate::kit::*;

pub const ALL: &[Scenario] = &[("stall_no_dtype_reaps", no_dtype_reaps)];

fn empty_store(dir: &Path, nn: &[&str]) {
    for n in nn {
        std::fs::create_dir_all(dir.join(n)).unwrap();
    }
}

/// Whether the processes can all be seen (else the liveness rule is blind and nothing here can
/// be shown).
fn liveness_seen(sc: &mut Sc) -> bool {
    let procs = shuffle_janitor::procs::Procs::read(Path::new("/proc"), None);
    if let Some(why) = procs.blind {
        sc.skip(&format!("the processes cannot all be seen here: {why}"));
        return false;
    }
    true
}

/// Item 6: ext4 without `filetype` (getdents gives `DT_UNKNOWN` for every entry), on a loop
/// device: a dead store is removed, a stale map output deleted, a store with files kept.
fn no_dtype_reaps(sc: &mut Sc) {
    if !is_root() {
        return sc.skip("mounting a loop device needs root");
    }
    if !sh("command -v mkfs.ext4") {
        return sc.skip("no mkfs.ext4 (e2fsprogs)");
    }
    if !liveness_seen(sc) {
        return;
    }
    let s = Scratch::new();
    let img = s.join("nodtype.img");
    let root = s.join("local");
    std::fs::create_dir_all(&root).unwrap();
    let made = sh(&format!(
        "truncate -s 64M '{0}' && mkfs.ext4 -q -F -O ^filetype '{0}' && mount -o loop '{0}' '{1}'",
        img.display(),
        root.display()
    ));
    if !sc.check(made, || "cannot make and mount an ext4 image without filetype".into()) {
        return;
    }
    // Scratch unmounts what is below it when dropped; the loop device goes with the mount.
    // In executor-* directories: a JVM of the node's own (a Spark test running beside this one)
    // whose environment names other directories cannot own them.
    let dead = root.join("spark-s/executor-2").join(bm("dead"));
    empty_store(&dead, &["00", "0c", "3f"]);
    let exec_dead = root.join("spark-s/executor-1").join(bm("gone"));
    empty_store(&exec_dead, &["01"]);
    let data = root.join(bm("data"));
    let stale = unit_paths(&data, 1, 1);
    write_unit(&stale, 4096, 48 * HOUR);
    let young = unit_paths(&data, 1, 2);
    write_unit(&young, 4096, Duration::from_secs(60));
    let with_file = root.join(bm("notes"));
    write_aged(&with_file.join("07/notes.txt"), 10, 48 * HOUR);
    // The filesystem indeed does not say: an NN directory lists as DT_UNKNOWN.
    let fd = rustix::fs::open(
        &dead,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let mut buf = Vec::with_capacity(8192);
    let mut types = Vec::new();
    let mut dir = rustix::fs::RawDir::new(&fd, buf.spare_capacity_mut());
    while let Some(Ok(e)) = dir.next() {
        if e.file_name().to_bytes() == b"00" {
            types.push(e.file_type());
        }
    }
    drop(fd);
    if !sc.check(types == [rustix::fs::FileType::Unknown], || {
        format!("the image lists NN directories as {types:?}, not DT_UNKNOWN")
    }) {
        return;
    }
    // Born more than START_SLACK before any JVM starts from now on; quiet for min_idle.
    std::thread::sleep(Duration::from_millis(2500));
    let mut oracle = Oracle::default();
    oracle.unit(stale.clone(), false);
    oracle.unit(young.clone(), true);
    oracle.keep(with_file.join("07/notes.txt"));
    let config = s.join("nodtype.toml");
    std::fs::write(
        &config,
        config_text(
            &[&root],
            "state_dir = \"\"\nmax_age = \"1h\"\n[stores]\nmin_idle = \"1s\"",
        ),
    )
    .unwrap();
    let (code, report, stderr) = sweep(&config, &[]);
    sc.iterations += 1;
    sc.check(code == 0, || format!("exit {code}: {stderr}"));
    sc.check(!dead.exists() && !exec_dead.exists(), || {
        format!(
            "dead stores not removed on a filesystem without d_type: {} {}\n{report}",
            dead.exists(),
            exec_dead.exists()
        )
    });
    sc.check(stale.iter().all(|p| !exists(p)), || {
        format!("the stale map output was not deleted: {report}")
    });
    sc.check(data.is_dir() && with_file.is_dir(), || {
        "a store with files was removed".into()
    });
    sc.check(jnum(&report, &["reaped", "stores"]) == 2, || {
        format!("reaped.stores != 2: {report}")
    });
    oracle.tally(sc);
}
