//! Apps and their conversation history: lookups always scoped to the owner, so another user's
//! app is indistinguishable from a missing one.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr,
    EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use entity::deployments::DeploymentStatus;
use entity::{app_messages, apps, runs};

/// What clients see of an app: app.build's `App` fields, then ours. No agent state, no secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    #[schema(format = "uuid")]
    pub id: String,
    pub name: String,
    pub owner_id: String,
    /// The latest run's trace id (`app-{appId}.req-{runId}` unless the client chose one).
    pub trace_id: Option<String>,
    /// What the first message's `clientSource` said, if anything.
    pub client_source: Option<String>,
    pub app_name: Option<String>,
    pub tech_stack: Option<String>,
    pub repository_url: Option<String>,
    pub app_url: Option<String>,
    /// app.build's deploy status, derived from `deploymentStatus`.
    #[schema(value_type = String, example = "deployed", pattern = "^(pending|deploying|deployed|failed|stopping)$")]
    pub deploy_status: &'static str,
    /// Legacy app.build field; always false.
    pub received_success: bool,
    /// Legacy app.build field; always false.
    pub recompile_in_progress: bool,
    /// Our finer status of the latest deployment: `queued`, `building`, `deploying`,
    /// `healthy`, `failed`, `superseded`, `cancelled`; null when never deployed.
    pub deployment_status: Option<String>,
    /// The latest version (0 before the first).
    pub version: i32,
    /// How the latest run is going or ended (null before the first).
    pub latest_run: Option<LatestRun>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The latest run of an app, as `GET /runs/{id}` tells it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatestRun {
    #[schema(format = "uuid")]
    pub id: String,
    /// `running`, `succeeded`, `failed`, `cancelled` or `interrupted`.
    #[schema(example = "failed")]
    pub status: String,
    /// Why it did not succeed (`diff_hunk_failed`, `deployment_failed`, ...).
    #[schema(example = "diff_hunk_failed")]
    pub error_code: Option<String>,
}

impl AppView {
    pub fn new(app: apps::Model, trace_id: Option<String>, latest_run: Option<LatestRun>) -> Self {
        Self {
            latest_run,
            deploy_status: client_deploy_status(app.deploy_status.as_deref()),
            id: app.id,
            name: app.name,
            owner_id: app.owner_id,
            trace_id,
            client_source: app.client_source,
            app_name: app.repo_name,
            tech_stack: app.tech_stack,
            repository_url: app.repository_url,
            app_url: app.app_url,
            received_success: false,
            recompile_in_progress: false,
            deployment_status: app.deploy_status,
            version: app.current_version,
            created_at: app.created_at,
            updated_at: app.updated_at,
        }
    }
}

/// One row of app.build's `AppPrompts[]`: the history as its clients read it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppPrompt {
    /// Unique within the app, increasing (a string, as app.build's clients expect).
    #[schema(example = "42")]
    pub id: String,
    #[schema(format = "uuid")]
    pub app_id: String,
    /// The message text; never null (clients render it as markdown).
    pub prompt: String,
    /// Legacy app.build field; always empty.
    pub response: String,
    /// `user` or `assistant` (the gateway's own rows are `assistant` too).
    #[schema(value_type = String, example = "assistant", pattern = "^(user|assistant)$")]
    pub kind: &'static str,
    /// `UserMessage`, `StageResult`, `RefinementRequest`, `ReviewResult`, `PlatformMessage`,
    /// `RuntimeError`, ...
    #[schema(example = "StageResult")]
    pub message_kind: String,
    pub metadata: Option<serde_json::Value>,
    /// The run that wrote it (ours: the built-in client groups a run's rows).
    pub run_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Rows never change: the same as `createdAt`.
    pub updated_at: DateTime<Utc>,
}

impl From<app_messages::Model> for AppPrompt {
    fn from(m: app_messages::Model) -> Self {
        Self {
            id: m.id.to_string(),
            app_id: m.app_id,
            prompt: m.content,
            response: String::new(),
            kind: if m.role == "user" {
                "user"
            } else {
                "assistant"
            },
            message_kind: m.kind,
            metadata: m.metadata.and_then(|s| serde_json::from_str(&s).ok()),
            run_id: m.run_id,
            created_at: m.created_at,
            updated_at: m.created_at,
        }
    }
}

