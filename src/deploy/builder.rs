//! Builds and pushes an app's container image with an external tool (`docker` by default).
//!
//! Each build gets a fresh private temp dir holding the version's files (with their modes). The
//! steps are argv templates run without a shell, with `{image}` and `{dir}` substituted, under
//! one overall timeout. The tool's stdout and stderr are kept as a bounded tail for the caller.
//! The temp dir is removed on every path, cancellation included (a drop guard).
//!
//! The tool gets a cleared environment: only `pass_env` comes through from the gateway, so the
//! gateway's own secrets never reach a build. Registry credentials are handed over as a
//! docker-style auth file outside the build context (`DOCKER_CONFIG`, `REGISTRY_AUTH_FILE`) and
//! as `REGISTRY_*` variables; they are redacted from the returned log.
//!
//! A timeout is reported as a permanent failure: a build that overran its budget will most
//! likely overrun it again, the job runner retries only transient errors, and the log tail
//! shows where it stalled. The whole process group is killed, so nothing keeps running.
use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::deploy::logs::{DeployLog, LogStream};
use crate::deploy::provider::DeployError;
use crate::files::{FileMode, FileTree};

/// How much of a failed build's log goes into the error message.
const ERROR_LOG_TAIL: usize = 4 * 1024;
/// How long to wait for output pipes after the tool exited (a straggler may hold them).
const PIPE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ImageBuilderSettings {
    /// The build tool, looked up on `PATH`.
    pub program: String,
    /// One argv per step, run in order inside the build dir.
    pub steps: Vec<Vec<String>>,
    /// For all steps together.
    pub timeout: Duration,
    /// Bytes of combined output to keep (the last ones).
    pub log_limit: usize,
    /// Parent of the per-build temp dirs; the system temp dir when `None`.
    pub work_root: Option<PathBuf>,
    /// Variables passed through from the gateway's environment.
    pub pass_env: Vec<String>,
}

impl Default for ImageBuilderSettings {
    fn default() -> Self {
        let argv = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        Self {
            program: "docker".to_string(),
            steps: vec![
                argv(&["build", "-t", "{image}", "{dir}"]),
                argv(&["push", "{image}"]),
            ],
            timeout: Duration::from_secs(15 * 60),
            log_limit: 64 * 1024,
            work_root: None,
            pass_env: ["PATH", "HOME", "DOCKER_HOST", "XDG_RUNTIME_DIR"]
                .iter()
                .map(|v| v.to_string())
                .collect(),
        }
    }
}

/// Credentials for pushing to the image registry.
#[derive(Debug, Clone)]
pub struct RegistryLogin {
    /// Registry host, e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    pub username: String,
    pub password: SecretString,
}

#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The tail of the tool's combined output, secrets redacted.
    pub log: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("build setup failed: {0}")]
    Setup(String),
    #[error("build tool `{program}` could not be started: {reason}")]
    Spawn { program: String, reason: String },
    #[error("build step {step} exited with {status}")]
    Failed {
        step: usize,
        status: String,
        log: String,
    },
    #[error("build timed out after {} s", .limit.as_secs())]
    TimedOut { limit: Duration, log: String },
}

impl BuildError {
    /// The captured log, when the tool ran.
    pub fn log(&self) -> Option<&str> {
        match self {
            BuildError::Failed { log, .. } | BuildError::TimedOut { log, .. } => Some(log),
            BuildError::Setup(_) | BuildError::Spawn { .. } => None,
        }
    }
}

impl From<BuildError> for DeployError {
    fn from(e: BuildError) -> Self {
        match &e {
            // Disk or temp dir trouble usually passes.
            BuildError::Setup(_) => DeployError::Transient(e.to_string()),
            BuildError::Spawn { .. } => DeployError::Permanent(e.to_string()),
            BuildError::Failed { log, .. } | BuildError::TimedOut { log, .. } => {
                DeployError::Permanent(format!("{e}\n{}", tail_str(log, ERROR_LOG_TAIL)))
            }
        }
    }
}

pub struct ImageBuilder {
    settings: ImageBuilderSettings,
}

impl ImageBuilder {
    pub fn new(settings: ImageBuilderSettings) -> Self {
        Self { settings }
    }

