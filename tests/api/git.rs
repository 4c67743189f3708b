//! Git hosting: every version a run produces becomes a commit. The embedded local host is checked
//! with the real `git` CLI (clone, log, rev-parse, fsck), the GitHub host against the stateful
//! fake GitHub (trees, modes, blob uploads, name collisions, outages), and `git.host = "none"`.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::db_test;
use crate::fake_github::{FakeGitHub, Files, APP_ID, PERSONAL_TOKEN, USER};
use crate::helpers::{assert_complete_run, spawn_app_with, DbKind, Frame, SseReader, TestApp};

const NO_DEPLOY: &str = "[deploy]\non_new_version = false\n";
/// Any RSA key will do: the fake checks the GitHub App's JWT structurally, not its signature.
const APP_PRIVATE_KEY: &str = include_str!("../fixtures/jwks/rsa_private.pem");
pub(crate) const ORG: &str = "octo-org";
pub(crate) const BUILD: &str = "build a todo list app";
pub(crate) const REPO: &str = "todo-list-app";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

pub(crate) fn github_config(gh: &FakeGitHub, retry_interval_secs: u64) -> String {
    format!(
        "{NO_DEPLOY}[git]\nhost = \"github\"\napi_base = {:?}\nowner = {:?}\ntoken = {:?}\nmax_retries = 2\nretry_interval_secs = {retry_interval_secs}\n",
        gh.url, USER, PERSONAL_TOKEN
    )
}

/// The GitHub host authenticating as a GitHub App installed on [`ORG`].
pub(crate) fn github_app_config(gh: &FakeGitHub) -> String {
    format!(
        "{NO_DEPLOY}[git]\nhost = \"github\"\napi_base = {:?}\nowner = {ORG:?}\nowner_is_org = true\napp_id = {APP_ID}\nprivate_key = {APP_PRIVATE_KEY:?}\nmax_retries = 2\nretry_interval_secs = 3600\n",
        gh.url
    )
}

fn local_config(retry_interval_secs: u64) -> String {
    format!("{NO_DEPLOY}[git]\nhost = \"local\"\nretry_interval_secs = {retry_interval_secs}\n")
}

/// Sends a message (a fast demo agent) and reads the whole run.
pub(crate) async fn run(
    app: &TestApp,
    token: &str,
    message: &str,
    app_id: Option<&str>,
) -> Vec<Frame> {
    let mut body = json!({"message": message, "settings": {"demo": {"eventDelayMs": 0}}});
    if let Some(id) = app_id {
        body["applicationId"] = json!(id);
    }
    let response = app.post_message(token, &body).await;
    assert_eq!(response.status(), 200, "{message}");
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    assert!(
        !frames.iter().any(|f| f.event == "error"),
        "no error event for {message:?}: {frames:#?}"
    );
    frames
}

pub(crate) fn app_id(frames: &[Frame]) -> String {
    frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string()
}

