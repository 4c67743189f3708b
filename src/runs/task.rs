//! The background task that owns one run: it talks to the agent, logs every client-visible event
//! before broadcasting it, hands diffs to the version pipeline, and always ends the log with
//! `done`.
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    TransactionTrait,
};
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use super::event_log::{self, StoredEvent, EVENT_DONE, EVENT_ERROR, EVENT_MESSAGE};
use super::live::{LiveBatch, LiveRun, StopReason};
use super::log_writer::LogWriter;
use crate::agent::protocol::{
    self, AgentEvent, AgentRequest, ClientEnvelope, ConversationMessage, EventContext,
    KIND_REFINEMENT_REQUEST, KIND_RUNTIME_ERROR, KIND_WIP_UPDATE,
};
use crate::agent::{AgentClient, UpstreamError};
use crate::apps::{self, NewMessage};
use crate::cluster::bus::{self, Signal};
use crate::notices;
use crate::pipeline::{DiffContext, Notice, Pending, VersionPipeline};
use crate::webhooks::{self, EventType};
use entity::runs::RunStatus;
use entity::{apps as apps_table, runs};

/// How long the end of a run (`done` and its status) is retried when the database fails.
const FINISH_RETRY_FOR: Duration = Duration::from_secs(60);

/// After an idle RefinementRequest the agent closes the stream by itself; wait this long at most.
const AFTER_REFINEMENT_GRACE: Duration = Duration::from_secs(5);

/// Everything a run needs that outlives a request.
#[derive(Clone)]
pub struct RunDeps {
    pub db: DatabaseConnection,
    pub agent: AgentClient,
    pub pipeline: VersionPipeline,
    pub turn_deadline: Duration,
    /// The group writer every run's events go through.
    pub log: LogWriter,
}

/// What the run was asked to do.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub ctx: EventContext,
    pub owner_id: String,
    pub template_id: Option<String>,
    pub settings: Option<Value>,
    /// For an app created by this run: its first message. Such an app has no other history,
    /// no agent state and no files, so the agent request needs no database reads.
    pub new_app_message: Option<String>,
    /// The gateway running it (see `runs::recovery`).
    pub runner_id: String,
    /// The day whose allowance the message was taken from, to give it back when the run
    /// cost the user nothing (see [`Turn::gives_message_back`]).
    pub usage_day: String,
}

/// What the run has seen and done so far, for its outcome.
#[derive(Debug, Default)]
struct Turn {
    /// The agent sent at least one event (keep-alives aside).
    agent_replied: bool,
    /// The last event's kind was a RefinementRequest.
    ended_with_question: bool,
    /// The app had files (a version) when the run started.
    had_files: bool,
    /// A version was created by this run.
    created_version: bool,
    /// The latest agent state not yet saved: it is saved only with an accepted turn, so the
    /// stored state always matches the stored files.
    unsaved_state: Option<Value>,
    /// Why the run's latest diff was not applied: (code, message). A later diff that applies
    /// clears it (each diff of a run repeats the earlier ones).
    rejected: Option<(String, String)>,
    /// A side effect that failed after the diff applied (a deployment): (code, reason).
    failed_effect: Option<(String, String)>,
    /// The effects of the run's versions, reported before its `done`.
    effects: Pending,
}

enum Outcome {
    /// The agent finished; `Some(text)` when its final event was a RuntimeError.
    Finished {
        agent_error: Option<String>,
    },
    Upstream(UpstreamError),
    Stopped(StopReason),
    Internal(String),
}

/// Hands events to the log writer, which broadcasts each once it is stored. Holds the run's
/// sequence counter.
struct Emitter {
    db: DatabaseConnection,
    log: LogWriter,
    live: Arc<LiveRun>,
    seq: i64,
    /// This gateway, which must still hold the run to record its end.
    runner_id: String,
}

impl Emitter {
    /// Queues the event; the writer stores it, then broadcasts it.
    async fn emit(&mut self, event: &str, data: &Value) -> Result<(), DbErr> {
        self.emit_text(event, data.to_string()).await
    }

