//! The daemon's index of units: every block store below the roots, and in each its units (stem,
//! files, last use by timestamps and by opens, bytes), filled by a walk and kept current by the
//! inotify watch, so that steady-state sweeps decide without reading a directory.
//!
//! Pure data: it is fed listings ([`Index::install_store`] of a [`Store::from_listing`]), file
//! events ([`Index::file_event`]) and fresh stats ([`Index::refresh`]); it never touches the
//! filesystem itself. The watch ([`crate::daemon::watch`]) and the sweep feed it; deletion
//! re-checks every file on disk, so a stale index can only make the daemon keep a file, never
//! delete a wrong one.
//!
//! Memory is what bounds it: about 100 bytes per unit (99 by RSS over a million files). A
//! unit keeps no per-file stats, only its files' names (the stem once, each file as its
//! sub-directory and a suffix code) and the unit's sums; any event on one of its files marks it
//! dirty, and a refresh stats all its files again.
//!
//! Files: `mod.rs` holds the [`Index`] (its stores by slot and path, and the lookups); then
//! - `store.rs`: a [`Store`]'s tables (sub-directories, stems, units by stem, names);
//! - `unit.rs`: the unit and its files, its stats ([`UnitStats`], [`read_bound`]) and views;
//! - `marks.rs`: dirty and partial units, stores not whole or not watched, [`Fence`]s;
//! - `merge.rs`: a walk's read of a store installed over what the watch kept;
//! - `events.rs`: the watch's file and directory events, and opens;
//! - `reconcile.rs`: refreshes of dirty units, and a walk's [`Drift`] from the index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod events;
mod marks;
mod merge;
mod reconcile;
mod store;
mod unit;

pub use events::FileEvent;
pub use marks::{Fence, Lost, Marks};
pub use reconcile::{Drift, Fresh, ToStat};
pub use store::{Store, stem_hash};
pub use unit::{UnitStats, UnitView, read_bound};

use events::PendingOpens;
use marks::{DIRTY, PARTIAL};
use store::{ODD, SUFFIXES};
use unit::{FileRef, Files, Unit};

/// A store's number in the index: its slot and the slot's generation, so a number kept by the
/// watch or a walk after its store went never reaches the store that took the slot.
pub type StoreId = u64;

/// A sub-directory of a store, as the watch and the walks hold it: its slot in the store's table
/// (low 32 bits) and the slot's generation (high 32 bits), bumped each time the slot is freed. A
/// removed directory's slot is given to the next new one (a store whose `NN` directories come
/// and go would otherwise grow its table until no name fits), and a late event for the removed
/// one's watch, or a walk's handle taken before it went, never reaches the directory that took
/// the slot.
pub type SubdirId = u64;

/// The slot of a sub-directory handle.
pub fn subdir_slot(id: SubdirId) -> u32 {
    id as u32
}

/// A store's slot: stores are listed (`Index::stores`) in the order of their slots.
pub fn slot_of(id: StoreId) -> usize {
    (id & 0xffff_ffff) as usize
}

/// Every store below the roots.
#[derive(Debug, Default)]
pub struct Index {
    /// Slots of stores, with each slot's generation.
    stores: Vec<(u32, Option<Store>)>,
    free: Vec<usize>,
    /// Ordered: the stores below a directory are one range (see [`Index::stores_below`]).
    by_path: std::collections::BTreeMap<(u32, PathBuf), StoreId>,
    /// Opens recorded for units before the index knew them (restored from the state file, or
    /// seen before a store was loaded), by (root, store rel), then stem: a store's install
    /// looks up its own, not every pending open (500,000 restored ones over 12,000 stores made
    /// each walk quadratic).
    pending_opens: HashMap<(u32, PathBuf), PendingOpens>,
    /// How often the watch lost events (queue overflows): like a store's `marks`, for all.
    epoch: u64,
    /// Losses so far: overflows, and stores whose directories lost their watch (a store's
    /// `lost_at`, and `overflow_at` for all, take its value at each): see [`Fence`].
    losses: u64,
    overflow_at: u64,
    /// Stores being read by a walk now. Removals are remembered (`Store::removed`) only then:
    /// they matter only to a read in flight (`drop_removed`), and a daemon that noted every
    /// removal for ten minutes held megabytes of them under churn.
    reading: u32,
}

impl Index {
    pub fn store(&self, id: StoreId) -> Option<&Store> {
        match self.stores.get(slot_of(id))? {
            (g, Some(s)) if u64::from(*g) == id >> 32 => Some(s),
            _ => None,
        }
    }

    pub fn store_mut(&mut self, id: StoreId) -> Option<&mut Store> {
        match self.stores.get_mut(slot_of(id))? {
            (g, Some(s)) if u64::from(*g) == id >> 32 => Some(s),
            _ => None,
        }
    }

