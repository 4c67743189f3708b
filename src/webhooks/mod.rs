//! Outbound webhooks, as the Standard Webhooks specification describes them. A user registers
//! endpoints for their apps' events; the operator's endpoints (config `[webhooks]`) get every
//! user's. An event becomes one delivery per endpoint, each a `deliver_webhook` job, enqueued
//! with its cause ([`enqueue_event`]), so a delivery exists exactly when its cause does, and
//! sending never holds up the cause: the job's worker signs and posts it ([`Deliverer`]),
//! retrying with backoff for about a day.
mod delivery;
pub mod guard;
pub mod signing;
mod store;

use chrono::{SecondsFormat, Utc};
use sea_orm::{ConnectionTrait, TransactionSession, TransactionTrait};
use serde_json::{json, Value};

pub use delivery::{Deliverer, DeliverySettings, OperatorEndpoint};
pub use guard::{NetworkPolicy, Refusal};
pub use store::{
    create, delete_owned, deliveries_of, find_owned, list_owned, sync_operator_endpoints,
    NewWebhook,
};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A run ended; `data.outcome` says how.
    RunFinished,
    VersionCreated,
    /// A deployment's status changed.
    DeploymentUpdated,
    AppDeleted,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::RunFinished,
        EventType::VersionCreated,
        EventType::DeploymentUpdated,
        EventType::AppDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RunFinished => "run.finished",
            EventType::VersionCreated => "version.created",
            EventType::DeploymentUpdated => "deployment.updated",
            EventType::AppDeleted => "app.deleted",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// One event about one app: `data` is the payload's `data` object.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventType,
    pub app_id: String,
    pub data: Value,
}

impl Event {
    pub fn new(kind: EventType, app_id: &str, data: Value) -> Self {
        Self {
            kind,
            app_id: app_id.to_string(),
            data,
        }
    }

    /// The body every attempt sends: `{"type", "timestamp", "data"}`.
    fn payload(&self) -> String {
        json!({
            "type": self.kind.as_str(),
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": self.data,
        })
        .to_string()
    }
}

/// Queues the event's deliveries to `owner_id`'s endpoints and the operator's, inside `db`'s
/// transaction when it is one (under a savepoint). Never fails its caller: an event that could
/// not be queued is logged and dropped, and the cause commits as it would have without it.
/// Returns how many deliveries were queued; wake the workers (`jobs::wake`) once `db` commits.
pub async fn enqueue_event<C>(db: &C, owner_id: &str, event: Event) -> usize
where
    C: ConnectionTrait + TransactionTrait,
{
    // The endpoints are read before the savepoint: most owners have none, and a savepoint
    // opened and rolled back for nothing was two more round trips in every run's last
    // transaction. The savepoint is there for the writes; a read fails only with the
    // connection (or a timeout), which the caller's own commit would fail on too.
    let endpoints = match store::endpoints_wanting(db, owner_id, event.kind).await {
        Ok(endpoints) if endpoints.is_empty() => return 0,
        Ok(endpoints) => endpoints,
        Err(e) => {
            tracing::warn!(error = %e, event = event.kind.as_str(), "could not queue a webhook event");
            return 0;
        }
    };
    let savepoint = match db.begin().await {
        Ok(savepoint) => savepoint,
        Err(e) => {
            tracing::warn!(error = %e, event = event.kind.as_str(), "could not queue a webhook event");
            return 0;
        }
    };
    let payload = event.payload();
    match store::enqueue_deliveries(&savepoint, owner_id, &event, &payload, &endpoints).await {
        Ok(queued) => match savepoint.commit().await {
            Ok(()) => queued,
            Err(e) => {
                tracing::warn!(error = %e, event = event.kind.as_str(), "could not queue a webhook event");
                0
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, event = event.kind.as_str(), app_id = %event.app_id, "could not queue a webhook event; it is dropped");
            let _ = savepoint.rollback().await;
            0
        }
    }
}
