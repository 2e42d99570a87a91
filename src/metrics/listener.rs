//! The separate metrics listener (`metrics.bind`): a small HTTP/1.1 server answering only
//! `GET /metrics` (404 for any other path, 405 for another method), on an address meant for
//! the internal network, so that `prod` never serves metrics on its public port.
//!
//! It takes at most [`MAX_CONNECTIONS`] connections at once (a scraper needs one; more are
//! closed at once), gives each [`HEADER_READ_TIMEOUT`] to send a request head, and serves
//! through the drain (the closes and falling gauges stay visible): it stops accepting when
//! the server is done (the end of `Server::wait`, or the server dropped), letting a scrape in
//! progress finish for up to [`SHUTDOWN_GRACE`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::METRICS_PATH;
use crate::app::App;

/// Connections the metrics listener serves at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection has to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a scrape in progress may go on once the listener stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Binds the metrics listener on `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` of `app` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    // Out of file descriptors, say: give the process a moment.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Over the limit: the connection is closed at once.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(answer(&app, &request)) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// The answer to one request on the metrics listener.
fn answer<B>(app: &App, request: &http::Request<B>) -> http::Response<Full<Bytes>> {
    if request.uri().path() != METRICS_PATH {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    let scraped = app
        .metrics
        .as_ref()
        .and_then(|metrics| super::http::scrape(metrics, app, request.method()));
    match scraped {
        Some(response) => response,
        None => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
