//! The journal read back: the intents no later line closes (a deletion cut by a crash), and
//! what it says of given paths, in one pass over both files.

use super::*;

/// An `intent` line, as read back.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Intent {
    pub id: String,
    pub time_ns: Nanos,
    pub store: PathBuf,
    pub files: Vec<String>,
}

#[derive(Deserialize)]
struct Event {
    event: String,
    #[serde(default)]
    id: Option<String>,
}

/// The intents among `lines` that no `deleted` (or `kept`, or `interrupted`) line with the same id follows:
/// units whose deletion a crash interrupted. Lines that are not JSON (a line cut by a crash)
/// are skipped.
pub fn unmatched_intents<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> Vec<Intent> {
    // Only the intents still open are held (with their order), not the journal: it is read as
    // a stream, so a full one costs no more memory than its open intents.
    let mut open: HashMap<String, (u64, Intent)> = HashMap::new();
    let mut n = 0u64;
    for line in lines {
        let line = line.as_ref();
        let Ok(ev) = serde_json::from_str::<Event>(line) else {
            continue;
        };
        match (ev.event.as_str(), ev.id) {
            ("intent", Some(id)) => {
                if let Ok(i) = serde_json::from_str::<Intent>(line) {
                    open.insert(id, (n, i));
                    n += 1;
                }
            }
            ("deleted" | "kept" | "interrupted", Some(id)) => {
                open.remove(&id);
            }
            _ => {}
        }
    }
    let mut left: Vec<(u64, Intent)> = open.into_values().collect();
    left.sort_by_key(|(n, _)| *n);
    left.into_iter().map(|(_, i)| i).collect()
}

/// The writer's process of an intent id (`<pid>.<start>.<n>`), when it is a shuffle-janitor that
/// still runs (a `sweep` next to the daemon): its intents are not interrupted.
pub(super) fn writer_alive(id: &str) -> bool {
    let Some(pid) = id.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id()
        && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "shuffle-janitor")
}

/// Both files' lines, oldest first, as a stream (a journal is tens of MiB). A line that is not
/// UTF-8 (cut inside a character by a full disk) is given as `Err`, not the end of the file:
/// what follows it is still read. Empty lines (a writer starting afresh after a cut line that
/// happened to end whole) are left out.
pub(super) fn read_lines(dir: &Path) -> impl Iterator<Item = Result<String, ()>> + use<> {
    // Both files are opened before either is read, the current one first: a rotation while the
    // old one is read (tens of MiB) would otherwise hand over a fresh current file, and the
    // lines that just became the old one were never read (explain said "not deleted" of a file
    // they named). A rotation between the two opens gives the same file twice, and the old one
    // before it lost: both are opened again (a rotation takes tens of MiB of deletions; if they
    // still match, the file is read once). Never through a symlink nor blocking on a FIFO
    // ([`crate::state::open_to_read`]): the start reads the journal, and whoever can write
    // `state_dir` must not hang it.
    let id = |f: &File| f.metadata().ok().map(|m| (m.dev(), m.ino()));
    let open = || {
        let current = crate::state::open_to_read(&dir.join(FILE_NAME)).ok();
        let old = crate::state::open_to_read(&dir.join(OLD_NAME)).ok();
        (current, old)
    };
    let same = |c: &Option<File>, o: &Option<File>| matches!((c, o), (Some(c), Some(o)) if id(c) == id(o));
    let (mut current, mut old) = open();
    for _ in 0..3 {
        if !same(&current, &old) {
            break;
        }
        (current, old) = open();
    }
    if same(&current, &old) {
        old = None;
    }
    [old, current].into_iter().flatten().flat_map(|f| {
        io::BufReader::new(f)
            .split(b'\n')
            .map_while(Result::ok)
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8(l).map_err(drop))
    })
}

/// What a reader of the journal finds about one path.
#[derive(Clone, Debug)]
pub struct Found {
    /// The line, as written.
    pub line: Value,
}

/// The journal's entries about `path` (a file of a deleted unit, or a removed store or a path
/// inside one), oldest first; and when the journal begins (its first line's time).
pub fn lookup(dir: &Path, path: &Path) -> (Vec<Found>, Option<Nanos>) {
    let mut l = lookup_many(dir, &[path]);
    (l.found.pop().unwrap_or_default(), l.start)
}

