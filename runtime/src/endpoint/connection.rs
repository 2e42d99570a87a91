//! One accepted TCP connection of [`super::Endpoint::serve`]: HTTP/1.1 with upgrades (and,
//! with the `http2` feature, HTTP/2 beside it), under the front door's timeouts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, Check, Tracked};
use super::limits::Slot;
use super::{Endpoint, PeerAddr};
use crate::transport::SharedTcp;

/// The most an HTTP/1 connection buffers while reading a request head (hyper's default is
/// about 400 KiB); a larger head is answered 431 Request Header Fields Too Large, without a
/// body, and the connection is closed.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// After an idle connection was told to close (HTTP/2: `GOAWAY`), how long it gets to do so.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// HTTP/1.1 and HTTP/2 (prior knowledge), whichever the client speaks.
#[cfg(feature = "http2")]
type Builder = hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>;

/// HTTP/1.1 only: no HTTP/2 stack in the build.
#[cfg(not(feature = "http2"))]
type Builder = hyper::server::conn::http1::Builder;

/// What the connection tasks of one [`Endpoint::serve`] share.
pub(super) struct Serving {
    pub(super) endpoint: Endpoint,
    builder: Builder,
    /// Cancelled when the server shuts down: finish what is in progress, then close.
    pub(super) shutdown: CancellationToken,
    /// Cancelled when the drain's grace period is over: close now.
    pub(super) abort: CancellationToken,
}

impl Serving {
    pub(super) fn new(endpoint: Endpoint) -> Self {
        #[cfg(feature = "http2")]
        let builder = {
            let mut builder = Builder::new(hyper_util::rt::TokioExecutor::new());
            builder.http1().max_buf_size(MAX_HEAD_BYTES);
            builder
        };
        #[cfg(not(feature = "http2"))]
        let builder = {
            let mut builder = Builder::new();
            // The buffer cap alone is checked only while a head is incomplete, so a head read
            // whole in one large read could pass it; the header size cap is checked on every
            // head.
            builder
                .max_buf_size(MAX_HEAD_BYTES)
                .max_header_size(MAX_HEAD_BYTES);
            builder
        };
        Self {
            endpoint,
            builder,
            shutdown: CancellationToken::new(),
            abort: CancellationToken::new(),
        }
    }
}

/// Serves one TCP connection, with upgrades, under its timeouts, until it ends, the server
/// shuts down (gracefully), or the drain is aborted. `slot` is held until then (and by a
/// WebSocket the connection became, until that ends).
pub(super) async fn serve_connection(
    serving: Arc<Serving>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
) {
    let activity = Activity::new();
    // Shared, so that the WebSocket this connection may become takes direct writes.
    let stream = SharedTcp::new(stream);
    let service = {
        let (serving, activity, slot) = (serving.clone(), activity.clone(), slot.clone());
        let direct = stream.extension();
        hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            let in_flight = activity.begin();
            request.extensions_mut().insert(PeerAddr(peer));
            // Only a request that may become a WebSocket keeps the stream.
            if request.version() == http::Version::HTTP_11
                && request.headers().contains_key(http::header::UPGRADE)
            {
                request.extensions_mut().insert(direct.clone());
            }
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
    let io = TokioIo::new(stream);
    #[cfg(feature = "http2")]
    let connection = serving.builder.serve_connection_with_upgrades(io, service);
    #[cfg(not(feature = "http2"))]
    let connection = serving
        .builder
        .serve_connection(io, service)
        .with_upgrades();
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
