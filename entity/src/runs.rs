use sea_orm::entity::prelude::*;

/// Where a run is: active (queued, running) or how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum RunStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    /// Its gateway stopped (or lost it) while it was active.
    #[sea_orm(string_value = "interrupted")]
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub app_id: String,
    pub owner_id: String,
    pub trace_id: String,
    pub idempotency_key: Option<String>,
    pub status: RunStatus,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub last_seq: i64,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// The gateway process running it (`runs.instance_id`), while active.
    pub runner_id: Option<String>,
    /// The runner renews this; past it, another gateway may interrupt the run.
    pub lease_expires_at: Option<DateTimeUtc>,
    /// Set when a cancel reached another gateway; the runner stops the run at its next sweep.
    pub cancel_requested_at: Option<DateTimeUtc>,
    /// SHA-256 of the request that started the run (an idempotent retry must match it).
    pub request_digest: Option<String>,
    /// The stable code of why a failed run failed.
    pub error_code: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