    /// [`Self::emit`] for a payload already serialised.
    async fn emit_text(&mut self, event: &str, data: String) -> Result<(), DbErr> {
        self.seq += 1;
        let stored = StoredEvent {
            seq: self.seq,
            event: event.to_string(),
            data,
        };
        self.log.append(&self.live, Arc::new(stored)).await;
        Ok(())
    }

    /// Fails when an earlier event of this run could not be stored: a run whose log is broken
    /// stops rather than relay what nobody could resume.
    fn log_health(&self) -> Result<(), DbErr> {
        match self.live.log_failed() {
            true => Err(DbErr::Custom("the event log failed".into())),
            false => Ok(()),
        }
    }

    /// Waits for the writer, then, if an event failed, continues the sequence from that event
    /// (the writer dropped everything after it) and returns the error.
    async fn take_log_failure(&mut self) -> Option<String> {
        self.log.flush().await;
        let failure = self.live.take_log_failure()?;
        self.seq = failure.seq - 1;
        // The writer removed any later event an overlapping batch had committed; should that
        // have failed too, remove them here before the sequence continues from the failure.
        if let Err(e) = event_log::discard_from(&self.db, &self.live.run_id, failure.seq).await {
            tracing::warn!(error = %e, "could not remove events after the one that failed");
        }
        Some(failure.error)
    }

