use sea_orm::entity::prelude::*;

/// Whether a version's files are in object storage yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum StorageStatus {
    /// Kept in the gateway's blob cache; its `upload_version` job is outstanding.
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "stored")]
    Stored,
}

/// Whether a version is on the git host yet (None on the row: no git host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum GitStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "pushed")]
    Pushed,
}

impl GitStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GitStatus::Pending => "pending",
            GitStatus::Pushed => "pushed",
        }
    }
}

/// One version of an app's files. `manifest` is JSON: path -> {sha256, size, mode}.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "app_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub app_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i32,
    pub parent_version: Option<i32>,
    #[sea_orm(column_type = "Text")]
    pub manifest: String,
    pub diff_sha256: Option<String>,
    pub run_id: Option<String>,
    pub status: StorageStatus,
    pub file_count: i32,
    pub total_bytes: i64,
    pub created_at: DateTimeUtc,
    pub stored_at: Option<DateTimeUtc>,
    /// None without a git host.
    pub git_status: Option<GitStatus>,
    pub commit_sha: Option<String>,
    /// The repository `commit_sha` is in (set when the version is pushed): the app's
    /// repository at that time, which may since have been replaced or renamed.
    pub repository_url: Option<String>,
    pub repo_owner: Option<String>,
    pub repo_name: Option<String>,
    /// The agent's commit message and app name for this version (used when pushing later).
    #[sea_orm(column_type = "Text", nullable)]
    pub commit_message: Option<String>,
    pub app_name: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
