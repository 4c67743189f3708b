//! Deployment logs: every status change (with its reason), the gateway's own steps, the image
//! builder's output and the provider's messages, as numbered lines per deployment. Writers
//! mask secrets before anything is stored ([`Mask`]) and batch their writes ([`DeployLog`]);
//! readers follow `seq`, woken in-process by [`notify`] and by polling for lines written on
//! other gateways.
pub mod mask;
pub mod sink;
pub mod store;

use std::sync::OnceLock;

use sea_orm::{ConnectionTrait, DbErr};
use tokio::sync::Notify;

pub use entity::deployment_logs::{LogStream, Model as LogLine};
pub use mask::Mask;
pub use sink::DeployLog;
pub use store::NewLine;

use entity::deployments::DeploymentStatus;

fn written() -> &'static Notify {
    static WRITTEN: OnceLock<Notify> = OnceLock::new();
    WRITTEN.get_or_init(Notify::new)
}

/// Wakes this process's log readers: lines were stored (or a deployment's status changed).
pub fn notify() {
    written().notify_waiters();
}

/// Resolves at the next [`notify`]; create it before reading, so no wake-up is missed.
pub fn notified() -> tokio::sync::futures::Notified<'static> {
    written().notified()
}

/// Appends the status line for a deployment that moved to `status`, in the caller's
/// transaction (so the line commits with the change). `detail` is the reason or the URL.
pub async fn status_changed(
    db: &impl ConnectionTrait,
    deployment_id: &str,
    status: DeploymentStatus,
    detail: Option<&str>,
) -> Result<(), DbErr> {
    let text = match detail.map(str::trim).filter(|d| !d.is_empty()) {
        Some(detail) => format!("{}: {detail}", status.as_str()),
        None => status.as_str().to_string(),
    };
    store::append(
        db,
        deployment_id,
        vec![NewLine::now(LogStream::Status, text)],
    )
    .await?;
    Ok(())
}
