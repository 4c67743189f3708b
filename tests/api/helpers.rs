//! Test harness: spawn the real application on 127.0.0.1:0 with a fresh database (SQLite in a
//! temp dir, or a fresh PostgreSQL database when AGENTGATE_TEST_DATABASE_URL is set), and talk
//! to it over HTTP like a client would.
use std::time::Duration;

use agentgate::config::Config;
use agentgate::state::AppState;
use agentgate::Application;
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// Generates a SQLite and a PostgreSQL variant of an async test taking a `DbKind`.
#[macro_export]
macro_rules! db_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::DbKind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_url().is_some() {
                    super::$name($crate::helpers::DbKind::Postgres).await
                }
            }
        }
    };
}

/// The admin URL for PostgreSQL tests. Under CI it must be set: a skipped suite is a failure.
pub fn postgres_url() -> Option<String> {
    match std::env::var("AGENTGATE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but AGENTGATE_TEST_DATABASE_URL is not set; the PostgreSQL suite must run"
            )
        }
        _ => None,
    }
}

pub struct TestApp {
    pub address: String,
    pub state: AppState,
    pub http: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    pg_database: Option<(String, String)>,
}

pub async fn spawn_app(kind: DbKind) -> TestApp {
    spawn_app_with(kind, "").await
}

/// Spawns the app with extra TOML layered over the embedded defaults.
pub async fn spawn_app_with(kind: DbKind, extra_toml: &str) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let (database_url, pg_database) = fresh_database(kind).await;
    spawn_in(data_dir, database_url, pg_database, extra_toml).await
}

/// An empty database: "" (SQLite under the data dir) or a new PostgreSQL database, with the
/// (admin url, name) needed to drop it.
pub async fn fresh_database(kind: DbKind) -> (String, Option<(String, String)>) {
    match kind {
        DbKind::Sqlite => (String::new(), None),
        DbKind::Postgres => {
            let admin = postgres_url().expect("postgres url");
            let name = format!("agentgate_test_{}", uuid::Uuid::new_v4().simple());
            let conn = Database::connect(&admin).await.expect("connect admin");
            conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
            conn.close().await.ok();
            let mut url = url::Url::parse(&admin).expect("admin url");
            url.set_path(&format!("/{name}"));
            (url.to_string(), Some((admin, name)))
        }
    }
}

pub async fn drop_database(pg_database: Option<(String, String)>) {
    if let Some((admin, name)) = pg_database {
        if let Ok(conn) = Database::connect(&admin).await {
            let _ = conn
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            conn.close().await.ok();
        }
    }
}

fn base_toml(data_dir: &std::path::Path, database_url: &str) -> String {
    format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = {:?}\n[database]\nurl = {:?}\n[log]\nlevel = \"warn\"\n",
        data_dir.display().to_string(),
        database_url,
    )
}

async fn spawn_in(
    data_dir: tempfile::TempDir,
    database_url: String,
    pg_database: Option<(String, String)>,
    extra_toml: &str,
) -> TestApp {
    let base = base_toml(data_dir.path(), &database_url);
    let config = Config::from_toml_layers(&[&base, extra_toml]).expect("test config");
    agentgate::telemetry::init_logs(&config.log);
    let app = Application::build(config).await.expect("build app");
    let address = format!("http://{}", app.address());
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        state,
        http: reqwest::Client::new(),
        data_dir,
        database_url,
        shutdown: Some(tx),
        handle: Some(handle),
        pg_database,
    }
}

/// A test that ends without `stop`, or panics, leaves no PostgreSQL database behind (each left
/// one or two a run before). `Drop` cannot await, so the drop runs on a runtime of its own.
impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(database) = self.pg_database.take() {
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(drop_database(Some(database)));
                }
            })
            .join();
        }
    }
}

impl TestApp {
    pub fn token(&self, user: &str) -> String {
        self.state.auth.mint_dev_token(user, false).expect("token")
    }

