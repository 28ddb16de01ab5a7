//! A store's tables: its sub-directories by slot and generation, its stems, its units by the
//! hash of their stem, and the names (suffix codes and odd names) its files are held by.

use super::*;
use std::hash::Hasher;
use std::path::PathBuf;

use crate::config::Timestamp;
use crate::disk::AtimeMode;
use crate::policy::Nanos;
use crate::spark::Kind;
use crate::store_dir::Listing;

/// Suffixes that follow a stem in most names; anything else (the writer's in-progress
/// `.<uuid>` names) is kept whole in the store's odd names.
pub(super) const SUFFIXES: [&[u8]; 7] = [
    b"",
    b".data",
    b".index",
    b".meta",
    b".checksum.ADLER32",
    b".checksum.CRC32",
    b".checksum.CRC32C",
];
/// A file's name code with this bit set is a slot of the store's odd names.
pub(super) const ODD: u16 = 0x8000;

/// Per store: its units, keyed by a hash of the stem.
#[derive(Debug, Default)]
pub struct Store {
    pub root: u32,
    pub rel: PathBuf,
    /// `NN` sub-directory names by slot; a removed one's slot is `None` until a new directory
    /// takes it (no file of any unit refers to a free slot).
    pub(super) subdirs: Vec<Option<Box<str>>>,
    /// Each slot's generation (see [`SubdirId`]), and the free slots.
    pub(super) subdir_gens: Vec<u32>,
    pub(super) free_subdirs: Vec<u32>,
    pub(super) stems: Vec<u8>,
    pub(super) units: Vec<Option<Unit>>,
    pub(super) free_units: Vec<u32>,
    /// Slots by the hash of their unit's stem, compared by the stem itself: 4 bytes a unit, where
    /// a map from hash to slot took 16 (the index's largest part after the units).
    pub(super) by_stem: hashbrown::HashTable<u32>,
    pub(super) odd_names: Vec<Option<Box<[u8]>>>,
    pub(super) free_odd: Vec<u16>,
    /// The listing it was loaded from was complete (see [`Listing::complete`]).
    pub complete: bool,
    /// Since when every directory of the store has been watched without a gap; `None` when
    /// some of them are not watched (no watch left, or not yet).
    pub watched_since: Option<Nanos>,
    /// The last time anything in it was created, removed, renamed, opened or written, by
    /// directory timestamps and by what the watch saw.
    pub last_activity: Nanos,
    /// Its directories that have no watch (as of the walk that read it).
    pub unwatched: u32,
    /// What its directories said when it was read (birth, last change, `executor-*` parent),
    /// and their `(device, inode)`: what its liveness is judged on when it is empty.
    pub dir_facts: crate::store_dir::DirFacts,
    pub dir_ids: Vec<(u64, u64)>,
    /// How many of its units need a refresh (kept as a count: scanning the units for it on
    /// every event would make a store's cost quadratic in its units).
    pub(super) dirty_units: u32,
    /// Bytes of `stems` that live units use (the rest is garbage until compacted).
    pub(super) live_stem: usize,
    /// How often the watch found it not known whole, and not watched: a walk that read it while
    /// these moved does not take the store as whole, or as watched (see
    /// [`Index::install_store`]).
    pub(super) marks_whole: u64,
    pub(super) marks_watch: u64,
    /// The index's loss count when the watch last lost events of it (see [`Fence`]).
    pub(super) lost_at: u64,
    /// Files left under the private name by a deletion that did not finish, as the walk that
    /// read it found them, with their sub-directory's name: removed once old enough.
    pub leftovers: Vec<(Box<str>, crate::store_dir::Leftover)>,
    /// Spark files (and whole sub-directories: an empty name) seen removed lately, with when:
    /// a walk that listed one before it went must not bring it back (see
    /// [`Index::drop_removed`]).
    pub(super) removed: std::collections::VecDeque<(Box<str>, Box<[u8]>, Nanos)>,
    /// Oldest last use among its units of each kind (kept current unless `min_stale`).
    pub(super) min_stale: bool,
    pub(super) min_last_use: [Nanos; Kind::ALL.len()],
}

/// The hash units are keyed by in a store's stem table.
pub fn stem_hash(stem: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(stem);
    h.finish()
}

