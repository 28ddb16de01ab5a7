//! The adversarial suite (issue "Prove it safe under hostile conditions"): every scenario drives
//! the real binary (`sweep`, `run`) against trees, mounts, signals, clients and clocks that attack
//! its safety rules, counts violations against an oracle the test computes from what it created,
//! and ends with one table. Exit status 1 on any violation or failed assertion.
//!
//! ```sh
//! cargo test --test hostile                      # every scenario at CI size (a few minutes)
//! cargo test --test hostile -- races names       # the scenarios whose name contains a word
//! cargo test --test hostile -- --full            # the issue's sizes (1M entries, 3M files)
//! cargo test --test hostile -- --list
//! HOSTILE_SOAK_MINUTES=60 cargo test --test hostile -- soak   # or tests/hostile/soak.sh
//! ```
//!
//! Scenarios that need root (mounts, sysctls, chattr, another user) print
//! `SKIPPED <scenario>: <reason>` without it.

#[path = "../common/mod.rs"]
mod common;
mod kit;

mod s_config;
mod s_faults;
mod s_foreign;
mod s_http;
mod s_index;
mod s_inotify;
mod s_liveness;
mod s_names;
mod s_races;
mod s_reap;
mod s_regress;
mod s_signals;
mod s_soak;
mod s_stall;
mod s_time;

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use kit::{Sc, Scenario, Status};

/// Every scenario, in the order they run (cheap ones first).
fn scenarios() -> Vec<Scenario> {
    let mut v: Vec<Scenario> = Vec::new();
    v.extend(s_config::ALL);
    v.extend(s_names::ALL);
    v.extend(s_foreign::ALL);
    v.extend(s_faults::ALL);
    v.extend(s_regress::ALL);
    v.extend(s_races::ALL);
    v.extend(s_reap::ALL);
    v.extend(s_liveness::ALL);
    v.extend(s_stall::ALL);
    v.extend(s_signals::ALL);
    v.extend(s_inotify::ALL);
    v.extend(s_index::ALL);
    v.extend(s_http::ALL);
    v.extend(s_time::ALL);
    v.extend(s_soak::ALL);
    v
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--full") || std::env::var_os("HOSTILE_FULL").is_some();
    // cargo's test runner passes flags of its own (--nocapture, --test-threads...): ignored.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let all = scenarios();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &all {
            println!("{name}");
        }
        return;
    }
    let chosen: Vec<&Scenario> = all
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    // Quiet panics: a failed scenario is reported in the table.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("panic: {info}");
        if std::env::var_os("HOSTILE_BACKTRACE").is_some() {
            default_hook(info);
        }
    }));
    let started = Instant::now();
    let mut rows: Vec<(Sc, f64)> = Vec::new();
    for (name, run) in chosen {
        eprintln!("=== {name}");
        let t = Instant::now();
        let mut sc = Sc::new(name, full);
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| run(&mut sc)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            sc.failures.push(format!("panicked: {msg}"));
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!("=== {name}: {:?} in {secs:.1}s", sc.status());
        rows.push((sc, secs));
    }
    print_table(&rows, full, started.elapsed().as_secs_f64());
    let bad = rows.iter().any(|(sc, _)| matches!(sc.status(), Status::Fail(_)));
    std::process::exit(i32::from(bad));
}

fn print_table(rows: &[(Sc, f64)], full: bool, total: f64) {
    println!();
    println!(
        "hostile suite ({} size), {} scenarios in {total:.0}s",
        if full { "full" } else { "CI" },
        rows.len()
    );
    println!(
        "| {:<34} | {:>10} | {:>12} | {:>9} | {:>10} | {:>6} | result",
        "scenario", "iterations", "files judged", "deletions", "violations", "secs"
    );
    println!(
        "|{:-<36}|{:->12}|{:->14}|{:->11}|{:->12}|{:->8}|{:-<8}",
        "", "", "", "", "", "", ""
    );
    for (sc, secs) in rows {
        let result = match sc.status() {
            Status::Pass => "ok".to_string(),
            Status::Skipped(why) => format!("SKIPPED ({why})"),
            Status::Fail(why) => format!("FAILED: {}", why.lines().next().unwrap_or("")),
        };
        println!(
            "| {:<34} | {:>10} | {:>12} | {:>9} | {:>10} | {:>6.1} | {result}",
            sc.name, sc.iterations, sc.judged, sc.deletions, sc.violations, secs
        );
    }
    let v: u64 = rows.iter().map(|(s, _)| s.violations).sum();
    let f = rows
        .iter()
        .filter(|(s, _)| matches!(s.status(), Status::Fail(_)))
        .count();
    println!("total violations: {v}; scenarios failed: {f}");
}
