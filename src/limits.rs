//! Daily message limits. Reserving a message is one atomic upsert, so concurrent requests at the
//! limit cannot overshoot; a database failure refuses the message (fail closed).
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Days, NaiveTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait};
use serde::Serialize;

use crate::db::statement;
use crate::error::ApiError;
use entity::{usage_counters, user_limits};

#[derive(Clone)]
pub struct Limiter {
    db: DatabaseConnection,
    default_limit: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitStatus {
    pub is_user_limit_reached: bool,
    pub daily_message_limit: u32,
    pub remaining_messages: u32,
    pub current_usage: u32,
    pub next_reset_time: DateTime<Utc>,
}

/// A reserved message. Taken inside a transaction, it is given back if that rolls back, so a
/// 404 or 409 does not cost the user a message.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub status: LimitStatus,
    /// The day (UTC) the message was taken from, to give it back to.
    pub day: String,
}

impl Limiter {
    pub fn new(db: DatabaseConnection, default_limit: u32) -> Self {
        Self { db, default_limit }
    }

    pub async fn status(&self, user_id: &str) -> Result<LimitStatus, ApiError> {
        let limit = self.limit_for(user_id).await?;
        let (day, reset) = today();
        let usage = usage_counters::Entity::find_by_id((user_id.to_string(), day))
            .one(&self.db)
            .await
            .map_err(unavailable)?
            .map(|row| row.count.max(0) as u32)
            .unwrap_or(0);
        Ok(build_status(limit, usage, reset))
    }

    /// Atomically takes one message from today's allowance.
    pub async fn reserve(&self, user_id: &str) -> Result<Reservation, ApiError> {
        self.reserve_in(&self.db, user_id).await
    }

    /// Takes one message inside the caller's transaction (`POST /message` takes it in the
    /// transaction that records the run), so a request that fails later gives it back by
    /// rolling back, and the reservation costs no commit of its own.
    pub async fn reserve_in(
        &self,
        db: &impl ConnectionTrait,
        user_id: &str,
    ) -> Result<Reservation, ApiError> {
        let (day, reset) = today();
        // The write comes first, with the user's limit looked up inside it: a SQLite
        // transaction that read first could not upgrade to a writer under concurrent starts.
        let sql = "INSERT INTO usage_counters (user_id, day, count) SELECT $1, $2, 1 \
                   WHERE COALESCE((SELECT daily_limit FROM user_limits WHERE user_id = $1), $3) > 0 \
                   ON CONFLICT (user_id, day) DO UPDATE SET count = usage_counters.count + 1 \
                   WHERE usage_counters.count < \
                     COALESCE((SELECT daily_limit FROM user_limits WHERE user_id = $1), $3) \
                   RETURNING count, \
                     COALESCE((SELECT daily_limit FROM user_limits WHERE user_id = $1), $3) \
                       AS daily_limit";
        let default_limit = self.default_limit.min(i32::MAX as u32) as i32;
        let row = db
            .query_one_raw(statement(
                db,
                sql,
                vec![user_id.into(), day.clone().into(), default_limit.into()],
            ))
            .await
            .map_err(unavailable)?;
        match row {
            // The limit comes back with the count: reading it after would be one more round
            // trip in every run's first transaction.
            Some(row) => {
                let count: i32 = row.try_get("", "count").map_err(unavailable)?;
                let limit: i32 = row.try_get("", "daily_limit").map_err(unavailable)?;
                Ok(Reservation {
                    status: build_status(limit.max(0) as u32, count.max(0) as u32, reset),
                    day,
                })
            }
            None => {
                let limit = self.limit_in(db, user_id).await?;
                Err(limit_reached(build_status(limit, limit, reset)))
            }
        }
    }

    pub async fn set_override(&self, user_id: &str, daily_limit: u32) -> Result<(), ApiError> {
        let row = user_limits::ActiveModel {
            user_id: Set(user_id.to_string()),
            daily_limit: Set(daily_limit.min(i32::MAX as u32) as i32),
            updated_at: Set(Utc::now()),
        };
        user_limits::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(user_limits::Column::UserId)
                    .update_columns([
                        user_limits::Column::DailyLimit,
                        user_limits::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn limit_for(&self, user_id: &str) -> Result<u32, ApiError> {
        self.limit_in(&self.db, user_id).await
    }

    async fn limit_in(&self, db: &impl ConnectionTrait, user_id: &str) -> Result<u32, ApiError> {
        let row = user_limits::Entity::find_by_id(user_id.to_string())
            .one(db)
            .await
            .map_err(unavailable)?;
        Ok(row
            .map(|r| r.daily_limit.max(0) as u32)
            .unwrap_or(self.default_limit))
    }
}

/// Gives one message of `day`'s allowance back (a run that cost the user nothing).
pub async fn give_back(db: &impl ConnectionTrait, user_id: &str, day: &str) -> Result<(), DbErr> {
    let sql = "UPDATE usage_counters SET count = count - 1 \
               WHERE user_id = $1 AND day = $2 AND count > 0";
    db.execute_raw(statement(db, sql, vec![user_id.into(), day.into()]))
        .await?;
    Ok(())
}

/// The `x-dailylimit-*` headers that go on `/apps`, `/message-limit` and `/message`.
pub fn limit_headers(status: &LimitStatus) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put("x-dailylimit-limit", status.daily_message_limit.to_string());
    put(
        "x-dailylimit-remaining",
        status.remaining_messages.to_string(),
    );
    put("x-dailylimit-usage", status.current_usage.to_string());
    put(
        "x-dailylimit-reset",
        status
            .next_reset_time
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    headers
}

fn build_status(limit: u32, usage: u32, reset: DateTime<Utc>) -> LimitStatus {
    let remaining = limit.saturating_sub(usage);
    LimitStatus {
        is_user_limit_reached: remaining == 0,
        daily_message_limit: limit,
        remaining_messages: remaining,
        current_usage: usage,
        next_reset_time: reset,
    }
}

/// Today's counter key and the next 00:00 UTC.
fn today() -> (String, DateTime<Utc>) {
    let now = Utc::now();
    let day = now.date_naive();
    let next = day
        .checked_add_days(Days::new(1))
        .unwrap_or(day)
        .and_time(NaiveTime::MIN)
        .and_utc();
    (day.format("%Y-%m-%d").to_string(), next)
}

fn limit_reached(status: LimitStatus) -> ApiError {
    crate::metrics::metrics().limiter_rejections.inc();
    let mut headers = limit_headers(&status);
    // Seconds until the daily reset, rounded up so a client that waits exactly this long is
    // past it.
    let millis = (status.next_reset_time - Utc::now())
        .num_milliseconds()
        .max(0);
    let seconds = (millis + 999) / 1000;
    headers.insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from(seconds.max(1)),
    );
    ApiError::LimitReached { headers }
}

fn unavailable(e: sea_orm::DbErr) -> ApiError {
    tracing::error!(error = %e, "limiter database error; refusing the message");
    ApiError::Unavailable("message limits are temporarily unavailable".into())
}