/// Makes room for `more` elements, growing by an eighth rather than doubling: a store's tables
/// are made to measure when a walk reads it, and the first unit added after that would
/// otherwise double them (at a million files, 20 MiB more at the first write to each store).
pub(super) fn grow_by_an_eighth<T>(v: &mut Vec<T>, more: usize) {
    if v.capacity() - v.len() < more {
        v.reserve_exact(more.max(v.len() / 8).max(16));
    }
}

/// The stem of the unit in `slot` ("" for a free slot: it equals no stem a unit has).
pub(super) fn stem_of<'a>(units: &[Option<Unit>], stems: &'a [u8], slot: u32) -> &'a [u8] {
    units[slot as usize].as_ref().map_or(&[][..], |u| {
        &stems[u.stem_at as usize..u.stem_at as usize + usize::from(u.stem_len)]
    })
}

impl Store {
    pub(super) fn new(root: u32, rel: PathBuf) -> Store {
        Store {
            root,
            rel,
            min_last_use: [Nanos::MAX; Kind::ALL.len()],
            last_activity: Nanos::MIN,
            ..Store::default()
        }
    }

    /// A store as a walk read it (`stat_time`: when its files were stat'ed), to install with
    /// [`Index::install_store`].
    pub fn from_listing(
        listing: &Listing,
        basis: &[Timestamp],
        mode: AtimeMode,
        stat_time: Nanos,
        watched_since: Option<Nanos>,
        dir_activity: Nanos,
    ) -> Store {
        let mut s = Store::new(0, PathBuf::new());
        // Before the files: adding them may find the store cannot be held whole.
        s.complete = listing.complete();
        let map: Vec<u32> = listing.subdirs.iter().map(|name| s.subdir_slot_for(name)).collect();
        let mut grouping = crate::policy::Grouping::default();
        grouping.group(
            &listing.files,
            |f| f.stem(&listing.names),
            crate::store_dir::StoreFile::stem_hash,
        );
        // Made to measure: the tables are not grown (and their pages faulted) step by step.
        let stem_bytes = grouping
            .units
            .iter()
            .map(|r| grouping.files[r.start].stem(&listing.names).len())
            .sum();
        s.reserve(grouping.units.len(), stem_bytes);
        for range in grouping.units.iter().cloned() {
            let files = &grouping.files[range];
            // A group is one stem, listed once: its unit is new to this fresh store, and the
            // listing already parsed each name (no lookup of the stem, no parse again).
            let mut slot = None;
            for f in files {
                let (subdir, name) = (map[f.subdir as usize], f.name(&listing.names));
                let stem_len = f.stem(&listing.names).len();
                if !s.fits(subdir, name, stem_len) {
                    continue;
                }
                let unit = *slot.get_or_insert_with(|| s.insert(f.kind, &name[..stem_len]));
                s.attach(unit, subdir, name, stem_len);
            }
            let Some(slot) = slot else { continue };
            s.set_stats(
                slot,
                UnitStats::of(files.iter().map(|f| &f.stat), basis, mode, stat_time),
            );
        }
        s.watched_since = watched_since;
        s.last_activity = dir_activity;
        s.leftovers = listing
            .leftovers
            .iter()
            .map(|l| (listing.subdirs[l.subdir as usize].clone(), l.clone()))
            .collect();
        s.min_stale = true;
        s
    }

    pub fn unit_count(&self) -> usize {
        self.by_stem.len()
    }

    /// No unit and no leftover: nothing of Spark's in it, as far as the index knows.
    pub fn is_empty(&self) -> bool {
        self.unit_count() == 0 && self.leftovers.is_empty()
    }

    /// The sub-directory names, in index order (`None`: removed).
    pub fn subdir_names(&self) -> Vec<Box<str>> {
        self.subdirs
            .iter()
            .map(|s| s.clone().unwrap_or_else(|| "".into()))
            .collect()
    }

    /// The slot of sub-directory `name`.
    pub fn subdir_index(&self, name: &str) -> Option<u32> {
        self.subdirs
            .iter()
            .position(|s| s.as_deref() == Some(name))
            .map(|i| i as u32)
    }

    /// The handle of sub-directory `name`, if the store has it.
    pub fn subdir_id(&self, name: &str) -> Option<SubdirId> {
        self.subdir_index(name).map(|slot| self.handle(slot))
    }

