//! Hunks without context lines (`git diff -U0`), with git as the oracle:
//! where such a hunk must cover the whole file we apply it as git does;
//! anywhere else we refuse it, where git puts it at the end of the file.

use agentgate::files::FileTree;
use agentgate::workspace::apply_patch_set;

use super::edge_cases::files;
use super::git::{git_apply, git_apply_check, git_diff};

fn numbered(lines: usize) -> String {
    (1..=lines).map(|n| format!("line {n}\n")).collect()
}

/// `numbered(lines)` with `inserted` after line `after`.
fn numbered_with(lines: usize, after: usize, inserted: &str) -> String {
    let all = numbered(lines);
    let split: usize = all.lines().take(after).map(|l| l.len() + 1).sum();
    format!("{}{inserted}{}", &all[..split], &all[split..])
}

fn text(tree: &FileTree, path: &str) -> String {
    String::from_utf8_lossy(&tree[path].content).into_owned()
}

#[test]
fn a_zero_context_insertion_inside_a_file_is_refused_where_git_appends_it_at_the_end() {
    let guard = "    if args.is_empty() {\n        return;\n    }\n    // checked\n";
    let old = files(&[("src/main.rs", &numbered(200))]);
    let new = files(&[("src/main.rs", &numbered_with(200, 133, guard))]);
    let diff = git_diff(&old, &new, &["-U0"]);
    let shown = String::from_utf8_lossy(&diff);
    assert!(shown.contains("@@ -133,0 +134,4 @@"), "{shown}");

    git_apply_check(&old, &diff).expect("git apply --check accepts the -U0 diff");
    let theirs = git_apply(&old, &diff).result.unwrap();
    assert_eq!(
        text(&theirs, "src/main.rs"),
        numbered_with(200, 200, guard),
        "git puts the lines after line 200, not after line 133"
    );

    let err = apply_patch_set(&old, &diff).unwrap_err();
    assert_eq!(err.code(), "diff_hunk_failed");
    assert_eq!(
        err.to_string(),
        "src/main.rs: hunk 1 (@@ -133,0 +134,4 @@) does not apply: the diff has no context \
         lines around this hunk (made with -U0?), so where it goes is ambiguous; send the diff \
         with context lines"
    );
}

#[test]
fn a_zero_context_change_to_a_line_repeated_at_the_end_is_refused_where_git_changes_the_last_one() {
    let old = files(&[("app.js", "function a() {\n  run();\n}\nfunction b() {\n}\n")]);
    let new = files(&[(
        "app.js",
        "function a() {\n  run();\n};\nfunction b() {\n}\n",
    )]);
    let diff = git_diff(&old, &new, &["-U0"]);
    assert!(String::from_utf8_lossy(&diff).contains("@@ -3 +3 @@"));

    git_apply_check(&old, &diff).expect("git apply --check accepts the -U0 diff");
    let theirs = git_apply(&old, &diff).result.unwrap();
    assert_eq!(
        text(&theirs, "app.js"),
        "function a() {\n  run();\n}\nfunction b() {\n};\n",
        "git changes the last brace"
    );
    let err = apply_patch_set(&old, &diff).unwrap_err();
    assert_eq!(err.code(), "diff_hunk_failed");
    assert!(err.to_string().contains("no context lines"), "{err}");
}

#[test]
fn zero_context_hunks_that_must_cover_the_whole_file_apply_like_git() {
    let old = files(&[
        ("replaced.txt", "a\nb\n"),
        ("empty.txt", ""),
        ("emptied.txt", "x\ny\n"),
        ("kept.txt", &numbered(50)),
    ]);
    let new = files(&[
        ("replaced.txt", "c\nd\ne\n"),
        ("empty.txt", "hello\n"),
        ("emptied.txt", ""),
        ("kept.txt", &numbered(50)),
        ("src/new.rs", "fn main() {}\n"),
    ]);
    let diff = git_diff(&old, &new, &["-U0"]);
    let shown = String::from_utf8_lossy(&diff);
    for hunk in ["@@ -1,2 +1,3 @@", "@@ -0,0 +1 @@", "@@ -1,2 +0,0 @@"] {
        assert!(shown.contains(hunk), "{hunk} missing from {shown}");
    }

    git_apply_check(&old, &diff).expect("git apply --check accepts it");
    assert!(git_apply(&old, &diff).result.unwrap() == new);
    assert!(apply_patch_set(&old, &diff).unwrap() == new);
}

#[test]
fn a_zero_context_hunk_that_does_not_cover_its_file_is_refused_and_says_why() {
    let old = files(&[("list.txt", &numbered(10))]);
    let new = files(&[("list.txt", &numbered(10).replacen("line 1\n", "first\n", 1))]);
    let diff = git_diff(&old, &new, &["-U0"]);
    assert!(String::from_utf8_lossy(&diff).contains("@@ -1 +1 @@"));

    let git_err = git_apply_check(&old, &diff).unwrap_err();
    assert!(git_err.contains("patch does not apply"), "{git_err}");
    let err = apply_patch_set(&old, &diff).unwrap_err();
    assert_eq!(err.code(), "diff_hunk_failed");
    assert!(
        err.to_string().contains(
            "the diff has no context lines around this hunk (made with -U0?), so it must cover \
             the whole file: "
        ),
        "{err}"
    );
}

#[test]
fn one_ambiguous_file_refuses_the_whole_set() {
    let old = files(&[("a.txt", "a\n"), ("b.txt", &numbered(20))]);
    let new = files(&[
        ("a.txt", "A\n"),
        ("b.txt", &numbered_with(20, 10, "ten and a half\n")),
    ]);
    let diff = git_diff(&old, &new, &["-U0"]);
    let err = apply_patch_set(&old, &diff).unwrap_err();
    assert_eq!(err.code(), "diff_hunk_failed");
    assert!(
        err.to_string()
            .starts_with("b.txt: hunk 1 (@@ -10,0 +11 @@)"),
        "{err}"
    );
    assert!(
        git_apply(&old, &diff).result.unwrap() != new,
        "git misplaces it"
    );
}
