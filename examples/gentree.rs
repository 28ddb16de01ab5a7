//! Builds a Spark-like local dir for benchmarks: `blockmgr-<uuid>/NN/` stores (64 `NN` each),
//! map outputs of `.data`, `.index` and `.checksum.ADLER32` files hashed into different `NN`s
//! the way Spark hashes file names, `temp_shuffle_*` spills, and a few files that are not
//! Spark's. Half of the map outputs (and spills) are back-dated past the TTL.
//!
//! With EMPTY_STORES, also that many empty stores of executors long gone (as the TTL leaves
//! them), each with 1 to 64 empty `NN` directories, back-dated a day.
//!
//! With NN_PER_STORE (64 by default, as Spark's `spark.diskStore.subDirectories`), the stores
//! with files have that many `NN` directories and hash into them: many small stores with few
//! `NN` each stay within the default `fs.inotify.max_user_watches` (the daemon's watches are
//! one per store and one per `NN`).
//!
//! cargo run --release --example gentree -- ROOT [FILES] [FILES_PER_STORE] [EMPTY_STORES] [NN_PER_STORE]
//! Prints a JSON line: files, old_files, old_spark_files (what a TTL sweep must delete), stores,
//! empty_stores, empty_dirs (their directories, NN included), ttl_minutes (files older than
//! this are old).

use std::path::Path;
use std::time::{Duration, SystemTime};

use filetime::FileTime;

/// Old files are this much older than the TTL, fresh ones this much younger.
const TTL_MINUTES: u64 = 6 * 60;

/// Java's String.hashCode, as Spark's `Utils.nonNegativeHash` uses it to pick the `NN`.
fn java_hash(s: &str) -> u32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32)) as u32
}

/// A small deterministic generator (xorshift), so every run builds the same tree.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
}

fn main() {
    const USAGE: &str = "usage: gentree ROOT [FILES (1000000)] [FILES_PER_STORE (10000)] [EMPTY_STORES (0)]";
    let args: Vec<String> = std::env::args().collect();
    // `gentree --help` must not make a million files in a directory named `--help`.
    let Some(root) = args.get(1).filter(|a| !a.starts_with('-')) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let root = Path::new(root);
    let files: u64 = args.get(2).map_or(1_000_000, |a| a.parse().expect("FILES"));
    let per_store: u64 = args.get(3).map_or(10_000, |a| a.parse().expect("FILES_PER_STORE"));
    let empty_stores: u64 = args.get(4).map_or(0, |a| a.parse().expect("EMPTY_STORES"));
    let nn_per_store: u32 = args
        .get(5)
        .map_or(64, |a| a.parse().expect("NN_PER_STORE"))
        .clamp(1, 256);
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let now = SystemTime::now();
    let old = FileTime::from_system_time(now - Duration::from_secs((TTL_MINUTES + 24 * 60) * 60));
    let fresh = FileTime::from_system_time(now - Duration::from_secs(60 * 60));
    let (mut made, mut old_files, mut old_spark, mut stores) = (0u64, 0u64, 0u64, 0u64);
    let write = |path: &Path, len: usize, t: FileTime| {
        std::fs::write(path, vec![b's'; len]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        filetime::set_file_times(path, t, t).unwrap();
    };
    while made < files {
        let store = root.join(format!("blockmgr-{}", rng.uuid()));
        for nn in 0..nn_per_store {
            std::fs::create_dir_all(store.join(format!("{nn:02x}"))).unwrap();
        }
        stores += 1;
        let mut in_store = 0;
        let mut map = 0u64;
        while in_store < per_store && made < files {
            let t = if map.is_multiple_of(2) { old } else { fresh };
            let r = rng.next() % 100;
            let foreign = r == 5 && map.is_multiple_of(10);
            let names: Vec<(String, usize)> = if r < 5 {
                vec![(format!("temp_shuffle_{}", rng.uuid()), 512)]
            } else if foreign {
                vec![(format!("core.{map}"), 64)] // not Spark's: never touched
            } else {
                let stem = format!("shuffle_{}_{}_0", map % 7, map);
                vec![
                    (format!("{stem}.data"), 256),
                    (format!("{stem}.index"), 16),
                    (format!("{stem}.checksum.ADLER32"), 8),
                ]
            };
            for (name, len) in names {
                let nn = java_hash(&name) % nn_per_store;
                write(&store.join(format!("{nn:02x}")).join(&name), len, t);
                made += 1;
                in_store += 1;
                if t == old {
                    old_files += 1;
                    old_spark += u64::from(!foreign);
                }
            }
            map += 1;
        }
    }
    let day_ago = FileTime::from_system_time(now - Duration::from_secs(24 * 60 * 60));
    let mut empty_dirs = 0u64;
    for _ in 0..empty_stores {
        let store = root.join(format!("blockmgr-{}", rng.uuid()));
        let nn_count = 1 + rng.next() % 64;
        for nn in 0..nn_count {
            let d = store.join(format!("{nn:02x}"));
            std::fs::create_dir_all(&d).unwrap();
            filetime::set_file_times(&d, day_ago, day_ago).unwrap();
        }
        filetime::set_file_times(&store, day_ago, day_ago).unwrap();
        empty_dirs += nn_count + 1;
    }
    println!(
        "{{\"files\": {made}, \"old_files\": {old_files}, \"old_spark_files\": {old_spark}, \"stores\": {stores}, \"empty_stores\": {empty_stores}, \"empty_dirs\": {empty_dirs}, \"ttl_minutes\": {TTL_MINUTES}}}"
    );
}
