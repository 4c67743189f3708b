//! What a local commit URL (`.../{name}.git/commit/{sha}`) shows: the commit as `git show
//! --stat` prints it, plain text. A sha that is not a commit of the repository is None.
use std::path::Path;

use tokio::process::Command;

use crate::git::GitError;

pub async fn commit_summary(dir: &Path, sha: &str) -> Result<Option<String>, GitError> {
    // Only an object id reaches git: never an option, a range or a ref expression.
    let is_id = (4..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_id {
        return Ok(None);
    }
    let output = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .arg("--git-dir")
        .arg(dir)
        .args(["show", "--no-color", "--stat", "--format=fuller"])
        .arg(format!("{sha}^{{commit}}"))
        .arg("--")
        .output()
        .await
        .map_err(|e| GitError::Unavailable(format!("cannot run git show: {e}")))?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
}