/// `metadata.type` of every PlatformMessage, in stream order.
pub(crate) fn notice_types(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.event == "message" && f.data["message"]["kind"] == "PlatformMessage")
        .map(|f| {
            crate::helpers::notice_kind(&f.data)
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

/// The metadata of every PlatformMessage of one type.
pub(crate) fn notices(frames: &[Frame], kind: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| crate::helpers::notice_kind(&f.data) == kind)
        .map(|f| f.data["message"]["metadata"].clone())
        .collect()
}

pub(crate) fn notice(frames: &[Frame], kind: &str) -> Value {
    let found = notices(frames, kind);
    assert_eq!(
        found.len(),
        1,
        "exactly one {kind} notice: {:?}",
        notice_types(frames)
    );
    found[0].clone()
}

pub(crate) async fn app_view(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.get(&format!("/apps/{id}"), token).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// A version's files (content and git mode) as the gateway serves them through `read-url`.
pub(crate) async fn version_files(app: &TestApp, token: &str, id: &str, version: i64) -> Files {
    let response = app
        .get(&format!("/apps/{id}/read-url?version={version}"), token)
        .await;
    assert_eq!(response.status(), 200, "version {version} is readable");
    let links: Value = response.json().await.expect("json");
    assert_eq!(links["version"], version);
    let mut files = Files::new();
    for file in links["files"].as_array().expect("files") {
        let bytes = app
            .http
            .get(file["url"].as_str().expect("url"))
            .send()
            .await
            .expect("download")
            .bytes()
            .await
            .expect("bytes")
            .to_vec();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            file["sha256"].as_str().expect("sha256"),
            "{file}"
        );
        let mode = format!("{:o}", file["mode"].as_u64().expect("mode"));
        files.insert(
            file["path"].as_str().expect("path").to_string(),
            (bytes, mode),
        );
    }
    assert!(!files.is_empty());
    files
}

/// (git_status, commit_sha) per version, oldest first.
async fn git_states(app: &TestApp, id: &str) -> Vec<(i32, Option<String>, Option<String>)> {
    entity::app_versions::Entity::find()
        .filter(entity::app_versions::Column::AppId.eq(id))
        .order_by_asc(entity::app_versions::Column::Version)
        .all(&app.state.db)
        .await
        .expect("query versions")
        .into_iter()
        .map(|v| {
            let git_status = v.git_status.map(|s| s.as_str().to_string());
            (v.version, git_status, v.commit_sha)
        })
        .collect()
}

/// (version, (repository URL, owner, name)) each version was pushed to, oldest first; None for
/// a version not pushed.
async fn version_repos(app: &TestApp, id: &str) -> Vec<(i32, Option<(String, String, String)>)> {
    entity::app_versions::Entity::find()
        .filter(entity::app_versions::Column::AppId.eq(id))
        .order_by_asc(entity::app_versions::Column::Version)
        .all(&app.state.db)
        .await
        .expect("query versions")
        .into_iter()
        .map(|v| {
            let repo = match (v.repository_url, v.repo_owner, v.repo_name) {
                (Some(url), Some(owner), Some(name)) => Some((url, owner, name)),
                (None, None, None) => None,
                partial => panic!("version {}: a partial repository {partial:?}", v.version),
            };
            (v.version, repo)
        })
        .collect()
}

/// `metadata` of the app's history entries of one type, oldest first, with their `runId`.
async fn history_notices(app: &TestApp, token: &str, id: &str, kind: &str) -> Vec<(Value, Value)> {
    let response = app.get(&format!("/apps/{id}/history"), token).await;
    assert_eq!(response.status(), 200);
    let history: Value = response.json().await.expect("json");
    history
        .as_array()
        .expect("array")
        .iter()
        .filter(|m| crate::helpers::notice_kind_of(&m["metadata"]) == kind)
        .map(|m| (m["metadata"].clone(), m["runId"].clone()))
        .collect()
}

/// Polls until every version of the app is pushed; returns the states.
async fn wait_all_pushed(
    app: &TestApp,
    id: &str,
    limit: Duration,
) -> Vec<(i32, Option<String>, Option<String>)> {
    let started = Instant::now();
    loop {
        let states = git_states(app, id).await;
        if states.iter().all(|s| s.1.as_deref() == Some("pushed")) {
            return states;
        }
        assert!(
            started.elapsed() < limit,
            "not all versions pushed within {limit:?}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the real git CLI, isolated from any user or system configuration.
fn git(dir: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn git_bytes(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?} failed");
    out.stdout
}

fn clone(url: &str, into: &Path) -> PathBuf {
    git(
        None,
        &["clone", "--quiet", url, into.to_str().expect("utf-8 path")],
    );
    into.to_path_buf()
}

/// The files of a checkout (everything but `.git`), with the mode git would record.
fn checkout_files(root: &Path) -> Files {
    fn walk(root: &Path, dir: &Path, out: &mut Files) {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let rel = path
                .strip_prefix(root)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                let bytes = target.to_string_lossy().into_owned().into_bytes();
                out.insert(rel, (bytes, "120000".into()));
            } else {
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    "100755"
                } else {
                    "100644"
                };
                out.insert(rel, (std::fs::read(&path).expect("read"), mode.into()));
            }
        }
    }
    let mut out = Files::new();
    walk(root, root, &mut out);
    out
}

/// The files of `rev` as recorded in the repository at `dir` (bare or not).
fn tree_at(dir: &Path, rev: &str) -> Files {
    let listing = git(Some(dir), &["ls-tree", "-r", "-z", rev]);
    let mut out = Files::new();
    for line in listing.split('\0').filter(|l| !l.is_empty()) {
        let (meta, path) = line.split_once('\t').expect("tab");
        let parts: Vec<&str> = meta.split(' ').collect();
        assert_eq!(parts[1], "blob", "{line}");
        let content = git_bytes(dir, &["cat-file", "blob", parts[2]]);
        out.insert(path.to_string(), (content, parts[0].to_string()));
    }
    out
}

/// (sha, parents, author name, author email, subject) of each commit on `rev`, newest first.
fn log(dir: &Path, rev: &str) -> Vec<(String, Vec<String>, String, String, String)> {
    git(
        Some(dir),
        &["log", "--format=%H%x1f%P%x1f%an%x1f%ae%x1f%s", rev],
    )
    .lines()
    .map(|line| {
        let f: Vec<&str> = line.split('\x1f').collect();
        (
            f[0].to_string(),
            f[1].split_whitespace().map(str::to_string).collect(),
            f[2].to_string(),
            f[3].to_string(),
            f[4].to_string(),
        )
    })
    .collect()
}

/// Paths whose content or mode differs between two versions, plus removed ones.
pub(crate) fn changed_paths(before: &Files, after: &Files) -> BTreeSet<String> {
    let mut changed: BTreeSet<String> = after
        .iter()
        .filter(|(p, e)| before.get(*p) != Some(*e))
        .map(|(p, _)| p.clone())
        .collect();
    changed.extend(before.keys().filter(|p| !after.contains_key(*p)).cloned());
    changed
}

/// Contents in `after` that `before` did not have anywhere: what a content-addressed host must
/// receive.
fn new_contents(before: &Files, after: &Files) -> usize {
    let known: BTreeSet<&Vec<u8>> = before.values().map(|(c, _)| c).collect();
    after
        .values()
        .map(|(c, _)| c)
        .filter(|c| !known.contains(c))
        .collect::<BTreeSet<_>>()
        .len()
}

async fn wait_until<F: Fn() -> bool>(what: &str, limit: Duration, check: F) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within {limit:?}");
}

/// The bare repository directory the local host uses for an app, from its repository URL
/// (`{public_url}/git/{owner}/{name}.git`, served over HTTP: no server path reaches clients).
fn local_repo_dir(app: &TestApp, view: &Value) -> PathBuf {
    let url = view["repositoryUrl"].as_str().expect("repositoryUrl");
    // The host part may name an earlier run of the gateway (another port): only the path counts.
    let repo = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once("/git/"))
        .map(|(_, repo)| repo)
        .unwrap_or_else(|| panic!("a repository served by the gateway: {url}"));
    let dir = app.data_dir.path().join("git").join(repo);
    assert!(
        dir.is_dir(),
        "a bare repository inside the data dir for {url}"
    );
    dir
}

// ---------------------------------------------------------------------------------------------
// 1. Local host (the default)
// ---------------------------------------------------------------------------------------------