    pub fn privileged_token(&self, user: &str) -> String {
        self.state.auth.mint_dev_token(user, true).expect("token")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_message(&self, token: &str, body: &Value) -> reqwest::Response {
        self.post_json("/message", token, body).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Stops the server (graceful) and drops the PostgreSQL database.
    pub async fn stop(mut self) {
        self.stop_server().await;
        if self.pg_database.is_some() {
            self.state.db.clone().close().await.ok();
            drop_database(self.pg_database.take()).await;
        }
    }

    pub async fn stop_server(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
        }
    }

    /// Another gateway on the same PostgreSQL database, with its own data dir (so its own
    /// instance id). It leaves the database to this one to drop.
    pub async fn spawn_peer(&self, extra_toml: &str) -> TestApp {
        assert!(
            !self.database_url.is_empty(),
            "peers share a PostgreSQL database"
        );
        let data_dir = tempfile::tempdir().expect("tempdir");
        spawn_in(data_dir, self.database_url.clone(), None, extra_toml).await
    }

    /// Why another gateway on this one's PostgreSQL database refuses to start (it must).
    pub async fn peer_refusal(&self, extra_toml: &str) -> String {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let base = base_toml(data_dir.path(), &self.database_url);
        let config = Config::from_toml_layers(&[&base, extra_toml]).expect("test config");
        match Application::build(config).await {
            Ok(_) => panic!("the peer started"),
            Err(e) => e.to_string(),
        }
    }

    /// Stops this instance and starts a new one on the same data dir and database.
    pub async fn restart(mut self, extra_toml: &str) -> TestApp {
        self.stop_server().await;
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("tempdir"));
        let url = if self.database_url.is_empty() {
            String::new()
        } else {
            self.database_url.clone()
        };
        spawn_in(data_dir, url, self.pg_database.take(), extra_toml).await
    }
}

/// One SSE block as received, with its lines in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub event: String,
    pub id: i64,
    pub data: Value,
}

/// Reads an SSE response incrementally and checks the strict `event`, `id`, `data` line order.
pub struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    pub comments: usize,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            stream: response.bytes_stream().boxed(),
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event frame, or None at the end of the stream.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let lines: Vec<&str> = block.trim_end_matches('\n').split('\n').collect();
                if lines.iter().all(|l| l.starts_with(':')) {
                    self.comments += 1;
                    continue;
                }
                assert_eq!(
                    lines.len(),
                    3,
                    "event block must be exactly event/id/data: {block:?}"
                );
                let event = lines[0].strip_prefix("event: ").expect("event line first");
                let id = lines[1].strip_prefix("id: ").expect("id line second");
                let data = lines[2].strip_prefix("data: ").expect("data line third");
                return Some(Frame {
                    event: event.to_string(),
                    id: id.parse().expect("numeric id"),
                    data: serde_json::from_str(data).expect("data is JSON"),
                });
            }
            match tokio::time::timeout(Duration::from_secs(30), self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Some(Err(_))) | Ok(None) => return None,
                Err(_) => panic!("SSE stream stalled for 30 s; buffer: {:?}", self.buffer),
            }
        }
    }

    /// Every remaining frame until the stream closes.
    pub async fn collect(mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }
}

/// What a client reads of each frame: its id, name and data (for comparing live and replay).
pub fn frame_shapes(frames: &[Frame]) -> Vec<(i64, String, Value)> {
    (frames.iter())
        .map(|f| (f.id, f.event.clone(), f.data.clone()))
        .collect()
}

/// Checks the run invariants: ids 1..n without gaps, `done` exactly once and last.
/// Messages `token`'s user has used today (`GET /message-limit`).
pub async fn current_usage(app: &TestApp, token: &str) -> u64 {
    let limit: Value = app
        .get("/message-limit", token)
        .await
        .json()
        .await
        .expect("json");
    limit["currentUsage"].as_u64().expect("currentUsage")
}

/// An error answer: its status and its stable `code`.
pub async fn assert_error_code(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], code, "{body}");
}

pub fn assert_complete_run(frames: &[Frame]) {
    assert!(!frames.is_empty(), "no frames");
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame.id,
            i as i64 + 1,
            "ids must be 1..n in order: {frames:#?}"
        );
    }
    let dones = frames.iter().filter(|f| f.event == "done").count();
    assert_eq!(dones, 1, "exactly one done: {frames:#?}");
    assert_eq!(frames.last().map(|f| f.event.as_str()), Some("done"));
}

