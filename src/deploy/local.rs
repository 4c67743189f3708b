//! Local preview deploys, served by every gateway at `/preview/<app_id>/`. A deployment
//! publishes the version's web root (see [`web_root`]) as a site: its files' blobs go to object
//! storage (content-addressed, so an unchanged file is never stored twice), then one small
//! object, `previews/<app_id>/site.json`, names the version and maps each path to its blob.
//! Writing that object is the switch: one PUT, so visitors see the old site or the new one,
//! never a mix. Any gateway serves a preview from storage, with blobs kept in its local cache
//! and the site object cached for [`SITE_TTL`]. A version without a page fails instead of going
//! live at a 404.
pub mod web_root;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::logs::LogStream;
use super::provider::{DeployError, DeployRequest, Deployer, ProviderState, ProviderStatus};
use super::runner::STATE_URL;
use crate::files::versions::blob_key;
use crate::files::{FileMode, FileVersions};
use crate::storage::StorageError;

/// How long a gateway serves a site object before it looks for a newer one.
pub const SITE_TTL: Duration = Duration::from_secs(1);
/// Site objects cached at most; past that the cache starts over.
const MAX_CACHED_SITES: usize = 4096;
const UPLOAD_CONCURRENCY: usize = 8;

/// What a preview serves: a version's web root, as paths (relative to it) to blobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Site {
    pub version: i32,
    pub deployment_id: String,
    /// The web root in the app's files ("" for the app's root).
    pub root: String,
    /// Relative path to the SHA-256 of its content.
    pub files: BTreeMap<String, String>,
}

fn site_key(app_id: &str) -> String {
    format!("previews/{app_id}/site.json")
}

/// A site object as read at an instant (None: the app has no preview).
type CachedSite = (Instant, Option<Arc<Site>>);

pub struct LocalPreview {
    files: FileVersions,
    public_url: String,
    sites: Mutex<HashMap<String, CachedSite>>,
}

impl LocalPreview {
    pub fn new(files: FileVersions, public_url: String) -> Self {
        Self {
            files,
            public_url: public_url.trim_end_matches('/').to_string(),
            sites: Mutex::new(HashMap::new()),
        }
    }

    pub fn url_for(&self, app_id: &str) -> String {
        format!("{}/preview/{app_id}/", self.public_url)
    }

    /// The file at `path` (normalized, relative to the web root; a directory serves its
    /// `index.html`) of the app's published site, or None.
    pub async fn read(&self, app_id: &str, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(site) = self.site(app_id).await? else {
            return Ok(None);
        };
        let index = if path.is_empty() {
            "index.html".to_string()
        } else {
            format!("{}/index.html", path.trim_end_matches('/'))
        };
        let Some(sha) = site.files.get(path).or_else(|| site.files.get(&index)) else {
            return Ok(None);
        };
        self.files
            .blob(sha)
            .await
            .map(Some)
            .map_err(|e| StorageError::Unavailable(e.to_string()))
    }

    /// The app's site, from the short-lived cache or from storage.
    async fn site(&self, app_id: &str) -> Result<Option<Arc<Site>>, StorageError> {
        if uuid::Uuid::parse_str(app_id).is_err() {
            return Ok(None);
        }
        let cached = self.sites.lock().ok().and_then(|sites| {
            (sites.get(app_id))
                .filter(|(at, _)| at.elapsed() < SITE_TTL)
                .map(|(_, site)| site.clone())
        });
        if let Some(site) = cached {
            return Ok(site);
        }
        let site = self.load_site(app_id).await?.map(Arc::new);
        self.remember(app_id, site.clone());
        Ok(site)
    }

