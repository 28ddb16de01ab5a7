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

use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

use crate::config::Timestamp;
use crate::disk::{AtimeMode, FileStat};
use crate::policy::Nanos;
use crate::spark::{self, Kind};
use crate::store_dir::Listing;

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

/// Suffixes that follow a stem in most names; anything else (the writer's in-progress
/// `.<uuid>` names) is kept whole in the store's odd names.
const SUFFIXES: [&[u8]; 7] = [
    b"",
    b".data",
    b".index",
    b".meta",
    b".checksum.ADLER32",
    b".checksum.CRC32",
    b".checksum.CRC32C",
];
/// A file's name code with this bit set is a slot of the store's odd names.
const ODD: u16 = 0x8000;

/// One file of a unit: its sub-directory (index into the store's) and its name code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileRef {
    subdir: u16,
    name: u16,
}

/// A unit's files: a map output's three fit without a heap block (it is most of the index).
type Files = smallvec::SmallVec<[FileRef; 3]>;

/// A unit: what the policy needs to judge it, and its files' names.
#[derive(Clone, Debug)]
struct Unit {
    /// Newest last use of its files by `age_basis` at the last refresh.
    last_use: Nanos,
    /// Last open the watch saw (`Nanos::MIN`: none).
    last_open: Nanos,
    /// Timestamps prove no read of any of its files after this (see [`read_bound`]).
    read_bound: Nanos,
    /// What deleting it frees, and what it occupies, in 512-byte blocks.
    freeable_blocks: u32,
    alloc_blocks: u32,
    stem_at: u32,
    stem_len: u16,
    kind: Kind,
    /// [`DIRTY`] and [`PARTIAL`]: one byte, where two `bool`s made a unit 8 bytes larger (72
    /// to 80, most of the index being units).
    flags: u8,
    files: Files,
}

/// Some event touched the unit since its last refresh: its sums are not current.
const DIRTY: u8 = 1;
/// The unit lost files to a directory moved out of its store (they went on elsewhere, with
/// their directory): the rest of it is part of a unit, never deleted (see
/// [`Index::subdir_moved_away`]).
const PARTIAL: u8 = 2;

impl Unit {
    fn dirty(&self) -> bool {
        self.flags & DIRTY != 0
    }

    fn partial(&self) -> bool {
        self.flags & PARTIAL != 0
    }

    fn set_flag(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }
}

/// Per store: its units, keyed by a hash of the stem.
#[derive(Debug, Default)]
pub struct Store {
    pub root: u32,
    pub rel: PathBuf,
    /// `NN` sub-directory names by slot; a removed one's slot is `None` until a new directory
    /// takes it (no file of any unit refers to a free slot).
    subdirs: Vec<Option<Box<str>>>,
    /// Each slot's generation (see [`SubdirId`]), and the free slots.
    subdir_gens: Vec<u32>,
    free_subdirs: Vec<u32>,
    stems: Vec<u8>,
    units: Vec<Option<Unit>>,
    free_units: Vec<u32>,
    /// Slots by the hash of their unit's stem, compared by the stem itself: 4 bytes a unit, where
    /// a map from hash to slot took 16 (the index's largest part after the units).
    by_stem: hashbrown::HashTable<u32>,
    odd_names: Vec<Option<Box<[u8]>>>,
    free_odd: Vec<u16>,
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
    dirty_units: u32,
    /// Bytes of `stems` that live units use (the rest is garbage until compacted).
    live_stem: usize,
    /// How often the watch found it not known whole, and not watched: a walk that read it while
    /// these moved does not take the store as whole, or as watched (see
    /// [`Index::install_store`]).
    marks_whole: u64,
    marks_watch: u64,
    /// The index's loss count when the watch last lost events of it (see [`Fence`]).
    lost_at: u64,
    /// Files left under the private name by a deletion that did not finish, as the walk that
    /// read it found them, with their sub-directory's name: removed once old enough.
    pub leftovers: Vec<(Box<str>, crate::store_dir::Leftover)>,
    /// Spark files (and whole sub-directories: an empty name) seen removed lately, with when:
    /// a walk that listed one before it went must not bring it back (see
    /// [`Index::drop_removed`]).
    removed: std::collections::VecDeque<(Box<str>, Box<[u8]>, Nanos)>,
    /// Oldest last use among its units of each kind (kept current unless `min_stale`).
    min_stale: bool,
    min_last_use: [Nanos; Kind::ALL.len()],
}

