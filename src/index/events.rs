//! Event application: what the watch's file and directory events, and opens, do to the index.

use super::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::policy::Nanos;
use crate::spark;

/// What happened to a file, as the watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileEvent {
    /// Created or renamed in.
    Added,
    /// Removed or renamed away.
    Removed,
    /// Written, closed after writing, or its attributes (times, links) changed.
    Changed,
    /// Opened: a use.
    Opened,
}

/// Opens of units not known yet, by stem.
pub(super) type PendingOpens = HashMap<Box<[u8]>, Nanos>;

impl Index {
    /// Remembers an open of unit `stem` of the store at (`root`, `rel`) from before this run
    /// (the state file), applied when the store is loaded.
    pub fn remember_open(&mut self, root: u32, rel: &Path, stem: &[u8], at: Nanos) {
        if let Some(id) = self.find(root, rel)
            && let Some(s) = self.store_mut(id)
            && let Some(slot) = s.find(stem)
        {
            let u = s.unit_mut(slot);
            u.last_open = u.last_open.max(at);
            s.min_stale = true;
            return;
        }
        let e = self
            .pending_opens
            .entry((root, rel.to_owned()))
            .or_default()
            .entry(stem.into())
            .or_insert(at);
        *e = (*e).max(at);
    }

    /// Drops remembered opens older than `before` (they can no longer keep anything).
    pub fn prune_pending(&mut self, before: Nanos) {
        self.pending_opens.retain(|_, opens| {
            opens.retain(|_, at| *at >= before);
            !opens.is_empty()
        });
    }

    /// Applies one event on file `name` in sub-directory `subdir` of store `id`, at `at`.
    /// Names that are not Spark's are ignored.
    /// Ignored when `subdir` is no longer the directory it was (see [`SubdirId`]).
    pub fn file_event(&mut self, id: StoreId, subdir: SubdirId, name: &[u8], ev: FileEvent, at: Nanos) {
        let reading = self.reading > 0;
        let Some(s) = self.store_mut(id) else { return };
        let Some(subdir) = s.subdir_of(subdir) else { return };
        s.last_activity = s.last_activity.max(at);
        match ev {
            FileEvent::Added => {
                if let Some(slot) = s.add_file(subdir, name) {
                    s.mark_dirty(slot);
                }
            }
            FileEvent::Removed => {
                if reading && spark::parse_block_name(name).is_some() {
                    s.note_removed(subdir, name, at);
                }
                if let Some(slot) = s.remove_file(subdir, name) {
                    if s.units[slot as usize].as_ref().is_some_and(|u| u.files.is_empty()) {
                        s.remove_unit(slot);
                    } else {
                        s.mark_dirty(slot);
                    }
                }
            }
            // A change to, or an open of, a file the index does not know (its creation was
            // not seen) adds it: add_file is a no-op for a file it has.
            FileEvent::Changed => {
                if let Some(slot) = s.add_file(subdir, name) {
                    s.mark_dirty(slot);
                }
            }
            FileEvent::Opened => {
                if let Some(slot) = s.add_file(subdir, name) {
                    let u = s.unit_mut(slot);
                    u.last_open = u.last_open.max(at);
                    // A read may move atime: look at the files again.
                    s.mark_dirty(slot);
                }
            }
        }
    }

    /// A sub-directory of store `id` went away: its files with it, and its slot is free.
    /// Ignored when `subdir` is no longer the directory it was (its slot freed already, or
    /// another's now).
    pub fn subdir_removed(&mut self, id: StoreId, subdir: SubdirId, at: Nanos) {
        self.subdir_gone(id, subdir, at, false);
    }

    /// A sub-directory of store `id` was moved out of it (renamed away) with its files: as
    /// [`Index::subdir_removed`], and the units that kept files here are partial from now on:
    /// never deleted, as any unit known only in part (its other files went on elsewhere). The
    /// rest of the store is decided again once a walk reads it whole.
    pub fn subdir_moved_away(&mut self, id: StoreId, subdir: SubdirId, at: Nanos) {
        self.subdir_gone(id, subdir, at, true);
    }

    pub(super) fn subdir_gone(&mut self, id: StoreId, subdir: SubdirId, at: Nanos, moved: bool) {
        let reading = self.reading > 0;
        let Some(s) = self.store_mut(id) else { return };
        let Some(subdir) = s.subdir_of(subdir) else { return };
        s.last_activity = s.last_activity.max(at);
        if reading {
            s.note_removed(subdir, b"", at);
        }
        s.drop_subdir_files(subdir, true, moved);
        s.free_subdir(subdir);
    }

