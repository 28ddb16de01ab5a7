//! The configured roots as they are now: globs expanded, each checked, resolved to its canonical
//! path and mount, and roots inside another root's layout folded into it.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{Mode, OFlags};
use tracing::{info, warn};

use crate::config::{self, Config};
use crate::disk::{AtimeMode, Mounts};
use crate::fsx::{self, MountId};
use crate::report::{Op, Report, RootReport};
use crate::spark::{self, DirRole};

/// What became of one configured root (or one path its glob expanded to) this time.
#[derive(Clone, Debug)]
pub enum RootStatus {
    /// A directory on `mount` (canonical path; duplicates dropped), found as `given`; `ino` tells
    /// a root removed and created again from the one that was there.
    Present {
        path: PathBuf,
        mount: MountId,
        ino: u64,
        given: PathBuf,
    },
    /// Does not exist (yet): disks are mounted late.
    Missing(PathBuf),
    /// Exists but is not a directory (a glob matched a file): nothing to sweep there.
    NotDir(PathBuf),
    /// Inside the layout of another root, which sweeps it.
    Covered { path: PathBuf, by: PathBuf },
    /// Refused or unreadable, with the operation to count and why.
    Problem { path: PathBuf, op: Op, why: String },
}

/// Expands globs and checks each root. Touches the filesystem, logs nothing.
pub fn resolve_roots(cfg: &Config) -> Vec<RootStatus> {
    let mut out: Vec<RootStatus> = Vec::new();
    for pattern in &cfg.roots {
        let paths: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
            match glob::glob(pattern) {
                Ok(paths) => paths.filter_map(Result::ok).collect(),
                Err(e) => {
                    out.push(RootStatus::Problem {
                        path: pattern.into(),
                        op: Op::Config,
                        why: e.to_string(),
                    });
                    continue;
                }
            }
        } else {
            vec![PathBuf::from(pattern)]
        };
        if paths.is_empty() {
            out.push(RootStatus::Missing(pattern.into()));
        }
        for path in paths {
            let status = resolve_one(path);
            // The same directory twice (the same path, or a bind mount of it elsewhere: same
            // device and inode) is one root: walked and watched twice, one would be blind.
            let duplicate = matches!(&status, RootStatus::Present { path, mount, ino, .. }
                if out.iter().any(|o| matches!(o, RootStatus::Present { path: p, mount: m, ino: i, .. }
                    if p == path || (m.dev == mount.dev && i == ino))));
            if !duplicate {
                out.push(status);
            }
        }
    }
    fold_covered(&mut out);
    out
}