    pub fn find(&self, root: u32, rel: &Path) -> Option<StoreId> {
        self.by_path.get(&(root, rel.to_owned())).copied()
    }

    /// The stores at or below `rel` of root `root`, found by range (a subtree removed, a root
    /// forgotten), not by looking at every store.
    pub fn stores_below(&self, root: u32, rel: &Path) -> Vec<StoreId> {
        self.by_path
            .range((root, rel.to_owned())..)
            .take_while(|((r, p), _)| *r == root && p.starts_with(rel))
            .map(|(_, id)| *id)
            .collect()
    }

    pub fn stores(&self) -> impl Iterator<Item = (StoreId, &Store)> {
        self.stores
            .iter()
            .enumerate()
            .filter_map(|(i, (g, s))| Some(((u64::from(*g) << 32) | i as u64, s.as_ref()?)))
    }

    pub fn store_ids(&self) -> Vec<StoreId> {
        self.stores().map(|(i, _)| i).collect()
    }

    pub fn len(&self) -> usize {
        self.stores().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Directories of stores that have no watch.
    pub fn unwatched_dirs(&self) -> usize {
        self.stores().map(|(_, s)| s.unwatched as usize).sum()
    }

    /// Units in all stores.
    pub fn unit_count(&self) -> usize {
        self.stores().map(|(_, s)| s.unit_count()).sum()
    }

    /// The store at `root`/`rel`, added (empty, not yet loaded) if new.
    pub fn add_store(&mut self, root: u32, rel: &Path) -> StoreId {
        if let Some(id) = self.find(root, rel) {
            return id;
        }
        let store = Store::new(root, rel.to_owned());
        let slot = match self.free.pop() {
            Some(slot) => {
                let e = &mut self.stores[slot];
                e.0 = e.0.wrapping_add(1);
                e.1 = Some(store);
                slot
            }
            None => {
                self.stores.push((0, Some(store)));
                self.stores.len() - 1
            }
        };
        let id = (u64::from(self.stores[slot].0) << 32) | slot as u64;
        self.by_path.insert((root, rel.to_owned()), id);
        id
    }

    pub fn remove_store(&mut self, id: StoreId) {
        if self.store(id).is_none() {
            return;
        }
        if let Some(s) = self.stores[slot_of(id)].1.take() {
            self.by_path.remove(&(s.root, s.rel));
            self.free.push(slot_of(id));
        }
    }

    /// Forgets every store below `root` (a root removed, re-created or remounted).
    pub fn remove_root(&mut self, root: u32) {
        for id in self.stores_below(root, Path::new("")) {
            self.remove_store(id);
        }
    }

    /// Whether any unit waits for a refresh.
    pub fn has_dirty(&self) -> bool {
        self.stores().any(|(_, s)| s.dirty_units > 0)
    }
}

#[cfg(test)]
mod testkit {
    //! Helpers the tests of every file of the index share.
    use super::*;
    use crate::config::Timestamp;
    use crate::disk::FileStat;
    use crate::policy::Nanos;
    use crate::store_dir::Listing;

    pub(super) fn stat(mtime: Nanos, atime: Nanos, alloc: u64, nlink: u64) -> FileStat {
        FileStat {
            dev: 1,
            ino: 1,
            size: alloc,
            alloc,
            nlink,
            mtime,
            atime,
            ctime: mtime,
        }
    }

    pub(super) const BASIS: &[Timestamp] = &[Timestamp::Mtime, Timestamp::Atime];

    /// A listing of `blockmgr-9` with `names` (created on disk for the occasion).
    pub(super) fn listing_of(names: &[&str]) -> Listing {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("blockmgr-9");
        for name in names {
            let p = store.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        read_listing(dir.path(), "blockmgr-9")
    }

    /// What a walk lists of store `root/store`.
    pub(super) fn read_listing(root: &Path, store: &str) -> Listing {
        let fd = rustix::fs::open(root, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
        let mount = crate::fsx::MountId::of(&crate::fsx::statx_fd(&fd).unwrap());
        let mut listing = Listing::default();
        crate::store_dir::StoreDir::open(root, Path::new(store), mount)
            .unwrap()
            .read(&mut Vec::new(), &mut listing);
        listing
    }

    /// Store `id` given `n` odd names (a checksum algorithm the table has no code for) in
    /// sub-directory `0a`, by events: with `n` = [`ODD`], its odd-name slots are full.
    pub(super) fn odd_names_by_events(ix: &mut Index, id: StoreId, n: usize) {
        let sub = ix.store_mut(id).unwrap().subdir("0a");
        for m in 0..n {
            let name = format!("shuffle_0_{m}_0.checksum.MD5");
            ix.file_event(id, sub, name.as_bytes(), FileEvent::Added, 1);
        }
    }
}
