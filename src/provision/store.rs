//! The app databases table: the database each app got, created on its first deployment and
//! remembered with its URL encrypted, so later deployments reuse it and deleting the app can
//! drop it.
//!
//! Creation is claimed first by inserting the app's row without a URL (its `reference` holding
//! the claim's token), so two workers never create the same database at once (a second create
//! would reset the password the first one handed out). A claim older than [`CLAIM_TIMEOUT`]
//! belonged to a worker that died and may be taken over; creating is idempotent, so the new
//! owner gets a working URL for the same data.
use std::sync::Arc;

use chrono::Utc;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use secrecy::SecretString;

use super::cipher::UrlCipher;
use super::{DatabaseProvisioner, ProvisionError};
use entity::app_databases;

/// The variable that carries an app's database URL into its deployment.
pub const ENV_KEY: &str = "APP_DATABASE_URL";
/// How long a creation claim holds before another worker may take over.
pub const CLAIM_TIMEOUT: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

#[derive(Clone)]
pub struct AppDatabases {
    db: DatabaseConnection,
    provisioner: Arc<dyn DatabaseProvisioner>,
    cipher: Arc<UrlCipher>,
}

fn stored(e: DbErr) -> ProvisionError {
    ProvisionError::Transient(format!("app database records: {e}"))
}

impl AppDatabases {
    pub fn new(
        db: DatabaseConnection,
        provisioner: Arc<dyn DatabaseProvisioner>,
        cipher: UrlCipher,
    ) -> Self {
        Self {
            db,
            provisioner,
            cipher: Arc::new(cipher),
        }
    }

    /// The configured provisioner's kind.
    pub fn kind(&self) -> &'static str {
        self.provisioner.kind()
    }

    async fn find(&self, app_id: &str) -> Result<Option<app_databases::Model>, ProvisionError> {
        app_databases::Entity::find_by_id(app_id.to_string())
            .one(&self.db)
            .await
            .map_err(stored)
    }

    /// The app's database URL, creating the database on first use. None when the app has no
    /// database and no provisioner is configured. An app keeps a database it already has, even
    /// if the configuration changed since.
    pub async fn url_for(&self, app_id: &str) -> Result<Option<SecretString>, ProvisionError> {
        let existing = self.find(app_id).await?;
        if let Some(url) = existing.as_ref().and_then(|r| r.encrypted_url.as_deref()) {
            return self.cipher.decrypt(app_id, url).map(Some);
        }
        if self.provisioner.kind() == "none" {
            return Ok(None);
        }
        let claim = match existing {
            None => self.claim_new(app_id).await?,
            Some(row) => self.take_over(&row).await?,
        };
        let Some(claim) = claim else {
            // Someone else claimed it meanwhile: use theirs if it is ready.
            if let Some(url) = self.find(app_id).await?.and_then(|r| r.encrypted_url) {
                return self.cipher.decrypt(app_id, &url).map(Some);
            }
            return Err(ProvisionError::Transient(
                "the app's database is being created by another worker".into(),
            ));
        };
        self.create_claimed(app_id, claim).await.map(Some)
    }

    /// Inserts the claim row; None when the app already has one.
    async fn claim_new(&self, app_id: &str) -> Result<Option<String>, ProvisionError> {
        let token = claim_token();
        let row = app_databases::ActiveModel {
            app_id: Set(app_id.to_string()),
            kind: Set(self.provisioner.kind().to_string()),
            reference: Set(token.clone()),
            encrypted_url: Set(None),
            created_at: Set(Utc::now()),
        };
        let inserted = app_databases::Entity::insert(row)
            .on_conflict(
                OnConflict::column(app_databases::Column::AppId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(stored)?;
        Ok((inserted == 1).then_some(token))
    }

    /// Takes over a stale claim; None while it is still fresh (or another worker won).
    async fn take_over(
        &self,
        row: &app_databases::Model,
    ) -> Result<Option<String>, ProvisionError> {
        if row.encrypted_url.is_some() || Utc::now() - row.created_at < CLAIM_TIMEOUT {
            return Ok(None);
        }
        let token = claim_token();
        let result = app_databases::Entity::update_many()
            .col_expr(app_databases::Column::Reference, Expr::value(token.clone()))
            .col_expr(app_databases::Column::CreatedAt, Expr::value(Utc::now()))
            .col_expr(
                app_databases::Column::Kind,
                Expr::value(self.provisioner.kind()),
            )
            .filter(app_databases::Column::AppId.eq(row.app_id.as_str()))
            .filter(app_databases::Column::Reference.eq(row.reference.as_str()))
            .filter(app_databases::Column::EncryptedUrl.is_null())
            .exec(&self.db)
            .await
            .map_err(stored)?;
        Ok((result.rows_affected == 1).then_some(token))
    }

    async fn create_claimed(
        &self,
        app_id: &str,
        claim: String,
    ) -> Result<SecretString, ProvisionError> {
        let created = match self.provisioner.provision(app_id).await {
            Ok(created) => created,
            Err(e) => {
                // Release the claim so the next attempt can try again right away.
                let _ = app_databases::Entity::delete_many()
                    .filter(app_databases::Column::AppId.eq(app_id))
                    .filter(app_databases::Column::Reference.eq(claim.as_str()))
                    .filter(app_databases::Column::EncryptedUrl.is_null())
                    .exec(&self.db)
                    .await;
                return Err(e);
            }
        };
        let sealed = self.cipher.encrypt(app_id, &created.url)?;
        let result = app_databases::Entity::update_many()
            .col_expr(app_databases::Column::EncryptedUrl, Expr::value(sealed))
            .col_expr(
                app_databases::Column::Reference,
                Expr::value(created.reference),
            )
            .col_expr(app_databases::Column::CreatedAt, Expr::value(Utc::now()))
            .filter(app_databases::Column::AppId.eq(app_id))
            .filter(app_databases::Column::Reference.eq(claim.as_str()))
            .filter(app_databases::Column::EncryptedUrl.is_null())
            .exec(&self.db)
            .await
            .map_err(stored)?;
        if result.rows_affected != 1 {
            return Err(ProvisionError::Transient(
                "the app's database claim was taken over by another worker".into(),
            ));
        }
        tracing::info!(
            app_id,
            kind = self.provisioner.kind(),
            "app database created"
        );
        Ok(created.url)
    }

    /// Drops the app's database and forgets it. Fine when the app never had one.
    pub async fn delete(&self, app_id: &str) -> Result<(), ProvisionError> {
        let Some(row) = self.find(app_id).await? else {
            return Ok(());
        };
        if row.encrypted_url.is_none() && Utc::now() - row.created_at < CLAIM_TIMEOUT {
            return Err(ProvisionError::Transient(
                "the app's database is still being created".into(),
            ));
        }
        if row.kind != self.provisioner.kind() {
            return Err(ProvisionError::Permanent(format!(
                "the app's database was made by the {:?} provisioner, but database_provision.kind is {:?}",
                row.kind,
                self.provisioner.kind()
            )));
        }
        self.provisioner.delete(app_id).await?;
        app_databases::Entity::delete_many()
            .filter(app_databases::Column::AppId.eq(app_id))
            .filter(app_databases::Column::Reference.eq(row.reference.as_str()))
            .exec(&self.db)
            .await
            .map_err(stored)?;
        tracing::info!(app_id, kind = %row.kind, "app database dropped");
        Ok(())
    }
}

/// Marks a row as claimed by one worker; never a valid reference.
fn claim_token() -> String {
    format!("claim:{}", uuid::Uuid::new_v4().simple())
}
