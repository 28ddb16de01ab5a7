//! Spark's local-dir layouts and block file names (pure: no I/O).
//!
//! Everything here mirrors Spark's own sources: `DiskBlockManager.scala` for the directory layout,
//! `BlockId.scala` for the names, `ShuffleChecksumHelper` for checksum files and
//! `Utils.tempFileWith` for the in-progress `.<uuid>` names. A name that does not parse is not
//! Spark's and is never deleted, which is what lets the janitor share `/tmp` with anything.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a Spark block file is. The first six are the kinds an operator can allow to be deleted
/// (config key `kinds`); `Other` are Spark names that are never deleted (streaming inputs,
/// Python stream blocks, test blocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `shuffle_S_M_R.{data,index,checksum.ALGO}` and their in-progress `.<uuid>` names.
    Shuffle,
    /// `temp_shuffle_<uuid>`, `temp_local_<uuid>`: spills and fetch-to-disk, live only in a task.
    Temp,
    /// `shuffleMerged_<app>_S_<merge>_R.{data,index,meta}`: push-based shuffle (YARN).
    Merged,
    /// `rdd_R_P`: a cached partition; deleting it makes Spark recompute.
    Rdd,
    /// `broadcast_N[_pieceK]`.
    Broadcast,
    /// `taskresult_T`.
    Taskresult,
    /// Recognised Spark names that no configuration may delete.
    Other,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Shuffle,
        Kind::Temp,
        Kind::Merged,
        Kind::Rdd,
        Kind::Broadcast,
        Kind::Taskresult,
        Kind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shuffle => "shuffle",
            Kind::Temp => "temp",
            Kind::Merged => "merged",
            Kind::Rdd => "rdd",
            Kind::Broadcast => "broadcast",
            Kind::Taskresult => "taskresult",
            Kind::Other => "other",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recognised block file: its kind and the stem that groups it with the other files of the
/// same unit inside one block store. For a map output the stem is `shuffle_S_M_R`, shared by its
/// data, index, checksum and in-progress files; for a merged shuffle partition it is the name
/// without `.data`/`.index`/`.meta`; every other kind is a unit of one file (stem = name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block<'a> {
    pub kind: Kind,
    pub stem: &'a str,
}

/// Parses a file name found in a block store's sub-directory. `None`: not Spark's.
pub fn parse_block_file(name: &str) -> Option<Block<'_>> {
    // A stem shorter than the name ends before an ASCII byte: a character boundary.
    parse_block_name(name.as_bytes()).map(|(kind, stem_len)| Block {
        kind,
        stem: &name[..stem_len],
    })
}

/// [`parse_block_file`] on the raw bytes of a name, as `getdents` returns them: its kind and the
/// length of its stem. A name it recognises is valid UTF-8 (ASCII but for `test_*`), and checking
/// the bytes directly spares the sweep a UTF-8 validation of every file name it sees.
pub fn parse_block_name(name: &[u8]) -> Option<(Kind, usize)> {
    let whole = |kind| Some((kind, name.len()));
    if let Some(rest) = name.strip_prefix(b"shuffle_") {
        return parse_shuffle(rest).map(|stem_len| (Kind::Shuffle, b"shuffle_".len() + stem_len));
    }
    if let Some(rest) = name.strip_prefix(b"shuffleMerged_") {
        return parse_merged(rest).map(|stem_len| (Kind::Merged, b"shuffleMerged_".len() + stem_len));
    }
    if let Some(id) = name
        .strip_prefix(b"temp_shuffle_")
        .or_else(|| name.strip_prefix(b"temp_local_"))
    {
        // BlockId.scala accepts temp_(shuffle|local)_([-A-Fa-f0-9]+), but Spark only writes
        // `UUID.randomUUID()` there: anything else is not its file.
        return is_uuid(id).then_some((Kind::Temp, name.len()));
    }
    if let Some(rest) = name.strip_prefix(b"rdd_") {
        // rdd_([0-9]+)_([0-9]+): two Ints
        let (rdd, split) = split_once(rest, b'_')?;
        return (id(rdd, INT) && id(split, INT)).then_some((Kind::Rdd, name.len()));
    }
    if let Some(rest) = name.strip_prefix(b"broadcast_") {
        // broadcast_([0-9]+)([_A-Za-z0-9]*): a Long, then `_piece<N>` or nothing
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let field = &rest[n..];
        let field_ok = field.is_empty() || field.strip_prefix(b"_piece").is_some_and(|p| id(p, INT));
        return (id(&rest[..n], LONG) && field_ok).then_some((Kind::Broadcast, name.len()));
    }
    if let Some(rest) = name.strip_prefix(b"taskresult_") {
        return id(rest, LONG).then_some((Kind::Taskresult, name.len()));
    }
    // input-S-U, python-stream-S-U and test_*: recognised, never deleted.
    let two_numbers = |rest: &[u8]| split_once(rest, b'-').is_some_and(|(a, b)| id(a, INT) && id(b, LONG));
    let other = name.strip_prefix(b"input-").is_some_and(two_numbers)
        || name.strip_prefix(b"python-stream-").is_some_and(two_numbers)
        || (name.starts_with(b"test_") && std::str::from_utf8(name).is_ok());
    if other {
        return whole(Kind::Other);
    }
    None
}

