use sea_orm::entity::prelude::*;

/// What a background job does. Stored as text, so a row written by a newer gateway with a kind
/// this one does not know fails to load instead of being run wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum JobKind {
    /// Upload a version's new blobs, manifest and archive to object storage.
    #[sea_orm(string_value = "upload_version")]
    UploadVersion,
    /// Push an app's unpushed versions to the git host, in version order.
    #[sea_orm(string_value = "push_version")]
    PushVersion,
    /// Advance one deployment (`subject`) a step through its provider: start, then each poll.
    #[sea_orm(string_value = "deploy")]
    Deploy,
    /// Clean-up after an app was deleted, one job per resource it owned.
    #[sea_orm(string_value = "cleanup_deployment")]
    CleanupDeployment,
    #[sea_orm(string_value = "cleanup_repository")]
    CleanupRepository,
    #[sea_orm(string_value = "cleanup_database")]
    CleanupDatabase,
    #[sea_orm(string_value = "cleanup_storage")]
    CleanupStorage,
    /// Send one webhook delivery (`subject`) to its endpoint.
    #[sea_orm(string_value = "deliver_webhook")]
    DeliverWebhook,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::UploadVersion => "upload_version",
            JobKind::PushVersion => "push_version",
            JobKind::Deploy => "deploy",
            JobKind::CleanupDeployment => "cleanup_deployment",
            JobKind::CleanupRepository => "cleanup_repository",
            JobKind::CleanupDatabase => "cleanup_database",
            JobKind::CleanupStorage => "cleanup_storage",
            JobKind::DeliverWebhook => "deliver_webhook",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum JobStatus {
    /// Waiting for `run_at` (and for the job it depends on).
    #[sea_orm(string_value = "queued")]
    Queued,
    /// Leased by a worker until `lease_expires_at`; past that, any worker may take it over.
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "done")]
    Done,
    /// Gave up: a permanent error, or `max_attempts` transient ones in a row.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Made pointless before it ran (its app was deleted, a newer version superseded it).
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// One background effect: every upload, push, deployment step and clean-up goes through this
/// one durable queue, so a restart loses no retry state.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: JobKind,
    pub app_id: String,
    /// The app version the job is about (uploads, pushes, deployments).
    pub version: Option<i32>,
    /// What else the job is about: the deployment's id for `deploy`.
    pub subject: Option<String>,
    pub status: JobStatus,
    /// Failed attempts in a row (a provider that is still building is not a failure).
    pub attempts: i32,
    /// Failed attempts allowed before the job fails; 0: retried until it succeeds.
    pub max_attempts: i32,
    /// When the job is due (first run, retry after backoff, next provider poll).
    pub run_at: DateTimeUtc,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTimeUtc>,
    /// A job that must be done before this one may run (a deploy from git waits for its push).
    pub depends_on: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// What the job did, as JSON (for the run or history that reports it).
    #[sea_orm(column_type = "Text", nullable)]
    pub result: Option<String>,
    /// A run's stream waits to report the outcome itself.
    pub watched: bool,
    /// The outcome was reported (to a stream or to the app's history), exactly once.
    pub reported: bool,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    /// The gateway the job runs on while that gateway is live (its local cache holds what
    /// the job needs); None: any.
    pub runner: Option<String>,
    /// The W3C `traceparent` of the span that enqueued the job, which its spans link to.
    pub traceparent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
