use sea_orm::entity::prelude::*;

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
    /// queued | building | deploying | healthy | failed | superseded | cancelled
    pub status: String,
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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
