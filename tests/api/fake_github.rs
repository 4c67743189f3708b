//! A stateful fake of the parts of GitHub's REST API (version 2022-11-28) that the git host uses,
//! served by axum on a random local port. Self-contained: axum, tokio, serde_json, base64,
//! sha1, hex and chrono only.
//!
//! Shapes and status codes follow docs.github.com/en/rest:
//! - repos: "Create a repository for the authenticated user" (`POST /user/repos`), "Create an
//!   organization repository" (`POST /orgs/{org}/repos`; 422 "Repository creation failed." with
//!   `errors[].message` "name already exists on this account"), "Get a repository", "Update a
//!   repository" (`PATCH`, incl. `homepage` and `archived`; archived repositories answer 403
//!   "Repository was archived so is read-only." to writes).
//! - git database: "Create a blob" / "Get a blob", "Create a tree" (`base_tree`, nested paths,
//!   `sha: null` deletes, modes 100644/100755/120000/040000/160000) / "Get a tree"
//!   (`?recursive=1`), "Create a commit" / "Get a commit object", "Get a reference", "Create a
//!   reference" (422 "Reference already exists"), "Update a reference" (422 "Update is not a
//!   fast forward" unless `force`). On a repository without commits every git database call
//!   answers 409 "Git Repository is empty.", as GitHub does.
//! - contents: "Create or update file contents" (`PUT /repos/{o}/{r}/contents/{path}`), which
//!   also works on an empty repository and creates its first branch.
//! - apps: "Get an organization installation for the authenticated app", "Get a user
//!   installation for the authenticated app", "Create an installation access token for an app"
//!   (`expires_at` controlled by the fake). These need an app JWT: it is checked structurally
//!   (RS256 header, numeric `iat`/`exp`, not expired, at most 10 minutes long, `iss` = app id);
//!   the signature itself is not verified.
//! - "Troubleshooting": 401 "Bad credentials" for a missing, unknown or expired token;
//!   "Rate limits": secondary limits as 403 with `retry-after`, primary as 403 with
//!   `x-ratelimit-remaining: 0` and `x-ratelimit-reset`.
//!
//! Every request is checked against GitHub's official description of the operation
//! (`@octokit/openapi`, installed by `npm ci` in tests/openapi; see `openapi_check.rs`): path
//! parameters, query and JSON body. One that does not follow it gets 422 "Invalid request." (as
//! GitHub answers) and is recorded; so is any answer of the fake that does not follow the
//! description. The fake panics when dropped with a violation left (unless the test already
//! panics), so no test can forget to check; a test that sends invalid requests on purpose takes
//! them with [`FakeGitHub::take_request_violations`].
//!
//! Object ids are real git ids (sha1 of `blob|tree|commit <len>\0...`), so a tree or blob sha
//! computed by a git client matches. Known simplifications: repository names are validated
//! (422) instead of silently normalised, any organisation exists and the personal token's user
//! belongs to all of them, `auto_init` is ignored, html URLs point at the fake's own address.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::openapi_check::{Description, Operation};

mod git_data;
mod shapes;

use git_data::{
    create_blob, create_commit, create_ref, create_tree, get_blob, get_tree, update_ref,
};
use shapes::{account_json, commit_json, ref_json, repo_json};

/// The personal access token the fake accepts, belonging to [`USER`].
pub const PERSONAL_TOKEN: &str = "ghp_fakeFAKEfake0123456789personalTOKEN";
pub const USER: &str = "octo-user";
/// The GitHub App whose JWTs the fake accepts.
pub const APP_ID: u64 = 4242;
const DOCS: &str = "https://docs.github.com/rest";
const EMPTY_REPO: &str = "Git Repository is empty.";

/// The operations the fake serves, as GitHub's description names them.
const SERVED: &[(&str, &str)] = &[
    ("GET", "/orgs/{org}/installation"),
    ("GET", "/users/{username}/installation"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("POST", "/user/repos"),
    ("POST", "/orgs/{org}/repos"),
    ("GET", "/repos/{owner}/{repo}"),
    ("PATCH", "/repos/{owner}/{repo}"),
    ("PUT", "/repos/{owner}/{repo}/contents/{path}"),
    ("POST", "/repos/{owner}/{repo}/git/blobs"),
    ("GET", "/repos/{owner}/{repo}/git/blobs/{file_sha}"),
    ("POST", "/repos/{owner}/{repo}/git/trees"),
    ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}"),
    ("POST", "/repos/{owner}/{repo}/git/commits"),
    ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}"),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("POST", "/repos/{owner}/{repo}/git/refs"),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}"),
];

/// GitHub's description, loaded once per test process.
fn description() -> &'static Description {
    static DESCRIPTION: std::sync::LazyLock<Description> = std::sync::LazyLock::new(|| {
        Description::load(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/openapi/node_modules/@octokit/openapi/generated/api.github.com.json"
            ),
            SERVED,
        )
    });
    &DESCRIPTION
}

/// Path → (content, mode) as stored in a tree.
pub type Files = BTreeMap<String, (Vec<u8>, String)>;

pub struct FakeGitHub {
    pub url: String,
    state: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

/// A commit as the fake stores it, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCommit {
    pub tree: String,
    pub parents: Vec<String>,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
}

