//! The one retry schedule of the queue: exponential with jitter, capped, and never earlier than
//! a service asked for (`Retry-After`).
use std::time::Duration;

use rand::Rng;

/// How a kind of job is retried after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before the first retry (before jitter); it doubles with each failure.
    pub base: Duration,
    /// The longest delay between two attempts.
    pub cap: Duration,
    /// Failed attempts in a row before the job fails; 0: retried until it succeeds (clean-up
    /// and uploads must not give up during an outage).
    pub max_attempts: u32,
}

/// The delay before retrying after the `attempt`-th failure in a row (from 1): half of
/// `base * 2^(attempt-1)` (capped) plus a random part up to the other half, so jobs that
/// failed together do not retry together. `retry_after`, when the service sent one, is the
/// minimum.
pub fn backoff(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = policy
        .base
        .saturating_mul(1u32 << exponent)
        .min(policy.cap)
        .max(Duration::from_millis(1));
    let half = full / 2;
    let jitter = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
    let delay = half + Duration::from_millis(jitter);
    delay.max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
        max_attempts: 5,
    };

    #[test]
    fn doubles_within_jitter_and_stops_at_the_cap() {
        for attempt in 1..=12 {
            let full = Duration::from_secs(1 << (attempt - 1)).min(POLICY.cap);
            for _ in 0..50 {
                let d = backoff(&POLICY, attempt, None);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_retries() {
        let delays: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff(&POLICY, 6, None)).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn retry_after_is_honoured() {
        let d = backoff(&POLICY, 1, Some(Duration::from_secs(30)));
        assert!(d >= Duration::from_secs(30));
    }
}