    /// Logs `done` (after the error event that the log could not store before, if any) and
    /// the run's final status in one transaction, with the `run.finished` webhooks of
    /// `owner_id`, so a client that sees `done` also sees the final status. If the database
    /// fails, live subscribers get the events at once (they must not wait) while the write is
    /// retried for up to [`FINISH_RETRY_FOR`]: until it lands the run stays active and blocks
    /// its app. Past that, start-up recovery completes it. The caller has taken any log
    /// failure ([`Self::take_log_failure`]), so everything before these events is stored.
    async fn finish(
        &mut self,
        last: RunEnd<'_>,
        ending: &RunEnding,
        owner_id: &str,
        finished: &webhooks::Event,
    ) -> Result<(), DbErr> {
        let mut events = Vec::with_capacity(2);
        let last_events = last.error.map(|e| (EVENT_ERROR, e)).into_iter();
        for (event, data) in last_events.chain([(EVENT_DONE, last.done)]) {
            self.seq += 1;
            events.push(Arc::new(StoredEvent {
                seq: self.seq,
                event: event.to_string(),
                data: data.to_string(),
            }));
        }
        let events: LiveBatch = events.into();
        let give_up_at = Instant::now() + FINISH_RETRY_FOR;
        let mut delay = Duration::from_millis(100);
        let mut announced = false;
        loop {
            let result = async {
                let txn = self.db.begin().await?;
                let run = RunRow {
                    id: &self.live.run_id,
                    runner_id: &self.runner_id,
                };
                // Not ours any more: another gateway interrupted it (and completed its log),
                // or an earlier attempt committed and only its answer was lost.
                if !finish_run(&txn, run, ending, self.seq).await? {
                    return txn.rollback().await.map(|()| 0);
                }
                for stored in events.iter() {
                    event_log::append(&txn, &self.live.run_id, stored).await?;
                }
                // Only other gateways' subscribers need the signal (see `Peers`).
                if self.log.peers().present() {
                    let logged = Signal::Logged {
                        run_id: self.live.run_id.clone(),
                        last_seq: self.seq,
                    };
                    bus::publish(&txn, &[logged]).await?;
                }
                let queued = webhooks::enqueue_event(&txn, owner_id, finished.clone()).await;
                txn.commit().await.map(|()| queued)
            }
            .await;
            // Only deliveries need the workers: most users have no webhooks.
            if result.as_ref().is_ok_and(|queued| *queued > 0) {
                crate::jobs::wake();
            }
            let result = result.map(drop);
            if result.is_ok() || Instant::now() + delay > give_up_at {
                if !announced {
                    self.live.publish(events);
                }
                return result;
            }
            if let Err(e) = &result {
                tracing::warn!(error = %e, "could not record the end of the run; retrying");
            }
            if !announced {
                self.live.publish(events.clone());
                announced = true;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// The error event of a run the gateway itself failed: (code, what the user reads).
const INTERNAL_ERROR: (&str, &str) = (
    "internal_error",
    "The gateway failed while relaying this run.",
);

/// A run's last events: `done`, after the error event when the log could not store it before.
struct RunEnd<'a> {
    error: Option<&'a Value>,
    done: &'a Value,
}

pub async fn drive(deps: RunDeps, spec: RunSpec, live: Arc<LiveRun>) {
    let mut emitter = Emitter {
        db: deps.db.clone(),
        log: deps.log.clone(),
        live: live.clone(),
        seq: 0,
        runner_id: spec.runner_id.clone(),
    };
    let mut turn = Turn::default();
    let outcome = relay(&deps, &spec, &live, &mut emitter, &mut turn).await;
    // An event the log could not store fails the run, even when the agent finished: its
    // subscribers never got that event and a resume cannot give it back.
    let outcome = match (outcome, emitter.take_log_failure().await) {
        (stopped @ Outcome::Stopped(_), _) => stopped,
        (_, Some(error)) => Outcome::Internal(format!("the event log failed: {error}")),
        (outcome, None) => outcome,
    };
    if let Outcome::Upstream(e) = &outcome {
        tracing::warn!(run_id = %spec.ctx.run_id, code = e.code(), reason = %e, "the agent failed");
    }
    // The turn is accepted when the agent finished and its changes applied: only then does
    // its agent state replace the stored one.
    if matches!(outcome, Outcome::Finished { agent_error: None }) && turn.rejected.is_none() {
        if let Some(state) = turn.unsaved_state.take() {
            if let Err(e) =
                Box::pin(apps::save_agent_state(&deps.db, &spec.ctx.app_id, &state)).await
            {
                tracing::error!(error = %e, "could not save the agent state");
            }
        }
    }
    let error_event = match &outcome {
        Outcome::Finished { .. } => None,
        Outcome::Upstream(e) => Some((e.code(), e.to_string())),
        Outcome::Stopped(StopReason::Cancelled) => {
            Some(("run_cancelled", "The run was cancelled.".to_string()))
        }
        Outcome::Stopped(StopReason::Interrupted) => Some((
            "run_interrupted",
            "The gateway shut down while this run was active. Send the message again to retry."
                .to_string(),
        )),
        Outcome::Internal(_) => Some((INTERNAL_ERROR.0, INTERNAL_ERROR.1.to_string())),
    };
    // Side effects of the run (a deployment) report before `done`; a stopped run does not wait.
    let wait = !matches!(outcome, Outcome::Stopped(_));
    let effects = std::mem::take(&mut turn.effects);
    // A run stopped while it waits (the gateway shutting down) hands its effects over and ends.
    let live = emitter.live.clone();
    // Boxed, like every await of the run's rare steps: a task keeps room for the largest state
    // of any await in it for as long as it lives, and an idle run should not carry a diff
    // pipeline's worth of it.
    let notices = Box::pin(deps.pipeline.finish(effects, wait, live.cancelled())).await;
    if let Err(e) = Box::pin(emit_notices(
        &deps,
        &spec.ctx,
        &mut emitter,
        &mut turn,
        notices,
    ))
    .await
    {
        tracing::error!(error = %format!("{e:#}"), "could not log the run's final notices");
    }
    if let Some((code, text)) = &error_event {
        if let Err(e) = Box::pin(emit_error(&deps, &spec.ctx, &mut emitter, code, text)).await {
            tracing::error!(error = %format!("{e:#}"), "could not log the run's error event");
        }
    }
    // A notice or the error event the log could not store (a full disk): the writer dropped
    // it and whatever followed, so the run fails, and its error event goes again with `done`.
    let mut outcome = outcome;
    let mut last_error = None;
    if let Some(failure) = emitter.take_log_failure().await {
        tracing::error!(error = %failure, "the run's last events could not be logged");
        let (code, text) = match error_event {
            Some((code, text)) => (code, text),
            None => {
                outcome = Outcome::Internal(format!("the event log failed: {failure}"));
                (INTERNAL_ERROR.0, INTERNAL_ERROR.1.to_string())
            }
        };
        last_error = Some(protocol::error_payload(&spec.ctx, code, &text));
    }
    let ending = RunEnding::of(&outcome, &turn);
    if turn.gives_message_back(&outcome) {
        Box::pin(give_message_back(&deps, &spec)).await;
    }
    let done = protocol::done_payload(&spec.ctx);
    let finished = run_finished_event(&spec, &ending);
    let last = RunEnd {
        error: last_error.as_ref(),
        done: &done,
    };
    if let Err(e) = Box::pin(emitter.finish(last, &ending, &spec.owner_id, &finished)).await {
        tracing::error!(error = %e, "could not record the end of the run; recovery will add it");
    }
    let status = ending.status;
    let metrics = crate::metrics::metrics();
    metrics
        .runs
        .get_or_create(&crate::metrics::Outcome {
            outcome: status.as_str().to_string(),
        })
        .inc();
    if let Outcome::Upstream(e) = &outcome {
        metrics
            .upstream_errors
            .get_or_create(&crate::metrics::Kind {
                kind: e.code().to_string(),
            })
            .inc();
    }
    tracing::info!(run_id = %spec.ctx.run_id, status = status.as_str(), code = ending.code.as_deref(), events = emitter.seq, "run finished");
}

/// The `run.finished` webhook event: how the run ended (`outcome`: its final status).
fn run_finished_event(spec: &RunSpec, ending: &RunEnding) -> webhooks::Event {
    run_finished(
        &spec.ctx,
        ending.status,
        ending.code.as_deref(),
        ending.error.as_deref(),
    )
}

/// The `run.finished` webhook event of a run that ended `status`.
pub(super) fn run_finished(
    ctx: &EventContext,
    status: RunStatus,
    code: Option<&str>,
    error: Option<&str>,
) -> webhooks::Event {
    webhooks::Event::new(
        EventType::RunFinished,
        &ctx.app_id,
        serde_json::json!({
            "runId": ctx.run_id,
            "appId": ctx.app_id,
            "traceId": ctx.trace_id,
            "outcome": status.as_str(),
            "errorCode": code,
            "error": error,
        }),
    )
}

/// How a run ends, as its row records it.
struct RunEnding {
    status: RunStatus,
    /// A stable code for why a failed (or stopped) run did not succeed.
    code: Option<String>,
    error: Option<String>,
}

impl RunEnding {
    /// A run succeeds only when the agent finished, its changes applied and their deployment
    /// (when one reported back) did not fail.
    fn of(outcome: &Outcome, turn: &Turn) -> Self {
        let failed = |code: &str, error: String| Self {
            status: RunStatus::Failed,
            code: Some(code.to_string()),
            error: Some(error),
        };
        match outcome {
            Outcome::Finished {
                agent_error: Some(text),
            } => failed("agent_error", text.clone()),
            Outcome::Finished { agent_error: None } => {
                match turn.rejected.as_ref().or(turn.failed_effect.as_ref()) {
                    Some((code, message)) => failed(code, message.clone()),
                    None => Self {
                        status: RunStatus::Succeeded,
                        code: None,
                        error: None,
                    },
                }
            }
            Outcome::Upstream(e) => failed(e.code(), e.to_string()),
            Outcome::Stopped(StopReason::Cancelled) => Self {
                status: RunStatus::Cancelled,
                code: Some("run_cancelled".into()),
                error: Some("cancelled by the user".into()),
            },
            Outcome::Stopped(StopReason::Interrupted) => Self {
                status: RunStatus::Interrupted,
                code: Some("run_interrupted".into()),
                error: Some("the gateway shut down while this run was active".into()),
            },
            Outcome::Internal(text) => failed("internal_error", text.clone()),
        }
    }
}

impl Turn {
    /// A run costs the user no message when it failed before the agent said anything, or when
    /// an app that has no files yet only got a question back (app.build's promise: questions
    /// before the first app do not count).
    fn gives_message_back(&self, outcome: &Outcome) -> bool {
        match outcome {
            Outcome::Upstream(_)
            | Outcome::Internal(_)
            | Outcome::Stopped(StopReason::Interrupted) => !self.agent_replied,
            Outcome::Finished { agent_error: None } => {
                self.ended_with_question && !self.created_version && !self.had_files
            }
            _ => false,
        }
    }
}

async fn relay(
    deps: &RunDeps,
    spec: &RunSpec,
    live: &LiveRun,
    emitter: &mut Emitter,
    turn: &mut Turn,
) -> Outcome {
    let (request, base_version) = match Box::pin(build_request(deps, spec)).await {
        Ok(built) => built,
        Err(e) => return Outcome::Internal(format!("could not prepare the agent request: {e:#}")),
    };
    turn.had_files = base_version.is_some();
    let mut deadline = Instant::now() + deps.turn_deadline;
    let deadline_error = UpstreamError::Deadline(deps.turn_deadline.as_secs());
    // Made once for the whole turn: a cancellation future and a timer made anew for every
    // event cost more than parsing it.
    let cancelled = live.cancelled();
    let turn_over = tokio::time::sleep_until(deadline);
    tokio::pin!(cancelled, turn_over);
    let mut stream = tokio::select! {
        biased;
        _ = &mut cancelled => return Outcome::Stopped(live.stop_reason().unwrap_or(StopReason::Cancelled)),
        _ = &mut turn_over => return Outcome::Upstream(deadline_error),
        opened = deps.agent.open(&request).instrument(tracing::info_span!("agent.connect")) => match opened {
            Ok(stream) => stream,
            Err(e) => return Outcome::Upstream(e),
        },
    };
    let envelope = ClientEnvelope::new(&spec.ctx);
    let mut awaiting_close = false;
    // Time to first event: open from the agent's answer until its first real event.
    let mut first_event = Some(tracing::info_span!("agent.first_event"));
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut cancelled => return Outcome::Stopped(live.stop_reason().unwrap_or(StopReason::Cancelled)),
            _ = &mut turn_over => {
                return if awaiting_close { Outcome::Finished { agent_error: None } } else { Outcome::Upstream(deadline_error) };
            }
            next = stream.next_event() => next,
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) if awaiting_close => return Outcome::Finished { agent_error: None },
            Ok(None) => return Outcome::Upstream(UpstreamError::EndedWithoutFinal),
            // The turn already has its answer; a rough close after it loses nothing.
            Err(_) if awaiting_close => return Outcome::Finished { agent_error: None },
            Err(e) => return Outcome::Upstream(e),
        };
        if event.is_keep_alive() {
            continue;
        }
        drop(first_event.take());
        turn.agent_replied = true;
        turn.ended_with_question = event.kind == KIND_REFINEMENT_REQUEST;
        let handled = handle_event(deps, spec, &envelope, emitter, turn, &event, base_version);
        if let Err(e) = handled.await {
            return Outcome::Internal(format!("{e:#}"));
        }
        if event.idle {
            if event.kind == KIND_REFINEMENT_REQUEST {
                awaiting_close = true;
                deadline = deadline.min(Instant::now() + AFTER_REFINEMENT_GRACE);
                turn_over.as_mut().reset(deadline);
                continue;
            }
            let agent_error = (event.kind == KIND_RUNTIME_ERROR).then(|| event.text());
            return Outcome::Finished { agent_error };
        }
    }
}

