//! The marks: a unit's dirty and partial flags, a store's marks of not whole and not watched,
//! and the losses a sweep's [`Fence`] is checked against.

use super::*;

use crate::policy::Nanos;

/// Some event touched the unit since its last refresh: its sums are not current.
pub(super) const DIRTY: u8 = 1;
/// The unit lost files to a directory moved out of its store (they went on elsewhere, with
/// their directory): the rest of it is part of a unit, never deleted (see
/// [`Index::subdir_moved_away`]).
pub(super) const PARTIAL: u8 = 2;

impl Unit {
    pub(super) fn dirty(&self) -> bool {
        self.flags & DIRTY != 0
    }

    pub(super) fn partial(&self) -> bool {
        self.flags & PARTIAL != 0
    }

    pub(super) fn set_flag(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }
}

impl Store {
    pub(super) fn mark_dirty(&mut self, slot: u32) {
        self.set_dirty(slot, true);
    }

    pub(super) fn set_dirty(&mut self, slot: u32, dirty: bool) {
        let u = self.unit_mut(slot);
        if u.dirty() != dirty {
            u.set_flag(DIRTY, dirty);
            if dirty {
                self.dirty_units += 1;
            } else {
                self.dirty_units -= 1;
            }
        }
    }
}

/// What a sweep notes of the index as it begins: a store whose events were lost after that (an
/// overflow, or a watch lost) may hold units whose files the index does not all know, so the
/// sweep decides nothing on it (see [`Index::lost_since`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence(pub(super) u64);

/// What the index lost since a [`Fence`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    Nothing,
    /// Events of this store (a watch of its directories lost).
    Store,
    /// Events of every store (the queue overflowed).
    All,
}

/// What a walk notes of a store as it starts reading it, to tell at install whether the watch
/// marked it meanwhile: the index's epoch, the store's marks of not whole and of not watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks(pub(super) u64, pub(super) u64, pub(super) u64);

impl Index {
    /// The marks of store `id` now (see [`Index::install_store`]).
    pub fn marks(&self, id: StoreId) -> Marks {
        let (whole, watch) = self.store(id).map_or((0, 0), |s| (s.marks_whole, s.marks_watch));
        Marks(self.epoch, whole, watch)
    }

    /// Some of store `id`'s directories have no watch: it is read at every interval, and its
    /// units are held from the TTL until it is watched whole again for `max_age`.
    pub fn mark_unwatched(&mut self, id: StoreId) {
        let loss = self.lose();
        if let Some(s) = self.store_mut(id) {
            s.watched_since = None;
            s.unwatched = s.unwatched.saturating_add(1);
            s.marks_watch += 1;
            s.lost_at = loss;
        }
    }

    /// Part of store `id` could not be read, or is not where its files say: none of its units
    /// is known whole until a walk reads it again.
    pub fn mark_not_whole(&mut self, id: StoreId) {
        let loss = self.lose();
        if let Some(s) = self.store_mut(id) {
            s.lost_at = loss;
            s.complete = false;
            s.watched_since = None;
            s.marks_whole += 1;
            s.marks_watch += 1;
        }
    }

    /// An `NN` directory of store `id` moved away with its files: nothing of the store goes
    /// until a walk finds it whole again (the next sweep reads it: see
    /// `walk::reread_unwatched`), and the units that lost files with it never (they are partial:
    /// see [`Index::subdir_moved_away`]).
    pub fn mark_incomplete(&mut self, id: StoreId) {
        if let Some(s) = self.store_mut(id) {
            s.complete = false;
            s.marks_whole += 1;
        }
    }

    /// Content arrived in store `id` from outside it (an `NN` directory moved in): what it
    /// was used for before is unknown, so the store counts as watched from now.
    pub fn mark_watched_from(&mut self, id: StoreId, at: Nanos) {
        if let Some(s) = self.store_mut(id) {
            s.watched_since = s.watched_since.map(|w| w.max(at));
            s.marks_watch += 1;
        }
    }

