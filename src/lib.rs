//! shuffle-janitor: deletes stale Apache Spark shuffle files from a node's local dirs, safely.
//!
//! # Layout
//!
//! The decision is pure and tested without the OS; the OS is touched at the edges.
//!
//! - [`config`]: TOML file -> parsed [`config::RawConfig`] -> validated [`config::Config`].
//! - [`spark`]: Spark's directory layouts and block file names (pure).
//! - [`policy`]: units, TTL, floor, pressure and purge -> verdicts; empty stores -> live, idle
//!   or dead (pure, property-tested).
//! - [`fsx`]: the `*at()` primitives: directories opened without following symlinks and checked
//!   to be on the root's own mount, listed with `getdents`.
//! - [`scan`]: walks the roots once to find the block stores, errors as values.
//! - [`store_dir`]: one store read and deleted in through directory fds opened without following
//!   symlinks: `getdents`, one `fstatat` per Spark file, re-stat before `unlinkat`.
//! - [`disk`]: statvfs, mountinfo, file timestamps.
//! - [`open_files`]: which files processes hold open or mapped (`/proc/*/fd`, `/proc/*/maps`).
//! - [`procs`]: the node's Spark JVMs and the directories processes hold, for stores' liveness;
//!   [`procs_bounded`] reads them with a deadline (a hung mount never stalls a sweep).
//! - [`spark_jvm`]: whether a JVM can create block stores (its open jars and class path).
//! - [`index`]: the daemon's units of every store (stem, files, sizes, last use, opens), filled
//!   from walks' listings and kept current by the watch's events; data and its update rules, no
//!   system calls.
//! - [`journal`]: the deletion journal in `state_dir`: every unit and store deleted, one JSON
//!   line each, with the evidence and the rule that decided (read back by `explain`).
//! - [`state`]: what the daemon keeps across a restart (the opens its watch saw), in `state_dir`.
//! - [`sweep`]: scan -> policy -> delete -> [`report::Report`], used by every command; or, in the
//!   daemon, [`index`] -> policy -> delete.
//! - [`report`]: what a sweep did, as text and JSON.
//! - [`daemon`]: `run`: the loop, signals as messages, inotify, metrics over HTTP, systemd.
//! - [`web_config`]: the metrics endpoint's TLS and basic auth (the exporter toolkit's file).
//! - [`control`]: the daemon's control socket, protocol and client (`status`, `plan`, `explain`).
//! - [`cli`]: the command line (clap definitions only).

/// The version (Cargo.toml's), the commit it was built from and the compiler (build.rs).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = env!("SHUFFLE_JANITOR_REVISION");
pub const RUSTVERSION: &str = env!("SHUFFLE_JANITOR_RUSTVERSION");
/// What `--version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("SHUFFLE_JANITOR_REVISION"),
    ", rustc ",
    env!("SHUFFLE_JANITOR_RUSTVERSION"),
    ")"
);

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod disk;
pub mod fsx;
pub mod index;
pub mod journal;
pub mod open_files;
pub mod policy;
pub mod procs;
pub mod procs_bounded;
pub mod report;
pub mod scan;
pub mod spark;
pub mod spark_jvm;
pub mod state;
pub mod store_dir;
pub mod sweep;
pub mod web_config;