async fn handle_event(
    deps: &RunDeps,
    spec: &RunSpec,
    envelope: &ClientEnvelope,
    emitter: &mut Emitter,
    turn: &mut Turn,
    event: &AgentEvent,
    base_version: Option<i32>,
) -> anyhow::Result<()> {
    let ctx = &spec.ctx;
    emitter.log_health()?;
    if let Some(state) = &event.agent_state {
        turn.unsaved_state = Some(state.clone());
    }
    // The history first: a client that refetches it on seeing the event finds the event there.
    if event.kind != KIND_WIP_UPDATE {
        let metadata = serde_json::json!({
            "status": if event.idle { "idle" } else { "running" },
            "app_name": event.app_name,
            "commit_message": event.commit_message,
        });
        Box::pin(apps::append_message(
            &deps.db,
            NewMessage {
                app_id: &ctx.app_id,
                run_id: Some(&ctx.run_id),
                role: "assistant",
                kind: &event.kind,
                content: &event.text(),
                metadata: Some(&metadata),
            },
        ))
        .await?;
    }
    emitter
        .emit_text(EVENT_MESSAGE, protocol::client_message(envelope, event))
        .await?;
    let Some(diff) = event.unified_diff.as_deref() else {
        return Ok(());
    };
    if crate::runs::is_noop_diff(diff) {
        return Ok(());
    }
    let diff_ctx = DiffContext {
        app_id: ctx.app_id.clone(),
        run_id: ctx.run_id.clone(),
        owner_id: spec.owner_id.clone(),
        app_name: event.app_name.clone(),
        commit_message: event.commit_message.clone(),
        base_version,
    };
    let notices = Box::pin(deps.pipeline.apply(&diff_ctx, diff, &mut turn.effects)).await;
    let applied = !notices.iter().any(|n| matches!(n, Notice::Rejected { .. }));
    Box::pin(emit_notices(deps, ctx, emitter, turn, notices)).await?;
    if applied {
        // A run's diffs are cumulative against the files it sent, so the last one decides:
        // an earlier rejected diff that a later one supersedes no longer fails the turn.
        turn.rejected = None;
        // The files now match what the agent believes: keep its state with them.
        if let Some(state) = turn.unsaved_state.take() {
            Box::pin(apps::save_agent_state(&deps.db, &ctx.app_id, &state)).await?;
        }
    }
    Ok(())
}