    /// The handle of sub-directory `name`, added if new.
    pub fn subdir(&mut self, name: &str) -> SubdirId {
        let slot = self.subdir_slot_for(name);
        self.handle(slot)
    }

    pub(super) fn handle(&self, slot: u32) -> SubdirId {
        (u64::from(self.subdir_gens[slot as usize]) << 32) | u64::from(slot)
    }

    /// The slot of sub-directory handle `id`, if it is still that directory's (not freed since,
    /// nor taken by another).
    pub fn subdir_of(&self, id: SubdirId) -> Option<u32> {
        let slot = subdir_slot(id);
        (self
            .subdir_gens
            .get(slot as usize)
            .is_some_and(|g| u64::from(*g) == id >> 32)
            && self.subdirs[slot as usize].is_some())
        .then_some(slot)
    }

    /// The slot of sub-directory `name`, added if new: a free slot when there is one.
    pub(super) fn subdir_slot_for(&mut self, name: &str) -> u32 {
        if let Some(i) = self.subdir_index(name) {
            return i;
        }
        if let Some(slot) = self.free_subdirs.pop() {
            self.subdirs[slot as usize] = Some(name.into());
            return slot;
        }
        self.subdirs.push(Some(name.into()));
        self.subdir_gens.push(0);
        (self.subdirs.len() - 1) as u32
    }

    /// Frees slot `slot` (its directory went, and its files with it): the handles of it that
    /// the watch and the walks hold no longer reach it.
    pub(super) fn free_subdir(&mut self, slot: u32) {
        if let Some(name) = self.subdirs.get_mut(slot as usize)
            && name.take().is_some()
        {
            let g = &mut self.subdir_gens[slot as usize];
            *g = g.wrapping_add(1);
            self.free_subdirs.push(slot);
        }
    }

    pub(super) fn stem(&self, u: &Unit) -> &[u8] {
        &self.stems[u.stem_at as usize..u.stem_at as usize + usize::from(u.stem_len)]
    }

    pub(super) fn find(&self, stem: &[u8]) -> Option<u32> {
        self.by_stem
            .find(stem_hash(stem), |&s| stem_of(&self.units, &self.stems, s) == stem)
            .copied()
    }

    /// Gives back what the table's growth left over (hashes computed again from the stems).
    pub(super) fn shrink_by_stem(&mut self) {
        let Store {
            by_stem, units, stems, ..
        } = self;
        by_stem.shrink_to_fit(|&s| stem_hash(stem_of(units, stems, s)));
    }

    pub(super) fn unit_mut(&mut self, slot: u32) -> &mut Unit {
        self.units[slot as usize].as_mut().expect("a live unit slot")
    }

    pub(super) fn insert(&mut self, kind: Kind, stem: &[u8]) -> u32 {
        // Dead stems (of removed units) are at most a quarter of the live ones past 4 KiB: at
        // four times, a store under churn grew its table by ~200 KB before the first compaction
        // (RSS over a million files rose 0.1 MiB a minute, for hours).
        if self.stems.len() > 4096 && self.stems.len() > self.live_stem + self.live_stem / 4 {
            self.compact_stems();
        }
        self.live_stem += stem.len();
        self.dirty_units += 1;
        grow_by_an_eighth(&mut self.stems, stem.len());
        let stem_at = self.stems.len() as u32;
        self.stems.extend_from_slice(stem);
        let unit = Unit {
            last_use: Nanos::MIN,
            last_open: Nanos::MIN,
            read_bound: Nanos::MIN,
            freeable_blocks: 0,
            alloc_blocks: 0,
            stem_at,
            stem_len: stem.len() as u16,
            kind,
            flags: DIRTY,
            files: Files::new(),
        };
        let slot = match self.free_units.pop() {
            Some(s) => {
                self.units[s as usize] = Some(unit);
                s
            }
            None => {
                grow_by_an_eighth(&mut self.units, 1);
                self.units.push(Some(unit));
                (self.units.len() - 1) as u32
            }
        };
        let Store {
            by_stem, units, stems, ..
        } = self;
        by_stem.insert_unique(stem_hash(stem), slot, |&s| stem_hash(stem_of(units, stems, s)));
        slot
    }

