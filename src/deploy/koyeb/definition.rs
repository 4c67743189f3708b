//! The Koyeb service definition (`DeploymentDefinition` in API v1) for one app version: a WEB
//! service with one port (the app's: its Dockerfile's `EXPOSE`, else the configured one) with
//! its route and a TCP health check on it, fixed region, instance type and scaling, the app's
//! env, and either a git source (`git: {repository, branch, sha}` with the builder named
//! explicitly: `docker` when the app has a Dockerfile, else `buildpack` with the configured
//! commands) or a docker source (`docker: {image, image_registry_secret}`).
use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::KoyebSettings;
use crate::deploy::provider::{DeployError, DeployRequest};
use crate::files::FileTree;

const DOCKERFILE: &str = "Dockerfile";

/// The port the app listens on: the first port its root Dockerfile `EXPOSE`s, else `default`.
pub(super) fn app_port(files: &FileTree, default: u16) -> u16 {
    let Some(dockerfile) = files.get(DOCKERFILE) else {
        return default;
    };
    let text = String::from_utf8_lossy(&dockerfile.content);
    text.lines()
        .map(str::trim)
        .filter_map(|line| {
            let (word, rest) = line.split_once(char::is_whitespace)?;
            word.eq_ignore_ascii_case("EXPOSE").then_some(rest)
        })
        .flat_map(str::split_whitespace)
        // `80/tcp` names the protocol too; a variable (`$PORT`) is not a port we can check.
        .find_map(|port| port.split('/').next()?.parse::<u16>().ok())
        .filter(|port| *port > 0)
        .unwrap_or(default)
}

/// The full definition with `source` (`{"git": ...}` or `{"docker": ...}`) merged in.
pub(super) fn service(
    name: &str,
    settings: &KoyebSettings,
    port: u16,
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
        vars.push(json!({ "key": "PORT", "value": port.to_string() }));
    }
    let mut definition = json!({
        "name": name,
        "type": "WEB",
        "regions": [settings.region],
        "instance_types": [{ "type": settings.instance_type }],
        "scalings": [{ "min": 1, "max": 1 }],
        "ports": [{ "port": port, "protocol": "http" }],
        "routes": [{ "port": port, "path": "/" }],
        // Checked on the port the app serves: a service is healthy only if the app answers.
        "health_checks": [{ "grace_period": 10, "interval": 30, "restart_limit": 3,
            "timeout": 5, "tcp": { "port": port } }],
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
    // The builder is named, not guessed by Koyeb: the app's own Dockerfile when it has one,
    // else buildpacks with the configured commands (the deprecated top-level
    // `build_command`/`run_command` are not used).
    if request.files.contains_key(DOCKERFILE) {
        git.insert("docker".into(), json!({ "dockerfile": DOCKERFILE }));
    } else {
        let mut buildpack = Map::new();
        if let Some(command) = &settings.build_command {
            buildpack.insert("build_command".into(), command.clone().into());
        }
        if let Some(command) = &settings.run_command {
            buildpack.insert("run_command".into(), command.clone().into());
        }
        git.insert("buildpack".into(), buildpack.into());
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
    use crate::files::{FileEntry, FileMode};

    fn with_dockerfile(text: &str) -> FileTree {
        FileTree::from([(
            DOCKERFILE.to_string(),
            FileEntry {
                content: text.as_bytes().to_vec(),
                mode: FileMode::Regular,
            },
        )])
    }

    #[test]
    fn the_port_is_the_one_the_dockerfile_exposes() {
        assert_eq!(app_port(&FileTree::new(), 8000), 8000, "no Dockerfile");
        let nginx = "FROM nginx:alpine\nCOPY . /usr/share/nginx/html\nEXPOSE 80\n";
        assert_eq!(app_port(&with_dockerfile(nginx), 8000), 80);
        assert_eq!(
            app_port(&with_dockerfile("expose 3000/tcp 9000"), 8000),
            3000
        );
        assert_eq!(app_port(&with_dockerfile("EXPOSE $PORT"), 8000), 8000);
        assert_eq!(app_port(&with_dockerfile("FROM scratch"), 8000), 8000);
    }

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
