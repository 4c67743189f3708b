//! ImageBuilder with a fake build tool: a shell script that records what it was given.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentgate::deploy::builder::{BuildError, ImageBuilder, ImageBuilderSettings, RegistryLogin};
use agentgate::deploy::provider::DeployError;
use agentgate::files::{FileMode, FileTree};
use secrecy::SecretString;

use crate::koyeb::tree;

const PASSWORD: &str = "registry-pass-Zq81x";

struct Fixture {
    _dir: tempfile::TempDir,
    record: PathBuf,
    work_root: PathBuf,
    settings: ImageBuilderSettings,
}

/// A build tool that records args, cwd, files and env, then runs `behaviour` for `build`.
fn fixture(behaviour: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("record.txt");
    let work_root = dir.path().join("work");
    std::fs::create_dir(&work_root).expect("work root");
    let script = dir.path().join("fake-docker");
    let body = format!(
        r#"#!/bin/sh
rec='{record}'
{{
  echo "args:$*"
  echo "cwd:$(pwd)"
  echo "leak:${{CARGO_MANIFEST_DIR:-none}}"
  echo "user:${{REGISTRY_USERNAME:-none}}"
  echo "authfile:${{REGISTRY_AUTH_FILE:-none}}"
  if [ -n "$REGISTRY_AUTH_FILE" ]; then echo "auth:$(cat "$REGISTRY_AUTH_FILE")"; fi
  find . \( -type f -o -type l \) | sort | while read -r f; do
    if [ -L "$f" ]; then echo "link:$f->$(readlink "$f")"; else echo "file:$f:$(stat -c %a "$f"):$(cat "$f" | head -c 40)"; fi
  done
}} >> "$rec"
if [ "$1" = build ]; then
{behaviour}
fi
exit 0
"#,
        record = record.display()
    );
    std::fs::write(&script, body).expect("script");
    set_mode(&script, 0o755);
    let settings = ImageBuilderSettings {
        program: script.display().to_string(),
        work_root: Some(work_root.clone()),
        timeout: Duration::from_secs(20),
        ..ImageBuilderSettings::default()
    };
    Fixture {
        _dir: dir,
        record,
        work_root,
        settings,
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn app_files() -> FileTree {
    tree(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY . /app\n",
            FileMode::Regular,
        ),
        (
            "bin/start.sh",
            "#!/bin/sh\nexec ./server\n",
            FileMode::Executable,
        ),
        ("src/deep/main.txt", "hello", FileMode::Regular),
        ("link-to-dockerfile", "Dockerfile", FileMode::Symlink),
    ])
}

fn login() -> RegistryLogin {
    RegistryLogin {
        endpoint: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
        username: "AWS".into(),
        password: SecretString::from(PASSWORD),
    }
}

fn recorded(fixture: &Fixture) -> Vec<String> {
    std::fs::read_to_string(&fixture.record)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn work_root_is_empty(fixture: &Fixture) -> bool {
    std::fs::read_dir(&fixture.work_root)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(false)
}

#[tokio::test]
async fn runs_build_then_push_in_a_temp_dir_with_the_files() {
    let fixture = fixture("echo building; echo warn >&2");
    let builder = ImageBuilder::new(fixture.settings.clone());
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/agentgate/abc:v3";

    let output = builder
        .build_and_push(&app_files(), image, Some(&login()))
        .await
        .expect("build");

    let lines = recorded(&fixture);
    let args: Vec<_> = lines.iter().filter(|l| l.starts_with("args:")).collect();
    let cwd = lines
        .iter()
        .find_map(|l| l.strip_prefix("cwd:"))
        .expect("cwd recorded");
    assert_eq!(
        args,
        vec![
            &format!("args:build -t {image} {cwd}"),
            &format!("args:push {image}")
        ]
    );
    assert!(
        cwd.starts_with(&fixture.work_root.display().to_string()),
        "{cwd}"
    );
    for expected in [
        "file:./Dockerfile:644:FROM scratch",
        "file:./bin/start.sh:755:#!/bin/sh",
        "file:./src/deep/main.txt:644:hello",
        "link:./link-to-dockerfile->Dockerfile",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected} in {lines:#?}"
        );
    }
    // Nothing but the app's files in the build context (the auth file lives outside it).
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("file:") || l.starts_with("link:"))
            .count(),
        8
    );
    // The gateway's environment is not passed through; the registry login is.
    assert!(lines
        .iter()
        .all(|l| !l.starts_with("leak:") || l == "leak:none"));
    assert!(lines.iter().any(|l| l == "user:AWS"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("auth:") && l.contains("auths")));

    assert!(output.log.contains("building"), "{}", output.log);
    assert!(output.log.contains("warn"), "{}", output.log);
    assert!(
        output.log.contains(&format!("push {image}")),
        "{}",
        output.log
    );
    assert!(!Path::new(cwd).exists(), "temp dir removed");
    assert!(work_root_is_empty(&fixture));
}

