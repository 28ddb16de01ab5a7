//! Finding the block stores below a root: one pass with walkdir, never following a symlink,
//! never leaving the root's filesystem, entering only directories that belong to a Spark layout
//! ([`spark::child_dir_role`]). Each store found is handed to the visitor, which reads it
//! ([`crate::store_dir`]), possibly on another thread. Errors are values handed to the visitor
//! with their path; they never stop the walk.

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::spark::{self, DirRole};

/// What the walk reports.
pub trait Visitor {
    /// A store at `root/rel`. `Break` stops the walk (cancellation).
    fn store(&mut self, root: usize, rel: PathBuf) -> ControlFlow<()>;
    /// A file outside any store, or a directory entry that is not Spark's: never touched.
    fn unknown(&mut self);
    /// A directory that could not be read.
    fn error(&mut self, path: &Path, error: &io::Error);
}

/// Walks root number `root_index`. Directories in `skip` (other configured roots nested in this
/// one) are left to their own walk.
pub fn walk_root(root: &Path, root_index: usize, skip: &[PathBuf], v: &mut impl Visitor) -> ControlFlow<()> {
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
                v.error(&path, &io::Error::from(e));
                continue;
            }
        };
        let depth = entry.depth();
        roles.truncate(depth);
        if !entry.file_type().is_dir() {
            v.unknown();
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
                v.store(root_index, rel)?;
            }
            Some(role) => roles.push(role),
        }
    }
    ControlFlow::Continue(())
}
