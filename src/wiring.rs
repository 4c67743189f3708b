//! The parts both the API process and a worker-only process need: object storage, file
//! versions, the version pipeline, the deployer, and the job workers.
use crate::cluster::bus::SignalSink;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, DeployProvider, GitHostKind, ProvisionKind, StorageKind};
use crate::deploy::builder::ImageBuilder;
use crate::deploy::ecr::EcrRegistry;
use crate::deploy::koyeb::{KoyebDeployer, KoyebMode};
use crate::deploy::{DeployRunner, DeploySettings, Deployer, LocalPreview};
use crate::files::{BlobCache, FileVersions};
use crate::git::publish::GitPublisher;
use crate::git::{GitHost, GitHubAuth, GitHubHost, GitHubSettings, LocalGitHost};
use crate::jobs::{Affinity, JobKind, JobWorker, WorkerSettings};
use crate::pipeline::cleanup::Cleanup;
use crate::pipeline::{DeployPlan, EffectPolicies, Effects, PipelineSettings, VersionPipeline};
use crate::provision::{
    AppDatabases, DatabaseProvisioner, NeonProvisioner, NoProvisioner, PostgresProvisioner,
    UrlCipher,
};
use crate::secrets;
use crate::storage::{Instrumented, LocalStore, S3Store, SharedStore, UrlSigner};
use crate::webhooks::Deliverer;

pub struct Components {
    pub files: FileVersions,
    /// None when `git.host = "none"`.
    pub git: Option<GitPublisher>,
    pub local_store: Option<Arc<LocalStore>>,
    /// The deployment provider's name ("local", "koyeb"), what the API enqueues jobs for.
    pub provider: &'static str,
    /// Set when previews are served by this gateway.
    pub preview: Option<Arc<LocalPreview>>,
    pub deploy_settings: DeploySettings,
    /// Diff → version → queued effects, for runs.
    pub pipeline: VersionPipeline,
    /// What only deploy workers and clean-up use: None on an API-only host (`serve
    /// --no-worker`), which therefore needs no provider or cloud credentials.
    pub workers: Option<WorkerParts>,
    /// Sends the webhook deliveries the job workers claim.
    pub webhooks: Option<Arc<Deliverer>>,
}

pub struct WorkerParts {
    pub deployer: Arc<dyn Deployer>,
    /// The same deployer when it is Koyeb: its registry secret needs refreshing in image mode.
    pub koyeb: Option<Arc<KoyebDeployer>>,
    /// Each app's database (`database_provision`).
    pub databases: AppDatabases,
}

impl Components {
    pub fn build(
        config: &Config,
        db: &DatabaseConnection,
        public_url: String,
        with_workers: bool,
    ) -> anyhow::Result<Self> {
        let (files, local_store) = build_files(config, db, public_url.clone())?;
        let git = build_git(config, db, &files, &public_url)?;
        let preview = match config.deploy.provider {
            DeployProvider::Local => Some(Arc::new(LocalPreview::new(files.clone(), public_url))),
            DeployProvider::Koyeb => None,
        };
        let provider = match config.deploy.provider {
            DeployProvider::Local => "local",
            DeployProvider::Koyeb => "koyeb",
        };
        let workers = if with_workers {
            let (deployer, koyeb): (Arc<dyn Deployer>, _) = match &preview {
                Some(preview) => (preview.clone(), None),
                None => {
                    let koyeb = Arc::new(build_koyeb(config)?);
                    (koyeb.clone(), Some(koyeb))
                }
            };
            Some(WorkerParts {
                deployer,
                koyeb,
                databases: build_databases(config, db)?,
            })
        } else {
            None
        };
        let d = &config.deploy;
        let mut deploy_settings = d.settings(&config.git.branch);
        deploy_settings.log_mask = crate::deploy::logs::Mask::new(config.secret_values());
        let plan = DeployPlan {
            provider,
            queued_deadline: deploy_settings.queued_deadline,
            needs_repository: config.deploy.provider == DeployProvider::Koyeb
                && config.koyeb.mode != "image",
            preview: preview.clone(),
        };
        let pipeline = VersionPipeline::new(
            db.clone(),
            files.clone(),
            PipelineSettings {
                max_files: config.limits.max_files_per_app,
                push: git.is_some(),
                deploy: d.on_new_version.then_some(plan),
                stream_wait: deploy_settings.stream_wait,
                gateway: config.instance_id(),
            },
        );
        let webhooks = Deliverer::new(db.clone(), config.webhooks.delivery_settings())
            .map_err(|e| anyhow::anyhow!("webhooks: {e}"))?;
        Ok(Self {
            webhooks: Some(Arc::new(webhooks)),
            files,
            git,
            local_store,
            provider,
            preview,
            deploy_settings,
            pipeline,
            workers,
        })
    }