impl Drop for FakeGitHub {
    /// A test ends with no request that broke GitHub's description (and no answer of the
    /// fake's that did): agentgate must only send what GitHub documents.
    fn drop(&mut self) {
        self.task.abort();
        if std::thread::panicking() {
            return;
        }
        let inner = self.lock();
        let broken: Vec<&String> = inner
            .request_violations
            .iter()
            .chain(&inner.response_violations)
            .collect();
        assert!(
            broken.is_empty(),
            "the fake GitHub saw requests or gave answers that break GitHub's API description:\n{}",
            broken
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

impl FakeGitHub {
    pub async fn start() -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake GitHub");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let state = Arc::new(Mutex::new(Inner {
            base: url.clone(),
            token_ttl_secs: 3600,
            ..Inner::default()
        }));
        {
            let mut inner = state.lock().expect("fresh lock");
            inner.tokens.insert(
                PERSONAL_TOKEN.to_string(),
                Token {
                    account: USER.to_string(),
                    installation: false,
                    expires_at: None,
                },
            );
        }
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitHub { url, state, task }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- fault injection ----

    /// The next `n` requests fail with `status` (e.g. 502), before authentication.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut inner = self.lock();
        inner.faults.extend((0..n).map(|_| Fault::Status(status)));
    }

    /// The next repository creation happens, but its caller gets a 502 (the answer was lost).
    pub fn lose_next_creation_answer(&self) {
        self.lock().lose_next_creation = true;
    }

    /// The next `n` requests hit a secondary rate limit: 403 with `retry-after`.
    pub fn rate_limit_next(&self, n: usize, retry_after_secs: u64) {
        let mut inner = self.lock();
        inner
            .faults
            .extend((0..n).map(|_| Fault::Secondary(retry_after_secs)));
    }

    /// The next `n` requests hit the primary rate limit, which resets in `reset_in_secs`.
    pub fn primary_rate_limit_next(&self, n: usize, reset_in_secs: u64) {
        let mut inner = self.lock();
        inner
            .faults
            .extend((0..n).map(|_| Fault::Primary(reset_in_secs)));
    }

    /// Once the next request with `method` whose path contains `path_part` has been answered
    /// normally, the `n` requests after it fail with `status`: an outage in the middle of a
    /// multi-request operation (e.g. right after the Contents API created the first commit).
    pub fn fail_after_next(&self, method: &str, path_part: &str, n: usize, status: u16) {
        self.lock().fail_after = Some(FailAfter {
            method: method.to_string(),
            path_part: path_part.to_string(),
            n,
            status,
        });
    }

    /// The next `n` requests hit the primary rate limit answered as 429 (GitHub answers a
    /// primary limit with 403 or 429), which resets in `reset_in_secs`.
    pub fn too_many_requests_next(&self, n: usize, reset_in_secs: u64) {
        let mut inner = self.lock();
        inner
            .faults
            .extend((0..n).map(|_| Fault::TooMany(reset_in_secs)));
    }

    /// The GitHub App is not (or no longer) installed on `account`: looking its installation
    /// up answers 404, and so does minting a token for an installation it had.
    pub fn uninstall_app(&self, account: &str) {
        let mut inner = self.lock();
        inner.uninstalled.push(account.to_lowercase());
        inner
            .installations
            .retain(|_, a| !a.eq_ignore_ascii_case(account));
        // Its tokens stop working with it.
        let past = Utc::now() - chrono::Duration::seconds(1);
        for token in inner.tokens.values_mut() {
            if token.installation && token.account.eq_ignore_ascii_case(account) {
                token.expires_at = Some(past);
            }
        }
    }

    /// Recursive tree listings from now on hold at most `max_entries` entries and say
    /// `truncated: true` when the tree has more, as GitHub does past its listing limit.
    pub fn truncate_tree_listings(&self, max_entries: usize) {
        self.lock().listing_limit = Some(max_entries);
    }

    /// From now on every answer carries GitHub's rate-limit headers, counting down from
    /// `remaining` calls until a reset `reset_in_secs` away (then a full 5,000 again); a call
    /// made with nothing left is refused like GitHub's primary limit (403).
    pub fn set_rate_budget(&self, remaining: u64, reset_in_secs: i64) {
        self.lock().rate_budget = Some(RateBudget {
            remaining,
            reset: Utc::now().timestamp() + reset_in_secs,
        });
    }

    /// Calls refused because the rate budget was used up.
    pub fn over_budget_calls(&self) -> usize {
        self.lock().over_budget_calls
    }

    /// Injected faults not served yet.
    pub fn faults_left(&self) -> usize {
        self.lock().faults.len()
    }

    /// Someone else pushes a commit with `changes` (None deletes) onto `branch`.
    /// Returns the new head.
    pub fn push_external_commit(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        changes: BTreeMap<String, Option<(Vec<u8>, String)>>,
    ) -> String {
        self.lock().external_commit(owner, repo, branch, changes)
    }

    /// Like [`Self::push_external_commit`], but just before the next `PATCH .../git/refs/...`
    /// is handled: the race between reading a branch and moving it.
    pub fn push_external_commit_before_next_ref_update(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        changes: BTreeMap<String, Option<(Vec<u8>, String)>>,
    ) {
        self.lock().pending_push = Some(PendingPush {
            owner: owner.to_string(),
            repo: repo.to_string(),
            branch: branch.to_string(),
            changes,
        });
    }

    /// Every installation token issued so far stops working (401) at once.
    pub fn expire_tokens(&self) {
        let mut inner = self.lock();
        let past = Utc::now() - chrono::Duration::seconds(1);
        for token in inner.tokens.values_mut().filter(|t| t.installation) {
            token.expires_at = Some(past);
        }
    }

    /// Lifetime of installation tokens minted from now on (GitHub: one hour).
    pub fn set_token_ttl(&self, secs: i64) {
        self.lock().token_ttl_secs = secs;
    }

    // ---- inspection ----

    /// Requests that broke GitHub's description (each answered 422), removed from the fake so
    /// that dropping it does not fail the test.
    pub fn take_request_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().request_violations)
    }

    /// Answers of the fake that break GitHub's description (a bug in the fake).
    pub fn response_violations(&self) -> Vec<String> {
        self.lock().response_violations.clone()
    }

    /// The files on `branch` (empty when the branch does not exist).
    pub fn files_at(&self, owner: &str, repo: &str, branch: &str) -> Files {
        let inner = self.lock();
        let Some(repo) = inner.repo(owner, repo) else {
            return Files::new();
        };
        let Some(head) = repo.refs.get(&format!("refs/heads/{branch}")) else {
            return Files::new();
        };
        let tree = repo
            .commit(head)
            .map(|c| c.tree.clone())
            .unwrap_or_default();
        repo.flat_tree(&tree)
            .into_iter()
            .filter_map(|(path, (mode, sha))| match repo.objects.get(&sha) {
                Some(Object::Blob(content)) => Some((path, (content.clone(), mode))),
                _ => None,
            })
            .collect()
    }

    pub fn head(&self, owner: &str, repo: &str, branch: &str) -> Option<String> {
        let inner = self.lock();
        inner
            .repo(owner, repo)?
            .refs
            .get(&format!("refs/heads/{branch}"))
            .cloned()
    }

    pub fn commit_info(&self, owner: &str, repo: &str, sha: &str) -> Option<FakeCommit> {
        let inner = self.lock();
        let commit = inner.repo(owner, repo)?.commit(sha)?;
        Some(FakeCommit {
            tree: commit.tree.clone(),
            parents: commit.parents.clone(),
            message: commit.message.clone(),
            author_name: commit.author.name.clone(),
            author_email: commit.author.email.clone(),
        })
    }

    /// How many `POST /repos/{o}/{r}/git/blobs` requests succeeded.
    pub fn blob_uploads(&self) -> usize {
        self.lock().blob_uploads
    }

    /// How many installation tokens were minted.
    pub fn tokens_minted(&self) -> usize {
        self.lock().tokens_minted
    }

    /// Every request received, as (method, path), including failed ones.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.lock().requests.clone()
    }

    /// The User-Agents requests came with.
    pub fn user_agents(&self) -> Vec<String> {
        self.lock().user_agents.iter().cloned().collect()
    }

    /// Requests that lacked `Accept: application/vnd.github+json`, `X-GitHub-Api-Version` or
    /// a `User-Agent`, or sent more than one User-Agent.
    pub fn header_violations(&self) -> Vec<String> {
        self.lock().header_violations.clone()
    }

    pub fn homepage(&self, owner: &str, repo: &str) -> Option<String> {
        self.lock().repo(owner, repo)?.homepage.clone()
    }

    pub fn is_archived(&self, owner: &str, repo: &str) -> bool {
        self.lock().repo(owner, repo).is_some_and(|r| r.archived)
    }

    pub fn is_private(&self, owner: &str, repo: &str) -> Option<bool> {
        Some(self.lock().repo(owner, repo)?.private)
    }

    /// Names of the repositories `owner` has.
    pub fn repo_names(&self, owner: &str) -> Vec<String> {
        self.lock()
            .repos
            .values()
            .filter(|r| r.owner.eq_ignore_ascii_case(owner))
            .map(|r| r.name.clone())
            .collect()
    }
}

