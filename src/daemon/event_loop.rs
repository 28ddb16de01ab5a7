//! The message loop and its state: the daemon's start, the loop that owns the state and
//! reacts to each message, and the shutdown.

use super::*;

impl Daemon {
    pub(super) async fn start(
        config_path: Option<PathBuf>,
        overrides: Overrides,
        cfg: Config,
        web: WebConfig,
    ) -> Result<Daemon, DaemonError> {
        // Before anything: a second daemon on the same state_dir would overwrite the first's
        // state (and sweep the same roots). One whose state_dir cannot be locked at all (a
        // read-only /var/lib) runs, as it runs without saving its state.
        let state_lock = match cfg.state_dir.as_deref().map(State::lock) {
            Some(Ok(lock)) => Some(lock),
            Some(Err(e @ crate::state::StateError::Locked { .. })) => return Err(DaemonError::State(e)),
            Some(Err(e)) => {
                warn!("{e}; a second daemon on this state_dir would not be refused");
                None
            }
            None => None,
        };
        open_journal(&cfg, true);
        let metrics = Arc::new(Metrics::new());
        metrics.set_config(&cfg);
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let ready = Arc::new(AtomicBool::new(false));
        let web_described = web.describe();
        let web: http::WebHandle = Arc::new(RwLock::new(Arc::new(web)));
        http::spawn(listener, metrics.clone(), ready.clone(), web.clone());

        let (control_tx, control_rx) = mpsc::channel(8);
        let mut control_path = cfg.control_socket.clone();
        if let Some(path) = &cfg.control_socket
            && let Err(e) = control::spawn(path, control_tx.clone(), metrics.control_clients_dropped.clone())
        {
            control_path = None;
            warn!(path = %path.display(), error = %e, "cannot open the control socket: status, plan and explain \
                  answer without the daemon's view (create its directory writable for this user, or set \
                  control_socket = \"\")");
        }
        let index = Arc::new(Mutex::new(Index::default()));
        let roots: Roots = Arc::new(RwLock::new(Vec::new()));
        let (wtx, watch_rx) = mpsc::unbounded_channel();
        let watch = match Watch::start(index.clone(), roots.clone(), cfg.age_basis.clone(), wtx) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                warn!(error = %e, "cannot start inotify: every store is walked at each interval and judged by its \
                      timestamps alone");
                None
            }
        };
        let mut daemon = Daemon {
            config_path,
            overrides,
            web,
            cfg: Arc::new(cfg),
            metrics,
            index,
            roots,
            numbers: BTreeMap::new(),
            present: Vec::new(),
            watch,
            watch_rx,
            cancel: Arc::new(AtomicBool::new(false)),
            running: None,
            walks: WalkQueue::default(),
            pending: None,
            check_at: None,
            last_check: None,
            pressure: Pressure::default(),
            clock: Clock::new(now_nanos(), std::time::Instant::now()),
            last_unfreed: 0,
            state_saved: Instant::now(),
            last_overflow: None,
            walked: false,
            postponed: 0,
            layout_unwatched: BTreeMap::new(),
            _state_lock: state_lock,
            control_rx,
            _control_tx: control_tx,
            control_path,
            started_at: now_nanos(),
            config_loaded_at: now_nanos(),
            last_sweeps: std::collections::VecDeque::new(),
            next_sweep: Instant::now(),
        };
        daemon.warn_about_atime();
        daemon.refresh_roots();
        daemon.walks.clear(); // the startup walk covers them all
        daemon.load_state();
        ready.store(true, Ordering::Relaxed);
        info!(
            listen = %daemon.cfg.listen,
            web = %web_described,
            config = %daemon.config_name(),
            roots = ?daemon.cfg.roots,
            inotify = daemon.watch.is_some(),
            dry_run = daemon.cfg.dry_run,
            "shuffle-janitor running"
        );
        if daemon.cfg.dry_run {
            warn!("dry run: sweeps decide and count, and delete nothing (dry_run = true or run --dry-run)");
        }
        sd_notify(&[sd_notify::NotifyState::Ready]);
        Ok(daemon)
    }

    pub(super) fn config_name(&self) -> String {
        self.cfg
            .source
            .as_ref()
            .map_or_else(|| "built-in defaults".into(), |p| p.display().to_string())
    }

    pub(super) async fn serve(mut self, mut messages: mpsc::Receiver<Message>) {
        self.walks.push(WalkJob::All { reconcile: false });
        self.request(Job {
            trigger: Trigger::Startup,
            mode: SweepMode::Sweep,
        });
        let mut sweep_tick = self.ticker(self.cfg.interval);
        self.next_sweep = Instant::now() + self.cfg.interval;
        let mut poll_tick = self.ticker(self.cfg.watermark.poll);
        let mut rescan_tick = self.ticker(self.cfg.rescan_interval);
        let mut state_tick = self.ticker(STATE_EVERY);
        let watchdog = sd_notify::watchdog_enabled();
        let mut watchdog_tick = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
        // The loop's heartbeat, and the check for a stuck job (see `health`).
        let mut beat_tick = tokio::time::interval(BEAT);
        let mut said_stuck = false;
        loop {
            self.metrics.health.beat();
            tokio::select! {
                msg = messages.recv() => match msg {
                    Some(Message::Reload) => {
                        if self.reload() {
                            sweep_tick = self.ticker(self.cfg.interval);
                            self.next_sweep = Instant::now() + self.cfg.interval;
                            poll_tick = self.ticker(self.cfg.watermark.poll);
                            rescan_tick = self.ticker(self.cfg.rescan_interval);
                        }
                    }
                    Some(Message::Sweep) => self.request(Job { trigger: Trigger::Signal, mode: SweepMode::Sweep }),
                    Some(Message::Purge) => self.request(Job { trigger: Trigger::Signal, mode: SweepMode::Purge }),
                    Some(Message::Shutdown) | None => break,
                },
                Some((req, reply)) = self.control_rx.recv() => self.on_control(req, reply),
                _ = sweep_tick.tick() => {
                    self.next_sweep = Instant::now() + self.cfg.interval;
                    // Roots with directories that could not be watched: walked, and watched
                    // where the watches can now be added (after the limit was raised).
                    let partial: Vec<u32> = self.layout_unwatched.iter().filter(|(_, n)| **n > 0).map(|(r, _)| *r).collect();
                    for n in partial {
                        self.walk(WalkJob::Root(n));
                    }
                    self.request(Job { trigger: Trigger::Interval, mode: SweepMode::Sweep });
                }
                _ = poll_tick.tick() => self.check_pressure(),
                _ = rescan_tick.tick() => self.walk(WalkJob::All { reconcile: true }),
                _ = state_tick.tick() => self.save_state(),
                _ = sleep_until(self.check_at.unwrap_or_else(Instant::now)), if self.check_at.is_some() => {
                    self.check_at = None;
                    self.check_pressure();
                }
                Some(msg) = self.watch_rx.recv() => self.on_watch(msg),
                done = async { (&mut self.running.as_mut().expect("guarded").handle).await }, if self.running.is_some() => {
                    self.running = None;
                    self.metrics.health.job_ended();
                    match done {
                        Ok(done) => self.finished(done),
                        Err(e) => error!(error = %e, "job thread failed"),
                    }
                    self.next_job();
                }
                _ = beat_tick.tick() => {
                    match self.metrics.health.stuck() {
                        Some(why) if !said_stuck => {
                            said_stuck = true;
                            error!("{why}; /-/healthy answers 503 and the systemd watchdog is no longer fed");
                        }
                        None if said_stuck => {
                            said_stuck = false;
                            info!("no longer stuck: the job in hand made progress or ended");
                        }
                        _ => {}
                    }
                }
                // Not fed while stuck: systemd restarts a daemon whose job cannot end.
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    if self.metrics.health.stuck().is_none() {
                        sd_notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                }
            }
        }
        self.shutdown().await;
    }

    pub(super) fn ticker(&self, every: Duration) -> tokio::time::Interval {
        // Durations are bounded by the config's validation; this cannot overflow.
        let start = Instant::now().checked_add(every).unwrap_or_else(Instant::now);
        let mut t = interval_at(start, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    }

    pub(super) async fn shutdown(mut self) {
        sd_notify(&[sd_notify::NotifyState::Stopping]);
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(running) = self.running.take() {
            info!("stopping: finishing the unit in hand");
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, running.handle).await;
        }
        self.save_state();
        if let Some(p) = &self.control_path {
            let _ = std::fs::remove_file(p);
        }
        // Never exit with a unit deleted in part: wait for the one in hand (a few unlinks),
        // then keep the gate closed until the process is gone.
        let gate = tokio::task::spawn_blocking(|| std::mem::forget(deletion_gate().write()));
        let _ = tokio::time::timeout(Duration::from_secs(25), gate).await;
        info!("shuffle-janitor stopped");
    }
}
