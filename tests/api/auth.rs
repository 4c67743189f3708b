use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::get;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{spawn_app, spawn_app_with, DbKind, TestApp};

const PRIVATE_PEM: &[u8] = include_bytes!("../fixtures/jwks/rsa_private.pem");
const PUBLIC_PEM: &[u8] = include_bytes!("../fixtures/jwks/rsa_public.pem");
const JWKS: &str = include_str!("../fixtures/jwks/jwks.json");
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "agentgate-tests";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rs256(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    let key = EncodingKey::from_rsa_pem(PRIVATE_PEM).expect("rsa key");
    jsonwebtoken::encode(&header, claims, &key).expect("encode")
}

fn good_claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now()})
}

async fn assert_401(app: &TestApp, token: &str, why: &str) {
    let response = app.get("/apps", token).await;
    assert_eq!(response.status(), 401, "{why}");
    assert!(
        response.headers().contains_key("www-authenticate"),
        "{why}: WWW-Authenticate"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "unauthorized", "{why}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{why}"
    );
}

/// Serves the test JWKS and counts how often it is fetched.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                ([("content-type", "application/json")], JWKS)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, hits)
}

async fn spawn_jwks_app(kind: DbKind) -> (TestApp, Arc<AtomicUsize>) {
    let (url, hits) = jwks_server().await;
    let toml = format!(
        "[auth]\nmode = \"jwks\"\njwks_url = {url:?}\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\nprivileged_users = [\"root\"]\njwks_refresh_min_secs = 60\n"
    );
    (spawn_app_with(kind, &toml).await, hits)
}

async fn health_is_public_and_checks_the_database(kind: DbKind) {
    let app = spawn_app(kind).await;
    let response = app
        .http
        .get(app.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["database"], "ok");
    app.stop().await;
}
db_test!(health_is_public_and_checks_the_database);

async fn hs256_attacks_are_rejected(kind: DbKind) {
    let app = spawn_app(kind).await;
    let valid = app.token("alice");
    assert_eq!(app.get("/apps", &valid).await.status(), 200);

    let response = app
        .http
        .get(app.url("/apps"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401, "no header");
    assert_401(&app, "garbage", "garbage").await;
    assert_401(&app, "a.b.c", "three garbage segments").await;

    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = json!({"sub": "alice", "exp": now() + 600});
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    assert_401(&app, &none, "alg none").await;

    let key = EncodingKey::from_secret(b"not-the-secret");
    let forged =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("encode");
    assert_401(&app, &forged, "wrong secret").await;

    // Tampered payload with the original signature.
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&json!({"sub": "mallory", "exp": now() + 600})),
        parts[2]
    );
    assert_401(&app, &tampered, "tampered payload").await;

    let secret =
        std::fs::read_to_string(app.data_dir.path().join("hs256.secret")).expect("secret file");
    let key = EncodingKey::from_secret(secret.trim().as_bytes());
    let sign = |claims: &Value| {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("encode")
    };
    assert_401(
        &app,
        &sign(&json!({"sub": "alice", "exp": now() - 3600})),
        "expired",
    )
    .await;
    assert_401(
        &app,
        &sign(&json!({"sub": "alice", "exp": now() + 3600, "nbf": now() + 1800})),
        "not yet valid",
    )
    .await;
    assert_401(&app, &sign(&json!({"exp": now() + 3600})), "no sub").await;
    assert_401(&app, &sign(&json!({"sub": "alice"})), "no exp").await;
    let rs = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(PRIVATE_PEM).expect("key"),
    )
    .expect("encode");
    assert_401(&app, &rs, "RS256 token in hs256 mode").await;
    app.stop().await;
}
db_test!(hs256_attacks_are_rejected);

