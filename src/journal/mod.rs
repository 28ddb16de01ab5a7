//! The deletion journal: every unit and every store shuffle-janitor deletes, one JSON line each,
//! in `state_dir` (`deletions.jsonl`, rotated to `deletions.jsonl.1`), so that "did the janitor
//! delete my shuffle file?" has an answer days later (`shuffle-janitor explain PATH`).
//!
//! Lines (every one has `event`, `time_ns` and `time`, RFC 3339 in UTC):
//! - `intent`: a unit about to be deleted (its store and file names), written out with one
//!   `write(2)` before its first unlink, so that a crash in the middle of a unit is seen;
//! - `deleted`: the unit, gone: trigger, root, store, stem, kind, files, bytes freed, its last
//!   use and the evidence that set it, its age, and the rule that decided;
//! - `kept`: a unit of an `intent` that changed at its last check and was not deleted;
//! - `store_removed`: a dead block store removed;
//! - `interrupted`: written at the daemon's start for an `intent` without its `deleted` (the
//!   process died in between): which of its files are gone and which are left.
//!
//! Writing never holds a deletion back: lines are buffered (flushed with the next intent, at
//! 64 KiB, and at the end of each sweep), never fsync'ed, and a line that cannot be written (a
//! full disk) is dropped and counted ([`Journal::lost`], the metric
//! `shuffle_janitor_journal_lines_lost_total`); a line a full disk cut short (this process's, or
//! another writer's: a `sweep` next to the daemon) is followed by a fresh line, never glued to the
//! next, and readers skip it and count it. The two files together
//! stay under `journal_max_mib`: the current one is rotated when it passes half of it (so right
//! after a rotation only half of it is history). A file moved away by something else (logrotate)
//! is noticed before the next write and the path opened again.
//!
//! One journal per process, like the log: [`install`] sets it, the deletion paths ask
//! [`current`] (the daemon and `sweep` install it; library users and tests that do not, write
//! none).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::config::Timestamp;
use crate::disk::FileStat;
use crate::policy::{Nanos, Reason};
use crate::spark::Kind;

/// The current file's name in `state_dir`.
pub const FILE_NAME: &str = "deletions.jsonl";
/// The previous file's name (one rotation kept).
pub const OLD_NAME: &str = "deletions.jsonl.1";
/// Buffered lines are written out past this many bytes.
const FLUSH_AT: usize = 64 << 10;

mod lines;
mod read;

pub use lines::*;
pub use read::*;
use read::{read_lines, writer_alive};

struct Inner {
    file: Option<File>,
    /// Bytes in the current file, as this process knows it (others may append too).
    size: u64,
    buf: Vec<u8>,
    /// Lines in `buf`.
    buf_lines: u64,
    next: u64,
    /// The file may end inside a line (a write cut short by a full disk, here or by another
    /// process): the next write starts with a newline, so that its first line is not glued to
    /// the cut one and lost with it.
    torn: bool,
    /// When the file held was last checked to be still the one at the path ([`Journal::follow`]).
    followed: Option<Instant>,
}

/// The journal of one `state_dir`, shared by a process's sweep threads.
pub struct Journal {
    dir: PathBuf,
    /// The most both files hold together.
    max_bytes: u64,
    by: By,
    /// This process's id prefix for intents: `<pid>.<time it opened the journal>`.
    id_prefix: String,
    inner: Mutex<Inner>,
    lost: AtomicU64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

static CURRENT: RwLock<Option<Arc<Journal>>> = RwLock::new(None);
/// Lines lost by every journal of the process (one reopened after a reload starts from 0).
static LOST: AtomicU64 = AtomicU64::new(0);
/// Times the file was found moved, removed or replaced by another process and opened again.
static REOPENED: AtomicU64 = AtomicU64::new(0);

/// Times this process found its journal file moved away (logrotate, an operator) and opened
/// the one at the path again.
pub fn reopened() -> u64 {
    REOPENED.load(Ordering::Relaxed)
}

/// How often a write checks that the file held is still the one at the path (two stats): a
/// unit's intent is written alone, and thousands of units a second need not pay for them each.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Lines that could not be written by this process, for the metric.
pub fn lines_lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// Sets the process's journal (`None`: none).
pub fn install(j: Option<Arc<Journal>>) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = j;
}