/// app.build's `DeployStatus` for an app whose internal deploy status (the latest deployment
/// job's, see `deploy::records`) is `internal`: app.build clients know only these five values and
/// break on any other. Our finer status is shown beside it, never instead of it.
pub fn client_deploy_status(internal: Option<&str>) -> &'static str {
    use crate::deploy::records as jobs;
    match internal {
        None => "pending",
        Some(text) => match jobs::DeploymentStatus::parse(text) {
            Some(jobs::QUEUED | jobs::BUILDING | jobs::DEPLOYING) => "deploying",
            Some(jobs::HEALTHY) => "deployed",
            // The same grouping as the deployment status route's `STOPPING`.
            Some(jobs::SUPERSEDED | jobs::CANCELLED) => "stopping",
            _ => "failed",
        },
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

/// An app with its latest run's trace id, as the list and the detail read it.
#[derive(Debug, FromQueryResult)]
pub struct AppRow {
    #[sea_orm(nested)]
    pub app: apps::Model,
    pub latest_trace_id: Option<String>,
    pub latest_run_id: Option<String>,
    pub latest_run_status: Option<String>,
    pub latest_run_error_code: Option<String>,
}

impl From<AppRow> for AppView {
    fn from(row: AppRow) -> Self {
        let latest_run = match (row.latest_run_id, row.latest_run_status) {
            (Some(id), Some(status)) => Some(LatestRun {
                id,
                status,
                error_code: row.latest_run_error_code,
            }),
            _ => None,
        };
        AppView::new(row.app, row.latest_trace_id, latest_run)
    }
}

/// Adds the latest run's trace id, id, status and error code to an app query.
fn with_latest_run<Q: QuerySelect>(query: Q) -> Q {
    query
        .expr_as(latest_run(runs::Column::TraceId), "latest_trace_id")
        .expr_as(latest_run(runs::Column::Id), "latest_run_id")
        .expr_as(latest_run(runs::Column::Status), "latest_run_status")
        .expr_as(latest_run(runs::Column::ErrorCode), "latest_run_error_code")
}

/// `(SELECT {column} FROM runs WHERE app_id = apps.id ORDER BY created_at DESC LIMIT 1)`,
/// served by the `runs_app_created` index.
fn latest_run(column: runs::Column) -> Expr {
    let latest = Query::select()
        .column((runs::Entity, column))
        .from(runs::Entity)
        .and_where(
            Expr::col((runs::Entity, runs::Column::AppId)).equals((apps::Entity, apps::Column::Id)),
        )
        .order_by((runs::Entity, runs::Column::CreatedAt), Order::Desc)
        .limit(1)
        .to_owned();
    Expr::SubQuery(None, Box::new(latest.into()))
}

/// Kinds of agent reply that do not make an app worth listing on their own: a question before
/// anything was built, an error.
const UNLISTED_REPLY_KINDS: [&str; 2] = ["RefinementRequest", "RuntimeError"];

/// An app is listed once there is something to show or to follow: a version, an active run, or
/// an agent reply other than a question or an error. A run that ended with nothing (a refinement
/// question, an upstream failure) leaves its app unlisted, though still readable by id so the
/// answer to the question can continue it.
fn listed() -> Condition {
    let active_run = Query::select()
        .expr(Expr::val(1))
        .from(runs::Entity)
        .and_where(
            Expr::col((runs::Entity, runs::Column::AppId)).equals((apps::Entity, apps::Column::Id)),
        )
        .and_where(
            Expr::col((runs::Entity, runs::Column::Status)).is_in(crate::runs::ACTIVE_STATUSES),
        )
        .to_owned();
    // Served by the index `app_messages_app_role_kind`.
    let reply = Query::select()
        .expr(Expr::val(1))
        .from(app_messages::Entity)
        .and_where(
            Expr::col((app_messages::Entity, app_messages::Column::AppId))
                .equals((apps::Entity, apps::Column::Id)),
        )
        .and_where(Expr::col((app_messages::Entity, app_messages::Column::Role)).eq("assistant"))
        .and_where(
            Expr::col((app_messages::Entity, app_messages::Column::Kind))
                .is_not_in(UNLISTED_REPLY_KINDS),
        )
        .to_owned();
    Condition::any()
        .add(apps::Column::CurrentVersion.gt(0))
        .add(Expr::exists(active_run))
        .add(Expr::exists(reply))
}

/// A live app owned by `owner` with its latest trace id, listed or not.
pub async fn find_owned_row(
    db: &impl ConnectionTrait,
    owner: &str,
    id: Uuid,
) -> Result<Option<AppRow>, DbErr> {
    with_latest_run(apps::Entity::find_by_id(id.to_string()))
        .filter(apps::Column::OwnerId.eq(owner))
        .filter(apps::Column::DeletedAt.is_null())
        .into_model::<AppRow>()
        .one(db)
        .await
}

/// One page of the owner's listed apps, newest first, and how many are listed.
pub async fn list_owned(
    db: &impl ConnectionTrait,
    owner: &str,
    page: u64,
    limit: u64,
) -> Result<(Vec<AppRow>, u64), DbErr> {
    let paginator = with_latest_run(apps::Entity::find())
        .filter(apps::Column::OwnerId.eq(owner))
        .filter(apps::Column::DeletedAt.is_null())
        .filter(listed())
        .order_by_desc(apps::Column::CreatedAt)
        .order_by_desc(apps::Column::Id)
        .into_model::<AppRow>()
        .paginate(db, limit);
    let total = paginator.num_items().await?;
    let items = paginator.fetch_page(page - 1).await?;
    Ok((items, total))
}

/// Records the client that created the app (app.build's `clientSource`), once.
pub async fn record_client_source(
    db: &impl ConnectionTrait,
    app_id: &str,
    source: &str,
) -> Result<(), DbErr> {
    apps::Entity::update_many()
        .col_expr(apps::Column::ClientSource, Expr::value(source))
        .filter(apps::Column::Id.eq(app_id))
        .filter(apps::Column::ClientSource.is_null())
        .exec(db)
        .await?;
    Ok(())
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
        client_source: Set(None),
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

// The writes other modules make to an app, all here so `apps` is the table's one writer.

/// A deployment of the app was queued: its deploy status says so, and its URL is set when the
/// provider knows it in advance (a local preview's).
pub async fn mark_deploy_queued(
    db: &impl ConnectionTrait,
    app_id: &str,
    app_url: Option<&str>,
) -> Result<(), DbErr> {
    let queued = DeploymentStatus::Queued.as_str();
    let mut update = apps::Entity::update_many()
        .col_expr(apps::Column::DeployStatus, Expr::value(queued))
        .col_expr(apps::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(url) = app_url {
        update = update.col_expr(apps::Column::AppUrl, Expr::value(url));
    }
    update.filter(apps::Column::Id.eq(app_id)).exec(db).await?;
    Ok(())
}

/// The app's latest deployment reached `status`; a live one gives the app its URL.
pub async fn record_deploy_status(
    db: &impl ConnectionTrait,
    app_id: &str,
    status: DeploymentStatus,
    live_url: Option<&str>,
) -> Result<(), DbErr> {
    let mut update = apps::Entity::update_many()
        .col_expr(apps::Column::DeployStatus, Expr::value(status.as_str()))
        .col_expr(apps::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(url) = live_url {
        update = update.col_expr(apps::Column::AppUrl, Expr::value(url));
    }
    update.filter(apps::Column::Id.eq(app_id)).exec(db).await?;
    Ok(())
}

/// Where the app is (or will be) served, unless it was deleted meanwhile; None takes an
/// unserved URL back.
pub async fn set_app_url(
    db: &impl ConnectionTrait,
    app_id: &str,
    url: Option<&str>,
) -> Result<(), DbErr> {
    apps::Entity::update_many()
        .col_expr(apps::Column::AppUrl, Expr::value(url.map(str::to_string)))
        .filter(apps::Column::Id.eq(app_id))
        .filter(apps::Column::DeletedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// The repository the git host created for the app.
pub async fn record_repository(
    db: &impl ConnectionTrait,
    app_id: &str,
    owner: &str,
    name: &str,
    url: &str,
) -> Result<(), DbErr> {
    apps::Entity::update_many()
        .col_expr(apps::Column::RepoOwner, Expr::value(owner))
        .col_expr(apps::Column::RepoName, Expr::value(name))
        .col_expr(apps::Column::RepositoryUrl, Expr::value(url))
        .col_expr(apps::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(apps::Column::Id.eq(app_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The repository URL alone (stored local URLs rewritten for a new public URL).
pub async fn set_repository_url(
    db: &impl ConnectionTrait,
    app_id: &str,
    url: &str,
) -> Result<(), DbErr> {
    apps::Entity::update_many()
        .col_expr(apps::Column::RepositoryUrl, Expr::value(url))
        .filter(apps::Column::Id.eq(app_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The commit the app's branch points to now (its latest pushed version's).
pub async fn set_last_commit(
    db: &impl ConnectionTrait,
    app_id: &str,
    sha: &str,
) -> Result<(), DbErr> {
    apps::Entity::update_many()
        .col_expr(apps::Column::LastCommitSha, Expr::value(sha))
        .filter(apps::Column::Id.eq(app_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The app's current version (in the transaction that records the version).
pub async fn set_current_version(
    db: &impl ConnectionTrait,
    app_id: &str,
    version: i32,
) -> Result<(), DbErr> {
    apps::Entity::update_many()
        .col_expr(apps::Column::CurrentVersion, Expr::value(version))
        .col_expr(apps::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(apps::Column::Id.eq(app_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The agent's state, kept with an accepted turn (so it always matches the stored files).
pub async fn save_agent_state(
    db: &impl ConnectionTrait,
    app_id: &str,
    state: &serde_json::Value,
) -> Result<(), DbErr> {
    apps::Entity::update_many()
        .col_expr(apps::Column::AgentState, Expr::value(state.to_string()))
        .col_expr(apps::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(apps::Column::Id.eq(app_id))
        .exec(db)
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
