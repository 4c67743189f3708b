//! Versions side by side: the list of an app's versions with what each changed, and unified
//! diffs between any two versions that real `git apply` turns one version into the other.
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use agentgate::files::{FileEntry, FileMode, FileTree};
use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{assert_complete_run, spawn_app, DbKind, SseReader, TestApp};

async fn run(app: &TestApp, token: &str, body: Value) -> String {
    let response = app.post_message(token, &body).await;
    assert_eq!(response.status(), 200);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string()
}

async fn json_of(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let response = app.get(path, token).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The status, content type and text of `GET /apps/{id}/diff{query}`.
async fn diff(app: &TestApp, token: &str, id: &str, query: &str) -> (u16, String, String) {
    let response = app.get(&format!("/apps/{id}/diff{query}"), token).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        status,
        content_type,
        response.text().await.unwrap_or_default(),
    )
}

async fn versions_are_listed_newest_first_with_their_changes(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let id = run(&app, &token, json!({"message": "build a todo list app"})).await;
    run(
        &app,
        &token,
        json!({"message": "add a dark mode", "applicationId": id}),
    )
    .await;

    let (status, list) = json_of(&app, &token, &format!("/apps/{id}/versions")).await;
    assert_eq!(status, 200, "{list}");
    let versions = list["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{list}");
    assert_eq!(list["nextCursor"], Value::Null);
    let (v2, v1) = (&versions[0], &versions[1]);
    assert_eq!(
        (v2["version"].clone(), v1["version"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(v2["parentVersion"], 1);
    assert_eq!(v1["parentVersion"], Value::Null);
    assert_eq!(v1["message"], "Add todo list app");
    assert_eq!(v2["message"], "Add dark mode");
    assert!(v2["createdAt"].as_str().is_some_and(|t| t.contains('T')));
    // The first version adds every file; dark mode edits the stylesheet and the script.
    assert_eq!(
        v1["changes"],
        json!({"added": v1["fileCount"], "modified": 0, "deleted": 0})
    );
    assert_eq!(v2["changes"]["added"], 0, "{v2}");
    assert_eq!(v2["changes"]["deleted"], 0, "{v2}");
    assert!(v2["changes"]["modified"].as_u64().unwrap_or(0) >= 2, "{v2}");

    // One at a time: the cursor walks to the older version, then ends.
    let (_, first) = json_of(&app, &token, &format!("/apps/{id}/versions?limit=1")).await;
    assert_eq!(first["versions"][0]["version"], 2);
    assert_eq!(first["versions"][0]["changes"], v2["changes"]);
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let (_, second) = json_of(
        &app,
        &token,
        &format!("/apps/{id}/versions?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(second["versions"][0]["version"], 1);
    assert_eq!(second["versions"][0]["changes"], v1["changes"]);
    assert_eq!(second["nextCursor"], Value::Null);

    // Version 2 against its parent: the dark mode change, and nothing else.
    let (status, content_type, text) = diff(&app, &token, &id, "?to=2").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/x-diff");
    assert!(
        text.contains("diff --git a/styles.css b/styles.css\n"),
        "{text}"
    );
    assert!(text.contains("\n+++ b/app.js\n"), "{text}");
    assert!(!text.contains("new file mode"), "{text}");
    assert_eq!(
        text.matches("diff --git ").count() as u64,
        v2["changes"]["modified"].as_u64().expect("count")
    );

    for query in [
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?cursor=0",
        "?cursor=x",
    ] {
        let (status, body) = json_of(&app, &token, &format!("/apps/{id}/versions{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], "invalid_query", "{query}");
    }
    let (status, body) =
        json_of(&app, &app.token("mallory"), &format!("/apps/{id}/versions")).await;
    assert_eq!((status, body["code"].clone()), (404, json!("not_found")));
    let (status, body) = json_of(&app, &token, "/apps/nope/versions").await;
    assert_eq!((status, body["code"].clone()), (400, json!("invalid_id")));
    app.stop().await;
}
db_test!(versions_are_listed_newest_first_with_their_changes);

fn file(content: &[u8], mode: FileMode) -> FileEntry {
    FileEntry {
        content: content.to_vec(),
        mode,
    }
}

/// Three versions covering what a diff has to say: edits with and without a final newline,
/// CRLF and a lone CR, additions and deletions (also of empty files and in folders), a mode
/// change, a symlink retargeted and a file replaced by a symlink, and unusual names.
fn versions() -> [FileTree; 3] {
    use FileMode::{Executable as X, Regular as R, Symlink as L};
    let long: String = (1..=40).map(|i| format!("line {i}\n")).collect();
    let v1 = FileTree::from([
        ("index.html".into(), file(b"<h1>Todo</h1>\n<ul></ul>\n", R)),
        ("app.js".into(), file(long.as_bytes(), R)),
        ("run.sh".into(), file(b"#!/bin/sh\necho hi\n", R)),
        ("notes/old.md".into(), file(b"old notes\n", R)),
        ("empty.txt".into(), file(b"", R)),
        ("crlf.txt".into(), file(b"one\r\ntwo\r\nthree\r\n", R)),
        ("link".into(), file(b"index.html", L)),
        ("becomes-link".into(), file(b"plain\n", R)),
        ("no newline.txt".into(), file(b"a\nb", R)),
    ]);
    let edited = long
        .replace("line 5\n", "line five\n")
        .replace("line 33\n", "");
    let v2 = FileTree::from([
        (
            "index.html".into(),
            file(b"<h1>Todo</h1>\n<ul></ul>\n<footer>x</footer>\n", R),
        ),
        ("app.js".into(), file(edited.as_bytes(), R)),
        ("run.sh".into(), file(b"#!/bin/sh\necho hi\n", X)),
        ("notes/new.md".into(), file(b"new notes\n", R)),
        ("crlf.txt".into(), file(b"one\r\n2\r\nthree\r\n", R)),
        ("link".into(), file(b"app.js", L)),
        ("becomes-link".into(), file(b"index.html", L)),
        ("no newline.txt".into(), file(b"a\nb\nc", R)),
        (
            "caf\u{e9} \"q\".txt".into(),
            file(b"caf\xc3\xa9\r\nlone\rcr\n", R),
        ),
        ("new-empty".into(), file(b"", X)),
    ]);
    let mut v3 = v2.clone();
    v3.insert(
        "app.js".into(),
        file(format!("{edited}tail\n").as_bytes(), X),
    );
    v3.remove("notes/new.md");
    v3.insert("deep/er/file.txt".into(), file(b"deep\n", R));
    [v1, v2, v3]
}

fn write_tree(dir: &Path, tree: &FileTree) {
    for (path, entry) in tree {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        match entry.mode {
            FileMode::Symlink => std::os::unix::fs::symlink(
                std::str::from_utf8(&entry.content).expect("utf-8 target"),
                &target,
            )
            .expect("symlink"),
            mode => {
                std::fs::write(&target, &entry.content).expect("write");
                let bits = if mode == FileMode::Executable {
                    0o755
                } else {
                    0o644
                };
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(bits))
                    .expect("chmod");
            }
        }
    }
}

/// The files under `dir` as a tree (empty folders are not files).
fn read_tree(dir: &Path) -> FileTree {
    fn walk(root: &Path, dir: &Path, tree: &mut FileTree) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            let name = path
                .strip_prefix(root)
                .expect("inside")
                .to_str()
                .expect("utf-8")
                .to_string();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                let target = target.to_str().expect("utf-8").as_bytes();
                tree.insert(name, file(target, FileMode::Symlink));
            } else if meta.is_dir() {
                walk(root, &path, tree);
            } else {
                let mode = if meta.permissions().mode() & 0o100 != 0 {
                    FileMode::Executable
                } else {
                    FileMode::Regular
                };
                tree.insert(name, file(&std::fs::read(&path).expect("read"), mode));
            }
        }
    }
    let mut tree = FileTree::new();
    walk(dir, dir, &mut tree);
    tree
}

/// Writes `from` to a fresh folder, runs `git apply` with `diff` there, and returns the result.
fn git_apply(from: &FileTree, diff: &str) -> FileTree {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    write_tree(&work, from);
    let patch = dir.path().join("change.diff");
    std::fs::write(&patch, diff).expect("write diff");
    let output = Command::new("git")
        .args(["apply", "--verbose"])
        .arg(&patch)
        .current_dir(&work)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git apply failed: {}\n--- the diff:\n{diff}",
        String::from_utf8_lossy(&output.stderr)
    );
    read_tree(&work)
}

async fn diffs_between_any_two_versions_apply_with_git(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let owned = agentgate::apps::create(&app.state.db, "alice", "diffs", None)
        .await
        .expect("app");
    let id = owned.id.clone();
    let trees = versions();
    for (i, tree) in trees.iter().enumerate() {
        let parent = (i > 0).then_some(i as i32);
        app.state
            .files
            .create(&id, None, None, parent, tree)
            .await
            .expect("version");
    }
    let empty = FileTree::new();
    let tree_of = |n: usize| if n == 0 { &empty } else { &trees[n - 1] };
    let mut applied = 0;
    for (from, to) in [(1, 2), (2, 3), (1, 3), (0, 3), (0, 1), (3, 1), (2, 2)] {
        let (status, content_type, text) =
            diff(&app, &token, &id, &format!("?from={from}&to={to}")).await;
        assert_eq!(status, 200, "{from}..{to}: {text}");
        assert_eq!(content_type, "text/x-diff");
        if from == to {
            assert_eq!(text, "", "the same version has no changes");
            continue;
        }
        assert_eq!(
            &git_apply(tree_of(from), &text),
            tree_of(to),
            "git apply of {from}..{to} does not make version {to}:\n{text}"
        );
        applied += 1;
    }
    assert_eq!(applied, 6);

    // The default `from` is the parent; headers say what git says.
    let (_, _, by_parent) = diff(&app, &token, &id, "?to=2").await;
    let (_, _, explicit) = diff(&app, &token, &id, "?from=1&to=2").await;
    assert_eq!(by_parent, explicit);
    for expected in [
        "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n",
        "diff --git a/notes/old.md b/notes/old.md\ndeleted file mode 100644\n",
        "diff --git a/notes/new.md b/notes/new.md\nnew file mode 100644\n",
        "diff --git a/empty.txt b/empty.txt\ndeleted file mode 100644\nindex e69de29..0000000\n",
        "diff --git a/becomes-link b/becomes-link\ndeleted file mode 100644\n",
        "diff --git a/becomes-link b/becomes-link\nnew file mode 120000\n",
        "diff --git \"a/caf\\303\\251 \\\"q\\\".txt\" \"b/caf\\303\\251 \\\"q\\\".txt\"\n",
        "\n+c\n\\ No newline at end of file\n",
        "@@ -2,7 +2,7 @@\n line 2\n line 3\n line 4\n-line 5\n+line five\n line 6\n",
    ] {
        assert!(
            by_parent.contains(expected),
            "missing {expected:?} in:\n{by_parent}"
        );
    }

    // Binary files are named, not dumped.
    let mut v4 = trees[2].clone();
    v4.insert(
        "logo.png".into(),
        file(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", FileMode::Regular),
    );
    app.state
        .files
        .create(&id, None, None, Some(3), &v4)
        .await
        .expect("v4");
    let mut v5 = v4.clone();
    v5.insert(
        "logo.png".into(),
        file(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDX", FileMode::Regular),
    );
    app.state
        .files
        .create(&id, None, None, Some(4), &v5)
        .await
        .expect("v5");
    let (_, _, added) = diff(&app, &token, &id, "?to=4").await;
    assert!(
        added.contains("Binary files /dev/null and b/logo.png differ\n"),
        "{added}"
    );
    let (_, _, changed) = diff(&app, &token, &id, "?to=5").await;
    assert!(
        changed.ends_with("Binary files a/logo.png and b/logo.png differ\n"),
        "{changed}"
    );
    assert!(!changed.contains("IHD"), "{changed}");

    // Bad numbers are 400 `invalid_query`; missing versions and other users' apps are 404.
    for query in [
        "",
        "?to=x",
        "?to=0",
        "?to=-1",
        "?to=2&from=-1",
        "?to=2&from=one",
        "?from=1",
    ] {
        let response = app.get(&format!("/apps/{id}/diff{query}"), &token).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "invalid_query", "{query}");
    }
    for (query, user) in [
        ("?to=9", "alice"),
        ("?to=2&from=9", "alice"),
        ("?to=2", "mallory"),
    ] {
        let response = app
            .get(&format!("/apps/{id}/diff{query}"), &app.token(user))
            .await;
        assert_eq!(response.status(), 404, "{query} as {user}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "not_found", "{query}");
    }
    app.stop().await;
}
db_test!(diffs_between_any_two_versions_apply_with_git);

async fn a_diff_past_its_limits_stops_at_a_file_and_names_the_rest(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let owned = agentgate::apps::create(&app.state.db, "alice", "big", None)
        .await
        .expect("app");
    // Twelve text files of ~1.4 MiB: two fit in the 4 MiB of diff text, and not all of them
    // in the 16 MiB read to make it.
    let tree: FileTree = (0..12)
        .map(|n| {
            let text: String = (0..65_000)
                .map(|i| format!("line {i:06} of file {n:02}\n"))
                .collect();
            (
                format!("big{n:02}.txt"),
                file(text.as_bytes(), FileMode::Regular),
            )
        })
        .collect();
    app.state
        .files
        .create(&owned.id, None, None, None, &tree)
        .await
        .expect("version");
    let response = app
        .get(&format!("/apps/{}/diff?from=0&to=1", owned.id), &token)
        .await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(header("x-diff-truncated"), "true");
    assert_eq!(header("x-diff-files"), "2");
    let text = response.text().await.expect("text");
    assert!(text.len() <= 4 * 1024 * 1024 + 4096, "{} bytes", text.len());
    assert!(
        text.contains("\n# diff truncated: 10 more changed files not shown"),
        "{}",
        &text[text.len().saturating_sub(2000)..]
    );
    assert!(text.contains("\n# not shown: big02.txt\n"));
    assert!(text.ends_with("# not shown: big11.txt\n"));
    // What is shown is whole: git applies it and makes the first two files.
    let shown: FileTree = tree.into_iter().take(2).collect();
    assert_eq!(git_apply(&FileTree::new(), &text), shown);

    let (status, _, small) = diff(&app, &token, &owned.id, "?to=1&from=1").await;
    assert_eq!((status, small.as_str()), (200, ""));
    app.stop().await;
}
db_test!(a_diff_past_its_limits_stops_at_a_file_and_names_the_rest);