/// The process's journal, if any.
pub fn current() -> Option<Arc<Journal>> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Opens the journal file for appending, creating it 0640. Never through a symlink nor onto
/// anything but a regular file with one link, and never blocking (a FIFO): whoever can write
/// `state_dir` (the daemon's user) must not make a `sweep` run by root append to, hand over, or
/// hang on another file. A file this call creates as root (a `sweep` run by root) is given to
/// the owner of its directory, the daemon's user: else the daemon could no longer append to it,
/// nor to the one a rotation by root starts. A file that was already there is never chowned.
fn open_file(path: &Path) -> io::Result<File> {
    let flags =
        (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC).bits() as i32;
    // Readable too: its last byte says whether it ends inside a line ([`ends_torn`]).
    let (f, created) = match OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
            OpenOptions::new()
                .read(true)
                .append(true)
                .custom_flags(flags)
                .open(path)?,
            false,
        ),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(io::Error::other(format!(
            "{}: not a regular file of its own (a link, a FIFO or a device?): remove it",
            path.display()
        )));
    }
    if created
        && let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok())
        && meta.uid() != dir.uid()
        && rustix::process::geteuid().is_root()
    {
        let _ = std::os::unix::fs::fchown(&f, Some(dir.uid()), Some(dir.gid()));
    }
    Ok(f)
}

/// Whether `f`, `size` bytes long, ends inside a line (its last byte is not a newline).
fn ends_torn(f: &File, size: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut last = [b'\n'];
    size > 0 && f.read_exact_at(&mut last, size - 1).is_ok() && last[0] != b'\n'
}

