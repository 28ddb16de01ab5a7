//! What happens when the tree changes between the walk's decision and the deletion. The sweep
//! cannot be paused in between from outside, so these drive its halves (`StoreDir::read`, then
//! `StoreDir::delete_unit`, itself `check_unit` then `commit_unit`) the way the sweep does and
//! change the tree in the middle.

mod common;

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use common::*;
use shuffle_janitor::config::Timestamp;
use shuffle_janitor::disk::FileStat;
use shuffle_janitor::fsx::{self, DirError, MountId};
use shuffle_janitor::store_dir::{Listing, Names, StoreDir, StoreFile, UnitFile};

const BM: &str = "blockmgr-17ee28d4-9c6f-4141-8390-73ad9b25ad4c";
const BASIS: &[Timestamp] = &[Timestamp::Mtime, Timestamp::Atime];

/// A scanned store: where it is and what the sweep judged.
struct Store {
    rel: PathBuf,
    mount: MountId,
    subdirs: Vec<Box<str>>,
    names: Names,
}

impl Store {
    /// The unit's files as the sweep hands them to `delete_unit`.
    fn unit<'a>(&'a self, files: &'a [StoreFile]) -> Vec<UnitFile<'a>> {
        files
            .iter()
            .map(|f| UnitFile {
                subdir: f.subdir,
                name: f.name(&self.names),
                judged: Some(&f.stat),
            })
            .collect()
    }
}

