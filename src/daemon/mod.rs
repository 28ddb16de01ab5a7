//! `shuffle-janitor run`: the long-running daemon that replaces the cron job.
//!
//! One loop owns the state and reacts to messages: signals ([`signals`]), the sweep interval,
//! the watermark poll, the inotify watch ([`watch`]) and the end of a sweep. Sweeps run on a
//! blocking thread, never two at once: a trigger during a sweep is coalesced into one follow-up
//! (a purge wins over a plain sweep). Between sweeps the daemon only polls statvfs and takes
//! inotify events.

pub mod http;
pub mod metrics;
pub mod signals;
pub mod watch;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tracing::{debug, error, info, warn};

use crate::config::{Config, ConfigError};
use crate::disk::{self, Mounts};
use crate::open_files;
use crate::opens::OpenLog;
use crate::policy::{self, Mode, Reason};
use crate::report::{Op, Report};
use crate::sweep::{self, RootStatus};
use metrics::{Metrics, Trigger};
use signals::Message;
use watch::{Watch, WatchEvent};

/// How long a shutdown waits for the sweep in hand to stop at a unit boundary.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(4500);
/// New files wake the pressure check this soon (coalescing bursts of creations).
const ACTIVITY_DELAY: Duration = Duration::from_millis(200);
/// After a pressure sweep that could not free enough, wait this long before the next one
/// (unless new files arrive): everything left was young, open or protected.
const UNMET_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr} (metrics.listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("cannot start: {0}")]
    Io(#[from] io::Error),
}

/// A sweep to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Job {
    trigger: Trigger,
    mode: Mode,
}

impl Job {
    /// Two requests folded into one follow-up: a purge covers a sweep.
    fn merge(self, other: Job) -> Job {
        if other.mode == Mode::Purge && self.mode != Mode::Purge {
            other
        } else {
            self
        }
    }
}

struct Running {
    job: Job,
    /// Some filesystem was at or above the high watermark when it started, so it evicts.
    evicts: bool,
    handle: JoinHandle<(Report, u64)>,
}

/// Runs the daemon until SIGTERM or SIGINT. `config_path` is re-read on SIGHUP.
pub fn run(config_path: Option<PathBuf>, cfg: Config) -> Result<(), DaemonError> {
    // Two workers: /metrics and the health endpoints keep answering while the loop waits on a
    // slow statvfs (sweeps themselves run on the blocking pool).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let (tx, rx) = mpsc::channel(16);
        signals::forward(tx)?;
        let daemon = Daemon::start(config_path, cfg).await?;
        daemon.serve(rx).await;
        Ok(())
    });
    // A sweep that ignored the grace period is not waited for again.
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

struct Daemon {
    config_path: Option<PathBuf>,
    cfg: Arc<Config>,
    metrics: Arc<Metrics>,
    opens: Arc<OpenLog>,
    watch: Watch,
    watch_rx: mpsc::UnboundedReceiver<WatchEvent>,
    cancel: Arc<AtomicBool>,
    running: Option<Running>,
    pending: Option<Job>,
    /// When to look at disk usage early (new files appeared).
    check_at: Option<Instant>,
    /// No pressure sweep before this (the last one could not free enough).
    pressure_quiet_until: Option<Instant>,
    /// Filesystems at or above the high watermark at the last check.
    above_high: BTreeMap<PathBuf, bool>,
    /// The present roots (canonical path, device) the watch was last set to.
    watched_roots: Vec<(PathBuf, u64)>,
}

impl Daemon {
    async fn start(config_path: Option<PathBuf>, cfg: Config) -> Result<Daemon, DaemonError> {
        let metrics = Arc::new(Metrics::new());
        metrics.set_config(&cfg);
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let ready = Arc::new(AtomicBool::new(false));
        http::spawn(listener, metrics.clone(), ready.clone());

        let opens = Arc::new(OpenLog::default());
        let (wtx, watch_rx) = mpsc::unbounded_channel();
        let watch = Watch::start(opens.clone(), wtx);
        let mut daemon = Daemon {
            config_path,
            cfg: Arc::new(cfg),
            metrics,
            opens,
            watch,
            watch_rx,
            cancel: Arc::new(AtomicBool::new(false)),
            running: None,
            pending: None,
            check_at: None,
            pressure_quiet_until: None,
            above_high: BTreeMap::new(),
            watched_roots: Vec::new(),
        };
        daemon.warn_about_atime();
        daemon.rewatch(daemon.present_roots());
        ready.store(true, Ordering::Relaxed);
        info!(
            listen = %daemon.cfg.listen,
            config = %daemon.config_name(),
            roots = ?daemon.cfg.roots,
            watched_dirs = daemon.watch.watched(),
            "shuffle-janitor running"
        );
        sd_notify(&[sd_notify::NotifyState::Ready]);
        Ok(daemon)
    }

