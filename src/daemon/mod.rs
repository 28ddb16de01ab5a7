//! `shuffle-janitor run`: the long-running daemon that replaces the cron job.
//!
//! It keeps an [`Index`] of every unit below the roots, filled by walks and kept current by an
//! inotify [`watch`], and decides from it ([`crate::sweep::indexed`]): a steady-state sweep
//! reads no directory. One loop owns the state and reacts to messages: signals ([`signals`]),
//! the interval, the watermark poll, the watch and the end of a job. Jobs (walks and sweeps) run
//! on a blocking thread, one at a time: walks first, then one sweep (requests during a job are
//! coalesced, a purge wins over a plain sweep, pressure over an interval).
//!
//! - [`watch`]: inotify, by watch descriptor, into the index;
//! - [`walk`]: walks that fill the index and add the watches;
//! - [`pressure`]: which filesystems must shed load, and the back-off when they cannot;
//! - [`clock`]: the clock the rules use, steady across wall-clock steps;
//! - [`health`]: whether a walk or sweep is stuck (`/-/healthy`, the watchdog);
//! - [`metrics`], [`http`], [`signals`]: the edges.
//!
//! `impl Daemon` is split by concern: [`event_loop`] (the start, the message loop, the
//! shutdown), [`jobs`] (scheduling and coalescing of walks and sweeps), [`outcomes`] (a job's
//! end, the watch's news, a clock step), [`status`] (the control socket's requests),
//! [`resolve`] (roots, their filesystems, the pressure check) and [`reload`] (`SIGHUP`, the
//! state file).

pub mod clock;
pub mod control;
pub mod explain;
pub mod health;
pub mod http;
pub mod metrics;
pub mod plan;
pub mod pressure;
pub mod signals;
pub mod walk;
pub mod watch;

mod event_loop;
mod jobs;
mod outcomes;
mod reload;
mod resolve;
mod status;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tracing::{debug, error, info, warn};

use crate::config::{Config, ConfigError, Overrides};
use crate::disk::{self, Mounts};
use crate::index::{Index, Lost};
use crate::open_files;
use crate::policy::{self, Mode as SweepMode, Nanos, Reason};
use crate::report::{Op, Report};
use crate::spark::DirRole;
use crate::state::State;
use crate::store_dir::deletion_gate;
use crate::sweep::{self, Root, roots};
use crate::web_config::{WebConfig, WebConfigError};
use clock::Clock;
use jobs::{Job, Running, WalkJob, WalkQueue};
use metrics::{Metrics, Trigger};
use pressure::{Pressure, UNMET_BACKOFF};
use signals::Message;
use walk::{WalkCtx, Walked};
use watch::{Roots, Watch, WatchMsg, WatchedRoot, now_nanos};

/// How long a shutdown waits for a walk in hand (a sweep in hand finishes its unit).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(4500);
/// New data wakes the pressure check at once, and then no sooner than this after the last check
/// (a burst of writes costs at most one check per period, and the write that crosses `high`
/// waits for none when the disk was quiet before it).
const ACTIVITY_DELAY: Duration = Duration::from_millis(25);
/// How often the state file is written when it changed.
const STATE_EVERY: Duration = Duration::from_secs(60);
/// Sweeps postponed in a row for units not yet stat'ed again, after which the next one waits
/// only for the events (see `Watch::settle`).
const MAX_POSTPONED: u32 = 3;
/// Overflows closer together than this are one burst: logged once.
const OVERFLOW_BURST: Duration = Duration::from_secs(60);
/// How often the loop runs at least (its heartbeat) and looks whether a job is stuck.
const BEAT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr} (metrics.listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("cannot start: {0}")]
    Io(#[from] io::Error),
    #[error("cannot start: {0}")]
    State(crate::state::StateError),
}

/// Runs the daemon until SIGTERM or SIGINT. `config_path` (with the command line's `overrides`
/// on top) and the web config file are re-read on SIGHUP.
pub fn run(config_path: Option<PathBuf>, overrides: Overrides, cfg: Config, web: WebConfig) -> Result<(), DaemonError> {
    crate::sweep::raise_fd_limit();
    map_large_tables();
    // Every setting of the wall clock, even one undone before the next sweep, makes the JVMs
    // running then untrusted owners (see `procs`); the baseline is taken now.
    crate::procs::watch_clock_sets();
    crate::sweep::look_at_the_clock(&cfg);
    // Two workers: /metrics and the health endpoints keep answering while the loop waits on a
    // slow statvfs (jobs themselves run on the blocking pool).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let (tx, rx) = mpsc::channel(64);
        signals::forward(tx)?;
        let daemon = Daemon::start(config_path, overrides, cfg, web).await?;
        daemon.serve(rx).await;
        Ok(())
    });
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

