//! What watching costs a walk, apart from anything the janitor does: a bare walk of a Spark tree
//! (`ROOT/<store>/NN/<file>`) that lists every directory and stats every file, on as many
//! threads as the janitor's readers, run alternately without and with an inotify watch added
//! to each directory before it is listed, with the daemon's masks (file events on `NN`
//! directories, directory events above). The kernel flags every cached entry of a directory
//! when a watch with file events is added to it (`fsnotify_set_children_dentry_flags`): that
//! cost is the daemon's by design, and a sweep never pays it.
//!
//! cargo run --release --example watchcost -- ROOT [ROUNDS]
//! Prints a JSON line: bare and watched, each a list of wall times in seconds, and files.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, openat, statat};
use shuffle_janitor::daemon::watch::{DIR_EVENTS, FILE_EVENTS, WATCH_FLAGS};

fn open_dir(at: impl AsFd, name: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    Ok(openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn add_watch(ino: &OwnedFd, dir: &OwnedFd, events: WatchFlags) -> std::io::Result<()> {
    match inotify::add_watch(ino, format!("/proc/self/fd/{}", dir.as_raw_fd()), events | WATCH_FLAGS) {
        Ok(_) => Ok(()),
        Err(rustix::io::Errno::NOSPC) => Err(std::io::Error::other(
            "out of inotify watches: raise fs.inotify.max_user_watches above the tree's directories",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Lists `fd` (depth 0: the root), stats its files and descends; returns the files stated.
fn walk(fd: &OwnedFd, depth: usize, watch: Option<&OwnedFd>) -> std::io::Result<usize> {
    if let Some(ino) = watch {
        let events = if depth >= 2 { FILE_EVENTS } else { DIR_EVENTS };
        add_watch(ino, fd, events)?;
    }
    let mut files = 0;
    let mut subdirs = Vec::new();
    for entry in Dir::read_from(fd)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes().starts_with(b".") {
            continue;
        }
        if entry.file_type() == FileType::Directory {
            subdirs.push(name.to_owned());
        } else {
            statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
            files += 1;
        }
    }
    for name in subdirs {
        files += walk(&open_dir(fd, &name)?, depth + 1, watch)?;
    }
    Ok(files)
}

/// One walk of `root` on `threads` threads, each taking the next store; returns (seconds, files).
fn run(root: &str, threads: usize, watched: bool) -> std::io::Result<(f64, usize)> {
    let ino = watched.then(|| inotify::init(CreateFlags::CLOEXEC)).transpose()?;
    let start = Instant::now();
    let root = open_dir(rustix::fs::CWD, &std::ffi::CString::new(root)?)?;
    if let Some(ino) = &ino {
        add_watch(ino, &root, DIR_EVENTS)?;
    }
    let stores: Vec<_> = Dir::read_from(&root)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type() == FileType::Directory && !e.file_name().to_bytes().starts_with(b"."))
        .map(|e| e.file_name().to_owned())
        .collect();
    let next = AtomicUsize::new(0);
    let files = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> std::io::Result<usize> {
                    let mut files = 0;
                    while let Some(name) = stores.get(next.fetch_add(1, Ordering::Relaxed)) {
                        files += walk(&open_dir(&root, name)?, 1, ino.as_ref())?;
                    }
                    Ok(files)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("walk thread"))
            .sum::<std::io::Result<usize>>()
    })?;
    // The watches go with the instance, after the clock stops (the daemon keeps them).
    Ok((start.elapsed().as_secs_f64(), files))
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let root = args.get(1).expect("usage: watchcost ROOT [ROUNDS]");
    let rounds: usize = args.get(2).map_or(5, |r| r.parse().expect("ROUNDS: a number"));
    // As many as the janitor's readers.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    run(root, threads, false)?; // warm the cache
    let (mut bare, mut watched, mut files) = (Vec::new(), Vec::new(), 0);
    for r in 0..rounds {
        for w in if r % 2 == 0 { [false, true] } else { [true, false] } {
            let (secs, n) = run(root, threads, w)?;
            files = n;
            if w { &mut watched } else { &mut bare }.push(secs);
        }
    }
    let list = |v: &[f64]| v.iter().map(|s| format!("{s:.4}")).collect::<Vec<_>>().join(", ");
    println!(
        "{{\"bare\": [{}], \"watched\": [{}], \"files\": {files}}}",
        list(&bare),
        list(&watched)
    );
    Ok(())
}
