//! Bearer-token authentication: HS256 with a shared secret (the embedded default) or JWKS from an
//! OIDC provider. Every failure is a 401 with a reason; nothing about the key is ever echoed.
mod dev_login;
mod jwks;
mod middleware;
mod path;

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{AuthConfig, AuthMode};
pub use dev_login::mint_dev_login_token;
pub use jwks::JwksCache;
pub use middleware::{require_auth, AuthUser, PUBLIC_PATH_PREFIXES};

/// The user of the token `serve` prints.
pub const LOCAL_DEV_USER: &str = "dev";
/// How long the token `serve` prints stays valid.
pub const PRINTED_DEV_TOKEN_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm {0:?} is not accepted")]
    AlgorithmRejected(Algorithm),
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token has no usable subject")]
    NoSubject,
    #[error("token signing key is unknown")]
    UnknownKey,
    #[error("token could not be verified: key set unavailable")]
    KeySetUnavailable,
}

enum Verifier {
    Hs256 {
        decoding: DecodingKey,
        encoding: EncodingKey,
    },
    Jwks(JwksCache),
}

pub struct Authenticator {
    verifier: Verifier,
    issuer: Option<String>,
    audience: Option<String>,
    privileged_claim: String,
    privileged_users: HashSet<String>,
    dev_token_ttl: Duration,
}

impl Authenticator {
    /// `hs256_secret` is the effective secret (configured, or generated under the data dir).
    pub fn new(config: &AuthConfig, hs256_secret: &SecretString, http: reqwest::Client) -> Self {
        let verifier = match config.mode {
            AuthMode::Hs256 => {
                let secret = hs256_secret.expose_secret().as_bytes();
                Verifier::Hs256 {
                    decoding: DecodingKey::from_secret(secret),
                    encoding: EncodingKey::from_secret(secret),
                }
            }
            AuthMode::Jwks => Verifier::Jwks(JwksCache::new(
                config.jwks_url.clone(),
                http,
                Duration::from_secs(config.jwks_refresh_min_secs),
            )),
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Self {
            verifier,
            issuer: non_empty(&config.issuer),
            audience: non_empty(&config.audience),
            privileged_claim: config.privileged_claim.clone(),
            privileged_users: config.privileged_users.iter().cloned().collect(),
            dev_token_ttl: Duration::from_secs(config.dev_token_ttl_secs),
        }
    }

    pub async fn authenticate(&self, token: &str) -> Result<AuthUser, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let (key, algorithm) = match &self.verifier {
            Verifier::Hs256 { decoding, .. } => {
                if header.alg != Algorithm::HS256 {
                    return Err(AuthError::AlgorithmRejected(header.alg));
                }
                (decoding.clone(), Algorithm::HS256)
            }
            Verifier::Jwks(cache) => {
                // A shared-secret algorithm would let anyone who knows the public key sign tokens.
                if matches!(
                    header.alg,
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                ) {
                    return Err(AuthError::AlgorithmRejected(header.alg));
                }
                cache.key_for(header.kid.as_deref(), header.alg).await?
            }
        };
        let mut validation = Validation::new(algorithm);
        // A configured issuer or audience must be present, not only right when present.
        let mut required = vec!["exp", "sub"];
        if self.issuer.is_some() {
            required.push("iss");
        }
        if self.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        validation.leeway = 30;
        match &self.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(map_jwt_error)?;
        let claims = data.claims;
        let id = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or(AuthError::NoSubject)?
            .to_string();
        let claim_says_privileged = match claims.get(&self.privileged_claim) {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        let privileged = claim_says_privileged || self.privileged_users.contains(&id);
        Ok(AuthUser { id, privileged })
    }

    /// Whether the `privileged_users` allow-list names `user`.
    pub fn is_privileged_user(&self, user: &str) -> bool {
        self.privileged_users.contains(user)
    }

    /// Mints a token for local development. Only possible with the shared-secret verifier.
    pub fn mint_dev_token(&self, user: &str, privileged: bool) -> Option<String> {
        self.mint_dev_token_for(user, privileged, self.dev_token_ttl)
    }

    /// The unprivileged token `serve` prints for the local dev user: it ends up in terminals
    /// and logs, so it lives at most [`PRINTED_DEV_TOKEN_TTL`].
    pub fn mint_printed_dev_token(&self) -> Option<String> {
        let ttl = self.dev_token_ttl.min(PRINTED_DEV_TOKEN_TTL);
        self.mint_dev_token_for(LOCAL_DEV_USER, false, ttl)
    }

    fn mint_dev_token_for(&self, user: &str, privileged: bool, ttl: Duration) -> Option<String> {
        let Verifier::Hs256 { encoding, .. } = &self.verifier else {
            return None;
        };
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        // Whatever `authenticate` checks, a dev token carries: issuer, audience, and the
        // configured privilege claim.
        let mut claims = serde_json::json!({
            "sub": user,
            "iat": now,
            "exp": now + ttl.as_secs(),
        });
        if let Some(issuer) = &self.issuer {
            claims["iss"] = issuer.as_str().into();
        }
        if let Some(audience) = &self.audience {
            claims["aud"] = audience.as_str().into();
        }
        if privileged {
            claims[self.privileged_claim.as_str()] = true.into();
        }
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, encoding).ok()
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm => AuthError::AlgorithmRejected(Algorithm::HS256),
        ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => AuthError::NoSubject,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
        _ => AuthError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[tokio::test]
    async fn dev_tokens_carry_what_authenticate_checks() {
        let config = Config::from_toml_overrides(
            "[auth]\nissuer = \"https://issuer.test\"\naudience = \"agentgate\"\nprivileged_claim = \"is_admin\"\n",
        )
        .expect("config");
        let secret = SecretString::from("a-dev-secret-of-enough-length-0123456789");
        let auth = Authenticator::new(&config.auth, &secret, reqwest::Client::new());
        for privileged in [false, true] {
            let token = auth.mint_dev_token("alice", privileged).expect("token");
            let user = auth.authenticate(&token).await.expect("accepted");
            assert_eq!(user.id, "alice");
            assert_eq!(user.privileged, privileged);
        }
    }
}