#[tokio::test]
async fn failure_returns_the_log_tail_and_cleans_up() {
    // ~100 KB of output, then the error that matters, then a leaked password.
    let fixture = fixture(
        r#"  i=0; while [ $i -lt 2000 ]; do echo "noise line $i ................................"; i=$((i+1)); done
  echo "FINAL ERROR: missing package.json" >&2
  echo "password was $REGISTRY_PASSWORD" >&2
  exit 3"#,
    );
    let mut settings = fixture.settings.clone();
    settings.log_limit = 4096;
    let builder = ImageBuilder::new(settings);

    let error = builder
        .build_and_push(&app_files(), "registry.example/app:v1", Some(&login()))
        .await
        .expect_err("build must fail");

    let log = error.log().expect("log").to_string();
    assert!(
        matches!(error, BuildError::Failed { step: 1, .. }),
        "{error:?}"
    );
    assert!(log.contains("FINAL ERROR: missing package.json"), "{log}");
    assert!(log.contains("earlier bytes omitted"), "{log}");
    assert!(log.len() < 4096 + 100, "bounded: {}", log.len());
    assert!(log.contains("password was [redacted]"), "{log}");
    assert!(!log.contains(PASSWORD));
    assert!(!format!("{error:?}").contains(PASSWORD));
    // Only the build step ran.
    assert_eq!(
        recorded(&fixture)
            .iter()
            .filter(|l| l.starts_with("args:"))
            .count(),
        1
    );
    assert!(work_root_is_empty(&fixture));

    match DeployError::from(error) {
        DeployError::Permanent(message) => {
            assert!(message.contains("exited with"), "{message}");
            assert!(message.contains("FINAL ERROR"), "{message}");
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name; zombies are dead.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("child.pid");
    let fixture = fixture(&format!(
        r#"  echo "started slow build"
  sleep 60 &
  echo $! > '{}'
  wait"#,
        pid_file.display()
    ));
    let mut settings = fixture.settings.clone();
    settings.timeout = Duration::from_secs(1);
    let builder = ImageBuilder::new(settings);

    let started = Instant::now();
    let error = builder
        .build_and_push(&app_files(), "registry.example/app:v1", None)
        .await
        .expect_err("must time out");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, BuildError::TimedOut { .. }), "{error:?}");
    assert!(error
        .log()
        .is_some_and(|l| l.contains("started slow build")));
    assert!(matches!(
        DeployError::from(error),
        DeployError::Permanent(_)
    ));

    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(pid), "the background sleep was killed");
    assert!(work_root_is_empty(&fixture));
}

#[tokio::test]
async fn dropping_the_build_kills_it_and_removes_the_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("child.pid");
    let fixture = fixture(&format!(
        "  sleep 60 &\n  echo $! > '{}'\n  wait",
        pid_file.display()
    ));
    let builder = ImageBuilder::new(fixture.settings.clone());
    let files = app_files();
    let build = builder.build_and_push(&files, "registry.example/app:v1", None);
    // Cancelled (e.g. the runner lost its lease) once the tool is running.
    let _ = tokio::time::timeout(Duration::from_millis(700), build).await;

    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(pid));
    assert!(work_root_is_empty(&fixture));
}

#[tokio::test]
async fn a_missing_tool_and_unsafe_files_are_reported() {
    let fixture = fixture("true");
    let mut settings = fixture.settings.clone();
    settings.program = "/nonexistent/docker".into();
    let error = ImageBuilder::new(settings)
        .build_and_push(&app_files(), "registry.example/app:v1", None)
        .await
        .expect_err("no tool");
    assert!(matches!(error, BuildError::Spawn { .. }), "{error:?}");
    assert!(matches!(
        DeployError::from(error),
        DeployError::Permanent(_)
    ));
    assert!(work_root_is_empty(&fixture));

    let builder = ImageBuilder::new(fixture.settings.clone());
    let escaping = tree(&[("evil", "../../etc/passwd", FileMode::Symlink)]);
    let error = builder
        .build_and_push(&escaping, "registry.example/app:v1", None)
        .await
        .expect_err("escaping symlink");
    assert!(matches!(error, BuildError::Setup(_)), "{error:?}");
    let error = builder
        .build_and_push(&app_files(), "--privileged", None)
        .await
        .expect_err("option-like image");
    assert!(matches!(error, BuildError::Setup(_)), "{error:?}");
    assert!(recorded(&fixture).is_empty(), "the tool never ran");
    assert!(work_root_is_empty(&fixture));
}
