//! The daemon's index against a fresh walk: random sequences of Spark-like operations on a real
//! directory (a map output committed through its in-progress names and renamed, appended to,
//! opened, touched, deleted in part or whole; stores created and removed; spills; an `NN`
//! directory renamed over another store's, or removed with its files and created again), and
//! after each step the index-driven sweep's dry-run candidates must equal a walking sweep's, on
//! the same clock and with the same opens; at the end the index-driven sweep deletes, and what it
//! deleted must be what the walk would delete at that instant. The index is kept by the real
//! watch (inotify) from a real walk, and each index sweep first reads again the stores not known
//! whole, as the daemon's does. The only difference allowed: the units that lost files to an `NN`
//! directory moved out of their store, which the index keeps (part of a unit went on elsewhere;
//! a walk cannot know), tracked by the test itself.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use shuffle_janitor::config::Config;
use shuffle_janitor::daemon::walk::{self, WalkCtx};
use shuffle_janitor::daemon::watch::{Roots, Watch, WatchedRoot};
use shuffle_janitor::disk::Mounts;
use shuffle_janitor::index::Index;
use shuffle_janitor::policy::{Mode, Nanos, nanos};
use shuffle_janitor::report::Report;
use shuffle_janitor::sweep::{self, OpenSource, indexed};

