//! `GET /deployments/:id/logs`: a deployment's log lines. A finished deployment answers with
//! JSON; a running one with Server-Sent Events (one `line` event per line, `id:` its seq) that
//! follow the log until the deployment ends and every line is sent, then `end`. Either is had
//! on request with `Accept`. A stream resumes after `Last-Event-ID` without loss or repeats.
use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::parse_id;
use super::openapi::{ErrorBody, Internal, Unauthorized};
use super::runs::last_event_id;
use super::sse::event_stream_response;
use crate::auth::AuthUser;
use crate::deploy::logs::{self, store, LogLine, LogStream};
use crate::deploy::records::{self, FAILED};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use entity::deployments;

/// Lines read per query while streaming.
const PAGE: u64 = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(deployment_logs))
}

/// One line of a deployment's log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct LogLineView {
    /// Counts from 1 per deployment; 0 is the note on dropped lines.
    seq: i64,
    at: DateTime<Utc>,
    /// `status` (a status change and its reason), `deploy` (the gateway's steps), `stdout`,
    /// `stderr` (the image builder), `provider` (the provider's messages) or `note`.
    #[schema(example = "status")]
    stream: &'static str,
    #[schema(example = "failed: build step 1 exited with exit status: 1")]
    text: String,
}

impl From<LogLine> for LogLineView {
    fn from(line: LogLine) -> Self {
        Self {
            seq: line.seq,
            at: line.at,
            stream: line.stream.as_str(),
            text: line.text,
        }
    }
}

/// A deployment's whole stored log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeploymentLogs {
    deployment_id: String,
    app_id: String,
    version: i32,
    #[schema(example = "failed")]
    status: String,
    /// Still queued, building or deploying: more lines may come.
    active: bool,
    /// Lines dropped past `deploy.log_lines` (the oldest go first).
    dropped: i64,
    /// The seq of the line that says why a failed deployment failed.
    failed_line: Option<i64>,
    lines: Vec<LogLineView>,
}