/// A unit as the sweep sees it.
#[derive(Clone, Debug)]
pub struct UnitView<'a> {
    pub slot: u32,
    pub kind: Kind,
    pub stem: &'a [u8],
    pub last_use: Nanos,
    pub last_open: Nanos,
    pub read_bound: Nanos,
    pub freeable: u64,
    pub alloc: u64,
    pub dirty: bool,
    /// Files of it went with a directory moved out of its store: kept.
    pub partial: bool,
    pub nfiles: usize,
}

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

/// A dirty unit's files to stat again: (store, unit slot, stem, each file's sub-directory and
/// name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToStat {
    pub store: StoreId,
    pub slot: u32,
    pub stem: Box<[u8]>,
    pub files: Vec<(SubdirId, Box<[u8]>)>,
}

/// The fresh stats of one unit's files, in the order of [`ToStat::files`] (`None`: gone or not
/// a regular file).
pub type Fresh = Vec<Option<FileStat>>;

/// The hash units are keyed by in a store's stem table.
pub fn stem_hash(stem: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(stem);
    h.finish()
}

/// Makes room for `more` elements, growing by an eighth rather than doubling: a store's tables
/// are made to measure when a walk reads it, and the first unit added after that would
/// otherwise double them (at a million files, 20 MiB more at the first write to each store).
fn grow_by_an_eighth<T>(v: &mut Vec<T>, more: usize) {
    if v.capacity() - v.len() < more {
        v.reserve_exact(more.max(v.len() / 8).max(16));
    }
}

/// The stem of the unit in `slot` ("" for a free slot: it equals no stem a unit has).
fn stem_of<'a>(units: &[Option<Unit>], stems: &'a [u8], slot: u32) -> &'a [u8] {
    units[slot as usize].as_ref().map_or(&[][..], |u| {
        &stems[u.stem_at as usize..u.stem_at as usize + usize::from(u.stem_len)]
    })
}

/// Up to when a file may have been read without its timestamps showing it, as far as they can
/// tell at `stat_time` on a mount whose atime behaves as `mode`: reads later than the returned
/// time would have moved atime. `stat_time` means "unknown".
pub fn read_bound(st: &FileStat, mode: AtimeMode, stat_time: Nanos) -> Nanos {
    const DAY: Nanos = 24 * 3600 * 1_000_000_000;
    let bound = match mode {
        // Every read moves atime; setting it back (utimes) moves ctime.
        AtimeMode::Strict => st.atime.max(st.ctime),
        AtimeMode::Relatime => {
            // A read more than a day after atime would have moved it...
            let mut bound = st.atime.saturating_add(DAY);
            // ...and so would any read after the last change, while atime is not newer.
            let changed = st.mtime.max(st.ctime);
            if st.atime <= changed {
                bound = bound.min(changed);
            }
            bound
        }
        AtimeMode::NoAtime => stat_time,
    };
    bound.min(stat_time)
}

/// A unit's sums from its files' stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitStats {
    pub last_use: Nanos,
    pub read_bound: Nanos,
    pub freeable: u64,
    pub alloc: u64,
}

impl UnitStats {
    pub fn of<'s>(
        stats: impl IntoIterator<Item = &'s FileStat>,
        basis: &[Timestamp],
        mode: AtimeMode,
        stat_time: Nanos,
    ) -> UnitStats {
        let mut u = UnitStats {
            last_use: Nanos::MIN,
            read_bound: Nanos::MIN,
            freeable: 0,
            alloc: 0,
        };
        for st in stats {
            u.last_use = u.last_use.max(st.last_use(basis));
            u.read_bound = u.read_bound.max(read_bound(st, mode, stat_time));
            u.freeable = u.freeable.saturating_add(st.freeable());
            u.alloc = u.alloc.saturating_add(st.alloc);
        }
        u
    }
}

