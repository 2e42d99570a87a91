//! The web front end: HTTP endpoint, middleware, router, controllers.
//!
//! Request path: the runtime's endpoint accepts a connection (hyper 1, HTTP/1.1 and HTTP/2)
//! and hands WebSocket upgrades to the app's socket ([`user_socket`]); every other request
//! goes through the middleware stack built by [`service`] (sensitive headers hidden from logs, request id,
//! trace span, error-body normalisation, CORS, timeout, body limit) → [`router::Router`] →
//! a controller → a context.

pub mod channels;
pub(crate) mod controllers;
pub mod error;
pub mod openapi;
pub mod rate_limit;
pub mod request;
pub mod response;
pub mod router;
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
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::app::App;
use crate::config::HttpConfig;
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
    let stack = ServiceBuilder::new()
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
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        route,
                        request_id = %request_id,
                        user_id = tracing::field::Empty,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(cors(config))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs),
        ))
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .service_fn(move |request| {
            let (app, router) = (app.clone(), router.clone());
            async move { Ok::<_, Infallible>(router.dispatch(&app, request).await) }
        });
    BoxCloneSyncService::new(stack)
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
