//! [`DeployLog`]: where one deployment step writes its log. Lines are masked as they come, then
//! a writer task stores them in batches (one transaction per [`MAX_BATCH`] lines or per
//! [`FLUSH_EVERY`], whichever comes first), so a chatty build costs a few writes a second, not
//! one per line. Output arrives in chunks and is cut into lines first: a secret split across two
//! chunks is still masked whole. Storing is best effort: a failed write is logged and the
//! deployment goes on.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use super::mask::Mask;
use super::store::{self, NewLine};
use entity::deployment_logs::LogStream;

const MAX_BATCH: usize = 256;
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Longer lines are cut (a minified bundle printed whole is not worth storing).
pub const MAX_LINE_BYTES: usize = 4096;

enum Message {
    Line(NewLine),
    /// A provider message: stored only if not stored before.
    Once(NewLine),
    Flush(oneshot::Sender<()>),
}

/// A cheap handle (clone it freely); [`DeployLog::discard`] writes nowhere.
#[derive(Clone, Default)]
pub struct DeployLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    sender: mpsc::UnboundedSender<Message>,
    mask: Mutex<Mask>,
    /// Unfinished lines of stdout and stderr.
    partial: Mutex<[Vec<u8>; 2]>,
}

impl std::fmt::Debug for DeployLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Some(_) => "DeployLog",
            None => "DeployLog(discard)",
        })
    }
}

impl DeployLog {
    /// Writes the deployment's lines, masked by `mask`, keeping the last `bound`.
    pub fn start(db: DatabaseConnection, deployment_id: &str, bound: usize, mask: Mask) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(
            db,
            deployment_id.to_string(),
            bound,
            receiver,
        ));
        Self {
            inner: Some(Arc::new(Inner {
                sender,
                mask: Mutex::new(mask),
                partial: Mutex::new([Vec::new(), Vec::new()]),
            })),
        }
    }

    /// A log that keeps nothing (a provider used outside a deployment job).
    pub fn discard() -> Self {
        Self::default()
    }

    /// Masks these too from now on (credentials a provider obtains while it works).
    pub fn mask_also<S: AsRef<str>>(&self, secrets: impl IntoIterator<Item = S>) {
        if let Some(inner) = &self.inner {
            if let Ok(mut mask) = inner.mask.lock() {
                mask.extend(secrets);
            }
        }
    }

    /// One line on `stream` (a multi-line text becomes several lines).
    pub fn line(&self, stream: LogStream, text: &str) {
        for line in text.lines() {
            self.send(stream, line.as_bytes(), false);
        }
    }

    /// The provider's messages about its deployment: it repeats them on every poll, so each
    /// text is stored once.
    pub fn provider_messages<S: AsRef<str>>(&self, messages: &[S]) {
        for message in messages {
            for line in message.as_ref().lines().filter(|l| !l.trim().is_empty()) {
                self.send(LogStream::Provider, line.trim().as_bytes(), true);
            }
        }
    }

    /// A chunk of a tool's output (`stdout` or `stderr`); complete lines are sent as they form.
    pub fn output(&self, stream: LogStream, chunk: &[u8]) {
        let Some(inner) = &self.inner else {
            return;
        };
        let complete = {
            let Ok(mut partial) = inner.partial.lock() else {
                return;
            };
            let buffer = &mut partial[output_index(stream)];
            buffer.extend_from_slice(chunk);
            match buffer.iter().rposition(|b| *b == b'\n') {
                Some(end) => buffer.drain(..=end).collect::<Vec<u8>>(),
                None if buffer.len() > MAX_LINE_BYTES => std::mem::take(buffer),
                None => Vec::new(),
            }
        };
        for line in complete.split(|b| *b == b'\n') {
            if !line.is_empty() {
                self.send(stream, line, false);
            }
        }
    }

    /// Sends what is left of unfinished output lines and waits until every line so far is
    /// stored (or failed to be).
    pub async fn flush(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        let rest = match inner.partial.lock() {
            Ok(mut partial) => [
                std::mem::take(&mut partial[0]),
                std::mem::take(&mut partial[1]),
            ],
            Err(_) => Default::default(),
        };
        for (stream, rest) in [LogStream::Stdout, LogStream::Stderr].into_iter().zip(rest) {
            if !rest.is_empty() {
                self.send(stream, &rest, false);
            }
        }
        let (done, stored) = oneshot::channel();
        if inner.sender.send(Message::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }

    fn send(&self, stream: LogStream, bytes: &[u8], once: bool) {
        let Some(inner) = &self.inner else {
            return;
        };
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches('\r');
        let masked = match inner.mask.lock() {
            Ok(mask) => mask.apply(text),
            // Never store what could not be masked.
            Err(_) => return,
        };
        let line = NewLine::now(stream, cut(masked));
        let message = if once {
            Message::Once(line)
        } else {
            Message::Line(line)
        };
        let _ = inner.sender.send(message);
    }
}

fn output_index(stream: LogStream) -> usize {
    usize::from(stream == LogStream::Stderr)
}

/// At most [`MAX_LINE_BYTES`], cut at a character boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_LINE_BYTES {
        let mut end = MAX_LINE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [cut]");
    }
    text
}

/// Gathers lines for up to [`FLUSH_EVERY`] and stores each batch in one transaction; ends when
/// every handle is dropped.
async fn write_batches(
    db: DatabaseConnection,
    deployment_id: String,
    bound: usize,
    mut receiver: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = Batch::default();
        let mut waiting = batch.take(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while waiting.is_none() && batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(message)) => waiting = batch.take(message),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(e) = batch.store(&db, &deployment_id, bound).await {
            tracing::warn!(deployment = %deployment_id, error = %e, "could not store deployment log lines");
        }
        super::notify();
        if let Some(waiting) = waiting {
            let _ = waiting.send(());
        }
    }
}

#[derive(Default)]
struct Batch {
    lines: Vec<NewLine>,
    once: Vec<NewLine>,
}

impl Batch {
    fn len(&self) -> usize {
        self.lines.len() + self.once.len()
    }

    /// Adds a line; a flush request ends the batch and is returned.
    fn take(&mut self, message: Message) -> Option<oneshot::Sender<()>> {
        match message {
            Message::Line(line) => self.lines.push(line),
            Message::Once(line) => self.once.push(line),
            Message::Flush(done) => return Some(done),
        }
        None
    }

    async fn store(
        mut self,
        db: &DatabaseConnection,
        deployment_id: &str,
        bound: usize,
    ) -> Result<(), sea_orm::DbErr> {
        if self.len() == 0 {
            return Ok(());
        }
        let txn = db.begin().await?;
        if !self.once.is_empty() {
            let stored = store::texts_on(&txn, deployment_id, LogStream::Provider).await?;
            let mut seen: std::collections::HashSet<String> = stored.into_iter().collect();
            for line in std::mem::take(&mut self.once) {
                if seen.insert(line.text.clone()) {
                    self.lines.push(line);
                }
            }
            self.lines.sort_by_key(|l| l.at);
        }
        let last = store::append(&txn, deployment_id, self.lines).await?;
        store::trim(&txn, deployment_id, last, bound).await?;
        txn.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_at_a_char_boundary() {
        let text = "é".repeat(MAX_LINE_BYTES);
        let cut = cut(text);
        assert!(cut.ends_with(" [cut]"));
        assert!(cut.len() <= MAX_LINE_BYTES + " [cut]".len());
    }
}
