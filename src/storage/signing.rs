//! Links to local objects are signed by the gateway: HMAC-SHA256 over the key, the expiry and the
//! download name. A changed byte or a passed expiry is refused.
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct UrlSigner {
    /// SHA-512 of the secret: exactly HMAC-SHA256's 64-byte block, so building a MAC never fails.
    key: [u8; 64],
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the link has expired")]
    Expired,
    #[error("the link signature is invalid")]
    Invalid,
}

impl UrlSigner {
    pub fn new(secret: &[u8]) -> Self {
        use sha2::Digest;
        Self {
            key: sha2::Sha512::digest(secret).into(),
        }
    }

    pub fn sign(&self, key: &str, expires_at: i64, name: &str) -> String {
        hex::encode(self.mac(key, expires_at, name).finalize().into_bytes())
    }

    pub fn verify(
        &self,
        key: &str,
        expires_at: i64,
        name: &str,
        signature: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        let provided = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
        // Constant-time comparison; checked before expiry so a forged link learns nothing.
        self.mac(key, expires_at, name)
            .verify_slice(&provided)
            .map_err(|_| SignatureError::Invalid)?;
        if now > expires_at {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    fn mac(&self, key: &str, expires_at: i64, name: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new(
            hmac::digest::generic_array::GenericArray::from_slice(&self.key),
        );
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires_at.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(name.as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_expiry_and_tampering() {
        let signer = UrlSigner::new(b"secret");
        let sig = signer.sign("blobs/abc", 1000, "a.txt");
        assert_eq!(signer.verify("blobs/abc", 1000, "a.txt", &sig, 999), Ok(()));
        assert_eq!(
            signer.verify("blobs/abc", 1000, "a.txt", &sig, 1001),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            signer.verify("blobs/abd", 1000, "a.txt", &sig, 999),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify("blobs/abc", 2000, "a.txt", &sig, 999),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify("blobs/abc", 1000, "b.txt", &sig, 999),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify("blobs/abc", 1000, "a.txt", "zz", 999),
            Err(SignatureError::Invalid)
        );
    }
}
