//! The HTTP side of metrics: [`HttpMetricsLayer`], which counts and times every REST request,
//! and [`scrape`], the `GET /metrics` response.
//!
//! The layer sits outside every other layer of the REST stack, so it sees each request's final
//! status, the 408 of the timeout and the 413 of the body limit included. A request is timed
//! until its response head is ready (not while its body streams); one whose client went away
//! before that is not counted. WebSocket upgrades never reach the REST stack: the runtime
//! counts them as connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service};

use super::Metrics;
use super::{CONTENT_TYPE as TEXT_FORMAT, HTTP_REQUEST_DURATION, HTTP_REQUESTS, METRICS_PATH};
use crate::app::App;
use crate::web::UNMATCHED_ROUTE;
use crate::web::router::Router;

/// Counts and times the requests of the service it wraps, labelled with the route template
/// (from the router), the method and the status class.
#[derive(Clone)]
pub struct HttpMetricsLayer {
    router: Arc<Router>,
    scrape_route: bool,
}

impl HttpMetricsLayer {
    /// A layer naming routes with `router`; `scrape_route`: `/metrics` is served on this
    /// listener (labelled as itself rather than `unmatched`).
    pub fn new(router: Arc<Router>, scrape_route: bool) -> Self {
        Self {
            router,
            scrape_route,
        }
    }

    /// The route label of `path`.
    fn route(&self, path: &str) -> &'static str {
        match self.router.template(path) {
            Some(template) => template,
            None if self.scrape_route && path == METRICS_PATH => METRICS_PATH,
            None => UNMATCHED_ROUTE,
        }
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> HttpMetrics<S> {
        HttpMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`HttpMetricsLayer`] makes.
#[derive(Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    layer: HttpMetricsLayer,
}

impl<S, B, R> Service<http::Request<B>> for HttpMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let route = self.layer.route(request.uri().path());
        let method = method_label(request.method());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let labels = [
                ("route", route),
                ("method", method),
                ("status_class", status_class(response.status())),
            ];
            metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
            metrics::histogram!(HTTP_REQUEST_DURATION, &labels).record(started.elapsed());
            Ok(response)
        })
    }
}

/// The method as a label: the standard ones by name, any other as `other` (a client can send
/// any token as a method).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// `1xx` … `5xx`.
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The answer to a request for [`METRICS_PATH`]: every metric in the Prometheus text format
/// for `GET` (and `HEAD`), `None` for any other method (the caller answers 405).
pub fn scrape(
    metrics: &Metrics,
    app: &App,
    method: &Method,
) -> Option<http::Response<Full<Bytes>>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let mut response = http::Response::new(Full::new(Bytes::from(metrics.render(app))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_few() {
        let layer = HttpMetricsLayer::new(Arc::new(Router::new(false)), true);
        assert_eq!(layer.route("/api/v1/users/42"), "/api/v1/users/{id}");
        assert_eq!(layer.route("/metrics"), "/metrics");
        assert_eq!(layer.route("/wp-login.php"), UNMATCHED_ROUTE);
        let layer = HttpMetricsLayer::new(Arc::new(Router::new(false)), false);
        assert_eq!(layer.route("/metrics"), UNMATCHED_ROUTE);
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").expect("a method")),
            "other"
        );
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(status_class(StatusCode::REQUEST_TIMEOUT), "4xx");
        assert_eq!(status_class(StatusCode::SWITCHING_PROTOCOLS), "1xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
    }
}
