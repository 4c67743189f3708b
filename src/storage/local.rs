//! Objects as files under a directory. Writes go to a temp file and are renamed into place, so a
//! reader never sees half an object. Links point at the gateway's own `/files/` route.
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{validate_key, ObjectStore, StorageError, UrlSigner};

pub struct LocalStore {
    root: PathBuf,
    base_url: String,
    signer: UrlSigner,
}

impl LocalStore {
    /// `base_url` is where the gateway serves `/files/...`, e.g. `http://127.0.0.1:4444`.
    pub fn new(root: PathBuf, base_url: String, signer: UrlSigner) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            base_url: base_url.trim_end_matches('/').to_string(),
            signer,
        })
    }

    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    pub fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

fn unavailable(e: std::io::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

async fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("object path has no parent"))?;
    tokio::fs::create_dir_all(dir).await?;
    let mut tmp = TempFile {
        path: dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple())),
        renamed: false,
    };
    let mut file = tokio::fs::File::create(&tmp.path).await?;
    file.write_all(body).await?;
    // tokio's `File` writes in the background: a failed write (a full disk) is reported to the
    // next write or flush, never to `sync_all`, which would sync what was written.
    file.flush().await?;
    file.sync_all().await?;
    tokio::fs::rename(&tmp.path, path).await?;
    tmp.renamed = true;
    Ok(())
}

/// A temporary file that is removed unless it was renamed into place: after a failed write,
/// and when the write is dropped half-way (a batch of uploads that stops at its first error).
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            // Synchronous: a drop cannot wait, and an unlink is one short system call.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn put(&self, key: &str, body: Bytes, _content_type: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        write_atomically(&path, &body).await.map_err(unavailable)
    }

    async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        let path = self.path_of(key)?;
        tokio::fs::try_exists(&path).await.map_err(unavailable)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
        download_name: Option<&str>,
    ) -> Result<String, StorageError> {
        validate_key(key)?;
        let expires = chrono::Utc::now().timestamp() + ttl.as_secs() as i64;
        let name = download_name.unwrap_or("");
        let sig = self.signer.sign(key, expires, name);
        let mut url = url::Url::parse(&format!("{}/files/{}", self.base_url, key))
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("expires", &expires.to_string())
            .append_pair("name", name)
            .append_pair("sig", &sig);
        Ok(url.to_string())
    }

    async fn check(&self) -> Result<(), StorageError> {
        tokio::fs::metadata(&self.root)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64 KiB tmpfs in a temporary directory, unmounted when dropped. Mounting needs root
    /// (CI runs as root); elsewhere the caller skips, and says so.
    struct TinyDisk {
        dir: tempfile::TempDir,
    }

    impl TinyDisk {
        fn mount() -> Option<Self> {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                assert!(
                    std::env::var("CI").is_err(),
                    "CI runs as root: the full-disk test mounts a tmpfs"
                );
                eprintln!("skipped: mounting a tmpfs needs root");
                return None;
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(dir.path())
                .status()
                .expect("mount");
            assert!(mounted.success(), "mount a tmpfs");
            Some(Self { dir })
        }
    }

    impl Drop for TinyDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.dir.path())
                .status();
        }
    }

    /// A write dropped half-way (its caller gave up) leaves no temporary file behind.
    #[tokio::test]
    async fn a_put_dropped_half_way_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(
            LocalStore::new(
                dir.path().to_path_buf(),
                "http://127.0.0.1:1".into(),
                UrlSigner::new(b"test secret"),
            )
            .expect("store"),
        );
        let temporary = |dir: &Path| {
            std::fs::read_dir(dir)
                .map(|entries| {
                    (entries.flatten())
                        .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                })
                .unwrap_or(false)
        };
        let objects = dir.path().join("objects");
        // Caught mid-write: a 64 MiB body takes milliseconds to write; poll for its temp file.
        let mut caught = false;
        for attempt in 0..5 {
            let key = format!("objects/big-{attempt}");
            let put = tokio::spawn({
                let store = store.clone();
                async move {
                    let body = Bytes::from(vec![b'x'; 64 << 20]);
                    store.put(&key, body, "application/octet-stream").await
                }
            });
            while !put.is_finished() && !temporary(&objects) {
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            if put.is_finished() {
                continue;
            }
            put.abort();
            assert!(put.await.is_err_and(|e| e.is_cancelled()));
            caught = true;
            break;
        }
        assert!(caught, "no write was caught half-way in five tries");
        assert!(!temporary(&objects), "a temporary file was left behind");
    }

    /// A full disk fails the write, and leaves no object behind: not an empty one (tokio's
    /// `File` reports a failed write only to the next write or flush, not to `sync_all`).
    #[tokio::test]
    async fn a_full_disk_fails_the_put_and_leaves_no_object() {
        let Some(disk) = TinyDisk::mount() else {
            return;
        };
        let store = LocalStore::new(
            disk.dir.path().join("objects"),
            "http://127.0.0.1:1".into(),
            UrlSigner::new(b"test secret"),
        )
        .expect("store");
        store
            .put("small.json", Bytes::from_static(b"{}"), "application/json")
            .await
            .expect("a small object fits");
        let large = Bytes::from(vec![b'x'; 256 << 10]);
        let put = store.put("large.json", large, "application/json").await;
        assert!(put.is_err(), "{put:?}");
        assert_eq!(store.get("large.json").await.expect("get"), None);
        assert_eq!(
            store.get("small.json").await.expect("get").as_deref(),
            Some(&b"{}"[..])
        );
    }
}