/// After `shuffle_`: `S_M_R` then `.data`, `.index` or `.checksum.ALGO`, each optionally followed
/// by `.<uuid>` (the writer's in-progress name). Returns the length of `S_M_R`.
fn parse_shuffle(b: &[u8]) -> Option<usize> {
    // Byte by byte: this runs for every file of every sweep. shuffleId and reduceId are Ints,
    // mapId a Long (the task attempt id since Spark 3.0).
    let mut i = 0;
    for (sep, max) in [(b'_', INT), (b'_', LONG), (b'.', INT)] {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if !id(&b[start..i], max) || b.get(i) != Some(&sep) {
            return None;
        }
        i += 1;
    }
    let (ids, suffix) = (&b[..i - 1], &b[i..]);
    let after = if let Some(after) = suffix.strip_prefix(b"data") {
        after
    } else if let Some(after) = suffix.strip_prefix(b"index") {
        after
    } else {
        let algo_and_after = suffix.strip_prefix(b"checksum.")?;
        // ADLER32, CRC32, CRC32C: a short name (bounded, so a name stays short enough to be
        // renamed with a prefix before it is unlinked).
        let algo_len = algo_and_after.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        if algo_len == 0 || algo_len > MAX_ALGO_LEN {
            return None;
        }
        &algo_and_after[algo_len..]
    };
    match after {
        [] => Some(ids.len()),
        _ => after.strip_prefix(b".").filter(|u| is_uuid(u)).map(|_| ids.len()),
    }
}

/// After `shuffleMerged_`: `<appId>_S_<mergeId>_R.(data|index|meta)`, where the app id may itself
/// contain underscores (`application_1700000000000_0001`). Returns the length of the stem part.
fn parse_merged(rest: &[u8]) -> Option<usize> {
    let dot = rest.iter().rposition(|&b| b == b'.')?;
    let (stem, ext) = (&rest[..dot], &rest[dot + 1..]);
    if !matches!(ext, b"data" | b"index" | b"meta") {
        return None;
    }
    let mut parts = stem.rsplitn(4, |&b| b == b'_');
    // shuffleId, shuffleMergeId and reduceId are Ints.
    let ok = (0..3).all(|_| parts.next().is_some_and(|p| id(p, INT)));
    let app = parts.next()?;
    (ok && !app.is_empty()
        && app.len() <= MAX_APP_ID_LEN
        && app.iter().all(|&b| b == b'_' || b.is_ascii_alphanumeric()))
    .then_some(stem.len())
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

/// The largest Java `Int` and `Long`: Spark's ids are one or the other.
const INT: u64 = i32::MAX as u64;
const LONG: u64 = i64::MAX as u64;
/// Checksum algorithm names (`ADLER32`, `CRC32`, `CRC32C`) are short.
const MAX_ALGO_LEN: usize = 16;
/// YARN application ids (`application_<cluster ts>_<n>`) are short.
const MAX_APP_ID_LEN: usize = 64;

/// A non-negative id as Java's `toString` writes it (no sign, no leading zero) that fits in
/// `max`: a number Spark could have written.
fn id(s: &[u8], max: u64) -> bool {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) || (s.len() > 1 && s[0] == b'0') {
        return false;
    }
    // At most 19 digits: fits in a u64.
    let n = s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    n <= max
}

/// `java.util.UUID.toString()`: 8-4-4-4-12 lower-case hex digits (Java never writes upper case).
fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        })
}

