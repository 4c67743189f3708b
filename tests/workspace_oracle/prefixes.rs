//! `a/` and `b/` in diff headers, with git as the oracle, in repositories
//! whose top-level folders are themselves called `a` and `b`.

use agentgate::files::FileTree;
use agentgate::workspace::apply_patch_set;

use super::edge_cases::files;
use super::git::{git_apply, git_apply_check, git_diff};

const NO_FILENAME: &str =
    "git diff header lacks filename information when removing 1 leading pathname component";

/// A tree with top-level folders `a/` and `b/` and a top-level file.
fn ab_folders() -> FileTree {
    files(&[
        ("a/old.txt", "one\n"),
        ("b/x.txt", "two\n"),
        ("top.txt", "top\n"),
    ])
}

fn ab_folders_changed() -> FileTree {
    files(&[
        ("a/old.txt", "one\n"),
        ("a/new.txt", "new\n"),
        ("b/x.txt", "two\nmore\n"),
        ("top.txt", "top\nmore\n"),
    ])
}

#[test]
fn a_no_prefix_diff_is_refused_as_git_refuses_it() {
    let (old, new) = (ab_folders(), ab_folders_changed());
    let diff = git_diff(&old, &new, &["--no-prefix"]);
    let shown = String::from_utf8_lossy(&diff);
    assert!(
        shown.contains("diff --git a/new.txt a/new.txt\n"),
        "{shown}"
    );
    assert!(shown.contains("diff --git top.txt top.txt\n"), "{shown}");

    let git_err = git_apply_check(&old, &diff).unwrap_err();
    assert!(git_err.contains(NO_FILENAME), "{git_err}");
    let err = apply_patch_set(&old, &diff).unwrap_err();
    assert_eq!(err.code(), "diff_parse_error");
    assert!(err.to_string().starts_with("diff line 1: "), "{err}");
    assert!(err.to_string().contains(NO_FILENAME), "{err}");
}

#[test]
fn a_no_prefix_diff_of_folders_a_and_b_is_refused_where_git_misplaces_or_misses_the_files() {
    let old = files(&[("a/old.txt", "one\n"), ("b/x.txt", "two\n")]);

    // Creating a/new.txt: git strips `a/` from both names and creates new.txt.
    let created = files(&[
        ("a/old.txt", "one\n"),
        ("a/new.txt", "new\n"),
        ("b/x.txt", "two\n"),
    ]);
    let diff = git_diff(&old, &created, &["--no-prefix"]);
    assert!(String::from_utf8_lossy(&diff).starts_with("diff --git a/new.txt a/new.txt\n"));
    git_apply_check(&old, &diff).expect("git apply --check accepts it");
    let theirs = git_apply(&old, &diff).result.unwrap();
    assert!(theirs.contains_key("new.txt") && !theirs.contains_key("a/new.txt"));
    let err = apply_patch_set(&old, &diff).unwrap_err();
    assert_eq!(err.code(), "diff_parse_error");
    assert!(err.to_string().contains(NO_FILENAME), "{err}");

    // Changing b/x.txt: git looks for x.txt and refuses.
    let changed = files(&[("a/old.txt", "one\n"), ("b/x.txt", "two\nmore\n")]);
    let diff = git_diff(&old, &changed, &["--no-prefix"]);
    assert!(String::from_utf8_lossy(&diff).starts_with("diff --git b/x.txt b/x.txt\n"));
    let git_err = git_apply_check(&old, &diff).unwrap_err();
    assert!(
        git_err.contains("x.txt: No such file or directory"),
        "{git_err}"
    );
    let err = apply_patch_set(&old, &diff).unwrap_err();
    assert!(err.to_string().contains(NO_FILENAME), "{err}");
}

#[test]
fn a_prefixed_diff_of_folders_a_and_b_applies_like_git() {
    let (old, mut new) = (ab_folders(), ab_folders_changed());
    let diff = git_diff(&old, &new, &[]);
    let shown = String::from_utf8_lossy(&diff);
    assert!(
        shown.contains("diff --git a/a/new.txt b/a/new.txt\n"),
        "{shown}"
    );
    assert!(shown.contains("--- a/b/x.txt\n+++ b/b/x.txt\n"), "{shown}");
    git_apply_check(&old, &diff).expect("git apply --check accepts it");
    assert!(git_apply(&old, &diff).result.unwrap() == new);
    assert!(apply_patch_set(&old, &diff).unwrap() == new);

    // A rename from a/ to b/ and a deletion in b/, whose names all start
    // with the other side's prefix.
    let before = new.clone();
    let moved = new.remove("a/new.txt").unwrap();
    new.insert("b/a/new.txt".into(), moved);
    new.remove("b/x.txt");
    let diff = git_diff(&before, &new, &["-M"]);
    let shown = String::from_utf8_lossy(&diff);
    assert!(
        shown.contains("rename from a/new.txt\nrename to b/a/new.txt\n"),
        "{shown}"
    );
    assert!(shown.contains("--- a/b/x.txt\n+++ /dev/null\n"), "{shown}");
    assert!(git_apply(&before, &diff).result.unwrap() == new);
    assert!(apply_patch_set(&before, &diff).unwrap() == new);
}

#[test]
fn minus_lines_strip_only_a_and_plus_lines_only_b() {
    let old = files(&[("x.txt", "two\n"), ("b/x.txt", "folder\n")]);

    // A traditional diff names its file on the +++ line, where `b/` goes.
    let diff = "--- b/x.txt\n+++ b/x.txt\n@@ -1 +1 @@\n-two\n+changed\n";
    let ours = apply_patch_set(&old, diff.as_bytes()).unwrap();
    assert!(ours == git_apply(&old, diff.as_bytes()).result.unwrap());
    assert_eq!(ours["x.txt"].content, b"changed\n");

    // `a/` on the new side is a folder: git's -p1 strips it anyway.
    let created = "--- /dev/null\n+++ a/new.txt\n@@ -0,0 +1 @@\n+new\n";
    let ours = apply_patch_set(&old, created.as_bytes()).unwrap();
    assert!(ours.contains_key("a/new.txt"), "+++ keeps an a/ prefix");
    let theirs = git_apply(&old, created.as_bytes()).result.unwrap();
    assert!(
        theirs.contains_key("new.txt"),
        "git strips any first component"
    );

    // `b/` on the old side is a folder too, so --- names another file than
    // the header: refused, where git strips both to x.txt.
    let swapped = "diff --git a/x.txt b/x.txt\n--- b/x.txt\n+++ b/x.txt\n@@ -1 +1 @@\n-two\n+2\n";
    git_apply_check(&old, swapped.as_bytes()).expect("git strips b/ from --- as well");
    let err = apply_patch_set(&old, swapped.as_bytes()).unwrap_err();
    assert_eq!(err.code(), "diff_parse_error");
    assert!(
        err.to_string().contains("inconsistent old file name"),
        "{err}"
    );
}
