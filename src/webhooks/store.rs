//! The webhook tables: endpoints, and one delivery row per event and endpoint.
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionSession, TransactionTrait,
};
use uuid::Uuid;

use super::delivery::OperatorEndpoint;
use super::{signing, Event, EventType};
use crate::jobs::{self, JobKind, JobStatus, NewJob};
use entity::{jobs as jobs_table, webhook_deliveries as deliveries, webhooks};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";
pub const CANCELLED: &str = "cancelled";

/// A user's endpoint to register (its URL already checked).
pub struct NewWebhook<'a> {
    pub owner_id: &'a str,
    pub url: &'a str,
    /// None: every event type.
    pub event_types: Option<Vec<EventType>>,
}

/// Registers the endpoint with a new secret; the returned row is the only place it is shown.
pub async fn create(
    db: &impl ConnectionTrait,
    new: NewWebhook<'_>,
) -> Result<webhooks::Model, DbErr> {
    let types = new.event_types.map(|types| {
        serde_json::json!(types.iter().map(|t| t.as_str()).collect::<Vec<_>>()).to_string()
    });
    webhooks::ActiveModel {
        id: Set(Uuid::new_v4().to_string()),
        owner_id: Set(Some(new.owner_id.to_string())),
        url: Set(new.url.to_string()),
        secret: Set(signing::new_secret()),
        event_types: Set(types),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
}

pub async fn list_owned(
    db: &impl ConnectionTrait,
    owner: &str,
) -> Result<Vec<webhooks::Model>, DbErr> {
    webhooks::Entity::find()
        .filter(webhooks::Column::OwnerId.eq(owner))
        .order_by_asc(webhooks::Column::CreatedAt)
        .all(db)
        .await
}

/// The caller's endpoint, or None (another user's is None too).
pub async fn find_owned(
    db: &impl ConnectionTrait,
    owner: &str,
    id: &str,
) -> Result<Option<webhooks::Model>, DbErr> {
    webhooks::Entity::find_by_id(id.to_string())
        .filter(webhooks::Column::OwnerId.eq(owner))
        .one(db)
        .await
}

/// Deletes the caller's endpoint; its queued deliveries are cancelled. False when it is not
/// theirs (or not there).
pub async fn delete_owned<C>(db: &C, owner: &str, id: &str) -> Result<bool, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    let deleted = webhooks::Entity::delete_many()
        .filter(webhooks::Column::Id.eq(id))
        .filter(webhooks::Column::OwnerId.eq(owner))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        txn.rollback().await?;
        return Ok(false);
    }
    let now = Utc::now();
    let pending = Query::select()
        .column(deliveries::Column::Id)
        .from(deliveries::Entity)
        .and_where(deliveries::Column::WebhookId.eq(id))
        .and_where(deliveries::Column::Status.eq(PENDING))
        .to_owned();
    jobs_table::Entity::update_many()
        .col_expr(
            jobs_table::Column::Status,
            Expr::value(JobStatus::Cancelled),
        )
        .col_expr(
            jobs_table::Column::LastError,
            Expr::value("the webhook was deleted"),
        )
        .col_expr(jobs_table::Column::FinishedAt, Expr::value(now))
        .col_expr(jobs_table::Column::UpdatedAt, Expr::value(now))
        .filter(jobs_table::Column::Kind.eq(JobKind::DeliverWebhook))
        .filter(jobs_table::Column::Status.eq(JobStatus::Queued))
        .filter(jobs_table::Column::Subject.in_subquery(pending))
        .exec(&txn)
        .await?;
    deliveries::Entity::update_many()
        .col_expr(deliveries::Column::Status, Expr::value(CANCELLED))
        .col_expr(
            deliveries::Column::LastError,
            Expr::value("the webhook was deleted"),
        )
        .col_expr(deliveries::Column::UpdatedAt, Expr::value(now))
        .filter(deliveries::Column::WebhookId.eq(id))
        .filter(deliveries::Column::Status.eq(PENDING))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(true)
}