pub fn kinds(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f.event.as_str() {
            "message" => f.data["message"]["kind"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// The run's status once it has left `running` (within 10 s), for ends recorded in the
/// background (a retried finish, a sweep).
pub async fn settled_run_status(app: &TestApp, run_id: &str) -> String {
    let mut status = String::new();
    for _ in 0..100 {
        status = run_status(app, run_id).await;
        if status != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}

pub async fn run_status(app: &TestApp, run_id: &str) -> String {
    use sea_orm::EntityTrait;
    entity::runs::Entity::find_by_id(run_id.to_string())
        .one(&app.state.db)
        .await
        .expect("query")
        .expect("run exists")
        .status
        .as_str()
        .to_string()
}

/// What a gateway notice says happened: app.build's `metadata.type` when it is one of
/// app.build's platform message types, else the gateway's own `metadata.notice`. Takes the
/// metadata of an event's `message` or of a history row.
pub fn notice_kind_of(metadata: &Value) -> Value {
    match &metadata["type"] {
        Value::String(_) => metadata["type"].clone(),
        _ => metadata["notice"].clone(),
    }
}

/// [`notice_kind_of`] an event.
pub fn notice_kind(data: &Value) -> Value {
    notice_kind_of(&data["message"]["metadata"])
}

/// What gateways sharing one database must also share (see `cluster::members`): object
/// storage, the signing secret, and git (here: none). Keep it alive as long as the gateways.
pub struct SharedState {
    pub _s3: crate::s3_server::S3Server,
    pub toml: String,
}

impl SharedState {
    pub async fn start() -> Self {
        let s3 = crate::s3_server::S3Server::start().await;
        let toml = format!(
            "{}[auth]\nhs256_secret = \"a-secret-every-gateway-of-this-test-shares\"\n\
             [git]\nhost = \"none\"\n",
            s3.config()
        );
        Self { _s3: s3, toml }
    }
}

/// Stores a run's log again, with up to `per_row` consecutive events of one name in a row (as
/// the writer stores a batch) and each payload as `edit` makes it from its seq and payload;
/// returns how many rows the log has now.
pub async fn relog(
    app: &TestApp,
    run_id: &str,
    per_row: usize,
    edit: impl Fn(i64, &str) -> String,
) -> usize {
    use entity::run_events::{self, Column};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
    use sea_orm::{QueryOrder, TransactionTrait};
    let db = &app.state.db;
    let logged = run_events::Entity::find()
        .filter(Column::RunId.eq(run_id))
        .order_by_asc(Column::Seq)
        .all(db)
        .await
        .expect("read the log");
    let mut events = Vec::new();
    for row in &logged {
        let payloads = run_events::split(row.seq, &row.data, row.sizes.as_deref()).expect("row");
        for (payload, seq) in payloads.into_iter().zip(row.seq..) {
            events.push((seq, row.event.clone(), edit(seq, payload), row.created_at));
        }
    }
    let txn = db.begin().await.expect("begin");
    run_events::Entity::delete_many()
        .filter(Column::RunId.eq(run_id))
        .exec(&txn)
        .await
        .expect("delete");
    let mut rows = 0;
    for same_name in events.chunk_by(|a, b| a.1 == b.1) {
        for group in same_name.chunks(per_row) {
            let (data, sizes) = match group {
                [one] => (one.2.clone(), None),
                _ => {
                    let (data, sizes) = run_events::join(group.iter().map(|e| e.2.as_str()));
                    (data, Some(sizes))
                }
            };
            run_events::ActiveModel {
                run_id: Set(run_id.to_string()),
                seq: Set(group[0].0),
                event: Set(group[0].1.clone()),
                data: Set(data),
                sizes: Set(sizes),
                created_at: Set(group[0].3),
            }
            .insert(&txn)
            .await
            .expect("insert");
            rows += 1;
        }
    }
    txn.commit().await.expect("commit");
    rows
}

/// Makes the event log refuse the rows whose data contains `marker`, as a full disk or a
/// broken connection would for a moment.
pub async fn refuse_events_containing(app: &TestApp, marker: &str) {
    refuse_events_where(app, &format!("NEW.data LIKE '%{marker}%'")).await;
}

/// Makes the event log refuse the rows matching `condition` (SQL on `NEW`).
pub async fn refuse_events_where(app: &TestApp, condition: &str) {
    let statements = match app.state.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => vec![
            format!(
                "CREATE FUNCTION refuse_event() RETURNS trigger AS $$ BEGIN \
                 IF {condition} THEN RAISE EXCEPTION 'no space left on device'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER refuse_event BEFORE INSERT ON run_events \
             FOR EACH ROW EXECUTE FUNCTION refuse_event()"
                .to_string(),
        ],
        _ => vec![format!(
            "CREATE TRIGGER refuse_event BEFORE INSERT ON run_events WHEN {condition} \
             BEGIN SELECT RAISE(ABORT, 'no space left on device'); END"
        )],
    };
    execute_all(app, statements).await;
}

pub async fn accept_events_again(app: &TestApp) {
    let sql = match app.state.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "DROP TRIGGER refuse_event ON run_events",
        _ => "DROP TRIGGER refuse_event",
    };
    execute_all(app, vec![sql.to_string()]).await;
}

pub async fn execute_all(app: &TestApp, statements: Vec<String>) {
    use sea_orm::ConnectionTrait;
    for sql in statements {
        app.state.db.execute_unprepared(&sql).await.expect(&sql);
    }
}

/// The log takes rows again after [`refuse_events_where`]: the run settles as `status`, and
/// its replay is what was streamed.
pub async fn accept_events_and_compare_the_replay(
    app: &TestApp,
    token: &str,
    frames: &[Frame],
    status: &str,
) {
    accept_events_again(app).await;
    let run_id = frames[0].data["runId"].as_str().expect("run id");
    assert_eq!(settled_run_status(app, run_id).await, status);
    let replay = SseReader::new(crate::resume::events(app, token, run_id, None).await)
        .collect()
        .await;
    assert_eq!(frame_shapes(&replay), frame_shapes(frames));
}
