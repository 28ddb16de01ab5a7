//! The work on one store, on a sweep thread: read it, judge its units, delete the TTL ones and
//! pool the rest for pressure ([`Worker`]); in the second pass under pressure, delete the units
//! pressure chose and nothing else.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::Receiver;

use tracing::debug;

use super::Ctx;
use super::record::Recorder;
use super::stores::{self, ReapCandidate};
use crate::fsx::DirError;
use crate::policy::{self, Grouping, Nanos, Planner, Reason, Skip, UnitFacts, Verdict};
use crate::report::{Candidate, FsReport, Inventory, Op, Report, Tally};
use crate::spark::DirRole;
use crate::spark::Kind;
use crate::store_dir::{LEFTOVER_AGE_NS, Listing, StoreDir, StoreFile, UnitFile};

/// Identifies a unit from one pass to the next: a hash of its store's path and of its stem.
/// Only units the first pass counted and pressure chose are deleted by the second (a 64-bit
/// collision could at worst pick another unit of the same store that the rules let go too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitKey {
    store: u64,
    stem: u64,
}

fn hash64(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for p in parts {
        h.write(p);
        h.write_u8(0xff);
    }
    h.finish()
}

/// A unit waiting for pressure's decision: its root, last use and identity (its files are found
/// again by the second pass).
#[derive(Clone, Copy, Debug)]
pub struct Pooled {
    root: usize,
    last_use: Nanos,
    key: UnitKey,
}

/// What pressure chose, for the second pass.
pub struct Evict {
    /// Sorted.
    chosen: Vec<UnitKey>,
    reason: Reason,
}

impl Evict {
    fn takes(&self, key: &UnitKey) -> bool {
        self.chosen.binary_search(key).is_ok()
    }
}

/// The store whose units are being judged, as deletion and logging need it.
#[derive(Debug)]
struct StoreMeta<'l> {
    root: usize,
    rel: &'l Path,
    key: u64,
    listing: &'l Listing,
}

impl StoreMeta<'_> {
    /// A file's path relative to its root.
    fn file_rel(&self, f: &StoreFile) -> PathBuf {
        let mut p = self.rel.join(&*self.listing.subdirs[f.subdir as usize]);
        p.push(OsStr::from_bytes(f.name(&self.listing.names)));
        p
    }
}

/// Reads, judges and deletes in stores, on one thread.
pub struct Worker<'a> {
    ctx: &'a Ctx<'a>,
    pub report: Report,
    pub planner: Planner<Pooled>,
    /// The second pass under pressure: delete what pressure chose, count nothing else.
    evict: Option<&'a Evict>,
    record: Recorder<'a>,
    /// getdents' buffer, reused for every directory.
    buf: Vec<u8>,
    /// The last store's listing and grouping: their buffers are reused for the next store.
    listing: Listing,
    grouping: Grouping<StoreFile>,
    /// Empty stores found by the first pass.
    pub reap: Vec<ReapCandidate>,
    /// The filesystem's mount point and use when the sweep read it, for the journal.
    pub fs: Option<(PathBuf, f64)>,
    /// This store's files for the streamed list, written once the store is let go: a reader
    /// that does not keep up with the list (a full pipe) then stalls the sweep between stores,
    /// never while it holds a store's write guard (which holds off a `remount,ro`).
    pending: Vec<Candidate>,
}

/// The files of the streamed list held at most before they are written, the store's write
/// guard let go ([`Worker::write_pending`]).
const PENDING_MAX: usize = 512;

impl<'a> Worker<'a> {
    pub fn new(ctx: &'a Ctx<'a>, need: Option<(u64, Reason)>, evict: Option<&'a Evict>) -> Self {
        Worker {
            ctx,
            report: ctx.report(),
            planner: Planner::new(super::rules(ctx.cfg), ctx.now, need),
            evict,
            record: Recorder::new(&ctx.first_errors),
            buf: Vec::new(),
            listing: Listing::default(),
            grouping: Grouping::default(),
            reap: Vec::new(),
            fs: None,
            pending: Vec::new(),
        }
    }

    pub fn drain(mut self, rx: &Mutex<Receiver<(usize, PathBuf)>>) -> Self {
        loop {
            let job = rx.lock().expect("queue poisoned").recv();
            match job {
                Ok((root, rel)) if !self.ctx.cancelled() => self.store(root, rel),
                Ok(_) => {} // cancelled: let the walker's queue drain
                Err(_) => return self,
            }
        }
    }

