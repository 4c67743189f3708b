//! Writes one commit into a bare repository and moves the branch with compare-and-swap.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use git2::build::TreeUpdateBuilder;
use git2::{
    Commit, ErrorCode, FileMode as GitMode, ObjectType, Oid, Repository, Signature, Tree,
    TreeWalkMode, TreeWalkResult,
};

use super::local_error;
use crate::files::FileMode;
use crate::git::changes::{changed_paths, overlaps};
use crate::git::{CommitRequest, GitError};

/// How often the branch may move (or be locked) under us before we give up.
const MAX_ATTEMPTS: usize = 20;

/// Blob id and mode per written path; None deletes the path.
type Planned = BTreeMap<String, Option<(Oid, GitMode)>>;
/// Path → (mode, id) of every non-directory entry of a tree.
type Files = BTreeMap<String, (i32, Oid)>;

/// Returns the new commit id and how many blobs were new to the repository.
pub(super) fn commit(git: &Repository, req: &CommitRequest) -> Result<(String, usize), GitError> {
    let refname = format!("refs/heads/{}", req.branch);
    let parent = match &req.parent {
        Some(sha) => Some(find_commit(git, sha)?),
        None => None,
    };
    let parent_files = match &parent {
        Some(c) => flatten(&c.tree().map_err(local_error)?)?,
        None => BTreeMap::new(),
    };
    let (planned, uploaded) = write_blobs(git, req)?;
    let touched = touched_paths(&planned, &parent_files);
    let author = Signature::now(&req.author_name, &req.author_email).map_err(local_error)?;

    for attempt in 0..MAX_ATTEMPTS {
        let head = branch_head(git, &refname)?;
        let base = match (&parent, head) {
            (None, None) => None,
            (None, Some(_)) => return Err(GitError::HistoryExists),
            (Some(p), Some(h)) if p.id() != h => {
                let head_commit = git.find_commit(h).map_err(local_error)?;
                let head_files = flatten(&head_commit.tree().map_err(local_error)?)?;
                if overlaps(&touched, &changed_paths(&parent_files, &head_files)) {
                    return Err(GitError::Conflict {
                        head: h.to_string(),
                    });
                }
                Some(head_commit)
            }
            // The branch is at the parent, or is new and starts from it.
            (Some(p), _) => Some(p.clone()),
        };
        let base_tree = match &base {
            Some(c) => c.tree().map_err(local_error)?,
            None => empty_tree(git)?,
        };
        let tree = apply(git, &base_tree, &planned)?;
        let parents: Vec<&Commit> = base.iter().collect();
        let id = git
            .commit(None, &author, &author, &req.message, &tree, &parents)
            .map_err(local_error)?;
        let log = format!("agentgate: {}", first_line(&req.message));
        let moved = match head {
            None => git.reference(&refname, id, false, &log),
            Some(h) => git.reference_matching(&refname, id, true, h, &log),
        };
        match moved {
            Ok(_) => return Ok((id.to_string(), uploaded)),
            // Another writer moved the branch between our read and our write: look again.
            Err(e) if matches!(e.code(), ErrorCode::Exists | ErrorCode::Modified) => continue,
            // Another writer holds the ref lock right now: give it a moment.
            Err(e) if e.code() == ErrorCode::Locked => {
                std::thread::sleep(Duration::from_millis(5 * (attempt as u64 + 1)));
            }
            Err(e) => return Err(local_error(e)),
        }
    }
    Err(GitError::Unavailable(format!(
        "branch {} kept moving during the commit",
        req.branch
    )))
}

/// The commit a branch points at, if the branch exists.
pub(super) fn branch_head(git: &Repository, refname: &str) -> Result<Option<Oid>, GitError> {
    match git.refname_to_id(refname) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(local_error(e)),
    }
}

