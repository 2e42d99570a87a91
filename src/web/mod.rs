//! The web front end: HTTP endpoint, middleware, router, controllers.
//!
//! Request path: the runtime's endpoint accepts a connection (hyper 1, HTTP/1.1 and HTTP/2)
//! and hands WebSocket upgrades to the app's socket ([`user_socket`]); every other request
//! goes through the middleware stack built by [`service`] (metrics, when recorded; sensitive
//! headers hidden from logs, request id, trace span, error-body normalisation, CORS, timeout,
//! body limit) → [`router::Router`] → a controller → a context. In `dev` and `test`,
//! `GET /metrics` is answered before the router ([`crate::metrics`]); in `dev`, a `GET` no
//! route matches is the browser client's ([`site`]).

pub mod channels;
pub(crate) mod controllers;
pub mod error;
pub mod openapi;
pub mod rate_limit;
pub mod request;
pub mod response;
pub mod router;
pub mod site;
pub mod user_socket;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER};
use http::{HeaderName, Method, StatusCode};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, OnResponse as _, TraceLayer};
use tracing::Level;

use crate::app::App;
use crate::config::HttpConfig;
use crate::metrics::http::HttpMetricsLayer;
use response::BoxBody;

/// The request-id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of a request no route matched (it is answered 404).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The whole HTTP service, cloned per connection.
pub type HttpService =
    BoxCloneSyncService<http::Request<hyper::body::Incoming>, http::Response<BoxBody>, Infallible>;

/// Builds the middleware stack around the router for `app`.
pub fn service(app: Arc<App>) -> HttpService {
    let config = &app.config.http;
    let router = Arc::new(router::Router::new(
        app.config.env == crate::config::Environment::Dev,
    ));
    let templates = router.clone();
    let site = (app.config.env == crate::config::Environment::Dev)
        .then(|| Arc::new(site::Site::new(app.config.web.static_dir.clone())));
    // Outermost, so that it sees every final status (408 and 413 of the layers below too).
    let scrape_here = app.metrics.as_ref().is_some_and(|m| m.on_main_listener());
    let metrics = app
        .metrics
        .is_some()
        .then(|| HttpMetricsLayer::new(router.clone(), scrape_here));
    let stack = ServiceBuilder::new()
        .option_layer(metrics)
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            COOKIE,
        ]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .map_response(error::normalize)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |request: &http::Request<_>| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let route = templates
                        .template(request.uri().path())
                        .unwrap_or(UNMATCHED_ROUTE);
                    let span = tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        route,
                        request_id = %request_id,
                        user_id = tracing::field::Empty,
                        // Set only when traces are exported (`otel.endpoint`).
                        otel.name = tracing::field::Empty,
                        otel.kind = tracing::field::Empty,
                    );
                    crate::telemetry::http_request(&span, request, route);
                    span
                })
                .on_response(
                    |response: &http::Response<_>, latency: Duration, span: &tracing::Span| {
                        crate::telemetry::http_response(span, response.status());
                        DefaultOnResponse::new()
                            .level(Level::INFO)
                            .on_response(response, latency, span);
                    },
                ),
        )
        .layer(cors(config))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs),
        ))
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .service_fn(move |request: http::Request<_>| {
            let (app, router, site) = (app.clone(), router.clone(), site.clone());
            async move {
                if scrape_here && request.uri().path() == crate::metrics::METRICS_PATH {
                    return Ok::<_, Infallible>(scrape(&app, request.method()));
                }
                if let Some(site) = site
                    && site.wants(&request, router.template(request.uri().path()).is_some())
                {
                    return Ok(site.serve(request).await);
                }
                Ok::<_, Infallible>(router.dispatch(&app, request).await)
            }
        });
    BoxCloneSyncService::new(stack)
}

/// `GET /metrics` on the main listener (`dev` and `test`): the scrape, or 405.
fn scrape(app: &App, method: &Method) -> response::Response {
    app.metrics
        .as_ref()
        .and_then(|metrics| crate::metrics::http::scrape(metrics, app, method))
        .unwrap_or_else(|| error::ApiError::MethodNotAllowed("GET, HEAD").into_response())
}

fn cors(config: &HttpConfig) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE, REQUEST_ID])
        .expose_headers([AUTHORIZATION, LOCATION, RETRY_AFTER, REQUEST_ID])
        .max_age(Duration::from_secs(600));
    if config.cors_origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let origins = config
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect::<Vec<http::HeaderValue>>();
        layer.allow_origin(AllowOrigin::list(origins))
    }
}