    fn error(&mut self, op: Op, path: &Path, e: &dyn std::fmt::Display) {
        self.record.error(&mut self.report, op, path, e);
    }

    /// Records a kept unit of a deletable kind for the root's oldest-kept age.
    fn kept(&mut self, root: usize, last_use: Nanos) {
        let root = &mut self.report.roots[root];
        root.oldest_kept_last_use = Some(root.oldest_kept_last_use.map_or(last_use, |o| o.min(last_use)));
    }

    /// Reads one store, judges its units, deletes the TTL ones and pools the rest for pressure.
    pub fn store(&mut self, root: usize, rel: PathBuf) {
        let ctx = self.ctx;
        // The second pass under pressure counts only what it deletes: the first counted the rest.
        let first_pass = self.evict.is_none();
        let root_meta = &ctx.roots[root];
        let store_path = root_meta.path.join(&rel);
        let mut dir = match StoreDir::open_in(&root_meta.path, Some(root_meta.ino), &rel, root_meta.mount) {
            Ok(d) => d,
            Err(_) if !first_pass => return,
            // Removed since the walk saw it (an application ended).
            Err(DirError::Gone) => return,
            Err(DirError::Io(e)) => return self.error(Op::Walk, &store_path, &e),
            // A symlink or a mount put in its place: not entered.
            Err(why) => {
                self.report.skip(Skip::Unknown, 1);
                return self.record.skipped(&store_path, &why);
            }
        };
        let mut listing = std::mem::take(&mut self.listing);
        dir.read(&mut self.buf, &mut listing);
        if first_pass {
            self.report.skip(Skip::Unknown, listing.unknown);
            for (failure, sub, e) in &listing.errors {
                self.record
                    .error(&mut self.report, (*failure).into(), &store_path.join(sub), e);
            }
            self.inventory(root, &listing.files);
        }
        let mut grouping = std::mem::take(&mut self.grouping);
        grouping.group(&listing.files, |f| f.stem(&listing.names), StoreFile::stem_hash);
        if !listing.complete() {
            // A unit's files are spread over several sub-directories: with one of them
            // unread, no unit here is known whole, so none may go.
            if first_pass {
                self.incomplete(root, &store_path, &listing, &grouping);
            }
        } else {
            if first_pass && !listing.leftovers.is_empty() {
                self.leftovers(&mut dir, &store_path, &listing);
            }
            let store = StoreMeta {
                root,
                rel: &rel,
                key: hash64(&[&root.to_le_bytes(), rel.as_os_str().as_bytes()]),
                listing: &listing,
            };
            self.judge_units(&store, &mut dir, &grouping);
        }
        if first_pass {
            // Nothing at all in it, Spark's or anyone's: its liveness is judged after the walk.
            let empty =
                listing.complete() && listing.files.is_empty() && listing.unknown == 0 && listing.leftovers.is_empty();
            let reapable = ctx.cfg.stores.reap
                && empty
                && stores::covered(&rel)
                && root_meta.role != DirRole::Store
                && !(root_meta.protected
                    || (!ctx.cfg.protect.is_empty() && root_meta.protects_dir(&ctx.cfg.protect, &rel)));
            if reapable {
                self.reap.push(ReapCandidate {
                    root,
                    rel: rel.clone(),
                    facts: dir.facts(),
                    dir_ids: dir.dir_ids(),
                    read_now: true,
                });
            } else {
                self.report.roots[root].stores.live += 1;
            }
        }
        drop(dir);
        if let Some(out) = self.ctx.listing {
            for c in self.pending.drain(..) {
                out.file(&c);
            }
        }
        self.listing = listing;
        self.grouping = grouping;
    }

    /// Writes the files listed so far in this store, its write guard let go first: a reader
    /// that does not keep up stalls the sweep between two units, holding off no remount, and
    /// one that went away (`| head`) stops it after the unit in hand, not after every unit of a
    /// store of a million files (which the list would also have held in memory).
    fn write_pending(&mut self, dir: &mut StoreDir) {
        if let Some(out) = self.ctx.listing {
            dir.release_writes();
            for c in self.pending.drain(..) {
                out.file(&c);
            }
        }
    }

