//! Credentials for GitHub: a personal access token, or a GitHub App that mints installation
//! tokens (docs: "Authenticating as a GitHub App installation").
//!
//! App flow: sign an RS256 JWT (`iat` 60 s in the past against clock drift, `exp` 9 minutes
//! ahead, under GitHub's 10-minute limit, `iss` = app id), find the installation for the owner
//! (`GET /orgs/{owner}/installation` or `/users/{owner}/installation`, unless configured), then
//! `POST /app/installations/{id}/access_tokens`. Tokens are cached until five minutes before
//! their `expires_at` so a request never starts with a token about to lapse.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use octocrab::models::apps::CreateInstallationAccessToken;
use octocrab::models::InstallationId;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::Mutex;

use super::api::{Api, ApiError};
use crate::git::GitError;

const REFRESH_MARGIN_MINUTES: i64 = 5;
/// GitHub's installation tokens last an hour; assumed when `expires_at` is missing.
const DEFAULT_TOKEN_MINUTES: i64 = 60;

/// How the gateway authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum GitHubAuth {
    /// A personal access token (classic or fine-grained), sent as a bearer token.
    Token(SecretString),
    /// A GitHub App; without `installation_id` the owner's installation is looked up.
    App {
        app_id: u64,
        private_key_pem: SecretString,
        installation_id: Option<u64>,
    },
}

pub(super) enum Credentials {
    Token(SecretString),
    App(Box<AppCredentials>),
}

pub(super) struct AppCredentials {
    app_id: u64,
    key: EncodingKey,
    owner: String,
    owner_is_org: bool,
    configured_installation: Option<u64>,
    /// Held while minting, so concurrent requests wait for one new token instead of each
    /// minting their own.
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    installation_id: Option<u64>,
    token: Option<(SecretString, DateTime<Utc>)>,
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

impl Credentials {
    pub(super) fn new(
        auth: &GitHubAuth,
        owner: &str,
        owner_is_org: bool,
    ) -> Result<Self, GitError> {
        match auth {
            GitHubAuth::Token(token) => Ok(Credentials::Token(token.clone())),
            GitHubAuth::App {
                app_id,
                private_key_pem,
                installation_id,
            } => {
                let key = EncodingKey::from_rsa_pem(private_key_pem.expose_secret().as_bytes())
                    .map_err(|_| {
                        GitError::Invalid("the GitHub App private key is not an RSA PEM key".into())
                    })?;
                Ok(Credentials::App(Box::new(AppCredentials {
                    app_id: *app_id,
                    key,
                    owner: owner.to_string(),
                    owner_is_org,
                    configured_installation: *installation_id,
                    cache: Mutex::new(Cache::default()),
                })))
            }
        }
    }

    /// Whether a rejected token can be replaced by a fresh one.
    pub(super) fn refreshable(&self) -> bool {
        matches!(self, Credentials::App(_))
    }

    pub(super) async fn token(&self, api: &Api) -> Result<SecretString, ApiError> {
        match self {
            Credentials::Token(token) => Ok(token.clone()),
            Credentials::App(app) => app.token(api).await,
        }
    }

    /// Drops `token` from the cache (unless another request already replaced it).
    pub(super) async fn forget(&self, token: &SecretString) {
        if let Credentials::App(app) = self {
            let mut cache = app.cache.lock().await;
            let same = cache
                .token
                .as_ref()
                .is_some_and(|(t, _)| t.expose_secret() == token.expose_secret());
            if same {
                cache.token = None;
            }
        }
    }
}

impl AppCredentials {
    async fn token(&self, api: &Api) -> Result<SecretString, ApiError> {
        let mut cache = self.cache.lock().await;
        if let Some((token, refresh_at)) = &cache.token {
            if Utc::now() < *refresh_at {
                return Ok(token.clone());
            }
        }
        let jwt = self.jwt()?;
        let installation = match self.configured_installation.or(cache.installation_id) {
            Some(id) => id,
            None => {
                let id = self.find_installation(api, &jwt).await?;
                cache.installation_id = Some(id);
                id
            }
        };
        let minted = api
            .call_as(&jwt, "create an installation token", &|crab| async move {
                let body = CreateInstallationAccessToken::default();
                crab.apps()
                    .create_installation_access_token(InstallationId(installation), &body)
                    .await
            })
            .await
            .map_err(|e| match e.status() {
                Some(401) => ApiError::Git(GitError::Auth(
                    "GitHub rejected the App's JWT (wrong app id or key?)".into(),
                )),
                Some(404) => ApiError::Git(GitError::Auth(format!(
                    "GitHub App installation {installation} does not exist"
                ))),
                _ => e,
            })?;
        let expires_at = minted
            .expires_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc::now() + Duration::minutes(DEFAULT_TOKEN_MINUTES));
        tracing::info!(installation, %expires_at, "minted a GitHub installation token");
        let token = SecretString::from(minted.token);
        let refresh_at = expires_at - Duration::minutes(REFRESH_MARGIN_MINUTES);
        cache.token = Some((token.clone(), refresh_at));
        Ok(token)
    }

    async fn find_installation(&self, api: &Api, jwt: &SecretString) -> Result<u64, ApiError> {
        let owner = self.owner.as_str();
        let is_org = self.owner_is_org;
        let found = api
            .call_as(
                jwt,
                "find the GitHub App installation",
                &|crab| async move {
                    if is_org {
                        crab.apps().get_org_installation(owner).await
                    } else {
                        crab.apps().get_user_installation(owner).await
                    }
                },
            )
            .await
            .map_err(|e| match e.status() {
                Some(401) => ApiError::Git(GitError::Auth(
                    "GitHub rejected the App's JWT (wrong app id or key?)".into(),
                )),
                Some(404) => ApiError::Git(GitError::Auth(format!(
                    "the GitHub App is not installed on {owner}"
                ))),
                _ => e,
            })?;
        Ok(found.id.0)
    }

    fn jwt(&self) -> Result<SecretString, GitError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iat: now - 60,
            exp: now + 9 * 60,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| GitError::Auth(format!("cannot sign the GitHub App JWT: {e}")))
    }
}