    /// Writes `files` into a fresh temp dir and runs every step there.
    pub async fn build_and_push(
        &self,
        files: &FileTree,
        image: &str,
        login: Option<&RegistryLogin>,
    ) -> Result<BuildOutput, BuildError> {
        (self.build_and_push_logged(files, image, login, &DeployLog::discard())).await
    }

    /// [`ImageBuilder::build_and_push`], streaming each step's command and the tool's output
    /// lines to `log` as they come (registry credentials masked).
    pub async fn build_and_push_logged(
        &self,
        files: &FileTree,
        image: &str,
        login: Option<&RegistryLogin>,
        log: &DeployLog,
    ) -> Result<BuildOutput, BuildError> {
        validate_image(image)?;
        let root = self
            .settings
            .work_root
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let work = TempDir::create(&root).await?;
        let result = self.run_in(&work, files, image, login, log).await;
        work.remove().await;
        result
    }

    async fn run_in(
        &self,
        work: &TempDir,
        files: &FileTree,
        image: &str,
        login: Option<&RegistryLogin>,
        lines: &DeployLog,
    ) -> Result<BuildOutput, BuildError> {
        let context = work.path.join("context");
        write_tree(&context, files).await?;
        let mut env = Vec::new();
        let mut secrets = Vec::new();
        if let Some(login) = login {
            let auth_dir = work.path.join("auth");
            env = write_registry_auth(&auth_dir, login).await?;
            secrets = login_secrets(login);
            lines.mask_also(&secrets);
        }
        let log = LogTail::new(self.settings.log_limit);
        let deadline = Instant::now() + self.settings.timeout;
        let dir = context.to_string_lossy().into_owned();
        for (index, template) in self.settings.steps.iter().enumerate() {
            let argv: Vec<String> = template
                .iter()
                .map(|a| a.replace("{image}", image).replace("{dir}", &dir))
                .collect();
            let command = format!("$ {} {}", self.settings.program, argv.join(" "));
            log.push(format!("{command}\n").as_bytes());
            lines.line(LogStream::Deploy, &command);
            let output = Output {
                tail: log.clone(),
                lines: lines.clone(),
            };
            match self
                .run_step(&argv, &context, &env, deadline, &output)
                .await?
            {
                StepEnd::Exited(status) if status.success() => {}
                StepEnd::Exited(status) => {
                    return Err(BuildError::Failed {
                        step: index + 1,
                        status: status.to_string(),
                        log: redact(log.render(), &secrets),
                    })
                }
                StepEnd::TimedOut => {
                    return Err(BuildError::TimedOut {
                        limit: self.settings.timeout,
                        log: redact(log.render(), &secrets),
                    })
                }
            }
        }
        Ok(BuildOutput {
            log: redact(log.render(), &secrets),
        })
    }

    async fn run_step(
        &self,
        argv: &[String],
        dir: &Path,
        env: &[(String, String)],
        deadline: Instant,
        output: &Output,
    ) -> Result<StepEnd, BuildError> {
        let mut command = Command::new(&self.settings.program);
        command
            .args(argv)
            .current_dir(dir)
            .env_clear()
            .envs(
                self.settings
                    .pass_env
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v))),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a timeout can kill everything the tool started.
            .process_group(0);
        let mut child = command.spawn().map_err(|e| BuildError::Spawn {
            program: self.settings.program.clone(),
            reason: e.to_string(),
        })?;
        let pid = child.id();
        // Declared after `child` so it drops first: the group dies while the leader is unreaped.
        let mut group = GroupKiller(pid);
        let readers = [
            (child.stdout.take()).map(|out| pump(out, output.clone(), LogStream::Stdout)),
            (child.stderr.take()).map(|err| pump(err, output.clone(), LogStream::Stderr)),
        ];
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) => {
                group.disarm();
                if !drain(readers).await {
                    // Something the tool started still holds the pipes: end it too.
                    GroupKiller(pid).kill_now();
                }
                Ok(StepEnd::Exited(status))
            }
            Ok(Err(e)) => Err(BuildError::Setup(format!(
                "waiting for the build tool: {e}"
            ))),
            Err(_) => {
                group.kill_now();
                let _ = child.kill().await;
                drain(readers).await;
                let note = "[build timed out; process group killed]";
                output.tail.push(format!("\n{note}\n").as_bytes());
                output.lines.line(LogStream::Deploy, note);
                Ok(StepEnd::TimedOut)
            }
        }
    }
}