const STORES: usize = 3;
const SUBDIRS: [&str; 4] = ["00", "0c", "1f", "3e"];
const UUID: &str = "d4b709a2-9f76-464d-83d2-3da158a06ef0";
const MIN: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
enum Op {
    /// Writes a map output through its in-progress names, then renames them over the final ones.
    Commit {
        store: usize,
        map: u8,
        checksum: bool,
    },
    /// Appends to its .data (a rewrite).
    Append {
        store: usize,
        map: u8,
    },
    /// Opens and reads its .index (the shuffle service).
    Open {
        store: usize,
        map: u8,
    },
    /// Sets its files' times `minutes` before the clock the sweeps run at, without opening them.
    Touch {
        store: usize,
        map: u8,
        minutes: u32,
    },
    /// Deletes one of its files (0: .data, 1: .index, 2: .checksum) or all (3).
    Delete {
        store: usize,
        map: u8,
        which: u8,
    },
    /// A spill file, `minutes` old.
    Spill {
        store: usize,
        n: u8,
        minutes: u32,
    },
    NewStore {
        store: usize,
    },
    RemoveStore {
        store: usize,
    },
    /// Renames `NN` directory `sub` of store `from` over the same one of store `to` (replacing
    /// it when it is empty; nothing happens when it has files), `to` made when it is not there.
    RenameNn {
        from: usize,
        to: usize,
        sub: usize,
    },
    /// Removes `NN` directory `sub` of a store with its files, and creates it again.
    ChurnNn {
        store: usize,
        sub: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let store = 0..STORES;
    let map = 0u8..5;
    let minutes = prop::sample::select(vec![5u32, 40, 100, 200, 600]);
    prop_oneof![
        4 => (store.clone(), map.clone(), any::<bool>()).prop_map(|(store, map, checksum)| Op::Commit { store, map, checksum }),
        1 => (store.clone(), map.clone()).prop_map(|(store, map)| Op::Append { store, map }),
        2 => (store.clone(), map.clone()).prop_map(|(store, map)| Op::Open { store, map }),
        3 => (store.clone(), map.clone(), minutes.clone()).prop_map(|(store, map, minutes)| Op::Touch { store, map, minutes }),
        2 => (store.clone(), map.clone(), 0u8..4).prop_map(|(store, map, which)| Op::Delete { store, map, which }),
        1 => (store.clone(), 0u8..3, minutes).prop_map(|(store, n, minutes)| Op::Spill { store, n, minutes }),
        1 => store.clone().prop_map(|store| Op::NewStore { store }),
        1 => store.clone().prop_map(|store| Op::RemoveStore { store }),
        2 => (store.clone(), store.clone(), 0..SUBDIRS.len()).prop_map(|(from, to, sub)| Op::RenameNn { from, to, sub }),
        1 => (store, 0..SUBDIRS.len()).prop_map(|(store, sub)| Op::ChurnNn { store, sub }),
    ]
}

fn store_name(i: usize) -> String {
    format!("blockmgr-{i}0000000-0000-4000-8000-000000000000")
}

/// Where Spark puts one file of map `map` (hashed by name, so spread over sub-directories).
fn file(root: &Path, store: usize, map: u8, ext: &str) -> PathBuf {
    let name = format!("shuffle_0_{map}_0.{ext}");
    let sub = SUBDIRS[(name.bytes().map(usize::from).sum::<usize>() + usize::from(map)) % SUBDIRS.len()];
    root.join(store_name(store)).join(sub).join(name)
}

fn set_times(p: &Path, at: std::time::SystemTime) {
    let t = filetime::FileTime::from_system_time(at);
    let _ = filetime::set_symlink_file_times(p, t, t);
}

/// The units (store, map) that lost files to an `NN` directory moved out of their store and
/// still have files in it: the index keeps them, a walk cannot know they are partial.
type Partial = BTreeSet<(usize, u8)>;

const EXTS: [&str; 3] = ["data", "index", "checksum.ADLER32"];

/// Applies `op`; `now` is the clock the sweeps run at.
fn apply(root: &Path, op: &Op, now: std::time::SystemTime, partial: &mut Partial) {
    match *op {
        Op::Commit { store, map, checksum } => {
            let mut exts = vec!["data", "index"];
            if checksum {
                exts.push("checksum.ADLER32");
            }
            for ext in exts {
                let fin = file(root, store, map, ext);
                let tmp = fin.with_file_name(format!("{}.{UUID}", fin.file_name().unwrap().to_string_lossy()));
                std::fs::create_dir_all(fin.parent().unwrap()).unwrap();
                std::fs::write(&tmp, vec![b'x'; 100 + usize::from(map)]).unwrap();
                std::fs::rename(&tmp, &fin).unwrap();
            }
        }
        Op::Append { store, map } => {
            let p = file(root, store, map, "data");
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&p) {
                f.write_all(b"more").unwrap();
            }
        }
        Op::Open { store, map } => {
            if let Ok(mut f) = std::fs::File::open(file(root, store, map, "index")) {
                let _ = f.read_to_end(&mut Vec::new());
            }
        }
        Op::Touch { store, map, minutes } => {
            for ext in ["data", "index", "checksum.ADLER32"] {
                set_times(&file(root, store, map, ext), now - MIN * minutes);
            }
        }
        Op::Delete { store, map, which } => {
            let exts: &[&str] = match which {
                0 => &["data"],
                1 => &["index"],
                2 => &["checksum.ADLER32"],
                _ => &["data", "index", "checksum.ADLER32"],
            };
            for ext in exts {
                let _ = std::fs::remove_file(file(root, store, map, ext));
            }
        }
        Op::Spill { store, n, minutes } => {
            let dir = root
                .join(store_name(store))
                .join(SUBDIRS[usize::from(n) % SUBDIRS.len()]);
            let p = dir.join(format!("temp_shuffle_{n}c0ffee0-0000-4000-8000-000000000000"));
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(&p, b"spill");
            set_times(&p, now - MIN * minutes);
        }
        Op::NewStore { store } => {
            for sub in SUBDIRS {
                let _ = std::fs::create_dir_all(root.join(store_name(store)).join(sub));
            }
        }
        Op::RemoveStore { store } => {
            let _ = std::fs::remove_dir_all(root.join(store_name(store)));
        }
        Op::RenameNn { from, to, sub } => {
            if from == to {
                return;
            }
            let src = root.join(store_name(from)).join(SUBDIRS[sub]);
            // Which of `from`'s units have files in the directory and elsewhere, before.
            let split: Vec<u8> = (0..5u8)
                .filter(|&map| {
                    let here = |p: &PathBuf| p.parent() == Some(src.as_path());
                    let files: Vec<PathBuf> = EXTS
                        .iter()
                        .map(|e| file(root, from, map, e))
                        .filter(|p| p.exists())
                        .collect();
                    files.iter().any(here) && !files.iter().all(here)
                })
                .collect();
            // Into another store, made for it when it is not there.
            let _ = std::fs::create_dir_all(root.join(store_name(to)));
            if std::fs::rename(&src, root.join(store_name(to)).join(SUBDIRS[sub])).is_ok() {
                partial.extend(split.into_iter().map(|map| (from, map)));
            }
        }
        Op::ChurnNn { store, sub } => {
            let dir = root.join(store_name(store)).join(SUBDIRS[sub]);
            if std::fs::remove_dir_all(&dir).is_ok() {
                let _ = std::fs::create_dir(&dir);
            }
        }
    }
    // A unit with no file left in its store is gone from the index, and its mark with it.
    partial.retain(|&(store, map)| EXTS.iter().any(|e| file(root, store, map, e).exists()));
}

/// The files of the units the index keeps as partial.
fn partial_files(root: &Path, partial: &Partial) -> BTreeSet<PathBuf> {
    partial
        .iter()
        .flat_map(|&(store, map)| EXTS.iter().map(move |e| file(root, store, map, e)))
        .collect()
}

/// Every regular file below `dir`.
fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// The index's opens, as a walking sweep takes them.
#[derive(Debug)]
struct IndexOpens {
    index: Arc<Mutex<Index>>,
    root: PathBuf,
}

impl OpenSource for IndexOpens {
    fn last_open(&self, store: &Path, stem: &[u8]) -> Option<Nanos> {
        let rel = store.strip_prefix(&self.root).ok()?;
        let index = self.index.lock().unwrap();
        let id = index.find(0, rel)?;
        index
            .store(id)?
            .find_unit(stem)
            .map(|u| u.last_open)
            .filter(|t| *t != Nanos::MIN)
    }
}

