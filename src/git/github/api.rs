//! Runs one GitHub request through octocrab: picks the credentials, retries what is worth
//! retrying (see `retry.rs`), and turns failures into errors that never carry a token.

use std::future::Future;

use octocrab::Octocrab;
use secrecy::{ExposeSecret, SecretString};

use super::auth::Credentials;
use super::pacing::{Pace, RateBudget};
use super::retry::{Attempt, Decision, RateLimitHeaders, RetryPolicy};
use crate::git::GitError;

pub(super) struct Api {
    base: Octocrab,
    creds: Credentials,
    pub(super) policy: RetryPolicy,
    /// Until when GitHub told us to stop calling (a rate limit longer than a request may
    /// wait): every call of this credential fails fast until then, so nothing calls GitHub
    /// again before its reset (GitHub bans integrations that keep calling).
    held_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// Secondary rate limits in a row that named no wait: each doubles the hold (GitHub asks
    /// for exponential backoff there); a successful call resets it.
    unnamed_limits: std::sync::atomic::AtomicU32,
    /// The rate-limit budget the latest reply reported (filled in by the HTTP client).
    budget: std::sync::Arc<RateBudget>,
}

/// A failed request: either GitHub's final answer, for the caller to interpret, or an error
/// that is already final.
#[derive(Debug)]
pub(super) enum ApiError {
    Status { status: u16, message: String },
    Git(GitError),
}

impl From<GitError> for ApiError {
    fn from(e: GitError) -> Self {
        ApiError::Git(e)
    }
}

impl ApiError {
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Git(_) => None,
        }
    }

    pub(super) fn mentions(&self, text: &str) -> bool {
        match self {
            ApiError::Status { message, .. } => message.to_lowercase().contains(text),
            ApiError::Git(_) => false,
        }
    }

    /// The default meaning of a status; `what` names the operation, e.g. "read branch main".
    pub(super) fn into_git(self, what: &str) -> GitError {
        let (status, message) = match self {
            ApiError::Git(e) => return e,
            ApiError::Status { status, message } => (status, message),
        };
        match status {
            401 => GitError::Auth(format!("GitHub rejected the credentials ({what})")),
            403 if message.to_lowercase().contains("archived") => {
                GitError::Invalid(format!("{what}: the repository is archived and read-only"))
            }
            403 => GitError::Auth(format!("{what}: forbidden ({message})")),
            404 => GitError::NotFound(format!("{what} ({message})")),
            400 | 409 | 422 => GitError::Invalid(format!("{what}: {message}")),
            s if s >= 500 => GitError::Unavailable(format!(
                "{what}: GitHub kept answering HTTP {s} ({message})"
            )),
            s => GitError::Unavailable(format!("{what}: HTTP {s} ({message})")),
        }
    }
}

impl Api {
    pub(super) fn new(
        base: Octocrab,
        creds: Credentials,
        policy: RetryPolicy,
        budget: std::sync::Arc<RateBudget>,
    ) -> Self {
        Self {
            base,
            creds,
            policy,
            held_until: std::sync::Mutex::new(None),
            unnamed_limits: std::sync::atomic::AtomicU32::new(0),
            budget,
        }
    }

    /// Spaces calls out while GitHub's budget runs low; once it is used up, waits for a reset
    /// that is close or holds every call until a later one.
    async fn keep_within_budget(&self, what: &str) -> Result<(), ApiError> {
        match self.budget.pace() {
            Pace::Go => Ok(()),
            Pace::Wait(wait) => {
                let wait = wait.min(self.policy.max_wait);
                tracing::info!(
                    request = what,
                    wait_ms = wait.as_millis() as u64,
                    "GitHub's rate-limit budget is running low; spacing calls out"
                );
                tokio::time::sleep(wait).await;
                Ok(())
            }
            // A reset close enough is waited for, like a short rate limit.
            Pace::Exhausted(left) if left <= self.policy.max_wait => {
                tracing::info!(
                    request = what,
                    wait_ms = left.as_millis() as u64,
                    "GitHub's rate-limit budget is used up; waiting for its reset"
                );
                tokio::time::sleep(left).await;
                Ok(())
            }
            Pace::Exhausted(left) => {
                tracing::warn!(
                    request = what,
                    wait_s = left.as_secs(),
                    "GitHub's rate-limit budget is used up; holding every call until its reset"
                );
                self.hold(left);
                Err(GitError::RateLimited(left.as_secs().max(1)).into())
            }
        }
    }