fn find_commit<'r>(git: &'r Repository, sha: &str) -> Result<Commit<'r>, GitError> {
    let missing = || GitError::NotFound(format!("parent commit {sha}"));
    let id = Oid::from_str(sha).map_err(|_| missing())?;
    git.find_commit(id).map_err(|_| missing())
}

/// Stores the blobs of every written file once; content already present is not counted.
fn write_blobs(git: &Repository, req: &CommitRequest) -> Result<(Planned, usize), GitError> {
    let odb = git.odb().map_err(local_error)?;
    let mut uploaded = 0;
    let mut planned = Planned::new();
    for (path, entry) in &req.changes {
        let Some(entry) = entry else {
            planned.insert(path.clone(), None);
            continue;
        };
        let id = Oid::hash_object(ObjectType::Blob, &entry.content).map_err(local_error)?;
        if !odb.exists(id) {
            git.blob(&entry.content).map_err(local_error)?;
            uploaded += 1;
        }
        planned.insert(path.clone(), Some((id, git_mode(entry.mode))));
    }
    Ok((planned, uploaded))
}

/// The paths this commit really changes relative to its parent; rewriting a file with the
/// same content and mode is no change and cannot conflict.
fn touched_paths(planned: &Planned, parent_files: &Files) -> Vec<String> {
    planned
        .iter()
        .filter(|(path, entry)| match entry {
            Some((id, mode)) => parent_files.get(*path) != Some(&(i32::from(*mode), *id)),
            None => parent_files.contains_key(*path),
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// Deletions first, then writes: libgit2 refuses a single update that removes file `a` and
/// adds `a/b` ("D/F conflict"), which is how a file becomes a directory.
fn apply<'r>(
    git: &'r Repository,
    base: &Tree<'_>,
    planned: &Planned,
) -> Result<Tree<'r>, GitError> {
    let mut removals = TreeUpdateBuilder::new();
    for path in planned.iter().filter(|(_, e)| e.is_none()).map(|(p, _)| p) {
        // Deleting what is not there (or is a directory) is a no-op, not an error.
        if is_file(base, path) {
            removals.remove(path.as_str());
        }
    }
    let pruned = update(git, &mut removals, base)?;
    let mut writes = TreeUpdateBuilder::new();
    for (path, entry) in planned {
        if let Some((id, mode)) = entry {
            writes.upsert(path.as_str(), *id, *mode);
        }
    }
    update(git, &mut writes, &pruned)
}

fn update<'r>(
    git: &'r Repository,
    builder: &mut TreeUpdateBuilder,
    base: &Tree<'_>,
) -> Result<Tree<'r>, GitError> {
    let id = builder
        .create_updated(git, base)
        .map_err(|e| GitError::Invalid(format!("cannot build the tree: {}", e.message())))?;
    git.find_tree(id).map_err(local_error)
}

fn is_file(tree: &Tree<'_>, path: &str) -> bool {
    tree.get_path(Path::new(path))
        .is_ok_and(|entry| entry.kind() != Some(ObjectType::Tree))
}

fn empty_tree(git: &Repository) -> Result<Tree<'_>, GitError> {
    let id = git
        .treebuilder(None)
        .and_then(|b| b.write())
        .map_err(local_error)?;
    git.find_tree(id).map_err(local_error)
}

/// Every blob (and submodule link) in a tree, by full path.
pub(super) fn flatten(tree: &Tree<'_>) -> Result<Files, GitError> {
    let mut files = BTreeMap::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(ObjectType::Tree) {
            let name = String::from_utf8_lossy(entry.name_bytes());
            files.insert(format!("{dir}{name}"), (entry.filemode(), entry.id()));
        }
        TreeWalkResult::Ok
    })
    .map_err(local_error)?;
    Ok(files)
}

fn git_mode(mode: FileMode) -> GitMode {
    match mode {
        FileMode::Regular => GitMode::Blob,
        FileMode::Executable => GitMode::BlobExecutable,
        FileMode::Symlink => GitMode::Link,
    }
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}
