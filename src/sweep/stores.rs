//! What a sweep's walk hands the reaper: the empty block stores it found, and which stores the
//! liveness rule covers. Both the walk ([`super::worker`]) and the reaper ([`super::reap`])
//! depend on this module, and it on neither, so the sweep's modules form no circle.

use std::path::{Path, PathBuf};

use crate::store_dir::DirFacts;

/// An empty store a sweep may remove, if the liveness rule finds it dead.
#[derive(Clone, Debug)]
pub struct ReapCandidate {
    /// Index of its root in the sweep's roots.
    pub root: usize,
    pub rel: PathBuf,
    pub facts: DirFacts,
    pub dir_ids: Vec<(u64, u64)>,
    /// Read whole in this sweep, so it may be removed if dead; otherwise only counted.
    pub read_now: bool,
}

/// Whether a store is one the liveness rule covers: an executor's or a driver's `blockmgr-*`.
/// Not YARN's `merge_manager*` directories of push-based shuffle: made once per application
/// and node by its first executor, written to by the node manager's shuffle service (which
/// cannot create them), they belong to the application, and YARN removes them with it.
pub fn covered(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("blockmgr-"))
}
