//! The local dev signing secret: configured, or generated once and kept under the data dir so
//! `agentgate token` and `agentgate serve` agree without any set-up.
use std::io::Write;
use std::path::Path;

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

pub fn hs256_secret(configured: &SecretString, data_dir: &Path) -> anyhow::Result<SecretString> {
    if !configured.expose_secret().is_empty() {
        return Ok(configured.clone());
    }
    load_or_create(data_dir, "hs256.secret")
}

/// A random secret kept in `<data_dir>/<name>` (mode 0600), created on first use.
pub fn load_or_create(data_dir: &Path, name: &str) -> anyhow::Result<SecretString> {
    let path = data_dir.join(name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(SecretString::from(existing.to_string()));
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    file.write_all(secret.as_bytes())?;
    Ok(SecretString::from(secret))
}

/// A random secret for the in-process demo agent's bearer check.
pub fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
