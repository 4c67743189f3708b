//! `files-bench`: (a) applies a 1,000-file, ~10 MB diff in memory with
//! `agentgate::workspace::apply_patch_set` and times it against `git apply` on the same diff and
//! base files; (b) uploads version 1 of a 1,000-file app and version 2 with one line changed
//! through `FileVersions` into a `LocalStore`, reporting each `UploadReport`; (c) times a
//! one-file diff to that app from the agent's diff to `version_created` (`VersionPipeline::
//! apply`, SQLite, local storage, no git or deploy steps; the upload is the version's job, run
//! after the timer as a worker would), interleaved with the
//! whole-tree path it replaced (load every file, apply, save and upload the whole tree with its
//! archive) on the same app in the same run.
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use agentgate::files::{BlobCache, FileVersions};
use agentgate::files::{FileEntry, FileMode, FileTree};
use agentgate::pipeline::{DiffContext, Notice, Pending, PipelineSettings, VersionPipeline};
use agentgate::storage::{LocalStore, UrlSigner};
use agentgate::workspace::apply_patch_set;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Diff application and upload-size benchmarks")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    files: usize,
    /// Lines per file (40 bytes each).
    #[arg(long, default_value_t = 250)]
    lines: usize,
    /// Timed repetitions of each applier; the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// One-file diffs per path in (c), interleaved.
    #[arg(long, default_value_t = 30)]
    diffs: usize,
}

fn line(file: usize, n: usize, variant: &str) -> String {
    format!(
        "let v{file:04}_{n:05} = \"{variant}{:>14}\";\n",
        n * 7919 % 100_000
    )
}

fn base_file(file: usize, lines: usize) -> String {
    (0..lines).map(|n| line(file, n, "base")).collect()
}

/// Every tenth line changed, so each file gets many hunks.
fn changed_file(file: usize, lines: usize) -> String {
    (0..lines)
        .map(|n| line(file, n, if n % 10 == 5 { "edit" } else { "base" }))
        .collect()
}

fn path_of(file: usize) -> String {
    format!("src/m{:02}/file{file:04}.ts", file % 50)
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
        .args(args)
        .status()?;
    anyhow::ensure!(status.success(), "git {args:?} failed");
    Ok(())
}

fn write_tree(dir: &Path, files: &[(String, String)]) -> anyhow::Result<()> {
    for (path, content) in files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(full, content)?;
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn tree_of(files: &[(String, String)]) -> FileTree {
    files
        .iter()
        .map(|(p, c)| {
            (
                p.clone(),
                FileEntry {
                    content: c.clone().into_bytes(),
                    mode: FileMode::Regular,
                },
            )
        })
        .collect()
}

fn apply_bench(args: &Args) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let repo = dir.path();
    let base: Vec<(String, String)> = (0..args.files)
        .map(|i| (path_of(i), base_file(i, args.lines)))
        .collect();
    // Half the files are edited in place, half are new: both kinds of file diff.
    let half = args.files / 2;
    git(repo, &["init", "-q"])?;
    write_tree(repo, &base[..half])?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "base"])?;
    let edited: Vec<(String, String)> = (0..half)
        .map(|i| (path_of(i), changed_file(i, args.lines)))
        .chain((half..args.files).map(|i| (path_of(i), base_file(i, args.lines))))
        .collect();
    write_tree(repo, &edited)?;
    git(repo, &["add", "-A"])?;
    let out = Command::new("git")
        .current_dir(repo)
        .args(["diff", "--cached", "--no-color"])
        .output()?;
    anyhow::ensure!(out.status.success(), "git diff failed");
    let diff = out.stdout;
    let patch_file = tempfile::NamedTempFile::new()?;
    std::fs::write(patch_file.path(), &diff)?;
    git(repo, &["reset", "-q", "--hard"])?;
    git(repo, &["clean", "-qfd"])?;

    let base_tree = tree_of(&base[..half]);
    let expected = tree_of(&edited);
    let mut ours = Vec::new();
    for _ in 0..args.reps {
        let t = Instant::now();
        let result = apply_patch_set(&base_tree, &diff)?;
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            result == expected,
            "apply_patch_set produced a different tree"
        );
    }
    let patch = patch_file.path().to_string_lossy().to_string();
    let mut theirs = Vec::new();
    for _ in 0..args.reps {
        let t = Instant::now();
        git(repo, &["apply", &patch])?;
        theirs.push(t.elapsed().as_secs_f64() * 1000.0);
        git(repo, &["reset", "-q", "--hard"])?;
        git(repo, &["clean", "-qfd"])?;
    }
    let (ours, theirs) = (median(ours), median(theirs));
    Ok(json!({
        "files": args.files,
        "diff_bytes": diff.len(),
        "apply_patch_set_ms": (ours * 100.0).round() / 100.0,
        "git_apply_ms": (theirs * 100.0).round() / 100.0,
        "ratio": (ours / theirs * 1000.0).round() / 1000.0,
    }))
}

