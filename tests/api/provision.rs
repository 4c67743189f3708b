//! Database provisioners: PostgreSQL against the real server (AGENTGATE_TEST_DATABASE_URL, an
//! admin with CREATEDB and CREATEROLE; skipped when unset unless CI=true), Neon against its fake;
//! the store of each app's encrypted database URL; and through the gateway, a database per app
//! handed to its Koyeb service and dropped with the app.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentgate::provision::{
    AppDatabases, DatabaseProvisioner, NeonProvisioner, NoProvisioner, PostgresProvisioner,
    ProvisionError, UrlCipher,
};
use async_trait::async_trait;
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    EntityTrait, QueryFilter, Statement,
};
use secrecy::{ExposeSecret, SecretString};

use crate::db_test;
use crate::fake_github::FakeGitHub;
use crate::fake_koyeb::FakeKoyeb;
use crate::fake_neon::{FakeNeon, API_KEY};
use crate::helpers::{postgres_url, spawn_app_with, DbKind};
use crate::koyeb::{app_id_of, koyeb_git_config, new_app_id, notice, run, BUILD};

fn admin_url() -> Option<String> {
    postgres_url()
}

/// host:port of the admin URL: apps reach the same server.
fn public_host(admin: &str) -> String {
    let url = url::Url::parse(admin).expect("admin url");
    format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().unwrap_or(5432)
    )
}

async fn connect(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut options = ConnectOptions::new(url.to_string());
    options.max_connections(1).sqlx_logging(false);
    Database::connect(options).await
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> String {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index::<String>(0).expect("text column")
}

/// The same URL with another database name.
fn with_database(url: &str, database: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("url");
    parsed.set_path(&format!("/{database}"));
    parsed.to_string()
}

async fn exists(admin: &DatabaseConnection, sql: &str, name: &str) -> bool {
    admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [name.into()],
        ))
        .await
        .expect("lookup")
        .is_some()
}

#[tokio::test]
async fn postgres_databases_are_isolated_per_app() {
    let Some(admin_url) = admin_url() else { return };
    let provisioner = Arc::new(PostgresProvisioner::new(
        SecretString::from(admin_url.clone()),
        public_host(&admin_url),
    ));
    let (a, b) = (new_app_id(), new_app_id());
    // Run the checks in a task so the databases are dropped even when one fails.
    let checks = tokio::spawn(isolation_checks(
        provisioner.clone(),
        admin_url,
        a.clone(),
        b.clone(),
    ))
    .await;
    let _ = provisioner.delete(&a).await;
    let _ = provisioner.delete(&b).await;
    if let Err(failure) = checks {
        std::panic::resume_unwind(failure.into_panic());
    }
}

async fn isolation_checks(
    provisioner: Arc<PostgresProvisioner>,
    admin_url: String,
    a: String,
    b: String,
) {
    assert_eq!(provisioner.kind(), "postgres");
    let (name_a, name_b) = (
        format!("app_{}", a.replace('-', "")),
        format!("app_{}", b.replace('-', "")),
    );

    let url_a = provisioner.create(&a).await.expect("create a");
    let url_b = provisioner.create(&b).await.expect("create b");
    let url_a = url_a.expose_secret().to_string();
    let url_b = url_b.expose_secret().to_string();
    assert!(url_a.starts_with(&format!("postgres://{name_a}:")), "shape");
    assert!(url_a.ends_with(&format!("/{name_a}")));

    // Each app reaches its own database, as its own role, and can create tables there.
    let db_a = connect(&url_a).await.expect("connect a");
    assert_eq!(scalar(&db_a, "SELECT current_user::text").await, name_a);
    assert_eq!(
        scalar(&db_a, "SELECT current_database()::text").await,
        name_a
    );
    db_a.execute_unprepared("CREATE TABLE notes (id int)")
        .await
        .expect("owner can create tables");
    let db_b = connect(&url_b).await.expect("connect b");
    assert_eq!(
        scalar(&db_b, "SELECT current_database()::text").await,
        name_b
    );

    // App A's role cannot connect to app B's database.
    let crossed = connect(&with_database(&url_a, &name_b)).await;
    let error = crossed
        .expect_err("A must not reach B's database")
        .to_string();
    assert!(error.contains("permission denied"), "{error}");
    let crossed = connect(&with_database(&url_b, &name_a)).await;
    assert!(crossed.is_err(), "B must not reach A's database");
    db_b.close().await.expect("close b");

    // Creating again keeps the data and issues a new password; the old one stops working.
    let again = provisioner.create(&a).await.expect("create a again");
    assert_ne!(again.expose_secret(), url_a);
    let db_a2 = connect(again.expose_secret())
        .await
        .expect("connect with new password");
    assert_eq!(
        scalar(&db_a2, "SELECT to_regclass('notes')::text").await,
        "notes"
    );
    db_a2.close().await.expect("close");
    db_a.close().await.expect("close a");
    assert!(connect(&url_a).await.is_err(), "old password rejected");

    // Delete drops database and role (even with a session open), and is idempotent.
    let open_session = connect(again.expose_secret()).await.expect("session");
    provisioner.delete(&a).await.expect("delete a");
    provisioner.delete(&a).await.expect("delete a again");
    provisioner.delete(&b).await.expect("delete b");
    drop(open_session);
    let admin = connect(&admin_url).await.expect("admin");
    for name in [&name_a, &name_b] {
        assert!(!exists(&admin, "SELECT 1 FROM pg_database WHERE datname = $1", name).await);
        assert!(!exists(&admin, "SELECT 1 FROM pg_roles WHERE rolname = $1", name).await);
    }
    admin.close().await.expect("close admin");

    assert!(matches!(
        provisioner.create("x'; DROP ROLE postgres; --").await,
        Err(ProvisionError::InvalidAppId)
    ));
}