    async fn load_site(&self, app_id: &str) -> Result<Option<Site>, StorageError> {
        let Some(bytes) = self.files.store().get(&site_key(app_id)).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(site) => Ok(Some(site)),
            Err(e) => {
                tracing::warn!(app_id, error = %e, "unreadable preview site object");
                Ok(None)
            }
        }
    }

    fn remember(&self, app_id: &str, site: Option<Arc<Site>>) {
        if let Ok(mut sites) = self.sites.lock() {
            if sites.len() >= MAX_CACHED_SITES {
                sites.clear();
            }
            sites.insert(app_id.to_string(), (Instant::now(), site));
        }
    }

    /// Publishes the files under `root` (a [`web_root::WEB_ROOTS`] entry): blobs first, the
    /// site object last.
    async fn publish(&self, request: &DeployRequest, root: &str) -> Result<Site, StorageError> {
        let mut site = Site {
            version: request.version,
            deployment_id: request.deployment_id.clone(),
            root: root.to_string(),
            files: BTreeMap::new(),
        };
        let mut contents = HashMap::new();
        for (path, entry) in web_root::files_under(&request.files, root) {
            // Links could point anywhere; previews serve plain files only.
            if entry.mode == FileMode::Symlink {
                continue;
            }
            let sha = crate::files::manifest::sha256_hex(&entry.content);
            site.files.insert(path.to_string(), sha.clone());
            contents.insert(sha, Bytes::copy_from_slice(&entry.content));
        }
        let log = &request.log;
        let shown = if root.is_empty() {
            "the app's root"
        } else {
            root
        };
        log.line(
            LogStream::Deploy,
            &format!(
                "uploading {} files from {shown} ({} distinct contents)",
                site.files.len(),
                contents.len()
            ),
        );
        let store = self.files.store().clone();
        let uploaded = std::sync::atomic::AtomicUsize::new(0);
        let uploaded_ref = &uploaded;
        futures::stream::iter(contents)
            .map(move |(sha, body)| {
                // Owned, so the future stays `Send` for the job runner.
                let store = store.clone();
                async move {
                    let key = blob_key(&sha);
                    if !store.exists(&key).await? {
                        store.put(&key, body, "application/octet-stream").await?;
                        uploaded_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok::<_, StorageError>(())
                }
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        let uploaded = uploaded.into_inner();
        log.line(
            LogStream::Deploy,
            &format!("stored {uploaded} new blobs (the rest were stored already)"),
        );
        let object =
            serde_json::to_vec(&site).map_err(|e| StorageError::Unavailable(e.to_string()))?;
        (self.files.store())
            .put(
                &site_key(&request.app_id),
                Bytes::from(object),
                "application/json",
            )
            .await?;
        self.remember(&request.app_id, Some(Arc::new(site.clone())));
        log.line(
            LogStream::Deploy,
            &format!(
                "site published at {} (version {})",
                self.url_for(&request.app_id),
                request.version
            ),
        );
        Ok(site)
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
        let root = web_root::find(&request.files)
            .ok_or_else(|| DeployError::Permanent(web_root::NO_WEB_ROOT.into()))?;
        self.publish(request, root)
            .await
            .map_err(|e| DeployError::Transient(format!("could not publish the preview: {e}")))?;
        state.insert(STATE_URL.into(), self.url_for(&request.app_id).into());
        Ok(())
    }

    async fn poll(
        &self,
        request: &DeployRequest,
        state: &ProviderState,
    ) -> Result<ProviderStatus, DeployError> {
        let Some(url) = state.get(STATE_URL).and_then(|v| v.as_str()) else {
            return Ok(ProviderStatus::Failed {
                reason: "the preview was never published".into(),
            });
        };
        // Live only where the page really is served: read storage, not the cache.
        let site = (self.load_site(&request.app_id).await)
            .map_err(|e| DeployError::Transient(e.to_string()))?;
        match site {
            Some(site) if site.files.contains_key("index.html") => Ok(ProviderStatus::Healthy {
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
        (self.files.store().delete(&site_key(app_id)).await)
            .map_err(|e| DeployError::Transient(e.to_string()))?;
        self.remember(app_id, None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::files::{BlobCache, FileEntry, FileTree};
    use crate::storage::{LocalStore, SharedStore, UrlSigner};

    const APP: &str = "0b6f2c1e-8a55-4a8e-9f59-3f1c1b2d4e5f";

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
            app_id: APP.into(),
            version,
            files,
            repository: None,
            env: Default::default(),
            log: Default::default(),
        }
    }

    /// A gateway's preview: the shared store, its own blob cache.
    async fn gateway(store: &SharedStore, dir: &std::path::Path, name: &str) -> LocalPreview {
        let db = crate::db::connect("sqlite::memory:", 1)
            .await
            .expect("database");
        let cache = BlobCache::new(dir.join(name)).expect("cache");
        LocalPreview::new(
            FileVersions::new(db, store.clone(), cache),
            "http://x".into(),
        )
    }

    fn blobs_stored(dir: &std::path::Path) -> usize {
        walkdir(&dir.join("store").join("blobs"))
    }

    fn walkdir(dir: &std::path::Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        (entries.flatten())
            .map(|e| match e.path().is_dir() {
                true => walkdir(&e.path()),
                false => 1,
            })
            .sum()
    }

    async fn read(preview: &LocalPreview, path: &str) -> Option<Vec<u8>> {
        preview.read(APP, path).await.expect("read")
    }

    #[tokio::test]
    async fn every_gateway_serves_the_published_site_from_storage() {
        let dir = tempfile::tempdir().expect("dir");
        let store: SharedStore = Arc::new(
            LocalStore::new(
                dir.path().join("store"),
                "http://127.0.0.1:1".into(),
                UrlSigner::new(b"test secret"),
            )
            .expect("store"),
        );
        let publisher = gateway(&store, dir.path(), "cache-a").await;
        let other = gateway(&store, dir.path(), "cache-b").await;

        let one = request(
            1,
            &[
                ("client/index.html", "<h1>one</h1>"),
                ("client/app.js", "let a;"),
                ("server/main.py", "secret"),
            ],
        );
        let mut state = ProviderState::new();
        publisher.start(&one, &mut state).await.expect("publish 1");
        assert_eq!(
            publisher.poll(&one, &state).await.expect("poll"),
            ProviderStatus::Healthy {
                url: format!("http://x/preview/{APP}/")
            }
        );
        assert_eq!(
            read(&other, "index.html").await,
            Some(b"<h1>one</h1>".to_vec())
        );
        assert_eq!(read(&other, "").await, Some(b"<h1>one</h1>".to_vec()));
        assert_eq!(read(&other, "app.js").await, Some(b"let a;".to_vec()));
        assert_eq!(read(&other, "../server/main.py").await, None);
        assert_eq!(
            read(&other, "main.py").await,
            None,
            "only the web root is served"
        );
        assert_eq!(blobs_stored(dir.path()), 2);

        let two = request(
            2,
            &[
                ("client/index.html", "<h1>two</h1>"),
                ("client/app.js", "let a;"),
            ],
        );
        publisher.start(&two, &mut state).await.expect("publish 2");
        assert_eq!(
            blobs_stored(dir.path()),
            3,
            "the unchanged file is stored once"
        );
        tokio::time::sleep(SITE_TTL).await;
        assert_eq!(
            read(&other, "index.html").await,
            Some(b"<h1>two</h1>".to_vec())
        );

        publisher.destroy(APP).await.expect("destroy");
        assert_eq!(read(&publisher, "index.html").await, None);
        assert!(matches!(
            publisher.poll(&two, &state).await.expect("poll"),
            ProviderStatus::Failed { .. }
        ));
    }

    #[tokio::test]
    async fn a_version_without_a_page_fails_for_good() {
        let dir = tempfile::tempdir().expect("dir");
        let store: SharedStore = Arc::new(
            LocalStore::new(
                dir.path().join("store"),
                "http://127.0.0.1:1".into(),
                UrlSigner::new(b"test secret"),
            )
            .expect("store"),
        );
        let preview = gateway(&store, dir.path(), "cache").await;
        let mut state = ProviderState::new();
        let started = preview
            .start(&request(1, &[("server/main.py", "print()")]), &mut state)
            .await;
        assert!(matches!(started, Err(DeployError::Permanent(_))));
    }
}