    /// Counts the units of a store not listed whole as kept (`incomplete`) and says why.
    fn incomplete(&mut self, root: usize, store_path: &Path, listing: &Listing, grouping: &Grouping<StoreFile>) {
        self.report.skip(Skip::Incomplete, listing.files.len() as u64);
        let basis = &self.ctx.cfg.age_basis;
        for range in grouping.units.iter().cloned() {
            let unit = &grouping.files[range];
            if self.ctx.cfg.may_delete(unit[0].kind) {
                let last_use = unit.iter().map(|f| f.stat.last_use(basis)).max().unwrap_or(Nanos::MIN);
                self.kept(root, last_use);
            }
        }
        let why = match (listing.skipped.first(), listing.errors.first()) {
            (Some((sub, why)), _) => format!("{sub} {why}"),
            (None, Some((_, sub, e))) => format!("{sub}: {e}"),
            (None, None) => String::new(),
        };
        self.record.incomplete(store_path, &why, listing.files.len());
    }

    /// Removes files left under the private name by a deletion that did not finish.
    fn leftovers(&mut self, dir: &mut StoreDir, store_path: &Path, listing: &Listing) {
        for l in &listing.leftovers {
            if self.ctx.dry_run || self.ctx.now.saturating_sub(l.stat.ctime) < LEFTOVER_AGE_NS {
                continue;
            }
            let path = store_path
                .join(&*listing.subdirs[l.subdir as usize])
                .join(OsStr::from_bytes(&l.name));
            match dir.remove_leftover(&listing.subdirs, l) {
                Ok(freed) => {
                    debug!(path = %path.display(), freed, "removed a file left by a deletion that did not finish");
                    self.report.leftovers_removed.add(Tally { files: 1, bytes: freed });
                }
                Err(e) => self.error(Op::Unlink, &path, &e),
            }
        }
    }

    /// Judges the units of one store (grouped in `grouping`): deletes the TTL ones and pools
    /// the rest for pressure, or in the second pass deletes those pressure chose.
    fn judge_units(&mut self, store: &StoreMeta, dir: &mut StoreDir, grouping: &Grouping<StoreFile>) {
        let ctx = self.ctx;
        let root = store.root;
        let root_meta = &ctx.roots[root];
        let store_path = root_meta.path.join(store.rel);
        let names = &store.listing.names;
        let protect_on = !ctx.cfg.protect.is_empty();
        let store_protected =
            protect_on && (root_meta.protected || root_meta.protects_dir(&ctx.cfg.protect, store.rel));
        let subdir_protected: Vec<bool> = store
            .listing
            .subdirs
            .iter()
            .map(|d| protect_on && !store_protected && root_meta.protects_path(&ctx.cfg.protect, &store.rel.join(&**d)))
            .collect();
        let basis = &ctx.cfg.age_basis;
        let rules = super::rules(ctx.cfg);
        for range in grouping.units.iter().cloned() {
            if self.pending.len() >= PENDING_MAX {
                self.write_pending(dir);
            }
            if ctx.cancelled() {
                return;
            }
            let unit = &grouping.files[range];
            let mut facts = UnitFacts {
                kind: unit[0].kind,
                last_use: Nanos::MIN,
                bytes: 0,
                protected: store_protected,
                open: ctx.open_unknown,
                unseen_until: Nanos::MIN,
            };
            for f in unit {
                facts.last_use = facts.last_use.max(f.stat.last_use(basis));
                facts.bytes = facts.bytes.saturating_add(f.stat.freeable());
                facts.protected |= subdir_protected[f.subdir as usize]
                    || (protect_on && root_meta.protects_path(&ctx.cfg.protect, &store.file_rel(f)));
                facts.open |= ctx.open.is_some_and(|o| o.contains(f.stat.dev, f.stat.ino));
            }
            let stem = unit[0].stem(names);
            if let Some(opened) = ctx.opens.and_then(|o| o.last_open(&store_path, stem)) {
                facts.last_use = facts.last_use.max(opened);
            }
            let key = UnitKey {
                store: store.key,
                stem: hash64(&[stem]),
            };
            if let Some(evict) = self.evict {
                // Judged again at the same *now*: a unit used since the first pass is no
                // longer eligible and stays; a unit the first pass did not count is not taken.
                let eligible = matches!(
                    policy::judge(&facts, &rules, ctx.now),
                    Verdict::Eligible | Verdict::Unwatched
                );
                if eligible && evict.takes(&key) && self.delete(store, dir, unit, &facts, evict.reason).is_none() {
                    self.kept(root, facts.last_use);
                }
                continue;
            }
            let pooled = || Pooled {
                root,
                last_use: facts.last_use,
                key,
            };
            match self.planner.offer(&facts, pooled) {
                Verdict::Delete(reason) => match self.delete(store, dir, unit, &facts, reason) {
                    Some(freed) => self.planner.freed(freed),
                    None => self.kept(root, facts.last_use),
                },
                Verdict::Keep(why) => {
                    self.report.skip(why, unit.len() as u64);
                    // A protected unit is not deletable: it must not age the root's oldest.
                    if why != Skip::Protected {
                        self.kept(root, facts.last_use);
                    }
                }
                Verdict::Unwatched if !self.planner.under_pressure() => {
                    self.report.skip(Skip::Unwatched, unit.len() as u64);
                    self.kept(root, facts.last_use);
                }
                Verdict::Eligible if !self.planner.under_pressure() => self.kept(root, facts.last_use),
                Verdict::Eligible | Verdict::Unwatched | Verdict::Exempt => {}
            }
        }
    }

