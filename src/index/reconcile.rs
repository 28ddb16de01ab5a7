//! Reconciliation: units waiting for fresh stats and their refresh, and how a walk's read
//! differs from the index ([`Drift`]).

use super::*;

use crate::config::Timestamp;
use crate::disk::{AtimeMode, FileStat};
use crate::policy::Nanos;

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

impl Index {
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
}