/// Sends the pipeline's notices as events, each kept in the app's history first.
async fn emit_notices(
    deps: &RunDeps,
    ctx: &EventContext,
    emitter: &mut Emitter,
    turn: &mut Turn,
    notices: Vec<Notice>,
) -> anyhow::Result<()> {
    for notice in notices {
        match notice {
            Notice::Platform { text, metadata } => {
                if metadata.get("type").and_then(Value::as_str) == Some("version_created") {
                    turn.created_version = true;
                }
                let shaped = notices::shape(&text, &metadata);
                if let Some(failure) = &shaped.failure {
                    turn.failed_effect.get_or_insert_with(|| failure.clone());
                }
                record_gateway_row(
                    deps,
                    ctx,
                    shaped.kind,
                    &shaped.text,
                    &shaped.message_metadata,
                )
                .await?;
                emitter
                    .emit(EVENT_MESSAGE, &protocol::platform_message(ctx, &shaped))
                    .await?;
            }
            Notice::Error { code, message } => {
                emit_error(deps, ctx, emitter, &code, &message).await?;
            }
            Notice::Rejected { code, message } => {
                turn.rejected = Some((code.clone(), message.clone()));
                emit_error(deps, ctx, emitter, &code, &message).await?;
            }
        }
    }
    Ok(())
}