/// Writes `buf` to `f` with as few `write(2)`s as it takes; on an error, also how many bytes
/// went out before it (a full disk cuts a write short, then refuses the rest).
fn write_counted(f: &mut File, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        match f.write(&buf[done..]) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

impl Journal {
    /// Opens (creates) the journal in `dir`, bounded to `max_bytes` over its two files.
    pub fn open(dir: &Path, max_bytes: u64, by: By) -> io::Result<Journal> {
        let file = open_file(&dir.join(FILE_NAME))?;
        let size = file.metadata()?.len();
        let torn = ends_torn(&file, size);
        Ok(Journal {
            dir: dir.to_owned(),
            max_bytes,
            by,
            id_prefix: format!("{}.{:x}", std::process::id(), crate::sweep::now()),
            inner: Mutex::new(Inner {
                file: Some(file),
                size,
                buf: Vec::with_capacity(FLUSH_AT),
                buf_lines: 0,
                next: 0,
                torn,
                followed: Some(Instant::now()),
            }),
            lost: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lines of this journal that could not be written so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(inner: &mut Inner, line: &str) {
        inner.buf.extend_from_slice(line.as_bytes());
        inner.buf.push(b'\n');
        inner.buf_lines += 1;
    }

    /// Records that a unit is about to be deleted and writes it out, with what was buffered
    /// before it. Returns the id its `deleted` line must carry.
    pub fn intent(&self, store: &Path, files: &[String]) -> String {
        let mut inner = self.lock();
        inner.next += 1;
        let id = format!("{}.{}", self.id_prefix, inner.next);
        Self::push(&mut inner, &intent_line(&id, crate::sweep::now(), store, files));
        self.write_out(&mut inner);
        id
    }

    /// Records a unit deleted (buffered).
    pub fn deleted(&self, id: &str, u: &UnitRecord, freed: u64, removed: &[String]) {
        let line = deleted_line(id, crate::sweep::now(), self.by, u, freed, removed);
        self.buffered(&line);
    }

    /// Records that the unit of intent `id` was not deleted after all (it changed at the last
    /// check), so that it is not taken for an interrupted one.
    pub fn kept(&self, id: &str) {
        let now = crate::sweep::now();
        let line = json!({"event": "kept", "id": id, "time_ns": now, "time": rfc3339(now)}).to_string();
        self.buffered(&line);
    }

    /// Records a store removed (buffered).
    pub fn store_removed(&self, s: &StoreRecord) {
        let line = store_line(crate::sweep::now(), self.by, s);
        self.buffered(&line);
    }

    fn buffered(&self, line: &str) {
        let mut inner = self.lock();
        Self::push(&mut inner, line);
        if inner.buf.len() >= FLUSH_AT {
            self.write_out(&mut inner);
        }
    }

    /// Writes out what is buffered (at the end of a sweep).
    pub fn flush(&self) {
        let mut inner = self.lock();
        inner.followed = None;
        self.write_out(&mut inner);
    }

    /// Opens the file at the path again when the one held is no longer there: moved away
    /// (logrotate, an operator: twice, and the daemon would append to a file nobody finds),
    /// removed, or replaced. The same hardening as at the start ([`open_file`]): no symlink,
    /// FIFO or hard link. A file cut short in place (logrotate's `copytruncate`) is measured
    /// again. At most once a [`FOLLOW_EVERY`], but at every [`Journal::flush`].
    fn follow(&self, inner: &mut Inner) {
        if inner.followed.is_some_and(|t| t.elapsed() < FOLLOW_EVERY) {
            return;
        }
        inner.followed = Some(Instant::now());
        let path = self.path();
        let ours = inner.file.as_ref().and_then(|f| f.metadata().ok());
        let there = std::fs::symlink_metadata(&path).ok();
        if let (Some(o), Some(t)) = (&ours, &there)
            && (o.dev(), o.ino()) == (t.dev(), t.ino())
        {
            if o.len() < inner.size {
                inner.size = o.len();
                inner.torn = inner.file.as_ref().is_some_and(|f| ends_torn(f, o.len()));
            }
            return;
        }
        let had = ours.is_some();
        // A `sweep` next to the daemon rotates the same journal: the file held is then the
        // previous one, as it should be. Only a move by something else is worth a warning.
        let rotated_by_us = ours.as_ref().is_some_and(|o| {
            std::fs::symlink_metadata(self.dir.join(OLD_NAME)).is_ok_and(|m| (m.dev(), m.ino()) == (o.dev(), o.ino()))
        });
        match Self::reopen(inner, &path) {
            Ok(()) if rotated_by_us => {
                debug!(path = %path.display(), "the deletion journal was rotated by another shuffle-janitor: following it");
            }
            Ok(()) => {
                let n = REOPENED.fetch_add(1, Ordering::Relaxed) + 1;
                warn!(path = %path.display(), times = n,
                      "the deletion journal was moved away, removed or replaced by another process (logrotate?): \
                       writing to the file at its path again (rotation is built in: see journal_max_mib)");
            }
            Err(e) if had => warn!(path = %path.display(), error = %e,
                "the deletion journal was moved away, removed or replaced, and cannot be opened again: lines are \
                 counted lost until it can"),
            Err(e) => debug!(path = %path.display(), error = %e, "the deletion journal still cannot be opened"),
        }
    }

    /// Writes the buffer with one `write(2)` (rotating first when the file is past its half of
    /// the bound). A failure drops the buffered lines and counts them: the journal never holds
    /// a deletion back, and never grows in memory while the disk is full.
    fn write_out(&self, inner: &mut Inner) {
        if inner.buf.is_empty() {
            return;
        }
        self.follow(inner);
        // Another writer of the same file (a `sweep` next to the daemon) may have written since,
        // and a full disk may have cut its last line: our first line must not be glued to it
        // (and lost with it, uncounted). One `fstat` a write; a byte read only when it grew.
        if let Some(f) = inner.file.as_ref()
            && let Ok(len) = f.metadata().map(|m| m.len())
            && len != inner.size
        {
            inner.torn = ends_torn(f, len);
            inner.size = len;
        }
        if inner.size.saturating_add(inner.buf.len() as u64) > self.max_bytes / 2 {
            self.rotate(inner);
        }
        // After a cut line, start on a fresh one (the reader skips the cut line alone).
        let fresh = usize::from(inner.torn);
        if inner.torn {
            inner.buf.insert(0, b'\n');
        }
        let result = match inner.file.as_mut() {
            Some(f) => write_counted(f, &inner.buf),
            None => Err((
                0,
                io::Error::other("the journal file could not be opened again after a rotation"),
            )),
        };
        let written = match &result {
            Ok(()) => inner.buf.len(),
            Err((n, _)) => *n,
        };
        inner.size = inner.size.saturating_add(written as u64);
        if written > 0 {
            inner.torn = inner.buf[written - 1] != b'\n';
        }
        match result {
            Ok(()) => {}
            Err((_, e)) => {
                // The lines that went out whole are in the file; the rest (the cut one too) are lost.
                let whole = inner.buf[fresh.min(written)..written]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u64;
                let n = inner.buf_lines.saturating_sub(whole);
                LOST.fetch_add(n, Ordering::Relaxed);
                if self.lost.fetch_add(n, Ordering::Relaxed) == 0 {
                    warn!(path = %self.path().display(), error = %e, lines = n,
                          "cannot write the deletion journal: deleting goes on, and the lines lost are counted in \
                           shuffle_janitor_journal_lines_lost_total (further failures at debug)");
                } else {
                    debug!(path = %self.path().display(), error = %e, lines = n, "cannot write the deletion journal");
                }
            }
        }
        inner.buf.clear();
        inner.buf_lines = 0;
    }

    /// Moves the current file to [`OLD_NAME`] (replacing the one before) and starts a new one.
    /// Another process writing the same journal (`sweep` next to the daemon) may have rotated
    /// it already: then the file at the name is simply opened.
    fn rotate(&self, inner: &mut Inner) {
        let path = self.path();
        let ours = inner
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        let there = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        if ours.is_some()
            && ours == there
            && let Err(e) = std::fs::rename(&path, self.dir.join(OLD_NAME))
        {
            debug!(path = %path.display(), error = %e, "cannot rotate the deletion journal");
        }
        if let Err(e) = Self::reopen(inner, &path) {
            debug!(path = %path.display(), error = %e, "cannot open the deletion journal after rotating it");
        }
    }

    /// Opens the file at `path` in place of the one held (with [`open_file`]'s hardening).
    fn reopen(inner: &mut Inner, path: &Path) -> io::Result<()> {
        match open_file(path) {
            Ok(f) => {
                inner.size = f.metadata().map_or(0, |m| m.len());
                inner.torn = ends_torn(&f, inner.size);
                inner.file = Some(f);
                Ok(())
            }
            Err(e) => {
                inner.file = None;
                inner.size = 0;
                inner.torn = false;
                Err(e)
            }
        }
    }

    /// At the daemon's start: finds the units whose deletion a crash interrupted (an intent
    /// without its `deleted` line), records each as `interrupted` with which of its files are
    /// gone and which are left, and returns them.
    pub fn recover(&self) -> Vec<Interrupted> {
        let mut out = Vec::new();
        for intent in unmatched_intents(read_lines(&self.dir).filter_map(Result::ok)) {
            if writer_alive(&intent.id) {
                continue;
            }
            let (gone, left): (Vec<String>, Vec<String>) = intent
                .files
                .iter()
                .cloned()
                .partition(|f| std::fs::symlink_metadata(intent.store.join(f)).is_err());
            let now = crate::sweep::now();
            let line = json!({
                "event": "interrupted",
                "id": intent.id,
                "time_ns": now,
                "time": rfc3339(now),
                "intent_time_ns": intent.time_ns,
                "intent_time": rfc3339(intent.time_ns),
                "store": lossy(&intent.store),
                "files_gone": gone,
                "files_left": left,
            })
            .to_string();
            self.buffered(&line);
            out.push(Interrupted { intent, gone, left });
        }
        self.flush();
        out
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A unit whose deletion a crash interrupted.
#[derive(Clone, Debug)]
pub struct Interrupted {
    pub intent: Intent,
    pub gone: Vec<String>,
    pub left: Vec<String>,
}

/// Opens the journal for `cfg` (its `state_dir` and `journal_max_mib`), or says why not.
pub fn open_for(cfg: &crate::config::Config, by: By) -> Option<Arc<Journal>> {
    let dir = cfg.state_dir.as_deref()?;
    if cfg.journal_max_bytes == 0 {
        return None;
    }
    match Journal::open(dir, cfg.journal_max_bytes, by) {
        Ok(j) => Some(Arc::new(j)),
        Err(e) => {
            let path = dir.join(FILE_NAME);
            match by {
                By::Daemon => warn!(path = %path.display(), error = %e,
                    "cannot open the deletion journal: deletions are not journaled (create state_dir writable for \
                     this user, or set journal_max_mib = 0)"),
                // A `sweep` by a user who cannot write state_dir: the log says it, quietly.
                By::Sweep => debug!(path = %path.display(), error = %e, "deletion journal not written"),
            }
            None
        }
    }
}
#[cfg(test)]
mod tests;