/// The endpoint's latest deliveries, newest first.
pub async fn deliveries_of(
    db: &impl ConnectionTrait,
    webhook_id: &str,
    limit: u64,
) -> Result<Vec<deliveries::Model>, DbErr> {
    deliveries::Entity::find()
        .filter(deliveries::Column::WebhookId.eq(webhook_id))
        .order_by_desc(deliveries::Column::CreatedAt)
        .order_by_desc(deliveries::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub async fn find_delivery(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<deliveries::Model>, DbErr> {
    deliveries::Entity::find_by_id(id.to_string()).one(db).await
}

pub async fn find_webhook(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<webhooks::Model>, DbErr> {
    webhooks::Entity::find_by_id(id.to_string()).one(db).await
}

/// The endpoints of `owner_id` (and of the operator) that want events of `kind`.
pub(super) async fn endpoints_wanting(
    db: &impl ConnectionTrait,
    owner_id: &str,
    kind: EventType,
) -> Result<Vec<webhooks::Model>, DbErr> {
    let mut endpoints = webhooks::Entity::find()
        .filter(
            webhooks::Column::OwnerId
                .eq(owner_id)
                .or(webhooks::Column::OwnerId.is_null()),
        )
        .all(db)
        .await?;
    endpoints.retain(|e| wants(e, kind));
    Ok(endpoints)
}

/// One delivery and its job per endpoint (see [`endpoints_wanting`]).
pub(super) async fn enqueue_deliveries(
    db: &impl ConnectionTrait,
    owner_id: &str,
    event: &Event,
    payload: &str,
    endpoints: &[webhooks::Model],
) -> Result<usize, DbErr> {
    let now = Utc::now();
    let mut queued = 0;
    for endpoint in endpoints {
        let delivery = deliveries::ActiveModel {
            // Standard Webhooks message ids: the receiver's key for deduplicating retries.
            id: Set(format!("msg_{}", Uuid::new_v4().simple())),
            webhook_id: Set(endpoint.id.clone()),
            owner_id: Set(Some(owner_id.to_string())),
            app_id: Set(event.app_id.clone()),
            event_type: Set(event.kind.as_str().to_string()),
            payload: Set(payload.to_string()),
            status: Set(PENDING.to_string()),
            attempts: Set(0),
            last_status: Set(None),
            last_error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            delivered_at: Set(None),
        }
        .insert(db)
        .await?;
        // Retries end by the deliverer's own limits (attempts, window), not the queue's.
        let job = NewJob::new(JobKind::DeliverWebhook, &event.app_id).subject(&delivery.id);
        jobs::enqueue(db, job).await?;
        queued += 1;
    }
    Ok(queued)
}

fn wants(endpoint: &webhooks::Model, kind: EventType) -> bool {
    let Some(types) = &endpoint.event_types else {
        return true;
    };
    serde_json::from_str::<Vec<String>>(types)
        .map(|types| types.iter().any(|t| t == kind.as_str()))
        .unwrap_or(true)
}

/// Makes the operator's endpoints rows (without their secrets, which stay in the config): new
/// ones are added, removed ones deleted. Run at start.
pub async fn sync_operator_endpoints<C>(db: &C, endpoints: &[OperatorEndpoint]) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let ids: Vec<String> = endpoints.iter().map(OperatorEndpoint::id).collect();
    let txn = db.begin().await?;
    webhooks::Entity::delete_many()
        .filter(webhooks::Column::OwnerId.is_null())
        .filter(webhooks::Column::Id.is_not_in(ids.clone()))
        .exec(&txn)
        .await?;
    let existing: Vec<String> = webhooks::Entity::find()
        .select_only()
        .column(webhooks::Column::Id)
        .filter(webhooks::Column::OwnerId.is_null())
        .into_tuple()
        .all(&txn)
        .await?;
    for (endpoint, id) in endpoints.iter().zip(ids) {
        if existing.contains(&id) {
            continue;
        }
        webhooks::ActiveModel {
            id: Set(id),
            owner_id: Set(None),
            url: Set(endpoint.url.clone()),
            secret: Set(String::new()),
            event_types: Set(None),
            created_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await
}

/// Records one attempt's result on the delivery.
pub(super) async fn record_attempt(
    db: &impl ConnectionTrait,
    delivery: &deliveries::Model,
    status: &str,
    http_status: Option<u16>,
    error: Option<String>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let mut update = deliveries::Entity::update_many()
        .col_expr(deliveries::Column::Status, Expr::value(status))
        .col_expr(
            deliveries::Column::Attempts,
            Expr::col(deliveries::Column::Attempts).add(1),
        )
        .col_expr(
            deliveries::Column::LastStatus,
            Expr::value(http_status.map(i32::from)),
        )
        .col_expr(deliveries::Column::LastError, Expr::value(error))
        .col_expr(deliveries::Column::UpdatedAt, Expr::value(now));
    if status == DELIVERED {
        update = update.col_expr(deliveries::Column::DeliveredAt, Expr::value(now));
    }
    update
        .filter(deliveries::Column::Id.eq(delivery.id.as_str()))
        .filter(deliveries::Column::Status.eq(PENDING))
        .exec(db)
        .await?;
    Ok(())
}

/// Ends a delivery that will not be attempted (its endpoint is gone).
pub(super) async fn give_up(
    db: &impl ConnectionTrait,
    delivery: &deliveries::Model,
    error: &str,
) -> Result<(), DbErr> {
    deliveries::Entity::update_many()
        .col_expr(deliveries::Column::Status, Expr::value(FAILED))
        .col_expr(deliveries::Column::LastError, Expr::value(error))
        .col_expr(deliveries::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(deliveries::Column::Id.eq(delivery.id.as_str()))
        .filter(deliveries::Column::Status.eq(PENDING))
        .exec(db)
        .await?;
    Ok(())
}
