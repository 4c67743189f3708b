//! The app's `appUrl` is known while it deploys: clients read the app once when a stream starts
//! and show its preview pane from that URL.
use std::time::Duration;

use serde_json::{json, Value};

use crate::db_test;
use crate::fake_github::FakeGitHub;
use crate::fake_koyeb::FakeKoyeb;
use crate::helpers::{spawn_app_with, DbKind};
use crate::koyeb::{app_view, koyeb_git_config, status_of, BUILD};

async fn a_koyeb_apps_url_is_on_the_app_as_soon_as_its_service_exists(kind: DbKind) {
    let koyeb = FakeKoyeb::start().await;
    let github = FakeGitHub::start().await;
    // The run's stream stops waiting for the outcome at once: the deployment will hang.
    let config = koyeb_git_config(&koyeb, &github, "", "")
        .replace("stream_wait_secs = 60", "stream_wait_secs = 0");
    let app = spawn_app_with(kind, &config).await;
    let token = app.token("alice");
    // The service is created, then never gets past STARTING.
    koyeb.hang_next();
    let response = app
        .post_message(
            &token,
            &json!({"message": BUILD, "settings": {"demo": {"eventDelayMs": 0}}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let app_id = response.headers()["x-app-id"]
        .to_str()
        .expect("app id")
        .to_string();
    // Leaving the stream does not cancel the run.
    drop(response);
    let expected = format!(
        "https://ag-{}-fake.koyeb.app",
        &app_id.replace('-', "")[..12]
    );
    let mut view = Value::Null;
    for _ in 0..200 {
        if app.get(&format!("/apps/{app_id}"), &token).await.status() == 200 {
            view = app_view(&app, &token, &app_id).await;
            if view["appUrl"] == expected.as_str() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["appUrl"], expected.as_str(), "{view}");
    let deployment = status_of(&app, &token, &app_id).await;
    assert_eq!(deployment["type"], "DEPLOYMENT_IN_PROGRESS", "{deployment}");
    assert_eq!(deployment["isDeployed"], false);
    app.stop().await;
}
db_test!(a_koyeb_apps_url_is_on_the_app_as_soon_as_its_service_exists);
