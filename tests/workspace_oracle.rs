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

#[path = "workspace_oracle/corpus.rs"]
mod corpus;
#[path = "workspace_oracle/edge_cases.rs"]
mod edge_cases;
#[path = "workspace_oracle/fixtures.rs"]
mod fixtures;
#[path = "workspace_oracle/fuzz.rs"]
mod fuzz;
#[path = "workspace_oracle/git.rs"]
mod git;
#[path = "workspace_oracle/oracle.rs"]
mod oracle;

use std::collections::BTreeMap;
use std::time::Instant;

use agentgate::workspace::{
    apply_patch_set, classify_diff, DiffKind, FileEntry, FileMode, FileTree,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use corpus::{generated_corpus, random_line};
use edge_cases::{edge_cases, files, SAME};
use fixtures::fixture_cases;
use fuzz::{headers_use_ab_prefixes, mutate_bytes, random_diffish};
use git::{git_apply, git_diff};
use oracle::{assert_tally, ours, run_cases, tree_is_safe, Case};

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

/// Applies the diff from `old` to `new` with `apply_patch_set` and with `git apply`; both must
/// give `new`.
fn assert_applies_like_git(label: &str, old: &FileTree, new: &FileTree) {
    let diff = git_diff(old, new, &[]);
    let tree = apply_patch_set(old, &diff).unwrap();
    assert!(&tree == new, "{label}: wrong result");
    let theirs = git_apply(old, &diff);
    assert!(theirs.result.unwrap() == *new, "{label}: git disagrees");
}

fn text_file(lines: &[String]) -> FileEntry {
    FileEntry {
        content: lines.concat().into_bytes(),
        mode: FileMode::Regular,
    }
}

/// A 1,000-file, ~10 MB patch set and a 60,000-line file with 6,000 hunks
/// apply exactly as `git apply` applies them. (Timing lives in the benchmark
/// suite: `files-bench`, see BENCHMARKS.md.)
#[test]
fn large_patch_sets_apply_like_git() {
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
    assert_applies_like_git("1,000 files", &old, &new);

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
    assert_applies_like_git("one file, 6,000 hunks", &old, &new);
}
