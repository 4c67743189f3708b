//! The Koyeb service definition (`DeploymentDefinition` in API v1) for one app version: a WEB
//! service with one port and route, fixed region, instance type and scaling, the app's env, and
//! either a git source (`git: {repository, branch, sha, build_command, run_command}`) or a
//! docker source (`docker: {image, image_registry_secret}`).
use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::KoyebSettings;
use crate::deploy::provider::{DeployError, DeployRequest};

/// The full definition with `source` (`{"git": ...}` or `{"docker": ...}`) merged in.
pub(super) fn service(
    name: &str,
    settings: &KoyebSettings,
    env: &BTreeMap<String, String>,
    source: Value,
) -> Result<Value, DeployError> {
    let mut vars = Vec::with_capacity(env.len() + 1);
    for (key, value) in env {
        if !valid_env_key(key) {
            return Err(DeployError::Permanent(format!(
                "invalid environment variable name {key:?}"
            )));
        }
        vars.push(json!({ "key": key, "value": value }));
    }
    if !env.contains_key("PORT") {
        vars.push(json!({ "key": "PORT", "value": settings.port.to_string() }));
    }
    let mut definition = json!({
        "name": name,
        "type": "WEB",
        "regions": [settings.region],
        "instance_types": [{ "type": settings.instance_type }],
        "scalings": [{ "min": 1, "max": 1 }],
        "ports": [{ "port": settings.port, "protocol": "http" }],
        "routes": [{ "port": settings.port, "path": "/" }],
        "env": vars,
    });
    if let (Some(target), Value::Object(source)) = (definition.as_object_mut(), source) {
        target.extend(source);
    }
    Ok(definition)
}

/// Koyeb builds the app from its repository at the version's commit.
pub(super) fn git_source(
    request: &DeployRequest,
    settings: &KoyebSettings,
) -> Result<Value, DeployError> {
    let repository = request.repository.as_ref().ok_or_else(|| {
        DeployError::Permanent("Koyeb git mode needs the app's git repository".to_string())
    })?;
    let mut git = Map::new();
    git.insert(
        "repository".into(),
        koyeb_repository(&repository.url)?.into(),
    );
    git.insert("branch".into(), repository.branch.clone().into());
    if let Some(sha) = &repository.commit_sha {
        git.insert("sha".into(), sha.clone().into());
    }
    if let Some(command) = &settings.build_command {
        git.insert("build_command".into(), command.clone().into());
    }
    if let Some(command) = &settings.run_command {
        git.insert("run_command".into(), command.clone().into());
    }
    Ok(json!({ "git": git }))
}

pub(super) fn docker_source(image: &str, registry_secret: &str) -> Value {
    json!({ "docker": { "image": image, "image_registry_secret": registry_secret } })
}

/// Koyeb names repositories `github.com/<org>/<repo>`: no scheme, credentials or `.git`.
fn koyeb_repository(clone_url: &str) -> Result<String, DeployError> {
    let invalid = || DeployError::Permanent("unsupported git repository URL".to_string());
    let (host, path) = if let Some(rest) = clone_url.strip_prefix("git@") {
        rest.split_once(':').ok_or_else(invalid)?
    } else {
        let parsed = url::Url::parse(clone_url).map_err(|_| invalid())?;
        if !matches!(parsed.scheme(), "https" | "http" | "ssh") {
            return Err(invalid());
        }
        let host = parsed.host_str().ok_or_else(invalid)?.to_string();
        let path = parsed.path().to_string();
        return join(&host, &path).ok_or_else(invalid);
    };
    join(host, path).ok_or_else(invalid)
}

fn join(host: &str, path: &str) -> Option<String> {
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let safe = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    (safe(host) && safe(path) && !path.contains("..")).then(|| format!("{host}/{path}"))
}

fn valid_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_are_normalised() {
        for (url, expected) in [
            ("https://github.com/acme/shop.git", "github.com/acme/shop"),
            (
                "https://x-access-token:abc@github.com/acme/shop",
                "github.com/acme/shop",
            ),
            ("git@github.com:acme/shop.git", "github.com/acme/shop"),
            ("ssh://git@github.com/acme/shop.git", "github.com/acme/shop"),
        ] {
            match koyeb_repository(url) {
                Ok(got) => assert_eq!(got, expected, "{url}"),
                Err(e) => panic!("{url}: {e}"),
            }
        }
        for bad in [
            "file:///etc",
            "https://github.com/",
            "not a url",
            "https://github.com/acme/sh op",
        ] {
            assert!(koyeb_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_keys_are_validated() {
        assert!(valid_env_key("APP_DATABASE_URL"));
        assert!(valid_env_key("_X1"));
        assert!(!valid_env_key("1X"));
        assert!(!valid_env_key("A-B"));
        assert!(!valid_env_key(""));
    }
}
