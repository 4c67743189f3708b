//! Slowing down before GitHub's primary rate limit is reached, from the `x-ratelimit-remaining`
//! and `x-ratelimit-reset` headers of successful replies (GitHub's "best practices for using the
//! REST API": watch the remaining budget instead of running into the limit).
//!
//! While plenty is left, calls go out at once. Below [`LOW_REMAINING`] the rest is spread evenly
//! over the time until the reset (`time left / (remaining + 1)` between calls), so a burst can
//! never use the last calls of the window. With nothing left, the caller waits for a reset that
//! is close, and otherwise holds every call until it, as for a rate-limit answer. The budget holds the latest reply's numbers: one
//! client serves one credential, and an App's JWT calls and its installation token's calls are
//! few enough that mixing their windows only errs on the slow side.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Below this many calls left in the window, calls are spaced out. GitHub grants 5,000 an hour
/// to a personal token and at least as many to an App installation.
pub(super) const LOW_REMAINING: u64 = 100;

#[derive(Default)]
pub(super) struct RateBudget {
    /// `(remaining, reset as a Unix time)` of the latest reply that had both.
    latest: Mutex<Option<(u64, u64)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pace {
    Go,
    /// Wait this long before the next call.
    Wait(Duration),
    /// Nothing is left until the reset, this far away.
    Exhausted(Duration),
}

impl RateBudget {
    pub(super) fn record(&self, remaining: u64, reset: u64) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some((remaining, reset));
        }
    }

    /// What the next call should do, as of now.
    pub(super) fn pace(&self) -> Pace {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.pace_at(now)
    }

    fn pace_at(&self, now: u64) -> Pace {
        let Some((remaining, reset)) = self.latest.lock().ok().and_then(|l| *l) else {
            return Pace::Go;
        };
        if reset <= now {
            // A new window has begun.
            return Pace::Go;
        }
        // One extra second: the reset time is rounded down to whole seconds.
        let left = Duration::from_secs(reset - now + 1);
        match remaining {
            0 => Pace::Exhausted(left),
            r if r < LOW_REMAINING => Pace::Wait(left / u32::try_from(r + 1).unwrap_or(u32::MAX)),
            _ => Pace::Go,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_slow_down_in_proportion_as_the_budget_runs_low() {
        let budget = RateBudget::default();
        let now = 1_000_000;
        assert_eq!(budget.pace_at(now), Pace::Go, "nothing known yet");
        budget.record(4_000, now + 3_000);
        assert_eq!(budget.pace_at(now), Pace::Go, "plenty left");
        budget.record(LOW_REMAINING, now + 3_000);
        assert_eq!(budget.pace_at(now), Pace::Go, "the threshold itself");
        // 99 left, 100 s to the reset (+1 for rounding): about a second between calls.
        budget.record(99, now + 100);
        assert_eq!(budget.pace_at(now), Pace::Wait(Duration::from_millis(1010)));
        // Fewer left: longer waits.
        budget.record(9, now + 100);
        assert_eq!(
            budget.pace_at(now),
            Pace::Wait(Duration::from_millis(10_100))
        );
        budget.record(0, now + 100);
        assert_eq!(
            budget.pace_at(now),
            Pace::Exhausted(Duration::from_secs(101))
        );
        // Once the reset has passed, a new window begins.
        assert_eq!(budget.pace_at(now + 100), Pace::Go);
    }
}