    /// Counts a store's files in its root's inventory (what was there before anything was
    /// deleted). Summed per kind in an array first: a map lookup per file costs more.
    fn inventory(&mut self, root: usize, files: &[StoreFile]) {
        let mut kinds: [Inventory; Kind::ALL.len()] = Default::default();
        for f in files {
            kinds[f.kind as usize].add(f.stat.alloc, f.stat.last_use(&self.ctx.cfg.age_basis), self.ctx.now);
        }
        let inventory = &mut self.report.roots[root].kinds;
        for (kind, inv) in Kind::ALL.into_iter().zip(kinds).filter(|(_, inv)| inv.files > 0) {
            inventory.entry(kind).or_default().merge(&inv);
        }
    }

    /// Lets pressure choose among the pooled units, least recently used first: returns the
    /// report so far and what the second pass is to delete.
    pub fn pressure(mut self, mut fs: FsReport) -> (Report, Option<Evict>) {
        let planner = std::mem::replace(
            &mut self.planner,
            Planner::new(super::rules(self.ctx.cfg), self.ctx.now, None),
        );
        let selection = planner.finish();
        for unit in &selection.spared {
            self.kept(unit.root, unit.last_use);
        }
        let evict = selection.reason.filter(|_| !selection.chosen.is_empty()).map(|reason| {
            let mut chosen: Vec<UnitKey> = selection.chosen.iter().map(|u| u.key).collect();
            chosen.sort_unstable();
            chosen.dedup();
            Evict { chosen, reason }
        });
        if let Some(sf) = selection.shortfall {
            self.record.shortfall(&fs.mountpoint, &sf);
            fs.shortfall = Some(sf);
        }
        self.report.filesystems.push(fs);
        (self.report, evict)
    }

