//! Running the real git: writing and reading trees, `git apply`, `git diff`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use agentgate::files::{FileEntry, FileMode, FileTree};

pub(crate) fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .args(["-c", "core.autocrlf=false", "-c", "core.symlinks=true"])
        .args(["-c", "core.filemode=true", "-c", "init.defaultBranch=main"]);
    cmd
}

pub(crate) fn git_ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = git(dir)
        .args(args)
        .output()
        .expect("the oracle tests need the git CLI");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(crate) fn write_tree(root: &Path, tree: &FileTree) {
    for (path, entry) in tree {
        let full = root.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        match entry.mode {
            FileMode::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&entry.content), &full).unwrap()
            }
            mode => {
                std::fs::write(&full, &entry.content).unwrap();
                let bits = if mode == FileMode::Executable {
                    0o755
                } else {
                    0o644
                };
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(bits)).unwrap();
            }
        }
    }
}

pub(crate) fn read_tree(root: &Path) -> FileTree {
    fn walk(root: &Path, dir: &Path, out: &mut FileTree) {
        for item in std::fs::read_dir(dir).unwrap() {
            let item = item.unwrap();
            let path = item.path();
            if dir == root && item.file_name() == ".git" {
                continue;
            }
            // Git may create names that are not UTF-8; we never accept those.
            let rel =
                String::from_utf8_lossy(path.strip_prefix(root).unwrap().as_os_str().as_bytes())
                    .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                let entry = FileEntry {
                    content: target.as_os_str().as_bytes().to_vec(),
                    mode: FileMode::Symlink,
                };
                out.insert(rel, entry);
            } else if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let mode = if meta.permissions().mode() & 0o100 != 0 {
                    FileMode::Executable
                } else {
                    FileMode::Regular
                };
                let content = std::fs::read(&path).unwrap();
                out.insert(rel, FileEntry { content, mode });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

pub(crate) fn clear_worktree(repo: &Path) {
    for item in std::fs::read_dir(repo).unwrap() {
        let item = item.unwrap();
        if item.file_name() == ".git" {
            continue;
        }
        let path = item.path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

/// What `git apply` did: the resulting tree or its error output, and
/// whether anything appeared outside the repository.
pub(crate) struct GitApply {
    pub(crate) result: Result<FileTree, String>,
    pub(crate) wrote_outside: bool,
}

/// A repository kept per thread and reused, so that each case costs one
/// `git apply` process instead of an `init` as well.
struct ReusedRepo {
    tmp: tempfile::TempDir,
    repo: PathBuf,
}

impl ReusedRepo {
    fn new(nested: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let repo = nested
            .iter()
            .fold(tmp.path().to_path_buf(), |p, n| p.join(n));
        std::fs::create_dir_all(&repo).unwrap();
        git_ok(&repo, &["init", "-q"]);
        ReusedRepo { tmp, repo }
    }
}

thread_local! {
    static APPLY_REPO: RefCell<Option<ReusedRepo>> = const { RefCell::new(None) };
    static DIFF_REPO: RefCell<Option<ReusedRepo>> = const { RefCell::new(None) };
}

/// Removes everything in `dir` except `keep`; returns whether there was any.
pub(crate) fn remove_others(dir: &Path, keep: &[&str]) -> bool {
    let mut found = false;
    for item in std::fs::read_dir(dir).unwrap() {
        let item = item.unwrap();
        if keep.iter().any(|k| item.file_name() == *k) {
            continue;
        }
        found = true;
        let path = item.path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    found
}

/// Applies `diff` with `git apply --binary` in a repository at
/// `<tmp>/sandbox/work/repo` holding `base`; the patch file sits at
/// `<tmp>/patch.diff`, so traversal writes show up as extra entries.
pub(crate) fn git_apply(base: &FileTree, diff: &[u8]) -> GitApply {
    APPLY_REPO.with(|cell| {
        let mut cell = cell.borrow_mut();
        let reused = cell.get_or_insert_with(|| ReusedRepo::new(&["sandbox", "work", "repo"]));
        let (root, repo) = (reused.tmp.path(), &reused.repo);
        clear_worktree(repo);
        write_tree(repo, base);
        let patch = root.join("patch.diff");
        std::fs::write(&patch, diff).unwrap();
        let out = git(repo)
            .args(["apply", "--binary"])
            .arg(&patch)
            .output()
            .unwrap();
        let sandbox = root.join("sandbox");
        let wrote_outside = remove_others(root, &["patch.diff", "sandbox"])
            | remove_others(&sandbox, &["work"])
            | remove_others(&sandbox.join("work"), &["repo"]);
        let result = if out.status.success() {
            Ok(read_tree(repo))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        };
        GitApply {
            result,
            wrote_outside,
        }
    })
}

/// `git diff --binary <flags>` from `old` to `new`, through two tree objects.
pub(crate) fn git_diff(old: &FileTree, new: &FileTree, flags: &[&str]) -> Vec<u8> {
    DIFF_REPO.with(|cell| {
        let mut cell = cell.borrow_mut();
        let repo = &cell.get_or_insert_with(|| ReusedRepo::new(&["repo"])).repo;
        let mut trees = Vec::new();
        for tree in [old, new] {
            clear_worktree(repo);
            write_tree(repo, tree);
            git_ok(repo, &["add", "-A"]);
            trees.push(String::from_utf8(git_ok(repo, &["write-tree"])).unwrap());
        }
        let mut args = vec!["diff", "--binary"];
        args.extend_from_slice(flags);
        args.extend(trees.iter().map(|t| t.trim()));
        git_ok(repo, &args)
    })
}

/// `git apply --check` of `diff` against `base`: `Err` carries git's
/// error output.
pub(crate) fn git_apply_check(base: &FileTree, diff: &[u8]) -> Result<(), String> {
    APPLY_REPO.with(|cell| {
        let mut cell = cell.borrow_mut();
        let reused = cell.get_or_insert_with(|| ReusedRepo::new(&["sandbox", "work", "repo"]));
        let (root, repo) = (reused.tmp.path(), &reused.repo);
        clear_worktree(repo);
        write_tree(repo, base);
        let patch = root.join("patch.diff");
        std::fs::write(&patch, diff).unwrap();
        let out = git(repo)
            .args(["apply", "--check", "--binary"])
            .arg(&patch)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
}