    /// The job workers, on `tracker` until `stop`: every kind with workers; without (an
    /// API-only host) only uploads, whose blobs are in this host's cache. On PostgreSQL also
    /// the listener for the other gateways' signals, which go to `signals` (runs, when this
    /// process serves them) and wake the job workers.
    pub fn spawn_background(
        &self,
        config: &Config,
        db: &DatabaseConnection,
        signals: Option<Arc<dyn SignalSink>>,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let settings = WorkerSettings {
            poll_interval: self.deploy_settings.poll_interval,
            lease: self.deploy_settings.lease,
            affinity: Affinity {
                gateway: config.instance_id(),
                alive: crate::cluster::members::alive_window(config)
                    .to_std()
                    .unwrap_or(std::time::Duration::from_secs(90)),
            },
        };
        let process = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            tracker.spawn(crate::cluster::bus::listen(
                config.database_url(),
                signals,
                stop.clone(),
            ));
        }
        let (count, kinds) = match &self.workers {
            // Only a claim needs SQLite's writer lock (a single statement); a step (a file copy,
            // an image build, a status call) runs outside it, so several workers help there too.
            Some(_) => (config.deploy.workers.max(1), None),
            None => (
                1,
                Some(vec![JobKind::UploadVersion, JobKind::DeliverWebhook]),
            ),
        };
        let handler = Arc::new(self.effects(config, db));
        let clocks = crate::jobs::WorkerClocks::default();
        for i in 0..count {
            let worker = JobWorker {
                db: db.clone(),
                handler: handler.clone(),
                settings: settings.clone(),
                id: format!("worker-{process}-{i}"),
                kinds: kinds.clone(),
                clocks: clocks.clone(),
            };
            tracker.spawn(worker.run(stop.clone()));
        }
        // Image mode: Koyeb must be able to pull long after the last deployment's ECR token.
        if let Some(koyeb) = self.workers.as_ref().and_then(|p| p.koyeb.clone()) {
            tracker.spawn(koyeb.keep_registry_secret_fresh(stop));
        }
    }

    /// The job handler over this process's parts (without workers: uploads only).
    fn effects(&self, config: &Config, db: &DatabaseConnection) -> Effects {
        let deploy = self.workers.as_ref().map(|parts| DeployRunner {
            db: db.clone(),
            deployer: parts.deployer.clone(),
            files: self.files.clone(),
            settings: self.deploy_settings.clone(),
            databases: parts.databases.clone(),
        });
        let cleanup = self.workers.as_ref().map(|parts| Cleanup {
            db: db.clone(),
            deployer: parts.deployer.clone(),
            git: self.git.clone(),
            databases: parts.databases.clone(),
            files: self.files.clone(),
        });
        let policies = EffectPolicies {
            upload: config.storage.upload_retries(),
            push: config.git.push_retries(),
            ..EffectPolicies::default()
        };
        Effects {
            db: db.clone(),
            files: self.files.clone(),
            git: self.git.clone(),
            deploy,
            cleanup,
            webhooks: self.webhooks.clone(),
            policies,
        }
    }
}

