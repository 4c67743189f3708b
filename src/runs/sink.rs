//! Where a run hands the agent's diffs and where it gets the app's current files from. The relay
//! calls it in order, one diff at a time; what the sink did comes back as notices that join the
//! run's event sequence.
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use crate::agent::protocol::AgentFile;

/// Which run a diff came from, and what the agent said about it.
#[derive(Debug, Clone)]
pub struct DiffContext {
    pub app_id: String,
    pub run_id: String,
    pub owner_id: String,
    pub trace_id: String,
    pub app_name: Option<String>,
    pub commit_message: Option<String>,
    /// The version whose files the run sent as `allFiles` (None: no files were sent). The
    /// agent's diffs are cumulative against that snapshot, not against the latest version.
    pub base_version: Option<i32>,
}

/// The app's files as sent to the agent, and the version they are.
#[derive(Debug, Clone, Default)]
pub struct FileSnapshot {
    pub version: Option<i32>,
    pub files: Option<Vec<AgentFile>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkNotice {
    /// Something the gateway did, sent as a `PlatformMessage` (`metadata.type` says what).
    Platform { text: String, metadata: Value },
    /// Something that failed; sent as an `error` event. The run goes on.
    Error { code: String, message: String },
    /// The agent's changes were not applied (the files stay as they were); sent as an `error`
    /// event. The run goes on, but its turn is not accepted: it ends `failed` with this code
    /// and its agent state is not kept.
    Rejected { code: String, message: String },
}

#[async_trait]
pub trait DiffSink: Send + Sync {
    /// The files to send as `allFiles` (None when the app has none yet) and their version.
    async fn current_files(&self, app_id: &str) -> anyhow::Result<FileSnapshot>;

    async fn handle_diff(&self, ctx: &DiffContext, diff: &str) -> Vec<SinkNotice>;

    /// Called once before the run's `done` (after the agent finished, failed or was stopped);
    /// `wait` is false when the run was stopped and should end promptly.
    async fn finish_run(&self, _ctx: &DiffContext, _wait: bool) -> Vec<SinkNotice> {
        Vec::new()
    }
}

/// Records diffs without applying them; useful where no workspace is configured.
#[derive(Default)]
pub struct RecordingSink {
    seen: Mutex<Vec<(String, String, usize)>>,
}

impl RecordingSink {
    /// (app id, run id, diff length) of every diff received, in order.
    pub fn seen(&self) -> Vec<(String, String, usize)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl DiffSink for RecordingSink {
    async fn current_files(&self, _app_id: &str) -> anyhow::Result<FileSnapshot> {
        Ok(FileSnapshot::default())
    }

    async fn handle_diff(&self, ctx: &DiffContext, diff: &str) -> Vec<SinkNotice> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((ctx.app_id.clone(), ctx.run_id.clone(), diff.len()));
        }
        tracing::info!(app_id = %ctx.app_id, run_id = %ctx.run_id, bytes = diff.len(), "diff recorded");
        Vec::new()
    }
}
