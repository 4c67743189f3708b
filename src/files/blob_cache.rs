//! The gateway's local, content-addressed copy of every blob it produced. It is the staging area
//! when storage is down (nothing is lost) and spares a storage round trip when applying diffs.
use std::path::PathBuf;

use super::manifest::sha256_hex;

#[derive(Clone)]
pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    pub fn new(root: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.root.join(&sha256[..2]).join(sha256))
    }

    pub async fn get(&self, sha256: &str) -> Option<Vec<u8>> {
        let path = self.path(sha256)?;
        let bytes = tokio::fs::read(path).await.ok()?;
        // A damaged cache entry is treated as missing, never served.
        (sha256_hex(&bytes) == sha256).then_some(bytes)
    }

    /// Stores `bytes` under their hash (written to a temp file, then renamed).
    pub async fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha = sha256_hex(bytes);
        let Some(path) = self.path(&sha) else {
            return Err(std::io::Error::other("invalid hash"));
        };
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(sha);
        }
        let dir = path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.clone());
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(sha)
    }
}
