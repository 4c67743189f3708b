//! Earlier versions of the local host stored server paths as repository and commit URLs (in
//! apps, versions, history and run events). At start, those become the URLs clients can use
//! (see [`super::urls`]), so no stored row keeps leaking a path. Idempotent: rows without the
//! repositories root are never touched, and a rewritten row no longer contains it.
use std::path::Path;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::urls::{rewrite_paths, RepoUrls};
use entity::{app_messages, app_versions, apps, run_events};

/// Rows rewritten per query: a bound on memory, whatever the history's size.
const BATCH: u64 = 500;

/// [`rewrite_stored_paths`] for the configured local host, at start; a failure is logged and
/// retried at the next start, never fatal.
pub async fn rewrite_at_start(
    config: &crate::config::Config,
    db: &DatabaseConnection,
    public_url: &str,
) {
    if config.git.host != crate::config::GitHostKind::Local {
        return;
    }
    let root = config.git_dir();
    match rewrite_stored_paths(db, &root, &RepoUrls::new(public_url)).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "stored repository paths rewritten as URLs"),
        Err(e) => tracing::warn!(error = %e, "could not rewrite stored repository paths"),
    }
}

/// Rewrites every stored path under `root` (the repositories root); returns how many rows.
pub async fn rewrite_stored_paths(
    db: &DatabaseConnection,
    root: &Path,
    urls: &RepoUrls,
) -> Result<u64, DbErr> {
    let Some(root) = std::path::absolute(root)
        .ok()
        .and_then(|r| r.to_str().map(str::to_string))
    else {
        return Ok(0);
    };
    let pattern = format!("%{root}%");
    let mut rewritten = 0;
    for app in apps::Entity::find()
        .filter(apps::Column::RepositoryUrl.like(&pattern))
        .all(db)
        .await?
    {
        if let Some(url) = app
            .repository_url
            .as_deref()
            .and_then(|u| rewrite_paths(u, &root, urls))
        {
            crate::apps::set_repository_url(db, &app.id, &url).await?;
            rewritten += 1;
        }
    }
    for version in app_versions::Entity::find()
        .filter(app_versions::Column::RepositoryUrl.like(&pattern))
        .all(db)
        .await?
    {
        if let Some(url) = version
            .repository_url
            .as_deref()
            .and_then(|u| rewrite_paths(u, &root, urls))
        {
            app_versions::Entity::update_many()
                .col_expr(app_versions::Column::RepositoryUrl, Expr::value(url))
                .filter(app_versions::Column::AppId.eq(version.app_id))
                .filter(app_versions::Column::Version.eq(version.version))
                .exec(db)
                .await?;
            rewritten += 1;
        }
    }
    // Cursors, not "until nothing matches": a row that matches but holds no repository path
    // stays as it is and must not be read again.
    let mut after_id = i64::MIN;
    loop {
        let messages = app_messages::Entity::find()
            .filter(app_messages::Column::Id.gt(after_id))
            .filter(
                app_messages::Column::Metadata
                    .like(&pattern)
                    .or(app_messages::Column::Content.like(&pattern)),
            )
            .order_by_asc(app_messages::Column::Id)
            .limit(BATCH)
            .all(db)
            .await?;
        let Some(last) = messages.last() else {
            break;
        };
        after_id = last.id;
        for message in messages {
            let content = rewrite_paths(&message.content, &root, urls);
            let metadata = message
                .metadata
                .as_deref()
                .and_then(|m| rewrite_paths(m, &root, urls));
            if content.is_none() && metadata.is_none() {
                continue;
            }
            app_messages::Entity::update_many()
                .col_expr(
                    app_messages::Column::Content,
                    Expr::value(content.unwrap_or(message.content)),
                )
                .col_expr(
                    app_messages::Column::Metadata,
                    Expr::value(metadata.or(message.metadata)),
                )
                .filter(app_messages::Column::Id.eq(message.id))
                .exec(db)
                .await?;
            rewritten += 1;
        }
    }
    let mut after: Option<(String, i64)> = None;
    loop {
        let mut query = run_events::Entity::find().filter(run_events::Column::Data.like(&pattern));
        if let Some((run, seq)) = &after {
            query = query.filter(
                run_events::Column::RunId
                    .gt(run.as_str())
                    .or(run_events::Column::RunId
                        .eq(run.as_str())
                        .and(run_events::Column::Seq.gt(*seq))),
            );
        }
        let logged = query
            .order_by_asc(run_events::Column::RunId)
            .order_by_asc(run_events::Column::Seq)
            .limit(BATCH)
            .all(db)
            .await?;
        let Some(last) = logged.last() else {
            break;
        };
        after = Some((last.run_id.clone(), last.seq));
        for row in logged {
            let Some((data, sizes)) = rewrite_row(&row, &root, urls) else {
                continue;
            };
            run_events::Entity::update_many()
                .col_expr(run_events::Column::Data, Expr::value(data))
                .col_expr(run_events::Column::Sizes, Expr::value(sizes))
                .filter(run_events::Column::RunId.eq(row.run_id))
                .filter(run_events::Column::Seq.eq(row.seq))
                .exec(db)
                .await?;
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

/// A log row with every event's paths rewritten (its data and sizes), or None when no event
/// of it holds one (or it cannot be read: it is left as it is).
fn rewrite_row(
    row: &run_events::Model,
    root: &str,
    urls: &RepoUrls,
) -> Option<(String, Option<String>)> {
    let payloads = match run_events::split(row.seq, &row.data, row.sizes.as_deref()) {
        Ok(payloads) => payloads,
        Err(e) => {
            tracing::warn!(run_id = %row.run_id, error = %e, "a log row is left as it is");
            return None;
        }
    };
    let rewritten: Vec<Option<String>> = (payloads.iter())
        .map(|payload| rewrite_paths(payload, root, urls))
        .collect();
    if rewritten.iter().all(Option::is_none) {
        return None;
    }
    let payloads =
        (payloads.iter().zip(&rewritten)).map(|(payload, new)| new.as_deref().unwrap_or(payload));
    Some(match row.sizes {
        None => (payloads.collect(), None),
        Some(_) => {
            let (data, sizes) = run_events::join(payloads);
            (data, Some(sizes))
        }
    })
}
