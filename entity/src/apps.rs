use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "apps")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub repo_name: Option<String>,
    pub tech_stack: Option<String>,
    pub repository_url: Option<String>,
    pub app_url: Option<String>,
    pub deploy_status: Option<String>,
    /// Opaque agent state, sent back to the agent on the next turn; never shown to clients.
    #[sea_orm(column_type = "Text", nullable)]
    pub agent_state: Option<String>,
    pub current_version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
    /// Owner (user or org) of the repository on the git host.
    pub repo_owner: Option<String>,
    pub last_commit_sha: Option<String>,
    /// app.build's `clientSource` of the message that created the app (`web`, `cli`, ...).
    pub client_source: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
