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
#[path = "workspace_oracle/prefixes.rs"]
mod prefixes;
#[path = "workspace_oracle/zero_context.rs"]
mod zero_context;

use std::collections::BTreeMap;
use std::time::Instant;

use agentgate::files::{FileEntry, FileMode, FileTree};
use agentgate::workspace::{
    apply_patch_set, apply_patch_set_with_limits, classify_diff, ApplyLimits, DiffKind,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use corpus::{generated_corpus, random_line};
use edge_cases::{edge_cases, files, SAME};
use fixtures::fixture_cases;
use fuzz::{headers_use_ab_prefixes, mutate_bytes, random_diffish};
use git::{git_apply, git_diff};
use oracle::{assert_tally, ours, run_cases, tree_is_safe, Case};
use peak_alloc::peak_during;

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

/// Counts live heap bytes per thread, so a test can see the most that one
/// call held at once (each test runs on a thread of its own).
mod peak_alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub(crate) struct PeakAlloc;

    thread_local! {
        static LIVE: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    fn grew(bytes: usize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get().saturating_add(bytes);
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    fn shrank(bytes: usize) {
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
    }

    unsafe impl GlobalAlloc for PeakAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                grew(layout.size());
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                grew(layout.size());
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            shrank(layout.size());
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                grew(new_size);
                shrank(layout.size());
            }
            new
        }
    }

    /// Runs `f`; returns its result and the most bytes it had allocated at once.
    pub(crate) fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let start = LIVE.with(Cell::get);
        PEAK.with(|peak| peak.set(start));
        let out = f();
        (out, PEAK.with(Cell::get) - start)
    }
}

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

const MIB: usize = 1 << 20;