/// Koyeb, with an image builder and ECR in image mode.
fn build_koyeb(config: &Config) -> anyhow::Result<KoyebDeployer> {
    let (builder, registry) = match config.koyeb.mode() {
        KoyebMode::Image => (
            Some(Arc::new(ImageBuilder::new(config.koyeb.builder_settings()))),
            Some(Arc::new(EcrRegistry::new(config.ecr.settings()))),
        ),
        KoyebMode::Git => (None, None),
    };
    KoyebDeployer::new(config.koyeb.settings(), builder, registry)
        .map_err(|e| anyhow::anyhow!("koyeb: {e}"))
}

/// The configured database provisioner and the store of each app's (encrypted) database URL.
fn build_databases(config: &Config, db: &DatabaseConnection) -> anyhow::Result<AppDatabases> {
    let p = &config.database_provision;
    let provisioner: Arc<dyn DatabaseProvisioner> = match p.kind {
        ProvisionKind::None => Arc::new(NoProvisioner),
        ProvisionKind::Postgres => Arc::new(PostgresProvisioner::new(
            p.admin_url.clone(),
            p.postgres_public_host().unwrap_or_default(),
        )),
        ProvisionKind::Neon => Arc::new(
            NeonProvisioner::new(p.api_base.clone(), p.api_key.clone(), p.region_id.clone())
                .map_err(|e| anyhow::anyhow!("database_provision: {e}"))?,
        ),
    };
    let key = if p.encryption_key.expose_secret().is_empty() {
        secrets::load_or_create(&config.server.data_dir, "db-encryption.key")?
    } else {
        p.encryption_key.clone()
    };
    Ok(AppDatabases::new(
        db.clone(),
        provisioner,
        UrlCipher::new(&key),
    ))
}

/// The configured git host wrapped in the version publisher, or None.
fn build_git(
    config: &Config,
    db: &DatabaseConnection,
    files: &FileVersions,
    public_url: &str,
) -> anyhow::Result<Option<GitPublisher>> {
    let g = &config.git;
    let host: Arc<dyn GitHost> = match g.host {
        GitHostKind::None => return Ok(None),
        GitHostKind::Local => Arc::new(LocalGitHost::new(config.git_dir(), public_url)),
        GitHostKind::Github => {
            let auth = if g.token.expose_secret().is_empty() {
                GitHubAuth::App {
                    app_id: g.app_id,
                    private_key_pem: g.private_key.clone(),
                    installation_id: (g.installation_id != 0).then_some(g.installation_id),
                }
            } else {
                GitHubAuth::Token(g.token.clone())
            };
            Arc::new(GitHubHost::new(GitHubSettings {
                api_base: g.api_base.clone(),
                auth,
                owner: g.owner.clone(),
                owner_is_org: g.owner_is_org,
                private: g.private,
                max_retries: g.max_retries,
                api_version: g.api_version.clone(),
            })?)
        }
    };
    Ok(Some(GitPublisher::new(
        db.clone(),
        host,
        files.clone(),
        g.publish_settings(),
    )))
}

/// The object store the config names, the local blob cache, and the version service over both.
fn build_files(
    config: &Config,
    db: &DatabaseConnection,
    public_url: String,
) -> anyhow::Result<(FileVersions, Option<Arc<LocalStore>>)> {
    let (store, local): (SharedStore, Option<Arc<LocalStore>>) = match config.storage.kind {
        StorageKind::Local => {
            let secret = secrets::load_or_create(&config.server.data_dir, "url-signing.secret")?;
            let signer = UrlSigner::new(secret.expose_secret().as_bytes());
            let local = Arc::new(LocalStore::new(config.storage_dir(), public_url, signer)?);
            (local.clone(), Some(local))
        }
        StorageKind::S3 => {
            let store = S3Store::new(&config.storage.s3_settings());
            (Arc::new(store), None)
        }
    };
    let store: SharedStore = Arc::new(Instrumented(store));
    let cache = BlobCache::new(config.server.data_dir.join("blob-cache"))?;
    Ok((FileVersions::new(db.clone(), store, cache), local))
}