fn blocks(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(512)).unwrap_or(u32::MAX)
}

impl Store {
    fn new(root: u32, rel: PathBuf) -> Store {
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

    fn handle(&self, slot: u32) -> SubdirId {
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
    fn subdir_slot_for(&mut self, name: &str) -> u32 {
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
    fn free_subdir(&mut self, slot: u32) {
        if let Some(name) = self.subdirs.get_mut(slot as usize)
            && name.take().is_some()
        {
            let g = &mut self.subdir_gens[slot as usize];
            *g = g.wrapping_add(1);
            self.free_subdirs.push(slot);
        }
    }

    fn stem(&self, u: &Unit) -> &[u8] {
        &self.stems[u.stem_at as usize..u.stem_at as usize + usize::from(u.stem_len)]
    }

    fn find(&self, stem: &[u8]) -> Option<u32> {
        self.by_stem
            .find(stem_hash(stem), |&s| stem_of(&self.units, &self.stems, s) == stem)
            .copied()
    }

    /// Takes what a walk's read of the store (`new`) says of the store as a whole, once its
    /// units are in place, and gives back what building the tables left over.
    fn take_read_facts(&mut self, new: &mut Store) {
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

    /// Gives back what the table's growth left over (hashes computed again from the stems).
    fn shrink_by_stem(&mut self) {
        let Store {
            by_stem, units, stems, ..
        } = self;
        by_stem.shrink_to_fit(|&s| stem_hash(stem_of(units, stems, s)));
    }

    fn unit_mut(&mut self, slot: u32) -> &mut Unit {
        self.units[slot as usize].as_mut().expect("a live unit slot")
    }

    fn insert(&mut self, kind: Kind, stem: &[u8]) -> u32 {
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

    fn remove_unit(&mut self, slot: u32) {
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

    fn compact_stems(&mut self) {
        let mut stems = Vec::with_capacity(self.live_stem);
        for u in self.units.iter_mut().flatten() {
            let at = u.stem_at as usize;
            let new_at = stems.len() as u32;
            stems.extend_from_slice(&self.stems[at..at + usize::from(u.stem_len)]);
            u.stem_at = new_at;
        }
        self.stems = stems;
    }

    fn name_code(&mut self, suffix: &[u8], name: &[u8]) -> u16 {
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

    fn release_name(&mut self, code: u16) {
        if code & ODD != 0 {
            let slot = code & !ODD;
            self.odd_names[usize::from(slot)] = None;
            self.free_odd.push(slot);
        }
    }

    fn file_name(&self, stem: &[u8], f: FileRef) -> Vec<u8> {
        if f.name & ODD != 0 {
            return self.odd_names[usize::from(f.name & !ODD)]
                .as_deref()
                .unwrap_or_default()
                .to_vec();
        }
        [stem, SUFFIXES[usize::from(f.name)]].concat()
    }

    fn name_matches(&self, stem: &[u8], f: FileRef, name: &[u8]) -> bool {
        if f.name & ODD != 0 {
            self.odd_names[usize::from(f.name & !ODD)].as_deref() == Some(name)
        } else {
            let suffix = SUFFIXES[usize::from(f.name)];
            name.len() == stem.len() + suffix.len() && name.starts_with(stem) && name.ends_with(suffix)
        }
    }

    /// Adds file `name` (a Spark block name) in sub-directory `subdir`; returns its unit.
    fn add_file(&mut self, subdir: u32, name: &[u8]) -> Option<u32> {
        let (kind, stem_len) = spark::parse_block_name(name)?;
        if !self.fits(subdir, name, stem_len) {
            return None;
        }
        let stem = &name[..stem_len];
        let slot = match self.find(stem) {
            Some(s) => s,
            None => self.insert(kind, stem),
        };
        self.attach(slot, subdir, name, stem_len);
        Some(slot)
    }

    /// Whether the tables can hold file `name` (stem `name[..stem_len]`) of sub-directory
    /// `subdir`; when they cannot, marks the store not whole. The odd-name slots are 15 bits,
    /// sub-directory indices 16: past either, nothing of the store goes until a walk reads it
    /// again, and a walk reading it now must not install it as whole either (`marks_whole`).
    fn fits(&mut self, subdir: u32, name: &[u8], stem_len: usize) -> bool {
        let odd_full = self.free_odd.is_empty() && self.odd_names.len() >= usize::from(ODD);
        if subdir > u32::from(u16::MAX) || (odd_full && SUFFIXES.iter().all(|s| *s != &name[stem_len..])) {
            self.complete = false;
            self.marks_whole += 1;
            return false;
        }
        true
    }

    /// Room for `units` more units with `stem_bytes` of stems in all.
    fn reserve(&mut self, units: usize, stem_bytes: usize) {
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

    /// Adds file `name` of sub-directory `subdir` to the unit in `slot` (of its stem), unless
    /// the unit has it already.
    fn attach(&mut self, slot: u32, subdir: u32, name: &[u8], stem_len: usize) {
        let exists = {
            let u = self.units[slot as usize].as_ref().expect("live");
            let stem = self.stem(u);
            u.files
                .iter()
                .any(|f| u32::from(f.subdir) == subdir && self.name_matches(stem, *f, name))
        };
        if !exists {
            let code = self.name_code(&name[stem_len..], name);
            let u = self.unit_mut(slot);
            u.files.push(FileRef {
                subdir: subdir as u16,
                name: code,
            });
        }
    }

    fn remove_file(&mut self, subdir: u32, name: &[u8]) -> Option<u32> {
        let (_, stem_len) = spark::parse_block_name(name)?;
        let slot = self.find(&name[..stem_len])?;
        let pos = {
            let u = self.units[slot as usize].as_ref().expect("live");
            let stem = self.stem(u);
            u.files
                .iter()
                .position(|f| u32::from(f.subdir) == subdir && self.name_matches(stem, *f, name))?
        };
        let f = self.unit_mut(slot).files.swap_remove(pos);
        self.release_name(f.name);
        Some(slot)
    }

    /// Drops every file of sub-directory `subdir` from its units; a unit left without a file
    /// goes, the others are marked dirty when `refresh` (their sums are to be read again), and
    /// partial when `moved` (the files went on elsewhere).
    fn drop_subdir_files(&mut self, subdir: u32, refresh: bool, moved: bool) {
        let slots: Vec<u32> = self
            .units
            .iter()
            .enumerate()
            .filter(|(_, u)| {
                u.as_ref()
                    .is_some_and(|u| u.files.iter().any(|f| u32::from(f.subdir) == subdir))
            })
            .map(|(i, _)| i as u32)
            .collect();
        for slot in slots {
            let files = std::mem::take(&mut self.unit_mut(slot).files);
            let (gone, kept): (Files, Files) = files.into_iter().partition(|f| u32::from(f.subdir) == subdir);
            for f in gone {
                self.release_name(f.name);
            }
            let empty = kept.is_empty();
            let u = self.unit_mut(slot);
            u.files = kept;
            if moved && !empty {
                u.set_flag(PARTIAL, true);
            }
            if empty {
                self.remove_unit(slot);
            } else if refresh {
                self.mark_dirty(slot);
            }
        }
    }

    /// How long a removal is remembered: longer than a walk takes to read one store.
    const REMOVED_FOR: Nanos = 10 * 60 * 1_000_000_000;

    fn note_removed(&mut self, subdir: u32, name: &[u8], at: Nanos) {
        let Some(sub) = self.subdirs.get(subdir as usize).and_then(|n| n.clone()) else {
            return;
        };
        while self
            .removed
            .front()
            .is_some_and(|(_, _, t)| *t < at.saturating_sub(Self::REMOVED_FOR))
            || self.removed.len() >= 4096
        {
            self.removed.pop_front();
        }
        self.removed.push_back((sub, name.into(), at));
    }

    fn mark_dirty(&mut self, slot: u32) {
        self.set_dirty(slot, true);
    }

    fn set_dirty(&mut self, slot: u32, dirty: bool) {
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

    /// The oldest last use among units of each kind.
    pub fn min_last_use(&mut self) -> [Nanos; Kind::ALL.len()] {
        if self.min_stale {
            let mut m = [Nanos::MAX; Kind::ALL.len()];
            for u in self.units.iter().flatten() {
                let k = u.kind as usize;
                m[k] = m[k].min(u.last_use.max(u.last_open));
            }
            self.min_last_use = m;
            self.min_stale = false;
        }
        self.min_last_use
    }

    fn set_stats(&mut self, slot: u32, s: UnitStats) {
        self.set_dirty(slot, false);
        let u = self.unit_mut(slot);
        let was = u.last_use.max(u.last_open);
        u.last_use = s.last_use;
        u.read_bound = s.read_bound;
        u.freeable_blocks = blocks(s.freeable);
        u.alloc_blocks = blocks(s.alloc);
        let (kind, now) = (u.kind as usize, u.last_use.max(u.last_open));
        if now < self.min_last_use[kind] {
            self.min_last_use[kind] = now;
        } else if was <= self.min_last_use[kind] && now != was {
            self.min_stale = true;
        }
    }

    /// The units, as the sweep judges them.
    pub fn units(&self) -> impl Iterator<Item = UnitView<'_>> {
        (0..self.units.len() as u32).filter_map(move |slot| self.unit(slot))
    }

    /// The unit at `slot`, if there is one.
    pub fn unit(&self, slot: u32) -> Option<UnitView<'_>> {
        let u = self.units.get(slot as usize)?.as_ref()?;
        Some(UnitView {
            slot,
            kind: u.kind,
            stem: self.stem(u),
            last_use: u.last_use,
            last_open: u.last_open,
            read_bound: u.read_bound,
            freeable: u64::from(u.freeable_blocks) * 512,
            alloc: u64::from(u.alloc_blocks) * 512,
            dirty: u.dirty(),
            partial: u.partial(),
            nfiles: u.files.len(),
        })
    }

    /// The unit `stem`, if there is one.
    pub fn find_unit(&self, stem: &[u8]) -> Option<UnitView<'_>> {
        self.unit(self.find(stem)?)
    }

    /// The files of the unit at `slot`: (sub-directory index, name).
    pub fn unit_files(&self, slot: u32) -> Vec<(u32, Vec<u8>)> {
        let Some(u) = self.units.get(slot as usize).and_then(Option::as_ref) else {
            return Vec::new();
        };
        let stem = self.stem(u);
        u.files
            .iter()
            .map(|f| (u32::from(f.subdir), self.file_name(stem, *f)))
            .collect()
    }

    /// Files of each kind and their allocated bytes.
    pub fn inventory(&self) -> [(u64, u64); Kind::ALL.len()] {
        let mut inv = [(0u64, 0u64); Kind::ALL.len()];
        for u in self.units.iter().flatten() {
            let e = &mut inv[u.kind as usize];
            e.0 += u.files.len() as u64;
            e.1 += u64::from(u.alloc_blocks) * 512;
        }
        inv
    }
}

/// How the index differed from what a walk found (the reconciliation counts it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// Units on disk the index did not have.
    pub missing: u64,
    /// Units in the index that are not on disk.
    pub extra: u64,
    /// Units in both whose files or size differ.
    pub stale: u64,
}

impl Drift {
    pub fn add(&mut self, o: Drift) {
        self.missing += o.missing;
        self.extra += o.extra;
        self.stale += o.stale;
    }

    pub fn total(&self) -> u64 {
        self.missing + self.extra + self.stale
    }
}

/// Opens of units not known yet, by stem.
type PendingOpens = HashMap<Box<[u8]>, Nanos>;

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

/// What a sweep notes of the index as it begins: a store whose events were lost after that (an
/// overflow, or a watch lost) may hold units whose files the index does not all know, so the
/// sweep decides nothing on it (see [`Index::lost_since`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence(u64);

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
pub struct Marks(u64, u64, u64);

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

    fn lose(&mut self) -> u64 {
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

    fn apply_pending_opens(&mut self, id: StoreId) {
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

    /// How store `id` in the index differs from `fresh`, a store just read from disk. Units
    /// the watch touched since their last refresh are not counted: the walk may have read them
    /// before or after the change.
    pub fn drift(&self, id: StoreId, fresh: &Store) -> Drift {
        let mut d = Drift::default();
        let Some(old) = self.store(id) else { return d };
        for u in fresh.units.iter().flatten() {
            let stem = fresh.stem(u);
            match old.find(stem).and_then(|s| old.units[s as usize].as_ref()) {
                None => d.missing += 1,
                Some(o) if o.dirty() => {}
                // Its files or their size differ. Not its last use: a read through a file
                // already open, or through a mapping, moves atime without an event to see (and
                // a deletion judges on fresh stats anyway).
                Some(o) => {
                    if o.freeable_blocks != u.freeable_blocks || o.files.len() != u.files.len() {
                        d.stale += 1;
                    }
                }
            }
        }
        for o in old.units.iter().flatten() {
            if !o.dirty() && fresh.find(old.stem(o)).is_none() {
                d.extra += 1;
            }
        }
        d
    }

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

    /// A walk starts reading a store (see `reading`); [`Index::end_read`] when it is done.
    pub fn begin_read(&mut self) {
        self.reading = self.reading.saturating_add(1);
    }

    pub fn end_read(&mut self) {
        self.reading = self.reading.saturating_sub(1);
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

    fn subdir_gone(&mut self, id: StoreId, subdir: SubdirId, at: Nanos, moved: bool) {
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

    /// The files of every dirty unit, to stat again; they stay dirty until
    /// [`Index::refresh`] applies the stats.
    pub fn dirty(&self, limit: usize) -> Vec<ToStat> {
        let mut out = Vec::new();
        for (id, s) in self.stores() {
            if s.dirty_units == 0 {
                continue;
            }
            for (slot, u) in s.units.iter().enumerate() {
                let Some(u) = u.as_ref().filter(|u| u.dirty()) else {
                    continue;
                };
                let stem = s.stem(u);
                out.push(ToStat {
                    store: id,
                    slot: slot as u32,
                    stem: stem.into(),
                    files: u
                        .files
                        .iter()
                        .map(|f| (s.handle(u32::from(f.subdir)), s.file_name(stem, *f).into_boxed_slice()))
                        .collect(),
                });
                if out.len() >= limit {
                    return out;
                }
            }
        }
        out
    }

    /// Applies fresh stats of a dirty unit (taken by [`Index::dirty`]). Files gone are dropped
    /// from it; a unit with no file left goes. Ignored when the unit changed meanwhile (it is
    /// still listed the same way only if nothing touched it).
    pub fn refresh(&mut self, t: &ToStat, fresh: &Fresh, basis: &[Timestamp], mode: AtimeMode, stat_time: Nanos) {
        let Some(s) = self.store_mut(t.store) else { return };
        let current = s.units.get(t.slot as usize).and_then(Option::as_ref).map(|u| {
            let stem = s.stem(u);
            (stem == &*t.stem, u.files.len())
        });
        // Only if it is still the unit that was listed, with the same files, each in the
        // directory it was in (a slot freed and taken since holds another directory's files).
        if current != Some((true, t.files.len())) || t.files.iter().any(|(sub, _)| s.subdir_of(*sub).is_none()) {
            return;
        }
        for ((sub, name), st) in t.files.iter().zip(fresh) {
            if st.is_none() {
                s.remove_file(subdir_slot(*sub), name);
            }
        }
        if s.units[t.slot as usize].as_ref().is_some_and(|u| u.files.is_empty()) {
            s.remove_unit(t.slot);
        } else {
            let stats = UnitStats::of(fresh.iter().flatten(), basis, mode, stat_time);
            s.set_stats(t.slot, stats);
        }
    }

    /// Marks the dirty units of store `id` clean as they are (their files could not be stat'ed;
    /// the store is not known whole meanwhile, so none of them may go).
    pub fn settle_store(&mut self, id: StoreId) {
        if let Some(s) = self.store_mut(id) {
            for u in s.units.iter_mut().flatten() {
                u.set_flag(DIRTY, false);
            }
            s.dirty_units = 0;
        }
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

    /// Whether the counts each store keeps (units waiting for a refresh, live stem bytes) agree
    /// with its units: for tests.
    #[doc(hidden)]
    pub fn counts_agree(&self) -> bool {
        self.stores().all(|(_, s)| {
            let dirty = s.units.iter().flatten().filter(|u| u.dirty()).count();
            let stems: usize = s.units.iter().flatten().map(|u| usize::from(u.stem_len)).sum();
            dirty == s.dirty_units as usize && stems == s.live_stem
        })
    }

    /// Whether any unit waits for a refresh.
    pub fn has_dirty(&self) -> bool {
        self.stores().any(|(_, s)| s.dirty_units > 0)
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

    fn stat(mtime: Nanos, atime: Nanos, alloc: u64, nlink: u64) -> FileStat {
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

    const BASIS: &[Timestamp] = &[Timestamp::Mtime, Timestamp::Atime];

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

    #[test]
    fn a_walk_and_the_events_hold_what_fits_past_the_odd_name_slots() {
        // A walk's read fills a fresh store a unit at a time, from names the listing parsed
        // once; the watch adds the same files one event at a time. Past the 15-bit odd-name
        // slots (names whose suffix has no code: here a checksum algorithm Spark may add),
        // both must say the store is not known whole, and hold what fits: every file with a
        // coded suffix, odd names up to the slots (which ones depends on the order the files
        // came in), and nothing that is not on disk under its own stem.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (a, b) = (root.join("blockmgr-1/0a"), root.join("blockmgr-1/0b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let odd = usize::from(ODD) + 2;
        let mut names = Vec::new();
        for m in 0..odd {
            names.push(("0a", format!("shuffle_0_{m}_0.checksum.MD5")));
            if m % 1000 == 0 {
                names.push(("0b", format!("shuffle_0_{m}_0.data")));
            }
        }
        // Links to one file: allocating 32,770 inodes takes seconds on a much-used ext4.
        let one = root.join("one");
        std::fs::File::create(&one).unwrap();
        for (sub, name) in &names {
            std::fs::hard_link(&one, root.join("blockmgr-1").join(sub).join(name)).unwrap();
        }
        let listing = read_listing(root, "blockmgr-1");
        assert!(
            listing.complete() && listing.files.len() == names.len(),
            "{:?}",
            listing.errors
        );
        let walked = Store::from_listing(&listing, BASIS, AtimeMode::Strict, 0, None, 0);
        let mut evented = Store {
            complete: true,
            ..Store::default()
        };
        for (sub, name) in &names {
            let sub = evented.subdir_slot_for(sub);
            evented.add_file(sub, name.as_bytes());
        }
        assert!(
            !walked.complete && !evented.complete,
            "more odd names than slots: not known whole"
        );
        let units = |s: &Store| {
            // (stem, [(sub-directory, name)]) of every unit.
            type Held = Vec<(Vec<u8>, Vec<(Box<str>, Vec<u8>)>)>;
            let mut v: Held = s
                .units
                .iter()
                .flatten()
                .map(|u| {
                    let stem = s.stem(u);
                    let mut files: Vec<_> = u
                        .files
                        .iter()
                        .map(|f| (s.subdir_names()[usize::from(f.subdir)].clone(), s.file_name(stem, *f)))
                        .collect();
                    files.sort();
                    (stem.to_vec(), files)
                })
                .collect();
            v.sort();
            v
        };
        let on_disk: std::collections::HashSet<(&str, &[u8])> =
            names.iter().map(|(sub, name)| (*sub, name.as_bytes())).collect();
        for (what, store) in [("the walk", &walked), ("the events", &evented)] {
            let units = units(store);
            let files: Vec<_> = units.iter().flat_map(|(_, f)| f).collect();
            let odd_held = files.iter().filter(|(_, n)| n.ends_with(b".MD5")).count();
            let data_held = files.iter().filter(|(_, n)| n.ends_with(b".data")).count();
            assert_eq!(odd_held, usize::from(ODD), "{what}: odd names fill the slots, no more");
            assert_eq!(data_held, odd.div_ceil(1000), "{what}: every coded name is held");
            for (stem, files) in &units {
                let slot = store.find(stem).expect("a unit is found by its stem");
                assert_eq!(
                    store.stem(store.units[slot as usize].as_ref().unwrap()),
                    &stem[..],
                    "{what}"
                );
                for (sub, name) in files {
                    assert!(
                        name.starts_with(stem) && on_disk.contains(&(&**sub, &name[..])),
                        "{what}: {name:?} is not on disk"
                    );
                }
            }
            assert_eq!(store.unit_count(), units.len(), "{what}");
            let mut stems: Vec<_> = units.iter().map(|(stem, _)| stem).collect();
            stems.dedup();
            assert_eq!(stems.len(), units.len(), "{what}: a stem is one unit");
            assert!(
                units.iter().all(|(_, f)| !f.is_empty()),
                "{what}: a unit without a file"
            );
        }
    }

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

    /// A listing of `blockmgr-9` with `names` (created on disk for the occasion).
    fn listing_of(names: &[&str]) -> Listing {
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
    fn read_listing(root: &Path, store: &str) -> Listing {
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
    fn odd_names_by_events(ix: &mut Index, id: StoreId, n: usize) {
        let sub = ix.store_mut(id).unwrap().subdir("0a");
        for m in 0..n {
            let name = format!("shuffle_0_{m}_0.checksum.MD5");
            ix.file_event(id, sub, name.as_bytes(), FileEvent::Added, 1);
        }
    }

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

    #[test]
    fn a_unit_stays_72_bytes() {
        // Most of the index is units (about 100 bytes of RSS each): a field more is noticed here.
        assert!(
            std::mem::size_of::<Option<Unit>>() <= 72,
            "{}",
            std::mem::size_of::<Option<Unit>>()
        );
    }

    #[test]
    fn read_bounds_follow_what_each_atime_mode_can_prove() {
        const H: Nanos = 3600 * 1_000_000_000;
        let now = 1000 * H;
        // Read (atime after mtime) two hours ago, written ten hours ago.
        let st = stat(now - 10 * H, now - 2 * H, 0, 1);
        assert_eq!(read_bound(&st, AtimeMode::Strict, now), now - 2 * H);
        // relatime: atime newer than mtime and under a day old proves nothing.
        assert_eq!(read_bound(&st, AtimeMode::Relatime, now), now);
        // relatime: atime 30 h old, after mtime: any read after atime + 24 h would show.
        let st = stat(now - 40 * H, now - 30 * H, 0, 1);
        assert_eq!(read_bound(&st, AtimeMode::Relatime, now), now - 6 * H);
        // relatime: never read since written: a read would have moved atime.
        let st = stat(now - 10 * H, now - 10 * H, 0, 1);
        assert_eq!(read_bound(&st, AtimeMode::Relatime, now), now - 10 * H);
        // ...but a change (ctime, a rename or chmod) since then is where that proof starts.
        let st = FileStat {
            ctime: now - H,
            ..stat(now - 10 * H, now - 10 * H, 0, 1)
        };
        assert_eq!(read_bound(&st, AtimeMode::Relatime, now), now - H);
        assert_eq!(read_bound(&st, AtimeMode::NoAtime, now), now);
        let u = UnitStats::of(
            [&stat(5, 9, 4096, 1), &stat(7, 7, 4096, 2)],
            BASIS,
            AtimeMode::Strict,
            10,
        );
        assert_eq!((u.last_use, u.read_bound, u.freeable, u.alloc), (9, 9, 4096, 8192));
    }
}
