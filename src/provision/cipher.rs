//! Encryption of stored database URLs: XChaCha20-Poly1305 with a random 24-byte nonce per
//! value and the app id as associated data, so a value copied to another app's row does not
//! decrypt. The key is SHA-256 over a domain tag and the configured (or generated) secret.
//! Stored form: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::ProvisionError;

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;
const KEY_CONTEXT: &[u8] = b"agentgate app database url v1\0";

pub struct UrlCipher {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for UrlCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlCipher { .. }")
    }
}

impl UrlCipher {
    pub fn new(secret: &SecretString) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(KEY_CONTEXT);
        hasher.update(secret.expose_secret().as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    pub fn encrypt(&self, app_id: &str, url: &SecretString) -> Result<String, ProvisionError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: url.expose_secret().as_bytes(),
                    aad: app_id.as_bytes(),
                },
            )
            .map_err(|_| ProvisionError::Permanent("could not encrypt the database URL".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    pub fn decrypt(&self, app_id: &str, stored: &str) -> Result<SecretString, ProvisionError> {
        let unreadable = || {
            ProvisionError::Permanent(
                "the app's stored database URL cannot be decrypted (was the encryption key changed?)"
                    .into(),
            )
        };
        let bytes = stored
            .strip_prefix(PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(unreadable)?;
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: app_id.as_bytes(),
                },
            )
            .map_err(|_| unreadable())?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| unreadable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "postgres://app_x:Pa55word@db:5432/app_x";

    #[test]
    fn round_trip_is_bound_to_the_app() {
        let cipher = UrlCipher::new(&SecretString::from("k".repeat(64)));
        let sealed = cipher
            .encrypt("app-a", &SecretString::from(URL))
            .expect("encrypt");
        assert!(sealed.starts_with("v1:") && !sealed.contains("Pa55word"));
        let again = cipher
            .encrypt("app-a", &SecretString::from(URL))
            .expect("encrypt");
        assert_ne!(sealed, again, "a fresh nonce each time");
        let opened = cipher.decrypt("app-a", &sealed).expect("decrypt");
        assert_eq!(opened.expose_secret(), URL);
        assert!(
            cipher.decrypt("app-b", &sealed).is_err(),
            "bound to the app"
        );
        let other = UrlCipher::new(&SecretString::from("j".repeat(64)));
        assert!(
            other.decrypt("app-a", &sealed).is_err(),
            "another key fails"
        );
        assert!(cipher.decrypt("app-a", "v1:AAAA").is_err());
        assert!(cipher.decrypt("app-a", "plain").is_err());
        assert!(!format!("{cipher:?}").contains('k'.to_string().repeat(8).as_str()));
    }
}
