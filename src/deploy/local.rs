//! Local preview deploys: the web root of a version (see [`web_root`]) is published under
//! `<root>/<app_id>/` and served at `/preview/<app_id>/`. A new version is written next to the old
//! one and a `current` symlink is swapped atomically, so visitors see either the old or the new
//! version, never a mix. A version without a page fails instead of going live at a 404.
pub mod web_root;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::provider::{DeployError, DeployRequest, Deployer, ProviderState, ProviderStatus};
use super::runner::STATE_URL;
use crate::workspace::FileMode;

pub struct LocalPreview {
    root: PathBuf,
    public_url: String,
}

const CURRENT: &str = "current";

impl LocalPreview {
    pub fn new(root: PathBuf, public_url: String) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            public_url: public_url.trim_end_matches('/').to_string(),
        })
    }

    pub fn url_for(&self, app_id: &str) -> String {
        format!("{}/preview/{app_id}/", self.public_url)
    }

    /// The directory currently published for an app.
    pub fn current_dir(&self, app_id: &str) -> Option<PathBuf> {
        uuid::Uuid::parse_str(app_id).ok()?;
        let link = self.root.join(app_id).join(CURRENT);
        std::fs::canonicalize(link).ok()
    }

    fn serves_index(&self, app_id: &str) -> bool {
        self.current_dir(app_id)
            .is_some_and(|dir| dir.join("index.html").is_file())
    }

    /// Publishes the files under `site` (a [`web_root::WEB_ROOTS`] entry), relative to it.
    fn publish(&self, request: &DeployRequest, site: &str) -> std::io::Result<()> {
        let app_dir = self.root.join(&request.app_id);
        let name = format!(
            "v{}-{}",
            request.version,
            &request.deployment_id[..8.min(request.deployment_id.len())]
        );
        let target = app_dir.join(&name);
        if target.exists() {
            std::fs::remove_dir_all(&target)?;
        }
        for (path, entry) in web_root::files_under(&request.files, site) {
            // Links could point anywhere on this machine; previews serve plain files only.
            if entry.mode == FileMode::Symlink {
                continue;
            }
            let file = target.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&file, &entry.content)?;
        }
        std::fs::create_dir_all(&target)?;
        let tmp_link = app_dir.join(format!(".{CURRENT}-{}", uuid::Uuid::new_v4().simple()));
        std::os::unix::fs::symlink(&name, &tmp_link)?;
        std::fs::rename(&tmp_link, app_dir.join(CURRENT))?;
        remove_old_versions(&app_dir, &name);
        Ok(())
    }
}

fn remove_old_versions(app_dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(app_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != keep && name != CURRENT && entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[async_trait]
impl Deployer for LocalPreview {
    fn provider(&self) -> &'static str {
        "local"
    }

    async fn start(
        &self,
        request: &DeployRequest,
        state: &mut ProviderState,
    ) -> Result<(), DeployError> {
        let site = web_root::find(&request.files)
            .ok_or_else(|| DeployError::Permanent(web_root::NO_WEB_ROOT.into()))?;
        let this = LocalPreview {
            root: self.root.clone(),
            public_url: self.public_url.clone(),
        };
        let owned = request.clone();
        tokio::task::spawn_blocking(move || this.publish(&owned, site))
            .await
            .map_err(|e| DeployError::Transient(e.to_string()))?
            .map_err(|e| DeployError::Transient(format!("could not publish the preview: {e}")))?;
        state.insert(STATE_URL.into(), self.url_for(&request.app_id).into());
        Ok(())
    }

    async fn poll(
        &self,
        request: &DeployRequest,
        state: &ProviderState,
    ) -> Result<ProviderStatus, DeployError> {
        match state.get(STATE_URL).and_then(|v| v.as_str()) {
            // Live only where the page really is served.
            Some(url) if self.serves_index(&request.app_id) => Ok(ProviderStatus::Healthy {
                url: url.to_string(),
            }),
            _ => Ok(ProviderStatus::Failed {
                reason: "the preview's index.html is missing".into(),
            }),
        }
    }

    async fn destroy(&self, app_id: &str) -> Result<(), DeployError> {
        if uuid::Uuid::parse_str(app_id).is_err() {
            return Err(DeployError::Permanent("invalid app id".into()));
        }
        match tokio::fs::remove_dir_all(self.root.join(app_id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DeployError::Transient(e.to_string())),
        }
    }
}
