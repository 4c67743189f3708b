//! Apps and their conversation history: lookups always scoped to the owner, so another user's
//! app is indistinguishable from a missing one.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder,
};
use serde::Serialize;
use uuid::Uuid;

use entity::{app_messages, apps};

/// What clients see of an app: no agent state, no secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub app_name: Option<String>,
    pub tech_stack: Option<String>,
    pub repository_url: Option<String>,
    pub app_url: Option<String>,
    pub deploy_status: Option<String>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<apps::Model> for AppView {
    fn from(app: apps::Model) -> Self {
        Self {
            id: app.id,
            name: app.name,
            owner_id: app.owner_id,
            app_name: app.repo_name,
            tech_stack: app.tech_stack,
            repository_url: app.repository_url,
            app_url: app.app_url,
            deploy_status: app.deploy_status,
            version: app.current_version,
            created_at: app.created_at,
            updated_at: app.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub id: i64,
    pub role: String,
    pub kind: String,
    pub content: String,
    pub metadata: Option<serde_json::Value>,
    pub run_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<app_messages::Model> for HistoryEntry {
    fn from(m: app_messages::Model) -> Self {
        Self {
            id: m.id,
            role: m.role,
            kind: m.kind,
            content: m.content,
            metadata: m.metadata.and_then(|s| serde_json::from_str(&s).ok()),
            run_id: m.run_id,
            created_at: m.created_at,
        }
    }
}

/// app.build's `DeployStatus` for an app whose internal deploy status (the latest deployment
/// job's, see `deploy::jobs`) is `internal`: app.build clients know only these five values and
/// break on any other. Our finer status is shown beside it, never instead of it.
pub fn client_deploy_status(internal: Option<&str>) -> &'static str {
    use crate::deploy::jobs;
    match internal {
        None => "pending",
        Some(jobs::QUEUED | jobs::BUILDING | jobs::DEPLOYING) => "deploying",
        Some(jobs::HEALTHY) => "deployed",
        // The same grouping as the deployment status route's `STOPPING`.
        Some(jobs::SUPERSEDED | jobs::CANCELLED) => "stopping",
        Some(_) => "failed",
    }
}

/// A live (not deleted) app owned by `owner`, or None.
pub async fn find_owned(
    db: &impl ConnectionTrait,
    owner: &str,
    id: Uuid,
) -> Result<Option<apps::Model>, DbErr> {
    apps::Entity::find_by_id(id.to_string())
        .filter(apps::Column::OwnerId.eq(owner))
        .filter(apps::Column::DeletedAt.is_null())
        .one(db)
        .await
}

/// A live (not deleted) app owned by `owner`, or None.
pub async fn find_owned(
    db: &impl ConnectionTrait,
    owner: &str,
    id: Uuid,
) -> Result<Option<apps::Model>, DbErr> {
    apps::Entity::find_by_id(id.to_string())
        .filter(apps::Column::OwnerId.eq(owner))
        .filter(apps::Column::DeletedAt.is_null())
        .one(db)
        .await
}

pub async fn list_owned(
    db: &impl ConnectionTrait,
    owner: &str,
    page: u64,
    limit: u64,
) -> Result<(Vec<apps::Model>, u64), DbErr> {
    let paginator = apps::Entity::find()
        .filter(apps::Column::OwnerId.eq(owner))
        .filter(apps::Column::DeletedAt.is_null())
        .order_by_desc(apps::Column::CreatedAt)
        .order_by_desc(apps::Column::Id)
        .paginate(db, limit);
    let total = paginator.num_items().await?;
    let items = paginator.fetch_page(page - 1).await?;
    Ok((items, total))
}

pub async fn create(
    db: &impl ConnectionTrait,
    owner: &str,
    name: &str,
    tech_stack: Option<String>,
) -> Result<apps::Model, DbErr> {
    let now = Utc::now();
    apps::ActiveModel {
        id: Set(Uuid::new_v4().to_string()),
        owner_id: Set(owner.to_string()),
        name: Set(name.to_string()),
        repo_name: Set(None),
        tech_stack: Set(tech_stack),
        repository_url: Set(None),
        app_url: Set(None),
        deploy_status: Set(None),
        agent_state: Set(None),
        current_version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
        repo_owner: Set(None),
        last_commit_sha: Set(None),
    }
    .insert(db)
    .await
}

/// What a soft delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    NotFound,
    Now,
    Already,
}

/// Soft delete; deleting an already deleted app is a no-op.
pub async fn soft_delete(
    db: &impl ConnectionTrait,
    owner: &str,
    id: Uuid,
) -> Result<Deleted, DbErr> {
    // Write first: on SQLite a transaction that reads before it writes cannot take the write
    // lock once another connection (the event log writer) has committed meanwhile.
    let now = Utc::now();
    let deleted = apps::Entity::update_many()
        .col_expr(apps::Column::DeletedAt, Expr::value(now))
        .col_expr(apps::Column::UpdatedAt, Expr::value(now))
        .filter(apps::Column::Id.eq(id.to_string()))
        .filter(apps::Column::OwnerId.eq(owner))
        .filter(apps::Column::DeletedAt.is_null())
        .exec(db)
        .await?;
    if deleted.rows_affected == 1 {
        return Ok(Deleted::Now);
    }
    let exists = apps::Entity::find_by_id(id.to_string())
        .filter(apps::Column::OwnerId.eq(owner))
        .one(db)
        .await?;
    Ok(match exists {
        Some(_) => Deleted::Already,
        None => Deleted::NotFound,
    })
}

pub async fn history(
    db: &impl ConnectionTrait,
    app_id: &str,
) -> Result<Vec<app_messages::Model>, DbErr> {
    app_messages::Entity::find()
        .filter(app_messages::Column::AppId.eq(app_id))
        .order_by_asc(app_messages::Column::Id)
        .all(db)
        .await
}

/// A new entry in the app's conversation.
pub struct NewMessage<'a> {
    pub app_id: &'a str,
    pub run_id: Option<&'a str>,
    pub role: &'a str,
    pub kind: &'a str,
    pub content: &'a str,
    pub metadata: Option<&'a serde_json::Value>,
}

pub async fn append_message(
    db: &impl ConnectionTrait,
    message: NewMessage<'_>,
) -> Result<(), DbErr> {
    app_messages::ActiveModel {
        app_id: Set(message.app_id.to_string()),
        run_id: Set(message.run_id.map(str::to_string)),
        role: Set(message.role.to_string()),
        kind: Set(message.kind.to_string()),
        content: Set(message.content.to_string()),
        metadata: Set(message.metadata.map(|m| m.to_string())),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::client_deploy_status;

    #[test]
    fn every_internal_deploy_status_maps_to_one_of_app_builds_five() {
        let cases = [
            (None, "pending"),
            (Some("queued"), "deploying"),
            (Some("building"), "deploying"),
            (Some("deploying"), "deploying"),
            (Some("healthy"), "deployed"),
            (Some("failed"), "failed"),
            (Some("superseded"), "stopping"),
            (Some("cancelled"), "stopping"),
            (Some("something new"), "failed"),
        ];
        for (internal, expected) in cases {
            assert_eq!(client_deploy_status(internal), expected, "{internal:?}");
        }
    }
}
