//! Walking the roots: one pass, never following a symlink, never leaving the root's filesystem,
//! entering only directories that belong to a Spark layout ([`spark::child_dir_role`]).
//!
//! The walk hands over one block store at a time, with every Spark file in it and one `lstat`
//! each; the sweep decides and deletes within that store, then drops it. Memory follows the
//! largest store, not the whole tree. Errors are values handed to the visitor with their path;
//! they never stop the walk.

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::disk::FileStat;
use crate::spark::{self, DirRole, Kind};

/// A Spark block file inside a store's sub-directory.
#[derive(Clone, Debug)]
pub struct StoreFile {
    /// Index into [`Store::subdirs`].
    pub subdir: u32,
    pub name: Box<str>,
    /// `name[..stem_len]` is the unit stem (see [`spark::Block`]).
    pub stem_len: u16,
    pub kind: Kind,
    pub stat: FileStat,
}

impl StoreFile {
    pub fn stem(&self) -> &str {
        &self.name[..usize::from(self.stem_len)]
    }
}

/// One `blockmgr-*` or `merge_manager*` directory and the Spark files in it.
#[derive(Debug)]
pub struct Store {
    /// Index of the root it was found under, in the sweep's list of roots.
    pub root: usize,
    /// Its path below the root: deletion re-opens it component by component from the root.
    pub rel: PathBuf,
    pub dev: u64,
    /// Names of its `NN` sub-directories.
    pub subdirs: Vec<Box<str>>,
    pub files: Vec<StoreFile>,
}

/// What the walk reports.
pub trait Visitor {
    /// A store, complete. `Break` stops the walk (cancellation).
    fn store(&mut self, store: Store) -> ControlFlow<()>;
    /// A file or directory that is not a Spark block in a Spark layout: never touched.
    fn unknown(&mut self, path: &Path);
    /// A directory that could not be read, or a file that could not be stat'ed.
    fn error(&mut self, op: ScanOp, path: &Path, error: &io::Error);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanOp {
    Walk,
    Stat,
}

/// Walks one root on device `dev`. Directories in `skip` (other configured roots nested in this
/// one) are left to their own walk.
pub fn walk_root(root: &Path, root_index: usize, dev: u64, skip: &[PathBuf], v: &mut impl Visitor) -> ControlFlow<()> {
    let mut roles = vec![DirRole::Root];
    let mut it = WalkDir::new(root)
        .follow_links(false)
        .same_file_system(true)
        .min_depth(1)
        .into_iter();
    while let Some(entry) = it.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_owned();
                v.error(ScanOp::Walk, &path, &io::Error::from(e));
                continue;
            }
        };
        let depth = entry.depth();
        roles.truncate(depth);
        if !entry.file_type().is_dir() {
            v.unknown(entry.path());
            continue;
        }
        let role = entry
            .file_name()
            .to_str()
            .and_then(|name| spark::child_dir_role(roles[depth - 1], name));
        match role {
            _ if skip.iter().any(|s| s == entry.path()) => it.skip_current_dir(),
            None => it.skip_current_dir(),
            Some(DirRole::Store) => {
                it.skip_current_dir();
                let rel = entry.path().strip_prefix(root).unwrap_or(entry.path()).to_owned();
                let store = scan_store(root, root_index, rel, dev, v);
                v.store(store)?;
            }
            Some(role) => roles.push(role),
        }
    }
    ControlFlow::Continue(())
}

/// Reads one store: its `NN` sub-directories and the Spark files in them.
fn scan_store(root: &Path, root_index: usize, rel: PathBuf, dev: u64, v: &mut impl Visitor) -> Store {
    let mut store = Store {
        root: root_index,
        rel,
        dev,
        subdirs: Vec::new(),
        files: Vec::new(),
    };
    let mut it = WalkDir::new(root.join(&store.rel))
        .follow_links(false)
        .same_file_system(true)
        .min_depth(1)
        .max_depth(2)
        .into_iter();
    while let Some(entry) = it.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().map_or_else(|| root.join(&store.rel), Path::to_owned);
                v.error(ScanOp::Walk, &path, &io::Error::from(e));
                continue;
            }
        };
        let name = entry.file_name().to_str();
        let is_dir = entry.file_type().is_dir();
        if entry.depth() == 1 {
            match name {
                Some(name) if is_dir && spark::child_dir_role(DirRole::Store, name) == Some(DirRole::SubDir) => {
                    store.subdirs.push(name.into());
                }
                _ => {
                    v.unknown(entry.path());
                    if is_dir {
                        it.skip_current_dir();
                    }
                }
            }
            continue;
        }
        // Depth 2: a file in the sub-directory entered last. Only regular files with a Spark
        // name are stat'ed; a symlink is reported as unknown and never followed.
        let parsed = name
            .filter(|_| entry.file_type().is_file())
            .and_then(|name| spark::parse_block_file(name).map(|block| (name, block)));
        let Some((name, block)) = parsed else {
            v.unknown(entry.path());
            continue;
        };
        let stat = match entry.metadata() {
            Ok(m) => FileStat::from_metadata(&m),
            Err(e) => {
                let e = io::Error::from(e);
                // Gone between readdir and stat (a task finished its spill): nothing to do.
                if e.kind() != io::ErrorKind::NotFound {
                    v.error(ScanOp::Stat, entry.path(), &e);
                }
                continue;
            }
        };
        if stat.dev != dev {
            // A file bind-mounted from another filesystem: not ours to judge.
            v.unknown(entry.path());
            continue;
        }
        store.files.push(StoreFile {
            subdir: (store.subdirs.len() - 1) as u32,
            stem_len: block.stem.len() as u16,
            kind: block.kind,
            name: name.into(),
            stat,
        });
    }
    store
}