// ============================================================================================
// State
// ============================================================================================

#[derive(Default)]
struct Inner {
    base: String,
    next_id: u64,
    /// Keyed by lower-cased "owner/name": GitHub names are case-insensitive.
    repos: BTreeMap<String, Repo>,
    tokens: HashMap<String, Token>,
    installations: BTreeMap<u64, String>,
    requests: Vec<(String, String)>,
    faults: VecDeque<Fault>,
    blob_uploads: usize,
    tokens_minted: usize,
    token_ttl_secs: i64,
    pending_push: Option<PendingPush>,
    fail_after: Option<FailAfter>,
    /// Requests without the headers GitHub documents for every call.
    header_violations: Vec<String>,
    /// Requests whose parameters or body break the operation's description.
    request_violations: Vec<String>,
    /// Every User-Agent seen.
    user_agents: std::collections::BTreeSet<String>,
    /// Answers of the fake that break the operation's description.
    response_violations: Vec<String>,
    /// The next repository creation goes through but its answer is a 502.
    lose_next_creation: bool,
    /// Lower-cased accounts the GitHub App is not installed on.
    uninstalled: Vec<String>,
    /// Most entries a recursive tree listing holds before it is truncated.
    listing_limit: Option<usize>,
    /// The primary rate limit's budget, when the fake counts it.
    rate_budget: Option<RateBudget>,
    over_budget_calls: usize,
}

struct RateBudget {
    remaining: u64,
    /// Unix time.
    reset: i64,
}

struct FailAfter {
    method: String,
    path_part: String,
    n: usize,
    status: u16,
}

struct PendingPush {
    owner: String,
    repo: String,
    branch: String,
    changes: BTreeMap<String, Option<(Vec<u8>, String)>>,
}

struct Token {
    account: String,
    installation: bool,
    expires_at: Option<DateTime<Utc>>,
}

enum Fault {
    Status(u16),
    Secondary(u64),
    Primary(u64),
    TooMany(u64),
}