    /// The watch lost events (its queue overflowed): nothing is watched until walks add the
    /// watches again, and each store counts as watched only from then, so the TTL holds every
    /// unit for `max_age` (the opens that were lost may have been anything's).
    pub fn lost_events(&mut self) {
        self.epoch += 1;
        self.overflow_at = self.lose();
        for (_, slot) in &mut self.stores {
            if let Some(s) = slot {
                s.watched_since = None;
            }
        }
    }

    pub(super) fn lose(&mut self) -> u64 {
        self.losses += 1;
        self.losses
    }

    /// The losses so far, for a sweep that begins (see [`Fence`]).
    pub fn fence(&self) -> Fence {
        Fence(self.losses)
    }

    /// What the index lost of store `id` since `fence` (`None` for `id`: of any store).
    pub fn lost_since(&self, fence: Fence, id: Option<StoreId>) -> Lost {
        if self.overflow_at > fence.0 {
            Lost::All
        } else if id.and_then(|id| self.store(id)).is_some_and(|s| s.lost_at > fence.0) {
            Lost::Store
        } else {
            Lost::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::AtimeMode;
    use crate::index::testkit::*;

    #[test]
    fn what_the_watch_marked_while_a_walk_read_the_store_stands() {
        let listing = listing_of(&["0a/shuffle_1_1_0.data", "1b/shuffle_1_1_0.index"]);
        // (mark, whole after the install, watched after the install)
        for (mark, whole, watched) in [
            (Index::mark_not_whole as fn(&mut Index, StoreId), false, false),
            (Index::mark_unwatched, true, false),
            (Index::mark_incomplete, false, true),
        ] {
            let mut ix = Index::default();
            let id = ix.add_store(0, Path::new("blockmgr-9"));
            let seen = ix.marks(id);
            // The watch marks it while the walk reads it.
            mark(&mut ix, id);
            ix.install_store(
                id,
                Store::from_listing(&listing, BASIS, AtimeMode::Strict, 60, Some(1), 0),
                seen,
            );
            let s = ix.store(id).unwrap();
            assert_eq!((s.complete, s.watched_since.is_some()), (whole, watched));
        }
        // Events lost meanwhile: the store does not count as watched.
        let mut ix = Index::default();
        let id = ix.add_store(0, Path::new("blockmgr-9"));
        let seen = ix.marks(id);
        ix.lost_events();
        ix.install_store(
            id,
            Store::from_listing(&listing, BASIS, AtimeMode::Strict, 60, Some(1), 0),
            seen,
        );
        assert_eq!(ix.store(id).unwrap().watched_since, None);
        assert!(ix.store(id).unwrap().complete);
        // Nothing marked: the walk's view is taken.
        let mut ix = Index::default();
        let id = ix.add_store(0, Path::new("blockmgr-9"));
        let seen = ix.marks(id);
        ix.install_store(
            id,
            Store::from_listing(&listing, BASIS, AtimeMode::Strict, 60, Some(1), 0),
            seen,
        );
        assert_eq!(ix.store(id).unwrap().watched_since, Some(1));
        assert!(ix.counts_agree());
    }

    #[test]
    fn a_fence_tells_what_was_lost_after_it() {
        let mut ix = Index::default();
        let (a, b) = (
            ix.add_store(0, Path::new("blockmgr-a")),
            ix.add_store(0, Path::new("blockmgr-b")),
        );
        ix.mark_unwatched(a);
        let fence = ix.fence();
        assert_eq!(ix.lost_since(fence, Some(a)), Lost::Nothing, "lost before the fence");
        ix.mark_unwatched(b);
        assert_eq!(ix.lost_since(fence, Some(a)), Lost::Nothing);
        assert_eq!(ix.lost_since(fence, Some(b)), Lost::Store);
        assert_eq!(ix.lost_since(fence, None), Lost::Nothing);
        ix.lost_events();
        assert_eq!(ix.lost_since(fence, Some(a)), Lost::All);
        assert_eq!(ix.lost_since(ix.fence(), None), Lost::Nothing);
    }
}