async fn local_host_commits_every_version(kind: DbKind) {
    let app = spawn_app_with(kind, NO_DEPLOY).await;
    assert_eq!(
        app.state.git.as_ref().map(|g| g.host().kind()),
        Some("local")
    );
    let token = app.token("alice");
    let work = tempfile::tempdir().expect("tempdir");

    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    assert_eq!(
        notice_types(&frames),
        ["version_created", "repo_created", "commit_created"],
        "the repository is created, then version 1 committed"
    );
    let view = app_view(&app, &token, &id).await;
    let url = view["repositoryUrl"]
        .as_str()
        .expect("repositoryUrl")
        .to_string();
    assert_eq!(view["appName"], REPO);
    let bare = local_repo_dir(&app, &view);
    assert_eq!(
        bare.file_name().and_then(|n| n.to_str()),
        Some(&*format!("{REPO}.git"))
    );
    let created = notice(&frames, "repo_created");
    assert_eq!(created["githubUrl"], url.as_str());
    assert_eq!(created["repositoryUrl"], url.as_str());
    let first = notice(&frames, "commit_created");
    assert_eq!(first["version"], 1);
    let sha1 = first["commitSha"].as_str().expect("sha").to_string();
    assert_eq!(sha1.len(), 40);
    assert!(
        first["commitUrl"].as_str().expect("url").contains(&sha1),
        "{first}"
    );

    let v1 = version_files(&app, &token, &id, 1).await;
    assert!(v1.contains_key("README.md") && v1.contains_key("index.html"));
    let one = clone(bare.to_str().expect("utf-8"), &work.path().join("one"));
    assert_eq!(git(Some(&one), &["rev-parse", "HEAD"]).trim(), sha1);
    assert_eq!(
        git(Some(&one), &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "main"
    );
    assert_eq!(
        checkout_files(&one),
        v1,
        "the clone holds exactly version 1"
    );
    assert_eq!(tree_at(&one, "HEAD"), v1, "modes included");
    assert_eq!(
        git_states(&app, &id).await,
        vec![(1, Some("pushed".into()), Some(sha1.clone()))]
    );

    let frames = run(&app, &token, "remove the readme", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    let second = notice(&frames, "commit_created");
    assert_eq!(second["version"], 2);
    let sha2 = second["commitSha"].as_str().expect("sha").to_string();
    assert_ne!(sha2, sha1);
    let v2 = version_files(&app, &token, &id, 2).await;
    let mut expected = v1.clone();
    expected.remove("README.md");
    assert_eq!(v2, expected, "the follow-up only deletes README.md");

    let two = clone(bare.to_str().expect("utf-8"), &work.path().join("two"));
    assert_eq!(git(Some(&two), &["rev-parse", "HEAD"]).trim(), sha2);
    assert!(!two.join("README.md").exists());
    assert_eq!(
        checkout_files(&two),
        v2,
        "the clone holds exactly version 2"
    );
    assert_eq!(tree_at(&two, &sha1), v1, "version 1 stays in history");

    let history = log(&two, "HEAD");
    let subjects: Vec<&str> = history.iter().map(|c| c.4.as_str()).collect();
    assert_eq!(subjects, ["Remove README", "Add todo list app"]);
    assert_eq!(history[0].0, sha2);
    assert_eq!(
        history[0].1,
        vec![sha1.clone()],
        "version 2's parent is version 1"
    );
    assert_eq!(history[1].0, sha1);
    assert!(history[1].1.is_empty(), "version 1 is the root commit");
    for commit in &history {
        assert_eq!(
            (commit.2.as_str(), commit.3.as_str()),
            ("agentgate", "agentgate@localhost")
        );
    }
    // The first clone fast-forwards: history was extended, never rewritten.
    git(Some(&one), &["pull", "--quiet", "--ff-only"]);
    assert_eq!(git(Some(&one), &["rev-parse", "HEAD"]).trim(), sha2);
    git(
        Some(&bare),
        &["fsck", "--full", "--strict", "--no-progress"],
    );
    assert_eq!(
        git_states(&app, &id).await,
        vec![
            (1, Some("pushed".into()), Some(sha1)),
            (2, Some("pushed".into()), Some(sha2))
        ]
    );
    let pushed_to = Some((url.clone(), "local".to_string(), REPO.to_string()));
    assert_eq!(
        version_repos(&app, &id).await,
        vec![(1, pushed_to.clone()), (2, pushed_to)],
        "each version records the repository it was pushed to"
    );
    let row = app_row(&app, &id).await;
    assert_eq!(
        (row.repository_url, row.repo_owner, row.repo_name),
        (Some(url), Some("local".into()), Some(REPO.into()))
    );
    app.stop().await;
}
db_test!(local_host_commits_every_version);

/// The repository is there but unreachable for two versions: both stay pending, nothing later is
/// pushed past them, and the background retry pushes them in order once it is back.
async fn local_host_pushes_pending_versions_in_order(kind: DbKind) {
    let app = spawn_app_with(kind, &local_config(1)).await;
    let token = app.token("alice");
    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    let sha1 = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    let view = app_view(&app, &token, &id).await;
    let bare = local_repo_dir(&app, &view);
    let away = bare.with_file_name("moved-away");
    std::fs::rename(&bare, &away).expect("hide the repository");

    let mut pending = Vec::new();
    for (n, prompt) in [(2, "add a dark mode"), (3, "remove the readme")] {
        let frames = run(&app, &token, prompt, Some(&id)).await;
        assert_eq!(
            notice_types(&frames),
            ["version_created", "commit_pending"],
            "{prompt}"
        );
        assert_eq!(notice(&frames, "commit_pending")["version"], n);
        pending.push(version_files(&app, &token, &id, n).await);
    }
    assert_eq!(
        git_states(&app, &id).await,
        vec![
            (1, Some("pushed".into()), Some(sha1.clone())),
            (2, Some("pending".into()), None),
            (3, Some("pending".into()), None)
        ]
    );
    let repos = version_repos(&app, &id).await;
    assert!(repos[0].1.is_some(), "{repos:?}");
    assert_eq!(repos[1..], [(2, None), (3, None)], "not pushed yet");

    std::fs::rename(&away, &bare).expect("restore the repository");
    let bare_for_check = bare.clone();
    let waited = wait_until(
        "the retry pushed versions 2 and 3",
        Duration::from_secs(10),
        || {
            let out = Command::new("git")
                .args(["rev-list", "--count", "main"])
                .current_dir(&bare_for_check)
                .output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "3")
        },
    )
    .await;
    assert!(
        waited < Duration::from_secs(5),
        "retried every second, took {waited:?}"
    );
    // The status is written right after the ref moves; give it a moment.
    let mut states = git_states(&app, &id).await;
    for _ in 0..50 {
        if states.iter().all(|s| s.1.as_deref() == Some("pushed")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        states = git_states(&app, &id).await;
    }
    let shas: Vec<String> = states
        .iter()
        .map(|(v, status, sha)| {
            assert_eq!(status.as_deref(), Some("pushed"), "version {v}");
            sha.clone().expect("sha")
        })
        .collect();
    assert_eq!(shas[0], sha1);
    let history = log(&bare, "main");
    let chain: Vec<(String, Vec<String>)> =
        history.iter().map(|c| (c.0.clone(), c.1.clone())).collect();
    assert_eq!(
        chain,
        vec![
            (shas[2].clone(), vec![shas[1].clone()]),
            (shas[1].clone(), vec![shas[0].clone()]),
            (shas[0].clone(), vec![]),
        ],
        "one commit per version, in order, none skipped"
    );
    assert_eq!(tree_at(&bare, &shas[1]), pending[0], "version 2's tree");
    assert_eq!(tree_at(&bare, &shas[2]), pending[1], "version 3's tree");

    let frames = run(&app, &token, "rename it to Groceries", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    let sha4 = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    let history = log(&bare, "main");
    assert_eq!(history[0].0, sha4);
    assert_eq!(history[0].1, vec![shas[2].clone()]);
    assert_eq!(
        tree_at(&bare, &sha4),
        version_files(&app, &token, &id, 4).await
    );
    app.stop().await;
}
db_test!(local_host_pushes_pending_versions_in_order);

/// Pushes that had to wait still carry the repository name and the commit message the agent
/// gave for that version (not those of a later run, nor a placeholder).
async fn deferred_pushes_keep_the_agents_name_and_messages(kind: DbKind) {
    // No background retry during the test (after its pass at start-up, given a moment to end):
    // the next run's publish pushes the backlog.
    let app = spawn_app_with(kind, &local_config(3600)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = app.token("alice");
    let blocker = app.data_dir.path().join("git");
    std::fs::write(&blocker, b"not a directory").expect("block the git root");
    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    assert!(app_view(&app, &token, &id).await["repositoryUrl"].is_null());
    std::fs::remove_file(&blocker).expect("unblock");

    let frames = run(&app, &token, "rename it to Groceries", Some(&id)).await;
    let types = notice_types(&frames);
    let versions: Vec<Value> = notices(&frames, "commit_created")
        .iter()
        .map(|n| n["version"].clone())
        .collect();
    // Normally this run pushes the backlog first; a start-up retry pass that was slow to
    // start may have pushed version 1 already.
    if versions.len() == 2 {
        assert_eq!(
            types,
            [
                "version_created",
                "repo_created",
                "commit_created",
                "commit_created"
            ],
            "the backlog (version 1) is pushed before version 2"
        );
        assert_eq!(versions, [json!(1), json!(2)]);
    } else {
        assert_eq!(types, ["version_created", "commit_created"]);
        assert_eq!(versions, [json!(2)]);
    }
    let view = app_view(&app, &token, &id).await;
    let bare = local_repo_dir(&app, &view);
    let history = log(&bare, "main");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].1, vec![history[1].0.clone()]);
    assert_eq!(
        tree_at(&bare, &history[1].0),
        version_files(&app, &token, &id, 1).await
    );
    assert_eq!(
        tree_at(&bare, &history[0].0),
        version_files(&app, &token, &id, 2).await
    );
    let subjects: Vec<&str> = history.iter().map(|c| c.4.as_str()).collect();
    assert_eq!(
        (view["appName"].as_str(), subjects),
        (
            Some(REPO),
            vec!["Rename app to Groceries", "Add todo list app"]
        ),
        "the agent's repository name, and each commit carries its own version's message"
    );
    app.stop().await;
}
db_test!(deferred_pushes_keep_the_agents_name_and_messages);

/// The background retry creates the repository when the first push could not: it gets the
/// agent's name for the app and version 1 keeps its commit message.
async fn background_retry_keeps_the_agents_name_and_message(kind: DbKind) {
    let app = spawn_app_with(kind, &local_config(1)).await;
    let token = app.token("alice");
    let blocker = app.data_dir.path().join("git");
    std::fs::write(&blocker, b"not a directory").expect("block the git root");
    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    std::fs::remove_file(&blocker).expect("unblock");

    let mut view = Value::Null;
    for _ in 0..100 {
        view = app_view(&app, &token, &id).await;
        if !view["repositoryUrl"].is_null()
            && git_states(&app, &id).await[0].1.as_deref() == Some("pushed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bare = local_repo_dir(&app, &view);
    let history = log(&bare, "main");
    assert_eq!(history.len(), 1);
    assert_eq!(
        tree_at(&bare, "main"),
        version_files(&app, &token, &id, 1).await
    );
    assert_eq!(
        (view["appName"].as_str(), history[0].4.as_str()),
        (Some(REPO), "Add todo list app"),
        "repository name and commit message come from the agent, as without the outage"
    );
    app.stop().await;
}
db_test!(background_retry_keeps_the_agents_name_and_message);

// ---------------------------------------------------------------------------------------------
// 2. GitHub host (the fake)
// ---------------------------------------------------------------------------------------------

async fn github_host_mirrors_every_version(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    // Someone already has a repository with the name the app will ask for.
    let response = reqwest::Client::new()
        .post(format!("{}/user/repos", gh.url))
        .header("authorization", format!("token {PERSONAL_TOKEN}"))
        .header("user-agent", "agentgate-tests")
        .json(&json!({"name": REPO, "private": false}))
        .send()
        .await
        .expect("pre-create");
    assert_eq!(response.status(), 201);
    let theirs = gh.push_external_commit(
        USER,
        REPO,
        "main",
        [(
            "theirs.txt".to_string(),
            Some((b"not yours\n".to_vec(), "100644".to_string())),
        )]
        .into(),
    );
    let their_files = gh.files_at(USER, REPO, "main");

    let app = spawn_app_with(kind, &github_config(&gh, 30)).await;
    assert_eq!(
        app.state.git.as_ref().map(|g| g.host().kind()),
        Some("github")
    );
    let token = app.token("alice");

    // Version 1: a new repository under a suffixed name.
    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    assert_eq!(
        notice_types(&frames),
        ["version_created", "repo_created", "commit_created"]
    );
    let view = app_view(&app, &token, &id).await;
    let name = view["appName"].as_str().expect("appName").to_string();
    let suffix = name
        .strip_prefix(&format!("{REPO}-"))
        .unwrap_or_else(|| panic!("a suffixed name, got {name:?}"));
    assert!(
        suffix.len() == 4 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
        "{name}"
    );
    let url = format!("{}/{USER}/{name}", gh.url);
    assert_eq!(view["repositoryUrl"], url.as_str());
    assert_eq!(notice(&frames, "repo_created")["githubUrl"], url.as_str());
    let mut names = gh.repo_names(USER);
    names.sort();
    assert_eq!(names, vec![REPO.to_string(), name.clone()]);
    assert_eq!(
        gh.head(USER, REPO, "main").as_deref(),
        Some(theirs.as_str())
    );
    assert_eq!(
        gh.files_at(USER, REPO, "main"),
        their_files,
        "the other repository is untouched"
    );
    assert_eq!(gh.is_private(USER, &name), Some(true), "private by default");

    let first = notice(&frames, "commit_created");
    assert_eq!(first["version"], 1);
    let sha1 = first["commitSha"].as_str().expect("sha").to_string();
    assert_eq!(gh.head(USER, &name, "main").as_deref(), Some(sha1.as_str()));
    assert_eq!(first["commitUrl"], format!("{url}/commit/{sha1}").as_str());
    let v1 = version_files(&app, &token, &id, 1).await;
    assert_eq!(
        gh.files_at(USER, &name, "main"),
        v1,
        "content and modes of version 1"
    );
    let c1 = gh.commit_info(USER, &name, &sha1).expect("commit 1");
    assert_eq!(c1.message, "Add todo list app");
    assert_eq!(
        (c1.author_name.as_str(), c1.author_email.as_str()),
        ("agentgate", "agentgate@localhost")
    );
    let blobs_v1 = gh.blob_uploads();
    assert!(
        blobs_v1 <= v1.len(),
        "{blobs_v1} blobs for {} files",
        v1.len()
    );

    // Version 2 changes some files: only their blobs are uploaded.
    let frames = run(&app, &token, "rename it to Groceries", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    let sha2 = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    let v2 = version_files(&app, &token, &id, 2).await;
    let changed = changed_paths(&v1, &v2);
    assert!(
        !changed.is_empty() && changed.len() < v2.len(),
        "{changed:?}"
    );
    assert_eq!(
        new_contents(&v1, &v2),
        changed.len(),
        "every changed file has new content"
    );
    assert_eq!(
        gh.blob_uploads() - blobs_v1,
        changed.len(),
        "only the changed files' blobs were uploaded ({changed:?})"
    );
    assert_eq!(gh.files_at(USER, &name, "main"), v2);
    let c2 = gh.commit_info(USER, &name, &sha2).expect("commit 2");
    assert_eq!(c2.parents, vec![sha1.clone()]);
    assert_eq!(c2.message, "Rename app to Groceries");

    // Version 3 deletes a file: no upload at all, and the file is gone from the tree.
    let blobs_v2 = gh.blob_uploads();
    let frames = run(&app, &token, "remove the readme", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    let sha3 = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    let v3 = version_files(&app, &token, &id, 3).await;
    assert!(v2.contains_key("README.md") && !v3.contains_key("README.md"));
    assert_eq!(gh.files_at(USER, &name, "main"), v3);
    assert_eq!(gh.blob_uploads(), blobs_v2, "a deletion uploads nothing");
    let c3 = gh.commit_info(USER, &name, &sha3).expect("commit 3");
    assert_eq!(c3.parents, vec![sha2.clone()]);
    assert_eq!(c3.message, "Remove README");
    assert_eq!(gh.head(USER, &name, "main").as_deref(), Some(sha3.as_str()));
    let states = git_states(&app, &id).await;
    assert_eq!(
        states,
        vec![
            (1, Some("pushed".into()), Some(sha1)),
            (2, Some("pushed".into()), Some(sha2)),
            (3, Some("pushed".into()), Some(sha3)),
        ]
    );
    let pushed_to = Some((url, USER.to_string(), name));
    assert_eq!(
        version_repos(&app, &id).await,
        vec![
            (1, pushed_to.clone()),
            (2, pushed_to.clone()),
            (3, pushed_to)
        ],
        "each version records the repository it was pushed to"
    );
    app.stop().await;
}
db_test!(github_host_mirrors_every_version);

// ---------------------------------------------------------------------------------------------
// 3. Git host outage
// ---------------------------------------------------------------------------------------------

async fn github_outage_leaves_the_version_pending_then_pushes_it(kind: DbKind) {
    // Each publish attempt makes 3 requests (max_retries = 2), so 9 failures outlast the run's
    // attempt and at least one background retry whichever comes first.
    const FAILURES: usize = 9;
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 1)).await;
    let token = app.token("alice");
    gh.fail_next(FAILURES, 502);

    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    let pending = notice(&frames, "commit_pending");
    assert_eq!(pending["version"], 1);
    let reason = pending["reason"].as_str().expect("reason");
    assert!(reason.contains("502"), "{reason}");
    assert!(!reason.contains(PERSONAL_TOKEN));
    assert!(
        gh.requests().len() < FAILURES,
        "test setup: the outage must still be on ({} requests)",
        gh.requests().len()
    );
    let v1 = version_files(&app, &token, &id, 1).await;
    assert!(app_view(&app, &token, &id).await["repositoryUrl"].is_null());
    assert_eq!(
        git_states(&app, &id).await,
        vec![(1, Some("pending".into()), None)]
    );
    assert!(gh.repo_names(USER).is_empty());

    // The fake recovers once its failures are used up; the retry runs every second.
    wait_until("the outage ends", Duration::from_secs(40), || {
        gh.requests().len() >= FAILURES
    })
    .await;
    let waited = wait_until("version 1 reaches GitHub", Duration::from_secs(10), || {
        gh.repo_names(USER)
            .first()
            .is_some_and(|name| gh.files_at(USER, name, "main") == v1)
    })
    .await;
    assert!(
        waited < Duration::from_secs(5),
        "pushed {waited:?} after the recovery"
    );
    let name = gh.repo_names(USER).remove(0);
    assert_eq!(gh.repo_names(USER).len(), 1, "one repository, no duplicate");
    let head1 = gh.head(USER, &name, "main").expect("head");
    let mut states = git_states(&app, &id).await;
    for _ in 0..50 {
        if states[0].1.as_deref() == Some("pushed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        states = git_states(&app, &id).await;
    }
    assert_eq!(
        states,
        vec![(1, Some("pushed".into()), Some(head1.clone()))]
    );
    let view = app_view(&app, &token, &id).await;
    assert_eq!(
        view["repositoryUrl"],
        format!("{}/{USER}/{name}", gh.url).as_str()
    );

    // The next version goes on top of it.
    let frames = run(&app, &token, "remove the readme", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    let created = notice(&frames, "commit_created");
    assert_eq!(created["version"], 2);
    let sha2 = created["commitSha"].as_str().expect("sha");
    let c2 = gh.commit_info(USER, &name, sha2).expect("commit 2");
    assert_eq!(c2.parents, vec![head1], "version 1's commit is the parent");
    let v2 = version_files(&app, &token, &id, 2).await;
    assert_eq!(gh.files_at(USER, &name, "main"), v2);
    assert!(!v2.contains_key("README.md"));
    app.stop().await;
}
db_test!(github_outage_leaves_the_version_pending_then_pushes_it);

/// GitHub's first commit of a multi-file version takes two steps (the Contents API, then the Git
/// Data API). An outage between them leaves the branch holding only our root commit; the
/// background retry finishes that first commit on top of it instead of refusing forever
/// because "history exists", and the user finds the push in the app's history.
async fn github_outage_after_the_first_commit_is_finished_by_the_retry(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 1)).await;
    let token = app.token("alice");
    // max_retries = 2: three failures use up the run's attempt at the next request.
    gh.fail_after_next("PUT", "/contents/", 3, 502);

    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    assert_eq!(
        notice_types(&frames),
        ["version_created", "repo_created", "commit_pending"],
        "the repository exists, version 1 is not complete yet"
    );
    assert_eq!(notice(&frames, "commit_pending")["version"], 1);
    let name = app_view(&app, &token, &id).await["appName"]
        .as_str()
        .expect("appName")
        .to_string();
    assert_eq!(name, REPO);
    let v1 = version_files(&app, &token, &id, 1).await;
    assert!(v1.len() > 1, "a first version of several files: {v1:?}");

    let states = wait_all_pushed(&app, &id, Duration::from_secs(15)).await;
    let head = gh.head(USER, REPO, "main").expect("head");
    assert_eq!(states, vec![(1, Some("pushed".into()), Some(head.clone()))]);
    assert_eq!(
        gh.files_at(USER, REPO, "main"),
        v1,
        "the complete version 1"
    );
    let top = gh.commit_info(USER, REPO, &head).expect("head commit");
    assert_eq!(top.parents.len(), 1, "built on the bootstrap commit");
    let root = gh.commit_info(USER, REPO, &top.parents[0]).expect("root");
    assert!(root.parents.is_empty(), "no second, unrelated root");
    for commit in [&top, &root] {
        assert_eq!(commit.message, "Add todo list app");
        assert_eq!(commit.author_name, "agentgate");
    }
    assert_eq!(gh.repo_names(USER), vec![REPO.to_string()]);

    // The background push is reported where the user looks: the app's history (written just
    // after the version is marked pushed).
    let mut created = Vec::new();
    for _ in 0..50 {
        created = history_notices(&app, &token, &id, "commit_created").await;
        if !created.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].0["version"], 1);
    assert_eq!(created[0].0["commitSha"], head.as_str());
    assert!(created[0].1.is_null(), "not part of a run: {created:?}");
    assert_eq!(
        history_notices(&app, &token, &id, "repo_created")
            .await
            .len(),
        1,
        "the run reported the repository; the retry does not report it again"
    );

    let frames = run(&app, &token, "remove the readme", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    let sha2 = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    assert_eq!(
        gh.commit_info(USER, REPO, &sha2).expect("commit 2").parents,
        vec![head]
    );
    assert_eq!(
        gh.files_at(USER, REPO, "main"),
        version_files(&app, &token, &id, 2).await
    );
    app.stop().await;
}
db_test!(github_outage_after_the_first_commit_is_finished_by_the_retry);

// ---------------------------------------------------------------------------------------------
// 4. Background retries: live apps only, oldest first, nobody starved
// ---------------------------------------------------------------------------------------------

async fn app_row(app: &TestApp, id: &str) -> entity::apps::Model {
    entity::apps::Entity::find_by_id(id.to_string())
        .one(&app.state.db)
        .await
        .expect("query app")
        .expect("app row")
}

/// A version left pending by an outage is never pushed once its app is deleted, while another
/// app's pending version is (so the retry did run).
async fn deleted_apps_pending_versions_are_never_pushed(kind: DbKind) {
    let app = spawn_app_with(kind, &local_config(1)).await;
    let token = app.token("alice");
    let blocker = app.data_dir.path().join("git");
    std::fs::write(&blocker, b"not a directory").expect("block the git root");
    let frames = run(&app, &token, BUILD, None).await;
    let deleted = app_id(&frames);
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    let frames = run(&app, &token, "build a counter app", None).await;
    let live = app_id(&frames);
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    let response = app.delete(&format!("/apps/{deleted}"), &token).await;
    assert_eq!(response.status(), 200);
    std::fs::remove_file(&blocker).expect("unblock");

    wait_all_pushed(&app, &live, Duration::from_secs(10)).await;
    // A few more passes of the once-a-second retry.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        git_states(&app, &deleted).await,
        vec![(1, Some("pending".into()), None)]
    );
    let row = app_row(&app, &deleted).await;
    assert!(
        row.repository_url.is_none() && row.repo_name.is_none(),
        "{row:?}"
    );
    let repos: Vec<String> = std::fs::read_dir(app.data_dir.path().join("git/local"))
        .expect("the live app's repositories")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(repos, vec!["counter-app.git".to_string()]);
    app.stop().await;
}
db_test!(deleted_apps_pending_versions_are_never_pushed);

/// Two apps whose pushes failed: each has its own push job with its own backoff, so the app
/// whose repository came back is pushed while the other keeps failing, and the failing one is
/// pushed once its repository is back (its history says so).
async fn a_failing_app_does_not_starve_the_others(kind: DbKind) {
    let app = spawn_app_with(kind, &local_config(1)).await;
    let token = app.token("alice");
    let mut ids = Vec::new();
    let mut bares = Vec::new();
    for prompt in [BUILD, "build a counter app"] {
        let id = app_id(&run(&app, &token, prompt, None).await);
        let bare = local_repo_dir(&app, &app_view(&app, &token, &id).await);
        let away = bare.with_extension("away");
        std::fs::rename(&bare, &away).expect("hide the repository");
        let frames = run(&app, &token, "remove the readme", Some(&id)).await;
        assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
        ids.push(id);
        bares.push((bare, away));
    }
    let (failing, healthy) = (&ids[0], &ids[1]);
    // Only the second app's repository comes back.
    std::fs::rename(&bares[1].1, &bares[1].0).expect("restore");
    wait_all_pushed(&app, healthy, Duration::from_secs(10)).await;
    assert_eq!(
        git_states(&app, failing).await[1].1.as_deref(),
        Some("pending")
    );

    std::fs::rename(&bares[0].1, &bares[0].0).expect("restore");
    wait_all_pushed(&app, failing, Duration::from_secs(30)).await;
    let history = log(&bares[0].0, "main");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].1, vec![history[1].0.clone()]);
    app.stop().await;
}
db_test!(a_failing_app_does_not_starve_the_others);

// ---------------------------------------------------------------------------------------------
// 5. GitHub: rate limits, ref races, App installation tokens
// ---------------------------------------------------------------------------------------------

/// A secondary rate limit (403 with `retry-after`) is waited out as told, then the push goes
/// through within the same run.
async fn github_secondary_rate_limits_are_waited_out(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 3600)).await;
    let token = app.token("alice");
    gh.rate_limit_next(2, 1);
    let started = Instant::now();
    let frames = run(&app, &token, BUILD, None).await;
    let took = started.elapsed();
    let id = app_id(&frames);
    assert_eq!(
        notice_types(&frames),
        ["version_created", "repo_created", "commit_created"]
    );
    assert_eq!(gh.faults_left(), 0, "both limited answers were served");
    let creates = gh
        .requests()
        .iter()
        .filter(|(m, p)| m == "POST" && p == "/user/repos")
        .count();
    assert_eq!(creates, 3, "the creation was retried twice");
    assert!(
        took >= Duration::from_secs(2),
        "waited the 1 s retry-after twice, took {took:?}"
    );
    assert_eq!(
        gh.files_at(USER, REPO, "main"),
        version_files(&app, &token, &id, 1).await
    );
    app.stop().await;
}
db_test!(github_secondary_rate_limits_are_waited_out);

