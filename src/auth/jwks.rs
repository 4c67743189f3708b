//! A cached JWKS key set. An unknown key id triggers a refresh, at most once per interval, so a
//! flood of forged `kid`s cannot turn into a flood of requests to the identity provider.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::AuthError;

#[derive(Clone)]
struct CachedKey {
    key: DecodingKey,
    algorithm: Option<Algorithm>,
}

pub struct JwksCache {
    url: String,
    http: reqwest::Client,
    min_refresh_interval: Duration,
    keys: RwLock<HashMap<String, CachedKey>>,
    last_refresh: Mutex<Option<Instant>>,
}

impl JwksCache {
    pub fn new(url: String, http: reqwest::Client, min_refresh_interval: Duration) -> Self {
        Self {
            url,
            http,
            min_refresh_interval,
            keys: RwLock::new(HashMap::new()),
            last_refresh: Mutex::new(None),
        }
    }

    pub async fn key_for(
        &self,
        kid: Option<&str>,
        header_alg: Algorithm,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let Some(found) = self.lookup(kid).await {
            return check_alg(found, header_alg);
        }
        self.refresh_if_allowed().await?;
        match self.lookup(kid).await {
            Some(found) => check_alg(found, header_alg),
            None => Err(AuthError::UnknownKey),
        }
    }

    async fn lookup(&self, kid: Option<&str>) -> Option<CachedKey> {
        let keys = self.keys.read().await;
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            // Without a kid, a single-key set is unambiguous; anything else is refused.
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    async fn refresh_if_allowed(&self) -> Result<(), AuthError> {
        let mut last = self.last_refresh.lock().await;
        if let Some(at) = *last {
            if at.elapsed() < self.min_refresh_interval {
                return Ok(());
            }
        }
        *last = Some(Instant::now());
        let set = self.fetch().await.map_err(|e| {
            tracing::warn!(error = %e, "JWKS refresh failed");
            AuthError::KeySetUnavailable
        })?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let algorithm = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            keys.insert(kid, CachedKey { key, algorithm });
        }
        *self.keys.write().await = keys;
        Ok(())
    }

    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        let response = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json::<JwkSet>().await?)
    }
}

fn check_alg(
    found: CachedKey,
    header_alg: Algorithm,
) -> Result<(DecodingKey, Algorithm), AuthError> {
    match found.algorithm {
        Some(alg) if alg != header_alg => Err(AuthError::AlgorithmRejected(header_alg)),
        _ => Ok((found.key, header_alg)),
    }
}
