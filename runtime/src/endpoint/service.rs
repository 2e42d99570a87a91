//! [`SocketService`]: one socket as a `tower::Service`, for any tower router or hyper server.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;

use super::PeerAddr;
use crate::RuntimeShared;
use crate::mount::ErasedSocket;
use crate::transport;

/// Reads a request's peer address from its extensions.
type PeerAddrFn = dyn Fn(&http::Extensions) -> Option<SocketAddr> + Send + Sync;

/// One [`crate::SocketMount`] as a [`tower::Service`]: mount it in an axum `Router` (or any
/// tower or hyper server) at the socket's WebSocket path, beside the app's other routes.
/// Build it with [`crate::Runtime::socket_service`].
///
/// It answers every request it is given as a WebSocket upgrade (the router picks the path;
/// phoenix.js connects to the socket path plus `/websocket`, e.g. `/socket/websocket`), or,
/// when [`crate::TransportConfig::longpoll`] is on, a request whose path ends in
/// `/longpoll` as LongPoll (mount the service at both paths), with
/// the same checks as [`crate::Endpoint`] (origin, subprotocols, `vsn`, [`crate::Socket::connect`],
/// the per-id cap) and the same refusals (JSON error bodies). An accepted socket belongs to
/// the runtime like any other: it counts in [`crate::Runtime::stats`], and
/// [`crate::Runtime::drain`] or [`crate::Runtime::shutdown`] closes it (upgrade requests
/// from the start of either get 503). The server must
/// serve HTTP/1.1 with upgrades enabled, as axum's `serve` and hyper-util's `auto` builder
/// (`serve_connection_with_upgrades`) do.
///
/// **Limits:** the front door's limits ([`crate::HttpLimits`]: connection caps, header and
/// keep-alive timeouts, the request head size) belong to [`crate::Endpoint::serve`]; sockets
/// served this way are under the limits of the server that accepted their connection instead.
/// A LongPoll session outlives the connections its requests come over, so no server's
/// connection cap bounds the sessions served this way: only `max_sockets_per_id` does (and
/// each session ends 1.5 poll windows after its last poll). Put the service behind a
/// per-client request limit, or use [`crate::Endpoint`], whose caps count sessions.
///
/// **Peer address** ([`crate::ConnectInfo::peer`]): the one [`SocketService::peer_addr_from`]
/// reads from the request's extensions, else a [`PeerAddr`] extension (which
/// [`crate::Endpoint::serve`] sets), else the unspecified address `0.0.0.0:0`.
///
/// ```
/// # use fawkes_runtime::*;
/// # struct UserSocket;
/// # impl Socket for UserSocket {
/// #     type Assigns = ();
/// #     async fn connect(&self, _: &Params, _: &ConnectInfo) -> Result<(), ConnectError> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::net::SocketAddr;
///
/// let runtime = Runtime::start(TransportConfig::default()).await?;
/// let service = runtime
///     .socket_service(SocketMount::new(UserSocket))?
///     // With axum: `ext.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0)`.
///     .peer_addr_from(|ext: &http::Extensions| ext.get::<SocketAddr>().copied());
/// // axum: Router::new().route_service("/socket/websocket", service)
/// # drop(service);
/// # runtime.shutdown(std::time::Duration::from_secs(1)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SocketService {
    shared: Arc<RuntimeShared>,
    socket: Arc<dyn ErasedSocket>,
    /// LongPoll sessions, when `TransportConfig::longpoll` is on.
    longpoll: Option<Arc<transport::Sessions>>,
    peer_addr: Option<Arc<PeerAddrFn>>,
}

impl std::fmt::Debug for SocketService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketService")
            .field("peer_addr_from", &self.peer_addr.is_some())
            .finish_non_exhaustive()
    }
}

impl SocketService {
    pub(crate) fn new(shared: Arc<RuntimeShared>, socket: Arc<dyn ErasedSocket>) -> Self {
        let longpoll = shared
            .config
            .longpoll
            .then(|| transport::Sessions::new(shared.pubsub.node_name()));
        Self {
            shared,
            socket,
            longpoll,
            peer_addr: None,
        }
    }

    /// Reads the client's address from the request's extensions with `extract` (for
    /// example the one axum's `into_make_service_with_connect_info` puts there). When it finds
    /// none, the [`PeerAddr`] extension is used, else `0.0.0.0:0`.
    #[must_use]
    pub fn peer_addr_from<F>(mut self, extract: F) -> Self
    where
        F: Fn(&http::Extensions) -> Option<SocketAddr> + Send + Sync + 'static,
    {
        self.peer_addr = Some(Arc::new(extract));
        self
    }

    fn peer(&self, extensions: &http::Extensions) -> SocketAddr {
        self.peer_addr
            .as_ref()
            .and_then(|extract| extract(extensions))
            .or_else(|| extensions.get::<PeerAddr>().map(|p| p.0))
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }
}

impl<B> tower::Service<http::Request<B>> for SocketService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let peer = self.peer(request.extensions());
        let (socket, shared) = (self.socket.clone(), self.shared.clone());
        let longpoll = self
            .longpoll
            .clone()
            .filter(|_| request.uri().path().ends_with("/longpoll"));
        Box::pin(async move {
            Ok(match longpoll {
                Some(sessions) => {
                    transport::longpoll(sessions, socket, shared, request, peer, None).await
                }
                None => transport::upgrade(socket, shared, request, peer, ()).await,
            })
        })
    }
}
