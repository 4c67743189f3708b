//! The fake Koyeb holds requests to Koyeb's official API description
//! (tests/fixtures/koyeb-openapi) and answers as it documents.
use reqwest::Method;
use serde_json::{json, Value};

use crate::fake_koyeb::{FakeKoyeb, TOKEN};

async fn send(fake: &FakeKoyeb, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.url))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the fake Koyeb answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A field Koyeb does not know (it would be dropped silently), a value of the wrong type and an
/// undescribed query parameter each get the described 400 "Validation error" with `fields`, and
/// are recorded; nothing is created.
#[tokio::test]
async fn requests_that_break_koyebs_description_get_400_and_are_recorded() {
    let fake = FakeKoyeb::start().await;
    let invalid = [
        (
            Method::POST,
            "/v1/apps",
            Some(json!({ "name": "demo-app", "region": "fra" })),
            "region",
        ),
        (
            Method::POST,
            "/v1/apps",
            Some(json!({ "name": ["demo-app"] })),
            "/name",
        ),
        (Method::GET, "/v1/apps?app_name=demo-app", None, "app_name"),
        (
            Method::POST,
            "/v1/services",
            Some(json!({ "app_id": "x", "definition": { "name": "web", "port": 8080 } })),
            "port",
        ),
    ];
    for (method, path, body, named) in invalid {
        let (status, answer) = send(&fake, method.clone(), path, body).await;
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert_eq!(answer["message"], "Validation error", "{answer}");
        let fields = answer["fields"].to_string();
        assert!(fields.contains(named), "{fields} names {named}");
    }
    assert!(fake.app_names().is_empty(), "nothing was created");
    let violations = fake.take_request_violations();
    assert_eq!(violations.len(), 4, "{violations:#?}");

    // A valid request goes through; its answer follows the description too.
    let (status, created) = send(
        &fake,
        Method::POST,
        "/v1/apps",
        Some(json!({ "name": "demo-app" })),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(fake.response_violations(), Vec::<String>::new());
}

/// A taken name is a validation error in Koyeb's description: 400 with the field named.
#[tokio::test]
async fn a_taken_name_is_answered_as_the_description_documents() {
    let fake = FakeKoyeb::start().await;
    let create = || {
        send(
            &fake,
            Method::POST,
            "/v1/apps",
            Some(json!({ "name": "demo-app" })),
        )
    };
    assert_eq!(create().await.0, 200);
    let (status, answer) = create().await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["fields"],
        json!([{ "field": "name", "description": "already exists" }])
    );
    assert_eq!(fake.app_names(), ["demo-app"]);
}
