//! The endpoint: one listener serving WebSocket sockets at their paths and any other HTTP
//! service (e.g. a REST API) for everything else, with graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;

use super::RuntimeShared;
use super::mount::{ErasedSocket, MountedSocket};
use super::socket::Socket;
use super::{SocketMount, transport};

/// The response body type of an endpoint.
pub type Body =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Any HTTP service the endpoint hands non-socket requests to.
pub type FallbackService =
    BoxCloneSyncService<http::Request<hyper::body::Incoming>, http::Response<Body>, Infallible>;

/// The peer address of a request's connection, in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Sockets at paths, plus a fallback service. Build with [`super::Runtime::endpoint`].
pub struct Endpoint {
    shared: Arc<RuntimeShared>,
    sockets: Vec<(String, Arc<dyn ErasedSocket>)>,
    fallback: Option<FallbackService>,
}

impl Endpoint {
    pub(crate) fn new(shared: Arc<RuntimeShared>) -> Self {
        Self {
            shared,
            sockets: Vec::new(),
            fallback: None,
        }
    }

    /// Serves `mount` at `path` (e.g. `/socket`; the WebSocket is at `/socket/websocket`).
    pub fn socket<S: Socket>(mut self, path: &str, mount: SocketMount<S>) -> Self {
        let path = format!("{}/websocket", path.trim_end_matches('/'));
        self.sockets
            .push((path, Arc::new(MountedSocket::from(mount))));
        self
    }

    /// Hands every request that is not for a socket to `service` (default: 404).
    pub fn fallback(mut self, service: FallbackService) -> Self {
        self.fallback = Some(service);
        self
    }

    /// Serves `listener` until `shutdown` is cancelled, then stops accepting and drains HTTP
    /// connections for at most `grace`. (WebSockets are closed by [`super::Runtime::shutdown`].)
    /// Returns whether every HTTP connection finished in time.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> bool {
        let this = Arc::new(self);
        let graceful = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let this = this.clone();
            let service = hyper::service::service_fn(
                move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(PeerAddr(peer));
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.dispatch(request, peer).await) }
                },
            );
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => true,
            () = tokio::time::sleep(grace) => {
                tracing::warn!("grace period over; closing the remaining HTTP connections");
                false
            }
        }
    }

    async fn dispatch(
        &self,
        request: http::Request<hyper::body::Incoming>,
        peer: std::net::SocketAddr,
    ) -> http::Response<Body> {
        let path = request.uri().path();
        if let Some((_, socket)) = self.sockets.iter().find(|(p, _)| p == path) {
            let response =
                transport::upgrade(socket.clone(), self.shared.clone(), request, peer).await;
            return response.map(|b| b.map_err(|never| match never {}).boxed_unsync());
        }
        match &self.fallback {
            Some(service) => match service.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            None => {
                let body = Full::new(Bytes::from_static(br#"{"errors":{"detail":"Not Found"}}"#));
                let mut response =
                    http::Response::new(body.map_err(|never| match never {}).boxed_unsync());
                *response.status_mut() = http::StatusCode::NOT_FOUND;
                response
            }
        }
    }
}