fn candidates(r: &Report) -> BTreeSet<(PathBuf, String)> {
    r.candidates
        .iter()
        .map(|c| (c.path.clone(), c.reason.as_str().to_string()))
        .collect()
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let env = TestEnv::new();
    let root = env.root().canonicalize().unwrap();
    // The clock the sweeps run at: far enough after the index's watch started that its wait
    // for uses it may not have seen is over (the walking sweep has no such wait).
    let max_age = 120 * MIN;
    let now_time = std::time::SystemTime::now() + max_age + 60 * MIN;
    let now = nanos(now_time.duration_since(std::time::UNIX_EPOCH).unwrap());
    let cfg = Config::from_toml(
        &format!(
            "roots = [{:?}]\nmax_age = \"2h\"\nmin_age = \"20m\"\nstate_dir = \"\"\n[watermark]\nhigh = 0.999999\nlow = 0.999998\n",
            root.display().to_string()
        ),
        None,
    )
    .unwrap();
    let mut scratch = Report::new(false, false, 0);
    let present = sweep::roots::present_roots(&cfg, &Mounts::read().unwrap(), &mut scratch);
    prop_assert_eq!(present.len(), 1);
    let r = &present[0];
    let index = Arc::new(Mutex::new(Index::default()));
    let roots: Roots = Arc::new(RwLock::new(vec![Some(WatchedRoot {
        path: r.path.clone(),
        mount: r.mount,
        ino: r.ino,
        role: r.role,
        atime: r.atime,
    })]));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = Watch::start(index.clone(), roots.clone(), cfg.age_basis.clone(), tx).unwrap();
    let ctx = WalkCtx {
        watch: Some(&watch),
        index: &index,
        roots: &roots,
        basis: &cfg.age_basis,
        reconcile: false,
        before_store: None,
    };
    walk::walk(&ctx, 0, None);
    let indexed_roots = vec![(0u32, r.clone())];
    let opts = sweep::Options {
        mode: Mode::Sweep,
        dry_run: true,
        list_files: true,
        listing: None,
        opens: Some(Arc::new(IndexOpens {
            index: index.clone(),
            root: root.clone(),
        })),
        now: Some(now),
    };
    let mut partial = Partial::new();
    for (step, op) in ops.iter().enumerate() {
        apply(&root, op, now_time, &mut partial);
        prop_assert!(watch.settle(Duration::from_secs(5), true), "the watch settles");
        // Stores appear through events the daemon's loop walks: do what it does.
        for (n, rel, role) in new_dirs(&root, &index) {
            walk::walk(&ctx, n, Some((&rel, role)));
        }
        prop_assert!(watch.settle(Duration::from_secs(5), true), "the watch settles");
        // As the daemon's sweep: the stores not known whole (an NN moved out) are read again.
        walk::reread_unwatched(&ctx);
        let cancel = AtomicBool::new(false);
        let from_index = indexed::run_indexed(&cfg, &indexed_roots, &index, &opts, &cancel, None);
        let from_walk = sweep::run(&cfg, &opts, &cancel);
        prop_assert!(
            index.lock().unwrap().counts_agree(),
            "the index's counts after step {}",
            step
        );
        let kept = partial_files(&root, &partial);
        let (a, mut b) = (candidates(&from_index), candidates(&from_walk));
        b.retain(|(p, _)| !kept.contains(p));
        prop_assert_eq!(
            &a,
            &b,
            "after step {} ({:?}) of {:?}: index (left) and walk (right) differ",
            step,
            op,
            ops
        );
    }
    // The index-driven sweep deletes: exactly what a walk at this instant would (its dry run),
    // but the partial units.
    let cancel = AtomicBool::new(false);
    let kept = partial_files(&root, &partial);
    let would: BTreeSet<PathBuf> = candidates(&sweep::run(&cfg, &opts, &cancel))
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !kept.contains(p))
        .collect();
    let before = files_below(&root);
    walk::reread_unwatched(&ctx);
    let deleting = sweep::Options {
        dry_run: false,
        list_files: false,
        ..opts.clone()
    };
    let report = indexed::run_indexed(&cfg, &indexed_roots, &index, &deleting, &cancel, None);
    let deleted: BTreeSet<PathBuf> = before.difference(&files_below(&root)).cloned().collect();
    prop_assert_eq!(
        &deleted,
        &would,
        "the index's sweep deleted (left) what a walk would not, or kept what it would delete (right), after {:?}; {:?}",
        ops,
        report.skipped
    );
    Ok(())
}

/// Stores on disk the index does not have yet: the daemon walks those when the watch reports
/// them (a test has no loop to take the message).
fn new_dirs(root: &Path, index: &Mutex<Index>) -> Vec<(u32, PathBuf, shuffle_janitor::spark::DirRole)> {
    let index = index.lock().unwrap();
    (0..STORES)
        .map(|i| PathBuf::from(store_name(i)))
        .filter(|rel| root.join(rel).is_dir() && index.find(0, rel).is_none())
        .map(|rel| (0, rel, shuffle_janitor::spark::DirRole::Store))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_index_decides_as_a_fresh_walk_does(ops in prop::collection::vec(op(), 1..12)) {
        run_case(&ops)?;
    }
}
