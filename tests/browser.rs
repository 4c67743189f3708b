//! The web client in a real browser: runs `tests/browser/run.mjs` (Playwright driving headless
//! Chromium) against this build's `agentgate` binary. It signs in, builds an app with the demo
//! agent, opens the preview, drops and resumes a stream, and downloads a file. Screenshots land
//! in `target/browser-screenshots/`. `.ci/run` installs Chromium and the npm packages; locally
//! the test is skipped when they are missing, but never under CI=true.
use std::path::Path;
use std::process::Command;

#[test]
fn web_client_end_to_end_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ready = dir.join("node_modules/playwright-core").exists()
        && Path::new("/usr/bin/chromium").exists();
    if !ready {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "CI=true but Chromium or tests/browser/node_modules is missing (run .ci/run)"
        );
        eprintln!("skipping: install chromium and run `npm ci` in tests/browser to enable");
        return;
    }
    let status = Command::new("node")
        .arg("run.mjs")
        .current_dir(&dir)
        .env("AGENTGATE_BIN", env!("CARGO_BIN_EXE_agentgate"))
        .env("EXPECT_DEPLOY", "1")
        .status()
        .expect("run node");
    assert!(
        status.success(),
        "the browser test failed; see its output and target/browser-screenshots/"
    );
}
