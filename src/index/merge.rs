//! The walk merge: how a store a walk read is installed over what the watch kept meanwhile.

use super::*;

use crate::policy::Nanos;

impl Store {
    /// Takes what a walk's read of the store (`new`) says of the store as a whole, once its
    /// units are in place, and gives back what building the tables left over.
    pub(super) fn take_read_facts(&mut self, new: &mut Store) {
        self.complete = new.complete;
        self.watched_since = new.watched_since;
        self.unwatched = new.unwatched;
        self.leftovers = std::mem::take(&mut new.leftovers);
        let earlier = self.dir_facts;
        self.dir_facts = new.dir_facts;
        self.dir_facts.keep_first_seen(&earlier);
        self.dir_ids = std::mem::take(&mut new.dir_ids);
        self.last_activity = self.last_activity.max(new.last_activity);
        self.min_stale = true;
        self.units.shrink_to_fit();
        self.stems.shrink_to_fit();
        self.shrink_by_stem();
    }
}

impl Index {
    /// Installs a store built by [`Store::from_listing`] in place of store `id`, keeping what
    /// the watch saw of it meanwhile. The watch knows sub-directories by their index in the
    /// store's table, so the new store's are mapped onto that table by name (an index is never
    /// given to another name). For each unit, the files the index knew are kept next to those
    /// the listing found, and the unit is marked dirty if they differ: the next refresh stats
    /// them all and drops only what is really gone (a file created after its directory was
    /// listed is not lost, so the unit is never deleted without it). Opens are kept.
    ///
    /// `seen` are the marks the walk noted when it started reading: when the watch marked the
    /// store (or lost events) since, what it marked stands (not watched, not whole), for the
    /// walk may have listed before the mark's cause.
    pub fn install_store(&mut self, id: StoreId, mut new: Store, seen: Marks) {
        let now = self.marks(id);
        if now.1 != seen.1 {
            new.complete = false;
        }
        if now.0 != seen.0 || now.2 != seen.2 {
            new.watched_since = None;
            let live = self.store(id).map_or(0, |s| s.unwatched);
            new.unwatched = new.unwatched.max(live);
        }
        let Some(mut s) = self.store_mut(id).map(std::mem::take) else {
            return;
        };
        // A store read for the first time (the watch saw nothing of its files yet), whose
        // sub-directories the walk named in the order it listed them: the listing's units are
        // taken as they are, not built again one file at a time.
        let fresh =
            s.units.is_empty() && s.odd_names.is_empty() && s.subdirs.iter().zip(&new.subdirs).all(|(a, b)| a == b);
        if fresh {
            let mut subdirs = std::mem::take(&mut s.subdirs);
            if new.subdirs.len() > subdirs.len() {
                subdirs.extend(new.subdirs[subdirs.len()..].iter().cloned());
                s.subdir_gens.resize(subdirs.len(), 0);
            }
            s.subdirs = subdirs;
            s.stems = std::mem::take(&mut new.stems);
            s.units = std::mem::take(&mut new.units);
            s.free_units = std::mem::take(&mut new.free_units);
            s.by_stem = std::mem::take(&mut new.by_stem);
            s.odd_names = std::mem::take(&mut new.odd_names);
            s.free_odd = std::mem::take(&mut new.free_odd);
            s.dirty_units = new.dirty_units;
            s.live_stem = new.live_stem;
            s.take_read_facts(&mut new);
            *self.store_mut(id).expect("taken above") = s;
            self.apply_pending_opens(id);
            return;
        }
        // Whole unless the merge itself finds a name the tables cannot hold (`fits`): the
        // live table gets the listing's names and the watch's since, possibly more than the
        // listing alone had.
        s.complete = true;
        // The live table, extended with the listing's new names.
        let map: Vec<u32> = new
            .subdirs
            .iter()
            .map(|n| n.as_deref().map_or(u32::MAX, |n| s.subdir_slot_for(n)))
            .collect();
        let old_units: Vec<Unit> = s.units.drain(..).flatten().collect();
        s.dirty_units = 0;
        s.live_stem = 0;
        let old_stems = std::mem::take(&mut s.stems);
        let old_odd = std::mem::take(&mut s.odd_names);
        s.free_units.clear();
        s.by_stem.clear();
        s.free_odd.clear();
        let old_stem = |u: &Unit| &old_stems[u.stem_at as usize..u.stem_at as usize + usize::from(u.stem_len)];
        let old_name = |u: &Unit, f: &FileRef| -> Vec<u8> {
            if f.name & ODD != 0 {
                return old_odd[usize::from(f.name & !ODD)]
                    .as_deref()
                    .unwrap_or_default()
                    .to_vec();
            }
            [old_stem(u), SUFFIXES[usize::from(f.name)]].concat()
        };
        // The listing's units, on the live table.
        for u in new.units.iter().flatten() {
            let mut slot = None;
            for f in &u.files {
                let sub = map[usize::from(f.subdir)];
                slot = s.add_file(sub, &new.file_name(new.stem(u), *f)).or(slot);
            }
            if let Some(slot) = slot {
                let nu = s.unit_mut(slot);
                nu.last_use = u.last_use;
                nu.read_bound = u.read_bound;
                nu.freeable_blocks = u.freeable_blocks;
                nu.alloc_blocks = u.alloc_blocks;
                s.set_dirty(slot, u.dirty());
            }
        }
        // What the index had: kept where it differs, for the refresh to settle.
        for u in &old_units {
            let listed = s.find(old_stem(u));
            if listed.is_none() && !u.dirty() && u.last_open == Nanos::MIN {
                continue; // gone from disk, and nothing happened to it since
            }
            let before = listed.map_or(0, |slot| s.units[slot as usize].as_ref().map_or(0, |x| x.files.len()));
            let mut slot = listed;
            for f in &u.files {
                slot = s.add_file(u32::from(f.subdir), &old_name(u, f)).or(slot);
            }
            let Some(slot) = slot else { continue };
            let nu = s.unit_mut(slot);
            nu.last_open = nu.last_open.max(u.last_open);
            // What the walk cannot see: files of it went elsewhere with their directory.
            if u.partial() {
                nu.set_flag(PARTIAL, true);
            }
            let grew = nu.files.len() != before;
            if u.dirty() || grew || listed.is_none() {
                s.mark_dirty(slot);
            }
        }
        new.complete &= s.complete;
        s.take_read_facts(&mut new);
        *self.store_mut(id).expect("taken above") = s;
        self.apply_pending_opens(id);
    }