/// An `error` event, kept in the app's history first as a `RuntimeError`, so a reload still
/// shows why a run failed. The event goes out even when the history row cannot be written (a
/// full disk): the stream must say why the run failed.
async fn emit_error(
    deps: &RunDeps,
    ctx: &EventContext,
    emitter: &mut Emitter,
    code: &str,
    text: &str,
) -> anyhow::Result<()> {
    let metadata = notices::error_metadata(code);
    let recorded = record_gateway_row(deps, ctx, KIND_RUNTIME_ERROR, text, &metadata).await;
    emitter
        .emit(EVENT_ERROR, &protocol::error_payload(ctx, code, text))
        .await?;
    recorded.context("the error could not be kept in the app's history")?;
    Ok(())
}

/// Keeps something the gateway told the user in the app's history (role `platform`: never
/// sent back to the agent as conversation).
async fn record_gateway_row(
    deps: &RunDeps,
    ctx: &EventContext,
    kind: &str,
    text: &str,
    metadata: &Value,
) -> Result<(), DbErr> {
    apps::append_message(
        &deps.db,
        NewMessage {
            app_id: &ctx.app_id,
            run_id: Some(&ctx.run_id),
            role: "platform",
            kind,
            content: text,
            metadata: Some(metadata),
        },
    )
    .await
}

