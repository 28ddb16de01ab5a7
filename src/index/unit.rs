//! A unit and its files: what the policy judges it on ([`UnitStats`], [`read_bound`]), how its
//! files are added, removed and named, and how the sweep sees it ([`UnitView`]).

use super::*;

use crate::config::Timestamp;
use crate::disk::{AtimeMode, FileStat};
use crate::policy::Nanos;
use crate::spark::{self, Kind};

/// One file of a unit: its sub-directory (index into the store's) and its name code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileRef {
    pub(super) subdir: u16,
    pub(super) name: u16,
}

/// A unit's files: a map output's three fit without a heap block (it is most of the index).
pub(super) type Files = smallvec::SmallVec<[FileRef; 3]>;

/// A unit: what the policy needs to judge it, and its files' names.
#[derive(Clone, Debug)]
pub(super) struct Unit {
    /// Newest last use of its files by `age_basis` at the last refresh.
    pub(super) last_use: Nanos,
    /// Last open the watch saw (`Nanos::MIN`: none).
    pub(super) last_open: Nanos,
    /// Timestamps prove no read of any of its files after this (see [`read_bound`]).
    pub(super) read_bound: Nanos,
    /// What deleting it frees, and what it occupies, in 512-byte blocks.
    pub(super) freeable_blocks: u32,
    pub(super) alloc_blocks: u32,
    pub(super) stem_at: u32,
    pub(super) stem_len: u16,
    pub(super) kind: Kind,
    /// [`DIRTY`] and [`PARTIAL`]: one byte, where two `bool`s made a unit 8 bytes larger (72
    /// to 80, most of the index being units).
    pub(super) flags: u8,
    pub(super) files: Files,
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

pub(super) fn blocks(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(512)).unwrap_or(u32::MAX)
}

impl Store {
    /// Adds file `name` (a Spark block name) in sub-directory `subdir`; returns its unit.
    pub(super) fn add_file(&mut self, subdir: u32, name: &[u8]) -> Option<u32> {
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
    pub(super) fn fits(&mut self, subdir: u32, name: &[u8], stem_len: usize) -> bool {
        let odd_full = self.free_odd.is_empty() && self.odd_names.len() >= usize::from(ODD);
        if subdir > u32::from(u16::MAX) || (odd_full && SUFFIXES.iter().all(|s| *s != &name[stem_len..])) {
            self.complete = false;
            self.marks_whole += 1;
            return false;
        }
        true
    }

    /// Adds file `name` of sub-directory `subdir` to the unit in `slot` (of its stem), unless
    /// the unit has it already.
    pub(super) fn attach(&mut self, slot: u32, subdir: u32, name: &[u8], stem_len: usize) {
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

    pub(super) fn remove_file(&mut self, subdir: u32, name: &[u8]) -> Option<u32> {
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
    pub(super) fn drop_subdir_files(&mut self, subdir: u32, refresh: bool, moved: bool) {
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
    pub(super) const REMOVED_FOR: Nanos = 10 * 60 * 1_000_000_000;

    pub(super) fn note_removed(&mut self, subdir: u32, name: &[u8], at: Nanos) {
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

    pub(super) fn set_stats(&mut self, slot: u32, s: UnitStats) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testkit::*;

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
