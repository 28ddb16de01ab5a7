//! The clock the rules are applied at. File ages are wall-clock differences, so a wall clock
//! stepped forward by days would make every file look days old, and one stepped back would make
//! files written after the step look old once it is corrected. The daemon compares the wall
//! clock with the monotonic one at every reading: a difference of more than [`STEP`] is a step.
//! After a step, for `max_age` of monotonic time, the rules use the earlier of the wall clock and
//! the clock carried on monotonically from before the step: files written before it keep their
//! true age, files written after it look young, so nothing goes because of the step.

use std::time::{Duration, Instant};

use crate::policy::{Nanos, nanos};

/// A jump between the wall and the monotonic clock larger than this is a step (NTP slews
/// smaller differences).
pub const STEP: Duration = Duration::from_secs(60);

/// A step seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Wall-clock nanoseconds it jumped by (negative: back).
    pub by: Nanos,
}

#[derive(Debug)]
pub struct Clock {
    last_wall: Nanos,
    last_mono: Instant,
    /// Until this monotonic time, the rules use `min(wall, carried)`.
    hold_until: Option<Instant>,
    /// The wall clock carried on monotonically from before the step.
    carried_at_last: Nanos,
    /// The last step seen: the wall time it was seen at, and by how much.
    last_step: Option<(Nanos, Step)>,
}

/// What `status` shows of the clock the rules use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The last step seen: when (wall clock) and by how much.
    pub last_step: Option<(Nanos, Step)>,
    /// How far the rules' clock runs behind the wall clock, at the last reading (0 outside a
    /// hold, and after a step back, where the wall clock is the earlier one).
    pub behind: Nanos,
    /// While a step holds the rules off the wall clock: how much longer.
    pub hold_left: Option<Duration>,
}

impl Clock {
    pub fn new(wall: Nanos, mono: Instant) -> Clock {
        Clock {
            last_wall: wall,
            last_mono: mono,
            hold_until: None,
            carried_at_last: wall,
            last_step: None,
        }
    }

    /// The drift at monotonic time `mono`, as of the last reading.
    pub fn drift(&self, mono: Instant) -> Drift {
        let hold_left = self
            .hold_until
            .map(|t| t.saturating_duration_since(mono))
            .filter(|d| !d.is_zero());
        Drift {
            last_step: self.last_step,
            behind: if hold_left.is_some() {
                self.last_wall.saturating_sub(self.carried_at_last).max(0)
            } else {
                0
            },
            hold_left,
        }
    }

    /// Takes a reading of both clocks; returns the time the rules are to use, and the step if
    /// this reading found one. `hold` is how long a step keeps the rules off the wall clock.
    pub fn read(&mut self, wall: Nanos, mono: Instant, hold: Duration) -> (Nanos, Option<Step>) {
        let elapsed = nanos(mono.saturating_duration_since(self.last_mono));
        let expected = self.last_wall.saturating_add(elapsed);
        let carried = self.carried_at_last.saturating_add(elapsed);
        let by = wall.saturating_sub(expected);
        let step = (by.unsigned_abs() > STEP.as_nanos() as u64).then_some(Step { by });
        if let Some(step) = step {
            self.last_step = Some((wall, step));
            self.hold_until = mono
                .checked_add(hold)
                .or(Some(mono + Duration::from_secs(10 * 365 * 86400)));
        }
        let holding = self.hold_until.is_some_and(|t| mono < t);
        if !holding {
            self.hold_until = None;
        }
        self.last_wall = wall;
        self.last_mono = mono;
        // Outside a hold the carried clock follows the wall clock.
        self.carried_at_last = if holding { carried } else { wall };
        let rules_now = if holding { wall.min(carried) } else { wall };
        (rules_now, step)
    }

    pub fn holding(&self, mono: Instant) -> bool {
        self.hold_until.is_some_and(|t| mono < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;
    const DAY: Nanos = 86_400 * S;

    #[test]
    fn a_step_forward_or_back_keeps_the_rules_on_the_carried_clock_for_the_hold() {
        let t0 = Instant::now();
        let wall0 = 1_000 * DAY;
        let mut c = Clock::new(wall0, t0);
        let hold = Duration::from_secs(6 * 3600);
        // Ten seconds pass on both clocks: no step.
        let (now, step) = c.read(wall0 + 10 * S, t0 + Duration::from_secs(10), hold);
        assert_eq!((now, step), (wall0 + 10 * S, None));
        // The wall clock jumps three days ahead in one more second.
        let (now, step) = c.read(wall0 + 3 * DAY + 11 * S, t0 + Duration::from_secs(11), hold);
        assert_eq!(step, Some(Step { by: 3 * DAY }));
        assert_eq!(now, wall0 + 11 * S, "the rules stay on the carried clock");
        let drift = c.drift(t0 + Duration::from_secs(11));
        assert_eq!(drift.last_step, Some((wall0 + 3 * DAY + 11 * S, Step { by: 3 * DAY })));
        assert_eq!((drift.behind, drift.hold_left), (3 * DAY, Some(hold)));
        // An hour later, still held.
        let (now, step) = c.read(wall0 + 3 * DAY + 3611 * S, t0 + Duration::from_secs(3611), hold);
        assert_eq!((now, step), (wall0 + 3611 * S, None));
        // After the hold, the wall clock again.
        let later = t0 + Duration::from_secs(7 * 3600);
        let (now, _) = c.read(wall0 + 3 * DAY + 7 * 3600 * S, later, hold);
        assert_eq!(now, wall0 + 3 * DAY + 7 * 3600 * S);
        let drift = c.drift(later);
        assert_eq!((drift.behind, drift.hold_left), (0, None));
        assert!(drift.last_step.is_some(), "the last step is still told");

        // Back by two days: the wall clock is the earlier one, and files written after the step
        // look young by it.
        let mut c = Clock::new(wall0, t0);
        let (now, step) = c.read(wall0 - 2 * DAY, t0 + Duration::from_secs(1), hold);
        assert_eq!(step, Some(Step { by: -2 * DAY - S }));
        assert_eq!(now, wall0 - 2 * DAY);
    }
}
