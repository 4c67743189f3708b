//! Oracle tests for `workspace::apply_patch_set`: on every case the tree it
//! produces must equal what the real `git apply --binary` produces from the
//! same base (bytes and modes), and where git rejects a patch we must reject
//! it too. Cases come from real `git diff` output on seeded random edits,
//! from the recorded agent fixtures, and from hand-written edge cases; a
//! fuzz test mutates them and feeds random bytes, and must never panic.
//!
//! Set `WORKSPACE_ORACLE_SEED` to reproduce a run with another seed; each
//! failure names its case and per-case seed, and its diff is saved under
//! the system temp dir in `workspace-oracle-failures/`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use agentgate::workspace::{
    apply_patch_set, classify_diff, normalize_path, DiffKind, FileEntry, FileMode, FileTree,
    PatchError,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const DEFAULT_SEED: u64 = 0x5eed_a991;
const GENERATED_CASES: usize = 260;

/// `WORKSPACE_ORACLE_THOROUGH=1` multiplies the corpus and compares every
/// accepted fuzz input with git; for hunting bugs, not for CI.
fn thorough() -> bool {
    std::env::var_os("WORKSPACE_ORACLE_THOROUGH").is_some()
}

fn generated_count() -> usize {
    if thorough() {
        GENERATED_CASES * 4
    } else {
        GENERATED_CASES
    }
}