    pub(super) fn apply_pending_opens(&mut self, id: StoreId) {
        if self.pending_opens.is_empty() {
            return;
        }
        let Some(key) = self.store(id).map(|s| (s.root, s.rel.clone())) else {
            return;
        };
        let Some(opens) = self.pending_opens.remove(&key) else {
            return;
        };
        let Some(s) = self.store_mut(id) else { return };
        for (stem, at) in opens {
            if let Some(slot) = s.find(&stem) {
                let u = s.unit_mut(slot);
                u.last_open = u.last_open.max(at);
                s.min_stale = true;
            }
        }
    }

    /// A walk starts reading a store (see `reading`); [`Index::end_read`] when it is done.
    pub fn begin_read(&mut self) {
        self.reading = self.reading.saturating_add(1);
    }

    pub fn end_read(&mut self) {
        self.reading = self.reading.saturating_sub(1);
    }

    /// Drops from `new`, a listing of store `id` that began at `since`, the files the watch saw
    /// removed since (after their directory was listed, or the walk would not have found them):
    /// a file removed as the walk read the store is not brought back as a unit that is no
    /// longer there.
    pub fn drop_removed(&self, id: StoreId, new: &mut Store, since: Nanos) {
        let Some(live) = self.store(id) else { return };
        for (sub_name, name, at) in &live.removed {
            if *at < since {
                continue;
            }
            let Some(new_sub) = new.subdir_index(sub_name) else {
                continue;
            };
            if name.is_empty() {
                new.drop_subdir_files(new_sub, false, false);
            } else if let Some(slot) = new.remove_file(new_sub, name)
                && new.units[slot as usize].as_ref().is_some_and(|u| u.files.is_empty())
            {
                new.remove_unit(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::AtimeMode;
    use crate::index::testkit::*;

    #[test]
    fn a_name_the_tables_cannot_hold_leaves_the_store_not_whole_through_a_walk() {
        let (coded, odd) = (
            listing_of(&["1b/shuffle_9_9_0.data"]),
            listing_of(&["0a/shuffle_9_9_0.checksum.MD5", "1b/shuffle_9_9_0.data"]),
        );
        assert!(coded.complete() && odd.complete());
        // The watch adds a name past the slots while a walk reads the store: the walk's
        // listing was whole (and fits with the watch's other names), the index is not.
        let mut ix = Index::default();
        let id = ix.add_store(0, Path::new("blockmgr-9"));
        odd_names_by_events(&mut ix, id, usize::from(ODD));
        let seen = ix.marks(id);
        let sub = ix.store_mut(id).unwrap().subdir("0a");
        ix.file_event(id, sub, b"shuffle_1_0_0.checksum.MD5", FileEvent::Added, 2);
        let new = Store::from_listing(&coded, BASIS, AtimeMode::Strict, 60, Some(1), 0);
        assert!(new.complete);
        ix.install_store(id, new, seen);
        assert!(
            !ix.store(id).unwrap().complete,
            "a name the watch saw and the index lacks"
        );
        // The walk's names and the watch's together are more than the slots hold: the merge
        // cannot take them all, and the store is not whole whatever the listing said.
        let mut ix = Index::default();
        let id = ix.add_store(0, Path::new("blockmgr-9"));
        odd_names_by_events(&mut ix, id, usize::from(ODD));
        let seen = ix.marks(id);
        ix.install_store(
            id,
            Store::from_listing(&odd, BASIS, AtimeMode::Strict, 60, Some(1), 0),
            seen,
        );
        assert!(!ix.store(id).unwrap().complete, "the merge dropped a name");
        // Below the slots, the same merge is whole.
        let mut ix = Index::default();
        let id = ix.add_store(0, Path::new("blockmgr-9"));
        odd_names_by_events(&mut ix, id, 100);
        let seen = ix.marks(id);
        ix.install_store(
            id,
            Store::from_listing(&odd, BASIS, AtimeMode::Strict, 60, Some(1), 0),
            seen,
        );
        assert!(ix.store(id).unwrap().complete);
        assert!(ix.counts_agree());
    }

    #[test]
    fn a_file_removed_as_the_walk_read_its_store_does_not_come_back() {
        let listing = listing_of(&["0a/shuffle_1_1_0.data", "0a/temp_shuffle_1", "1b/shuffle_1_2_0.data"]);
        let listing = {
            // The temp file's name as Spark makes it (a uuid).
            let _ = listing;
            listing_of(&[
                "0a/shuffle_1_1_0.data",
                "0a/temp_shuffle_5a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
                "1b/shuffle_1_2_0.data",
            ])
        };
        let mut ix = Index::default();
        let id = ix.add_store(0, Path::new("blockmgr-9"));
        let (a, b) = {
            let s = ix.store_mut(id).unwrap();
            (s.subdir("0a"), s.subdir("1b"))
        };
        // Removed after the walk began (at 100), before the install: the spill, and all of 1b.
        ix.begin_read();
        ix.file_event(
            id,
            a,
            b"temp_shuffle_5a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
            FileEvent::Removed,
            150,
        );
        ix.subdir_removed(id, b, 160);
        let mut new = Store::from_listing(&listing, BASIS, AtimeMode::Strict, 60, Some(1), 0);
        assert_eq!(new.unit_count(), 3);
        ix.drop_removed(id, &mut new, 100);
        let stems: Vec<Vec<u8>> = new.units().map(|u| u.stem.to_vec()).collect();
        assert_eq!(stems, vec![b"shuffle_1_1_0".to_vec()]);
        // Removals before the walk began are no news to it.
        let mut again = Store::from_listing(&listing, BASIS, AtimeMode::Strict, 60, Some(1), 0);
        ix.drop_removed(id, &mut again, 200);
        assert_eq!(again.unit_count(), 3);
        ix.end_read();
        // With no read in flight a removal is not remembered: no read could need it.
        ix.file_event(id, a, b"shuffle_1_1_0.data", FileEvent::Removed, 300);
        let mut later = Store::from_listing(&listing, BASIS, AtimeMode::Strict, 60, Some(1), 0);
        ix.drop_removed(id, &mut later, 250);
        assert_eq!(later.unit_count(), 3);
    }

    #[test]
    fn units_that_lost_files_to_a_directory_moved_away_stay_partial_through_a_read() {
        let mut ix = Index::default();
        let id = ix.add_store(0, Path::new("blockmgr-9"));
        let (a, b) = {
            let s = ix.store_mut(id).unwrap();
            (s.subdir("0a"), s.subdir("1b"))
        };
        for (sub, name) in [
            (a, &b"shuffle_1_1_0.data"[..]),
            (b, b"shuffle_1_1_0.index"),
            (a, b"shuffle_1_2_0.data"),
            (a, b"shuffle_1_2_0.index"),
            (b, b"shuffle_1_3_0.data"),
        ] {
            ix.file_event(id, sub, name, FileEvent::Added, 1);
        }
        ix.subdir_moved_away(id, a, 2);
        ix.mark_incomplete(id);
        let s = ix.store(id).unwrap();
        let partial = |s: &Store, stem: &[u8]| s.find_unit(stem).map(|u| u.partial);
        assert_eq!(partial(s, b"shuffle_1_1_0"), Some(true), "its .data went");
        assert_eq!(partial(s, b"shuffle_1_2_0"), None, "all of it went: nothing here");
        assert_eq!(partial(s, b"shuffle_1_3_0"), Some(false));
        assert!(!s.complete);
        // The next read finds the store whole without 0a: whole again, the unit still partial.
        let listing = listing_of(&["1b/shuffle_1_1_0.index", "1b/shuffle_1_3_0.data"]);
        let marks = ix.marks(id);
        ix.install_store(
            id,
            Store::from_listing(&listing, BASIS, AtimeMode::Strict, 60, Some(1), 0),
            marks,
        );
        let s = ix.store(id).unwrap();
        assert!(s.complete);
        assert_eq!(partial(s, b"shuffle_1_1_0"), Some(true));
        assert_eq!(partial(s, b"shuffle_1_3_0"), Some(false));
        // Removed (not moved): the units that kept files are not partial.
        let c = ix.store_mut(id).unwrap().subdir("2c");
        ix.file_event(id, c, b"shuffle_1_3_0.index", FileEvent::Added, 3);
        ix.subdir_removed(id, c, 4);
        assert_eq!(partial(ix.store(id).unwrap(), b"shuffle_1_3_0"), Some(false));
        assert!(ix.counts_agree());
    }
}