    /// The rest of a rate-limit hold, if one is on.
    fn held_for(&self) -> Option<std::time::Duration> {
        let held = self.held_until.lock().ok()?;
        held.and_then(|until| until.checked_duration_since(std::time::Instant::now()))
    }

    /// The hold for a rate limit: as GitHub asked, doubled for each secondary limit in a row
    /// that named no wait (at most an hour).
    fn limit_wait(&self, asked: std::time::Duration, attempt: &Attempt) -> std::time::Duration {
        let unnamed = matches!(attempt, Attempt::Status { limit, .. }
            if limit.retry_after.is_none() && limit.remaining != Some(0));
        if !unnamed {
            return asked;
        }
        let strikes = self
            .unnamed_limits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .min(6);
        asked
            .saturating_mul(1 << strikes)
            .min(std::time::Duration::from_secs(3600))
    }

    fn hold(&self, wait: std::time::Duration) {
        if let Ok(mut held) = self.held_until.lock() {
            let until = std::time::Instant::now() + wait;
            *held = Some(held.map_or(until, |h| h.max(until)));
        }
    }

    /// Runs `request` with the host's credentials. An installation token that GitHub rejects
    /// (revoked, or expired earlier than announced) is replaced once.
    pub(super) async fn call<T, F, Fut>(&self, what: &str, request: F) -> Result<T, ApiError>
    where
        F: Fn(Octocrab) -> Fut + Sync,
        Fut: Future<Output = octocrab::Result<T>> + Send,
        T: Send,
    {
        if let Some(left) = self.held_for() {
            return Err(GitError::RateLimited(left.as_secs().max(1)).into());
        }
        let mut refreshed = false;
        loop {
            let token = self.creds.token(self).await?;
            match self.call_as(&token, what, &request).await {
                Err(ApiError::Status { status: 401, .. })
                    if !refreshed && self.creds.refreshable() =>
                {
                    self.creds.forget(&token).await;
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    /// Runs `request` as `token`, retrying per the policy.
    pub(super) async fn call_as<T, F, Fut>(
        &self,
        token: &SecretString,
        what: &str,
        request: &F,
    ) -> Result<T, ApiError>
    where
        F: Fn(Octocrab) -> Fut + Sync,
        Fut: Future<Output = octocrab::Result<T>> + Send,
        T: Send,
    {
        let crab = self
            .base
            .user_access_token(token.clone())
            .map_err(|_| GitError::Invalid("the GitHub token cannot be sent".into()))?;
        let mut retries = 0;
        loop {
            self.keep_within_budget(what).await?;
            let error = match request(crab.clone()).await {
                Ok(value) => {
                    self.unnamed_limits
                        .store(0, std::sync::atomic::Ordering::Relaxed);
                    return Ok(value);
                }
                Err(e) => e,
            };
            let (attempt, failure) = classify(error, what, token);
            match self.policy.decide(&attempt, retries) {
                Decision::Retry(wait) => {
                    tracing::warn!(
                        request = what,
                        retry = retries + 1,
                        wait_ms = wait.as_millis() as u64,
                        status = failure.status(),
                        "GitHub request failed, retrying"
                    );
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
                Decision::GiveUp => return Err(failure),
                Decision::RateLimited(wait) => {
                    let wait = self.limit_wait(wait, &attempt);
                    tracing::warn!(
                        what,
                        wait_s = wait.as_secs(),
                        "rate limited by GitHub; holding every call until then"
                    );
                    self.hold(wait);
                    return Err(GitError::RateLimited(wait.as_secs().max(1)).into());
                }
            }
        }
    }
}

fn classify(error: octocrab::Error, what: &str, token: &SecretString) -> (Attempt, ApiError) {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let mut message = source.message.clone();
            // Validation details (e.g. "name already exists on this account") live here.
            for detail in source.errors.iter().flatten() {
                if let Some(text) = detail.get("message").and_then(|m| m.as_str()) {
                    message = format!("{message}: {text}");
                }
            }
            let message = scrub(&message, token);
            let header = |name: &str| {
                source
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let limit = RateLimitHeaders {
                retry_after: header("retry-after"),
                remaining: header("x-ratelimit-remaining"),
                reset: header("x-ratelimit-reset"),
                secondary_message: message.to_lowercase().contains("secondary rate limit"),
            };
            (
                Attempt::Status { status, limit },
                ApiError::Status { status, message },
            )
        }
        e @ (octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. }) => (
            Attempt::Transport,
            GitError::Unavailable(format!(
                "{what}: cannot reach GitHub ({})",
                scrub(&e.to_string(), token)
            ))
            .into(),
        ),
        e => (
            Attempt::Fatal,
            GitError::Unavailable(format!(
                "{what}: unexpected response from GitHub ({})",
                scrub(&e.to_string(), token)
            ))
            .into(),
        ),
    }
}

/// GitHub never echoes credentials, but a proxy or a future error format might.
fn scrub(text: &str, token: &SecretString) -> String {
    let secret = token.expose_secret();
    if secret.len() >= 8 {
        text.replace(secret, "[redacted]")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn secondary_limits_without_a_wait_back_off_exponentially() {
        let crab = Octocrab::builder().build().expect("client");
        let auth = super::super::GitHubAuth::Token(SecretString::from("t".to_string()));
        let creds = Credentials::new(&auth, "alice", false).expect("credentials");
        let policy = RetryPolicy {
            max_retries: 0,
            base_delay: Duration::from_millis(1),
            max_wait: Duration::from_secs(1),
        };
        let api = Api::new(crab, creds, policy, Default::default());
        let limited = |retry_after: Option<u64>| Attempt::Status {
            status: 403,
            limit: RateLimitHeaders {
                retry_after,
                secondary_message: true,
                ..Default::default()
            },
        };
        let minute = Duration::from_secs(60);
        let waits: Vec<u64> = (0..4)
            .map(|_| api.limit_wait(minute, &limited(None)).as_secs())
            .collect();
        assert_eq!(waits, [60, 120, 240, 480]);
        // A wait GitHub named is taken as it is.
        assert_eq!(api.limit_wait(minute, &limited(Some(60))), minute);
        // A success resets the count.
        api.unnamed_limits
            .store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(api.limit_wait(minute, &limited(None)), minute);
        // A hold makes every call of the credential fail fast until it ends.
        api.hold(minute);
        let held = api.held_for().expect("held");
        assert!(held > Duration::from_secs(58) && held <= minute, "{held:?}");
    }

    #[test]
    fn statuses_map_to_clear_errors() {
        let status = |status: u16, message: &str| ApiError::Status {
            status,
            message: message.into(),
        };
        assert_eq!(status(401, "Bad credentials").into_git("x").code(), "auth");
        assert_eq!(status(403, "Forbidden").into_git("x").code(), "auth");
        assert_eq!(
            status(403, "Repository was archived so is read-only.")
                .into_git("x")
                .code(),
            "invalid"
        );
        assert_eq!(status(404, "Not Found").into_git("x").code(), "not_found");
        assert_eq!(status(422, "Invalid").into_git("x").code(), "invalid");
        assert_eq!(
            status(502, "Bad Gateway").into_git("x").code(),
            "unavailable"
        );
    }

    #[test]
    fn scrub_removes_the_token() {
        let token = SecretString::from("ghs_supersecretvalue");
        assert_eq!(
            scrub("bad token ghs_supersecretvalue here", &token),
            "bad token [redacted] here"
        );
    }
}
