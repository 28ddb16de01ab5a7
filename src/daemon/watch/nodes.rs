//! The watched directories by watch descriptor: what each one is (a layout directory, a
//! store, one of its `NN` directories).

use super::*;

/// What a watched directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Node {
    Layout { root: u32, rel: PathBuf, role: DirRole },
    Store { store: StoreId },
    Sub { store: StoreId, subdir: SubdirId },
}

/// The watched directories by watch descriptor, and the descriptor of each store's
/// sub-directory slot: a slot is one directory's. When another directory takes a slot's name
/// (renamed over it, or created after it went unseen), the watch of the one it replaced is
/// dropped, so that its late events (`IN_DELETE_SELF`, `IN_IGNORED`) never reach the slot.
/// Each store's watches and the layout directories' are indexed too: forgetting a store, or a
/// subtree, touches only their own watches (with 12,000 stores and 780,000 watches, a scan of
/// every watch for each store reaped or removed was quadratic).
#[derive(Default)]
pub(super) struct Nodes {
    pub(super) by_wd: HashMap<i32, Node>,
    pub(super) by_sub: HashMap<(StoreId, SubdirId), i32>,
    pub(super) by_store: HashMap<StoreId, Vec<i32>>,
    pub(super) layouts: BTreeSet<(u32, PathBuf, i32)>,
}

impl Nodes {
    pub(super) fn get(&self, wd: i32) -> Option<&Node> {
        self.by_wd.get(&wd)
    }

    /// Adds watch `wd` of `node`; returns the watch that held its slot before, now dropped from
    /// the table (the caller removes it from the kernel).
    pub(super) fn insert(&mut self, wd: i32, node: Node) -> Option<i32> {
        let mut replaced = None;
        if let Node::Sub { store, subdir } = node
            && let Some(old) = self.by_sub.insert((store, subdir), wd)
            && old != wd
        {
            self.remove(old);
            self.by_sub.insert((store, subdir), wd);
            replaced = Some(old);
        }
        match &node {
            Node::Store { store } | Node::Sub { store, .. } => self.by_store.entry(*store).or_default().push(wd),
            Node::Layout { root, rel, .. } => {
                self.layouts.insert((*root, rel.clone(), wd));
            }
        }
        self.by_wd.insert(wd, node);
        replaced
    }

    pub(super) fn remove(&mut self, wd: i32) -> Option<Node> {
        let node = self.by_wd.remove(&wd)?;
        match &node {
            Node::Store { store } | Node::Sub { store, .. } => {
                if let Some(wds) = self.by_store.get_mut(store) {
                    wds.retain(|w| *w != wd);
                    if wds.is_empty() {
                        self.by_store.remove(store);
                    }
                }
                if let Node::Sub { store, subdir } = node
                    && self.by_sub.get(&(store, subdir)) == Some(&wd)
                {
                    self.by_sub.remove(&(store, subdir));
                }
            }
            Node::Layout { root, rel, .. } => {
                self.layouts.remove(&(*root, rel.clone(), wd));
            }
        }
        Some(node)
    }

    /// The watch of sub-directory `subdir` of `store`.
    pub(super) fn sub(&self, store: StoreId, subdir: SubdirId) -> Option<i32> {
        self.by_sub.get(&(store, subdir)).copied()
    }

    /// Drops the watches of store `store` (its own and its sub-directories'); returns them.
    pub(super) fn take_store(&mut self, store: StoreId) -> Vec<i32> {
        let wds = self.by_store.remove(&store).unwrap_or_default();
        for wd in &wds {
            if let Some(Node::Sub { store, subdir }) = self.by_wd.remove(wd)
                && self.by_sub.get(&(store, subdir)) == Some(wd)
            {
                self.by_sub.remove(&(store, subdir));
            }
        }
        wds
    }

    /// Drops the watches of the layout directories at or below `rel` of root `root`; returns
    /// them.
    pub(super) fn take_layouts_below(&mut self, root: u32, rel: &Path) -> Vec<i32> {
        let below: Vec<(u32, PathBuf, i32)> = self
            .layouts
            .range((root, rel.to_owned(), i32::MIN)..)
            .take_while(|(r, p, _)| *r == root && p.starts_with(rel))
            .cloned()
            .collect();
        below
            .into_iter()
            .filter_map(|(_, _, wd)| self.remove(wd).map(|_| wd))
            .collect()
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(i32, &Node) -> bool) {
        let drop: Vec<i32> = self
            .by_wd
            .iter()
            .filter(|(wd, n)| !keep(**wd, n))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in drop {
            self.remove(wd);
        }
    }

    pub(super) fn clear(&mut self) {
        self.by_wd.clear();
        self.by_sub.clear();
        self.by_store.clear();
        self.layouts.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.by_wd.len()
    }
}
