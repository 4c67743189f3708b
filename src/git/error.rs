//! What can go wrong talking to a git host. Messages never contain credentials.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("a repository with this name already exists")]
    AlreadyExists,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the branch moved to {head} and its new changes touch the same paths")]
    Conflict { head: String },
    #[error("the branch already has history, so a first commit (without parent) is not possible")]
    HistoryExists,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("git host unavailable: {0}")]
    Unavailable(String),
    #[error("git host refused access: {0}")]
    Auth(String),
    /// The host asked us to wait this many seconds (longer than a request may wait inline).
    #[error("rate limited by the git host; retry in {0} s")]
    RateLimited(u64),
}

impl GitError {
    /// A stable machine-readable code for API responses and logs.
    pub fn code(&self) -> &'static str {
        match self {
            GitError::AlreadyExists => "already_exists",
            GitError::NotFound(_) => "not_found",
            GitError::Conflict { .. } => "conflict",
            GitError::HistoryExists => "history_exists",
            GitError::Invalid(_) => "invalid",
            GitError::Unavailable(_) => "unavailable",
            GitError::Auth(_) => "auth",
            GitError::RateLimited(_) => "rate_limited",
        }
    }

    /// How long the host asked us to wait before trying again, if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            GitError::RateLimited(secs) => Some(std::time::Duration::from_secs(*secs)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let all = [
            GitError::AlreadyExists,
            GitError::NotFound("x".into()),
            GitError::Conflict { head: "abc".into() },
            GitError::HistoryExists,
            GitError::Invalid("x".into()),
            GitError::Unavailable("x".into()),
            GitError::Auth("x".into()),
            GitError::RateLimited(60),
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(GitError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert_eq!(
            GitError::RateLimited(60).retry_after(),
            Some(std::time::Duration::from_secs(60))
        );
        assert!(GitError::Conflict { head: "abc".into() }
            .to_string()
            .contains("abc"));
    }
}
