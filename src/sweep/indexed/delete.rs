//! The deletion of what a sweep selected: stores opened a few at a time, each unit checked
//! again on disk and deleted, the index told.

use super::*;

use std::sync::{Condvar, Mutex};

/// Where a deletion's rule applied, for the journal: the filesystem and its use when the sweep
/// read it.
pub(super) struct Placing {
    pub(super) mountpoint: PathBuf,
    pub(super) used_before: f64,
}

/// Stores kept open by each deleting thread while their units are deleted (each holds up to
/// 128 sub-directory fds).
const OPEN_STORES: usize = 4;

/// Units in a run below which it is deleted on the sweep's own thread: starting threads costs
/// more than a few units take.
const PARALLEL_FROM: usize = 64;

/// Units to delete in order ([`delete_run`]).
pub(super) struct Run<'u> {
    pub(super) units: &'u [Chosen],
    pub(super) reason: Reason,
    /// The place in least-recently-used order of the unit before the first (pressure; the
    /// journal's rank is this plus the unit's place in the run, 1 first).
    pub(super) ranked_after: Option<u64>,
    /// Stop taking units once this much is freed, counting what was freed before the run
    /// (pressure); `None`: every unit (the TTL).
    pub(super) need: Option<u64>,
}

/// Deletes a run's units in order, on a few threads when the run is long and deletes for real:
/// an unlink and a rename are kernel work (the journal, the inode's blocks, the directory entry)
/// that runs side by side in other directories, and one thread deleted at half of `find`'s rate
/// (issue 24). Each unit is taken by one thread, in order, while what is freed and what the
/// units in hand are expected to free (the index's sizes) fall short of the need: pressure
/// takes the units a single thread would, unless one freed more than the index said.
/// Returns the bytes freed, `freed` included, and how many units were taken (from the first):
/// the rest were not looked at. Dry runs, lists and probes go in order on this thread, as their
/// readers expect.
pub(super) fn delete_run(
    ctx: &Ctx,
    run: &Run,
    placing: &Placing,
    freed: u64,
    held: &mut Shortfall,
    report: &mut Report,
) -> (u64, usize) {
    // Which unit is next, what was freed, and what the units in hand are expected to free:
    // a thread takes the next unit only while what is freed and in hand falls short of the
    // need, and else waits for the units in hand. Taking the next unit while the need was not
    // yet met, whatever the others had in hand, deleted up to a unit a thread more than the
    // need (and than a dry run, `plan` and `explain` say).
    let state = Mutex::new(Taking {
        next: 0,
        freed,
        in_hand: 0,
    });
    let settled = Condvar::new();
    let work = |held: &mut Shortfall, report: &mut Report| {
        let mut dirs: Vec<(StoreId, StoreDir)> = Vec::with_capacity(OPEN_STORES);
        loop {
            let (i, expected) = {
                let mut t = state.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if ctx.cancelled() || run.need.is_some_and(|n| t.freed >= n) {
                        return;
                    }
                    if run.need.is_none_or(|n| t.freed.saturating_add(t.in_hand) < n) {
                        break;
                    }
                    t = settled.wait(t).unwrap_or_else(|e| e.into_inner());
                }
                let i = t.next;
                let Some(c) = run.units.get(i) else { return };
                t.next += 1;
                let expected = if run.need.is_some() { expected_bytes(ctx, c) } else { 0 };
                t.in_hand = t.in_hand.saturating_add(expected);
                (i, expected)
            };
            // Settles the unit in hand however its deletion ends (a panic too: the others
            // would wait for it for ever).
            let mut hand = Hand {
                state: &state,
                settled: &settled,
                expected,
                freed: 0,
            };
            let rank = run.ranked_after.map(|r| r + i as u64 + 1);
            if let Some(bytes) = delete(ctx, &mut dirs, &run.units[i], run.reason, placing, rank, held, report) {
                hand.freed = bytes;
            }
        }
    };
    // Filesystems are swept one after the other here.
    let threads = crate::sweep::threads_per_filesystem(1, OPEN_STORES);
    let in_order = ctx.dry_run || ctx.list_files || ctx.listing.is_some() || ctx.probe.is_some();
    if threads == 1 || in_order || run.units.len() < PARALLEL_FROM {
        work(held, report);
    } else {
        let blanks: Vec<Report> = (1..threads).map(|_| blank(report)).collect();
        let work = &work;
        std::thread::scope(|s| {
            let helpers: Vec<_> = blanks
                .into_iter()
                .enumerate()
                .filter_map(|(n, mut report)| {
                    // No thread to be had (a cgroup's pids.max): fewer deleting threads.
                    std::thread::Builder::new()
                        .name(format!("delete-{}", n + 1))
                        .spawn_scoped(s, move || {
                            let mut held = Shortfall::default();
                            work(&mut held, &mut report);
                            (held, report)
                        })
                        .ok()
                })
                .collect();
            work(held, report);
            for h in helpers {
                match h.join() {
                    Ok((theirs, r)) => {
                        held.open_bytes = held.open_bytes.saturating_add(theirs.open_bytes);
                        report.merge(r);
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
    }
    let t = state.into_inner().unwrap_or_else(|e| e.into_inner());
    (t.freed, t.next.min(run.units.len()))
}

/// What the threads of a [`delete_run`] share.
struct Taking {
    /// The next unit to take.
    next: usize,
    /// Bytes freed, with what was freed before the run.
    freed: u64,
    /// Bytes the units being deleted are expected to free (pressure).
    in_hand: u64,
}

/// A unit being deleted: when dropped, its expected bytes leave `in_hand`, what it freed is
/// counted, and the threads waiting for it look again.
struct Hand<'a> {
    state: &'a Mutex<Taking>,
    settled: &'a Condvar,
    expected: u64,
    freed: u64,
}

impl Drop for Hand<'_> {
    fn drop(&mut self) {
        let mut t = self.state.lock().unwrap_or_else(|e| e.into_inner());
        t.in_hand = t.in_hand.saturating_sub(self.expected);
        t.freed = t.freed.saturating_add(self.freed);
        drop(t);
        self.settled.notify_all();
    }
}

/// What the index says a chosen unit frees (0 when it is gone or another unit took its slot).
fn expected_bytes(ctx: &Ctx, c: &Chosen) -> u64 {
    let index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
    index
        .store(c.store)
        .and_then(|s| s.unit(c.slot))
        .filter(|u| crate::store_dir::stem_hash(u.stem) == c.stem)
        .map_or(0, |u| u.freeable)
}

/// A report with the same roots and no counts, for another deleting thread to fill.
fn blank(like: &Report) -> Report {
    let mut r = Report::new(like.dry_run, like.purge, like.now);
    r.roots = like
        .roots
        .iter()
        .map(|root| RootReport::new(root.path.clone(), root.present, root.mountpoint.clone()))
        .collect();
    r
}

/// Checks a chosen unit on disk, judges it again on what the checks read, and deletes it (in a
/// dry run, lists it). Returns the bytes freed, or `None` when it was kept. `dirs` keeps the
/// last few stores open: a store's units are mostly deleted one after another.
#[allow(clippy::too_many_arguments)]
fn delete(
    ctx: &Ctx,
    dirs: &mut Vec<(StoreId, StoreDir)>,
    c: &Chosen,
    reason: Reason,
    placing: &Placing,
    rank: Option<u64>,
    held: &mut Shortfall,
    report: &mut Report,
) -> Option<u64> {
    let (root_at, kind, rel, names, watched_since, last_open, unit_files, stem) = {
        let index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
        let lost = ctx.lost(&index, c.store);
        if lost == Lost::All {
            return None;
        }
        let s = index.store(c.store)?;
        let root_at = ctx.root_of(s.root)?;
        // The same unit, or one that took its slot since and hashes alike: that one is judged
        // below on its own files, kind and protection, as freshly as the chosen one would be.
        let u = s
            .unit(c.slot)
            .filter(|u| crate::store_dir::stem_hash(u.stem) == c.stem)?;
        // Not known whole any more (an NN directory moved away or replaced, or unreadable,
        // since the unit was chosen): nothing of it goes until a walk reads it whole.
        // Or the watch lost events of it since the sweep began.
        if !s.complete || lost == Lost::Store || u.partial {
            report.skip(Skip::Incomplete, u.nfiles as u64);
            return None;
        }
        (
            root_at,
            u.kind,
            s.rel.clone(),
            s.subdir_names(),
            s.watched_since,
            u.last_open,
            s.unit_files(c.slot),
            u.stem.to_vec(),
        )
    };
    let (_, root) = &ctx.roots[root_at];
    // Protection as the unit's files are now (one may have come in a protected place since it
    // was chosen): what `select` judged, judged again.
    let protected = !ctx.cfg.protect.is_empty()
        && (root.protected
            || root.protects_dir(&ctx.cfg.protect, &rel)
            || unit_files.iter().any(|(sub, name)| {
                let dir = rel.join(&*names[*sub as usize]);
                root.protects_path(&ctx.cfg.protect, &dir)
                    || root.protects_path(&ctx.cfg.protect, &dir.join(OsStr::from_bytes(name)))
            }));
    let record = Recorder::new(&ctx.first);
    let store_path = root.path.join(&rel);
    let file_path = |sub: u32, name: &[u8]| store_path.join(&*names[sub as usize]).join(OsStr::from_bytes(name));
    let at = match dirs.iter().position(|(id, _)| *id == c.store) {
        Some(at) => at,
        None => {
            let dir = match StoreDir::open_in(&root.path, Some(root.ino), &rel, root.mount) {
                Ok(d) => d,
                Err(DirError::Gone) => return None,
                Err(DirError::Io(e)) => {
                    record.error(report, Op::Walk, &store_path, &e);
                    return None;
                }
                Err(why) => {
                    record.skipped(&store_path, &why);
                    return None;
                }
            };
            if dirs.len() >= OPEN_STORES {
                dirs.remove(0);
            }
            dirs.push((c.store, dir));
            dirs.len() - 1
        }
    };
    let dir = &mut dirs[at].1;
    let files: Vec<UnitFile> = unit_files
        .iter()
        .map(|(sub, name)| UnitFile {
            subdir: *sub,
            name,
            judged: None,
        })
        .collect();
    let changed = |report: &mut Report| {
        debug!(path = %file_path(unit_files[0].0, &unit_files[0].1).display(), "unit changed since it was judged; kept");
        report.skip(Skip::Changed, unit_files.len() as u64);
        None
    };
    let checked = match dir.check_unit(&names, &files, &ctx.cfg.age_basis, c.last_use) {
        // Every file already gone (removed while the index listed it): not a unit any more.
        Ok(checked) if checked.stats().next().is_none() => {
            ctx.index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove_unit(c.store, c.slot, &stem);
            return None;
        }
        Ok(checked) => checked,
        Err(outcome) => {
            for (i, failure, e) in &outcome.errors {
                record.error(
                    report,
                    Op::from(*failure),
                    &file_path(unit_files[*i].0, &unit_files[*i].1),
                    e,
                );
            }
            if outcome.changed {
                return changed(report);
            }
            return None;
        }
    };
    // Everything that happened before the check on disk is in the index, or nothing is
    // decided: a watch far behind may hold an overflow the index does not show yet, and the
    // files created since are in no event at all (a unit's new checksum: its `.data` and
    // `.index` would go without it).
    if !ctx.dry_run
        && let Some(b) = ctx.backlog
        && b.behind(BEHIND_WAIT)
    {
        if !ctx.behind.swap(true, Ordering::Relaxed) {
            info!(
                "sweep stopped: the watch is far behind its events and may have lost some; it runs again once \
                 the watch has caught up"
            );
        }
        return None;
    }
    // Judged again on what is on disk now, and on every open seen until now (the watch may
    // have seen one since the unit was chosen); kept when the index lost events of its store
    // or changed its files since they were checked.
    let last_open = {
        let index = ctx.index.lock().unwrap_or_else(|e| e.into_inner());
        let lost = ctx.lost(&index, c.store);
        if lost == Lost::All {
            return None;
        }
        let now = index.store(c.store).and_then(|s| {
            let u = s.unit(c.slot).filter(|u| u.stem == stem.as_slice())?;
            (s.complete && !u.partial && s.unit_files(c.slot) == unit_files).then_some(u.last_open)
        });
        match now {
            Some(t) if lost == Lost::Nothing => t.max(last_open),
            Some(_) => {
                report.skip(Skip::Incomplete, unit_files.len() as u64);
                return None;
            }
            None => {
                drop(index);
                return changed(report);
            }
        }
    };
    let fresh = UnitStats::of(checked.stats(), &ctx.cfg.age_basis, root.atime, ctx.now);
    let open = ctx.open_unknown
        || ctx
            .open
            .as_ref()
            .is_some_and(|o| checked.stats().any(|st| o.contains(st.dev, st.ino)));
    let facts = UnitFacts {
        kind,
        last_use: fresh.last_use.max(last_open),
        bytes: fresh.freeable,
        protected,
        open,
        unseen_until: fresh.read_bound.min(watched_since.unwrap_or(Nanos::MAX)),
    };
    let verdict = policy::judge(&facts, &ctx.rules, ctx.now);
    let still = match reason {
        Reason::Ttl => verdict == Verdict::Delete(Reason::Ttl),
        // Pressure may take what the TTL would, too.
        Reason::Pressure | Reason::Manual => {
            matches!(verdict, Verdict::Eligible | Verdict::Unwatched | Verdict::Delete(_))
                && facts.last_use <= c.last_use
        }
    };
    if let Some(p) = ctx.probe {
        p.checked(
            root_at_number(ctx, root_at),
            &rel,
            &stem,
            verdict,
            still && facts.last_use <= c.last_use,
        );
    }
    if verdict == Verdict::Keep(Skip::Open) {
        report.skip(Skip::Open, unit_files.len() as u64);
        held.open_bytes += facts.bytes;
        kept(report, root_at, facts.last_use);
        return None;
    }
    if !still || facts.last_use > c.last_use {
        kept(report, root_at, facts.last_use);
        return changed(report);
    }
    let age_seconds = policy::age_seconds(ctx.now, facts.last_use);
    if ctx.dry_run {
        for (i, st) in checked.files() {
            let (sub, name) = &unit_files[i];
            deleted(
                ctx,
                report,
                (root_at, kind),
                reason,
                &file_path(*sub, name),
                st.size,
                st.freeable(),
                st.alloc,
                age_seconds,
            );
        }
        return Some(facts.bytes);
    }
    // The journal's intent is written out before the first unlink: a crash in between is seen
    // at the next start.
    let journal = crate::journal::current();
    let rel_name = |i: usize| {
        let (sub, name) = &unit_files[i];
        format!("{}/{}", names[*sub as usize], String::from_utf8_lossy(name))
    };
    let (last_use, evidence) = crate::journal::evidence(checked.stats(), &ctx.cfg.age_basis, last_open);
    let intent = journal.as_ref().map(|j| {
        let present: Vec<String> = checked.files().map(|(i, _)| rel_name(i)).collect();
        (j.intent(&store_path, &present), present)
    });
    let outcome = dir.commit_unit(&files, checked, &ctx.cfg.age_basis);
    if let (Some(j), Some((id, present))) = (&journal, intent) {
        if outcome.removed.is_empty() {
            j.kept(&id);
        } else {
            let removed: Vec<String> = outcome.removed.iter().map(|r| rel_name(r.index)).collect();
            let freed = outcome.removed.iter().map(|r| r.freed).fold(0u64, u64::saturating_add);
            let record = crate::journal::UnitRecord {
                reason,
                root: &root.path,
                store: &store_path,
                stem: &stem,
                kind,
                // The files it had, less any that vanished by themselves: partial only when an
                // unlink failed.
                files: if outcome.errors.is_empty() {
                    removed.clone()
                } else {
                    present
                },
                last_use,
                evidence,
                age_seconds,
                rule: crate::journal::Rule::of(reason, ctx.cfg, &placing.mountpoint, placing.used_before, rank),
            };
            j.deleted(&id, &record, freed, &removed);
        }
    }
    for (i, failure, e) in &outcome.errors {
        record.error(
            report,
            Op::from(*failure),
            &file_path(unit_files[*i].0, &unit_files[*i].1),
            e,
        );
    }
    if outcome.changed {
        kept(report, root_at, facts.last_use);
        return changed(report);
    }
    if outcome.removed.is_empty() {
        return None;
    }
    if !outcome.errors.is_empty() {
        record.partial(
            &file_path(unit_files[0].0, &unit_files[0].1),
            outcome.removed.len(),
            unit_files.len(),
        );
    } else {
        ctx.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_unit(c.store, c.slot, &stem);
    }
    let mut freed = 0u64;
    for r in &outcome.removed {
        let (sub, name) = &unit_files[r.index];
        freed = freed.saturating_add(r.freed);
        deleted(
            ctx,
            report,
            (root_at, kind),
            reason,
            &file_path(*sub, name),
            r.size,
            r.freed,
            r.alloc,
            age_seconds,
        );
    }
    Some(freed)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn deleted(
    ctx: &Ctx,
    report: &mut Report,
    (root, kind): (usize, Kind),
    reason: Reason,
    path: &Path,
    size: u64,
    freed: u64,
    alloc: u64,
    age_seconds: u64,
) {
    report
        .deleted
        .entry(reason)
        .or_default()
        .entry(kind)
        .or_default()
        .add(Tally { files: 1, bytes: freed });
    report.roots[root]
        .deleted
        .entry(kind)
        .or_default()
        .add(Tally { files: 1, bytes: alloc });
    debug!(path = %path.display(), reason = reason.as_str(), age_seconds, dry_run = ctx.dry_run, "delete");
    if ctx.list_files || ctx.listing.is_some() {
        let c = Candidate {
            path: path.to_owned(),
            bytes: freed,
            size,
            kind,
            reason,
            age_seconds,
        };
        if let Some(listing) = ctx.listing {
            listing.file(&c);
        }
        if ctx.list_files {
            report.candidates.push(c);
        }
    }
}