#[tokio::test]
async fn postgres_errors_do_not_leak_the_admin_url() {
    let provisioner = PostgresProvisioner::new(
        SecretString::from("postgres://admin:Adm1nPassw0rd@127.0.0.1:1/postgres".to_string()),
        "127.0.0.1:1".into(),
    );
    match provisioner.create(&new_app_id()).await {
        Err(e @ ProvisionError::Transient(_)) => {
            assert!(!e.to_string().contains("Adm1nPassw0rd"), "{e}");
            assert!(!format!("{e:?}").contains("Adm1nPassw0rd"), "{e:?}");
        }
        other => panic!("expected transient, got {:?}", other.map(|_| "a URL")),
    }
}

fn neon(fake: &FakeNeon, key: &str) -> NeonProvisioner {
    NeonProvisioner::new(
        fake.url.clone(),
        SecretString::from(key.to_string()),
        "aws-eu-central-1".into(),
    )
    .expect("neon")
}

#[tokio::test]
async fn neon_creates_one_project_per_app_and_deletes_it() {
    let fake = FakeNeon::start().await;
    let provisioner = neon(&fake, API_KEY);
    assert_eq!(provisioner.kind(), "neon");
    let app = new_app_id();
    let name = format!("ag-{}", app.replace('-', ""));

    let url = provisioner.create(&app).await.expect("create");
    assert_eq!(fake.project_names(), vec![name.clone()]);
    assert_eq!(
        Some(url.expose_secret().to_string()),
        fake.connection_uri(&name)
    );
    assert!(url.expose_secret().starts_with("postgresql://app:"));
    let create = &fake.requests()[1];
    assert_eq!(create.method, "POST");
    assert_eq!(create.body["project"]["name"], name.as_str());
    assert_eq!(create.body["project"]["region_id"], "aws-eu-central-1");
    assert_eq!(create.body["project"]["branch"]["database_name"], "app");

    // Idempotent: the existing project is found and its URI returned; nothing new is made.
    let again = provisioner.create(&app).await.expect("create again");
    assert_eq!(again.expose_secret(), url.expose_secret());
    assert_eq!(fake.project_names().len(), 1);
    assert!(fake
        .calls()
        .last()
        .is_some_and(|c| c.ends_with("/connection_uri")));

    // Another app whose name contains this one's would match a substring search: untouched.
    let other = fake.insert_project(&format!("{name}-copy"));
    provisioner.delete(&app).await.expect("delete");
    provisioner.delete(&app).await.expect("delete again");
    assert_eq!(fake.project_names(), vec![format!("{name}-copy")]);
    assert!(!other.is_empty());
}