/// Where a directory sits in one of Spark's local-dir layouts. The walk only descends into
/// directories that have a role, so unrelated trees that share a root (say `/tmp`) cost nothing.
///
/// | manager | path below the root |
/// | --- | --- |
/// | Mesos, local, any with the shuffle service | `blockmgr-*/NN/` |
/// | standalone worker | `spark-*/executor-*/blockmgr-*/NN/` |
/// | Kubernetes | `spark-*/blockmgr-*/NN/` |
/// | YARN (root = an NM local dir) | `usercache/<user>/appcache/application_*/{blockmgr-*,merge_manager*}/NN/` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirRole {
    /// A configured root.
    Root,
    /// `spark-<uuid>`: a driver's or worker's scratch dir.
    SparkScratch,
    /// `executor-<uuid>` inside a standalone worker's `spark-*` dir.
    Executor,
    /// YARN `usercache`, then `<user>`, then `appcache`.
    YarnUserCache,
    YarnUser,
    YarnAppCache,
    /// YARN `application_<ts>_<n>`.
    YarnApp,
    /// `blockmgr-<uuid>` or `merge_manager*`: one block store, the grouping scope of units.
    Store,
    /// `NN`: a hashed sub-directory of a store, the only place block files live.
    SubDir,
}

/// The role of directory `name` inside a directory of role `parent`; `None` means the walk does
/// not enter it (its files are not Spark blocks).
pub fn child_dir_role(parent: DirRole, name: &str) -> Option<DirRole> {
    let store = is_store_name(name);
    match parent {
        DirRole::Root if store => Some(DirRole::Store),
        DirRole::Root if name.starts_with("spark-") => Some(DirRole::SparkScratch),
        DirRole::Root if name == "usercache" => Some(DirRole::YarnUserCache),
        DirRole::Root if name.starts_with("application_") => Some(DirRole::YarnApp),
        // A root may be a level below a local dir: a `spark-*` dir (its `executor-*`), or a
        // YARN user's dir (its `appcache`).
        DirRole::Root if name.starts_with("executor-") => Some(DirRole::Executor),
        DirRole::Root if name == "appcache" => Some(DirRole::YarnAppCache),
        DirRole::SparkScratch if store => Some(DirRole::Store),
        DirRole::SparkScratch if name.starts_with("executor-") => Some(DirRole::Executor),
        DirRole::Executor if store => Some(DirRole::Store),
        DirRole::YarnUserCache => Some(DirRole::YarnUser),
        DirRole::YarnUser if name == "appcache" => Some(DirRole::YarnAppCache),
        DirRole::YarnAppCache if name.starts_with("application_") => Some(DirRole::YarnApp),
        DirRole::YarnApp if store => Some(DirRole::Store),
        // `format("%02x", subDirId)`: two hex digits by default, more for a larger
        // `spark.diskStore.subDirectories`.
        DirRole::Store if name.len() >= 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Some(DirRole::SubDir)
        }
        _ => None,
    }
}

/// Whether a directory name is a block store's.
pub fn is_store_name(name: &str) -> bool {
    name.starts_with("blockmgr-") || name.starts_with("merge_manager")
}

/// The role a configured root plays, from its own name: a root that names a block store is
/// read as that store, one named `usercache` as YARN's user cache; any other directory is a
/// local dir.
pub fn root_role(root: &std::path::Path) -> DirRole {
    match root.file_name().and_then(|n| n.to_str()) {
        Some(n) if is_store_name(n) => DirRole::Store,
        Some("usercache") => DirRole::YarnUserCache,
        _ => DirRole::Root,
    }
}

/// The role of a directory given by its path relative to a root (`""` is the root itself);
/// `None` when the walk would not enter it.
pub fn dir_role(rel: &str) -> Option<DirRole> {
    rel.split('/')
        .filter(|p| !p.is_empty())
        .try_fold(DirRole::Root, child_dir_role)
}