/// Someone pushes between our read of the branch and our ref update. Their change touches other
/// paths: our commit is rebased onto theirs, nothing is lost. Their next change touches a path
/// we change too: the version stays pending with a clear conflict, their commit stays.
async fn github_ref_races_rebase_or_fail_clearly(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 3600)).await;
    let token = app.token("alice");
    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    let sha1 = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    let theirs_file = (b"be nice\n".to_vec(), "100644".to_string());
    gh.push_external_commit_before_next_ref_update(
        USER,
        REPO,
        "main",
        [("CONTRIBUTING.md".to_string(), Some(theirs_file.clone()))].into(),
    );
    let frames = run(&app, &token, "remove the readme", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    let sha2 = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    assert_eq!(gh.head(USER, REPO, "main").as_deref(), Some(sha2.as_str()));
    let ours = gh.commit_info(USER, REPO, &sha2).expect("our commit");
    assert_eq!(ours.message, "Remove README");
    assert_eq!(ours.parents.len(), 1);
    let theirs = gh
        .commit_info(USER, REPO, &ours.parents[0])
        .expect("their commit");
    assert_eq!(
        theirs.author_name, "External Dev",
        "rebased onto their commit"
    );
    assert_eq!(theirs.parents, vec![sha1]);
    let v2 = version_files(&app, &token, &id, 2).await;
    let mut expected = v2.clone();
    expected.insert("CONTRIBUTING.md".into(), theirs_file);
    assert_eq!(gh.files_at(USER, REPO, "main"), expected, "both changes");

    gh.push_external_commit_before_next_ref_update(
        USER,
        REPO,
        "main",
        [(
            "index.html".to_string(),
            Some((b"<p>theirs</p>\n".to_vec(), "100644".to_string())),
        )]
        .into(),
    );
    let frames = run(&app, &token, "rename it to Groceries", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    let v3 = version_files(&app, &token, &id, 3).await;
    assert!(changed_paths(&v2, &v3).contains("index.html"), "test setup");
    let reason = notice(&frames, "commit_pending")["reason"]
        .as_str()
        .expect("reason")
        .to_string();
    assert!(reason.contains("touch the same paths"), "{reason}");
    let head = gh.head(USER, REPO, "main").expect("head");
    assert!(reason.contains(&head), "names their head: {reason}");
    let top = gh.commit_info(USER, REPO, &head).expect("their commit");
    assert_eq!(top.author_name, "External Dev", "nothing forced over it");
    assert_eq!(top.parents, vec![sha2.clone()]);
    assert_eq!(
        git_states(&app, &id).await[2],
        (3, Some("pending".into()), None)
    );
    app.stop().await;
}
db_test!(github_ref_races_rebase_or_fail_clearly);

/// As a GitHub App: one installation token serves many requests; one GitHub stops accepting is
/// replaced at once, and one about to expire is replaced before it does.
async fn github_app_installation_tokens_are_cached_and_reminted(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_app_config(&gh)).await;
    let token = app.token("alice");
    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    assert_eq!(
        notice_types(&frames),
        ["version_created", "repo_created", "commit_created"]
    );
    assert_eq!(
        notice(&frames, "repo_created")["githubUrl"],
        format!("{}/{ORG}/{REPO}", gh.url).as_str()
    );
    assert_eq!(gh.tokens_minted(), 1);
    let frames = run(&app, &token, "add a dark mode", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    assert_eq!(gh.tokens_minted(), 1, "the token is cached");

    // Revoked early: the next request gets 401 and the push goes on with a new token, which
    // (from now on) lives only a little longer than the refresh margin of five minutes: 8 s,
    // so the run below (a few hundred ms, more on a loaded machine) ends well inside it.
    gh.set_token_ttl(5 * 60 + 8);
    gh.expire_tokens();
    let frames = run(&app, &token, "remove the readme", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    assert_eq!(gh.tokens_minted(), 2, "re-minted after the 401");

    tokio::time::sleep(Duration::from_millis(8500)).await;
    let frames = run(&app, &token, "rename it to Groceries", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_created"]);
    assert_eq!(
        gh.tokens_minted(),
        3,
        "replaced before it expires, though GitHub still accepted it"
    );
    assert_eq!(
        gh.files_at(ORG, REPO, "main"),
        version_files(&app, &token, &id, 4).await
    );
    app.stop().await;
}
db_test!(github_app_installation_tokens_are_cached_and_reminted);

// ---------------------------------------------------------------------------------------------
// 6. No git host
// ---------------------------------------------------------------------------------------------

async fn no_git_host_means_no_repository(kind: DbKind) {
    let app = spawn_app_with(kind, &format!("{NO_DEPLOY}[git]\nhost = \"none\"\n")).await;
    assert!(app.state.git.is_none());
    let token = app.token("alice");
    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    assert_eq!(notice_types(&frames), ["version_created"]);
    let frames = run(&app, &token, "remove the readme", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created"]);
    let view = app_view(&app, &token, &id).await;
    assert!(view["repositoryUrl"].is_null(), "{view}");
    assert_eq!(view["version"], 2);
    let v2 = version_files(&app, &token, &id, 2).await;
    assert!(!v2.contains_key("README.md"));
    assert_eq!(
        git_states(&app, &id).await,
        vec![(1, None, None), (2, None, None)],
        "nothing waits to be pushed"
    );
    assert!(!app.data_dir.path().join("git").exists());
    app.stop().await;
}
db_test!(no_git_host_means_no_repository);

// ---------------------------------------------------------------------------------------------
// 7. Versions made while git was off
// ---------------------------------------------------------------------------------------------

const NO_GIT: &str = "[deploy]\non_new_version = false\n[git]\nhost = \"none\"\n";

/// Runs `message` on a gateway with `git_toml` and returns it with the new version's files,
/// checking which notices the run gave.
async fn run_on(
    app: TestApp,
    git_toml: &str,
    (message, id): (&str, &str),
    expected_notices: &[&str],
) -> (TestApp, Vec<Frame>) {
    let app = app.restart(git_toml).await;
    let token = app.token("alice");
    let frames = run(&app, &token, message, Some(id)).await;
    assert_eq!(notice_types(&frames), expected_notices, "{message}");
    (app, frames)
}

/// Compares the paths first, so a missing or extra file is reported by name, not as bytes.
fn assert_same_files(actual: Files, expected: &Files, what: &str) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}"
    );
    assert_eq!(&actual, expected, "{what}");
}

/// Versions made while `git.host = "none"` are never pushed, so the repository does not hold the
/// parent version's files: enabling git later still gives a first commit with all of the
/// version's files, and a commit after another unpushed version also drops what that version
/// deleted. `repo_files` reads the branch head's files from the host.
async fn versions_made_without_git_are_not_lost(
    kind: DbKind,
    git_toml: &str,
    repo_files: impl Fn(&TestApp, &Value) -> Files,
) {
    let app = spawn_app_with(kind, NO_GIT).await;
    let token = app.token("alice");
    let id = app_id(&run(&app, &token, BUILD, None).await);

    let (app, frames) = run_on(
        app,
        git_toml,
        ("add a dark mode", &id),
        &["version_created", "repo_created", "commit_created"],
    )
    .await;
    let sha2 = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    let v1 = version_files(&app, &token, &id, 1).await;
    let v2 = version_files(&app, &token, &id, 2).await;
    assert!(
        changed_paths(&v1, &v2).len() < v2.len(),
        "test setup: version 2 keeps some of version 1's files"
    );
    let view = app_view(&app, &token, &id).await;
    assert_same_files(
        repo_files(&app, &view),
        &v2,
        "the first commit holds all of version 2",
    );

    let (app, _) = run_on(
        app,
        NO_GIT,
        ("remove the readme", &id),
        &["version_created"],
    )
    .await;
    let (app, frames) = run_on(
        app,
        git_toml,
        ("rename it to Groceries", &id),
        &["version_created", "commit_created"],
    )
    .await;
    let sha4 = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    let v3 = version_files(&app, &token, &id, 3).await;
    let v4 = version_files(&app, &token, &id, 4).await;
    assert!(
        v2.contains_key("README.md") && !v3.contains_key("README.md"),
        "test setup: the unpushed version 3 deletes README.md"
    );
    assert_same_files(
        repo_files(&app, &view),
        &v4,
        "the commit holds exactly version 4: version 3's deletion included",
    );
    assert_eq!(
        git_states(&app, &id).await,
        vec![
            (1, None, None),
            (2, Some("pushed".into()), Some(sha2)),
            (3, None, None),
            (4, Some("pushed".into()), Some(sha4)),
        ]
    );
    let pushed_to = Some((
        view["repositoryUrl"].as_str().expect("url").to_string(),
        app_row(&app, &id).await.repo_owner.expect("owner"),
        view["appName"].as_str().expect("name").to_string(),
    ));
    assert_eq!(
        version_repos(&app, &id).await,
        vec![(1, None), (2, pushed_to.clone()), (3, None), (4, pushed_to)]
    );
    app.stop().await;
}

async fn local_host_commits_versions_made_without_git(kind: DbKind) {
    let work = tempfile::tempdir().expect("tempdir");
    let clones = std::cell::Cell::new(0);
    versions_made_without_git_are_not_lost(kind, &local_config(3600), |app, view| {
        clones.set(clones.get() + 1);
        let bare = local_repo_dir(app, view);
        let checkout = clone(
            bare.to_str().expect("utf-8"),
            &work.path().join(clones.get().to_string()),
        );
        let files = checkout_files(&checkout);
        assert_eq!(tree_at(&checkout, "HEAD"), files, "modes included");
        files
    })
    .await;
    assert_eq!(clones.get(), 2);
}
db_test!(local_host_commits_versions_made_without_git);

async fn github_host_commits_versions_made_without_git(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    versions_made_without_git_are_not_lost(kind, &github_config(&gh, 3600), |_, view| {
        let name = view["appName"].as_str().expect("appName");
        gh.files_at(USER, name, "main")
    })
    .await;
}
db_test!(github_host_commits_versions_made_without_git);

/// GitHub's primary rate limit with its reset an hour away: the push waits for the reset (not
/// the 1 s retry interval), and every later GitHub call of that credential is held until then
/// instead of calling GitHub again (GitHub bans integrations that keep calling).
async fn a_long_rate_limit_holds_every_github_call_until_its_reset(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 1)).await;
    let token = app.token("alice");
    gh.primary_rate_limit_next(1, 3600);
    let frames = run(&app, &token, BUILD, None).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    let id = app_id(&frames);
    let calls = gh.requests().len();
    let frames = run(&app, &token, "add a dark mode", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    assert_eq!(
        gh.requests().len(),
        calls,
        "nothing called GitHub before the reset"
    );
    let pushes = entity::jobs::Entity::find()
        .filter(entity::jobs::Column::AppId.eq(id.as_str()))
        .filter(entity::jobs::Column::Kind.eq(entity::jobs::JobKind::PushVersion))
        .filter(entity::jobs::Column::Status.eq(entity::jobs::JobStatus::Queued))
        .all(&app.state.db)
        .await
        .expect("jobs");
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let waits = pushes[0].run_at - chrono::Utc::now();
    assert!(
        waits > chrono::Duration::minutes(50),
        "retried after {waits}"
    );
    assert_eq!(gh.header_violations(), Vec::<String>::new());
    app.stop().await;
}
db_test!(a_long_rate_limit_holds_every_github_call_until_its_reset);