#[tokio::test]
async fn neon_failures_are_classified() {
    let fake = FakeNeon::start().await;
    let provisioner = neon(&fake, API_KEY);
    let app = new_app_id();
    for (status, transient) in [
        (500, true),
        (503, true),
        (429, true),
        (423, true),
        (400, false),
    ] {
        fake.fail_next(1, status);
        let error = provisioner
            .create(&app)
            .await
            .expect_err("injected failure");
        assert_eq!(error.is_transient(), transient, "{status}: {error}");
    }
    provisioner
        .create(&app)
        .await
        .expect("works after failures");

    let wrong = neon(&fake, "wrong-neon-key-987");
    let error = wrong.create(&new_app_id()).await.expect_err("401");
    assert!(matches!(error, ProvisionError::Permanent(_)), "{error}");
    assert!(!error.to_string().contains("wrong-neon-key-987"));

    let unreachable = NeonProvisioner::new(
        "http://127.0.0.1:9/api/v2".into(),
        SecretString::from(API_KEY),
        "aws-eu-central-1".into(),
    )
    .expect("neon");
    assert!(unreachable
        .create(&new_app_id())
        .await
        .is_err_and(|e| e.is_transient()));
    assert!(matches!(
        provisioner.create("not-an-id").await,
        Err(ProvisionError::InvalidAppId)
    ));
}

#[tokio::test]
async fn no_provisioner_means_no_database() {
    let none = NoProvisioner;
    assert_eq!(none.kind(), "none");
    assert!(matches!(
        none.create(&new_app_id()).await,
        Err(ProvisionError::NotConfigured)
    ));
}

// ---------------------------------------------------------------------------------------------
// The store of each app's database
// ---------------------------------------------------------------------------------------------

/// Counts calls; `create` takes `delay` and can be made to fail once.
struct CountingProvisioner {
    kind: &'static str,
    delay: Duration,
    creates: AtomicUsize,
    deletes: AtomicUsize,
    fail_next: std::sync::atomic::AtomicBool,
}

impl CountingProvisioner {
    fn new(kind: &'static str, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            kind,
            delay,
            creates: AtomicUsize::new(0),
            deletes: AtomicUsize::new(0),
            fail_next: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

#[async_trait]
impl DatabaseProvisioner for CountingProvisioner {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn create(&self, app_id: &str) -> Result<SecretString, ProvisionError> {
        tokio::time::sleep(self.delay).await;
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(ProvisionError::Transient("server busy".into()));
        }
        let n = self.creates.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(SecretString::from(format!(
            "postgres://app:Pw{n}Secret@db.internal/{app_id}"
        )))
    }

    async fn delete(&self, _app_id: &str) -> Result<(), ProvisionError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn key(c: char) -> UrlCipher {
    UrlCipher::new(&SecretString::from(c.to_string().repeat(64)))
}

async fn store_row(db: &DatabaseConnection, app_id: &str) -> Option<entity::app_databases::Model> {
    entity::app_databases::Entity::find_by_id(app_id.to_string())
        .one(db)
        .await
        .expect("query")
}

/// A migrated, empty gateway database of this kind; dropped by the caller via `drop_database`.
async fn gateway_db(
    kind: DbKind,
    dir: &tempfile::TempDir,
) -> (DatabaseConnection, Option<(String, String)>) {
    let (url, pg) = crate::helpers::fresh_database(kind).await;
    let url = if url.is_empty() {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("store.db").display()
        )
    } else {
        url
    };
    let db = agentgate::db::connect(&url, 5).await.expect("connect");
    (db, pg)
}

async fn app_databases_are_created_once_and_stored_encrypted(kind: DbKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, pg) = gateway_db(kind, &dir).await;
    let provisioner = CountingProvisioner::new("postgres", Duration::from_millis(300));
    let store = AppDatabases::new(db.clone(), provisioner.clone(), key('k'));
    assert_eq!(store.kind(), "postgres");
    let app = new_app_id();