    fn config_name(&self) -> String {
        self.cfg
            .source
            .as_ref()
            .map_or_else(|| "built-in defaults".into(), |p| p.display().to_string())
    }

    async fn serve(mut self, mut messages: mpsc::Receiver<Message>) {
        self.request(Job {
            trigger: Trigger::Startup,
            mode: Mode::Sweep,
        });
        let mut sweep_tick = self.sweep_ticker();
        let mut poll_tick = self.poll_ticker();
        let watchdog = sd_notify::watchdog_enabled();
        let mut watchdog_tick = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
        loop {
            tokio::select! {
                msg = messages.recv() => match msg {
                    Some(Message::Reload) => {
                        if self.reload() {
                            sweep_tick = self.sweep_ticker();
                            poll_tick = self.poll_ticker();
                        }
                    }
                    Some(Message::Sweep) => self.request(Job { trigger: Trigger::Signal, mode: Mode::Sweep }),
                    Some(Message::Purge) => self.request(Job { trigger: Trigger::Signal, mode: Mode::Purge }),
                    Some(Message::Shutdown) | None => break,
                },
                _ = sweep_tick.tick() => self.request(Job { trigger: Trigger::Interval, mode: Mode::Sweep }),
                _ = poll_tick.tick() => self.check_pressure(),
                _ = sleep_until(self.check_at.unwrap_or_else(Instant::now)), if self.check_at.is_some() => {
                    self.check_at = None;
                    self.check_pressure();
                }
                Some(ev) = self.watch_rx.recv() => self.on_watch(ev),
                done = async { (&mut self.running.as_mut().expect("guarded").handle).await }, if self.running.is_some() => {
                    let job = self.running.take().expect("guarded").job;
                    match done {
                        Ok((report, unfreed)) => self.finished(job, &report, unfreed),
                        Err(e) => error!(error = %e, "sweep thread failed"),
                    }
                    if let Some(next) = self.pending.take() {
                        self.start_sweep(next);
                    }
                }
                _ = watchdog_tick.tick(), if watchdog.is_some() => sd_notify(&[sd_notify::NotifyState::Watchdog]),
            }
        }
        self.shutdown().await;
    }

    fn sweep_ticker(&self) -> tokio::time::Interval {
        let mut t = interval_at(Instant::now() + self.cfg.interval, self.cfg.interval);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    }

    fn poll_ticker(&self) -> tokio::time::Interval {
        let poll = self.cfg.watermark.poll;
        let mut t = interval_at(Instant::now() + poll, poll);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    }

    /// Starts a sweep now, or folds it into the follow-up of the one running. Pressure does not
    /// wait for a sweep that started below the high watermark: that one is cancelled (at a unit
    /// boundary) so eviction starts at once.
    fn request(&mut self, job: Job) {
        if let Some(running) = &self.running {
            if job.trigger == Trigger::Pressure && !running.evicts && running.job.mode != Mode::Purge {
                info!(
                    cancelled = running.job.trigger.as_str(),
                    "pressure pre-empts the sweep in hand"
                );
                self.cancel.store(true, Ordering::Relaxed);
            }
            self.pending = Some(self.pending.map_or(job, |p| p.merge(job)));
        } else {
            self.start_sweep(job);
        }
    }