fn resolve_one(path: PathBuf) -> RootStatus {
    if let Err(problem) = config::check_root_path(&path) {
        return RootStatus::Problem {
            path,
            op: Op::Config,
            why: format!("it {problem}"),
        };
    }
    // The root itself may be a symlink (the operator's choice); nothing below it is followed.
    let canonical = match std::fs::canonicalize(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return RootStatus::Missing(path),
        Err(e) => {
            return RootStatus::Problem {
                path,
                op: Op::Stat,
                why: e.to_string(),
            };
        }
    };
    // A symlink into a system directory is refused like the directory itself.
    if let Err(problem) = config::check_root_path(&canonical) {
        return RootStatus::Problem {
            why: format!("it resolves to {}, which {problem}", canonical.display()),
            path,
            op: Op::Config,
        };
    }
    let opened = rustix::fs::open(&canonical, fsx::PATH_FLAGS.difference(OFlags::DIRECTORY), Mode::empty())
        .map_err(io::Error::from)
        .and_then(fsx::statx_fd);
    match opened {
        Ok(st) if rustix::fs::FileType::from_raw_mode(u32::from(st.stx_mode)) == rustix::fs::FileType::Directory => {
            RootStatus::Present {
                path: canonical,
                mount: MountId::of(&st),
                ino: st.stx_ino,
                given: path,
            }
        }
        Ok(_) => RootStatus::NotDir(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => RootStatus::Missing(path),
        Err(e) => RootStatus::Problem {
            path,
            op: Op::Stat,
            why: e.to_string(),
        },
    }
}

/// Roots inside another root's layout (`/data` and `/data/spark-1`, or what `/data/*` expands
/// to next to `/data`) are swept by the outer root, where their directories have their true
/// role: walked on their own they would be read as local dirs and find nothing.
fn fold_covered(out: &mut [RootStatus]) {
    let present: Vec<PathBuf> = out
        .iter()
        .filter_map(|s| match s {
            RootStatus::Present { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    for status in out.iter_mut() {
        let RootStatus::Present { path, .. } = status else {
            continue;
        };
        let outer = present.iter().find(|outer| {
            *outer != path
                && spark::root_role(outer) == DirRole::Root
                && path
                    .strip_prefix(outer)
                    .ok()
                    .and_then(|rel| rel.to_str())
                    .is_some_and(|rel| spark::dir_role(rel).is_some())
        });
        if let Some(outer) = outer {
            *status = RootStatus::Covered {
                path: path.clone(),
                by: outer.clone(),
            };
        }
    }
}

/// A root as resolved for this sweep.
#[derive(Clone, Debug)]
pub struct Root {
    /// Canonical: every open starts here.
    pub path: PathBuf,
    pub mount: MountId,
    /// Its inode: a root removed and created again under the same path is another root.
    pub ino: u64,
    /// What the root is in Spark's layouts (a local dir, or a store named as a root).
    pub role: DirRole,
    /// The path as configured (or as its glob expanded), when a symlink made it differ from
    /// `path`: `protect` globs are written against it, so they are matched below both.
    pub given: Option<PathBuf>,
    /// A `protect` glob matches the root or a directory above it: nothing below may go.
    pub protected: bool,
    /// How reads move atime where the root is mounted.
    pub atime: AtimeMode,
}

impl Root {
    /// The root's names that `protect` globs may be written against.
    pub fn names(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.path.as_path()).chain(self.given.as_deref())
    }

    /// Whether a `protect` glob matches a directory below the root on the way to `rel` (`rel`
    /// included), under any of the root's names (the root and those above it are
    /// [`Root::protected`]).
    pub fn protects_dir(&self, protect: &config::Protect, rel: &Path) -> bool {
        self.names().any(|name| {
            let mut p = name.to_path_buf();
            rel.components().any(|c| {
                p.push(c);
                protect.matches(&p)
            })
        })
    }

    /// Whether a `protect` glob matches `rel` below the root, under any of the root's names.
    pub fn protects_path(&self, protect: &config::Protect, rel: &Path) -> bool {
        self.names().any(|name| protect.matches(&name.join(rel)))
    }
}

/// Says `message` about `key` once per process, and again only after it stopped being true
/// for a sweep: the daemon resolves its roots every few seconds.
struct Notices(Mutex<BTreeSet<String>>);

static NOTICES: Notices = Notices(Mutex::new(BTreeSet::new()));

impl Notices {
    /// Whether `key` is new since the last call of [`Notices::keep_only`].
    fn first(&self, key: &str) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned())
    }

    fn keep_only(&self, keys: &BTreeSet<String>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k| keys.contains(k));
    }
}

/// Resolves the roots, logs and records each in the report, and returns those present.
pub fn present_roots(cfg: &Config, mounts: &Mounts, report: &mut Report) -> Vec<Root> {
    let mut roots = Vec::new();
    let mut said = BTreeSet::new();
    let mut once = |key: String| {
        let first = NOTICES.first(&key);
        said.insert(key);
        first
    };
    for status in resolve_roots(cfg) {
        match status {
            RootStatus::Present {
                path,
                mount,
                ino,
                given,
            } => {
                let m = mounts.find(&path, mount.dev);
                let mp = m.map_or_else(|| path.clone(), |m| m.mount_point.clone());
                report.roots.push(RootReport::new(path.clone(), true, Some(mp)));
                let given = (given != path).then_some(given);
                let protected = !cfg.protect.is_empty()
                    && std::iter::once(&path)
                        .chain(&given)
                        .any(|p| p.ancestors().any(|a| cfg.protect.matches(a)));
                if protected && once(format!("protected {}", path.display())) {
                    info!(root = %path.display(), "root is protected: nothing below it is deleted");
                }
                let role = spark::root_role(&path);
                if role == DirRole::Store && once(format!("store {}", path.display())) {
                    info!(root = %path.display(), "root names a block store: it is swept as one");
                }
                roots.push(Root {
                    atime: m.map_or(AtimeMode::Strict, |m| m.atime_mode()),
                    path,
                    mount,
                    ino,
                    role,
                    given,
                    protected,
                });
            }
            RootStatus::Missing(path) => {
                if once(format!("missing {}", path.display())) {
                    info!(root = %path.display(), "root does not exist (yet); looking again next sweep");
                }
                report.roots.push(RootReport::new(path, false, None));
            }
            RootStatus::NotDir(path) => {
                if once(format!("notdir {}", path.display())) {
                    info!(root = %path.display(), "root is not a directory; nothing to sweep there");
                }
            }
            RootStatus::Covered { path, by } => {
                if once(format!("covered {}", path.display())) {
                    info!(root = %path.display(), by = %by.display(),
                          "root is inside another root's Spark layout and is swept as part of it");
                }
            }
            RootStatus::Problem { path, op, why } => {
                // Counted and said once per change: the daemon resolves its roots every few
                // seconds, and a sweep reports it in its own counts.
                if once(format!("problem {} {why}", path.display())) {
                    warn!(root = %path.display(), "root skipped: {why}");
                    report.error(op);
                }
            }
        }
    }
    NOTICES.keep_only(&said);
    roots
}