fn mount_of(path: &Path) -> MountId {
    let fd = rustix::fs::open(path, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
    MountId::of(&fsx::statx_fd(&fd).unwrap())
}

/// A map output in three sub-directories, read the way the sweep reads it.
fn scanned(env: &TestEnv) -> (Store, Vec<StoreFile>) {
    env.file(&format!("{BM}/0c/shuffle_0_4_0.data"), 300, 9 * HOUR);
    env.file(&format!("{BM}/30/shuffle_0_4_0.index"), 24, 9 * HOUR);
    env.file(&format!("{BM}/34/shuffle_0_4_0.checksum.ADLER32"), 8, 9 * HOUR);
    let root = env.root();
    let mount = mount_of(&root);
    let mut listing = Listing::default();
    StoreDir::open(&root, Path::new(BM), mount)
        .unwrap()
        .read(&mut Vec::new(), &mut listing);
    assert!(listing.complete(), "{:?} {:?}", listing.errors, listing.skipped);
    assert_eq!(listing.files.len(), 3);
    (
        Store {
            rel: BM.into(),
            mount,
            subdirs: listing.subdirs,
            names: listing.names,
        },
        listing.files,
    )
}

fn last_use(files: &[StoreFile]) -> i64 {
    files.iter().map(|f| f.stat.last_use(BASIS)).max().unwrap()
}

/// Opens the store again for deletion, as the sweep does after judging.
fn open(env: &TestEnv, store: &Store) -> Result<StoreDir, DirError> {
    StoreDir::open(&env.root(), &store.rel, store.mount)
}

#[test]
fn an_unchanged_unit_is_deleted_whole() {
    let env = TestEnv::new();
    let (store, files) = scanned(&env);
    let out = open(&env, &store)
        .unwrap()
        .delete_unit(&store.subdirs, &store.unit(&files), BASIS, last_use(&files));
    assert!(!out.changed && out.errors.is_empty(), "{out:?}");
    assert_eq!(out.removed.len(), 3);
    assert!(files_below(&env.root()).is_empty());
}

#[test]
fn a_symlink_planted_in_place_of_a_subdirectory_does_not_redirect_the_deletion() {
    let env = TestEnv::new();
    let (store, files) = scanned(&env);
    // Replace 30/ (which holds the index) with a symlink to a directory holding a hard link to
    // the same inode: the re-stat alone would find nothing changed, so only refusing to follow
    // the symlink keeps the victim.
    let victim_dir = env.outside();
    let victim = victim_dir.join("shuffle_0_4_0.index");
    let nn = env.root().join(BM).join("30");
    std::fs::hard_link(nn.join("shuffle_0_4_0.index"), &victim).unwrap();
    std::fs::rename(&nn, env.root().join("moved-away")).unwrap();
    symlink(&victim_dir, &nn).unwrap();

    let out = open(&env, &store)
        .unwrap()
        .delete_unit(&store.subdirs, &store.unit(&files), BASIS, last_use(&files));
    assert!(out.changed, "{out:?}");
    assert!(out.removed.is_empty(), "nothing of the unit goes: {out:?}");
    assert!(victim.exists(), "the symlink was not followed");
    assert!(env.root().join(format!("{BM}/0c/shuffle_0_4_0.data")).exists());
}

#[test]
fn a_symlink_planted_in_place_of_the_store_is_not_followed() {
    let env = TestEnv::new();
    let (store, _) = scanned(&env);
    let victim_dir = env.outside();
    std::fs::rename(env.root().join(BM), env.root().join("moved-away")).unwrap();
    symlink(&victim_dir, env.root().join(BM)).unwrap();
    let e = open(&env, &store).expect_err("a symlink is not opened as the store");
    assert!(matches!(e, DirError::NotDir), "{e}");
}

#[test]
fn a_file_that_changed_after_the_decision_keeps_its_whole_unit() {
    let env = TestEnv::new();
    let (store, files) = scanned(&env);
    // The writer re-commits the index (new content, new mtime) after the walk.
    let index = env.root().join(format!("{BM}/30/shuffle_0_4_0.index"));
    std::fs::write(&index, vec![b'y'; 48]).unwrap();
    let out = open(&env, &store)
        .unwrap()
        .delete_unit(&store.subdirs, &store.unit(&files), BASIS, last_use(&files));
    assert!(out.changed, "{out:?}");
    assert!(out.removed.is_empty());
    assert_eq!(files_below(&env.root()).len(), 3, "all three files kept");
}

#[test]
fn a_file_replaced_by_another_inode_with_the_same_size_and_times_is_kept() {
    let env = TestEnv::new();
    let (store, files) = scanned(&env);
    let data = env.root().join(format!("{BM}/0c/shuffle_0_4_0.data"));
    let old = std::fs::metadata(&data).unwrap();
    let tmp = env.root().join(format!("{BM}/0c/new"));
    std::fs::write(&tmp, vec![b'z'; 300]).unwrap();
    let t = filetime::FileTime::from_last_modification_time(&old);
    filetime::set_file_times(&tmp, t, t).unwrap();
    std::fs::rename(&tmp, &data).unwrap();
    assert_ne!(std::fs::metadata(&data).unwrap().ino(), old.ino());
    let out = open(&env, &store)
        .unwrap()
        .delete_unit(&store.subdirs, &store.unit(&files), BASIS, last_use(&files));
    assert!(out.changed, "{out:?}");
    assert!(data.exists());
}

#[test]
fn a_file_read_after_the_decision_keeps_its_unit_when_atime_counts() {
    let env = TestEnv::new();
    let (store, files) = scanned(&env);
    // The shuffle service reads the index: atime moves (set by hand: mounts may be relatime).
    let index = env.root().join(format!("{BM}/30/shuffle_0_4_0.index"));
    let mtime = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&index).unwrap());
    filetime::set_file_times(&index, filetime::FileTime::now(), mtime).unwrap();
    let mut dir = open(&env, &store).unwrap();
    let out = dir.delete_unit(&store.subdirs, &store.unit(&files), BASIS, last_use(&files));
    assert!(out.changed, "{out:?}");
    // With mtime alone as the basis, a read does not count as use.
    let out = dir.delete_unit(
        &store.subdirs,
        &store.unit(&files),
        &[Timestamp::Mtime],
        last_use(&files),
    );
    assert!(!out.changed && out.removed.len() == 3, "{out:?}");
}

#[test]
fn files_already_gone_are_not_errors() {
    let env = TestEnv::new();
    let (store, files) = scanned(&env);
    std::fs::remove_file(env.root().join(format!("{BM}/34/shuffle_0_4_0.checksum.ADLER32"))).unwrap();
    let out = open(&env, &store)
        .unwrap()
        .delete_unit(&store.subdirs, &store.unit(&files), BASIS, last_use(&files));
    assert!(!out.changed && out.errors.is_empty(), "{out:?}");
    assert_eq!(out.removed.len(), 2);
    let stat = FileStat::from_metadata(&std::fs::metadata(env.root()).unwrap());
    assert_eq!(stat.dev, store.mount.dev);
}

