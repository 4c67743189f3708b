//! An endpoint that receives events: a user's (their apps' events) or, with no owner, one of the
//! operator's from the config (every user's events; its secret stays in the config).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// None: an operator's endpoint from the config.
    pub owner_id: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub url: String,
    /// `whsec_...`; empty for an operator's endpoint.
    #[sea_orm(column_type = "Text")]
    pub secret: String,
    /// The event types it wants, as a JSON array; None: all.
    #[sea_orm(column_type = "Text", nullable)]
    pub event_types: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