struct Repo {
    id: u64,
    owner: String,
    owner_is_org: bool,
    name: String,
    private: bool,
    description: Option<String>,
    homepage: Option<String>,
    archived: bool,
    default_branch: String,
    created_at: DateTime<Utc>,
    objects: HashMap<String, Object>,
    refs: BTreeMap<String, String>,
}

enum Object {
    Blob(Vec<u8>),
    Tree(Vec<Entry>),
    Commit(Commit),
}

#[derive(Clone)]
struct Entry {
    name: String,
    mode: String,
    sha: String,
}

#[derive(Clone)]
struct Commit {
    tree: String,
    parents: Vec<String>,
    message: String,
    author: Person,
    committer: Person,
}

#[derive(Clone)]
struct Person {
    name: String,
    email: String,
    date: DateTime<Utc>,
}

impl Inner {
    fn key(owner: &str, name: &str) -> String {
        format!("{}/{}", owner.to_lowercase(), name.to_lowercase())
    }

    fn repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.repos.get(&Self::key(owner, name))
    }

    fn repo_mut(&mut self, owner: &str, name: &str) -> Option<&mut Repo> {
        self.repos.get_mut(&Self::key(owner, name))
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn external_commit(
        &mut self,
        owner: &str,
        repo: &str,
        branch: &str,
        changes: BTreeMap<String, Option<(Vec<u8>, String)>>,
    ) -> String {
        let repo = self.repo_mut(owner, repo).expect("repository exists");
        let refname = format!("refs/heads/{branch}");
        let parent = repo.refs.get(&refname).cloned();
        let mut files = match &parent {
            Some(sha) => repo.flat_tree(&repo.commit(sha).expect("head commit").tree),
            None => BTreeMap::new(),
        };
        for (path, change) in changes {
            match change {
                Some((content, mode)) => {
                    let sha = repo.put(Object::Blob(content));
                    files.insert(path, (mode, sha));
                }
                None => {
                    files.remove(&path);
                }
            }
        }
        let tree = repo.write_tree(&files);
        let who = Person {
            name: "External Dev".into(),
            email: "external@example.com".into(),
            date: Utc::now(),
        };
        let sha = repo.put(Object::Commit(Commit {
            tree,
            parents: parent.into_iter().collect(),
            message: "External change".into(),
            author: who.clone(),
            committer: who,
        }));
        repo.refs.insert(refname, sha.clone());
        sha
    }
}

impl Repo {
    /// GitHub's "empty": no commits yet, so no refs.
    fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    fn put(&mut self, object: Object) -> String {
        let sha = object.id();
        self.objects.insert(sha.clone(), object);
        sha
    }

    fn commit(&self, sha: &str) -> Option<&Commit> {
        match self.objects.get(sha) {
            Some(Object::Commit(c)) => Some(c),
            _ => None,
        }
    }

    fn tree(&self, sha: &str) -> Option<&Vec<Entry>> {
        match self.objects.get(sha) {
            Some(Object::Tree(t)) => Some(t),
            _ => None,
        }
    }

    /// Path → (mode, sha) for every non-tree entry below `tree`.
    fn flat_tree(&self, tree: &str) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        self.walk(tree, "", &mut |path, entry| {
            if entry.mode != "40000" {
                out.insert(path, (entry.mode.clone(), entry.sha.clone()));
            }
        });
        out
    }

    fn walk(&self, tree: &str, prefix: &str, visit: &mut dyn FnMut(String, &Entry)) {
        for entry in self.tree(tree).cloned().unwrap_or_default() {
            let path = format!("{prefix}{}", entry.name);
            visit(path.clone(), &entry);
            if entry.mode == "40000" {
                self.walk(&entry.sha, &format!("{path}/"), visit);
            }
        }
    }

    /// Stores the nested trees for a flat listing and returns the root tree's sha.
    fn write_tree(&mut self, files: &BTreeMap<String, (String, String)>) -> String {
        let mut entries = Vec::new();
        let mut dirs: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
        for (path, (mode, sha)) in files {
            match path.split_once('/') {
                Some((dir, rest)) => {
                    dirs.entry(dir.to_string())
                        .or_default()
                        .insert(rest.to_string(), (mode.clone(), sha.clone()));
                }
                None => entries.push(Entry {
                    name: path.clone(),
                    mode: mode.clone(),
                    sha: sha.clone(),
                }),
            }
        }
        for (dir, inner) in dirs {
            let sha = self.write_tree(&inner);
            entries.push(Entry {
                name: dir,
                mode: "40000".into(),
                sha,
            });
        }
        self.put(Object::Tree(entries))
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        let mut queue = vec![descendant.to_string()];
        let mut seen = std::collections::HashSet::new();
        while let Some(sha) = queue.pop() {
            if sha == ancestor {
                return true;
            }
            if seen.insert(sha.clone()) {
                if let Some(c) = self.commit(&sha) {
                    queue.extend(c.parents.iter().cloned());
                }
            }
        }
        false
    }
}

impl Object {
    /// The git object id: sha1 of `<kind> <len>\0<body>`.
    fn id(&self) -> String {
        let (kind, body) = match self {
            Object::Blob(content) => ("blob", content.clone()),
            Object::Tree(entries) => ("tree", tree_bytes(entries)),
            Object::Commit(c) => ("commit", commit_bytes(c)),
        };
        let mut hasher = Sha1::new();
        hasher.update(format!("{kind} {}\0", body.len()).as_bytes());
        hasher.update(&body);
        hex::encode(hasher.finalize())
    }
}