    /// Removes unit `stem` at `slot` (deleted by the sweep), if it is still that unit.
    pub fn remove_unit(&mut self, id: StoreId, slot: u32, stem: &[u8]) {
        if let Some(s) = self.store_mut(id)
            && s.units
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|u| s.stem(u) == stem)
        {
            s.remove_unit(slot);
        }
    }

    /// Opens worth keeping across a restart: (root, store rel, stem, last open) of every unit
    /// opened at or after `since`, at most `limit` of them, newest first.
    pub fn recent_opens(&self, since: Nanos, limit: usize) -> Vec<(u32, PathBuf, Vec<u8>, Nanos)> {
        let mut out: Vec<(u32, PathBuf, Vec<u8>, Nanos)> = Vec::new();
        for (_, s) in self.stores() {
            for u in s.units.iter().flatten().filter(|u| u.last_open >= since) {
                out.push((s.root, s.rel.clone(), s.stem(u).to_vec(), u.last_open));
            }
        }
        for ((root, rel), opens) in &self.pending_opens {
            for (stem, at) in opens {
                if *at >= since {
                    out.push((*root, rel.clone(), stem.to_vec(), *at));
                }
            }
        }
        out.sort_by_key(|o| std::cmp::Reverse(o.3));
        out.truncate(limit);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::AtimeMode;
    use crate::index::testkit::*;
    use crate::store_dir::Listing;

    #[test]
    fn events_build_units_and_names_round_trip() {
        let mut ix = Index::default();
        let id = ix.add_store(0, Path::new("blockmgr-1"));
        let s = ix.store_mut(id).unwrap();
        let (a, b) = (s.subdir("0a"), s.subdir("1b"));
        let uuid = "d4b709a2-9f76-464d-83d2-3da158a06ef0";
        ix.file_event(
            id,
            a,
            format!("shuffle_0_1_0.data.{uuid}").as_bytes(),
            FileEvent::Added,
            5,
        );
        ix.file_event(id, a, b"shuffle_0_1_0.data", FileEvent::Added, 6);
        ix.file_event(id, b, b"shuffle_0_1_0.index", FileEvent::Added, 7);
        ix.file_event(id, b, b"core.1", FileEvent::Added, 8);
        ix.file_event(
            id,
            a,
            format!("shuffle_0_1_0.data.{uuid}").as_bytes(),
            FileEvent::Removed,
            9,
        );
        let s = ix.store(id).unwrap();
        assert_eq!(s.unit_count(), 1);
        assert_eq!(s.last_activity, 9);
        let units: Vec<UnitView> = s.units().collect();
        let mut files = s.unit_files(units[0].slot);
        files.sort();
        assert_eq!(
            files,
            [
                (subdir_slot(a), b"shuffle_0_1_0.data".to_vec()),
                (subdir_slot(b), b"shuffle_0_1_0.index".to_vec())
            ]
        );
        assert!(units[0].dirty);
        let todo = ix.dirty(100);
        assert_eq!(todo.len(), 1);
        let fresh: Fresh = todo[0].files.iter().map(|_| Some(stat(100, 50, 4096, 1))).collect();
        ix.refresh(&todo[0], &fresh, BASIS, AtimeMode::Strict, 200);
        let u = ix.store(id).unwrap().units().next().unwrap();
        assert!(!u.dirty);
        assert_eq!((u.last_use, u.freeable, u.alloc), (100, 8192, 8192));
        assert!(!ix.has_dirty());
        // A refresh finding every file gone drops the unit.
        ix.file_event(id, a, b"shuffle_0_1_0.data", FileEvent::Changed, 300);
        let todo = ix.dirty(100);
        ix.refresh(&todo[0], &vec![None, None], BASIS, AtimeMode::Strict, 301);
        assert!(ix.store(id).unwrap().is_empty());
    }

    #[test]
    fn opens_are_kept_through_a_reload_and_remembered_before_a_store_is_known() {
        let mut ix = Index::default();
        ix.remember_open(0, Path::new("blockmgr-9"), b"shuffle_1_1_0", 40);
        let id = ix.add_store(0, Path::new("blockmgr-9"));
        let s = ix.store_mut(id).unwrap();
        let a = s.subdir("0a");
        ix.file_event(id, a, b"shuffle_1_2_0.data", FileEvent::Opened, 50);
        // The walk's listing of the store: both units' files.
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("blockmgr-9");
        for name in ["0a/shuffle_1_1_0.data", "0a/shuffle_1_2_0.data"] {
            std::fs::create_dir_all(store.join("0a")).unwrap();
            std::fs::write(store.join(name), b"x").unwrap();
        }
        let root = rustix::fs::open(dir.path(), rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
        let mount = crate::fsx::MountId::of(&crate::fsx::statx_fd(&root).unwrap());
        let mut listing = Listing::default();
        crate::store_dir::StoreDir::open(dir.path(), Path::new("blockmgr-9"), mount)
            .unwrap()
            .read(&mut Vec::new(), &mut listing);
        let marks = ix.marks(id);
        ix.install_store(
            id,
            Store::from_listing(&listing, BASIS, AtimeMode::Strict, 60, Some(1), 0),
            marks,
        );
        let s = ix.store(id).unwrap();
        let opens: Vec<(Vec<u8>, Nanos)> = s.units().map(|u| (u.stem.to_vec(), u.last_open)).collect();
        assert!(opens.contains(&(b"shuffle_1_1_0".to_vec(), 40)), "{opens:?}");
        assert!(opens.contains(&(b"shuffle_1_2_0".to_vec(), 50)), "{opens:?}");
        assert_eq!(ix.recent_opens(45, 10).len(), 1);
    }

    #[test]
    fn nn_directories_created_and_removed_reuse_their_slots_and_stale_handles_reach_nothing() {
        let mut ix = Index::default();
        let id = ix.add_store(0, Path::new("blockmgr-9"));
        let keep = ix.store_mut(id).unwrap().subdir("1b");
        ix.file_event(id, keep, b"shuffle_0_1_0.index", FileEvent::Added, 1);
        // 70,000 cycles of one NN created, written and removed: the table stays small, and a
        // file in the NN created last fits (the store stays whole).
        let mut last = 0;
        for n in 0..70_000u64 {
            let a = ix.store_mut(id).unwrap().subdir("0a");
            ix.file_event(id, a, format!("shuffle_1_{n}_0.data").as_bytes(), FileEvent::Added, 2);
            ix.file_event(id, a, format!("shuffle_1_{n}_0.data").as_bytes(), FileEvent::Removed, 3);
            ix.subdir_removed(id, a, 4);
            last = a;
        }
        let s = ix.store(id).unwrap();
        assert!(s.subdir_names().len() <= 2, "{} slots", s.subdir_names().len());
        assert_eq!(s.marks_whole, 0, "a name did not fit");
        // The slot of the last 0a, taken by a new directory: the old handle reaches nothing.
        let b = ix.store_mut(id).unwrap().subdir("2c");
        assert_eq!(subdir_slot(b), subdir_slot(last), "the free slot is reused");
        assert_ne!(b, last, "with another generation");
        ix.file_event(id, b, b"shuffle_0_1_0.data", FileEvent::Added, 5);
        ix.file_event(id, last, b"shuffle_0_1_0.data", FileEvent::Removed, 6);
        ix.subdir_removed(id, last, 7);
        let s = ix.store(id).unwrap();
        assert_eq!(
            s.subdir_index("2c"),
            Some(subdir_slot(b)),
            "a late removal of the old one"
        );
        let u = s.find_unit(b"shuffle_0_1_0").unwrap();
        assert_eq!(u.nfiles, 2, "its files stay");
        // A refresh listed before the slot changed hands applies nothing.
        let todo = ix.dirty(10);
        let t = todo.iter().find(|t| &*t.stem == b"shuffle_0_1_0").unwrap().clone();
        let s = ix.store_mut(id).unwrap();
        let slot = s.subdir_index("2c").unwrap();
        ix.subdir_removed(id, b, 8);
        let c = ix.store_mut(id).unwrap().subdir("3d");
        assert_eq!(subdir_slot(c), slot);
        ix.file_event(id, c, b"shuffle_0_1_0.data", FileEvent::Added, 9);
        ix.refresh(&t, &vec![None, None], BASIS, AtimeMode::Strict, 10);
        let u = ix.store(id).unwrap().find_unit(b"shuffle_0_1_0").unwrap();
        assert!(u.dirty && u.nfiles == 2, "{u:?}");
        assert!(ix.counts_agree());
    }
}