fn encode_85(data: &[u8]) -> String {
    const ALPHABET: &[u8; 85] =
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";
    let mut out = String::new();
    for chunk in data.chunks(52) {
        let len = chunk.len() as u8;
        out.push(if len <= 26 {
            b'A' + len - 1
        } else {
            b'a' + len - 27
        } as char);
        for group in chunk.chunks(4) {
            let mut word = [0u8; 4];
            word[..group.len()].copy_from_slice(group);
            let mut acc = u32::from_be_bytes(word);
            let mut chars = [0u8; 5];
            for c in chars.iter_mut().rev() {
                *c = ALPHABET[(acc % 85) as usize];
                acc /= 85;
            }
            out.push_str(std::str::from_utf8(&chars).unwrap());
        }
        out.push('\n');
    }
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

/// A zlib stream of `mib` MiB of zeros (~1 KB per MiB), built by repeating
/// one fully flushed, byte-aligned MiB of deflate blocks.
fn zeros_bomb(mib: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut z = Compress::new(Compression::best(), false);
    let (mut one_mib, mut last) = (Vec::with_capacity(1 << 16), Vec::with_capacity(64));
    z.compress_vec(&vec![0; MIB], &mut one_mib, FlushCompress::Full)
        .unwrap();
    assert_eq!(z.total_in(), MIB as u64);
    z.compress_vec(&[], &mut last, FlushCompress::Finish)
        .unwrap();
    let mut out = vec![0x78, 0xda];
    for _ in 0..mib {
        out.extend_from_slice(&one_mib);
    }
    out.extend_from_slice(&last);
    let b = (mib as u64 * MIB as u64) % 65521;
    out.extend_from_slice(&((b << 16 | 1) as u32).to_be_bytes());
    out
}

/// Git's blob id, as `git hash-object` prints it.
fn blob_id(content: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One `diff --git` patch to `path` with a forward binary hunk.
fn binary_patch(path: &str, header: &str, ids: (&str, &str), hunk: &str, zdata: &[u8]) -> String {
    format!(
        "diff --git a/{path} b/{path}\n{header}index {}..{}\nGIT binary patch\n{hunk}\n{}\n",
        ids.0,
        ids.1,
        encode_85(zdata)
    )
}

/// Hostile binary patches, small as diffs, are refused with a clear error
/// before they cost memory: the most any of them holds at once is measured.
#[test]
fn binary_patch_bombs_are_refused_without_large_allocations() {
    let started = Instant::now();
    let none = "0".repeat(40);

    // A 200 MiB literal in ~250 KB of diff: over the limit per file.
    let bomb = binary_patch(
        "big.bin",
        "new file mode 100644\n",
        (&none, &"1".repeat(40)),
        &format!("literal {}", 200 * MIB),
        &zeros_bomb(200),
    );
    assert!(bomb.len() < 300_000, "{}", bomb.len());
    let (result, peak) = peak_during(|| apply_patch_set(&FileTree::new(), bomb.as_bytes()));
    let err = result.unwrap_err();
    assert_eq!(err.code(), "diff_too_large");
    assert_eq!(
        err.to_string(),
        "big.bin: binary patch would produce 209715200 bytes, over the limit of 64 MiB per file"
    );
    assert!(peak < 4 * MIB, "held {peak} bytes");

    // A 16 MiB literal, then a delta on the same path that copies 8 MiB of
    // it 128 times (2 bytes per command): 1 GiB from a 260-byte delta.
    let seed = files(&[("a.bin", "seed")]);
    let zeros = vec![0u8; 16 * MIB];
    let zeros_id = blob_id(&zeros);
    let mut delta = Vec::new();
    for mut n in [16 * MIB as u64, 1 << 30] {
        while n >= 0x80 {
            delta.push(n as u8 | 0x80);
            n >>= 7;
        }
        delta.push(n as u8);
    }
    for _ in 0..128 {
        // Copy from offset 0, length given by its third byte only: 0x80 << 16.
        delta.extend_from_slice(&[0x80 | 0x40, 0x80]);
    }
    let two_steps = binary_patch(
        "a.bin",
        "",
        (&blob_id(b"seed"), &zeros_id),
        &format!("literal {}", 16 * MIB),
        &zeros_bomb(16),
    ) + &binary_patch(
        "a.bin",
        "",
        (&zeros_id, &"2".repeat(40)),
        &format!("delta {}", delta.len()),
        &zlib(&delta),
    );
    assert!(two_steps.len() < 30_000, "{}", two_steps.len());
    let (result, peak) = peak_during(|| apply_patch_set(&seed, two_steps.as_bytes()));
    let err = result.unwrap_err();
    assert_eq!(err.code(), "diff_too_large");
    assert_eq!(
        err.to_string(),
        "a.bin: binary patch would produce 1073741824 bytes, over the limit of 64 MiB per file"
    );
    assert!(peak < 48 * MIB, "held {peak} bytes");

    // The same literal repeated over many paths adds up to the limit per
    // patch set and no further (smaller limits keep the test quick).
    let limits = ApplyLimits {
        max_binary_file_bytes: 4 * MIB as u64,
        max_patch_set_bytes: 16 * MIB as u64,
    };
    let four = zeros_bomb(4);
    let four_id = blob_id(&vec![0; 4 * MIB]);
    let many: String = (0..20)
        .map(|n| {
            binary_patch(
                &format!("assets/{n}.bin"),
                "new file mode 100644\n",
                (&none, &four_id),
                &format!("literal {}", 4 * MIB),
                &four,
            )
        })
        .collect();
    let (result, peak) =
        peak_during(|| apply_patch_set_with_limits(&FileTree::new(), many.as_bytes(), limits));
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "assets/4.bin: the diff would produce more than 16 MiB of file content (the limit per diff)"
    );
    // Four files were inflated before the fifth was refused: the count is real.
    assert!((16 * MIB..20 * MIB).contains(&peak), "held {peak} bytes");
    println!("binary bombs refused in {:?}", started.elapsed());
}

/// Real binary files of a few MiB, created and then changed by a delta,
/// still apply exactly as `git apply` applies them.
#[test]
fn multi_mib_binary_files_apply_like_git() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut blob: Vec<u8> = (0..3 * MIB).map(|_| rng.gen()).collect();
    let mut old = FileTree::new();
    let mut new = FileTree::from([(
        "public/video.bin".to_string(),
        FileEntry {
            content: blob.clone(),
            mode: FileMode::Regular,
        },
    )]);
    assert_applies_like_git("a new 3 MiB binary file", &old, &new);
    old = new.clone();
    for i in (0..blob.len()).step_by(MIB / 2) {
        blob[i] ^= 0xff;
    }
    blob.extend_from_slice(&[7; 4096]);
    new.insert(
        "public/video.bin".to_string(),
        FileEntry {
            content: blob,
            mode: FileMode::Regular,
        },
    );
    let diff = git_diff(&old, &new, &[]);
    assert!(diff.windows(6).any(|w| w == b"delta "), "git chose a delta");
    assert_applies_like_git("a 3 MiB binary file changed by a delta", &old, &new);
}