struct Daemon {
    config_path: Option<PathBuf>,
    overrides: Overrides,
    /// The metrics endpoint's TLS and users, shared with the server.
    web: http::WebHandle,
    cfg: Arc<Config>,
    metrics: Arc<Metrics>,
    index: Arc<Mutex<Index>>,
    /// The roots by number, shared with the watch and the walks.
    roots: Roots,
    /// Canonical path -> number: a root keeps its number for the life of the process.
    numbers: BTreeMap<PathBuf, u32>,
    /// The roots present now, as the sweeps see them.
    present: Vec<(u32, Root)>,
    watch: Option<Arc<Watch>>,
    watch_rx: mpsc::UnboundedReceiver<WatchMsg>,
    cancel: Arc<AtomicBool>,
    running: Option<Running>,
    walks: WalkQueue,
    pending: Option<Job>,
    /// When to look at disk usage early (new data appeared).
    check_at: Option<Instant>,
    /// When the usage was last read (`check_pressure`).
    last_check: Option<Instant>,
    pressure: Pressure,
    clock: Clock,
    last_unfreed: u64,
    state_saved: Instant,
    last_overflow: Option<Instant>,
    /// The startup walk is done: sweeps may run.
    walked: bool,
    /// Sweeps postponed in a row because the watch had not caught up (see `MAX_POSTPONED`).
    postponed: u32,
    /// Layout directories without a watch, by root (as of the last walk of each): new stores
    /// below them are only found by walking, so those roots are walked at every interval.
    layout_unwatched: BTreeMap<u32, usize>,
    /// The lock on `state_dir`, held for the life of the process.
    _state_lock: Option<crate::state::StateLock>,
    /// Requests of the control socket (`status`, `plan`, `explain`).
    control_rx: mpsc::Receiver<control::Asked>,
    /// Kept so that `control_rx` never ends (a closed channel would wake the loop at every turn).
    _control_tx: mpsc::Sender<control::Asked>,
    /// The control socket this daemon made (removed at shutdown); a reload does not move it.
    control_path: Option<PathBuf>,
    /// For `status`: when the daemon started and its config was loaded (Unix nanoseconds).
    started_at: Nanos,
    config_loaded_at: Nanos,
    /// For `status`: the last sweeps, newest last.
    last_sweeps: std::collections::VecDeque<serde_json::Value>,
    /// When the interval sweep is due next.
    next_sweep: Instant,
}

/// Opens the deletion journal of `cfg` and makes it the process's; at the start, reports the
/// units whose deletion the last run left in part (see [`crate::journal`]).
fn open_journal(cfg: &Config, at_start: bool) {
    let journal = crate::journal::open_for(cfg, crate::journal::By::Daemon);
    if let Some(j) = journal.as_ref().filter(|_| at_start) {
        for i in j.recover() {
            warn!(
                store = %i.intent.store.display(),
                started = %crate::journal::rfc3339(i.intent.time_ns),
                gone = ?i.gone,
                left = ?i.left,
                "a unit's deletion was interrupted (the process stopped between its unlinks); recorded in the \
                 journal as interrupted, and what is left is judged again by the next sweep"
            );
        }
    }
    crate::journal::install(journal);
}

/// Puts the calling thread (a job thread: walks and sweeps) at idle I/O priority and nice 10,
/// once: on a busy node the janitor's reads and stats wait for Spark's, not the reverse. The
/// unit sets the same for the whole process (`IOSchedulingClass=idle`, `Nice=10`); this covers
/// the daemon started any other way. The idle class is honoured by the BFQ scheduler (and
/// CFQ before it); with `mq-deadline`, `kyber` or `none` it has no effect, and only the nice
/// value lowers the daemon's CPU share.
fn lower_priority() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if DONE.with(|d| d.replace(true)) {
        return;
    }
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    const IOPRIO_CLASS_IDLE: libc::c_int = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_int = 13;
    // SAFETY: ioprio_set takes three integers and touches no memory of ours; `who` 0 is the
    // calling thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if r != 0 {
        debug!(error = %io::Error::last_os_error(), "cannot set idle I/O priority");
    }
    // On Linux the nice value is per thread: this one only.
    let tid = rustix::thread::gettid();
    let nice = rustix::process::getpriority_process(Some(tid)).unwrap_or(0).max(10);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        debug!(error = %e, "cannot lower the job thread's priority");
    }
}

/// Has glibc map every allocation of 128 KiB or more on its own, before any thread is started.
/// 128 KiB is glibc's default too, but the first such block freed raises it (up to 32 MiB), and
/// from then on those blocks come from the heap. The
/// index's unit table of a store is such a block (about 250 KB for 3,500 map outputs): mapped,
/// it grows in place with `mremap` as Spark writes, and is given back whole when freed, instead
/// of leaving a hole in the heap at each growth (at the first write after the startup walk,
/// one per store: the RSS over a million files rose 39 -> 51 MiB in a second). An operator's
/// `MALLOC_MMAP_THRESHOLD_` wins.
fn map_large_tables() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt sets one of the allocator's tunables; called before the runtime's
        // threads exist, and this one only moves where large blocks come from.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// Returns the allocator's free memory to the system, after each walk and sweep (on the job's
/// thread). glibc gives memory back only from the top of each arena, and the index's per-store
/// tables, which the watch thread grows as Spark writes (and the walk's threads made), leave
/// free holes below it: under churn over a million files the daemon's RSS rose to 58 MiB over
/// 38 MiB of live heap (heaptrack). A trim walks the free lists once and releases every whole
/// free page in them (the steady-state sweep's CPU over a million files, 3.3 ms, includes it).
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes an integer, touches only the allocator's own state under its
    // locks, and frees nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Tells systemd, when started by it (`Type=notify`); a no-op otherwise.
fn sd_notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "cannot notify systemd");
    }
}
