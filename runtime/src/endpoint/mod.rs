//! The endpoint: one listener serving WebSocket sockets at their paths and any other HTTP
//! service (e.g. a REST API) for everything else, with graceful shutdown; and
//! [`SocketService`], one socket as a `tower::Service` for a server the application runs
//! itself (an axum `Router`).
//!
//! The front door is bounded ([`HttpLimits`]): connections per node and per client address
//! (refused beyond with a short 503, before any HTTP is parsed), a deadline for the first
//! request head and for idle connections, a request head of at most 64 KiB (HTTP/1; 431
//! beyond), and an accept loop that backs off when the process is out of file descriptors and
//! says so once an interval. It speaks HTTP/1.1 (with upgrades), and HTTP/2 beside it with the
//! `http2` feature.

mod activity;
mod connection;
mod limits;
mod service;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;

use super::RuntimeShared;
use super::mount::{ErasedSocket, InvalidPattern, MountedSocket};
use super::socket::Socket;
use super::{SocketMount, transport};
use connection::{Serving, serve_connection};
pub use limits::HttpLimits;
use limits::{Slot, Slots, Throttle};
pub use service::SocketService;

/// The response body type of an endpoint.
pub type Body =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Any HTTP service the endpoint hands non-socket requests to.
pub type FallbackService =
    BoxCloneSyncService<http::Request<hyper::body::Incoming>, http::Response<Body>, Infallible>;

/// The peer address of a request's connection, in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl PeerAddr {
    /// The client address limits are counted under: an IPv4 address (IPv4-mapped IPv6 ones
    /// too) as is, an IPv6 address by its /64 prefix (one host usually has a whole /64, so a
    /// per-address limit keyed on the full address would bind nobody).
    pub fn client(&self) -> std::net::IpAddr {
        limits::ip_key(self.0.ip())
    }
}

/// Sockets at paths, plus a fallback service, on a listener of its own with the front door's
/// [`HttpLimits`]. Build with [`super::Runtime::endpoint`]. (To serve a socket from an HTTP
/// server the application already runs, mount a [`SocketService`] in it instead.)
pub struct Endpoint {
    shared: Arc<RuntimeShared>,
    sockets: Vec<(String, Arc<dyn ErasedSocket>)>,
    /// The LongPoll paths (`<path>/longpoll`), when `TransportConfig::longpoll` is on.
    longpolls: Vec<(String, Arc<dyn ErasedSocket>, Arc<transport::Sessions>)>,
    fallback: Option<FallbackService>,
    limits: HttpLimits,
}

impl Endpoint {
    pub(crate) fn new(shared: Arc<RuntimeShared>) -> Self {
        Self {
            shared,
            sockets: Vec::new(),
            longpolls: Vec::new(),
            fallback: None,
            limits: HttpLimits::default(),
        }
    }

    /// Serves `mount` at `path` (e.g. `/socket`; the WebSocket is at `/socket/websocket`,
    /// and LongPoll, when [`crate::TransportConfig::longpoll`] is on, at `/socket/longpoll`).
    /// Refuses a mount with an invalid topic pattern, naming it (see [`SocketMount`]).
    pub fn socket<S: Socket>(
        mut self,
        path: &str,
        mount: SocketMount<S>,
    ) -> Result<Self, InvalidPattern> {
        let base = path.trim_end_matches('/');
        let socket: Arc<dyn ErasedSocket> = Arc::new(MountedSocket::build(mount)?);
        if self.shared.config.longpoll {
            let sessions = transport::Sessions::new(self.shared.pubsub.node_name());
            self.longpolls
                .push((format!("{base}/longpoll"), socket.clone(), sessions));
        }
        self.sockets.push((format!("{base}/websocket"), socket));
        Ok(self)
    }

    /// Hands every request that is not for a socket to `service` (default: 404).
    pub fn fallback(mut self, service: FallbackService) -> Self {
        self.fallback = Some(service);
        self
    }

