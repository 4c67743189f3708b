//! Object storage behind one trait: a local directory (the embedded default; its download links
//! are signed by the gateway) and S3 or any S3-compatible store (real SigV4 presigned URLs).
mod instrumented;
mod local;
mod s3;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use instrumented::Instrumented;
pub use local::LocalStore;
pub use s3::{S3Settings, S3Store};
pub use signing::UrlSigner;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// "local" or "s3", for logs and health checks.
    fn kind(&self) -> &'static str;

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StorageError>;

    async fn exists(&self, key: &str) -> Result<bool, StorageError>;

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError>;

    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// A URL anyone can GET until `ttl` has passed. `download_name` sets the file name browsers
    /// save it under.
    async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
        download_name: Option<&str>,
    ) -> Result<String, StorageError>;

    /// A cheap round trip that proves the store answers.
    async fn check(&self) -> Result<(), StorageError>;

    /// Proves the store takes a write and reads it back (a store that answers may still refuse
    /// writes: a full disk, a read-only bucket policy). Writes one tiny fixed object.
    async fn probe(&self) -> Result<(), StorageError> {
        const KEY: &str = "health/probe";
        const BODY: &[u8] = b"ok";
        self.put(KEY, Bytes::from_static(BODY), "text/plain")
            .await?;
        match self.get(KEY).await? {
            Some(read) if read.as_ref() == BODY => Ok(()),
            _ => Err(StorageError::Unavailable(
                "the health probe object did not read back".into(),
            )),
        }
    }
}

pub type SharedStore = Arc<dyn ObjectStore>;

/// Keys are relative, `/`-separated, and never climb out of their root.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\0')
        || key.contains('\\')
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(StorageError::InvalidKey(key.to_string()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn keys_stay_inside_the_root() {
        assert!(validate_key("blobs/ab/cd").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a\0b",
            "..",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }
}
