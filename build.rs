//! Build facts for `--version` and `shuffle_janitor_build_info`: the commit (`revision`) and the
//! compiler's version (`rustversion`), as exporters carry them.
//!
//! The commit comes from `SHUFFLE_JANITOR_REVISION` when set (a build from a source tarball,
//! which has no .git), else from git, else "unknown": a build never fails for want of git.

use std::path::PathBuf;
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SHUFFLE_JANITOR_REVISION");
    let revision = match std::env::var("SHUFFLE_JANITOR_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ => {
            // Rebuilt when HEAD moves: HEAD itself (a worktree has its own), the branch's ref
            // and packed-refs (in the common directory). Only files that exist are named: cargo
            // would otherwise rebuild every time.
            let mut watch: Vec<PathBuf> = Vec::new();
            if let Some(dir) = output("git", &["rev-parse", "--git-dir"]) {
                watch.push(PathBuf::from(dir).join("HEAD"));
            }
            if let Some(common) = output("git", &["rev-parse", "--git-common-dir"]) {
                let common = PathBuf::from(common);
                watch.push(common.join("packed-refs"));
                if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"]) {
                    watch.push(common.join(branch));
                }
            }
            for path in watch.iter().filter(|p| p.exists()) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            output("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // "rustc 1.95.0 (59807616e 2026-04-14)" -> "1.95.0"
    let rustversion = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SHUFFLE_JANITOR_REVISION={revision}");
    println!("cargo:rustc-env=SHUFFLE_JANITOR_RUSTVERSION={rustversion}");
}