    /// Sets the limits of HTTP connections (default: [`HttpLimits::default`]).
    pub fn limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves `listener` until `shutdown` resolves, then stops accepting and drains HTTP
    /// connections for at most `grace`, closing those still open after it. (WebSockets are
    /// the runtime's: [`super::Runtime::drain`] closes them in batches, to run beside this,
    /// or [`super::Runtime::shutdown`] all at once.) Returns whether every HTTP connection
    /// finished in time.
    ///
    /// `shutdown` is any future: `async { tokio::signal::ctrl_c().await.ok(); }`, a oneshot
    /// receiver's, a cancellation token's. The connections are under this endpoint's
    /// [`HttpLimits`]; an application serving HTTP itself mounts a [`SocketService`] instead.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
        grace: Duration,
    ) -> bool {
        let slots = Slots::new(
            self.limits.connection_cap(),
            self.limits.max_connections_per_ip,
        );
        tracing::info!(
            max_connections = self.limits.connection_cap(),
            max_connections_per_ip = ?self.limits.max_connections_per_ip,
            "connection limits"
        );
        let meters = self.shared.meters.clone();
        let serving = Arc::new(Serving::new(self));
        // The caller's future is polled here only; the connections watch the token it
        // cancels when it resolves.
        let stop = serving.shutdown.clone();
        let shutdown = async move {
            shutdown.await;
            stop.cancel();
        };
        tokio::pin!(shutdown);
        let tasks = TaskTracker::new();
        let mut accept_errors = Throttle::new(WARN_EVERY);
        let mut refusals = Throttle::new(WARN_EVERY);
        let mut backoff = Duration::ZERO;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning, and
                        // say so once an interval, not once an attempt.
                        if let Some(failures) = accept_errors.hit(Instant::now()) {
                            tracing::warn!(error = %e, failures, "accept failed; backing off");
                        }
                        backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => continue,
                            () = &mut shutdown => break,
                        }
                    }
                },
                () = &mut shutdown => break,
            };
            backoff = Duration::ZERO;
            if let Some(failures) = accept_errors.flush(Instant::now()) {
                tracing::warn!(failures, "accept failed; accepting again");
            }
            let slot = match slots.acquire(peer.ip()) {
                Ok(slot) => slot,
                Err(why) => {
                    meters.refused(why);
                    limits::refuse(stream);
                    if let Some(refused) = refusals.hit(Instant::now()) {
                        tracing::warn!(
                            refused,
                            "connection limit reached (http.max_connections or \
                             http.max_connections_per_ip): refusing connections"
                        );
                    }
                    continue;
                }
            };
            if let Some(refused) = refusals.flush(Instant::now()) {
                tracing::warn!(refused, "connection limit reached: refused connections");
            }
            let _ = stream.set_nodelay(true);
            tasks.spawn(serve_connection(
                serving.clone(),
                stream,
                peer,
                Arc::new(slot),
            ));
        }
        drop(listener);
        tasks.close();
        tokio::select! {
            () = tasks.wait() => true,
            () = tokio::time::sleep(grace) => {
                tracing::warn!("grace period over; closing the remaining HTTP connections");
                serving.abort.cancel();
                false
            }
        }
    }

    async fn dispatch(
        &self,
        request: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
        slot: Arc<Slot>,
    ) -> http::Response<Body> {
        let path = request.uri().path();
        if let Some((_, socket)) = self.sockets.iter().find(|(p, _)| p == path) {
            // A WebSocket keeps its connection's slot until it ends.
            let response =
                transport::upgrade(socket.clone(), self.shared.clone(), request, peer, slot).await;
            return response.map(|b| b.map_err(|never| match never {}).boxed_unsync());
        }
        if let Some((_, socket, sessions)) = self.longpolls.iter().find(|(p, ..)| p == path) {
            let (socket, sessions) = (socket.clone(), sessions.clone());
            // A session holds a slot of the connection limits for its life, as a WebSocket
            // holds its connection's.
            let admission: transport::Admission = Box::new(move || {
                slot.another(peer.ip())
                    .map(|held| Box::new(held) as Box<dyn Send + Sync>)
            });
            let response = transport::longpoll(
                sessions,
                socket,
                self.shared.clone(),
                request,
                peer,
                Some(admission),
            )
            .await;
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

/// Accept failures and refusals are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// The first pause after a failed `accept`; it doubles with each failure in a row.
const BACKOFF_MIN: Duration = Duration::from_millis(10);

/// The longest pause after a failed `accept`.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
