//! Local preview deploys: the web root of a version (see [`web_root`]) is published under
//! `<root>/<app_id>/` and served at `/preview/<app_id>/`. A new version is written next to the old
//! one and a `current` symlink is swapped atomically, so visitors see either the old or the new
//! version, never a mix. Files the published version already has (same content, by SHA-256,
//! listed in its `.files.json`) are hard-linked from it instead of written again, so a publish
//! writes what changed. A version without a page fails instead of going live at a 404.
pub mod web_root;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::provider::{DeployError, DeployRequest, Deployer, ProviderState, ProviderStatus};
use super::runner::STATE_URL;
use crate::files::FileMode;

pub struct LocalPreview {
    root: PathBuf,
    public_url: String,
}

const CURRENT: &str = "current";
/// Each published directory's files and their SHA-256, kept beside it (not in it: the
/// directory is served as it is).
type FileList = std::collections::BTreeMap<String, String>;

fn file_list_path(app_dir: &Path, name: &str) -> PathBuf {
    app_dir.join(format!("{name}.files.json"))
}

/// The directory `current` points to, and its file list.
fn published(app_dir: &Path) -> Option<(PathBuf, FileList)> {
    let dir = std::fs::canonicalize(app_dir.join(CURRENT)).ok()?;
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let list = std::fs::read(file_list_path(app_dir, &name)).ok()?;
    Some((dir, serde_json::from_slice(&list).ok()?))
}

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
        let previous = published(&app_dir);
        let mut list = FileList::new();
        for (path, entry) in web_root::files_under(&request.files, site) {
            // Links could point anywhere on this machine; previews serve plain files only.
            if entry.mode == FileMode::Symlink {
                continue;
            }
            let file = target.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let sha = crate::files::manifest::sha256_hex(&entry.content);
            let same = previous
                .as_ref()
                .filter(|(_, files)| files.get(path) == Some(&sha))
                .map(|(dir, _)| dir.join(path));
            // Published files are never written in place, so sharing them is safe.
            let linked = same.is_some_and(|from| std::fs::hard_link(from, &file).is_ok());
            if !linked {
                std::fs::write(&file, &entry.content)?;
            }
            list.insert(path.to_string(), sha);
        }
        std::fs::create_dir_all(&target)?;
        std::fs::write(file_list_path(&app_dir, &name), serde_json::to_vec(&list)?)?;
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
        if name == keep || name == CURRENT {
            continue;
        }
        if entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name.ends_with(".files.json") && name != format!("{keep}.files.json") {
            let _ = std::fs::remove_file(entry.path());
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::files::{FileEntry, FileTree};

    fn request(version: i32, files: &[(&str, &str)]) -> DeployRequest {
        let files: FileTree = files
            .iter()
            .map(|(path, content)| {
                let entry = FileEntry {
                    content: content.as_bytes().to_vec(),
                    mode: FileMode::Regular,
                };
                (path.to_string(), entry)
            })
            .collect();
        DeployRequest {
            deployment_id: format!("deployment-{version}"),
            app_id: "0b6f2c1e-8a55-4a8e-9f59-3f1c1b2d4e5f".into(),
            version,
            files,
            repository: None,
            env: Default::default(),
        }
    }

    #[test]
    fn a_publish_writes_only_what_changed_and_swaps_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let preview = LocalPreview::new(dir.path().into(), "http://x".into()).expect("preview");
        let one = request(1, &[("index.html", "<h1>one</h1>"), ("app.js", "let a;")]);
        preview.publish(&one, "").expect("publish 1");
        let first = preview.current_dir(&one.app_id).expect("published");
        let inode = |dir: &Path, file: &str| std::fs::metadata(dir.join(file)).expect("file").ino();
        let (js, html) = (inode(&first, "app.js"), inode(&first, "index.html"));

        let two = request(2, &[("index.html", "<h1>two</h1>"), ("app.js", "let a;")]);
        preview.publish(&two, "").expect("publish 2");
        let second = preview.current_dir(&two.app_id).expect("published");
        assert_ne!(first, second, "a new directory, swapped in by the link");
        assert_eq!(
            inode(&second, "app.js"),
            js,
            "the unchanged file is linked, not copied"
        );
        assert_ne!(inode(&second, "index.html"), html);
        assert_eq!(
            std::fs::read_to_string(second.join("index.html")).expect("read"),
            "<h1>two</h1>"
        );
        assert!(!first.exists(), "the old version is removed");
        let app_dir = dir.path().join(&two.app_id);
        let lists: Vec<String> = std::fs::read_dir(&app_dir)
            .expect("app dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".files.json"))
            .collect();
        assert_eq!(lists.len(), 1, "{lists:?}");
    }
}
