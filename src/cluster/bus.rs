//! The signals gateways send each other through PostgreSQL `NOTIFY` on one channel: "a run's log
//! grew to seq N" (so subscribers on other gateways read the new rows), and "stop this run" (a
//! cancel, an app's deletion, a lease taken over) for whichever gateway runs it. A signal is a
//! hint, never the data: events are always read from the log, and a lost notification costs
//! latency (the readers' slow re-check finds the rows), never an event.
//!
//! On SQLite there is one gateway, so publishing does nothing.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use tokio_util::sync::CancellationToken;

/// The channel every gateway listens on.
pub const CHANNEL: &str = "agentgate_runs";
/// PostgreSQL refuses payloads of 8,000 bytes or more; stay clear of it.
const MAX_PAYLOAD: usize = 7900;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The run's log holds events up to `last_seq` (committed).
    Logged { run_id: String, last_seq: i64 },
    /// The owner cancelled the run.
    Cancel { run_id: String },
    /// The app was deleted: stop its runs.
    AppDeleted { app_id: String },
    /// Another gateway took the run over (its lease lapsed); its runner must stop.
    LeaseLost { run_id: String },
    /// A gateway joined: the others start announcing their runs' events (see [`Peers`]).
    Joined { gateway: String },
}

impl Signal {
    /// One line: a letter, a space, the id (ids never hold spaces or newlines), and a seq.
    fn encode(&self) -> String {
        match self {
            Self::Logged { run_id, last_seq } => format!("e {run_id} {last_seq}"),
            Self::Cancel { run_id } => format!("c {run_id}"),
            Self::AppDeleted { app_id } => format!("a {app_id}"),
            Self::LeaseLost { run_id } => format!("l {run_id}"),
            Self::Joined { gateway } => format!("j {gateway}"),
        }
    }

    fn decode(line: &str) -> Option<Self> {
        let mut parts = line.split(' ');
        let (kind, id) = (parts.next()?, parts.next()?.to_string());
        let signal = match kind {
            "e" => Self::Logged {
                run_id: id,
                last_seq: parts.next()?.parse().ok()?,
            },
            "c" => Self::Cancel { run_id: id },
            "a" => Self::AppDeleted { app_id: id },
            "l" => Self::LeaseLost { run_id: id },
            "j" => Self::Joined { gateway: id },
            _ => return None,
        };
        Some(signal)
    }
}

/// Whether another gateway is live on this database. A lone gateway's subscribers all hear
/// its in-process broadcast, so its log writer announces events only while this is set: the
/// relay of a single gateway costs what it did before several were possible. Set from the
/// gateway registry at start and every heartbeat, and at once when a gateway announces itself
/// ([`Signal::Joined`]) or when signals may have been missed.
#[derive(Debug, Clone, Default)]
pub struct Peers(Arc<AtomicBool>);

impl Peers {
    pub fn present(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, present: bool) {
        self.0.store(present, Ordering::Relaxed);
    }
}

/// The signals as payloads, each below PostgreSQL's limit.
pub fn payloads(signals: &[Signal]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in signals.iter().map(Signal::encode) {
        if !current.is_empty() && current.len() + 1 + line.len() > MAX_PAYLOAD {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The signals in a payload; lines this version does not know are skipped (a newer gateway
/// may send more kinds during a rolling upgrade).
pub fn decode(payload: &str) -> Vec<Signal> {
    payload.lines().filter_map(Signal::decode).collect()
}

/// Sends `signals` on `db`: delivered when its transaction commits (at once outside one).
pub async fn publish(db: &impl ConnectionTrait, signals: &[Signal]) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres || signals.is_empty() {
        return Ok(());
    }
    for payload in payloads(signals) {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), payload.into()],
        ))
        .await?;
    }
    Ok(())
}

/// What a gateway does with the signals it hears.
pub trait SignalSink: Send + Sync {
    fn signal(&self, signal: Signal);
    /// Notifications may have been missed (the listening connection dropped): re-read
    /// everything that waits for one.
    fn resync(&self);
}

/// Listens on this gateway's own connection (not one of the pool's: closing the pool would
/// wait for it forever) until `stop`: run signals go to `sink`, job notifications wake the
/// job workers. After a lost connection it reconnects, then tells everyone to re-read, since
/// notifications sent meanwhile are gone.
pub async fn listen(
    database_url: String,
    sink: Option<Arc<dyn SignalSink>>,
    stop: CancellationToken,
) {
    use sea_orm::sqlx::postgres::PgListener;
    let resync = || {
        if let Some(sink) = &sink {
            sink.resync();
        }
        crate::jobs::wake();
    };
    let mut listener = loop {
        let connected = async {
            let mut listener = PgListener::connect(&database_url).await?;
            listener.listen_all([CHANNEL, crate::jobs::CHANNEL]).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            connected = connected => match connected {
                Ok(listener) => break listener,
                Err(e) => tracing::warn!(error = %e, "could not listen for signals; retrying"),
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    // Job notifications sent before the first LISTEN were missed (the workers' poll would
    // find their jobs anyway). Run subscribers of the first moments re-check by themselves.
    crate::jobs::wake();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            received = listener.try_recv() => match received {
                Ok(Some(notification)) if notification.channel() == CHANNEL => {
                    if let Some(sink) = &sink {
                        decode(notification.payload()).into_iter().for_each(|s| sink.signal(s));
                    }
                }
                Ok(Some(_)) => crate::jobs::wake(),
                // Lost and re-established.
                Ok(None) => {
                    tracing::warn!("the signal connection dropped and was re-established");
                    resync();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "signals interrupted; reconnecting");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    resync();
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_survive_the_round_trip() {
        let signals = vec![
            Signal::Logged {
                run_id: "r1".into(),
                last_seq: 42,
            },
            Signal::Cancel {
                run_id: "r2".into(),
            },
            Signal::AppDeleted {
                app_id: "a1".into(),
            },
            Signal::LeaseLost {
                run_id: "r3".into(),
            },
            Signal::Joined {
                gateway: "host:abc".into(),
            },
        ];
        let payloads = payloads(&signals);
        assert_eq!(payloads.len(), 1);
        assert_eq!(decode(&payloads[0]), signals);
    }

    #[test]
    fn payloads_stay_under_the_limit() {
        let signals: Vec<Signal> = (0..1000)
            .map(|i| Signal::Logged {
                run_id: uuid::Uuid::new_v4().to_string(),
                last_seq: i,
            })
            .collect();
        let payloads = payloads(&signals);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() < 8000));
        let decoded: Vec<Signal> = payloads.iter().flat_map(|p| decode(p)).collect();
        assert_eq!(decoded, signals);
    }

    #[test]
    fn unknown_lines_are_skipped() {
        assert_eq!(
            decode("x something\ne r 1\nc"),
            vec![Signal::Logged {
                run_id: "r".into(),
                last_seq: 1
            }]
        );
    }
}