async fn upload_bench(args: &Args) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let db = agentgate::db::connect(&url, 4).await?;
    let store = Arc::new(LocalStore::new(
        dir.path().join("objects"),
        "http://127.0.0.1:1".into(),
        UrlSigner::new(b"bench"),
    )?);
    let cache = BlobCache::new(dir.path().join("cache"))?;
    let versions = FileVersions::new(db.clone(), store, cache);
    let app = agentgate::apps::create(&db, "bench", "files bench", None).await?;
    let files: Vec<(String, String)> = (0..args.files)
        .map(|i| (path_of(i), base_file(i, args.lines)))
        .collect();
    let mut tree = tree_of(&files);
    let v1 = versions.create(&app.id, None, None, None, &tree).await?;
    let r1 = versions.upload(&v1).await?;
    let changed = path_of(args.files / 2);
    if let Some(entry) = tree.get_mut(&changed) {
        let mut text = String::from_utf8_lossy(&entry.content).to_string();
        text = text.replacen("base", "edit", 1);
        entry.content = text.into_bytes();
    }
    let v2 = versions
        .create(&app.id, None, None, Some(v1.version), &tree)
        .await?;
    let r2 = versions.upload(&v2).await?;
    let report = |r: agentgate::files::versions::UploadReport| {
        json!({"blobs": r.blobs, "blob_bytes": r.blob_bytes, "total_bytes": r.total_bytes,
               "manifest_and_archive_bytes": r.total_bytes - r.blob_bytes})
    };
    Ok(json!({
        "files": args.files,
        "app_bytes": files.iter().map(|f| f.1.len()).sum::<usize>(),
        "version1": report(r1),
        "version2_one_line": report(r2),
    }))
}

/// A one-line change to file `file` (still as `base_file` made it), as an agent sends it.
fn one_line_diff(file: usize, lines: usize, tag: usize) -> String {
    let path = path_of(file);
    let at = lines / 2;
    let old = line(file, at, "base");
    let new = line(file, at, &format!("e{tag:03}"));
    let (before, after) = (line(file, at - 1, "base"), line(file, at + 1, "base"));
    format!(
        "diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -{},3 +{},3 @@\n \
         {before}-{old}+{new} {after}",
        at, at
    )
}

/// The path `handle_diff` took before: every file loaded, the whole tree applied, compared,
/// cached, hashed and saved, then uploaded with its archive before `version_created`.
async fn whole_tree_version(
    versions: &FileVersions,
    app_id: &str,
    diff: &str,
) -> anyhow::Result<()> {
    let latest = versions
        .latest(app_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no version"))?;
    let tree = versions.load_tree(&latest).await?;
    let result = apply_patch_set(&tree, diff.as_bytes())?;
    anyhow::ensure!(result != tree, "the diff changed nothing");
    let version = versions
        .create(app_id, None, None, Some(latest.version), &result)
        .await?;
    versions.upload(&version).await?;
    Ok(())
}

fn millis(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0
}

async fn version_bench(args: &Args) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let db = agentgate::db::connect(&url, 4).await?;
    let store = Arc::new(LocalStore::new(
        dir.path().join("objects"),
        "http://127.0.0.1:1".into(),
        UrlSigner::new(b"bench"),
    )?);
    let versions = FileVersions::new(db.clone(), store, BlobCache::new(dir.path().join("cache"))?);
    let pipeline = VersionPipeline::new(db.clone(), versions.clone(), PipelineSettings::default());
    let app = agentgate::apps::create(&db, "bench", "files bench", None).await?;
    let files: Vec<(String, String)> = (0..args.files)
        .map(|i| (path_of(i), base_file(i, args.lines)))
        .collect();
    let v1 = versions
        .create(&app.id, None, None, None, &tree_of(&files))
        .await?;
    versions.upload(&v1).await?;
    let mut latest = v1.version;
    let (mut before, mut after) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    // Every diff changes another file, so each applies to its base content: at most one diff
    // per file (the smoke run's app has fewer files than the default count of diffs).
    let diffs = args.diffs.min(args.files / 2);
    for i in 0..diffs * 2 {
        let file = (i + 11) % args.files;
        let diff = one_line_diff(file, args.lines, i);
        let started = Instant::now();
        if i % 2 == 0 {
            whole_tree_version(&versions, &app.id, &diff).await?;
            before.record(started.elapsed().as_micros() as u64)?;
        } else {
            let ctx = DiffContext {
                app_id: app.id.clone(),
                run_id: format!("bench-run-{i}"),
                owner_id: "bench".into(),
                app_name: None,
                commit_message: None,
                base_version: Some(latest),
            };
            let notices = pipeline.apply(&ctx, &diff, &mut Pending::default()).await;
            after.record(started.elapsed().as_micros() as u64)?;
            let created = notices.iter().any(|n| {
                matches!(n, Notice::Platform { metadata, .. } if metadata["type"] == "version_created")
            });
            anyhow::ensure!(created, "no version_created: {notices:?}");
            // The version's upload job, as a worker runs it, before the next diff.
            let version = versions
                .latest(&app.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no version"))?;
            versions.upload(&version).await?;
        }
        latest += 1;
    }
    // Every version holds every file, the last one with every change.
    let last = versions
        .latest(&app.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no version"))?;
    anyhow::ensure!(
        last.version == latest && last.status == agentgate::files::versions::STATUS_STORED,
        "last version {last:?}"
    );
    let tree = versions.load_tree(&last).await?;
    anyhow::ensure!(tree.len() == args.files, "{} files", tree.len());
    let edits = tree
        .values()
        .filter(|e| String::from_utf8_lossy(&e.content).contains("\"e"))
        .count();
    anyhow::ensure!(edits == diffs * 2, "{edits} edited files");
    let figures = |h: &Histogram<u64>| json!({"p50_ms": millis(h, 0.5), "p90_ms": millis(h, 0.9), "max_ms": millis(h, 1.0)});
    Ok(json!({
        "files": args.files,
        "diffs": diffs,
        "whole_tree_before": figures(&before),
        "touched_files_after": figures(&after),
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let apply = apply_bench(&args)?;
    eprintln!("apply: {apply}");
    let upload = upload_bench(&args).await?;
    eprintln!("upload: {upload}");
    let version = version_bench(&args).await?;
    eprintln!("version: {version}");
    println!(
        "{}",
        json!({"apply": apply, "upload": upload, "version": version})
    );
    Ok(())
}
