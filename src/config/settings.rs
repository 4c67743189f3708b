//! Each config section turns itself into the settings of the part it configures: seconds and
//! milliseconds become `Duration`s here, once, and the wiring only composes.
use std::time::Duration;

use super::{
    ConfigError, DeployConfig, EcrConfig, GitConfig, KoyebConfig, StorageConfig, WebhooksConfig,
};
use crate::deploy::builder::ImageBuilderSettings;
use crate::deploy::ecr::EcrSettings;
use crate::deploy::koyeb::{KoyebMode, KoyebSettings};
use crate::deploy::DeploySettings;
use crate::git::publish::PublishSettings;
use crate::jobs::RetryPolicy;
use crate::storage::S3Settings;
use crate::webhooks::{DeliverySettings, NetworkPolicy, OperatorEndpoint};

/// A first retry after `secs`, then twice as long each time, at most every five minutes (or
/// `secs`, when longer); never given up.
fn retried_every(secs: u64) -> RetryPolicy {
    let first = Duration::from_secs(secs.max(1));
    RetryPolicy {
        base: first,
        cap: first.max(Duration::from_secs(300)),
        max_attempts: 0,
    }
}

impl DeployConfig {
    /// `git_branch`: the branch a deployment from git builds.
    pub fn settings(&self, git_branch: &str) -> DeploySettings {
        DeploySettings {
            on_new_version: self.on_new_version,
            stream_wait: Duration::from_secs(self.stream_wait_secs),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            lease: Duration::from_secs(self.lease_secs.max(3)),
            max_attempts: self.max_attempts.max(1),
            queued_deadline: Duration::from_secs(self.queued_deadline_secs),
            building_deadline: Duration::from_secs(self.building_deadline_secs),
            deploying_deadline: Duration::from_secs(self.deploying_deadline_secs),
            unknown_status_wait: Duration::from_secs(self.unknown_status_wait_secs),
            git_branch: git_branch.to_string(),
            log_lines: self.log_lines.max(10),
            log_mask: Default::default(),
        }
    }
}

impl StorageConfig {
    pub fn s3_settings(&self) -> S3Settings {
        S3Settings {
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            path_style: self.path_style,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: secrecy::ExposeSecret::expose_secret(&self.secret_access_key)
                .to_string(),
            prefix: self.prefix.clone(),
            max_attempts: self.max_attempts,
        }
    }

    /// How a failed upload is retried.
    pub fn upload_retries(&self) -> RetryPolicy {
        retried_every(self.retry_interval_secs)
    }
}

impl GitConfig {
    pub fn publish_settings(&self) -> PublishSettings {
        PublishSettings {
            branch: self.branch.clone(),
            author_name: self.author_name.clone(),
            author_email: self.author_email.clone(),
            name_attempts: self.name_attempts,
            private: self.private,
        }
    }

    /// How a failed push is retried.
    pub fn push_retries(&self) -> RetryPolicy {
        retried_every(self.retry_interval_secs)
    }
}

impl KoyebConfig {
    pub fn mode(&self) -> KoyebMode {
        if self.mode == "image" {
            KoyebMode::Image
        } else {
            KoyebMode::Git
        }
    }

    pub fn settings(&self) -> KoyebSettings {
        let mut settings = KoyebSettings::new(self.token.clone(), self.mode());
        settings.api_base = self.api_base.clone();
        settings.region = self.region.clone();
        settings.instance_type = self.instance_type.clone();
        settings.port = self.port;
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        settings.build_command = non_empty(&self.build_command);
        settings.run_command = non_empty(&self.run_command);
        if !self.registry_secret_name.is_empty() {
            settings.registry_secret_name = self.registry_secret_name.clone();
        }
        settings.request_timeout = Duration::from_secs(self.request_timeout_secs.max(1));
        settings.max_attempts = self.max_attempts.max(1);
        settings.retry_base_delay = Duration::from_millis(self.retry_base_delay_ms);
        settings
    }

    /// Image mode: how the app's image is built.
    pub fn builder_settings(&self) -> ImageBuilderSettings {
        let work_root =
            (!self.builder_work_dir.as_os_str().is_empty()).then(|| self.builder_work_dir.clone());
        ImageBuilderSettings {
            program: self.builder_program.clone(),
            steps: self.builder_steps.clone(),
            timeout: Duration::from_secs(self.builder_timeout_secs),
            work_root,
            ..ImageBuilderSettings::default()
        }
    }
}

impl EcrConfig {
    pub fn settings(&self) -> EcrSettings {
        EcrSettings {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            repository_prefix: self.repository_prefix.clone(),
        }
    }
}

impl WebhooksConfig {
    /// Where deliveries may go.
    pub fn network_policy(&self) -> Result<NetworkPolicy, ConfigError> {
        let allowed_networks = self
            .allowed_networks
            .iter()
            .map(|net| {
                net.parse::<ipnet::IpNet>().map_err(|_| {
                    ConfigError(format!(
                        "webhooks.allowed_networks: {net:?} is not a network like 10.0.0.0/8"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(NetworkPolicy {
            allow_loopback: self.allow_loopback,
            allowed_networks,
        })
    }

    /// How deliveries are sent and retried (the config was validated at load).
    pub fn delivery_settings(&self) -> DeliverySettings {
        DeliverySettings {
            network: self.network_policy().unwrap_or_default(),
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            max_attempts: self.max_attempts,
            window: Duration::from_secs(self.retry_window_secs),
            retry: RetryPolicy {
                base: Duration::from_millis(self.retry_base_ms.max(1)),
                cap: Duration::from_secs(self.retry_cap_secs.max(1)),
                max_attempts: 0,
            },
            operator_endpoints: self
                .endpoints
                .iter()
                .map(|e| OperatorEndpoint {
                    url: e.url.trim().to_string(),
                    secret: e.secret.clone(),
                })
                .collect(),
        }
    }
}