/// Every request agentgate sends GitHub carries the documented media type, a pinned API
/// version and one User-Agent, agentgate's; repository creation sends no `null` strings (GitHub answers 422).
async fn github_requests_carry_the_documented_headers(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 3600)).await;
    let token = app.token("alice");
    let frames = run(&app, &token, BUILD, None).await;
    assert_eq!(
        notice_types(&frames),
        ["version_created", "repo_created", "commit_created"]
    );
    let id = app_id(&frames);
    run(&app, &token, "add a dark mode", Some(&id)).await;
    assert!(gh.requests().len() > 3);
    assert_eq!(gh.header_violations(), Vec::<String>::new());
    assert_eq!(gh.user_agents(), [agentgate::USER_AGENT]);
    app.stop().await;
}
db_test!(github_requests_carry_the_documented_headers);

/// A creation whose answer was lost (GitHub made the repository, we saw a 502) is retried; the
/// retry's "name already exists" finds the repository this app's first try created and adopts
/// it instead of creating a second, suffixed one beside an orphan.
async fn a_lost_creation_answer_adopts_the_repository_it_made(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 3600)).await;
    let token = app.token("alice");
    gh.lose_next_creation_answer();
    let frames = run(&app, &token, BUILD, None).await;
    assert_eq!(
        notice_types(&frames),
        ["version_created", "repo_created", "commit_created"]
    );
    assert_eq!(gh.repo_names(USER).len(), 1, "{:?}", gh.repo_names(USER));
    let id = app_id(&frames);
    let view = app_view(&app, &token, &id).await;
    let name = gh.repo_names(USER)[0].clone();
    assert!(
        view["repositoryUrl"]
            .as_str()
            .unwrap_or("")
            .ends_with(&name),
        "{view}"
    );
    app.stop().await;
}
db_test!(a_lost_creation_answer_adopts_the_repository_it_made);
