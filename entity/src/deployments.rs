use sea_orm::entity::prelude::*;

/// Where a deployment is: active (queued, building, deploying) or finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum DeploymentStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "building")]
    Building,
    #[sea_orm(string_value = "deploying")]
    Deploying,
    #[sea_orm(string_value = "healthy")]
    Healthy,
    #[sea_orm(string_value = "failed")]
    Failed,
    /// A newer version's deployment replaced it.
    #[sea_orm(string_value = "superseded")]
    Superseded,
    /// Its app was deleted.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Queued => "queued",
            DeploymentStatus::Building => "building",
            DeploymentStatus::Deploying => "deploying",
            DeploymentStatus::Healthy => "healthy",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Superseded => "superseded",
            DeploymentStatus::Cancelled => "cancelled",
        }
    }

    /// The status a stored string names (the app's `deploy_status` mirrors it as text).
    pub fn parse(text: &str) -> Option<Self> {
        use sea_orm::Iterable;
        Self::iter().find(|s| s.as_str() == text)
    }
}

/// One deployment of one app version; a `deploy` job (table `jobs`) advances it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub app_id: String,
    pub owner_id: String,
    pub version: i32,
    pub provider: String,
    pub status: DeploymentStatus,
    /// Provider ids as a JSON object.
    #[sea_orm(column_type = "Text")]
    pub provider_state: String,
    pub url: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// When the current non-terminal status must have moved on.
    pub status_deadline_at: Option<DateTimeUtc>,
    /// Since when the provider has reported a status we do not know.
    pub unknown_since: Option<DateTimeUtc>,
    /// A run's stream is waiting to report the outcome itself.
    pub watched: bool,
    /// The terminal outcome has been reported (to a stream or to the app's history).
    pub notified: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// How many log lines the deployment ever got: the `seq` of its latest line.
    pub log_seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