    // Concurrent first deployments: one creates, the others wait (transiently) or reuse.
    let attempts: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let app = app.clone();
            tokio::spawn(async move { store.url_for(&app).await })
        })
        .collect();
    let mut urls = Vec::new();
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(Some(url)) => urls.push(url.expose_secret().to_string()),
            Ok(None) => panic!("a provisioner is configured"),
            Err(e) => assert!(e.is_transient(), "{e}"),
        }
    }
    assert_eq!(provisioner.creates.load(Ordering::SeqCst), 1);
    assert!(!urls.is_empty());
    let url = store
        .url_for(&app)
        .await
        .expect("stored")
        .expect("url")
        .expose_secret()
        .to_string();
    assert!(urls.iter().all(|u| *u == url), "{urls:?}");
    assert_eq!(provisioner.creates.load(Ordering::SeqCst), 1, "reused");

    let row = store_row(&db, &app).await.expect("row");
    assert_eq!(row.kind, "postgres");
    let sealed = row.encrypted_url.clone().expect("encrypted url");
    assert!(sealed.starts_with("v1:"), "{sealed}");
    assert!(!sealed.contains("Secret") && !format!("{row:?}").contains("Pw1Secret"));

    // Another key cannot read it; another app's row cannot be swapped in.
    let wrong = AppDatabases::new(db.clone(), provisioner.clone(), key('j'));
    assert!(matches!(
        wrong.url_for(&app).await,
        Err(ProvisionError::Permanent(_))
    ));
    let other = new_app_id();
    entity::app_databases::Entity::insert(entity::app_databases::ActiveModel {
        app_id: sea_orm::ActiveValue::Set(other.clone()),
        kind: sea_orm::ActiveValue::Set("postgres".into()),
        reference: sea_orm::ActiveValue::Set("app_x".into()),
        encrypted_url: sea_orm::ActiveValue::Set(Some(sealed)),
        created_at: sea_orm::ActiveValue::Set(chrono::Utc::now()),
    })
    .exec_without_returning(&db)
    .await
    .expect("insert");
    assert!(matches!(
        store.url_for(&other).await,
        Err(ProvisionError::Permanent(_))
    ));

    // With provisioning turned off, an app keeps the database it has; others get none.
    let none = AppDatabases::new(db.clone(), Arc::new(NoProvisioner), key('k'));
    assert_eq!(
        none.url_for(&app)
            .await
            .expect("kept")
            .map(|u| u.expose_secret().to_string()),
        Some(url)
    );
    assert!(none.url_for(&new_app_id()).await.expect("none").is_none());
    // ... but cannot drop it.
    assert!(matches!(
        none.delete(&app).await,
        Err(ProvisionError::Permanent(_))
    ));

    // Delete drops it once and forgets it; an app without a database is fine.
    store.delete(&app).await.expect("delete");
    assert_eq!(provisioner.deletes.load(Ordering::SeqCst), 1);
    assert!(store_row(&db, &app).await.is_none());
    store.delete(&app).await.expect("delete again");
    store.delete(&new_app_id()).await.expect("never had one");
    assert_eq!(provisioner.deletes.load(Ordering::SeqCst), 1);
    db.close().await.ok();
    crate::helpers::drop_database(pg).await;
}
db_test!(app_databases_are_created_once_and_stored_encrypted);

async fn app_database_claims_are_released_or_taken_over(kind: DbKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, pg) = gateway_db(kind, &dir).await;
    let provisioner = CountingProvisioner::new("postgres", Duration::ZERO);
    let store = AppDatabases::new(db.clone(), provisioner.clone(), key('k'));

    // A failed create releases the claim: the retry creates.
    let app = new_app_id();
    provisioner.fail_next.store(true, Ordering::SeqCst);
    assert!(store.url_for(&app).await.is_err_and(|e| e.is_transient()));
    assert!(store_row(&db, &app).await.is_none());
    assert!(store.url_for(&app).await.expect("retry").is_some());

    // A fresh claim by another worker: wait; a stale one (the worker died): take over.
    let claimed = new_app_id();
    let claim = |created_at| entity::app_databases::ActiveModel {
        app_id: sea_orm::ActiveValue::Set(claimed.clone()),
        kind: sea_orm::ActiveValue::Set("postgres".into()),
        reference: sea_orm::ActiveValue::Set("claim:other-worker".into()),
        encrypted_url: sea_orm::ActiveValue::Set(None),
        created_at: sea_orm::ActiveValue::Set(created_at),
    };
    entity::app_databases::Entity::insert(claim(chrono::Utc::now()))
        .exec_without_returning(&db)
        .await
        .expect("insert");
    assert!(store
        .url_for(&claimed)
        .await
        .is_err_and(|e| e.is_transient()));
    assert!(
        store
            .delete(&claimed)
            .await
            .is_err_and(|e| e.is_transient()),
        "clean-up waits for a creation in progress"
    );
    let stale =
        chrono::Utc::now() - agentgate::provision::CLAIM_TIMEOUT - chrono::TimeDelta::seconds(5);
    entity::app_databases::Entity::update_many()
        .col_expr(
            entity::app_databases::Column::CreatedAt,
            sea_orm::sea_query::Expr::value(stale),
        )
        .filter(entity::app_databases::Column::AppId.eq(claimed.as_str()))
        .exec(&db)
        .await
        .expect("age the claim");
    let before = provisioner.creates.load(Ordering::SeqCst);
    assert!(store.url_for(&claimed).await.expect("taken over").is_some());
    assert_eq!(provisioner.creates.load(Ordering::SeqCst), before + 1);
    let row = store_row(&db, &claimed).await.expect("row");
    assert!(row.encrypted_url.is_some() && !row.reference.starts_with("claim:"));
    db.close().await.ok();
    crate::helpers::drop_database(pg).await;
}
db_test!(app_database_claims_are_released_or_taken_over);

