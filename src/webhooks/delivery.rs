//! Sending one delivery: sign it with its endpoint's secret, post it to an address the guard
//! allows, record what came back. A 2xx is delivered; anything else is retried with the queue's
//! backoff (never before a `Retry-After`) until the attempts or the window run out.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::guard::{GuardedResolver, NetworkPolicy, Refusal};
use super::signing;
use super::store::{self, DELIVERED, FAILED, PENDING};
use crate::jobs::{Job, RetryPolicy, Step};
use entity::webhook_deliveries as deliveries;

/// An endpoint of the operator's, from the config: it gets every user's events.
#[derive(Debug, Clone)]
pub struct OperatorEndpoint {
    pub url: String,
    pub secret: SecretString,
}

impl OperatorEndpoint {
    /// Its row's id, stable across restarts: derived from the URL.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.url.as_bytes());
        format!("operator-{}", &hex::encode(digest)[..16])
    }
}

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub network: NetworkPolicy,
    /// One attempt's limit, connection and answer included.
    pub timeout: Duration,
    /// Attempts before a delivery fails; 0: only the window limits them.
    pub max_attempts: u32,
    /// No attempt starts later than this after the event.
    pub window: Duration,
    pub retry: RetryPolicy,
    pub operator_endpoints: Vec<OperatorEndpoint>,
}

pub struct Deliverer {
    db: DatabaseConnection,
    client: reqwest::Client,
    settings: DeliverySettings,
    /// The operator's secrets by endpoint id.
    operator_secrets: HashMap<String, SecretString>,
}

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    Rejected {
        status: u16,
        retry_after: Option<Duration>,
    },
    Failed(String),
}

impl Deliverer {
    pub fn new(db: DatabaseConnection, settings: DeliverySettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A redirect could lead anywhere, past the guard: a 3xx is a failed attempt.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf to addresses the guard never saw.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(Arc::new(
                settings.network.clone(),
            ))))
            .user_agent(concat!("agentgate-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let operator_secrets = settings
            .operator_endpoints
            .iter()
            .map(|e| (e.id(), e.secret.clone()))
            .collect();
        Ok(Self {
            db,
            client,
            settings,
            operator_secrets,
        })
    }

    pub fn policy(&self) -> RetryPolicy {
        self.settings.retry
    }

    /// One attempt of the delivery the job names.
    pub async fn deliver(&self, job: &Job) -> Step {
        let Some(id) = job.subject.as_deref() else {
            return Step::Fail("a webhook job without a delivery".into());
        };
        let delivery = match store::find_delivery(&self.db, id).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => return Step::Fail(format!("delivery {id} does not exist")),
            Err(e) => return retry(e.to_string(), None),
        };
        if delivery.status != PENDING {
            return Step::Done(None);
        }
        let key = match self.key_of(&delivery).await {
            Ok(Ok(key)) => key,
            Err(e) => return retry(format!("could not read the webhook: {e}"), None),
            Ok(Err(Gone(reason))) => {
                if let Err(e) = store::give_up(&self.db, &delivery, &reason).await {
                    return retry(e.to_string(), None);
                }
                return Step::Fail(reason);
            }
        };
        let (url, key) = key;
        let attempt = self.attempt(&delivery, &url, &key).await;
        let attempts = delivery.attempts.saturating_add(1) as u32;
        let (http_status, error, retry_after) = match attempt {
            Attempt::Delivered(status) => {
                if let Err(e) =
                    store::record_attempt(&self.db, &delivery, DELIVERED, Some(status), None).await
                {
                    tracing::warn!(delivery = %delivery.id, error = %e, "a webhook was delivered but could not be recorded");
                }
                tracing::info!(delivery = %delivery.id, event = %delivery.event_type, attempts, "webhook delivered");
                return Step::Done(None);
            }
            Attempt::Rejected {
                status,
                retry_after,
            } => (
                Some(status),
                format!("the endpoint answered {status}"),
                retry_after,
            ),
            Attempt::Failed(error) => (None, error, None),
        };
        let out_of_attempts =
            self.settings.max_attempts > 0 && attempts >= self.settings.max_attempts;
        let out_of_time = Utc::now()
            .signed_duration_since(delivery.created_at)
            .to_std()
            .is_ok_and(|age| age >= self.settings.window);
        let status = if out_of_attempts || out_of_time {
            FAILED
        } else {
            PENDING
        };
        if let Err(e) = store::record_attempt(
            &self.db,
            &delivery,
            status,
            http_status,
            Some(error.clone()),
        )
        .await
        {
            tracing::warn!(delivery = %delivery.id, error = %e, "could not record a webhook attempt");
        }
        match status {
            FAILED => Step::Fail(format!("gave up after {attempts} attempts: {error}")),
            _ => retry(error, retry_after),
        }
    }

    /// The endpoint's URL and signing key.
    async fn key_of(
        &self,
        delivery: &deliveries::Model,
    ) -> Result<Result<(String, Vec<u8>), Gone>, sea_orm::DbErr> {
        let Some(webhook) = store::find_webhook(&self.db, &delivery.webhook_id).await? else {
            return Ok(Err(Gone("the webhook was deleted".into())));
        };
        let secret = match webhook.owner_id {
            Some(_) => webhook.secret.clone(),
            None => match self.operator_secrets.get(&webhook.id) {
                Some(secret) => secret.expose_secret().to_string(),
                None => return Ok(Err(Gone("the endpoint is no longer configured".into()))),
            },
        };
        Ok(signing::decode_secret(&secret)
            .map(|key| (webhook.url, key))
            .map_err(Gone))
    }

    async fn attempt(&self, delivery: &deliveries::Model, url: &str, key: &[u8]) -> Attempt {
        let network = &self.settings.network;
        let target = match network.check_url(url) {
            Ok(target) => target,
            Err(refusal) => return Attempt::Failed(refused(&refusal)),
        };
        // Resolved here for a clear error; the client's resolver checks again as it connects.
        if let Err(refusal) = network.resolve(&target, self.settings.timeout).await {
            return Attempt::Failed(refused(&refusal));
        }
        let timestamp = Utc::now().timestamp();
        let signature = signing::sign(key, &delivery.id, timestamp, &delivery.payload);
        let sent = self
            .client
            .post(target.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                Attempt::Delivered(response.status().as_u16())
            }
            Ok(response) => Attempt::Rejected {
                status: response.status().as_u16(),
                retry_after: response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            },
            Err(e) => Attempt::Failed(error_chain(&e)),
        }
    }
}

/// Why a delivery will not be attempted again.
struct Gone(String);

fn refused(refusal: &Refusal) -> String {
    format!("refused ({}): {refusal}", refusal.code())
}

fn retry(error: String, retry_after: Option<Duration>) -> Step {
    Step::Retry { error, retry_after }
}

/// The error and its causes on one line (reqwest's own message names only the URL).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
