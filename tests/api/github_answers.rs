//! GitHub's documented answers that agentgate must handle, served by the fake GitHub: a request
//! its API description refuses (422), an App that is not installed on the owner (404), the
//! primary rate limit as 429, a rate-limit budget running out, and a recursive tree listing cut
//! short (`truncated: true`).
use reqwest::Method;
use serde_json::{json, Value};

use crate::db_test;
use crate::fake_github::{FakeGitHub, APP_ID, PERSONAL_TOKEN, USER};
use crate::git::{
    app_id, github_app_config, github_config, notice, notice_types, run, BUILD, ORG, REPO,
};
use crate::helpers::{spawn_app_with, DbKind};

/// Sends one request to the fake GitHub with the headers GitHub documents.
async fn send(gh: &FakeGitHub, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", gh.url))
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("user-agent", "agentgate-tests")
        .bearer_auth(PERSONAL_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the fake GitHub answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The fake GitHub holds requests to GitHub's official description: a `null` where a string
/// belongs, a body field GitHub does not know (it would be ignored silently) and an undescribed
/// query parameter each get GitHub's 422 "Invalid request." and are recorded; nothing happens.
#[tokio::test]
async fn requests_that_break_githubs_description_get_422_and_are_recorded() {
    let gh = FakeGitHub::start().await;
    let invalid = [
        (
            Method::POST,
            "/user/repos",
            Some(json!({ "name": "demo", "description": null })),
            "/description",
        ),
        (
            Method::POST,
            "/user/repos",
            Some(json!({ "name": "demo", "privat": true })),
            "privat",
        ),
        (
            Method::GET,
            "/repos/octo-user/demo?recurse=1",
            None,
            "recurse",
        ),
        (
            Method::PATCH,
            "/repos/octo-user/demo/git/refs/heads/main",
            Some(json!({ "force": true })),
            "sha",
        ),
    ];
    for (method, path, body, named) in invalid {
        let (status, answer) = send(&gh, method.clone(), path, body).await;
        assert_eq!(status, 422, "{method} {path}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(message.starts_with("Invalid request.\n\n"), "{message}");
        assert!(message.contains(named), "{message} names {named}");
        assert_eq!(answer["status"], "422");
        assert!(answer["documentation_url"].is_string(), "{answer}");
    }
    assert!(gh.repo_names(USER).is_empty(), "nothing was created");
    let violations = gh.take_request_violations();
    assert_eq!(violations.len(), 4, "{violations:#?}");
    assert!(
        violations[0].contains("POST /user/repos"),
        "{violations:#?}"
    );

    // A request that follows the description goes through, and its answer follows it too.
    let (status, repo) = send(
        &gh,
        Method::POST,
        "/user/repos",
        Some(json!({ "name": "demo" })),
    )
    .await;
    assert_eq!(status, 201, "{repo}");
    assert_eq!(gh.response_violations(), Vec::<String>::new());
}

/// A GitHub App that is not installed on the owner: the lookup answers 404, agentgate says so
/// in the pending notice, mints no token and creates nothing.
async fn a_github_app_not_installed_on_the_owner_is_named_as_the_cause(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    gh.uninstall_app(ORG);
    let app = spawn_app_with(kind, &github_app_config(&gh)).await;
    let token = app.token("alice");
    let frames = run(&app, &token, BUILD, None).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    let reason = notice(&frames, "commit_pending")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("not installed on octo-org"), "{reason}");
    assert_eq!(gh.tokens_minted(), 0);
    assert!(gh.repo_names(ORG).is_empty());
    // GitHub asks for a User-Agent naming the application: agentgate, as this App.
    assert_eq!(
        gh.user_agents(),
        [format!("{} (GitHub App {APP_ID})", agentgate::USER_AGENT)]
    );
    app.stop().await;
}
db_test!(a_github_app_not_installed_on_the_owner_is_named_as_the_cause);

/// GitHub's primary rate limit answered as 429 with its reset an hour away: like the 403 form,
/// the push waits for the reset and no later call of that credential reaches GitHub before it.
async fn a_429_rate_limit_holds_every_github_call_until_its_reset(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 1)).await;
    let token = app.token("alice");
    gh.too_many_requests_next(1, 3600);
    let frames = run(&app, &token, BUILD, None).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    let reason = notice(&frames, "commit_pending")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(reason.contains("rate limit"), "{reason}");
    let calls = gh.requests().len();
    let id = app_id(&frames);
    let frames = run(&app, &token, "add a dark mode", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    assert_eq!(
        gh.requests().len(),
        calls,
        "nothing called GitHub before the reset"
    );
    app.stop().await;
}
db_test!(a_429_rate_limit_holds_every_github_call_until_its_reset);

/// A recursive tree listing GitHub cut short cannot prove that someone else's commit touched
/// other paths than ours: instead of rebasing onto it (as with complete listings, see
/// `github_ref_races_rebase_or_fail_clearly`), the version stays pending and their commit stays
/// the head.
async fn a_truncated_tree_listing_never_rebases_blindly(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 3600)).await;
    let token = app.token("alice");
    let frames = run(&app, &token, BUILD, None).await;
    let id = app_id(&frames);
    let ours = notice(&frames, "commit_created")["commitSha"]
        .as_str()
        .expect("sha")
        .to_string();
    gh.truncate_tree_listings(1);
    gh.push_external_commit_before_next_ref_update(
        USER,
        REPO,
        "main",
        [(
            "CONTRIBUTING.md".to_string(),
            Some((b"be nice\n".to_vec(), "100644".to_string())),
        )]
        .into(),
    );
    let frames = run(&app, &token, "remove the readme", Some(&id)).await;
    assert_eq!(notice_types(&frames), ["version_created", "commit_pending"]);
    let head = gh.head(USER, REPO, "main").expect("head");
    let top = gh.commit_info(USER, REPO, &head).expect("their commit");
    assert_eq!(top.author_name, "External Dev", "nothing forced over it");
    assert_eq!(top.parents, vec![ours]);
    let reason = notice(&frames, "commit_pending")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains(&head), "names their head: {reason}");
    app.stop().await;
}
db_test!(a_truncated_tree_listing_never_rebases_blindly);

