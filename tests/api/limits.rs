use std::sync::Arc;

use agentgate::limits::Limiter;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{spawn_app, spawn_app_with, DbKind};

async fn message_limit_reports_usage_and_headers(kind: DbKind) {
    let app = spawn_app_with(kind, "[limits]\ndaily_messages = 3\n").await;
    let token = app.token("alice");
    let response = app.get("/message-limit", &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-dailylimit-limit"], "3");
    assert_eq!(response.headers()["x-dailylimit-remaining"], "3");
    assert_eq!(response.headers()["x-dailylimit-usage"], "0");
    let reset = response.headers()["x-dailylimit-reset"]
        .to_str()
        .expect("ascii")
        .to_string();
    let reset = chrono::DateTime::parse_from_rfc3339(&reset).expect("rfc3339");
    let now = chrono::Utc::now();
    assert!(reset > now && reset <= now + chrono::Duration::days(1));
    assert_eq!(
        reset.format("%H:%M:%S").to_string(),
        "00:00:00",
        "resets at midnight UTC"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["isUserLimitReached"], false);
    assert_eq!(body["dailyMessageLimit"], 3);
    assert_eq!(body["remainingMessages"], 3);
    assert_eq!(body["currentUsage"], 0);

    app.state.limiter.reserve("alice").await.expect("reserve");
    let body: Value = app
        .get("/message-limit", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["currentUsage"], 1);
    assert_eq!(body["remainingMessages"], 2);
    app.stop().await;
}
db_test!(message_limit_reports_usage_and_headers);

async fn concurrent_reservations_never_overshoot(kind: DbKind) {
    let app = spawn_app_with(kind, "[limits]\ndaily_messages = 7\n").await;
    let limiter = Arc::new(app.state.limiter.clone());
    let attempts = (0..50).map(|_| {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.reserve("racer").await.is_ok() })
    });
    let results = futures::future::join_all(attempts).await;
    let granted = results
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    assert_eq!(
        granted, 7,
        "exactly the limit is granted under 50 concurrent attempts"
    );
    let status = app.state.limiter.status("racer").await.expect("status");
    assert_eq!(status.current_usage, 7);
    assert!(status.is_user_limit_reached);
    app.stop().await;
}
db_test!(concurrent_reservations_never_overshoot);

async fn admin_override_is_privileged_only(kind: DbKind) {
    let app = spawn_app(kind).await;
    let user = app.token("alice");
    let admin = app.privileged_token("admin");
    let body = json!({"dailyMessageLimit": 42});
    let response = app
        .http
        .put(app.url("/admin/users/alice/limit"))
        .bearer_auth(&user)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<Value>().await.expect("json")["code"],
        "forbidden"
    );
    let response = app
        .http
        .put(app.url("/admin/users/alice/limit"))
        .bearer_auth(&admin)
        .json(&json!({"dailyMessageLimit": "many"}))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.expect("json")["code"],
        "invalid_body"
    );
    let response = app
        .http
        .put(app.url("/admin/users/alice/limit"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 200);
    let body: Value = app
        .get("/message-limit", &user)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["dailyMessageLimit"], 42);
    // A message taken reports the override too (it comes back with the count).
    let taken = app.state.limiter.reserve("alice").await.expect("reserve");
    assert_eq!(taken.status.daily_message_limit, 42);
    assert_eq!(taken.status.remaining_messages, 41);
    let other: Value = app
        .get("/message-limit", &app.token("carol"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(other["dailyMessageLimit"], 10, "override is per user");
    app.stop().await;
}
db_test!(admin_override_is_privileged_only);

async fn limiter_fails_closed_when_the_database_fails(kind: DbKind) {
    let app = spawn_app(kind).await;
    app.state
        .db
        .execute_unprepared("DROP TABLE usage_counters")
        .await
        .expect("drop");
    let limiter = Limiter::new(app.state.db.clone(), 10);
    assert!(
        limiter.reserve("alice").await.is_err(),
        "reserve refuses on database errors"
    );
    let response = app.get("/message-limit", &app.token("alice")).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "service_unavailable");
    assert!(
        !body["message"]
            .as_str()
            .unwrap_or("")
            .contains("usage_counters"),
        "no internals: {body}"
    );
    let response = app
        .post_message(&app.token("alice"), &json!({"message": "build a todo app"}))
        .await;
    assert_eq!(
        response.status(),
        503,
        "no message goes through without a working limiter"
    );
    app.stop().await;
}
db_test!(limiter_fails_closed_when_the_database_fails);
