use sea_orm::entity::prelude::*;

/// Where a deployment's log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum LogStream {
    /// A change of the deployment's status, with its reason.
    #[sea_orm(string_value = "status")]
    Status,
    /// The gateway's own steps (files published, retries).
    #[sea_orm(string_value = "deploy")]
    Deploy,
    /// The image builder's standard output.
    #[sea_orm(string_value = "stdout")]
    Stdout,
    /// The image builder's standard error.
    #[sea_orm(string_value = "stderr")]
    Stderr,
    /// What the provider (Koyeb) says about its deployment.
    #[sea_orm(string_value = "provider")]
    Provider,
    /// How many earlier lines were dropped past the bound (seq 0).
    #[sea_orm(string_value = "note")]
    Note,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Status => "status",
            LogStream::Deploy => "deploy",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Provider => "provider",
            LogStream::Note => "note",
        }
    }
}

/// One line of a deployment's log; `seq` counts from 1 per deployment, 0 is the note.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_logs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub deployment_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub at: DateTimeUtc,
    pub stream: LogStream,
    #[sea_orm(column_type = "Text")]
    pub text: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