// ---------------------------------------------------------------------------------------------
// Through the gateway: a database per app on Koyeb
// ---------------------------------------------------------------------------------------------

async fn apps_get_their_own_database_and_lose_it_when_deleted(kind: DbKind) {
    let Some(admin) = admin_url() else { return };
    let koyeb = FakeKoyeb::start().await;
    let github = FakeGitHub::start().await;
    let provision = format!(
        "[database_provision]\nkind = \"postgres\"\nadmin_url = {admin:?}\npublic_host = {:?}\n",
        public_host(&admin)
    );
    let app = spawn_app_with(kind, &koyeb_git_config(&koyeb, &github, "", &provision)).await;
    let token = app.token("alice");

    let frames = run(&app, &token, BUILD, None).await;
    let app_id = app_id_of(&frames);
    let name = format!("app_{}", app_id.replace('-', ""));
    notice(&frames, "deployment_complete");

    // The service got the app's database; it works and belongs to the app's own role.
    let env = &koyeb.env_seen()[0];
    let url = env
        .get("APP_DATABASE_URL")
        .expect("APP_DATABASE_URL in the service env")
        .clone();
    assert!(url.starts_with(&format!("postgres://{name}:")), "shape");
    let password = url::Url::parse(&url)
        .expect("url")
        .password()
        .expect("password")
        .to_string();
    let conn = connect(&url).await.expect("the URL connects");
    assert_eq!(scalar(&conn, "SELECT current_database()::text").await, name);
    assert_eq!(scalar(&conn, "SELECT current_user::text").await, name);
    conn.execute_unprepared("CREATE TABLE todos (id int)")
        .await
        .expect("the app owns its database");
    conn.close().await.ok();

    // The next version gets the same database (no new password).
    let frames = run(&app, &token, "rename it to Groceries", Some(&app_id)).await;
    notice(&frames, "deployment_complete");
    assert_eq!(
        koyeb.env_seen()[1].get("APP_DATABASE_URL"),
        Some(&url),
        "reused"
    );

    // Stored encrypted, and never shown by any route, stream or deployment record.
    let row = store_row(&app.state.db, &app_id).await.expect("row");
    assert_eq!(row.kind, "postgres");
    assert_eq!(row.reference, name);
    assert!(!row
        .encrypted_url
        .clone()
        .unwrap_or_default()
        .contains(&password));
    let mut shown =
        vec![
            serde_json::to_string(&frames.iter().map(|f| f.data.clone()).collect::<Vec<_>>())
                .expect("frames"),
        ];
    for path in [
        format!("/apps/{app_id}"),
        format!("/apps/{app_id}/history"),
        format!("/deployment-status/{app_id}"),
        "/apps".to_string(),
    ] {
        let response = app.get(&path, &token).await;
        assert_eq!(response.status(), 200, "{path}");
        shown.push(response.text().await.expect("body"));
    }
    for job in entity::deployments::Entity::find()
        .filter(entity::deployments::Column::AppId.eq(app_id.as_str()))
        .all(&app.state.db)
        .await
        .expect("deployments")
    {
        shown.push(format!("{job:?}"));
    }
    for text in &shown {
        assert!(
            !text.contains(&password),
            "database password leaked: {text}"
        );
    }
    for recorded in koyeb.requests() {
        assert!(!recorded.response.contains(&password), "{}", recorded.path);
    }

    // Deleting the app drops its database and role (clean-up runs in the background).
    let response = app.delete(&format!("/apps/{app_id}"), &token).await;
    assert_eq!(response.status(), 200);
    let admin_conn = connect(&admin).await.expect("admin");
    let mut dropped = false;
    for _ in 0..100 {
        let jobs = entity::jobs::Entity::find()
            .filter(entity::jobs::Column::AppId.eq(app_id.as_str()))
            .all(&app.state.db)
            .await
            .expect("jobs");
        let database_done = jobs.iter().any(|j| {
            j.kind == entity::jobs::JobKind::CleanupDatabase
                && j.status == entity::jobs::JobStatus::Done
        });
        if database_done
            && !exists(
                &admin_conn,
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &name,
            )
            .await
        {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dropped, "the app's database is dropped");
    assert!(
        !exists(
            &admin_conn,
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            &name
        )
        .await
    );
    assert!(store_row(&app.state.db, &app_id).await.is_none());
    assert!(connect(&url).await.is_err());
    admin_conn.close().await.ok();
    app.stop().await;
}
db_test!(apps_get_their_own_database_and_lose_it_when_deleted);