    pub(super) fn remove_unit(&mut self, slot: u32) {
        let Some(unit) = self.units[slot as usize].take() else {
            return;
        };
        self.live_stem -= usize::from(unit.stem_len);
        if unit.dirty() {
            self.dirty_units -= 1;
        }
        for f in &unit.files {
            self.release_name(f.name);
        }
        let h = stem_hash(self.stem(&unit));
        if let Ok(entry) = self.by_stem.find_entry(h, |&s| s == slot) {
            entry.remove();
        }
        self.free_units.push(slot);
        if unit.last_use <= self.min_last_use[unit.kind as usize] {
            self.min_stale = true;
        }
    }

    pub(super) fn compact_stems(&mut self) {
        let mut stems = Vec::with_capacity(self.live_stem);
        for u in self.units.iter_mut().flatten() {
            let at = u.stem_at as usize;
            let new_at = stems.len() as u32;
            stems.extend_from_slice(&self.stems[at..at + usize::from(u.stem_len)]);
            u.stem_at = new_at;
        }
        self.stems = stems;
    }

    pub(super) fn name_code(&mut self, suffix: &[u8], name: &[u8]) -> u16 {
        if let Some(i) = SUFFIXES.iter().position(|s| *s == suffix) {
            return i as u16;
        }
        let slot = match self.free_odd.pop() {
            Some(s) => {
                self.odd_names[usize::from(s)] = Some(name.into());
                s
            }
            None => {
                self.odd_names.push(Some(name.into()));
                (self.odd_names.len() - 1) as u16
            }
        };
        ODD | slot
    }

    pub(super) fn release_name(&mut self, code: u16) {
        if code & ODD != 0 {
            let slot = code & !ODD;
            self.odd_names[usize::from(slot)] = None;
            self.free_odd.push(slot);
        }
    }

    pub(super) fn file_name(&self, stem: &[u8], f: FileRef) -> Vec<u8> {
        if f.name & ODD != 0 {
            return self.odd_names[usize::from(f.name & !ODD)]
                .as_deref()
                .unwrap_or_default()
                .to_vec();
        }
        [stem, SUFFIXES[usize::from(f.name)]].concat()
    }

    pub(super) fn name_matches(&self, stem: &[u8], f: FileRef, name: &[u8]) -> bool {
        if f.name & ODD != 0 {
            self.odd_names[usize::from(f.name & !ODD)].as_deref() == Some(name)
        } else {
            let suffix = SUFFIXES[usize::from(f.name)];
            name.len() == stem.len() + suffix.len() && name.starts_with(stem) && name.ends_with(suffix)
        }
    }

    /// Room for `units` more units with `stem_bytes` of stems in all.
    pub(super) fn reserve(&mut self, units: usize, stem_bytes: usize) {
        self.units.reserve_exact(units);
        self.stems.reserve_exact(stem_bytes);
        let Store {
            by_stem,
            units: u,
            stems,
            ..
        } = self;
        by_stem.reserve(units, |&s| stem_hash(stem_of(u, stems, s)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_found_by_stem_through_growth_removal_and_slot_reuse() {
        // Against a plain map of what was added and removed: the table keeps finding each live
        // unit by its stem, and no removed one, as it grows, shrinks and slots are reused.
        let mut s = Store::default();
        let sub = s.subdir_slot_for("0a");
        let mut model: std::collections::BTreeMap<u32, u32> = Default::default();
        for round in 0..3u32 {
            for m in 0..5000u32 {
                let name = format!("shuffle_{round}_{m}_0.data");
                let slot = s.add_file(sub, name.as_bytes()).expect("a Spark name makes a unit");
                model.insert(round * 5000 + m, slot);
            }
            for m in (0..5000u32).filter(|m| m % 3 != 0) {
                let slot = s
                    .find(format!("shuffle_{round}_{m}_0").as_bytes())
                    .expect("added above");
                s.remove_unit(slot);
                model.remove(&(round * 5000 + m));
            }
            s.shrink_by_stem();
        }
        assert_eq!(s.unit_count(), model.len());
        for round in 0..3u32 {
            for m in 0..5000u32 {
                let found = s.find(format!("shuffle_{round}_{m}_0").as_bytes());
                assert_eq!(found, model.get(&(round * 5000 + m)).copied(), "shuffle_{round}_{m}_0");
            }
        }
    }
}
