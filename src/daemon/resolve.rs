//! Roots and filesystems: which configured roots are present, what their filesystems hold,
//! and the pressure check that reads their usage.

use super::*;

impl Daemon {
    /// Resolves the roots: numbers new ones, opens them for the watch and the walks, queues a
    /// walk of each new or remounted one, and forgets those gone. Returns whether they changed.
    pub(super) fn refresh_roots(&mut self) -> bool {
        let mounts = Mounts::read().unwrap_or_default();
        let mut scratch = Report::new(false, false, 0);
        let present = roots::present_roots(&self.cfg, &mounts, &mut scratch);
        for (op, n) in &scratch.errors {
            for _ in 0..*n {
                self.metrics.error(*op);
            }
        }
        let mut changed = false;
        let mut now_present: Vec<(u32, Root)> = Vec::with_capacity(present.len());
        for r in present {
            let next = self.numbers.len() as u32;
            let n = *self.numbers.entry(r.path.clone()).or_insert(next);
            // The same directory on the same mount: a root removed and created again (same
            // path, same device) is a new root, to walk and watch afresh.
            let same = {
                let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
                matches!(roots.get(n as usize), Some(Some(w)) if w.mount == r.mount && w.ino == r.ino && w.role == r.role)
            };
            if !same {
                self.forget_root(n);
                let mut roots = self.roots.write().unwrap_or_else(|e| e.into_inner());
                if roots.len() <= n as usize {
                    roots.resize_with(n as usize + 1, || None);
                }
                roots[n as usize] = Some(WatchedRoot {
                    path: r.path.clone(),
                    mount: r.mount,
                    ino: r.ino,
                    role: r.role,
                    atime: r.atime,
                });
                drop(roots);
                self.walks.push(WalkJob::Root(n));
                changed = true;
            }
            now_present.push((n, r));
        }
        // Roots gone (removed, unmounted, no longer configured).
        let gone: Vec<u32> = {
            let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
            (0..roots.len() as u32)
                .filter(|n| roots[*n as usize].is_some() && !now_present.iter().any(|(p, _)| p == n))
                .collect()
        };
        for n in gone {
            self.forget_root(n);
            changed = true;
        }
        self.present = now_present;
        changed
    }

    /// Forgets root `n`: its watches and its stores in the index.
    pub(super) fn forget_root(&mut self, n: u32) {
        self.layout_unwatched.remove(&n);
        walk::forget_root(&self.roots, self.watch.as_deref(), &self.index, n);
    }

    /// Starts a pressure sweep when a filesystem holding a root is at or above the high
    /// watermark (and its back-off allows). Also notices roots that came or went.
    pub(super) fn check_pressure(&mut self) {
        self.last_check = Some(Instant::now());
        if self.refresh_roots() {
            self.next_job();
        }
        let above = self.read_usage();
        if !above.is_empty() && self.walked {
            self.request(Job {
                trigger: Trigger::Pressure,
                mode: SweepMode::Sweep,
            });
        }
    }

    /// Reads the usage of every filesystem holding a root into the gauges; returns those at or
    /// above the high watermark whose back-off allows an eviction now.
    pub(super) fn read_usage(&mut self) -> Vec<PathBuf> {
        let mounts = Mounts::read().unwrap_or_default();
        let mut devs: BTreeMap<u64, PathBuf> = BTreeMap::new();
        for (_, r) in &self.present {
            devs.entry(r.mount.dev).or_insert_with(|| r.path.clone());
        }
        let mut due = Vec::new();
        let mut mountpoints = Vec::new();
        let wall = now_nanos();
        for (dev, path) in devs {
            let mountpoint = sweep::mount_point(&mounts, &path, dev);
            let name = mountpoint.to_string_lossy().into_owned();
            mountpoints.push(mountpoint.clone());
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
                    if self.pressure.reading(&mountpoint, above) {
                        warn!(mountpoint = %name, used = ratio, high = self.cfg.watermark.high, "filesystem crossed the high watermark");
                    }
                    if above
                        && self
                            .pressure
                            .may_evict(&mountpoint, std::time::Instant::now(), u.used, wall)
                    {
                        due.push(mountpoint);
                    }
                }
                Err(e) => {
                    self.metrics.error(Op::Statvfs);
                    warn!(path = %path.display(), error = %e, "statvfs failed");
                }
            }
        }
        for gone in self.pressure.keep_only(&mountpoints) {
            self.metrics.forget_filesystem(&gone.to_string_lossy());
        }
        due
    }

    pub(super) fn warn_about_atime(&self) {
        if !self.cfg.age_basis.contains(&crate::config::Timestamp::Atime) {
            return;
        }
        let mounts = Mounts::read().unwrap_or_default();
        for status in sweep::resolve_roots(&self.cfg) {
            if let sweep::RootStatus::Present { path, mount, .. } = status
                && let Some(caveat) = mounts
                    .find(&path, mount.dev)
                    .and_then(|m| disk::atime_caveat(m, self.cfg.max_age))
            {
                warn!(root = %path.display(), "age_basis includes atime, but {caveat}");
            }
        }
    }

    /// The root number and relative path of an absolute store path.
    pub(super) fn root_of(&self, store: &Path) -> Option<(u32, PathBuf)> {
        self.numbers
            .iter()
            .filter(|(p, _)| store.starts_with(p))
            .max_by_key(|(p, _)| p.as_os_str().len())
            .map(|(p, n)| (*n, store.strip_prefix(p).unwrap_or(store).to_owned()))
    }
}