#[test]
fn a_swap_after_reading_cannot_redirect_a_deletion_through_the_same_fds() {
    let env = TestEnv::new();
    env.file(&format!("{BM}/0c/shuffle_0_4_0.data"), 300, 9 * HOUR);
    env.file(&format!("{BM}/30/shuffle_0_4_0.index"), 24, 9 * HOUR);
    let root = env.root();
    let mut dir = StoreDir::open(&root, Path::new(BM), mount_of(&root)).unwrap();
    let mut listing = Listing::default();
    dir.read(&mut Vec::new(), &mut listing);
    // After the read, 30/ is moved away and replaced by a symlink to a hard link of the index.
    let nn = root.join(BM).join("30");
    let victim = env.outside().join("shuffle_0_4_0.index");
    std::fs::hard_link(nn.join("shuffle_0_4_0.index"), &victim).unwrap();
    let moved = root.join("moved-away");
    std::fs::rename(&nn, &moved).unwrap();
    symlink(env.outside(), &nn).unwrap();
    let files: Vec<UnitFile> = listing
        .files
        .iter()
        .map(|f| UnitFile {
            subdir: f.subdir,
            name: f.name(&listing.names),
            judged: Some(&f.stat),
        })
        .collect();
    let out = dir.delete_unit(&listing.subdirs, &files, BASIS, last_use(&listing.files));
    assert!(!out.changed && out.errors.is_empty(), "{out:?}");
    // The name that was judged went (in the directory it really is in); the victim did not.
    assert!(victim.exists());
    assert!(!moved.join("shuffle_0_4_0.index").exists());
    assert!(!root.join(format!("{BM}/0c/shuffle_0_4_0.data")).exists());
}

#[test]
fn a_fresh_file_renamed_over_a_checked_one_before_the_unlink_is_put_back_not_deleted() {
    let env = TestEnv::new();
    let (store, files) = scanned(&env);
    let mut dir = open(&env, &store).unwrap();
    let unit = store.unit(&files);
    let checked = dir
        .check_unit(&store.subdirs, &unit, BASIS, last_use(&files))
        .expect("an unchanged unit passes the checks");
    // Between the check and the unlink, Spark (or an attacker) commits a fresh index over the
    // stale one: same name, new inode, written now.
    let index = env.root().join(format!("{BM}/30/shuffle_0_4_0.index"));
    let fresh = env.root().join(format!("{BM}/30/shuffle_0_4_0.index.tmp"));
    std::fs::write(&fresh, b"fresh index").unwrap();
    std::fs::rename(&fresh, &index).unwrap();
    let out = dir.commit_unit(&unit, checked, BASIS);
    assert!(out.changed, "{out:?}");
    assert!(out.removed.is_empty(), "{out:?}");
    assert_eq!(std::fs::read(&index).unwrap(), b"fresh index", "the fresh file is kept");
    let mut names: Vec<String> = files_below(&env.root())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "shuffle_0_4_0.checksum.ADLER32",
            "shuffle_0_4_0.data",
            "shuffle_0_4_0.index"
        ],
        "every file is back under its own name, nothing left under a private one"
    );
}

#[test]
fn a_file_opened_and_read_between_check_and_commit_keeps_its_unit_when_atime_counts() {
    let env = TestEnv::new();
    let (store, files) = scanned(&env);
    let mut dir = open(&env, &store).unwrap();
    let unit = store.unit(&files);
    let checked = dir.check_unit(&store.subdirs, &unit, BASIS, last_use(&files)).unwrap();
    let data = env.root().join(format!("{BM}/0c/shuffle_0_4_0.data"));
    let mtime = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&data).unwrap());
    filetime::set_file_times(&data, filetime::FileTime::now(), mtime).unwrap();
    let out = dir.commit_unit(&unit, checked, BASIS);
    assert!(out.changed && out.removed.is_empty(), "{out:?}");
    assert_eq!(files_below(&env.root()).len(), 3);
}
