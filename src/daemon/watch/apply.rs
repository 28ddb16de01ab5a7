//! What each inotify event does to the index and the watches: files and directories created,
//! removed, moved, opened and written; a refresh of the units they touched.

use super::*;

impl Inner {
    pub(super) fn apply(&self, wd: i32, mask: ReadFlags, name: Option<&[u8]>, at: Nanos) {
        let node = self.nodes.lock().unwrap_or_else(|e| e.into_inner()).get(wd).cloned();
        let Some(node) = node else { return }; // a watch dropped meanwhile
        if mask.intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF | ReadFlags::UNMOUNT) {
            return self.gone(wd, mask, &node, at);
        }
        let Some(name) = name else { return }; // an event on the directory itself (its listing)
        let is_dir = mask.contains(ReadFlags::ISDIR);
        match node {
            Node::Sub { store, subdir } => {
                if is_dir {
                    return; // nothing of Spark's lives deeper
                }
                let ev = if mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                    FileEvent::Added
                } else if mask.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
                    FileEvent::Removed
                } else if mask.contains(ReadFlags::OPEN) {
                    FileEvent::Opened
                } else {
                    FileEvent::Changed
                };
                if spark::parse_block_name(name).is_none() {
                    return;
                }
                if mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO | ReadFlags::MODIFY | ReadFlags::CLOSE_WRITE)
                {
                    self.activity();
                }
                let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                index.file_event(store, subdir, name, ev, at);
            }
            Node::Store { store } => {
                let Ok(name) = std::str::from_utf8(name) else { return };
                if spark::child_dir_role(DirRole::Store, name) != Some(DirRole::SubDir) {
                    return;
                }
                let came = mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO);
                if came && is_dir {
                    if mask.contains(ReadFlags::MOVED_TO) {
                        // Moved in with files whose use before is unknown (Spark never moves
                        // one): the store counts as watched from now.
                        self.index
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .mark_watched_from(store, at);
                    }
                    self.new_subdir(store, name, at);
                } else if came {
                    // A symlink (or a file) put in place of a sub-directory, which Spark would
                    // write through: the store is not known whole until it is read again (its
                    // listing then says so, as a sweep's walk would).
                    self.subdir_gone(store, name, at, false);
                    self.not_known_whole(store);
                } else if mask.contains(ReadFlags::MOVED_FROM) {
                    // Moved away with its files, which still belong to units here: those units
                    // are partial for good (never deleted), and nothing else of the store goes
                    // until a walk reads it whole again (the next sweep's: see
                    // `walk::reread_unwatched`).
                    self.subdir_gone(store, name, at, true);
                    self.index
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .mark_incomplete(store);
                } else if mask.contains(ReadFlags::DELETE) {
                    // Removed, so empty: every file in it was removed first, and seen.
                    self.subdir_gone(store, name, at, false);
                }
            }
            Node::Layout { root, rel, role } => {
                let Ok(name) = std::str::from_utf8(name) else { return };
                let Some(child) = spark::child_dir_role(role, name).filter(|_| is_dir) else {
                    return;
                };
                let child_rel = rel.join(name);
                if mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                    if child == DirRole::Store {
                        // A new executor: it is about to write.
                        self.activity();
                    }
                    // Walked by the daemon on its walking thread, not here: a tree renamed in
                    // can be large, and this thread must keep draining the queue. Noted too,
                    // for a sweep that starts before that walk (see Watch::take_new_dirs).
                    self.new_dirs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((root, child_rel.clone(), child));
                    self.send(WatchMsg::NewDir {
                        root,
                        rel: child_rel,
                        role: child,
                    });
                } else if mask.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
                    self.subtree_gone(root, &child_rel);
                }
            }
        }
    }

    /// A watched directory went away (removed, renamed, unmounted, or its watch dropped).
    pub(super) fn gone(&self, wd: i32, mask: ReadFlags, node: &Node, at: Nanos) {
        if self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(wd)
            .is_none()
        {
            return; // dropped meanwhile: its directory is none of ours any more
        }
        if mask.contains(ReadFlags::MOVE_SELF) {
            // Renamed: the kernel keeps watching it where it went; the new place is walked
            // afresh when it shows up.
            let ino = self.fd.read().unwrap_or_else(|e| e.into_inner()).clone();
            let _ = inotify::remove_watch(&*ino, wd);
        }
        match node {
            Node::Sub { store, subdir } => {
                let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                if mask.contains(ReadFlags::MOVE_SELF) {
                    // Renamed, with its files, and its store's watch did not say where first
                    // (that one drops this watch): its units are partial (see above).
                    index.subdir_moved_away(*store, *subdir, at);
                    index.mark_incomplete(*store);
                } else {
                    index.subdir_removed(*store, *subdir, at);
                }
            }
            Node::Store { store } => {
                // The watches first: a store id is never reused by another store, but its
                // sub-directories' watches must not outlive it.
                self.forget_store(*store);
                self.index
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove_store(*store);
            }
            Node::Layout { root, rel, .. } if rel.as_os_str().is_empty() => {
                debug!(root, "root gone");
                self.send(WatchMsg::RootGone(*root));
            }
            Node::Layout { root, rel, .. } => self.subtree_gone(*root, rel),
        }
    }

    pub(super) fn forget_store(&self, store: StoreId) {
        let ino = self.fd.read().unwrap_or_else(|e| e.into_inner()).clone();
        let wds = self.nodes.lock().unwrap_or_else(|e| e.into_inner()).take_store(store);
        for wd in wds {
            let _ = inotify::remove_watch(&*ino, wd);
        }
    }

    /// Everything below `rel` of root `root` left (removed, or renamed away: a rename is gone
    /// plus new, and the new place is walked afresh when it shows up).
    pub(super) fn subtree_gone(&self, root: u32, rel: &Path) {
        let stores = self
            .index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stores_below(root, rel);
        let ino = self.fd.read().unwrap_or_else(|e| e.into_inner()).clone();
        let wds: Vec<i32> = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            let mut wds = nodes.take_layouts_below(root, rel);
            for id in &stores {
                wds.extend(nodes.take_store(*id));
            }
            wds
        };
        for wd in wds {
            let _ = inotify::remove_watch(&*ino, wd);
        }
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        for id in stores {
            index.remove_store(id);
        }
    }

    /// The path of store `store` relative to its root, and the root's number.
    pub(super) fn store_path(&self, store: StoreId) -> Option<(u32, PathBuf)> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index.store(store).map(|s| (s.root, s.rel.clone()))
    }

    pub(super) fn open_below(&self, root: u32, rel: &Path, flags: OFlags) -> io::Result<(OwnedFd, MountId)> {
        open_below(&self.roots, root, rel, flags)
    }

    /// A new `NN` directory in a store: watch it, then list it (files may be there already).
    pub(super) fn new_subdir(&self, store: StoreId, name: &str, at: Nanos) {
        let Some((root, rel)) = self.store_path(store) else {
            return;
        };
        let fd = match self.open_below(root, &rel.join(name), OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok((fd, _)) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return, // gone again
            Err(e) => {
                // Its files are unknown: no unit of the store may go until a walk reads it.
                debug!(error = %e, "cannot open a new sub-directory");
                return self.not_known_whole(store);
            }
        };
        // A slot of that name (its directory replaced: renamed over, or gone unseen) is this
        // directory's from now on: the add drops the watch of the one before (see `Nodes`).
        let subdir = {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            let Some(s) = index.store_mut(store) else { return };
            s.last_activity = s.last_activity.max(at);
            s.subdir(name)
        };
        if self.add(fd.as_fd(), FILE_EVENTS, Node::Sub { store, subdir }).is_err() {
            // Read at every interval from now on, and counted.
            self.index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .mark_unwatched(store);
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        let listed = fsx::for_each_entry(&fd, &mut Vec::new(), |n, _| names.push(n.to_bytes().to_vec()));
        if listed.is_err() {
            return self.not_known_whole(store);
        }
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        for n in names {
            index.file_event(store, subdir, &n, FileEvent::Added, at);
        }
    }

    /// Part of store `store` could not be read: none of its units is known whole until a walk
    /// reads it again, which the next interval does (it is no longer taken as watched).
    pub(super) fn not_known_whole(&self, store: StoreId) {
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mark_not_whole(store);
    }

    /// Sub-directory `name` of store `store` went: removed, or (`moved`) renamed away with its
    /// files.
    pub(super) fn subdir_gone(&self, store: StoreId, name: &str, at: Nanos, moved: bool) {
        let subdir = {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            let Some(sub) = index.store(store).and_then(|s| s.subdir_id(name)) else {
                return;
            };
            if moved {
                index.subdir_moved_away(store, sub, at);
            } else {
                index.subdir_removed(store, sub, at);
            }
            sub
        };
        let ino = self.fd.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wd) = nodes.sub(store, subdir) {
            nodes.remove(wd);
            let _ = inotify::remove_watch(&*ino, wd);
        }
    }

    /// Stats again the files of dirty units (at most `limit` units).
    pub(super) fn refresh_dirty(&self, limit: usize) {
        // No event is applied between the listing of the units and their update (a deletion
        // catching up would otherwise apply one there, and a unit written since its stat here
        // would be marked clean with the older stat), as when only this thread applied them.
        let _draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        let todo = self.index.lock().unwrap_or_else(|e| e.into_inner()).dirty(limit);
        if todo.is_empty() {
            return;
        }
        let basis = self.basis.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut dirs: HashMap<(StoreId, SubdirId), Result<Option<OwnedFd>, ()>> = HashMap::new();
        let mut done: Vec<(usize, Fresh, AtimeMode)> = Vec::with_capacity(todo.len());
        let mut failed: Vec<StoreId> = Vec::new();
        let stat_time = now_nanos();
        let mut orphans: Vec<StoreId> = Vec::new();
        for (i, t) in todo.iter().enumerate() {
            let Some((root, rel)) = self.store_path(t.store) else {
                continue;
            };
            let atime = {
                let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
                match roots.get(root as usize) {
                    Some(Some(r)) => r.atime,
                    _ => {
                        // Its root is gone (a walk added it as the root went): it is no store of
                        // ours, and its dirty units would hold every sweep back for good.
                        if !orphans.contains(&t.store) {
                            orphans.push(t.store);
                        }
                        continue;
                    }
                }
            };
            let names = {
                let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                index.store(t.store).map(|s| s.subdir_names())
            };
            let Some(names) = names else { continue };
            // Only "no such file" means a file is gone: any other failure leaves the unit as
            // it was and the store not known whole (no deletion) until a walk reads it again.
            let fresh: Result<Fresh, ()> = t
                .files
                .iter()
                .map(|(sub, name)| {
                    let dir = dirs.entry((t.store, *sub)).or_insert_with(|| {
                        let Some(nn) = names.get(subdir_slot(*sub) as usize).filter(|n| !n.is_empty()) else {
                            return Ok(None);
                        };
                        match self.open_below(root, &rel.join(&**nn), OFlags::PATH | OFlags::DIRECTORY) {
                            Ok((fd, _)) => Ok(Some(fd)),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                            Err(_) => Err(()),
                        }
                    });
                    match dir {
                        Ok(Some(dir)) => stat_file(dir, name),
                        Ok(None) => Ok(None),
                        Err(()) => Err(()),
                    }
                })
                .collect();
            match fresh {
                Ok(fresh) => done.push((i, fresh, atime)),
                Err(()) => failed.push(t.store),
            }
        }
        for store in orphans {
            debug!(store, "dropping a store whose root is gone");
            self.forget_store(store);
            self.index.lock().unwrap_or_else(|e| e.into_inner()).remove_store(store);
        }
        for store in failed {
            self.not_known_whole(store);
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index.settle_store(store);
        }
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        for (i, fresh, atime) in done {
            index.refresh(&todo[i], &fresh, &basis, atime, stat_time);
        }
    }
}