/// What the journal says of several paths, read in one pass.
#[derive(Debug, Default)]
pub struct Lookup {
    /// For each path asked, in order: its entries, oldest first. An `intent` is among them only
    /// while no `deleted`, `kept` or `interrupted` line closes it: a deletion started and never
    /// finished (the process was killed, or is still at it), so the file may be gone by it.
    pub found: Vec<Vec<Found>>,
    /// When the journal begins (its first readable line's time).
    pub start: Option<Nanos>,
    /// Lines that could not be read (cut by a full disk or a crash, then glued to nothing):
    /// skipped, never half-read.
    pub broken: u64,
}

/// The fields of a line a lookup needs to decide whether to read the rest.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    event: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    time_ns: Option<Nanos>,
    /// An intent's files.
    #[serde(default)]
    files: Vec<String>,
    /// A deleted unit's.
    #[serde(default)]
    unit: Option<HeadUnit>,
    /// An interrupted unit's, gone.
    #[serde(default)]
    files_gone: Vec<String>,
}

#[derive(Deserialize)]
struct HeadUnit {
    #[serde(default)]
    files: Vec<String>,
}

impl Head {
    /// The paths asked about (their numbers, from `asked`) that this line, whose store is
    /// `store` with `under` below it, is about.
    fn hits(&self, store: &Path, under: &[usize], asked: &HashMap<&Path, Vec<usize>>) -> Vec<usize> {
        let named = |files: &[String]| -> Vec<usize> {
            files
                .iter()
                .filter_map(|f| asked.get(store.join(f).as_path()))
                .flatten()
                .copied()
                .collect()
        };
        match self.event.as_str() {
            "store_removed" => under.to_vec(),
            "deleted" => self.unit.as_ref().map_or_else(Vec::new, |u| named(&u.files)),
            "interrupted" => named(&self.files_gone),
            "intent" => named(&self.files),
            _ => Vec::new(),
        }
    }
}

/// The journal's entries about each of `paths` (see [`Lookup`]), in one pass over the journal
/// (a journal is tens of MiB, and `explain` may be asked about many paths): a line is read in
/// full only when its store is one of the paths' directories, and only the lines about them
/// are kept.
pub fn lookup_many(dir: &Path, paths: &[&Path]) -> Lookup {
    // Every directory above an asked path, to the paths below it: a line's store is one of them.
    // The path itself too: a removed store asked about by its own path is in the journal.
    let mut below: HashMap<&Path, Vec<usize>> = HashMap::new();
    let mut asked: HashMap<&Path, Vec<usize>> = HashMap::new();
    for (i, p) in paths.iter().enumerate() {
        asked.entry(p).or_default().push(i);
        for a in p.ancestors() {
            below.entry(a).or_default().push(i);
        }
    }
    // Entries in journal order: (path asked, the line); an intent closed later is taken out.
    let mut entries: Vec<(usize, Option<Value>)> = Vec::new();
    let mut open: HashMap<String, Vec<usize>> = HashMap::new();
    let mut start = None;
    let mut broken = 0;
    for line in read_lines(dir) {
        let Some((line, head)) = line
            .ok()
            .and_then(|l| serde_json::from_str::<Head>(&l).ok().map(|h| (l, h)))
        else {
            broken += 1;
            continue;
        };
        if start.is_none() {
            start = head.time_ns;
        }
        if let ("deleted" | "kept" | "interrupted", Some(id)) = (head.event.as_str(), head.id.as_deref())
            && let Some(slots) = open.remove(id)
        {
            for e in slots {
                entries[e].1 = None;
            }
        }
        let Some(store) = head.store.as_deref().map(Path::new) else {
            continue;
        };
        let Some(under) = below.get(store) else {
            continue;
        };
        let hits = head.hits(store, under, &asked);
        if hits.is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            broken += 1;
            continue;
        };
        for i in hits {
            if let ("intent", Some(id)) = (head.event.as_str(), head.id.as_deref()) {
                open.entry(id.to_owned()).or_default().push(entries.len());
            }
            entries.push((i, Some(v.clone())));
        }
    }
    let mut found: Vec<Vec<Found>> = vec![Vec::new(); paths.len()];
    for (i, line) in entries {
        if let Some(line) = line {
            found[i].push(Found { line });
        }
    }
    Lookup { found, start, broken }
}

/// Whether the process that wrote intent `id` still runs (a `sweep` at it now): else it was
/// killed before it finished the unit.
pub fn intent_writer_alive(id: &str) -> bool {
    writer_alive(id) || id.split('.').next() == Some(&std::process::id().to_string())
}
