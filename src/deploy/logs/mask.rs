//! Masks secrets in log text before it is stored: the app's environment (its database URL),
//! registry credentials, and the gateway's configured secrets. A URL also masks its password on
//! its own, since tools print connection details in pieces.
use secrecy::{ExposeSecret, SecretString};

pub const MASKED: &str = "[redacted]";
/// Shorter values are not worth masking (they would mangle ordinary words).
const MIN_LEN: usize = 4;

#[derive(Clone, Default)]
pub struct Mask {
    secrets: Vec<SecretString>,
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mask({} secrets)", self.secrets.len())
    }
}

impl Mask {
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut mask = Self::default();
        mask.extend(secrets);
        mask
    }

    pub fn extend<I, S>(&mut self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for secret in secrets {
            let secret = secret.as_ref();
            if let Some(password) = url_password(secret) {
                self.add(&password);
            }
            self.add(secret);
        }
        // Longest first: a secret containing another is masked whole.
        self.secrets
            .sort_by_key(|s| std::cmp::Reverse(s.expose_secret().len()));
    }

    fn add(&mut self, secret: &str) {
        let known = self.secrets.iter().any(|s| s.expose_secret() == secret);
        if secret.len() >= MIN_LEN && !known {
            self.secrets.push(SecretString::from(secret.to_string()));
        }
    }

    pub fn apply(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            let secret = secret.expose_secret();
            if text.contains(secret) {
                text = text.replace(secret, MASKED);
            }
        }
        text
    }
}

/// The password of a URL such as `postgres://user:password@host/db`, decoded and as written.
fn url_password(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    url.password().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_secret_and_a_url_password_alone() {
        let mask = Mask::new(["postgres://app:s3cr3tpw@db.example/app", "tok-123456"]);
        assert_eq!(
            mask.apply("url postgres://app:s3cr3tpw@db.example/app pw s3cr3tpw t tok-123456"),
            "url [redacted] pw [redacted] t [redacted]"
        );
    }

    #[test]
    fn short_values_are_left_alone() {
        let mask = Mask::new(["abc", ""]);
        assert_eq!(mask.apply("abc"), "abc");
    }
}
