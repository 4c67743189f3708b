//! The architecture's layering, checked: the modules a version's effects run through (`files`,
//! `git`, `deploy`, `storage`) know nothing of runs or of the pipeline that composes them, and
//! a deployment knows nothing of the git host (a deploy that needs a commit waits on its push
//! job instead). And `apps.rs` is the one writer of the `apps` table.
use std::path::{Path, PathBuf};

/// (module directory, paths it must not import).
const RULES: &[(&str, &[&str])] = &[
    ("files", &["crate::runs", "crate::pipeline"]),
    ("git", &["crate::runs", "crate::pipeline"]),
    ("deploy", &["crate::runs", "crate::pipeline", "crate::git"]),
    ("storage", &["crate::runs", "crate::pipeline"]),
    ("jobs", &["crate::runs", "crate::pipeline"]),
    // Webhooks carry what their callers tell them; they know none of the callers.
    (
        "webhooks",
        &[
            "crate::runs",
            "crate::pipeline",
            "crate::deploy",
            "crate::git",
            "crate::files",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every place a module named in `RULES` mentions a path it must not use.
fn violations() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (module, forbidden) in RULES {
        let mut files = Vec::new();
        let dir = src.join(module);
        rust_files(&dir, &mut files);
        let single = src.join(format!("{module}.rs"));
        if single.exists() {
            files.push(single);
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for path in *forbidden {
                    if code.contains(path) {
                        found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn effect_modules_do_not_import_runs_the_pipeline_or_each_other() {
    let found = violations();
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

/// Lines outside `src/apps.rs` that write the `apps` table.
fn foreign_app_writes() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let writes = [
        "apps::Entity::update",
        "apps_table::Entity::update",
        "apps::ActiveModel",
    ];
    let mut found = Vec::new();
    // The writer itself, and this file (which names what it looks for).
    let allowed = [src.join("apps.rs"), src.join("layering.rs")];
    for file in files.iter().filter(|f| !allowed.contains(f)) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if writes.iter().any(|w| line.contains(w)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn apps_rs_is_the_one_writer_of_the_apps_table() {
    let found = foreign_app_writes();
    assert!(
        found.is_empty(),
        "the apps table written outside apps.rs:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_violation() {
    // The rule's own matcher, on a line that breaks it: a check that cannot fail is no check.
    let line = "use crate::runs::sink::DiffContext;";
    assert!(RULES
        .iter()
        .any(|(_, forbidden)| forbidden.iter().any(|p| line.contains(p))));
}