fn tree_bytes(entries: &[Entry]) -> Vec<u8> {
    // git sorts directories as if their name ended in '/'.
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    let key = |e: &Entry| {
        let mut k = e.name.as_bytes().to_vec();
        if e.mode == "40000" {
            k.push(b'/');
        }
        k
    };
    sorted.sort_by_key(|e| key(e));
    let mut out = Vec::new();
    for e in sorted {
        out.extend_from_slice(format!("{} {}\0", e.mode, e.name).as_bytes());
        out.extend(hex::decode(&e.sha).unwrap_or_default());
    }
    out
}

fn commit_bytes(c: &Commit) -> Vec<u8> {
    let mut text = format!("tree {}\n", c.tree);
    for p in &c.parents {
        text.push_str(&format!("parent {p}\n"));
    }
    for (role, who) in [("author", &c.author), ("committer", &c.committer)] {
        text.push_str(&format!(
            "{role} {} <{}> {} +0000\n",
            who.name,
            who.email,
            who.date.timestamp()
        ));
    }
    text.push('\n');
    text.push_str(&c.message);
    text.into_bytes()
}

// ============================================================================================
// HTTP
// ============================================================================================

type Shared = Arc<Mutex<Inner>>;
type Reply = Result<Response, Fail>;

/// An error answer: GitHub's `{message, documentation_url, ...}` body with a status.
struct Fail {
    status: u16,
    body: Value,
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        reply(self.status, self.body)
    }
}

/// What authenticated a request.
struct Caller {
    account: String,
    installation: bool,
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let decoded: Vec<String> = uri.path().split('/').map(percent_decode).collect();
    let operation = description().operation(method.as_str(), &decoded.join("/"));
    let response = answer(&state, &method, &uri, &headers, &body, operation.as_ref());
    let Some((operation, _)) = operation else {
        // Whatever the fake serves must be checked: a route outside `SERVED` is a gap.
        if response.status().is_success() {
            let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
            inner.response_violations.push(format!(
                "{method} {uri} was served but matches no operation in SERVED"
            ));
        }
        return response;
    };
    // The answer is checked against the description too: the fake must not teach agentgate
    // shapes GitHub never sends.
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let problems = operation.check_response(parts.status.as_u16(), &json);
    if !problems.is_empty() {
        let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
        inner.response_violations.push(format!(
            "{} answered {}: {}",
            operation.name,
            parts.status.as_u16(),
            problems.join(" ")
        ));
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

fn answer(
    state: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    operation: Option<&(&Operation, Vec<(String, String)>)>,
) -> Response {
    let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
    inner
        .requests
        .push((method.to_string(), uri.path().to_string()));
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let user_agents = headers.get_all("user-agent").iter().count();
    if !header("accept").contains("application/vnd.github+json")
        || header("x-github-api-version").is_empty()
        || header("user-agent").is_empty()
        || user_agents > 1
    {
        let seen = format!(
            "{method} {}: accept {:?}, x-github-api-version {:?}, user-agent {:?}",
            uri.path(),
            header("accept"),
            header("x-github-api-version"),
            header("user-agent")
        );
        inner.header_violations.push(seen);
    }
    let agent = header("user-agent").to_string();
    inner.user_agents.insert(agent);
    // GitHub refuses a request without a User-Agent.
    if header("user-agent").is_empty() {
        return error(403, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header").into_response();
    }
    if let Some(fault) = inner.faults.pop_front() {
        return fault_response(fault);
    }
    let budget = inner.rate_budget.as_mut().map(|budget| {
        let now = Utc::now().timestamp();
        if now >= budget.reset {
            *budget = RateBudget {
                remaining: 5000,
                reset: now + 3600,
            };
        }
        let allowed = budget.remaining > 0;
        budget.remaining = budget.remaining.saturating_sub(1);
        (allowed, budget.remaining, budget.reset)
    });
    if let Some((false, _, reset)) = budget {
        inner.over_budget_calls += 1;
        let secs = (reset - Utc::now().timestamp()).max(0) as u64;
        return fault_response(Fault::Primary(secs));
    }
    let mut response = answer_checked(&mut inner, method, uri, headers, body, operation);
    if let Some((_, remaining, reset)) = budget {
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(5000));
        h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    }
    response
}

/// The answer to a request that got past headers, injected faults and the rate limit.
fn answer_checked(
    inner: &mut Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    operation: Option<&(&Operation, Vec<(String, String)>)>,
) -> Response {
    if let Some((operation, path_params)) = operation {
        // Unparsable JSON is left to `route` (400 "Problems parsing JSON").
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let problems =
            operation.check_request(path_params, uri.query().unwrap_or(""), json.as_ref());
        if !problems.is_empty() && (body.is_empty() || json.is_some()) {
            inner.request_violations.push(format!(
                "{method} {uri} ({}): {}",
                operation.name,
                problems.join(" ")
            ));
            return invalid_request(&problems).into_response();
        }
    }
    if method == Method::PATCH && uri.path().contains("/git/refs/") {
        if let Some(push) = inner.pending_push.take() {
            inner.external_commit(&push.owner, &push.repo, &push.branch, push.changes);
        }
    }
    let response = match route(inner, method, uri, headers, body) {
        Ok(r) => r,
        Err(fail) => fail.into_response(),
    };
    let trigger = inner
        .fail_after
        .as_ref()
        .is_some_and(|f| method.as_str() == f.method && uri.path().contains(&f.path_part));
    if let Some(after) = trigger.then(|| inner.fail_after.take()).flatten() {
        inner
            .faults
            .extend((0..after.n).map(|_| Fault::Status(after.status)));
    }
    response
}

fn route(inner: &mut Inner, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Reply {
    let segments: Vec<String> = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let recursive =
        uri.query().unwrap_or("").split('&').any(|kv| {
            kv.starts_with("recursive=") && kv != "recursive=0" && kv != "recursive=false"
        });
    let json: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|_| error(400, "Problems parsing JSON"))?
    };
    let m = method.as_str();

    // App-level endpoints authenticate with the App's JWT, everything else with a token.
    match (m, segs.as_slice()) {
        ("GET", ["orgs", account, "installation"]) => {
            check_jwt(headers)?;
            return installation_for(inner, account, true);
        }
        ("GET", ["users", account, "installation"]) => {
            check_jwt(headers)?;
            return installation_for(inner, account, false);
        }
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            check_jwt(headers)?;
            return mint_token(inner, id);
        }
        _ => {}
    }
    let caller = check_token(inner, headers)?;
    match (m, segs.as_slice()) {
        ("POST", ["user", "repos"]) => {
            if caller.installation {
                return Err(error(403, "Resource not accessible by integration"));
            }
            create_repo(inner, &caller.account.clone(), false, &json)
        }
        ("POST", ["orgs", org, "repos"]) => {
            if caller.installation && !caller.account.eq_ignore_ascii_case(org) {
                return Err(error(403, "Resource not accessible by integration"));
            }
            create_repo(inner, org, true, &json)
        }
        (_, ["repos", owner, name, rest @ ..]) => {
            if caller.installation && !caller.account.eq_ignore_ascii_case(owner) {
                return Err(not_found());
            }
            let base = inner.base.clone();
            let listing_limit = inner.listing_limit;
            let repo = inner.repo_mut(owner, name).ok_or_else(not_found)?;
            let request = RepoRequest {
                base: &base,
                caller: &caller,
                method: m,
                rest,
                recursive,
                listing_limit,
                json: &json,
            };
            let (response, blobs) = repo_route(repo, &request)?;
            inner.blob_uploads += blobs;
            Ok(response)
        }
        _ => Err(not_found()),
    }
}