/// Returns the run's message to the user's daily allowance (best effort: a failure only costs
/// the user one message).
async fn give_message_back(deps: &RunDeps, spec: &RunSpec) {
    match crate::limits::give_back(&deps.db, &spec.owner_id, &spec.usage_day).await {
        Ok(()) => tracing::info!(run_id = %spec.ctx.run_id, "the run cost no message; given back"),
        Err(e) => tracing::warn!(error = %e, "could not give the run's message back"),
    }
}

/// The agent request, and the version of the files it carries as `allFiles`.
async fn build_request(
    deps: &RunDeps,
    spec: &RunSpec,
) -> anyhow::Result<(AgentRequest, Option<i32>)> {
    let ctx = &spec.ctx;
    if let Some(message) = &spec.new_app_message {
        let request = AgentRequest {
            application_id: ctx.app_id.clone(),
            trace_id: ctx.trace_id.clone(),
            all_messages: vec![ConversationMessage {
                role: "user".into(),
                kind: None,
                content: message.clone(),
            }],
            agent_state: None,
            all_files: None,
            template_id: spec.template_id.clone(),
            settings: spec.settings.clone(),
        };
        return Ok((request, None));
    }
    let history = apps::history(&deps.db, &ctx.app_id).await?;
    let all_messages = history
        .into_iter()
        .filter(|m| m.role == "user" || m.role == "assistant")
        // The agent validates assistant kinds as an enum: a passed-through unknown kind would
        // make every later turn fail with a 422.
        .filter(|m| m.role == "user" || protocol::is_agent_kind(&m.kind))
        .filter(|m| m.role == "user" || !m.content.is_empty())
        .map(|m| ConversationMessage {
            kind: (m.role == "assistant").then(|| m.kind.clone()),
            role: m.role,
            content: m.content,
        })
        .collect();
    let app = apps_table::Entity::find_by_id(ctx.app_id.clone())
        .one(&deps.db)
        .await?;
    let agent_state = app
        .and_then(|a| a.agent_state)
        .and_then(|s| serde_json::from_str::<Value>(&s).ok());
    let snapshot = deps.pipeline.current_files(&ctx.app_id).await?;
    let request = AgentRequest {
        application_id: ctx.app_id.clone(),
        trace_id: ctx.trace_id.clone(),
        all_messages,
        agent_state,
        all_files: snapshot.files,
        template_id: spec.template_id.clone(),
        settings: spec.settings.clone(),
    };
    Ok((request, snapshot.version))
}

/// A run as its runner knows it.
#[derive(Clone, Copy)]
struct RunRow<'a> {
    id: &'a str,
    runner_id: &'a str,
}

/// Records the run's final status, if it is still active under this runner; false otherwise.
async fn finish_run(
    db: &impl ConnectionTrait,
    run: RunRow<'_>,
    ending: &RunEnding,
    last_seq: i64,
) -> Result<bool, DbErr> {
    let updated = runs::Entity::update_many()
        .col_expr(runs::Column::Status, Expr::value(ending.status))
        .col_expr(runs::Column::Error, Expr::value(ending.error.clone()))
        .col_expr(runs::Column::ErrorCode, Expr::value(ending.code.clone()))
        .col_expr(runs::Column::LastSeq, Expr::value(last_seq))
        .col_expr(runs::Column::FinishedAt, Expr::value(chrono::Utc::now()))
        .filter(runs::Column::Id.eq(run.id))
        .filter(runs::Column::RunnerId.eq(run.runner_id))
        .filter(runs::Column::Status.is_in(super::ACTIVE_STATUSES))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}
