//! Optional bearer-token check with the upstream agent's status codes.

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// 401: no header, a non-`Bearer` scheme (case-sensitive) or no token.
    Missing,
    /// 403: right scheme, wrong token.
    Invalid,
}

impl AuthError {
    pub fn status(self) -> u16 {
        match self {
            AuthError::Missing => 401,
            AuthError::Invalid => 403,
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            AuthError::Missing => "Unauthorized - missing authentication token",
            AuthError::Invalid => "Unauthorized - invalid authentication token",
        }
    }
}

/// Checks an `Authorization` header value; an unset/empty token disables auth.
pub fn check(expected: Option<&str>, header: Option<&[u8]>) -> Result<(), AuthError> {
    let Some(expected) = expected.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let value = header.ok_or(AuthError::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Missing)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if scheme != "Bearer" || token.is_empty() {
        return Err(AuthError::Missing);
    }
    if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Invalid)
    }
}

/// Compares without an early exit so timing does not leak a token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        let y = b.get(i % b.len().max(1)).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_when_unset_or_empty() {
        assert_eq!(check(None, None), Ok(()));
        assert_eq!(check(Some(""), Some(b"Basic x")), Ok(()));
    }

    #[test]
    fn statuses() {
        let t = Some("s3cret");
        assert_eq!(check(t, Some(b"Bearer s3cret")), Ok(()));
        assert_eq!(check(t, None), Err(AuthError::Missing));
        assert_eq!(check(t, Some(b"Basic s3cret")), Err(AuthError::Missing));
        assert_eq!(check(t, Some(b"bearer s3cret")), Err(AuthError::Missing));
        assert_eq!(check(t, Some(b"Bearer")), Err(AuthError::Missing));
        assert_eq!(check(t, Some(b"Bearer wrong")), Err(AuthError::Invalid));
        assert_eq!(check(t, Some(b"Bearer s3cret2")), Err(AuthError::Invalid));
        assert_eq!(check(t, Some(b"Bearer s3cre")), Err(AuthError::Invalid));
        assert_eq!(AuthError::Missing.status(), 401);
        assert_eq!(AuthError::Invalid.status(), 403);
    }
}