/// A request below `/repos/{owner}/{repo}`.
struct RepoRequest<'a> {
    base: &'a str,
    caller: &'a Caller,
    method: &'a str,
    rest: &'a [&'a str],
    recursive: bool,
    listing_limit: Option<usize>,
    json: &'a Value,
}

/// Returns the response and how many blobs the request uploaded.
fn repo_route(repo: &mut Repo, req: &RepoRequest<'_>) -> Result<(Response, usize), Fail> {
    let (base, caller, m, rest, recursive, json) = (
        req.base,
        req.caller,
        req.method,
        req.rest,
        req.recursive,
        req.json,
    );
    let writes = m != "GET";
    match (m, rest) {
        ("GET", []) => return Ok((reply(200, repo_json(repo, base)), 0)),
        ("PATCH", []) => return update_repo(repo, base, json).map(|r| (r, 0)),
        _ => {}
    }
    if writes && repo.archived {
        return Err(error(403, "Repository was archived so is read-only."));
    }
    match (m, rest) {
        ("PUT", ["contents", path @ ..]) => {
            return put_contents(repo, base, caller, &path.join("/"), json).map(|r| (r, 0))
        }
        (_, ["git", ..]) if repo.is_empty() => return Err(error(409, EMPTY_REPO)),
        _ => {}
    }
    let api = format!("{base}/repos/{}/{}", repo.owner, repo.name);
    match (m, rest) {
        ("POST", ["git", "blobs"]) => create_blob(repo, &api, json).map(|r| (r, 1)),
        ("GET", ["git", "blobs", sha]) => get_blob(repo, &api, sha).map(|r| (r, 0)),
        ("POST", ["git", "trees"]) => create_tree(repo, &api, json).map(|r| (r, 0)),
        ("GET", ["git", "trees", sha]) => {
            let limit = recursive.then_some(req.listing_limit).flatten();
            get_tree(repo, &api, sha, limit, recursive).map(|r| (r, 0))
        }
        ("POST", ["git", "commits"]) => create_commit(repo, base, caller, json).map(|r| (r, 0)),
        ("GET", ["git", "commits", sha]) => repo
            .commit(sha)
            .map(|c| (reply(200, commit_json(repo, base, sha, c)), 0))
            .ok_or_else(not_found),
        ("GET", ["git", "ref", name @ ..]) => {
            let refname = format!("refs/{}", name.join("/"));
            let sha = repo.refs.get(&refname).ok_or_else(not_found)?;
            Ok((reply(200, ref_json(&api, &refname, sha)), 0))
        }
        ("POST", ["git", "refs"]) => create_ref(repo, &api, json).map(|r| (r, 0)),
        ("PATCH", ["git", "refs", name @ ..]) => {
            update_ref(repo, &api, &format!("refs/{}", name.join("/")), json).map(|r| (r, 0))
        }
        _ => Err(not_found()),
    }
}

// ---- authentication ----

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim().to_string())
}

fn check_token(inner: &Inner, headers: &HeaderMap) -> Result<Caller, Fail> {
    let token = bearer(headers).ok_or_else(|| error(401, "Requires authentication"))?;
    let known = inner
        .tokens
        .get(&token)
        .ok_or_else(|| error(401, "Bad credentials"))?;
    if known.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(error(401, "Bad credentials"));
    }
    Ok(Caller {
        account: known.account.clone(),
        installation: known.installation,
    })
}

