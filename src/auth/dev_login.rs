//! Who may use the dev sign-in: only a browser on this machine, talking to the gateway
//! directly. A reverse proxy on the same host is a loopback peer too, so a request that names
//! a forwarded client is refused as well: the proxy would open the sign-in to the world.
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName};

use super::Authenticator;
use crate::error::ApiError;

pub const DEV_LOGIN_PATH: &str = "/auth/dev-login";

/// Headers a proxy adds to say whom it forwards for.
const FORWARDING_HEADERS: [HeaderName; 3] = [
    axum::http::header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-real-ip"),
];

/// Why a dev sign-in request must be refused, if it must. A request without a known peer
/// address counts as remote.
pub fn refuse_unless_local(
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let loopback = peer.is_some_and(|ConnectInfo(addr)| is_loopback(addr.ip()));
    if !loopback {
        return Err(ApiError::ForbiddenCode {
            code: "dev_login_not_local",
            message: "the dev sign-in answers only requests from this machine".into(),
        });
    }
    if let Some(name) = FORWARDING_HEADERS
        .iter()
        .find(|name| headers.contains_key(*name))
    {
        return Err(ApiError::ForbiddenCode {
            code: "dev_login_forwarded",
            message: format!("the dev sign-in does not answer forwarded requests ({name})"),
        });
    }
    Ok(())
}

/// A token for the dev sign-in. Never privileged: not by claim, and never for a user the
/// `auth.privileged_users` allow-list would make privileged.
pub fn mint_dev_login_token(auth: &Authenticator, user: &str) -> Result<String, ApiError> {
    if auth.is_privileged_user(user) {
        return Err(ApiError::ForbiddenCode {
            code: "dev_login_privileged",
            message: "the dev sign-in does not sign in privileged users".into(),
        });
    }
    auth.mint_dev_token(user, false)
        .ok_or_else(|| ApiError::not_found("route"))
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str) -> ConnectInfo<SocketAddr> {
        ConnectInfo(addr.parse().expect("socket address"))
    }

    fn code(result: Result<(), ApiError>) -> &'static str {
        result.err().map(|e| e.code()).unwrap_or("ok")
    }

    #[test]
    fn only_direct_loopback_peers_pass() {
        let none = HeaderMap::new();
        assert_eq!(
            code(refuse_unless_local(Some(&peer("127.0.0.1:5000")), &none)),
            "ok"
        );
        assert_eq!(
            code(refuse_unless_local(Some(&peer("[::1]:5000")), &none)),
            "ok"
        );
        assert_eq!(
            code(refuse_unless_local(
                Some(&peer("[::ffff:127.0.0.1]:5000")),
                &none
            )),
            "ok"
        );
        assert_eq!(
            code(refuse_unless_local(Some(&peer("192.0.2.7:5000")), &none)),
            "dev_login_not_local"
        );
        assert_eq!(
            code(refuse_unless_local(None, &none)),
            "dev_login_not_local"
        );
        for name in ["forwarded", "x-forwarded-for", "x-real-ip"] {
            let mut headers = HeaderMap::new();
            headers.insert(name, "203.0.113.9".parse().expect("value"));
            assert_eq!(
                code(refuse_unless_local(Some(&peer("127.0.0.1:5000")), &headers)),
                "dev_login_forwarded",
                "{name}"
            );
        }
    }
}