enum StepEnd {
    Exited(ExitStatus),
    TimedOut,
}

/// Kills a process group when dropped (cancellation) or on demand, unless disarmed.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn kill_now(&mut self) {
        if let Some(pgid) = self.0.take() {
            // `kill` the tool, so no extra dependency is needed for killpg(2).
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Waits for the output readers; false when they had to be abandoned.
async fn drain(readers: [Option<JoinHandle<()>>; 2]) -> bool {
    let mut clean = true;
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout(PIPE_GRACE, reader).await.is_err() {
            abort.abort();
            clean = false;
        }
    }
    clean
}

/// Where a step's output goes: the tail kept for the error message, and the deployment's log.
#[derive(Clone)]
struct Output {
    tail: LogTail,
    lines: DeployLog,
}

fn pump(
    mut source: impl AsyncRead + Unpin + Send + 'static,
    output: Output,
    stream: LogStream,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = source.read(&mut buf).await {
            if n == 0 {
                break;
            }
            output.tail.push(&buf[..n]);
            output.lines.output(stream, &buf[..n]);
        }
    })
}

/// The last `limit` bytes of combined output.
#[derive(Clone)]
struct LogTail(Arc<Mutex<TailState>>);

struct TailState {
    bytes: VecDeque<u8>,
    limit: usize,
    dropped: u64,
}

impl LogTail {
    fn new(limit: usize) -> Self {
        Self(Arc::new(Mutex::new(TailState {
            bytes: VecDeque::new(),
            limit: limit.max(1),
            dropped: 0,
        })))
    }

    fn push(&self, chunk: &[u8]) {
        let Ok(mut state) = self.0.lock() else {
            return;
        };
        state.bytes.extend(chunk.iter().copied());
        let excess = state.bytes.len().saturating_sub(state.limit);
        if excess > 0 {
            state.bytes.drain(..excess);
            state.dropped += excess as u64;
        }
    }

    fn render(&self) -> String {
        let Ok(state) = self.0.lock() else {
            return String::new();
        };
        let bytes: Vec<u8> = state.bytes.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        if state.dropped > 0 {
            format!("[{} earlier bytes omitted]\n{text}", state.dropped)
        } else {
            text.into_owned()
        }
    }
}

/// The end of `text`, at most `max` bytes, cut at a character boundary.
pub(crate) fn tail_str(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn redact(mut text: String, secrets: &[String]) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "[redacted]");
    }
    text
}

fn validate_image(image: &str) -> Result<(), BuildError> {
    let ok =
        !image.is_empty() && !image.starts_with('-') && image.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(BuildError::Setup("invalid image reference".to_string()))
    }
}

/// A private temp dir, removed by `remove` or, failing that, on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    async fn create(root: &Path) -> Result<Self, BuildError> {
        let path = root.join(format!("agentgate-build-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .await
            .map_err(|e| BuildError::Setup(format!("creating the build dir: {e}")))?;
        Ok(Self { path })
    }

    async fn remove(self) {
        if let Err(e) = tokio::fs::remove_dir_all(&self.path).await {
            tracing::warn!(error = %e, "could not remove a build dir; retrying on drop");
            return;
        }
        std::mem::forget(self);
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes regular files first and symlinks last, so no write goes through a link.
async fn write_tree(root: &Path, files: &FileTree) -> Result<(), BuildError> {
    let setup = |what: &str, path: &str, e: std::io::Error| {
        BuildError::Setup(format!("{what} {path:?}: {e}"))
    };
    tokio::fs::create_dir_all(root)
        .await
        .map_err(|e| setup("creating", ".", e))?;
    for (path, entry) in files.iter().filter(|(_, e)| e.mode != FileMode::Symlink) {
        let target = root.join(safe_relative(path)?);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| setup("creating the parent of", path, e))?;
        }
        tokio::fs::write(&target, &entry.content)
            .await
            .map_err(|e| setup("writing", path, e))?;
        let mode = if entry.mode == FileMode::Executable {
            0o755
        } else {
            0o644
        };
        tokio::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(|e| setup("setting the mode of", path, e))?;
    }
    for (path, entry) in files.iter().filter(|(_, e)| e.mode == FileMode::Symlink) {
        let relative = safe_relative(path)?;
        let link_target = String::from_utf8(entry.content.clone())
            .map_err(|_| BuildError::Setup(format!("symlink {path:?} has a non-UTF-8 target")))?;
        check_link_target(&relative, &link_target)?;
        let target = root.join(&relative);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| setup("creating the parent of", path, e))?;
        }
        tokio::fs::symlink(&link_target, &target)
            .await
            .map_err(|e| setup("linking", path, e))?;
    }
    Ok(())
}

