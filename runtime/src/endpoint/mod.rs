//! The endpoint: one listener serving WebSocket sockets at their paths and any other HTTP
//! service (e.g. a REST API) for everything else, with graceful shutdown.
//!
//! The front door is bounded ([`HttpLimits`]): connections per node and per client address
//! (refused beyond with a short 503, before any HTTP is parsed), a deadline for the first
//! request head and for idle connections, a request head of at most 64 KiB (HTTP/1; 431
//! beyond), and an accept loop that backs off when the process is out of file descriptors and
//! says so once an interval.

mod activity;
mod limits;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;

use super::RuntimeShared;
use super::mount::{ErasedSocket, MountedSocket};
use super::socket::Socket;
use super::{SocketMount, transport};
use activity::{Activity, Check, Tracked};
pub use limits::HttpLimits;
use limits::{Slot, Slots, Throttle};

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

/// Sockets at paths, plus a fallback service. Build with [`super::Runtime::endpoint`].
pub struct Endpoint {
    shared: Arc<RuntimeShared>,
    sockets: Vec<(String, Arc<dyn ErasedSocket>)>,
    fallback: Option<FallbackService>,
    limits: HttpLimits,
}

impl Endpoint {
    pub(crate) fn new(shared: Arc<RuntimeShared>) -> Self {
        Self {
            shared,
            sockets: Vec::new(),
            fallback: None,
            limits: HttpLimits::default(),
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

    /// Sets the limits of HTTP connections (default: [`HttpLimits::default`]).
    pub fn limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves `listener` until `shutdown` is cancelled, then stops accepting and drains HTTP
    /// connections for at most `grace`, closing those still open after it. (WebSockets are
    /// closed by [`super::Runtime::shutdown`].) Returns whether every HTTP connection finished
    /// in time.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
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
        let abort = CancellationToken::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().max_buf_size(MAX_HEAD_BYTES);
        let serving = Arc::new(Serving {
            endpoint: self,
            builder,
            shutdown: shutdown.clone(),
            abort: abort.clone(),
        });
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
                            () = shutdown.cancelled() => break,
                        }
                    }
                },
                () = shutdown.cancelled() => break,
            };
            backoff = Duration::ZERO;
            if let Some(failures) = accept_errors.flush(Instant::now()) {
                tracing::warn!(failures, "accept failed; accepting again");
            }
            let Some(slot) = slots.acquire(peer.ip()) else {
                limits::refuse(stream);
                if let Some(refused) = refusals.hit(Instant::now()) {
                    tracing::warn!(
                        refused,
                        "connection limit reached (http.max_connections or \
                         http.max_connections_per_ip): refusing connections"
                    );
                }
                continue;
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
                abort.cancel();
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

/// The most an HTTP/1 connection buffers while reading a request head (hyper's default is
/// about 400 KiB); a larger head is answered 431 Request Header Fields Too Large, without a
/// body, and the connection is closed.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Accept failures and refusals are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// The first pause after a failed `accept`; it doubles with each failure in a row.
const BACKOFF_MIN: Duration = Duration::from_millis(10);

/// The longest pause after a failed `accept`.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// After an idle connection was told to close (HTTP/2: `GOAWAY`), how long it gets to do so.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the connection tasks of one [`Endpoint::serve`] share.
struct Serving {
    endpoint: Endpoint,
    builder: auto::Builder<TokioExecutor>,
    /// Cancelled when the server shuts down: finish what is in progress, then close.
    shutdown: CancellationToken,
    /// Cancelled when the drain's grace period is over: close now.
    abort: CancellationToken,
}

/// Serves one TCP connection: HTTP/1.1 or HTTP/2 with upgrades, under its timeouts, until it
/// ends, the server shuts down (gracefully), or the drain is aborted. `slot` is held until
/// then (and by a WebSocket the connection became, until that ends).
async fn serve_connection(
    serving: Arc<Serving>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
) {
    let activity = Activity::new();
    let service = {
        let (serving, activity, slot) = (serving.clone(), activity.clone(), slot.clone());
        hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            let in_flight = activity.begin();
            request.extensions_mut().insert(PeerAddr(peer));
            let (serving, slot) = (serving.clone(), slot.clone());
            async move {
                let response = serving.endpoint.dispatch(request, peer, slot).await;
                // In progress until its body has been sent, not just its head.
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
            }
        })
    };
    let limits = &serving.endpoint.limits;
    let (shutdown, abort) = (&serving.shutdown, &serving.abort);
    let connection = serving
        .builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let timer = tokio::time::sleep(limits.header_read_timeout);
    tokio::pin!(timer);
    // Draining: told to finish (server shutdown); no timeouts but the drain's own.
    let mut draining = false;
    // Closing: idle and told to close; `timer` is its deadline.
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            () = shutdown.cancelled(), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            () = abort.cancelled() => break,
            // The deadline moved: look at it now.
            () = activity.request_ended.notified(), if !draining && !closing => {
                timer.as_mut().reset(Instant::now());
            }
            () = &mut timer, if !draining => {
                if closing {
                    break;
                }
                match activity.check(limits, Instant::now()) {
                    Check::Until(deadline) => timer.as_mut().reset(deadline),
                    Check::HeadTimedOut => {
                        tracing::debug!(%peer, "no complete request head in time; closing");
                        break;
                    }
                    check @ (Check::Idle | Check::Stalled) => {
                        if check == Check::Stalled {
                            tracing::debug!(%peer, "the client takes no response data; closing");
                        }
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        timer.as_mut().reset(Instant::now() + IDLE_CLOSE_GRACE);
                    }
                }
            }
        }
    }
    drop(slot);
}