async fn jwks_mode_verifies_and_rejects_attacks(kind: DbKind) {
    let (app, hits) = spawn_jwks_app(kind).await;
    let good = rs256(&good_claims("bob"), Some("test-key-1"));
    let response = app.get("/auth/is-privileged-user", &good).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"isPrivilegedUser": false})
    );

    let root = rs256(&good_claims("root"), Some("test-key-1"));
    let body: Value = app
        .get("/auth/is-neon-employee", &root)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        body,
        json!({"isNeonEmployee": true}),
        "allow-listed user is privileged"
    );

    // HS/RS confusion: sign HS256 with the public key as the shared secret.
    let confused = jsonwebtoken::encode(
        &{
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("test-key-1".into());
            h
        },
        &good_claims("mallory"),
        &EncodingKey::from_secret(PUBLIC_PEM),
    )
    .expect("encode");
    assert_401(&app, &confused, "HS256 signed with the public key").await;

    let mut wrong_iss = good_claims("bob");
    wrong_iss["iss"] = json!("https://evil.test");
    assert_401(&app, &rs256(&wrong_iss, Some("test-key-1")), "wrong issuer").await;
    let mut wrong_aud = good_claims("bob");
    wrong_aud["aud"] = json!("someone-else");
    assert_401(
        &app,
        &rs256(&wrong_aud, Some("test-key-1")),
        "wrong audience",
    )
    .await;
    let mut expired = good_claims("bob");
    expired["exp"] = json!(now() - 3600);
    assert_401(&app, &rs256(&expired, Some("test-key-1")), "expired").await;

    // Unknown kids trigger at most one refresh per interval, not one per request.
    let before = hits.load(Ordering::SeqCst);
    for i in 0..5 {
        assert_401(
            &app,
            &rs256(&good_claims("bob"), Some(&format!("forged-{i}"))),
            "unknown kid",
        )
        .await;
    }
    let refreshes = hits.load(Ordering::SeqCst) - before;
    assert!(
        refreshes <= 1,
        "unknown kids caused {refreshes} JWKS fetches"
    );
    app.stop().await;
}
db_test!(jwks_mode_verifies_and_rejects_attacks);

async fn privileged_claim_is_honoured(kind: DbKind) {
    let app = spawn_app(kind).await;
    let body: Value = app
        .get("/auth/is-privileged-user", &app.privileged_token("p"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["isPrivilegedUser"], true);
    let body: Value = app
        .get("/auth/is-privileged-user", &app.token("u"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["isPrivilegedUser"], false);
    app.stop().await;
}
db_test!(privileged_claim_is_honoured);

async fn unknown_routes_are_json_404_after_auth(kind: DbKind) {
    let app = spawn_app(kind).await;
    let response = app
        .http
        .get(app.url("/nope"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        401,
        "unknown routes are not an auth bypass"
    );
    let response = app.get("/nope", &app.token("a")).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "not_found");

    // What axum rejects before a handler runs has the same JSON shape.
    let token = app.token("a");
    let undecodable = app.get("/apps/%FF", &token).await;
    assert_eq!(undecodable.status(), 400);
    let body: Value = undecodable.json().await.expect("json");
    assert_eq!(body["code"], "invalid_request", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let bad_query = app
        .get(
            "/apps/00000000-0000-0000-0000-000000000000/read-url?version=%FF%FE",
            &token,
        )
        .await;
    assert!(bad_query.status().is_client_error());
    assert!(bad_query.json::<Value>().await.expect("json")["code"].is_string());
    let wrong_method = app
        .http
        .patch(app.url("/apps"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("patch");
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.expect("json");
    assert_eq!(body["code"], "method_not_allowed");
    app.stop().await;
}
db_test!(unknown_routes_are_json_404_after_auth);

async fn web_client_and_dev_login(kind: DbKind) {
    let app = spawn_app(kind).await;
    let page = app.http.get(app.url("/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(page.text().await.expect("html").contains("<script"));
    let js = app.http.get(app.url("/app.js")).send().await.expect("js");
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        app.http
            .get(app.url("/auth/dev-login"))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    let response = app
        .http
        .post(app.url("/auth/dev-login"))
        .json(&json!({"user": "carol"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let token = body["token"].as_str().expect("token");
    assert_eq!(
        app.get("/apps", token).await.status(),
        200,
        "the minted token works"
    );
    let bad = app
        .http
        .post(app.url("/auth/dev-login"))
        .json(&json!({"user": "no spaces"}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
    app.stop().await;

    let prod = spawn_app_with(kind, "[server]\ndev_login = false\n").await;
    assert_eq!(
        prod.http
            .get(prod.url("/auth/dev-login"))
            .send()
            .await
            .expect("get")
            .status(),
        404
    );
    let response = prod
        .http
        .post(prod.url("/auth/dev-login"))
        .json(&json!({"user": "carol"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 404, "no token minting when disabled");
    prod.stop().await;
}
db_test!(web_client_and_dev_login);

async fn metrics_are_public_and_count_runs(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let response = app
        .post_message(&token, &json!({"message": "build a todo list app"}))
        .await;
    crate::helpers::SseReader::new(response).collect().await;
    let mut text = String::new();
    // The worker records the deployment a moment after the stream reported it.
    for _ in 0..20 {
        text = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.contains("agentgate_deployments_total") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for name in [
        "agentgate_active_runs",
        "agentgate_active_subscribers",
        "agentgate_runs_total{outcome=\"succeeded\"}",
        "agentgate_events_relayed_total",
        "agentgate_relay_latency_seconds_bucket",
        "agentgate_storage_operations_total{op=\"put\",result=\"ok\"}",
        "agentgate_deployments_total{outcome=\"healthy\"}",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    app.stop().await;
}
db_test!(metrics_are_public_and_count_runs);
