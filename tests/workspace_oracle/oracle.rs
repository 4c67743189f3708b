//! Comparing `apply_patch_set` with `git apply` case by case.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use agentgate::files::{FileMode, FileTree};
use agentgate::workspace::{apply_patch_set, normalize_path, PatchError};

use super::git::git_apply;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Same tree as git, or rejected by both.
    SameAsGit,
    /// We must reject with this code, whatever git does.
    Reject(&'static str),
    /// A `-U0` diff: same as git, or refused because a hunk without context
    /// lines has no unambiguous place (git would put it at the end of the
    /// file).
    SameAsGitOrNoContext,
}

/// Whether we refused a hunk for having no context lines.
pub(crate) fn refused_for_no_context(e: &PatchError) -> bool {
    e.code() == "diff_hunk_failed" && e.to_string().contains("the diff has no context lines")
}

#[derive(Clone)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) seed: Option<u64>,
    pub(crate) base: FileTree,
    pub(crate) diff: Vec<u8>,
    pub(crate) expect: Expect,
}

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) applied: usize,
    pub(crate) rejected: usize,
    /// Of `rejected`: `-U0` cases refused for a hunk without context.
    pub(crate) no_context: usize,
    pub(crate) failures: Vec<String>,
}

pub(crate) fn ours(base: &FileTree, diff: &[u8]) -> Result<Result<FileTree, PatchError>, String> {
    catch_unwind(AssertUnwindSafe(|| apply_patch_set(base, diff))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

pub(crate) fn first_difference(a: &FileTree, b: &FileTree) -> String {
    for key in a.keys().chain(b.keys()) {
        match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => {
                return format!(
                    "{key:?}: ours {:?} {:?}, git {:?} {:?}",
                    x.mode,
                    String::from_utf8_lossy(&x.content),
                    y.mode,
                    String::from_utf8_lossy(&y.content)
                )
            }
            (Some(_), None) => return format!("{key:?} only in ours"),
            (None, Some(_)) => return format!("{key:?} only in git's"),
            (None, None) => {}
        }
    }
    "no difference".into()
}

pub(crate) fn save_failure(name: &str, diff: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join("workspace-oracle-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let file: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = dir.join(format!("{file}.diff"));
    std::fs::write(&path, diff).unwrap();
    path
}

/// Runs one case against git; returns a failure description, if any.
pub(crate) fn check_case(case: &Case, tally: &mut Tally) {
    let label = match case.seed {
        Some(seed) => format!("{} (seed {seed})", case.name),
        None => case.name.clone(),
    };
    let mut fail = |msg: String| {
        let saved = save_failure(&case.name, &case.diff);
        tally.failures.push(format!(
            "{label}: {msg}\n    diff saved to {}",
            saved.display()
        ));
    };
    let mine = match ours(&case.base, &case.diff) {
        Ok(r) => r,
        Err(panic) => return fail(format!("apply_patch_set panicked: {panic}")),
    };
    if let Ok(tree) = &mine {
        if let Err(why) = tree_is_safe(tree) {
            return fail(format!("unsafe result: {why}"));
        }
    }
    let theirs = git_apply(&case.base, &case.diff);
    let expect = match (case.expect, &mine) {
        (Expect::SameAsGitOrNoContext, Err(e)) if refused_for_no_context(e) => {
            tally.rejected += 1;
            tally.no_context += 1;
            return;
        }
        (Expect::SameAsGitOrNoContext, _) => Expect::SameAsGit,
        (expect, _) => expect,
    };
    match (expect, &mine, &theirs.result) {
        (Expect::Reject(code), Err(e), _) if e.code() == code => tally.rejected += 1,
        (Expect::Reject(code), other, _) => {
            fail(format!("expected rejection {code}, got {other:?}"))
        }
        (Expect::SameAsGit, Ok(a), Ok(b)) if a == b => tally.applied += 1,
        (Expect::SameAsGit, Ok(a), Ok(b)) => {
            fail(format!("trees differ: {}", first_difference(a, b)))
        }
        (Expect::SameAsGit, Err(_), Err(_)) => tally.rejected += 1,
        (Expect::SameAsGit, Ok(_), Err(git_err)) => {
            fail(format!("we applied, git rejected: {}", git_err.trim()))
        }
        (Expect::SameAsGit, Err(e), Ok(_)) => {
            fail(format!("we rejected ({}: {e}), git applied", e.code()))
        }
        (Expect::SameAsGitOrNoContext, ..) => unreachable!("resolved above"),
    }
    if theirs.wrote_outside && case.expect == Expect::SameAsGit {
        fail("git wrote outside its repository on a case we compare".into());
    }
}

pub(crate) fn run_cases(cases: &[Case]) -> Tally {
    let halves: Vec<&[Case]> = cases.chunks(cases.len().div_ceil(2).max(1)).collect();
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = halves
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut t = Tally::default();
                    for case in chunk {
                        check_case(case, &mut t);
                    }
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = Tally::default();
    for t in tallies {
        total.applied += t.applied;
        total.rejected += t.rejected;
        total.no_context += t.no_context;
        total.failures.extend(t.failures);
    }
    total
}

pub(crate) fn assert_tally(what: &str, cases: usize, tally: Tally) {
    println!(
        "{what}: {cases} cases, {} applied identically, {} rejected by both (or required; \
         {} of them -U0 hunks without context), {} failed",
        tally.applied,
        tally.rejected,
        tally.no_context,
        tally.failures.len()
    );
    assert!(
        tally.failures.is_empty(),
        "{what}: {} of {cases} cases disagree with git apply:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    assert_eq!(tally.applied + tally.rejected, cases);
}

/// Independent safety check of a result tree.
pub(crate) fn tree_is_safe(tree: &FileTree) -> Result<(), String> {
    for (path, entry) in tree {
        if normalize_path(path).as_deref() != Ok(path.as_str()) {
            return Err(format!("key {path:?} is not a normalised safe path"));
        }
        if entry.mode == FileMode::Symlink {
            let target = String::from_utf8_lossy(&entry.content);
            if target.starts_with('/') {
                return Err(format!("{path:?} links to absolute {target:?}"));
            }
            let mut depth = path.matches('/').count() as i64;
            for part in target.split('/') {
                match part {
                    "" | "." => {}
                    ".." => depth -= 1,
                    _ => depth += 1,
                }
                if depth < 0 {
                    return Err(format!("{path:?} links outside the root via {target:?}"));
                }
            }
        }
    }
    Ok(())
}
