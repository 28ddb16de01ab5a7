//! Parts of `status` made from the daemon's state (the rest is in the loop's `status`).

use serde_json::{Value, json};

use super::clock::Clock;
use crate::journal::rfc3339;

/// The clock the rules use against the wall clock: steps seen, the last one, and while one
/// holds the rules on the clock carried on from before it, how far behind and until when.
pub fn clock(clock: &Clock, steps: u64) -> Value {
    let now = std::time::Instant::now();
    let drift = clock.drift(now);
    let wall = crate::sweep::now();
    json!({
        "steps": steps,
        "last_step": drift.last_step.map(|(at, step)| json!({
            "at": rfc3339(at),
            "by_seconds": step.by / 1_000_000_000,
        })),
        "rules_behind_seconds": drift.behind / 1_000_000_000,
        "held_until": drift
            .hold_left
            .map(|left| rfc3339(wall.saturating_add(crate::policy::nanos(left)))),
    })
}
