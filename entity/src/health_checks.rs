//! One row per probing gateway, rewritten by `/health` to prove the database takes writes.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "health_checks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub probe: String,
    pub checked_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