/// Classifies a path relative to a root, the way the walk does it component by component.
/// Returns the block when the path is a file in a store's sub-directory with a Spark name.
pub fn classify_relative(path: &str) -> Option<Block<'_>> {
    let mut parts = path.split('/').filter(|p| !p.is_empty()).peekable();
    let mut role = DirRole::Root;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return (role == DirRole::SubDir).then(|| parse_block_file(part)).flatten();
        }
        role = child_dir_role(role, part)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "d4b709a2-9f76-464d-83d2-3da158a06ef0";

    fn kind(name: &str) -> Option<Kind> {
        parse_block_file(name).map(|b| b.kind)
    }

    fn stem(name: &str) -> Option<&str> {
        parse_block_file(name).map(|b| b.stem)
    }

    #[test]
    fn map_output_files_share_one_stem() {
        for name in [
            "shuffle_0_8_0.data".to_string(),
            "shuffle_0_8_0.index".to_string(),
            "shuffle_0_8_0.checksum.ADLER32".to_string(),
            "shuffle_0_8_0.checksum.CRC32C".to_string(),
            format!("shuffle_0_8_0.data.{UUID}"),
            format!("shuffle_0_8_0.index.{UUID}"),
            format!("shuffle_0_8_0.checksum.ADLER32.{UUID}"),
        ] {
            assert_eq!(kind(&name), Some(Kind::Shuffle), "{name}");
            assert_eq!(stem(&name), Some("shuffle_0_8_0"), "{name}");
        }
        // Spark 3.0+ uses the task attempt id (a Long) as the map id.
        assert_eq!(
            stem("shuffle_12_9223372036854775807_0.data"),
            Some("shuffle_12_9223372036854775807_0")
        );
        assert_eq!(
            stem("shuffle_2147483647_0_2147483647.index"),
            Some("shuffle_2147483647_0_2147483647")
        );
    }

    #[test]
    fn near_misses_are_not_spark_names() {
        for name in [
            "shuffle_0_8.data",
            "shuffle_0_8_0_1.data",
            "shuffle_a_8_0.data",
            "shuffle_0_8_0.dat",
            "shuffle_0_8_0.data.",
            "shuffle_0_8_0.data.tmp",
            "shuffle_0_8_0.data.d4b709a2",
            "shuffle_0_8_0.checksum",
            "shuffle_0_8_0.checksum.",
            "shuffle_0_8_0.index.bak",
            "shuffle_0_8_0",
            "temp_shuffle_",
            "temp_shuffle_xyz",
            "rdd_1",
            "rdd_1_2_3",
            "rdd_1_x",
            "broadcast_",
            "broadcast_x",
            "broadcast_1-piece0",
            "taskresult_",
            "taskresult_1a",
            "shuffleMerged_app_1_2.data",
            "shuffleMerged_app_1_2_3.bin",
            "input-1",
            "python-stream-1-x",
            "tmp60mx6sg0",
            "core.1234",
            ".shuffle_0_8_0.data",
            // Near misses and ids Spark cannot write (issue: hostile review).
            "shuffle_1_2_3.data.bak",
            "shuffle_1_2_3.datax",
            "shuffle_-1_2_3.data",
            "shuffle_+1_2_3.data",
            "shuffle_01_2_3.data",
            "shuffle_1_99999999999999999999_0.data",
            "shuffle_1_9223372036854775808_0.data",
            "shuffle_2147483648_1_0.data",
            "shuffle_1_2_2147483648.index",
            "shuffle_0_8_0.data.D4B709A2-9F76-464D-83D2-3DA158A06EF0",
            "shuffle_0_8_0.checksum.ADLER32ADLER32ADLER32",
            "temp_shuffle_cbcc5095",
            "temp_shuffle_CBCC5095-CA79-44CE-9C7D-6CB2562F1410",
            "temp_local_cbcc5095-ca79-44ce-9c7d-6cb2562f1410x",
            "temp_local_cbcc5095-ca79-44ce-9c7d6cb2562f1410-",
            "rdd_1_2147483648",
            "broadcast_1_foo",
            "broadcast_1_piece",
            "taskresult_99999999999999999999",
        ] {
            assert_eq!(parse_block_file(name), None, "{name}");
        }
    }

    #[test]
    fn raw_names_parse_as_their_text_and_invalid_utf8_is_never_spark() {
        for name in [
            "shuffle_0_8_0.checksum.ADLER32",
            "temp_local_cbcc5095",
            "test_x",
            "core.1",
        ] {
            let text = parse_block_file(name).map(|b| (b.kind, b.stem.len()));
            assert_eq!(parse_block_name(name.as_bytes()), text, "{name}");
        }
        for name in [&b"test_\xff"[..], b"shuffle_0_8_0.data\xff", b"rdd_1_\xc3\xa9"] {
            assert_eq!(parse_block_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn other_kinds_are_units_of_one_file() {
        for (name, k) in [
            ("temp_shuffle_cbcc5095-ca79-44ce-9c7d-6cb2562f1410", Kind::Temp),
            ("temp_local_cbcc5095-ca79-44ce-9c7d-6cb2562f1410", Kind::Temp),
            ("rdd_1_0", Kind::Rdd),
            ("broadcast_0", Kind::Broadcast),
            ("broadcast_0_piece0", Kind::Broadcast),
            ("taskresult_42", Kind::Taskresult),
            ("input-0-1700000000000", Kind::Other),
            ("python-stream-3-4", Kind::Other),
            ("test_anything", Kind::Other),
        ] {
            assert_eq!(kind(name), Some(k), "{name}");
            assert_eq!(stem(name), Some(name), "{name}");
        }
    }

    #[test]
    fn merged_files_group_by_partition() {
        let app = "shuffleMerged_application_1700000000000_0001_3_0_7";
        for ext in ["data", "index", "meta"] {
            let name = format!("{app}.{ext}");
            assert_eq!(kind(&name), Some(Kind::Merged), "{name}");
            assert_eq!(stem(&name), Some(app), "{name}");
        }
    }

    #[test]
    fn a_root_named_like_a_store_is_read_as_one() {
        use std::path::Path;
        assert_eq!(root_role(Path::new("/data/spark/blockmgr-1")), DirRole::Store);
        assert_eq!(root_role(Path::new("/data/merge_manager_1")), DirRole::Store);
        assert_eq!(
            root_role(Path::new("/hadoop/yarn/local/usercache")),
            DirRole::YarnUserCache
        );
        assert_eq!(root_role(Path::new("/data/spark-local")), DirRole::Root);
        assert_eq!(root_role(Path::new("/")), DirRole::Root);
        // A root one level down (a spark-* or a YARN user's dir) still finds its stores.
        assert_eq!(dir_role("executor-1/blockmgr-2"), Some(DirRole::Store));
        assert_eq!(dir_role("appcache/application_1_1/blockmgr-2"), Some(DirRole::Store));
    }

    #[test]
    fn directory_roles_follow_the_layouts() {
        assert_eq!(dir_role(""), Some(DirRole::Root));
        assert_eq!(dir_role("spark-1/executor-2"), Some(DirRole::Executor));
        assert_eq!(dir_role("spark-1/executor-2/blockmgr-3"), Some(DirRole::Store));
        assert_eq!(dir_role("spark-1/executor-2/blockmgr-3/3f"), Some(DirRole::SubDir));
        assert_eq!(dir_role("usercache/bob/appcache"), Some(DirRole::YarnAppCache));
        assert_eq!(dir_role("spark-1/userFiles-2"), None);
        assert_eq!(dir_role("blockmgr-3/3f/deeper"), None);
    }

    #[test]
    fn layouts_of_every_cluster_manager() {
        let f = "shuffle_0_1_0.index";
        for path in [
            format!("blockmgr-8ef70c7d-f7b0-46e5-a2b0-ccbc7824c13e/0f/{f}"),
            format!("spark-0d7c/executor-595b/blockmgr-17ee/0f/{f}"),
            format!("spark-0d7c/blockmgr-17ee/0f/{f}"),
            format!("usercache/alice/appcache/application_1700000000000_0001/blockmgr-17ee/0f/{f}"),
            format!("application_1700000000000_0001/blockmgr-17ee/0f/{f}"),
            format!("usercache/alice/appcache/application_1_1/merge_manager_1/1a/{f}"),
            format!("blockmgr-x/1ff/{f}"),
        ] {
            assert_eq!(classify_relative(&path).map(|b| b.kind), Some(Kind::Shuffle), "{path}");
        }
        for path in [
            f.to_string(),                                    // loose in the root
            format!("blockmgr-x/{f}"),                        // not in a sub-directory
            format!("blockmgr-x/0F/{f}"),                     // upper-case is not Spark's
            format!("blockmgr-x/0/{f}"),                      // one digit is not Spark's
            format!("blockmgr-x/0f/deeper/{f}"),              // too deep
            format!("other/blockmgr-x/0f/{f}"),               // not a Spark layout
            format!("spark-1/userFiles-2/blockmgr-x/0f/{f}"), // not an executor dir
            format!("spark-1/pyspark-2/{f}"),
            format!("usercache/alice/filecache/1/blockmgr-x/0f/{f}"),
        ] {
            assert_eq!(classify_relative(&path), None, "{path}");
        }
    }
}