    fn start_sweep(&mut self, job: Job) {
        debug!(
            trigger = job.trigger.as_str(),
            purge = job.mode == Mode::Purge,
            "sweep starting"
        );
        let evicts = self.above_high.values().any(|&above| above);
        self.cancel.store(false, Ordering::Relaxed);
        let cfg = self.cfg.clone();
        let cancel = self.cancel.clone();
        let opts = sweep::Options {
            mode: job.mode,
            dry_run: false,
            list_files: false,
            opens: Some(self.opens.clone()),
        };
        let handle = tokio::task::spawn_blocking(move || {
            let report = sweep::run(&cfg, &opts, &cancel);
            let roots: Vec<PathBuf> = report
                .roots
                .iter()
                .filter(|r| r.present)
                .map(|r| r.path.clone())
                .collect();
            let unfreed = open_files::unfreed_bytes(Path::new("/proc"), &roots);
            (report, unfreed)
        });
        self.running = Some(Running { job, evicts, handle });
    }

    fn finished(&mut self, job: Job, report: &Report, unfreed: u64) {
        let ended = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.metrics.record_sweep(job.trigger, report, ended);
        self.metrics
            .unfreed_bytes
            .set(i64::try_from(unfreed).unwrap_or(i64::MAX));
        self.opens.prune(report.now - policy::nanos(self.cfg.max_age));
        let unmet = report
            .filesystems
            .iter()
            .any(|f| f.shortfall.is_some() && f.need_reason == Some(Reason::Pressure));
        self.pressure_quiet_until = unmet.then(|| Instant::now() + UNMET_BACKOFF.min(self.cfg.interval));
        let total = report.deleted_total();
        info!(
            trigger = job.trigger.as_str(),
            purge = job.mode == Mode::Purge,
            deleted_files = total.files,
            deleted_bytes = total.bytes,
            skipped_files = report.skipped.values().sum::<u64>(),
            errors = report.error_count(),
            unfreed_bytes = unfreed,
            cancelled = report.cancelled,
            seconds = report.duration_seconds,
            "sweep finished"
        );
        // The gauges show use after the deletions, not the use the sweep started from.
        self.read_usage();
    }

    /// The roots present now (canonical path, device).
    fn present_roots(&self) -> Vec<(PathBuf, u64)> {
        sweep::resolve_roots(&self.cfg)
            .into_iter()
            .filter_map(|s| match s {
                RootStatus::Present { path, mount, .. } => Some((path, mount.dev)),
                _ => None,
            })
            .collect()
    }

    /// Starts a pressure sweep when a filesystem holding a root is at or above the high
    /// watermark. Also notices roots that appeared (disks mounted late) and watches them.
    fn check_pressure(&mut self) {
        let pressure = self.read_usage();
        let quiet = self.pressure_quiet_until.is_some_and(|t| Instant::now() < t);
        if pressure && !quiet {
            // A sweep already running decided its need at its start: queue a follow-up.
            self.request(Job {
                trigger: Trigger::Pressure,
                mode: Mode::Sweep,
            });
        }
    }

    /// Reads usage of every filesystem holding a root into the gauges; true when one is at or
    /// above the high watermark.
    fn read_usage(&mut self) -> bool {
        let present = self.present_roots();
        if present != self.watched_roots {
            self.rewatch(present.clone());
        }
        let mounts = Mounts::read().unwrap_or_default();
        let mut devs: BTreeMap<u64, PathBuf> = BTreeMap::new();
        for (path, dev) in present {
            devs.entry(dev).or_insert(path);
        }
        let mut pressure = false;
        for (dev, path) in devs {
            let mountpoint = sweep::mount_point(&mounts, &path, dev);
            let name = mountpoint.to_string_lossy().into_owned();
            match disk::usage(&path) {
                Ok(u) => {
                    let ratio = u.ratio();
                    self.metrics
                        .filesystem_used_ratio
                        .with_label_values(&[&name])
                        .set(ratio);
                    let above = ratio >= self.cfg.watermark.high;
                    if !above {
                        self.metrics.pressure_relieved(&name);
                    }
                    let was = self.above_high.insert(mountpoint, above).unwrap_or(false);
                    if above && !was {
                        warn!(mountpoint = %name, used = ratio, high = self.cfg.watermark.high, "filesystem crossed the high watermark");
                    }
                    pressure |= above;
                }
                Err(e) => {
                    self.metrics.error(Op::Statvfs);
                    warn!(path = %path.display(), error = %e, "statvfs failed");
                }
            }
        }
        pressure
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        match ev {
            WatchEvent::NewDir(dir) => {
                let mut added = watch::Added::default();
                self.watch.add_tree(&dir, &mut added);
                self.count_watch(&added);
            }
            WatchEvent::GoneDir(dir) => self.watch.gone(&dir),
            WatchEvent::Activity => {
                self.watch.take_activity();
                // New files: the disk may be filling, and whatever pressure could not free
                // before may be different now.
                self.pressure_quiet_until = None;
                self.check_at.get_or_insert_with(|| Instant::now() + ACTIVITY_DELAY);
            }
            WatchEvent::Rescan => {
                warn!("inotify queue overflowed; some opens may have been missed");
                let added = self.watch.refresh();
                self.count_watch(&added);
            }
        }
    }

