//! Standard Webhooks signatures: a secret is `whsec_` + base64 of random bytes, and a delivery
//! carries `webhook-signature: v1,<base64 of HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")>`.
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
/// The secret lengths the specification allows (bytes, before base64).
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A new secret of 32 random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", BASE64.encode(bytes))
}

/// The key bytes of a `whsec_` secret.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("a webhook secret starts with {SECRET_PREFIX}"))?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| "a webhook secret is base64 after its prefix".to_string())?;
    if !SECRET_BYTES.contains(&bytes.len()) {
        return Err(format!(
            "a webhook secret holds {} to {} bytes, this one {}",
            SECRET_BYTES.start(),
            SECRET_BYTES.end(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// The `webhook-signature` header value for one attempt.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_decodes_to_32_bytes() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(decode_secret(&secret).map(|k| k.len()), Ok(32));
    }

    #[test]
    fn short_or_foreign_secrets_are_refused() {
        assert!(decode_secret("abc").is_err());
        assert!(decode_secret(&format!("whsec_{}", BASE64.encode([1u8; 8]))).is_err());
        assert!(decode_secret("whsec_not base64!").is_err());
    }

    /// The example of the specification's reference libraries (standard-webhooks, Svix).
    #[test]
    fn signs_as_the_reference_libraries_do() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