/// A tree path as a relative path with only normal components.
fn safe_relative(path: &str) -> Result<PathBuf, BuildError> {
    let candidate = Path::new(path);
    let normal = !path.is_empty()
        && candidate
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if normal {
        Ok(candidate.to_path_buf())
    } else {
        Err(BuildError::Setup(format!(
            "unsafe path in the app: {path:?}"
        )))
    }
}

/// A symlink must point inside the tree (checked lexically from the link's directory).
fn check_link_target(link: &Path, target: &str) -> Result<(), BuildError> {
    let mut depth = link.components().count().saturating_sub(1);
    for component in Path::new(target).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            _ => {
                return Err(BuildError::Setup(format!(
                    "symlink {link:?} points outside the app"
                )))
            }
        }
    }
    Ok(())
}

async fn write_registry_auth(
    dir: &Path,
    login: &RegistryLogin,
) -> Result<Vec<(String, String)>, BuildError> {
    let setup = |e: std::io::Error| BuildError::Setup(format!("writing registry auth: {e}"));
    tokio::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .await
        .map_err(setup)?;
    let auth = basic_auth(login);
    let config = serde_json::json!({ "auths": { login.endpoint.clone(): { "auth": auth } } });
    let file = dir.join("config.json");
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    let mut handle = options.open(&file).await.map_err(setup)?;
    tokio::io::AsyncWriteExt::write_all(&mut handle, config.to_string().as_bytes())
        .await
        .map_err(setup)?;
    // Written in the background until flushed: the builder reads the file next, and a failed
    // write (a full disk) surfaces only here.
    tokio::io::AsyncWriteExt::flush(&mut handle)
        .await
        .map_err(setup)?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    Ok(vec![
        ("DOCKER_CONFIG".to_string(), path(dir)),
        ("REGISTRY_AUTH_FILE".to_string(), path(&file)),
        ("REGISTRY_ENDPOINT".to_string(), login.endpoint.clone()),
        ("REGISTRY_USERNAME".to_string(), login.username.clone()),
        (
            "REGISTRY_PASSWORD".to_string(),
            login.password.expose_secret().to_string(),
        ),
    ])
}

fn basic_auth(login: &RegistryLogin) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        login.username,
        login.password.expose_secret()
    ))
}

fn login_secrets(login: &RegistryLogin) -> Vec<String> {
    vec![
        login.password.expose_secret().to_string(),
        basic_auth(login),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_must_stay_inside() {
        let link = Path::new("a/b/link");
        assert!(check_link_target(link, "../c").is_ok());
        assert!(check_link_target(link, "../../c").is_ok());
        assert!(check_link_target(link, "../../../c").is_err());
        assert!(check_link_target(link, "/etc/passwd").is_err());
    }

    #[test]
    fn unsafe_paths_are_rejected() {
        assert!(safe_relative("src/main.rs").is_ok());
        for bad in ["", "/abs", "../x", "a/../../x", "./a"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_tail_keeps_the_end() {
        let log = LogTail::new(4);
        log.push(b"abcdef");
        assert_eq!(log.render(), "[2 earlier bytes omitted]\ncdef");
    }

    #[test]
    fn tail_str_respects_char_boundaries() {
        assert_eq!(tail_str("héllo", 4), "llo");
        assert_eq!(tail_str("abc", 10), "abc");
    }
}
