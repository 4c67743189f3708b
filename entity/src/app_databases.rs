use sea_orm::entity::prelude::*;

/// The database provisioned for an app. The URL holds a password: it is stored encrypted
/// (XChaCha20-Poly1305, bound to the app id) and never shown to clients.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "app_databases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub app_id: String,
    /// The provisioner that made it: postgres | neon
    pub kind: String,
    /// Its name there: the role and database name, or the Neon project id. While
    /// `encrypted_url` is None: the token of the worker's claim to create it.
    pub reference: String,
    /// `v1:<base64 nonce + ciphertext>`; None while a worker is still creating the database.
    #[sea_orm(column_type = "Text", nullable)]
    pub encrypted_url: Option<String>,
    /// When it was created (while `encrypted_url` is None: when creation was claimed).
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
