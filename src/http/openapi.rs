//! The OpenAPI description's shared parts: document info, tags, the bearer scheme, the error body
//! and the error responses many routes share. Each route documents itself next to its handler
//! with `#[utoipa::path]`, and is registered with `utoipa_axum::routes!`, which adds the handler
//! to the router and its description to the document in one step.
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Object, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

/// The name of the bearer security scheme, as used in `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "agentgate",
        description = "The gateway between people who build apps by chatting with an agent and \
everything that turns the agent's output into a running app.\n\n\
Every route needs `Authorization: Bearer <JWT>` unless its operation lists no security \
requirement. Every error of the gateway's own is a JSON `ErrorBody`: a stable machine-readable \
`code` and a human-readable `message`; each operation lists the codes it can answer with. \
Streams (`POST /message`, `GET /runs/{id}/events`) are Server-Sent Events: `event:` / `id:` / \
`data:` blocks named `message`, `error` and `done` (always last, exactly once)."
    ),
    modifiers(&Document),
    components(
        schemas(ErrorBody, Binary),
        responses(Unauthorized, InvalidId, AppNotFound, PayloadTooLarge, Internal, Unavailable)
    ),
    tags(
        (name = "health", description = "Liveness and database reachability"),
        (name = "auth", description = "Who the caller is, and the dev sign-in"),
        (name = "apps", description = "The caller's apps and their conversations"),
        (name = "analytics", description = "Client analytics events, counted in the metrics"),
        (name = "limits", description = "Daily message limits"),
        (name = "runs", description = "Sending a message starts a run; its events are a resumable stream"),
        (name = "files", description = "Presigned links to an app version's files, local downloads, the list of versions and diffs between them"),
        (name = "deployments", description = "Deploying an app version and following the deployment"),
        (name = "webhooks", description = "The caller's webhook endpoints (Standard Webhooks) and their deliveries"),
        (name = "preview", description = "Local preview deploys: public, sandboxed sites"),
        (name = "git", description = "The local host's repositories, read-only over git's smart HTTP protocol (the bearer token is the Basic password)"),
        (name = "github", description = "Dev-only git endpoints (`git.dev_endpoints`), with the app.build bodies"),
        (name = "web", description = "The built-in web client"),
        (name = "metrics", description = "Prometheus metrics"),
        (name = "docs", description = "This description and its docs page"),
    )
)]
pub struct ApiDoc;

/// The bearer scheme; no license (the crate declares none).
struct Document;

impl Modify for Document {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.license = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT: HS256 with the shared secret, or from the configured OIDC \
provider's JWKS. Its `sub` is the user id.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The body of every error the gateway answers with. Some conflicts add fields of their own
/// next to these two (`runId` and `status` for `run_not_active`, `version` for
/// `version_pending`, `runId` for `run_active`). Fixed codes: `unauthorized`, `forbidden`,
/// `not_found`, `daily_message_limit_reached`, `payload_too_large`, `service_unavailable`,
/// `internal_error`; the others are listed by the operations that use them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "not_found", "message": "app not found", "error": "app not found"}))]
pub struct ErrorBody {
    /// Stable and machine-readable, e.g. `invalid_id`.
    pub code: String,
    /// For people; its wording may change.
    pub message: String,
    /// The same text as `message`, which app.build clients read.
    pub error: String,
}

/// Raw bytes, for responses whose content type depends on the file.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// The description of the whole API: [`ApiDoc`] plus everything the routers collected, with the
/// axum-only spelling of catch-all parameters (`{*key}`) turned into OpenAPI's (`{key}`).
pub fn finish(collected: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut openapi = ApiDoc::openapi();
    openapi.merge(collected);
    let paths = std::mem::take(&mut openapi.paths.paths);
    openapi.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (openapi_path(&path), item))
        .collect();
    openapi
}

/// `/files/{*key}` → `/files/{key}`.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// A JSON error response with one example per code.
fn error_response(description: &str, examples: &[(&str, &str)]) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .examples_from_iter(examples.iter().map(|(code, message)| {
            (
                *code,
                ExampleBuilder::new()
                    .value(Some(
                        json!({ "code": code, "message": message, "error": message }),
                    ))
                    .build(),
            )
        }))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
}

macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident: $description:literal, [$(($code:literal, $message:literal)),+ $(,)?];)+) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (
                        stringify!($name),
                        error_response($description, &[$(($code, $message)),+]).into(),
                    )
                }
            }
        )+
    };
}

error_responses! {
    /// 400 for a route whose only bad input is a malformed path id.
    InvalidId: "`invalid_id`: the id in the path is not a UUID.",
        [("invalid_id", "app id \"nope\" is not a UUID")];
    /// 404 for a route on one app: unknown, deleted, or another user's (never told apart).
    AppNotFound: "`not_found`: no such app of the caller's.",
        [("not_found", "app not found")];
    /// 413 for routes with a JSON body (`server.max_body_bytes`).
    PayloadTooLarge: "`payload_too_large`: the body is larger than `server.max_body_bytes`.",
        [("payload_too_large", "request body is too large")];
    /// 500: an unexpected failure, e.g. of the database; the cause is logged, never returned.
    Internal: "`internal_error`: an unexpected failure; the cause is logged, never returned.",
        [("internal_error", "internal error")];
    /// 503: a dependency is down, or the request outlived `server.request_timeout_secs`.
    Unavailable: "`service_unavailable`: the request took longer than \
`server.request_timeout_secs`, or a dependency (storage, the limiter's database) is unavailable.",
        [("service_unavailable", "the request took too long")];
}

/// 401 for every route behind the bearer scheme, with `WWW-Authenticate`.
pub struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        let mut response = error_response(
            "`unauthorized`: the bearer token is missing, malformed, expired or not valid.",
            &[("unauthorized", "missing bearer token")],
        );
        response.headers.insert(
            "WWW-Authenticate".into(),
            HeaderBuilder::new()
                .schema(Object::with_type(Type::String))
                .description(Some(
                    "`Bearer realm=\"agentgate\", error=\"invalid_token\"`",
                ))
                .build(),
        );
        ("Unauthorized", response.into())
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;
    use crate::error::ApiError;

    /// `ErrorBody` is what `ApiError` renders, field for field.
    #[tokio::test]
    async fn error_body_matches_the_rendered_error() {
        let response = ApiError::bad_request("invalid_id", "bad").into_response();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let body: ErrorBody = serde_json::from_value(value.clone()).expect("an ErrorBody");
        assert_eq!(
            (body.code.as_str(), body.message.as_str()),
            ("invalid_id", "bad")
        );
        assert_eq!(body.error, body.message);
        assert_eq!(value.as_object().map(|o| o.len()), Some(3));
    }

    #[test]
    fn catch_all_parameters_use_the_openapi_spelling() {
        assert_eq!(openapi_path("/files/{*key}"), "/files/{key}");
        assert_eq!(
            openapi_path("/preview/{app_id}/{*path}"),
            "/preview/{app_id}/{path}"
        );
        assert_eq!(openapi_path("/apps/{id}"), "/apps/{id}");
    }
}