/// Structural JWT check: RS256 header, `iss` = app id, a live and short `iat`..`exp` window.
fn check_jwt(headers: &HeaderMap) -> Result<(), Fail> {
    let bad = |m: &str| error(401, m);
    let jwt = bearer(headers).ok_or_else(|| bad("A JSON web token could not be decoded"))?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let decode = |part: &str| -> Option<Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let (Some(header), Some(claims)) = (
        parts.first().and_then(|p| decode(p)),
        parts.get(1).and_then(|p| decode(p)),
    ) else {
        return Err(bad("A JSON web token could not be decoded"));
    };
    if parts.len() != 3 || parts[2].is_empty() || header["alg"] != "RS256" {
        return Err(bad("A JSON web token could not be decoded"));
    }
    let now = Utc::now().timestamp();
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err(bad("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"));
    };
    if exp <= now {
        return Err(bad("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"));
    }
    if iat > now + 60 || exp - iat > 600 {
        return Err(bad(
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    let iss_ok = match &claims["iss"] {
        Value::String(s) => s == &APP_ID.to_string(),
        Value::Number(n) => n.as_u64() == Some(APP_ID),
        _ => false,
    };
    if !iss_ok {
        return Err(bad("'Issuer' claim ('iss') must be an Integer"));
    }
    Ok(())
}

// ---- apps ----

fn installation_for(inner: &mut Inner, account: &str, org: bool) -> Reply {
    if inner.uninstalled.contains(&account.to_lowercase()) {
        return Err(not_found());
    }
    let existing = inner
        .installations
        .iter()
        .find(|(_, a)| a.eq_ignore_ascii_case(account))
        .map(|(id, _)| *id);
    let id = match existing {
        Some(id) => id,
        None => {
            let id = 1000 + inner.id();
            inner.installations.insert(id, account.to_string());
            id
        }
    };
    let base = inner.base.clone();
    Ok(reply(
        200,
        json!({
            "id": id,
            "account": account_json(&base, account, org),
            "access_tokens_url": format!("{base}/app/installations/{id}/access_tokens"),
            "repositories_url": format!("{base}/installation/repositories"),
            "html_url": format!("{base}/settings/installations/{id}"),
            "app_id": APP_ID,
            "app_slug": "agentgate-fake-app",
            "target_id": 1,
            "target_type": if org { "Organization" } else { "User" },
            "permissions": { "administration": "write", "contents": "write", "metadata": "read" },
            "events": [],
            "single_file_name": null,
            "repository_selection": "all",
            "created_at": iso(Utc::now()),
            "updated_at": iso(Utc::now()),
            "suspended_by": null,
            "suspended_at": null,
        }),
    ))
}

fn mint_token(inner: &mut Inner, id: &str) -> Reply {
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let account = inner
        .installations
        .get(&id)
        .cloned()
        .ok_or_else(not_found)?;
    inner.tokens_minted += 1;
    let n = inner.id();
    let token = format!(
        "ghs_{}",
        &hex::encode(Sha1::digest(format!("token-{n}-{}", Utc::now())))[..36]
    );
    let expires_at = Utc::now() + chrono::Duration::seconds(inner.token_ttl_secs);
    inner.tokens.insert(
        token.clone(),
        Token {
            account,
            installation: true,
            expires_at: Some(expires_at),
        },
    );
    Ok(reply(
        201,
        json!({
            "token": token,
            "expires_at": iso(expires_at),
            "permissions": { "administration": "write", "contents": "write", "metadata": "read" },
            "repository_selection": "all",
        }),
    ))
}

// ---- repositories ----

fn create_repo(inner: &mut Inner, owner: &str, org: bool, json: &Value) -> Reply {
    let name = json["name"].as_str().unwrap_or_default().to_string();
    let valid = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(validation(
            "Repository creation failed.",
            "name",
            "name is invalid",
        ));
    }
    if inner.repo(owner, &name).is_some() {
        return Err(validation(
            "Repository creation failed.",
            "name",
            "name already exists on this account",
        ));
    }
    let id = inner.id();
    let repo = Repo {
        id,
        owner: owner.to_string(),
        owner_is_org: org,
        name: name.clone(),
        private: json["private"].as_bool().unwrap_or(false),
        description: json["description"].as_str().map(str::to_string),
        homepage: json["homepage"].as_str().map(str::to_string),
        archived: false,
        default_branch: "main".into(),
        created_at: Utc::now(),
        objects: HashMap::new(),
        refs: BTreeMap::new(),
    };
    let body = repo_json(&repo, &inner.base);
    inner.repos.insert(Inner::key(owner, &name), repo);
    if std::mem::take(&mut inner.lose_next_creation) {
        return Err(error(502, "Server Error"));
    }
    Ok(reply(201, body))
}

fn update_repo(repo: &mut Repo, base: &str, json: &Value) -> Reply {
    if repo.archived && json.get("archived") != Some(&Value::Bool(false)) {
        return Err(error(403, "Repository was archived so is read-only."));
    }
    if let Some(homepage) = json.get("homepage") {
        repo.homepage = homepage.as_str().map(str::to_string);
    }
    if let Some(description) = json.get("description") {
        repo.description = description.as_str().map(str::to_string);
    }
    if let Some(private) = json["private"].as_bool() {
        repo.private = private;
    }
    if let Some(archived) = json["archived"].as_bool() {
        repo.archived = archived;
    }
    Ok(reply(200, repo_json(repo, base)))
}

// ---- contents ----

fn put_contents(repo: &mut Repo, base: &str, caller: &Caller, path: &str, json: &Value) -> Reply {
    let (Some(message), Some(content)) = (json["message"].as_str(), json["content"].as_str())
    else {
        return Err(validation(
            "Invalid request.",
            "content",
            "message and content are required",
        ));
    };
    if !valid_path(path) {
        return Err(error(422, "path contains a malformed path component"));
    }
    let cleaned: String = content.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|_| error(422, "content is not valid Base64"))?;
    let branch = json["branch"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| repo.default_branch.clone());
    let refname = format!("refs/heads/{branch}");
    let parent = repo.refs.get(&refname).cloned();
    if parent.is_none() && !repo.is_empty() {
        return Err(error(404, &format!("Branch {branch} not found")));
    }
    let mut files = match &parent {
        Some(sha) => repo.flat_tree(&repo.commit(sha).map(|c| c.tree.clone()).unwrap_or_default()),
        None => BTreeMap::new(),
    };
    let existing = files.get(path).map(|(_, sha)| sha.clone());
    match (&existing, json["sha"].as_str()) {
        (Some(_), None) => return Err(error(422, "Invalid request.\n\n\"sha\" wasn't supplied.")),
        (Some(current), Some(given)) if current != given => {
            return Err(error(409, &format!("{path} does not match {given}")))
        }
        (None, Some(_)) => return Err(error(409, &format!("{path} does not match"))),
        _ => {}
    }
    let blob = repo.put(Object::Blob(bytes.clone()));
    files.insert(path.to_string(), ("100644".into(), blob.clone()));
    if files.keys().any(|p| {
        p != path && (p.starts_with(&format!("{path}/")) || path.starts_with(&format!("{p}/")))
    }) {
        return Err(error(
            422,
            "path conflicts with an existing file or directory",
        ));
    }
    let tree = repo.write_tree(&files);
    let author = person(&json["author"]).unwrap_or_else(|| default_person(caller));
    let committer = person(&json["committer"]).unwrap_or_else(|| author.clone());
    let commit = Commit {
        tree,
        parents: parent.into_iter().collect(),
        message: message.to_string(),
        author,
        committer,
    };
    let sha = repo.put(Object::Commit(commit.clone()));
    if repo.is_empty() {
        repo.default_branch = branch.clone();
    }
    repo.refs.insert(refname, sha.clone());
    let api = format!("{base}/repos/{}/{}", repo.owner, repo.name);
    let html = format!("{base}/{}/{}", repo.owner, repo.name);
    let name = path.rsplit('/').next().unwrap_or(path);
    let status = if existing.is_some() { 200 } else { 201 };
    Ok(reply(
        status,
        json!({
            "content": {
                "name": name,
                "path": path,
                "sha": blob,
                "size": bytes.len(),
                "url": format!("{api}/contents/{path}?ref={branch}"),
                "html_url": format!("{html}/blob/{branch}/{path}"),
                "git_url": format!("{api}/git/blobs/{blob}"),
                "download_url": format!("{base}/raw/{}/{}/{branch}/{path}", repo.owner, repo.name),
                "type": "file",
                "_links": {
                    "self": format!("{api}/contents/{path}?ref={branch}"),
                    "git": format!("{api}/git/blobs/{blob}"),
                    "html": format!("{html}/blob/{branch}/{path}"),
                },
            },
            "commit": commit_json(repo, base, &sha, &commit),
        }),
    ))
}