    /// Deletes one unit of the store open as `dir` (or, in a dry run, lists it). Returns the
    /// bytes freed, or `None` when the unit was kept (changed since it was judged, or an error).
    fn delete(
        &mut self,
        store: &StoreMeta,
        dir: &mut StoreDir,
        files: &[StoreFile],
        facts: &UnitFacts,
        reason: Reason,
    ) -> Option<u64> {
        let root = &self.ctx.roots[store.root].path;
        let names = &store.listing.names;
        let age_seconds = policy::age_seconds(self.ctx.now, facts.last_use);
        if self.ctx.dry_run {
            for f in files {
                self.deleted(root, store, f, reason, age_seconds, f.stat.freeable());
            }
            return Some(facts.bytes);
        }
        // Opened since it was judged (the watch saw it; on a noatime disk the re-stat would not).
        let opened = self
            .ctx
            .opens
            .and_then(|o| o.last_open(&root.join(store.rel), files[0].stem(names)));
        if opened.is_some_and(|t| t > facts.last_use) {
            debug!(path = %root.join(store.file_rel(&files[0])).display(), "unit opened since it was judged; kept");
            self.report.skip(Skip::Changed, files.len() as u64);
            return None;
        }
        let unit: Vec<UnitFile> = files
            .iter()
            .map(|f| UnitFile {
                subdir: f.subdir,
                name: f.name(names),
                judged: Some(&f.stat),
            })
            .collect();
        // The journal's intent is written out before the first unlink (see `crate::journal`).
        let journal = crate::journal::current();
        let rel_name = |f: &StoreFile| {
            format!(
                "{}/{}",
                store.listing.subdirs[f.subdir as usize],
                String::from_utf8_lossy(f.name(names))
            )
        };
        let present: Vec<String> = if journal.is_some() {
            files.iter().map(rel_name).collect()
        } else {
            Vec::new()
        };
        let store_path = root.join(store.rel);
        let id = journal.as_ref().map(|j| j.intent(&store_path, &present));
        let outcome = dir.delete_unit(&store.listing.subdirs, &unit, &self.ctx.cfg.age_basis, facts.last_use);
        if let (Some(j), Some(id)) = (&journal, id) {
            if outcome.removed.is_empty() {
                j.kept(&id);
            } else {
                let removed: Vec<String> = outcome.removed.iter().map(|r| rel_name(&files[r.index])).collect();
                let freed = outcome.removed.iter().map(|r| r.freed).fold(0u64, u64::saturating_add);
                let (last_use, evidence) = crate::journal::evidence(
                    files.iter().map(|f| &f.stat),
                    &self.ctx.cfg.age_basis,
                    opened.unwrap_or(Nanos::MIN),
                );
                let (mountpoint, used_before) = self.fs.clone().unwrap_or_default();
                let record = crate::journal::UnitRecord {
                    reason,
                    root,
                    store: &store_path,
                    stem: files[0].stem(names),
                    kind: facts.kind,
                    // Less any that vanished by themselves: partial only when an unlink failed.
                    files: if outcome.errors.is_empty() {
                        removed.clone()
                    } else {
                        present
                    },
                    last_use,
                    evidence,
                    age_seconds,
                    rule: crate::journal::Rule::of(reason, self.ctx.cfg, &mountpoint, used_before, None),
                };
                j.deleted(&id, &record, freed, &removed);
            }
        }
        for (i, failure, e) in &outcome.errors {
            self.error((*failure).into(), &root.join(store.file_rel(&files[*i])), e);
        }
        if outcome.changed {
            debug!(path = %root.join(store.file_rel(&files[0])).display(), "unit changed since it was judged; kept");
            self.report.skip(Skip::Changed, files.len() as u64);
            return None;
        }
        if outcome.removed.is_empty() {
            return (outcome.errors.is_empty()).then_some(0);
        }
        if !outcome.errors.is_empty() {
            // An unlink failed after the others of the unit went: everything was checked
            // beforehand, so only an I/O error on a file just renamed gets here.
            self.record.partial(
                &root.join(store.file_rel(&files[0])),
                outcome.removed.len(),
                files.len(),
            );
        }
        let mut freed = 0u64;
        for r in &outcome.removed {
            freed = freed.saturating_add(r.freed);
            self.deleted(root, store, &files[r.index], reason, age_seconds, r.freed);
        }
        Some(freed)
    }

    fn deleted(&mut self, root: &Path, store: &StoreMeta, f: &StoreFile, reason: Reason, age_seconds: u64, freed: u64) {
        let t = Tally { files: 1, bytes: freed };
        self.report
            .deleted
            .entry(reason)
            .or_default()
            .entry(f.kind)
            .or_default()
            .add(t);
        self.report.roots[store.root]
            .deleted
            .entry(f.kind)
            .or_default()
            .add(Tally {
                files: 1,
                bytes: f.stat.alloc,
            });
        if self.ctx.list_files || self.ctx.listing.is_some() || tracing::enabled!(tracing::Level::DEBUG) {
            let path = root.join(store.file_rel(f));
            debug!(path = %path.display(), reason = reason.as_str(), age_seconds, dry_run = self.ctx.dry_run, "delete");
            let c = Candidate {
                path,
                bytes: freed,
                size: f.stat.size,
                kind: f.kind,
                reason,
                age_seconds,
            };
            if self.ctx.listing.is_some() {
                self.pending.push(c.clone());
            }
            if self.ctx.list_files {
                self.report.candidates.push(c);
            }
        }
    }
}