/// GitHub's replies say the rate-limit budget is nearly used up, with the reset two seconds
/// away: agentgate spaces its calls out over those seconds and waits for the reset instead of
/// running into the limit, and the version still gets pushed.
async fn a_low_rate_budget_spaces_github_calls_out(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 3600)).await;
    let token = app.token("alice");
    gh.set_rate_budget(3, 2);
    let started = std::time::Instant::now();
    let frames = run(&app, &token, BUILD, None).await;
    assert_eq!(
        notice_types(&frames),
        ["version_created", "repo_created", "commit_created"]
    );
    assert_eq!(gh.over_budget_calls(), 0, "never ran into the limit");
    // The reset is a whole epoch second two seconds ahead: more than one second away.
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "waited for the reset: {:?}",
        started.elapsed()
    );
    app.stop().await;
}
db_test!(a_low_rate_budget_spaces_github_calls_out);

/// A reply says nothing is left until a reset an hour away: agentgate makes no further call
/// (GitHub bans integrations that keep calling); the version waits, pending.
async fn a_used_up_rate_budget_holds_every_call_until_its_reset(kind: DbKind) {
    let gh = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &github_config(&gh, 3600)).await;
    let token = app.token("alice");
    gh.set_rate_budget(1, 3600);
    let frames = run(&app, &token, BUILD, None).await;
    assert_eq!(
        notice_types(&frames),
        ["version_created", "repo_created", "commit_pending"],
        "the one call the budget allowed created the repository"
    );
    assert_eq!(gh.requests().len(), 1);
    assert_eq!(gh.over_budget_calls(), 0, "never ran into the limit");
    let reason = notice(&frames, "commit_pending")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(reason.contains("rate limit"), "{reason}");
    app.stop().await;
}
db_test!(a_used_up_rate_budget_holds_every_call_until_its_reset);
