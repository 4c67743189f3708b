//! Read-only git over HTTP for local repositories: the real `git upload-pack` in its stateless
//! mode (git's "smart HTTP" protocol, what `git http-backend` runs), fed the request body and
//! streamed back. Only upload-pack (fetch, clone) exists here; nothing can push.
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::git::GitError;

/// A fetch negotiation is a list of object ids; far below this even for large histories.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
const READ_CHUNK: usize = 64 * 1024;

/// The ref advertisement that answers `GET info/refs?service=git-upload-pack`.
pub async fn advertise_refs(dir: &Path) -> Result<Vec<u8>, GitError> {
    let output = upload_pack(dir, true)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(spawn_error)?;
    if !output.status.success() {
        tracing::warn!(stderr = %String::from_utf8_lossy(&output.stderr), "git upload-pack failed");
        return Err(GitError::Unavailable(
            "the repository could not be read".into(),
        ));
    }
    // Smart HTTP puts the service announcement before what upload-pack itself says.
    let mut body = pkt_line(b"# service=git-upload-pack\n");
    body.extend_from_slice(b"0000");
    body.extend_from_slice(&output.stdout);
    Ok(body)
}

/// Runs one `POST git-upload-pack` exchange: `request` (gzip-compressed when `gzip`, as git
/// sends large negotiations) goes to upload-pack's stdin while its answer streams back.
pub fn exchange<S, E>(
    dir: &Path,
    request: S,
    gzip: bool,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, GitError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut child = upload_pack(dir, false)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A client that goes away takes the process with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(GitError::Unavailable("git upload-pack has no pipes".into()));
    };
    tokio::spawn(feed(stdin, request, gzip));
    Ok(answer(child, stdout))
}

fn upload_pack(dir: &Path, advertise: bool) -> Command {
    let mut command = Command::new("git");
    // Only the repository's own configuration counts, never this machine's user or system one.
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_PROTOCOL")
        .arg("upload-pack")
        .arg("--stateless-rpc")
        .arg("--strict");
    if advertise {
        command.arg("--advertise-refs");
    }
    command.arg(dir);
    command
}

/// Copies the request into upload-pack, inflating it on the way; stops at the size cap (the
/// process then sees a truncated request and fails, which ends the answer).
async fn feed<S, E>(mut stdin: tokio::process::ChildStdin, mut request: S, gzip: bool)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut inflate = gzip.then(|| flate2::write::GzDecoder::new(Vec::new()));
    let mut total = 0usize;
    while let Some(chunk) = request.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::info!(error = %e, "git request body ended early");
                return;
            }
        };
        let plain = match inflate.as_mut() {
            Some(decoder) => {
                if let Err(e) = decoder.write_all(&chunk) {
                    tracing::info!(error = %e, "git request body is not valid gzip");
                    return;
                }
                Bytes::from(std::mem::take(decoder.get_mut()))
            }
            None => chunk,
        };
        total += plain.len();
        if total > MAX_REQUEST_BYTES {
            tracing::warn!(total, "git request body over the cap; cut off");
            return;
        }
        if stdin.write_all(&plain).await.is_err() {
            return;
        }
    }
    if let Some(decoder) = inflate {
        match decoder.finish() {
            Ok(rest) if !rest.is_empty() => {
                let _ = stdin.write_all(&rest).await;
            }
            Ok(_) => {}
            Err(e) => tracing::info!(error = %e, "git request body is not valid gzip"),
        }
    }
    // Dropping stdin closes it: upload-pack has the whole request.
}

/// Streams upload-pack's stdout; when it ends, the process is reaped and a failure logged.
fn answer(
    child: Child,
    stdout: tokio::process::ChildStdout,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(Some((child, stdout)), |state| async move {
        let (mut child, mut stdout) = state?;
        let mut buffer = vec![0u8; READ_CHUNK];
        match stdout.read(&mut buffer).await {
            Ok(0) => {
                finish(child).await;
                None
            }
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some((child, stdout))))
            }
            Err(e) => {
                let _ = child.start_kill();
                Some((Err(e), None))
            }
        }
    })
}

async fn finish(mut child: Child) {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    match child.wait().await {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!(%status, stderr = %stderr.trim(), "git upload-pack failed"),
        Err(e) => tracing::warn!(error = %e, "git upload-pack could not be waited for"),
    }
}

fn pkt_line(payload: &[u8]) -> Vec<u8> {
    let mut line = format!("{:04x}", payload.len() + 4).into_bytes();
    line.extend_from_slice(payload);
    line
}

fn spawn_error(e: std::io::Error) -> GitError {
    GitError::Unavailable(format!("cannot run git upload-pack: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkt_lines_carry_their_length_in_hex() {
        assert_eq!(
            pkt_line(b"# service=git-upload-pack\n"),
            b"001e# service=git-upload-pack\n".to_vec()
        );
    }
}