    fn count_watch(&self, added: &watch::Added) {
        for _ in 0..added.errors {
            self.metrics.error(Op::Watch);
        }
        self.metrics.inotify_active.set(i64::from(self.watch.active));
        watch::log_added(added, self.watch.watched());
    }

    /// (Re)watches the present roots.
    fn rewatch(&mut self, present: Vec<(PathBuf, u64)>) {
        // A root now on another device has had a filesystem mounted over it (or removed).
        let remounted = present
            .iter()
            .any(|(p, dev)| self.watched_roots.iter().any(|(q, old)| p == q && dev != old));
        let added = self
            .watch
            .set_roots(present.iter().map(|(p, _)| p.clone()).collect(), remounted);
        self.watched_roots = present;
        self.count_watch(&added);
    }

    fn warn_about_atime(&self) {
        if !self.cfg.age_basis.contains(&crate::config::Timestamp::Atime) {
            return;
        }
        let mounts = Mounts::read().unwrap_or_default();
        for status in sweep::resolve_roots(&self.cfg) {
            if let RootStatus::Present {
                path,
                mount: crate::fsx::MountId { dev, .. },
                ..
            } = status
                && let Some(caveat) = mounts
                    .find(&path, dev)
                    .and_then(|m| disk::atime_caveat(m, self.cfg.max_age))
            {
                warn!(root = %path.display(), "age_basis includes atime, but {caveat}");
            }
        }
    }

    /// SIGHUP: validate the new config first; a bad one leaves the old one in force.
    /// Returns whether the config changed.
    fn reload(&mut self) -> bool {
        sd_notify(&[sd_notify::NotifyState::Reloading]);
        let result: Result<Config, ConfigError> = Config::load(self.config_path.as_deref());
        let changed = match result {
            Ok(cfg) => {
                if cfg.listen != self.cfg.listen {
                    warn!(old = %self.cfg.listen, new = %cfg.listen, "metrics.listen changes take effect on restart");
                }
                self.cfg = Arc::new(cfg);
                self.metrics.set_config(&self.cfg);
                self.metrics.config_last_reload_successful.set(1);
                self.warn_about_atime();
                self.rewatch(self.present_roots());
                info!(config = %self.config_name(), "configuration reloaded");
                true
            }
            Err(e) => {
                self.metrics.config_last_reload_successful.set(0);
                self.metrics.error(Op::Config);
                error!("configuration reload failed, the previous configuration stays in force: {e}");
                false
            }
        };
        sd_notify(&[sd_notify::NotifyState::Ready]);
        changed
    }

    async fn shutdown(mut self) {
        sd_notify(&[sd_notify::NotifyState::Stopping]);
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(running) = self.running.take() {
            info!("stopping: finishing the unit in hand");
            match tokio::time::timeout(SHUTDOWN_GRACE, running.handle).await {
                Ok(Ok((report, _))) => info!(deleted_files = report.deleted_total().files, "sweep stopped"),
                Ok(Err(e)) => error!(error = %e, "sweep thread failed"),
                Err(_) => warn!("sweep did not stop in time; exiting anyway"),
            }
        }
        info!("shuffle-janitor stopped");
    }
}

/// Tells systemd, when started by it (`Type=notify`); a no-op otherwise.
fn sd_notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "cannot notify systemd");
    }
}