/// A deployment's log: JSON, or live as Server-Sent Events.
///
/// A finished deployment answers with JSON, a running one with `text/event-stream`; `Accept`
/// picks either. Events: `line` (`id:` its seq, data a line), `note` (lines were dropped
/// before the next one), `end` (`{status, failedLine}`, the deployment ended and every line was
/// sent) and `error`. Reconnect with the last `id:` seen to resume.
#[utoipa::path(
    get,
    path = "/deployments/{id}/logs",
    operation_id = "deployment_logs",
    tag = "deployments",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = "uuid", description = "Deployment id"),
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "Stream only the lines after this seq"),
        ("lastEventId" = Option<i64>, Query, minimum = 0, description = "The same, for clients that cannot set headers; the header wins"),
    ),
    responses(
        (status = 200, description = "The log: JSON, or SSE events `line`, `note`, `end`, `error`", content(
            (DeploymentLogs = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 204, description = "The deployment has ended and no line follows `Last-Event-ID`"),
        (status = 400, description = "`invalid_id`: the id is not a UUID; `invalid_last_event_id`: the resume point is not a non-negative integer", body = ErrorBody, examples(
            ("invalid_id" = (value = json!({"code": "invalid_id", "message": "deployment id \"x\" is not a UUID"}))),
            ("invalid_last_event_id" = (value = json!({"code": "invalid_last_event_id", "message": "Last-Event-ID must be a non-negative integer, got \"-1\""}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such deployment of the caller's", body = ErrorBody,
            example = json!({"code": "not_found", "message": "deployment not found"})),
        (status = 500, response = Internal),
    )
)]
async fn deployment_logs(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_id(&id, "deployment")?.to_string();
    let deployment = records::find(&state.db, &id)
        .await?
        .filter(|d| d.owner_id == user.id)
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    let after = last_event_id(&headers, &query)?;
    let active = !records::is_terminal(deployment.status);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let stream =
        accept.contains("text/event-stream") || (active && !accept.contains("application/json"));
    if !stream {
        let limit = state.config.deploy.log_lines as u64 * 2 + 64;
        return Ok(Json(snapshot(&state.db, deployment, limit).await?).into_response());
    }
    if !active && after >= deployment.log_seq {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let follow = Follow {
        db: state.db.clone(),
        id,
        cursor: after,
        poll: Duration::from_millis(state.config.deploy.poll_interval_ms.clamp(50, 2000)),
        ended: false,
    };
    let blocks = futures::stream::unfold(follow, |mut follow| async move {
        let block = follow.next_block().await?;
        Some((block, follow))
    });
    Ok(event_stream_response(
        blocks,
        state.keep_alive(),
        HeaderMap::new(),
    ))
}

async fn snapshot(
    db: &DatabaseConnection,
    deployment: deployments::Model,
    limit: u64,
) -> Result<DeploymentLogs, sea_orm::DbErr> {
    let lines = store::after(db, &deployment.id, store::NOTE_SEQ - 1, limit).await?;
    let failed_line = failed_line(db, &deployment).await?;
    let dropped = match lines.first() {
        Some(note) if note.stream == LogStream::Note => {
            lines.get(1).map_or(deployment.log_seq, |l| l.seq - 1)
        }
        _ => 0,
    };
    let deployment = records::as_of_now(deployment);
    Ok(DeploymentLogs {
        active: !records::is_terminal(deployment.status),
        deployment_id: deployment.id,
        app_id: deployment.app_id,
        version: deployment.version,
        status: deployment.status.as_str().to_string(),
        dropped,
        failed_line,
        lines: lines.into_iter().map(LogLineView::from).collect(),
    })
}

/// The status line a failed deployment ended with (its reason).
async fn failed_line(
    db: &DatabaseConnection,
    deployment: &deployments::Model,
) -> Result<Option<i64>, sea_orm::DbErr> {
    if deployment.status != FAILED {
        return Ok(None);
    }
    store::last_status_line(db, &deployment.id).await
}

/// Follows one deployment's log from `cursor` on.
struct Follow {
    db: DatabaseConnection,
    id: String,
    cursor: i64,
    /// How often to look for lines written by another gateway (this one's wake at once).
    poll: Duration,
    ended: bool,
}

impl Follow {
    /// The next lines, framed; `end` once the deployment is over and every line is out.
    async fn next_block(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        loop {
            let woken = logs::notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.read().await {
                Ok(Some(block)) => return Some(block),
                // The deployment is gone (its app was purged): nothing more will come.
                Ok(None) if self.ended => return None,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(deployment = %self.id, error = %e, "reading a deployment log failed");
                    self.ended = true;
                    let data = json!({
                        "code": "deployment_log_unavailable",
                        "message": "The log could not be read; reconnect with Last-Event-ID to resume.",
                    });
                    return Some(Bytes::from(format!("event: error\ndata: {data}\n\n")));
                }
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Lines after the cursor, or `end`, or None when there is nothing yet. The deployment is
    /// read before its lines: a terminal status seen here means every line up to its
    /// `log_seq` is already committed.
    async fn read(&mut self) -> Result<Option<Bytes>, sea_orm::DbErr> {
        let Some(deployment) = records::find(&self.db, &self.id).await? else {
            self.ended = true;
            return Ok(None);
        };
        let lines = store::after(&self.db, &self.id, self.cursor, PAGE).await?;
        if !lines.is_empty() {
            let mut out = Vec::new();
            for line in lines {
                if line.seq > self.cursor + 1 {
                    let dropped = line.seq - self.cursor - 1;
                    let data = json!({ "dropped": dropped, "text": format!("{dropped} earlier lines were dropped") });
                    out.extend_from_slice(format!("event: note\ndata: {data}\n\n").as_bytes());
                }
                self.cursor = line.seq;
                let data = serde_json::to_string(&LogLineView::from(line)).unwrap_or_default();
                out.extend_from_slice(
                    format!("event: line\nid: {}\ndata: {data}\n\n", self.cursor).as_bytes(),
                );
            }
            return Ok(Some(Bytes::from(out)));
        }
        if records::is_terminal(deployment.status) && self.cursor >= deployment.log_seq {
            self.ended = true;
            let failed_line = failed_line(&self.db, &deployment).await?;
            let data = json!({
                "status": deployment.status.as_str(),
                "failedLine": failed_line,
                "error": deployment.error,
            });
            return Ok(Some(Bytes::from(format!("event: end\ndata: {data}\n\n"))));
        }
        Ok(None)
    }
}
