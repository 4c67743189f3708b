//! When to try a GitHub request again and how long to wait first.
//!
//! Follows GitHub's "best practices for using the REST API" and "rate limits" pages: server
//! errors and dropped connections back off exponentially (or wait for a server error's
//! `retry-after`, capped at the longest allowed wait); a secondary rate limit (403/429) waits
//! for `retry-after`, or until `x-ratelimit-reset` when `x-ratelimit-remaining` is 0, or at least
//! a minute when neither header is present. Requests sent while still limited can get an
//! integration banned, so when the server asks for a longer wait than we are allowed to sleep we
//! give up at once instead of retrying early.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What GitHub asks for when it rate-limits without saying for how long.
const UNSPECIFIED_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubled on each further retry.
    pub base_delay: Duration,
    /// The longest single wait; a rate limit asking for more is not waited out.
    pub max_wait: Duration,
}

/// A failed attempt, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Attempt {
    /// No usable response (connection refused or reset, timeout).
    Transport,
    /// An HTTP error status with the headers that matter for rate limits.
    Status {
        status: u16,
        limit: RateLimitHeaders,
    },
    /// Retrying cannot help (a malformed response, a bad request on our side).
    Fatal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RateLimitHeaders {
    pub retry_after: Option<u64>,
    pub remaining: Option<u64>,
    pub reset: Option<u64>,
    /// GitHub's message mentions a secondary rate limit.
    pub secondary_message: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    Retry(Duration),
    GiveUp,
    /// Rate limited for longer than we may wait; the wait the server asked for.
    RateLimited(Duration),
}

impl RetryPolicy {
    pub(super) fn decide(&self, attempt: &Attempt, retries_done: u32) -> Decision {
        let wait = match attempt {
            Attempt::Fatal => return Decision::GiveUp,
            Attempt::Transport => self.backoff(retries_done),
            // A 503 may say when to come back; never wait longer than allowed, though.
            Attempt::Status { status, limit } if *status >= 500 => match limit.retry_after {
                Some(secs) => Duration::from_secs(secs).min(self.max_wait),
                None => self.backoff(retries_done),
            },
            Attempt::Status { status, limit } if *status == 403 || *status == 429 => {
                match rate_limit_wait(*status, limit) {
                    Some(wait) if wait > self.max_wait => return Decision::RateLimited(wait),
                    Some(wait) => wait,
                    // A plain 403: missing permission, retrying won't help.
                    None => return Decision::GiveUp,
                }
            }
            Attempt::Status { .. } => return Decision::GiveUp,
        };
        if retries_done >= self.max_retries {
            return match attempt {
                Attempt::Status { status, .. } if *status == 403 || *status == 429 => {
                    Decision::RateLimited(wait)
                }
                _ => Decision::GiveUp,
            };
        }
        Decision::Retry(wait)
    }

    /// `base * 2^n`, capped, with a little jitter so parallel clients spread out.
    fn backoff(&self, retries_done: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retries_done.min(16)));
        let jitter_range = self.base_delay.as_millis() as u64 / 4 + 1;
        let jitter = Duration::from_millis(now_nanos() % jitter_range);
        exp.saturating_add(jitter).min(self.max_wait)
    }
}

fn rate_limit_wait(status: u16, limit: &RateLimitHeaders) -> Option<Duration> {
    if let Some(secs) = limit.retry_after {
        return Some(Duration::from_secs(secs));
    }
    if limit.remaining == Some(0) {
        if let Some(reset) = limit.reset {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            // One extra second: the reset time is rounded down to whole seconds.
            return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
        }
    }
    if status == 429 || limit.secondary_message {
        return Some(UNSPECIFIED_RATE_LIMIT_WAIT);
    }
    None
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(100),
        max_wait: Duration::from_secs(10),
    };

    fn status(status: u16, limit: RateLimitHeaders) -> Attempt {
        Attempt::Status { status, limit }
    }

    fn waits(decision: Decision) -> Duration {
        match decision {
            Decision::Retry(d) => d,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn server_errors_back_off_exponentially_then_give_up() {
        let first = waits(POLICY.decide(&status(502, Default::default()), 0));
        let third = waits(POLICY.decide(&status(503, Default::default()), 2));
        assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(200));
        assert!(third >= Duration::from_millis(400) && third < Duration::from_millis(500));
        assert_eq!(
            POLICY.decide(&status(500, Default::default()), 3),
            Decision::GiveUp
        );
        assert!(matches!(
            POLICY.decide(&Attempt::Transport, 1),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn server_errors_honour_retry_after_up_to_the_longest_wait() {
        let retry_after = |secs| RateLimitHeaders {
            retry_after: Some(secs),
            ..Default::default()
        };
        assert_eq!(
            POLICY.decide(&status(503, retry_after(3)), 0),
            Decision::Retry(Duration::from_secs(3)),
            "longer than the 100 ms backoff"
        );
        assert_eq!(
            POLICY.decide(&status(502, retry_after(0)), 2),
            Decision::Retry(Duration::ZERO),
            "shorter than the 400 ms backoff"
        );
        assert_eq!(
            POLICY.decide(&status(503, retry_after(3600)), 0),
            Decision::Retry(POLICY.max_wait),
            "capped, and still retried: a server error is no rate limit"
        );
        assert_eq!(
            POLICY.decide(&status(503, retry_after(1)), 3),
            Decision::GiveUp,
            "retries still run out"
        );
    }

    #[test]
    fn client_errors_are_final() {
        for code in [400, 401, 404, 409, 422] {
            assert_eq!(
                POLICY.decide(&status(code, Default::default()), 0),
                Decision::GiveUp
            );
        }
        assert_eq!(
            POLICY.decide(&status(403, Default::default()), 0),
            Decision::GiveUp
        );
        assert_eq!(POLICY.decide(&Attempt::Fatal, 0), Decision::GiveUp);
    }

    #[test]
    fn rate_limits_wait_as_told_unless_too_long() {
        let retry_after = |secs| RateLimitHeaders {
            retry_after: Some(secs),
            ..Default::default()
        };
        assert_eq!(
            POLICY.decide(&status(403, retry_after(2)), 0),
            Decision::Retry(Duration::from_secs(2))
        );
        assert_eq!(
            POLICY.decide(&status(429, retry_after(2)), 0),
            Decision::Retry(Duration::from_secs(2))
        );
        assert_eq!(
            POLICY.decide(&status(403, retry_after(3600)), 0),
            Decision::RateLimited(Duration::from_secs(3600))
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let primary = RateLimitHeaders {
            remaining: Some(0),
            reset: Some(now + 4),
            ..Default::default()
        };
        let wait = waits(POLICY.decide(&status(403, primary), 0));
        assert!(wait >= Duration::from_secs(4) && wait <= Duration::from_secs(5));
        let secondary = RateLimitHeaders {
            secondary_message: true,
            ..Default::default()
        };
        assert_eq!(
            POLICY.decide(&status(403, secondary), 0),
            Decision::RateLimited(UNSPECIFIED_RATE_LIMIT_WAIT)
        );
        assert_eq!(
            POLICY.decide(&status(403, retry_after(1)), 3),
            Decision::RateLimited(Duration::from_secs(1))
        );
    }
}