fn base_seed() -> u64 {
    std::env::var("WORKSPACE_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

// ---------------------------------------------------------------- git ---

fn git(dir: &Path) -> Command {
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

fn git_ok(dir: &Path, args: &[&str]) -> Vec<u8> {
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

fn write_tree(root: &Path, tree: &FileTree) {
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

fn read_tree(root: &Path) -> FileTree {
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

fn clear_worktree(repo: &Path) {
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
struct GitApply {
    result: Result<FileTree, String>,
    wrote_outside: bool,
}

fn git_apply(base: &FileTree, diff: &[u8]) -> GitApply {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sandbox");
    let repo = sandbox.join("work").join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git_ok(&repo, &["init", "-q"]);
    write_tree(&repo, base);
    let patch = tmp.path().join("patch.diff");
    std::fs::write(&patch, diff).unwrap();
    let out = git(&repo)
        .args(["apply", "--binary"])
        .arg(&patch)
        .output()
        .unwrap();
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let wrote_outside = names(tmp.path()) != ["patch.diff", "sandbox"]
        || names(&sandbox) != ["work"]
        || names(&sandbox.join("work")) != ["repo"];
    let result = if out.status.success() {
        Ok(read_tree(&repo))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    GitApply {
        result,
        wrote_outside,
    }
}

/// `git diff --binary <flags>` from `old` to `new`, through two tree objects.
fn git_diff(old: &FileTree, new: &FileTree, flags: &[&str]) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git_ok(&repo, &["init", "-q"]);
    write_tree(&repo, old);
    git_ok(&repo, &["add", "-A"]);
    let t1 = String::from_utf8(git_ok(&repo, &["write-tree"])).unwrap();
    clear_worktree(&repo);
    write_tree(&repo, new);
    git_ok(&repo, &["add", "-A"]);
    let t2 = String::from_utf8(git_ok(&repo, &["write-tree"])).unwrap();
    let mut args = vec!["diff", "--binary"];
    args.extend_from_slice(flags);
    args.push(t1.trim());
    args.push(t2.trim());
    git_ok(&repo, &args)
}

// ------------------------------------------------------------ oracle ---

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Same tree as git, or rejected by both.
    SameAsGit,
    /// We must reject with this code, whatever git does.
    Reject(&'static str),
}

#[derive(Clone)]
struct Case {
    name: String,
    seed: Option<u64>,
    base: FileTree,
    diff: Vec<u8>,
    expect: Expect,
}

#[derive(Default)]
struct Tally {
    applied: usize,
    rejected: usize,
    failures: Vec<String>,
}

fn ours(base: &FileTree, diff: &[u8]) -> Result<Result<FileTree, PatchError>, String> {
    catch_unwind(AssertUnwindSafe(|| apply_patch_set(base, diff))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

fn first_difference(a: &FileTree, b: &FileTree) -> String {
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

fn save_failure(name: &str, diff: &[u8]) -> PathBuf {
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
fn check_case(case: &Case, tally: &mut Tally) {
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
    match (case.expect, &mine, &theirs.result) {
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
    }
    if theirs.wrote_outside && case.expect == Expect::SameAsGit {
        fail("git wrote outside its repository on a case we compare".into());
    }
}

fn run_cases(cases: &[Case]) -> Tally {
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
        total.failures.extend(t.failures);
    }
    total
}

fn assert_tally(what: &str, cases: usize, tally: Tally) {
    println!(
        "{what}: {cases} cases, {} applied identically, {} rejected by both (or required), {} failed",
        tally.applied,
        tally.rejected,
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
fn tree_is_safe(tree: &FileTree) -> Result<(), String> {
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

// --------------------------------------------------- random corpus (a) ---

const DIRS: &[&str] = &[
    "",
    "",
    "src/",
    "src/util/",
    "frontend/",
    "dir with space/",
    "unicodé/",
    "lib/a/",
    "a/",
    "b/",
    "qu\"ote dir/",
    "deep/er/path/",
];
const STEMS: &[&str] = &[
    "main",
    "app",
    "README",
    "notes",
    "file name",
    "tab\tname",
    "qu\"ote",
    "café",
    "файл",
    "index",
    "b",
    "a",
    "x y z",
    "run",
];
const EXTS: &[&str] = &[
    ".rs", ".js", ".md", ".txt", "", ".py", ".bin", ".png", ".sh",
];
const WORDS: &[&str] = &[
    "let", "x", "=", "fn", "return", "{", "}", "foo", "bar", "baz", "// note", "if", "0", "1",
    "\"s\"", "é", "日本",
];

fn is_binary_path(path: &str) -> bool {
    path.ends_with(".bin") || path.ends_with(".png")
}

fn random_path(rng: &mut StdRng) -> String {
    format!(
        "{}{}{}",
        DIRS.choose(rng).unwrap(),
        STEMS.choose(rng).unwrap(),
        EXTS.choose(rng).unwrap()
    )
}

fn can_add(tree: &FileTree, path: &str) -> bool {
    if tree.contains_key(path) {
        return false;
    }
    if path
        .match_indices('/')
        .any(|(i, _)| tree.contains_key(&path[..i]))
    {
        return false;
    }
    let dir = format!("{path}/");
    !tree
        .range(dir.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&dir))
}

fn random_line(rng: &mut StdRng) -> String {
    let indent = ["", "", "    ", "\t"].choose(rng).unwrap().to_string();
    let words: Vec<&str> = (0..rng.gen_range(0..4))
        .map(|_| *WORDS.choose(rng).unwrap())
        .collect();
    indent + &words.join(" ")
}

fn random_text(rng: &mut StdRng) -> Vec<u8> {
    let crlf = rng.gen_bool(0.15);
    let mut out = String::new();
    for _ in 0..rng.gen_range(0..40) {
        out.push_str(&random_line(rng));
        out.push_str(if crlf && rng.gen_bool(0.6) {
            "\r\n"
        } else {
            "\n"
        });
    }
    if !out.is_empty() && rng.gen_bool(0.2) {
        out.pop();
    }
    out.into_bytes()
}

fn random_binary(rng: &mut StdRng) -> Vec<u8> {
    let len = if rng.gen_bool(0.2) {
        rng.gen_range(4000..20000)
    } else {
        rng.gen_range(1..1500)
    };
    let mut data: Vec<u8> = (0..len).map(|_| rng.gen_range(0..8u8) * 31).collect();
    data[0] = 0;
    data
}

fn split_lines(content: &[u8]) -> Vec<Vec<u8>> {
    content
        .split_inclusive(|&c| c == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

fn mutate_text(rng: &mut StdRng, content: &[u8]) -> Vec<u8> {
    let mut lines = split_lines(content);
    for _ in 0..rng.gen_range(1..4) {
        let at = rng.gen_range(0..=lines.len());
        match rng.gen_range(0..5) {
            0 => {
                for _ in 0..rng.gen_range(1..4) {
                    lines.insert(at, format!("{}\n", random_line(rng)).into_bytes());
                }
            }
            1 if !lines.is_empty() => {
                let at = at.min(lines.len() - 1);
                let n = rng.gen_range(1..4).min(lines.len() - at);
                lines.drain(at..at + n);
            }
            2 if !lines.is_empty() => {
                let at = at.min(lines.len() - 1);
                lines[at] = format!("{}\n", random_line(rng)).into_bytes();
            }
            3 => {
                if let Some(last) = lines.last_mut() {
                    if last.ends_with(b"\n") {
                        last.pop();
                    } else {
                        last.push(b'\n');
                    }
                }
            }
            _ if !lines.is_empty() => {
                let at = at.min(lines.len() - 1);
                let line = &mut lines[at];
                if line.ends_with(b"\r\n") {
                    line.remove(line.len() - 2);
                } else if line.ends_with(b"\n") {
                    line.insert(line.len() - 1, b'\r');
                }
            }
            _ => {}
        }
    }
    // Only the last line may lack its newline.
    let n = lines.len();
    for line in lines.iter_mut().take(n.saturating_sub(1)) {
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
    }
    lines.concat()
}

fn mutate_binary(rng: &mut StdRng, content: &[u8]) -> Vec<u8> {
    if content.is_empty() {
        return random_binary(rng);
    }
    let mut data = content.to_vec();
    match rng.gen_range(0..4) {
        0 => {
            for _ in 0..rng.gen_range(1..10) {
                let at = rng.gen_range(0..data.len());
                data[at] = rng.gen();
            }
        }
        1 => data.extend((0..rng.gen_range(1..300)).map(|_| rng.gen::<u8>())),
        2 => data.truncate(rng.gen_range(1..=data.len())),
        _ => data = random_binary(rng),
    }
    data[0] = 0;
    data
}

fn relative_target(link: &str, target: &str) -> String {
    let ups = link.matches('/').count();
    format!("{}{target}", "../".repeat(ups))
}

fn random_tree(rng: &mut StdRng) -> FileTree {
    let mut tree = FileTree::new();
    for _ in 0..rng.gen_range(1..9) {
        let path = random_path(rng);
        if !can_add(&tree, &path) {
            continue;
        }
        let entry = if is_binary_path(&path) {
            FileEntry {
                content: random_binary(rng),
                mode: FileMode::Regular,
            }
        } else {
            let mode = if rng.gen_bool(0.15) {
                FileMode::Executable
            } else {
                FileMode::Regular
            };
            FileEntry {
                content: random_text(rng),
                mode,
            }
        };
        tree.insert(path, entry);
    }
    if rng.gen_bool(0.15) {
        add_symlink(rng, &mut tree);
    }
    tree
}

fn add_symlink(rng: &mut StdRng, tree: &mut FileTree) {
    let link = random_path(rng);
    if !can_add(tree, &link) {
        return;
    }
    let target = match tree.keys().collect::<Vec<_>>().choose(rng) {
        Some(t) if rng.gen_bool(0.8) => relative_target(&link, t),
        _ => "missing/target.txt".to_string(),
    };
    tree.insert(
        link,
        FileEntry {
            content: target.into_bytes(),
            mode: FileMode::Symlink,
        },
    );
}

fn pick_key(
    rng: &mut StdRng,
    tree: &FileTree,
    want: impl Fn(&FileEntry) -> bool,
) -> Option<String> {
    let keys: Vec<&String> = tree
        .iter()
        .filter(|(_, e)| want(e))
        .map(|(k, _)| k)
        .collect();
    keys.choose(rng).map(|k| k.to_string())
}

fn mutate_tree(rng: &mut StdRng, base: &FileTree) -> FileTree {
    let mut tree = base.clone();
    let regular = |e: &FileEntry| e.mode != FileMode::Symlink;
    for _ in 0..rng.gen_range(1..6) {
        match rng.gen_range(0..11) {
            0..=2 => {
                if let Some(k) = pick_key(rng, &tree, regular) {
                    let e = tree.get_mut(&k).unwrap();
                    e.content = if is_binary_path(&k) {
                        mutate_binary(rng, &e.content)
                    } else {
                        mutate_text(rng, &e.content)
                    };
                }
            }
            3 => {
                if let Some(k) = pick_key(rng, &tree, |_| true) {
                    tree.remove(&k);
                }
            }
            4 => {
                let path = random_path(rng);
                if can_add(&tree, &path) {
                    let content = if is_binary_path(&path) {
                        random_binary(rng)
                    } else {
                        random_text(rng)
                    };
                    tree.insert(
                        path,
                        FileEntry {
                            content,
                            mode: FileMode::Regular,
                        },
                    );
                }
            }
            5 | 6 => {
                // Rename, sometimes with an edit, sometimes as a copy.
                let Some(k) = pick_key(rng, &tree, regular) else {
                    continue;
                };
                let path = random_path(rng);
                let mut entry = tree[&k].clone();
                if rng.gen_bool(0.7) {
                    tree.remove(&k);
                }
                if !can_add(&tree, &path) {
                    tree.insert(k, entry);
                    continue;
                }
                if rng.gen_bool(0.4) && !is_binary_path(&k) {
                    entry.content = mutate_text(rng, &entry.content);
                }
                tree.insert(path, entry);
            }
            7 => {
                if let Some(k) = pick_key(rng, &tree, regular) {
                    let e = tree.get_mut(&k).unwrap();
                    e.mode = match e.mode {
                        FileMode::Regular => FileMode::Executable,
                        _ => FileMode::Regular,
                    };
                }
            }
            8 => add_symlink(rng, &mut tree),
            9 => {
                // Type change: a file becomes a symlink or the reverse.
                if let Some(k) = pick_key(rng, &tree, |_| true) {
                    let e = tree.get_mut(&k).unwrap();
                    if e.mode == FileMode::Symlink {
                        *e = FileEntry {
                            content: b"was a link\n".to_vec(),
                            mode: FileMode::Regular,
                        };
                    } else {
                        *e = FileEntry {
                            content: b"README.md".to_vec(),
                            mode: FileMode::Symlink,
                        };
                    }
                }
            }
            _ => {
                if let Some(k) = pick_key(rng, &tree, regular) {
                    tree.get_mut(&k).unwrap().content.clear();
                }
            }
        }
    }
    tree
}

/// Shifts a text file the diff touches, so hunks land at an offset or miss.
fn perturb(rng: &mut StdRng, base: &FileTree, diff: &[u8]) -> FileTree {
    let mut tree = base.clone();
    let touched = |k: &str| {
        let needle = format!("a/{k}");
        diff.windows(needle.len()).any(|w| w == needle.as_bytes())
    };
    let candidates: Vec<String> = tree
        .iter()
        .filter(|(k, e)| e.mode != FileMode::Symlink && !is_binary_path(k) && touched(k))
        .map(|(k, _)| k.clone())
        .collect();
    let Some(k) = candidates.choose(rng) else {
        return tree;
    };
    let e = tree.get_mut(k).unwrap();
    let mut lines = split_lines(&e.content);
    match rng.gen_range(0..4) {
        0 => {
            for _ in 0..rng.gen_range(1..6) {
                lines.insert(0, format!("{}\n", random_line(rng)).into_bytes());
            }
        }
        1 if lines.len() > 1 => {
            lines.remove(0);
        }
        2 if !lines.is_empty() => {
            let at = rng.gen_range(0..lines.len());
            let copy = lines[at..(at + 3).min(lines.len())].to_vec();
            let end = lines.len() - usize::from(!lines[lines.len() - 1].ends_with(b"\n"));
            let end = end.max(at);
            lines.splice(end..end, copy.into_iter().filter(|l| l.ends_with(b"\n")));
        }
        _ => {
            let at = rng.gen_range(0..=lines.len());
            let at = at.min(lines.len().saturating_sub(1));
            lines.insert(at, b"inserted line\n".to_vec());
        }
    }
    e.content = lines.concat();
    tree
}

const DIFF_FLAGS: &[&[&str]] = &[
    &[],
    &["-M"],
    &["-M"],
    &["-M", "-C", "-C"],
    &["-U0"],
    &["-U1"],
    &["-U5"],
    &["--no-renames"],
    &["-B", "-M"],
];

fn generated_corpus() -> &'static [Case] {
    static CORPUS: OnceLock<Vec<Case>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let seed = base_seed();
        let make = |i: usize| {
            let case_seed = seed.wrapping_add(i as u64);
            let mut rng = StdRng::seed_from_u64(case_seed);
            let old = random_tree(&mut rng);
            let new = mutate_tree(&mut rng, &old);
            let flags = DIFF_FLAGS.choose(&mut rng).unwrap();
            let diff = git_diff(&old, &new, flags);
            let base = if rng.gen_bool(0.3) {
                perturb(&mut rng, &old, &diff)
            } else {
                old
            };
            Case {
                name: format!("generated-{i} {flags:?}"),
                seed: Some(case_seed),
                base,
                diff,
                expect: Expect::SameAsGit,
            }
        };
        std::thread::scope(|s| {
            let count = generated_count();
            let half = count / 2;
            let a = s.spawn(move || (0..half).map(make).collect::<Vec<_>>());
            let b = s.spawn(move || (half..count).map(make).collect::<Vec<_>>());
            let mut all = a.join().unwrap();
            all.extend(b.join().unwrap());
            all
        })
    })
}

#[test]
fn oracle_generated_git_diffs() {
    let started = Instant::now();
    let cases = generated_corpus();
    let mut kinds = BTreeMap::new();
    for c in cases {
        for (marker, kind) in [
            ("rename from", "rename"),
            ("copy from", "copy"),
            ("GIT binary patch", "binary"),
            ("deleted file mode", "delete"),
            ("new file mode", "create"),
            ("new mode", "chmod"),
            ("\\ No newline", "no-eol"),
            ("\r\n", "crlf"),
            ("\"", "quoted"),
            ("delta ", "delta"),
            ("120000", "symlink"),
        ] {
            if c.diff.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                *kinds.entry(kind).or_insert(0) += 1;
            }
        }
    }
    println!("generated corpus coverage: {kinds:?}");
    let tally = run_cases(cases);
    assert_tally("generated git diffs", cases.len(), tally);
    println!("generated oracle took {:?}", started.elapsed());
    for kind in [
        "rename", "copy", "binary", "delete", "create", "chmod", "no-eol", "crlf", "quoted",
        "delta", "symlink",
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "corpus never exercised {kind}"
        );
    }
}

// ------------------------------------------------- agent fixtures (b) ---

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/agent")
}

/// Decodes the JSON string starting at `s[0] == '"'`.
fn json_string(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex = |c: &mut std::str::Chars| -> Option<u32> {
                        u32::from_str_radix(&c.by_ref().take(4).collect::<String>(), 16).ok()
                    };
                    let mut code = hex(&mut chars)?;
                    if (0xd800..0xdc00).contains(&code) {
                        let rest = chars.as_str();
                        let low =
                            u32::from_str_radix(rest.strip_prefix("\\u")?.get(..4)?, 16).ok()?;
                        chars = rest[6..].chars();
                        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                    }
                    out.push(char::from_u32(code)?);
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

fn fixture_diffs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("agent fixtures live in ../shared/fixtures/agent")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some(OsStr::new("sse")))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let Some(json) = line.strip_prefix("data:") else {
                continue;
            };
            let key = "\"unifiedDiff\":";
            let Some(at) = json.find(key) else {
                continue;
            };
            let value = json[at + key.len()..].trim_start();
            if let Some(diff) = json_string(value) {
                let name = format!("{}:{}", file.file_name().unwrap().to_string_lossy(), n + 1);
                out.push((name, diff));
            }
        }
    }
    out
}

fn fixture_cases() -> Vec<Case> {
    fixture_diffs()
        .into_iter()
        .map(|(name, diff)| Case {
            name: format!("fixture {name}"),
            seed: None,
            base: FileTree::new(),
            diff: diff.into_bytes(),
            expect: Expect::SameAsGit,
        })
        .collect()
}

#[test]
fn oracle_agent_fixtures() {
    let cases = fixture_cases();
    assert!(
        !cases.is_empty(),
        "no unifiedDiff found in the agent fixtures"
    );
    for c in &cases {
        let text = String::from_utf8_lossy(&c.diff);
        assert_eq!(classify_diff(&text), DiffKind::Patch, "{}", c.name);
    }
    let tally = run_cases(&cases);
    let applied = tally.applied;
    assert_tally("agent fixtures", cases.len(), tally);
    assert_eq!(
        applied,
        cases.len(),
        "every fixture diff should apply to an empty tree"
    );
    let tree = apply_patch_set(&FileTree::new(), &cases[0].diff).unwrap();
    assert!(tree.contains_key("frontend/app.js") && tree.contains_key("server/app.py"));
}

// ------------------------------------------------ hand-written (c) ---

fn files(entries: &[(&str, &str)]) -> FileTree {
    entries
        .iter()
        .map(|(p, c)| {
            (
                p.to_string(),
                FileEntry {
                    content: c.as_bytes().to_vec(),
                    mode: FileMode::Regular,
                },
            )
        })
        .collect()
}

fn with(mut tree: FileTree, path: &str, content: &str, mode: FileMode) -> FileTree {
    tree.insert(
        path.to_string(),
        FileEntry {
            content: content.as_bytes().to_vec(),
            mode,
        },
    );
    tree
}

fn edge(name: &str, base: FileTree, diff: &str, expect: Expect) -> Case {
    Case {
        name: format!("edge {name}"),
        seed: None,
        base,
        diff: diff.as_bytes().to_vec(),
        expect,
    }
}

const SAME: Expect = Expect::SameAsGit;
const UNSAFE: Expect = Expect::Reject("unsafe_path");

fn edge_cases() -> Vec<Case> {
    let abc = files(&[("f.txt", "a\nb\nc\nd\ne\n")]);
    let long = files(&[("f.txt", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n")]);
    let repeated = files(&[("f.txt", "x\ny\nz\nx\ny\nz\nx\ny\nz\n")]);
    let modify = |name: &str| {
        format!("diff --git a/{name} b/{name}\n--- a/{name}\n+++ b/{name}\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n")
    };
    vec![
        edge("modify", abc.clone(), &modify("f.txt"), SAME),
        edge("wrong context", files(&[("f.txt", "a\nb\nX\nd\ne\n")]), &modify("f.txt"), SAME),
        edge(
            "offset forward",
            long.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -2,3 +2,3 @@\n 7\n-8\n+eight\n 9\n",
            SAME,
        ),
        edge(
            "offset backward",
            long.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -9,3 +9,3 @@\n 3\n-4\n+four\n 5\n",
            SAME,
        ),
        edge(
            "ambiguous repeated context picks nearest",
            repeated.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -5,2 +5,2 @@\n y\n-z\n+Z\n x\n",
            SAME,
        ),
        edge(
            "hunk stated past the end",
            long.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -90,3 +90,3 @@\n 5\n-6\n+six\n 7\n",
            SAME,
        ),
        edge(
            "second hunk fails so nothing applies",
            long.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -2,3 +2,3 @@\n 2\n-3\n+three\n 4\n@@ -8,3 +8,3 @@\n 8\n-NOPE\n+nine\n 10\n",
            SAME,
        ),
        edge(
            "second file fails so nothing applies",
            with(abc.clone(), "g.txt", "1\n2\n", FileMode::Regular),
            &(modify("f.txt") + "diff --git a/g.txt b/g.txt\n--- a/g.txt\n+++ b/g.txt\n@@ -1,2 +1,2 @@\n-9\n+1\n 2\n"),
            SAME,
        ),
        edge(
            "delete missing file",
            abc.clone(),
            "diff --git a/nope.txt b/nope.txt\ndeleted file mode 100644\nindex 1234567..0000000\n--- a/nope.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
            SAME,
        ),
        edge("modify missing file", FileTree::new(), &modify("f.txt"), SAME),
        edge(
            "create existing file",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nnew file mode 100644\n--- /dev/null\n+++ b/f.txt\n@@ -0,0 +1 @@\n+new\n",
            SAME,
        ),
        edge(
            "delete with mismatching content",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
            SAME,
        ),
        edge(
            "delete",
            files(&[("f.txt", "a\nb\n"), ("g", "x\n")]),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
            SAME,
        ),
        edge(
            "rename to existing file",
            with(abc.clone(), "g.txt", "g\n", FileMode::Regular),
            "diff --git a/f.txt b/g.txt\nsimilarity index 100%\nrename from f.txt\nrename to g.txt\n",
            SAME,
        ),
        edge(
            "rename and modify",
            abc.clone(),
            "diff --git a/f.txt b/dir/g.txt\nsimilarity index 80%\nrename from f.txt\nrename to dir/g.txt\n--- a/f.txt\n+++ b/dir/g.txt\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n",
            SAME,
        ),
        edge(
            "swap two files by renames",
            files(&[("x", "one\n"), ("y", "two\n")]),
            "diff --git a/x b/y\nrename from x\nrename to y\ndiff --git a/y b/x\nrename from y\nrename to x\n",
            SAME,
        ),
        edge(
            "copy",
            abc.clone(),
            "diff --git a/f.txt b/copy.txt\nsimilarity index 100%\ncopy from f.txt\ncopy to copy.txt\n",
            SAME,
        ),
        edge(
            "mode change only",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nold mode 100644\nnew mode 100755\n",
            SAME,
        ),
        edge(
            "exec bit with content",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nold mode 100644\nnew mode 100755\n--- a/f.txt\n+++ b/f.txt\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n",
            SAME,
        ),
        edge(
            "index line mode disagrees with file",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nindex 1111111..2222222 100755\n--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-a\n+A\n b\n",
            SAME,
        ),
        edge(
            "binary files differ without data",
            files(&[("i.png", "\0png")]),
            "diff --git a/i.png b/i.png\nindex 1111111..2222222 100644\nBinary files a/i.png and b/i.png differ\n",
            SAME,
        ),
        edge(
            "remove trailing newline",
            files(&[("f", "a\nb\n")]),
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n",
            SAME,
        ),
        edge(
            "add trailing newline",
            files(&[("f", "a\nb")]),
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n",
            SAME,
        ),
        edge(
            "no-newline context applied to a file with newline",
            files(&[("f", "a\nb\n")]),
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n\\ No newline at end of file\n",
            SAME,
        ),
        edge(
            "crlf lines kept byte exact",
            files(&[("w.txt", "one\r\ntwo\r\nthree\r\n")]),
            "--- a/w.txt\n+++ b/w.txt\n@@ -1,3 +1,3 @@\n one\r\n-two\r\n+TWO\r\n three\r\n",
            SAME,
        ),
        edge(
            "crlf diff against lf file",
            files(&[("w.txt", "one\ntwo\nthree\n")]),
            "--- a/w.txt\r\n+++ b/w.txt\r\n@@ -1,3 +1,3 @@\r\n one\r\n-two\r\n+TWO\r\n three\r\n",
            SAME,
        ),
        edge(
            "plain unified diff creating a file",
            FileTree::new(),
            "--- /dev/null\n+++ b/src/new.rs\n@@ -0,0 +1,2 @@\n+fn main() {}\n+// end\n",
            SAME,
        ),
        edge(
            "plain unified diff with timestamps",
            abc.clone(),
            "--- a/f.txt\t2024-05-01 10:00:00.000000000 +0200\n+++ b/f.txt\t2024-05-01 10:05:00.000000000 +0200\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n",
            SAME,
        ),
        edge(
            "plain unified diff to missing file becomes creation",
            FileTree::new(),
            "--- a/n.txt\n+++ b/n.txt\n@@ -0,0 +1 @@\n+hello\n",
            SAME,
        ),
        edge(
            "garbage around patches",
            abc.clone(),
            &format!("Here is the change:\n\n{}\nThanks!\n", modify("f.txt")),
            SAME,
        ),
        edge(
            "hunk counts larger than the hunk",
            abc.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -2,4 +2,4 @@\n b\n-c\n+C\n d\n",
            SAME,
        ),
        edge(
            "diff without final newline",
            abc.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-a\n+A",
            SAME,
        ),
        edge("empty diff", abc.clone(), "", SAME),
        edge("note marker", abc.clone(), "# Note: no changes were needed\n", SAME),
        edge(
            "error marker",
            abc.clone(),
            "# ERROR GENERATING DIFF: timeout\n",
            SAME,
        ),
        edge(
            "zero-context hunk in the middle",
            abc.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -3 +3 @@\n-c\n+C\n",
            SAME,
        ),
        edge(
            "empty new file",
            FileTree::new(),
            "diff --git a/empty b/empty\nnew file mode 100644\nindex 0000000..e69de29\n",
            SAME,
        ),
        edge(
            "delete empty file",
            files(&[("empty", ""), ("keep", "k\n")]),
            "diff --git a/empty b/empty\ndeleted file mode 100644\nindex e69de29..0000000\n",
            SAME,
        ),
        edge(
            "delete non-empty file without hunks",
            files(&[("full", "x\n")]),
            "diff --git a/full b/full\ndeleted file mode 100644\nindex e69de29..0000000\n",
            SAME,
        ),
        edge(
            "quoted names with tab, quote and octal utf-8",
            FileTree::new(),
            "diff --git \"a/with \\\"quote\\\" and\\ttab.txt\" \"b/with \\\"quote\\\" and\\ttab.txt\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/with \\\"quote\\\" and\\ttab.txt\"\n@@ -0,0 +1 @@\n+q\ndiff --git \"a/caf\\303\\251.txt\" \"b/caf\\303\\251.txt\"\nnew file mode 100755\n--- /dev/null\n+++ \"b/caf\\303\\251.txt\"\n@@ -0,0 +1 @@\n+c\n",
            SAME,
        ),
        edge(
            "spaces in names with rename",
            files(&[("my dir/old name.txt", "1\n2\n")]),
            "diff --git a/my dir/old name.txt b/my dir/new name.txt\nsimilarity index 60%\nrename from my dir/old name.txt\nrename to my dir/new name.txt\n--- a/my dir/old name.txt\n+++ b/my dir/new name.txt\n@@ -1,2 +1,2 @@\n 1\n-2\n+two\n",
            SAME,
        ),
        edge(
            "mode change on a name with spaces",
            files(&[("my dir/run me.sh", "echo\n")]),
            "diff --git a/my dir/run me.sh b/my dir/run me.sh\nold mode 100644\nnew mode 100755\n",
            SAME,
        ),
        edge(
            "inner a and b directories are kept",
            files(&[("lib/a/b.txt", "x\n"), ("a/b/c.txt", "y\n")]),
            "diff --git a/lib/a/b.txt b/lib/a/b.txt\n--- a/lib/a/b.txt\n+++ b/lib/a/b.txt\n@@ -1 +1 @@\n-x\n+X\ndiff --git a/a/b/c.txt b/a/b/c.txt\n--- a/a/b/c.txt\n+++ b/a/b/c.txt\n@@ -1 +1 @@\n-y\n+Y\n",
            SAME,
        ),
        edge(
            "file where a directory is needed",
            files(&[("a", "file\n")]),
            "diff --git a/a/b b/a/b\nnew file mode 100644\n--- /dev/null\n+++ b/a/b\n@@ -0,0 +1 @@\n+x\n",
            SAME,
        ),
        edge(
            "directory where a file is needed",
            files(&[("d/x", "file\n")]),
            "diff --git a/d b/d\nnew file mode 100644\n--- /dev/null\n+++ b/d\n@@ -0,0 +1 @@\n+x\n",
            SAME,
        ),
        edge(
            "replace file by directory in one patch",
            files(&[("a", "file\n")]),
            "diff --git a/a b/a\ndeleted file mode 100644\n--- a/a\n+++ /dev/null\n@@ -1 +0,0 @@\n-file\ndiff --git a/a/b b/a/b\nnew file mode 100644\n--- /dev/null\n+++ b/a/b\n@@ -0,0 +1 @@\n+x\n",
            SAME,
        ),
        edge(
            "file becomes symlink",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,5 +0,0 @@\n-a\n-b\n-c\n-d\n-e\ndiff --git a/f.txt b/f.txt\nnew file mode 120000\n--- /dev/null\n+++ b/f.txt\n@@ -0,0 +1 @@\n+other\n\\ No newline at end of file\n",
            SAME,
        ),
        edge(
            "type change in one patch is refused",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nold mode 100644\nnew mode 120000\n",
            SAME,
        ),
        edge(
            "write through a symlinked directory",
            with(files(&[("d/x", "1\n")]), "l", "d", FileMode::Symlink),
            "diff --git a/l/x b/l/x\n--- a/l/x\n+++ b/l/x\n@@ -1 +1 @@\n-1\n+2\n",
            SAME,
        ),
        edge(
            "create beside a new symlink",
            files(&[("d/x", "1\n")]),
            "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+d\n\\ No newline at end of file\ndiff --git a/l/y b/l/y\nnew file mode 100644\n--- /dev/null\n+++ b/l/y\n@@ -0,0 +1 @@\n+y\n",
            SAME,
        ),
        edge(
            "same file patched twice",
            abc.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,2 @@\n-A\n+AA\n b\n",
            SAME,
        ),
        edge(
            "delete then recreate",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,5 +0,0 @@\n-a\n-b\n-c\n-d\n-e\ndiff --git a/f.txt b/f.txt\nnew file mode 100755\n--- /dev/null\n+++ b/f.txt\n@@ -0,0 +1 @@\n+fresh\n",
            SAME,
        ),
        edge(
            "patch a deleted file",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,5 +0,0 @@\n-a\n-b\n-c\n-d\n-e\n--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-a\n+b\n",
            SAME,
        ),
        edge(
            "blank context line without a space",
            files(&[("f", "a\n\nb\n")]),
            "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n-a\n+A\n\n b\n",
            SAME,
        ),
        edge(
            "fragment without header",
            abc.clone(),
            "@@ -1 +1 @@\n-a\n+A\n",
            SAME,
        ),
        edge(
            "inconsistent header lines",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nnew file mode 100644\ndeleted file mode 100644\n",
            SAME,
        ),
        // Unsafe paths: rejected whatever git does.
        edge(
            "traversal in new file",
            FileTree::new(),
            "diff --git a/../x b/../x\nnew file mode 100644\n--- /dev/null\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n",
            UNSAFE,
        ),
        edge(
            "traversal inside path",
            FileTree::new(),
            "--- /dev/null\n+++ b/a/../../x\n@@ -0,0 +1 @@\n+x\n",
            UNSAFE,
        ),
        edge(
            "deep traversal",
            FileTree::new(),
            "--- /dev/null\n+++ b/../../../../tmp/pwned\n@@ -0,0 +1 @@\n+x\n",
            UNSAFE,
        ),
        edge(
            "absolute path",
            FileTree::new(),
            "--- /dev/null\n+++ /etc/passwd\n@@ -0,0 +1 @@\n+root::0:0::/:/bin/sh\n",
            UNSAFE,
        ),
        edge(
            "git config",
            FileTree::new(),
            "diff --git a/.git/config b/.git/config\nnew file mode 100644\n--- /dev/null\n+++ b/.git/config\n@@ -0,0 +1 @@\n+[core]\n",
            UNSAFE,
        ),
        edge(
            "nested git hooks",
            FileTree::new(),
            "diff --git a/x/.git/hooks/y b/x/.git/hooks/y\nnew file mode 100755\n--- /dev/null\n+++ b/x/.git/hooks/y\n@@ -0,0 +1 @@\n+boom\n",
            UNSAFE,
        ),
        edge(
            "rename out of the tree",
            abc.clone(),
            "diff --git a/f.txt b/../f.txt\nrename from f.txt\nrename to ../f.txt\n",
            UNSAFE,
        ),
        edge(
            "copy from outside the tree",
            FileTree::new(),
            "diff --git a/../../etc/passwd b/p\ncopy from ../../etc/passwd\ncopy to p\n",
            UNSAFE,
        ),
        edge(
            "nul byte in quoted name",
            FileTree::new(),
            "--- /dev/null\n+++ \"b/foo\\000bar\"\n@@ -0,0 +1 @@\n+x\n",
            UNSAFE,
        ),
        edge(
            "symlink out of the tree",
            FileTree::new(),
            "diff --git a/up b/up\nnew file mode 120000\n--- /dev/null\n+++ b/up\n@@ -0,0 +1 @@\n+../../etc\n\\ No newline at end of file\n",
            UNSAFE,
        ),
        edge(
            "absolute symlink",
            FileTree::new(),
            "diff --git a/abs b/abs\nnew file mode 120000\n--- /dev/null\n+++ b/abs\n@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n",
            UNSAFE,
        ),
        edge(
            "symlink retargeted outside",
            with(FileTree::new(), "l", "inside", FileMode::Symlink),
            "diff --git a/l b/l\n--- a/l\n+++ b/l\n@@ -1 +1 @@\n-inside\n\\ No newline at end of file\n+../outside\n\\ No newline at end of file\n",
            UNSAFE,
        ),
    ]
}

#[test]
fn oracle_hand_written_edge_cases() {
    let cases = edge_cases();
    let tally = run_cases(&cases);
    assert_tally("hand-written edge cases", cases.len(), tally);
}

#[test]
fn edge_case_errors_are_precise() {
    let abc = files(&[("frontend/app.js", "a\nb\nc\nd\ne\nf\ng\n")]);
    let diff = "diff --git a/frontend/app.js b/frontend/app.js\n--- a/frontend/app.js\n+++ b/frontend/app.js\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n@@ -4,3 +4,3 @@\n d\n-X\n+F\n f\n";
    let err = apply_patch_set(&abc, diff.as_bytes()).unwrap_err();
    assert_eq!(err.code(), "diff_hunk_failed");
    assert_eq!(
        err.to_string(),
        "frontend/app.js: hunk 2 (@@ -4,3 +4,3 @@) does not apply: context mismatch at line 5: expected \"X\\n\", found \"e\\n\""
    );
    let err = apply_patch_set(
        &FileTree::new(),
        b"--- /dev/null\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n",
    )
    .unwrap_err();
    assert_eq!(err.code(), "unsafe_path");
    assert!(err.to_string().contains("../x"), "{err}");
    let err = apply_patch_set(&abc, b"diff --git a/nope b/nope\ndeleted file mode 100644\n--- a/nope\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n").unwrap_err();
    assert_eq!(
        (err.code(), err.to_string().as_str()),
        ("file_not_found", "nope: file not found")
    );
    let err = apply_patch_set(&abc, b"diff --git a/frontend/app.js b/frontend/app.js\nnew file mode 100644\n--- /dev/null\n+++ b/frontend/app.js\n@@ -0,0 +1 @@\n+x\n").unwrap_err();
    assert_eq!(err.code(), "file_exists");
    let err = apply_patch_set(
        &abc,
        b"diff --git a/i b/i\nindex 1111111..2222222 100644\nBinary files a/i and b/i differ\n",
    )
    .unwrap_err();
    assert_eq!(err.code(), "file_not_found");
    let with_png = files(&[("i.png", "\0png")]);
    let err = apply_patch_set(&with_png, b"diff --git a/i.png b/i.png\nindex 1111111..2222222 100644\nBinary files a/i.png and b/i.png differ\n").unwrap_err();
    assert_eq!(err.code(), "binary_patch_error");
    assert!(err.to_string().contains("i.png"), "{err}");
    assert_eq!(apply_patch_set(&abc, b"").unwrap_err().code(), "diff_empty");
    // The base is never modified, even by a successful apply.
    let before = abc.clone();
    let ok = apply_patch_set(
        &abc,
        b"--- a/frontend/app.js\n+++ b/frontend/app.js\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n",
    )
    .unwrap();
    assert_eq!(abc, before);
    assert_eq!(ok["frontend/app.js"].content, b"A\nb\nc\nd\ne\nf\ng\n");
}

// ---------------------------------------------------------- fuzz (3) ---

const DIFF_TOKENS: &[&str] = &[
    "diff --git a/x b/x",
    "diff --git a/y b/z",
    "--- a/x",
    "+++ b/x",
    "--- /dev/null",
    "+++ /dev/null",
    "+++ b/../evil",
    "@@ -1,2 +1,2 @@",
    "@@ -0,0 +1 @@",
    "@@ -1 +0,0 @@",
    "@@ -2 +2 @@",
    "+foo",
    "-bar",
    " baz",
    "-baz",
    "",
    "\\ No newline at end of file",
    "new file mode 100644",
    "new file mode 120000",
    "deleted file mode 100644",
    "old mode 100644",
    "new mode 100755",
    "rename from x",
    "rename to y",
    "copy from x",
    "copy to w",
    "similarity index 90%",
    "index 0000000..1111111",
    "GIT binary patch",
    "literal 5",
    "delta 3",
    "Binary files a/x and b/x differ",
    "+../../etc",
];

fn mutate_bytes(rng: &mut StdRng, diff: &[u8]) -> Vec<u8> {
    let mut lines = split_lines(diff);
    let mut out = diff.to_vec();
    match rng.gen_range(0..6) {
        0 if !out.is_empty() => {
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..out.len());
                out[at] = match rng.gen_range(0..3) {
                    0 => rng.gen(),
                    1 => *b" +-@\\\n\"/.0".choose(rng).unwrap(),
                    _ => out[at] ^ (1 << rng.gen_range(0..8)),
                };
            }
            return out;
        }
        1 if !lines.is_empty() => {
            let at = rng.gen_range(0..lines.len());
            lines.remove(at);
        }
        2 if !lines.is_empty() => {
            let at = rng.gen_range(0..lines.len());
            let line = lines[at].clone();
            lines.insert(at, line);
        }
        3 => {
            out.truncate(rng.gen_range(0..=out.len()));
            return out;
        }
        4 if lines.len() > 1 => {
            let a = rng.gen_range(0..lines.len());
            let b = rng.gen_range(0..lines.len());
            lines.swap(a, b);
        }
        _ => {
            let at = rng.gen_range(0..=lines.len());
            let token = DIFF_TOKENS.choose(rng).unwrap();
            lines.insert(at, format!("{token}\n").into_bytes());
        }
    }
    lines.concat()
}

fn random_diffish(rng: &mut StdRng) -> Vec<u8> {
    let mut out = String::new();
    for _ in 0..rng.gen_range(0..14) {
        out.push_str(DIFF_TOKENS.choose(rng).unwrap());
        out.push('\n');
    }
    out.into_bytes()
}

/// Whether every header path carries git's `a/` or `b/` prefix. For any
/// other first component `git apply -p1` strips it while we keep it (a
/// deliberate difference), so only these diffs are compared with git.
fn headers_use_ab_prefixes(diff: &[u8]) -> bool {
    let prefixed = |name: &[u8]| {
        let name = name.strip_prefix(b"\"").unwrap_or(name);
        name.starts_with(b"a/") || name.starts_with(b"b/") || name.starts_with(b"/dev/null")
    };
    diff.split(|&c| c == b'\n').all(|line| {
        if let Some(names) = line.strip_prefix(b"diff --git ") {
            let second = names.windows(3).any(|w| w == b" b/" || w == b"\"b/");
            prefixed(names) && second
        } else if let Some(name) = line
            .strip_prefix(b"--- ")
            .or_else(|| line.strip_prefix(b"+++ "))
        {
            prefixed(name)
        } else {
            true
        }
    })
}

#[test]
fn fuzz_never_panics_and_ok_results_match_git() {
    let started = Instant::now();
    let seed = base_seed() ^ 0xf022;
    let mut rng = StdRng::seed_from_u64(seed);
    let small_base = files(&[("x", "bar\nbaz\n"), ("y", "foo\n")]);
    let mut sources: Vec<Case> = generated_corpus().iter().take(120).cloned().collect();
    sources.extend(fixture_cases());
    sources.extend(edge_cases().into_iter().filter(|c| c.expect == SAME));
    let mut to_compare = Vec::new();
    let mut rejected_sample = Vec::new();
    let (mut total, mut ok_results, mut other_prefix) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    let mut check = |name: String, base: &FileTree, diff: Vec<u8>, to_compare: &mut Vec<Case>| {
        total += 1;
        match ours(base, &diff) {
            Err(panic) => failures.push(format!("{name}: panicked: {panic}")),
            Ok(Ok(tree)) => {
                ok_results += 1;
                if let Err(why) = tree_is_safe(&tree) {
                    failures.push(format!("{name}: unsafe result: {why}"));
                }
                // Compare a deterministic sample of accepted inputs with git,
                // skipping names git would strip differently (see above).
                if !headers_use_ab_prefixes(&diff) {
                    other_prefix += 1;
                } else if thorough() || (ok_results % 6 == 1 && to_compare.len() < 220) {
                    to_compare.push(Case {
                        name: format!("fuzz {name}"),
                        seed: Some(seed),
                        base: base.clone(),
                        diff,
                        expect: SAME,
                    });
                }
            }
            Ok(Err(e)) => {
                if thorough() && name.starts_with("mutation") {
                    rejected_sample.push((name, base.clone(), diff, e));
                }
            }
        }
    };
    for i in 0..2500 {
        let len = rng.gen_range(0..300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        check(
            format!("random-bytes-{i}"),
            &small_base,
            bytes,
            &mut to_compare,
        );
        let diffish = random_diffish(&mut rng);
        check(
            format!("random-diffish-{i}"),
            &small_base,
            diffish,
            &mut to_compare,
        );
    }
    for i in 0..4000 {
        let source = &sources[i % sources.len()];
        let mut diff = mutate_bytes(&mut rng, &source.diff);
        if rng.gen_bool(0.3) {
            diff = mutate_bytes(&mut rng, &diff);
        }
        check(
            format!("mutation-{i} of {}", source.name),
            &source.base,
            diff,
            &mut to_compare,
        );
    }
    println!(
        "fuzz: {total} inputs, {ok_results} accepted, {} accepted inputs compared with git, \
         {other_prefix} accepted inputs not compared (a header path without a/ or b/)",
        to_compare.len()
    );
    assert!(
        failures.is_empty(),
        "fuzz failures (seed {seed}):\n{}",
        failures.join("\n")
    );
    assert!(
        to_compare.len() >= 100,
        "too few accepted fuzz inputs to compare"
    );
    let tally = run_cases(&to_compare);
    assert_tally("fuzz sample vs git", to_compare.len(), tally);
    // Where we are stricter than git; informational only.
    let mut stricter: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, base, diff, err) in &rejected_sample {
        if git_apply(base, diff).result.is_ok() && headers_use_ab_prefixes(diff) {
            stricter
                .entry(err.code())
                .or_default()
                .push(format!("{name}: {err}"));
        }
    }
    for (code, cases) in &stricter {
        println!(
            "stricter than git ({code}): {} cases, e.g. {:?}",
            cases.len(),
            &cases[..cases.len().min(3)]
        );
    }
    println!("fuzz took {:?}", started.elapsed());
}

// --------------------------------------------------------- benchmark ---

/// Times `apply_patch_set` against `git apply` on one diff.
fn time_apply(label: &str, old: &FileTree, new: &FileTree) {
    let diff = git_diff(old, new, &[]);
    let mut best = std::time::Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let tree = apply_patch_set(old, &diff).unwrap();
        best = best.min(t.elapsed());
        assert!(&tree == new, "{label}: wrong result");
    }
    let t = Instant::now();
    let theirs = git_apply(old, &diff);
    let git_time = t.elapsed();
    assert!(theirs.result.unwrap() == *new, "{label}: git disagrees");
    println!(
        "{label}: {} bytes of diff; apply_patch_set {best:?}; \
         git apply {git_time:?} (including writing the base and reading back)",
        diff.len()
    );
}

fn text_file(lines: &[String]) -> FileEntry {
    FileEntry {
        content: lines.concat().into_bytes(),
        mode: FileMode::Regular,
    }
}

/// Times a 1,000-file, ~10 MB patch set and a 60,000-line file with 6,000
/// hunks against `git apply`. Run with
/// `cargo test --release --test workspace_oracle -- --ignored --nocapture bench`.
#[test]
#[ignore]
fn bench_large_patch_set() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut old, mut new) = (FileTree::new(), FileTree::new());
    for i in 0..500 {
        let lines: Vec<String> = (0..240)
            .map(|n| format!("line {n} of file {i}: {}\n", random_line(&mut rng)))
            .collect();
        let mut changed = lines.clone();
        for n in (0..240).step_by(9) {
            changed[n] = format!("changed {n} {}\n", random_line(&mut rng));
        }
        let path = format!("dir{}/file{i}.txt", i % 37);
        old.insert(path.clone(), text_file(&lines));
        new.insert(path, text_file(&changed));
        let fresh: Vec<String> = (0..750)
            .map(|n| format!("new {n} {}\n", random_line(&mut rng)))
            .collect();
        new.insert(format!("new{}/f{i}.txt", i % 23), text_file(&fresh));
    }
    time_apply("1,000 files", &old, &new);

    let lines: Vec<String> = (0..60_000).map(|n| format!("row {n}\n")).collect();
    let mut changed = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if n % 10 == 5 {
            changed.push(format!("edited {n}\n"));
            if n % 20 == 5 {
                changed.push(format!("added after {n}\n"));
            }
        } else {
            changed.push(line.clone());
        }
    }
    let old = FileTree::from([("big.txt".to_string(), text_file(&lines))]);
    let new = FileTree::from([("big.txt".to_string(), text_file(&changed))]);
    time_apply("one file, 6,000 hunks", &old, &new);
}
