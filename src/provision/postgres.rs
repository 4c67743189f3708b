//! Databases on a shared PostgreSQL server: per app a login role `app_<hex>` with a random
//! 32-character password and a database `app_<hex>` owned by it, with `CONNECT` revoked from
//! PUBLIC so no other app's role can reach it. Names come only from the app id's hex.
//!
//! The admin account needs `CREATEDB` and `CREATEROLE` (or superuser). On PostgreSQL 16+ a
//! `CREATEROLE` admin must be a member of a role to create a database owned by it, hence the
//! `GRANT app_<hex> TO CURRENT_USER`. Passwords are sent as SCRAM verifiers, never in clear;
//! statement logging of the admin connection is off.
use std::time::Duration;

use async_trait::async_trait;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
};
use secrecy::{ExposeSecret, SecretString};

use super::{app_hex, redact, scram, DatabaseProvisioner, ProvisionError, ProvisionedDatabase};

const PASSWORD_LEN: usize = 32;

pub struct PostgresProvisioner {
    admin_url: SecretString,
    public_host: String,
}

impl PostgresProvisioner {
    /// `public_host` is the `host:port` apps use to reach the server.
    pub fn new(admin_url: SecretString, public_host: String) -> Self {
        Self {
            admin_url,
            public_host,
        }
    }

    async fn connect(&self) -> Result<DatabaseConnection, ProvisionError> {
        let mut options = ConnectOptions::new(self.admin_url.expose_secret().to_string());
        options
            .max_connections(1)
            .min_connections(0)
            .connect_timeout(Duration::from_secs(10))
            // Statements would otherwise be logged, verifiers included.
            .sqlx_logging(false);
        Database::connect(options)
            .await
            .map_err(|e| self.error("connecting as the admin", e))
    }

    async fn exists(
        &self,
        db: &DatabaseConnection,
        sql: &str,
        name: &str,
    ) -> Result<bool, ProvisionError> {
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, [name.into()]);
        db.query_one_raw(statement)
            .await
            .map(|row| row.is_some())
            .map_err(|e| self.error("looking up", e))
    }

    async fn run(
        &self,
        db: &DatabaseConnection,
        what: &str,
        sql: &str,
    ) -> Result<(), ProvisionError> {
        db.execute_unprepared(sql)
            .await
            .map(drop)
            .map_err(|e| self.error(what, e))
    }

    async fn create_in(
        &self,
        db: &DatabaseConnection,
        name: &str,
        verifier: &str,
    ) -> Result<(), ProvisionError> {
        let password = literal(verifier);
        if self
            .exists(db, "SELECT 1 FROM pg_roles WHERE rolname = $1", name)
            .await?
        {
            // Re-provisioning: the old password is unknown to us, so issue a new one.
            let sql = format!("ALTER ROLE {name} WITH LOGIN PASSWORD {password}");
            self.run(db, "resetting the app role's password", &sql)
                .await?;
        } else {
            let sql = format!(
                "CREATE ROLE {name} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
                 PASSWORD {password}"
            );
            self.run(db, "creating the app role", &sql).await?;
        }
        self.run(
            db,
            "granting the app role to the admin",
            &format!("GRANT {name} TO CURRENT_USER"),
        )
        .await?;
        if !self
            .exists(db, "SELECT 1 FROM pg_database WHERE datname = $1", name)
            .await?
        {
            let sql = format!("CREATE DATABASE {name} OWNER {name}");
            self.run(db, "creating the app database", &sql).await?;
        }
        self.run(
            db,
            "restricting connections to the app database",
            &format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"),
        )
        .await
    }

    async fn delete_in(&self, db: &DatabaseConnection, name: &str) -> Result<(), ProvisionError> {
        self.run(
            db,
            "dropping the app database",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        self.run(
            db,
            "dropping the app role",
            &format!("DROP ROLE IF EXISTS {name}"),
        )
        .await
    }

    /// Server-side trouble that passes is transient; refusals are permanent. The admin URL never
    /// appears in the message.
    fn error(&self, what: &str, e: DbErr) -> ProvisionError {
        let admin_url = self.admin_url.expose_secret();
        let admin_password = url::Url::parse(admin_url)
            .ok()
            .and_then(|u| u.password().map(str::to_string))
            .unwrap_or_default();
        let code = sqlstate(&e);
        let text = redact(
            format!("{what}: {e}"),
            &[admin_url, admin_password.as_str()],
        );
        let transient = match code.as_deref() {
            // Connection trouble, out of resources, shutting down, serialization, object in use.
            Some(c) => ["08", "53", "57", "40", "55"]
                .iter()
                .any(|p| c.starts_with(p)),
            None => matches!(e, DbErr::Conn(_) | DbErr::ConnectionAcquire(_)),
        };
        if transient {
            ProvisionError::Transient(text)
        } else {
            ProvisionError::Permanent(text)
        }
    }
}

#[async_trait]
impl DatabaseProvisioner for PostgresProvisioner {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn create(&self, app_id: &str) -> Result<SecretString, ProvisionError> {
        let name = format!("app_{}", app_hex(app_id)?);
        let password: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(PASSWORD_LEN)
            .map(char::from)
            .collect();
        let verifier = scram::verifier(&password);
        let db = self.connect().await?;
        let result = self.create_in(&db, &name, &verifier).await;
        let _ = db.close().await;
        result?;
        // Role and database names are `app_` + hex and the password is alphanumeric: nothing
        // in the URL needs escaping.
        Ok(SecretString::from(format!(
            "postgres://{name}:{password}@{}/{name}",
            self.public_host
        )))
    }

    async fn provision(&self, app_id: &str) -> Result<ProvisionedDatabase, ProvisionError> {
        let url = self.create(app_id).await?;
        Ok(ProvisionedDatabase {
            url,
            reference: format!("app_{}", app_hex(app_id)?),
        })
    }

    async fn delete(&self, app_id: &str) -> Result<(), ProvisionError> {
        let name = format!("app_{}", app_hex(app_id)?);
        let db = self.connect().await?;
        let result = self.delete_in(&db, &name).await;
        let _ = db.close().await;
        result
    }
}

/// A SQL string literal (the verifier has no quotes, but be safe).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn sqlstate(e: &DbErr) -> Option<String> {
    let runtime = match e {
        DbErr::Conn(r) | DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return None,
    };
    match runtime {
        sea_orm::RuntimeErr::SqlxError(inner) => inner
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        _ => None,
    }
}
