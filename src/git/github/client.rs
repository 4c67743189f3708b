//! The HTTP stack under octocrab. Octocrab's ready-made stack always sends `User-Agent:
//! octocrab` (headers added to it are appended, so ours would go out as a second User-Agent) and
//! shows nothing of a successful reply's headers. This builds the same stack from octocrab's
//! public parts (rustls with the webpki roots, connect and read timeouts, base URI, extra
//! headers) with agentgate's User-Agent, and a layer that reads GitHub's rate-limit headers off
//! every reply into a [`RateBudget`] (see `pacing.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, ACCEPT, USER_AGENT};
use http::{Request, Response};
use octocrab::service::middleware::base_uri::BaseUriLayer;
use octocrab::service::middleware::extra_headers::ExtraHeadersLayer;
use octocrab::{AuthState, OctoBody, Octocrab, OctocrabBuilder};
use tower::{Layer, Service};

use super::pacing::RateBudget;
use crate::git::GitError;

/// What the client sends and how long it waits.
pub(super) struct ClientSettings<'a> {
    pub api_base: &'a str,
    pub api_version: &'a str,
    pub user_agent: &'a str,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

pub(super) fn build(
    settings: &ClientSettings<'_>,
    budget: Arc<RateBudget>,
) -> Result<Octocrab, GitError> {
    let invalid_base =
        || GitError::Invalid(format!("invalid GitHub API base {:?}", settings.api_base));
    let base: http::Uri = settings
        .api_base
        .trim_end_matches('/')
        .parse()
        .map_err(|_| invalid_base())?;
    let header = |value: &str| {
        HeaderValue::from_str(value)
            .map_err(|_| GitError::Invalid(format!("{value:?} cannot be sent as a header")))
    };
    let headers: Vec<(HeaderName, HeaderValue)> = vec![
        (USER_AGENT, header(settings.user_agent)?),
        // GitHub's documented media type and a pinned API version on every call.
        (
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        ),
        (
            HeaderName::from_static("x-github-api-version"),
            header(settings.api_version)?,
        ),
    ];
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| GitError::Invalid(format!("cannot set up TLS for GitHub: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let connector = Octocrab::builder()
        .set_connect_timeout(Some(settings.connect_timeout))
        .set_read_timeout(Some(settings.read_timeout))
        .set_connect_timeout_service(https);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, OctoBody>(connector);
    OctocrabBuilder::new_empty()
        .with_service(http)
        .with_layer(&ObserveRateLimitLayer { budget })
        .with_layer(&BaseUriLayer::new(base))
        .with_layer(&ExtraHeadersLayer::new(Arc::new(headers)))
        .with_auth(AuthState::None)
        .build()
        .map_err(|e| GitError::Invalid(format!("cannot set up the GitHub client: {e}")))
}

/// Records `x-ratelimit-remaining` and `x-ratelimit-reset` of every reply.
#[derive(Clone)]
struct ObserveRateLimitLayer {
    budget: Arc<RateBudget>,
}

impl<S> Layer<S> for ObserveRateLimitLayer {
    type Service = ObserveRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveRateLimit {
            inner,
            budget: self.budget.clone(),
        }
    }
}

#[derive(Clone)]
struct ObserveRateLimit<S> {
    inner: S,
    budget: Arc<RateBudget>,
}

impl<S, B> Service<Request<OctoBody>> for ObserveRateLimit<S>
where
    S: Service<Request<OctoBody>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<OctoBody>) -> Self::Future {
        let reply = self.inner.call(request);
        let budget = self.budget.clone();
        Box::pin(async move {
            let reply = reply.await?;
            let header = |name: &str| {
                reply
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if let (Some(remaining), Some(reset)) =
                (header("x-ratelimit-remaining"), header("x-ratelimit-reset"))
            {
                budget.record(remaining, reset);
            }
            Ok(reply)
        })
    }
}