// ---- helpers ----

fn person(value: &Value) -> Option<Person> {
    let name = value["name"].as_str()?.to_string();
    let email = value["email"].as_str()?.to_string();
    let date = value["date"]
        .as_str()
        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    Some(Person { name, email, date })
}

fn default_person(caller: &Caller) -> Person {
    Person {
        name: caller.account.clone(),
        email: format!("{}@users.noreply.github.com", caller.account),
        date: Utc::now(),
    }
}

fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && part != ".git")
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn node_id(kind: &str, id: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{id}"))
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn error(status: u16, message: &str) -> Fail {
    Fail {
        status,
        body: json!({ "message": message, "documentation_url": DOCS, "status": status.to_string() }),
    }
}

fn validation(message: &str, field: &str, detail: &str) -> Fail {
    Fail {
        status: 422,
        body: json!({
            "message": message,
            "errors": [{ "resource": "Repository", "code": "custom", "field": field, "message": detail }],
            "documentation_url": DOCS,
            "status": "422",
        }),
    }
}

/// GitHub's answer to a request its description refuses ("validation-error").
fn invalid_request(problems: &[String]) -> Fail {
    Fail {
        status: 422,
        body: json!({
            "message": format!("Invalid request.\n\n{}", problems.join("\n")),
            "documentation_url": DOCS,
            "status": "422",
        }),
    }
}

fn not_found() -> Fail {
    error(404, "Not Found")
}

fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::Status(status) => error(status, "Server Error").into_response(),
        Fault::Secondary(secs) => {
            let message = "You have exceeded a secondary rate limit. \
                           Please wait a few minutes before you try again.";
            let mut r = error(403, message).into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
            r
        }
        Fault::Primary(secs) | Fault::TooMany(secs) => {
            let status = if matches!(fault, Fault::TooMany(_)) {
                429
            } else {
                403
            };
            let reset = Utc::now().timestamp() + secs as i64;
            let mut r = error(status, "API rate limit exceeded for user ID 1.").into_response();
            let h = r.headers_mut();
            h.insert("x-ratelimit-limit", HeaderValue::from(5000));
            h.insert("x-ratelimit-remaining", HeaderValue::from(0));
            h.insert("x-ratelimit-reset", HeaderValue::from(reset));
            r
        }
    }
}
