//! The WebSocket upgrade, in Phoenix's order: method, origin, subprotocols (auth token),
//! serializer, `connect`, upgrade headers, then 101 Switching Protocols. Every check but
//! `connect` is a pure function of the request ([`request_checks`], [`upgrade_headers`]),
//! which `runtime::fuzzing` exposes.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE, USER_AGENT,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::deadline::Watched;
use super::outbound::ConnectionIo;
use super::{DirectTcp, Outbound, OverLimit, TransportConfig, connection};
use crate::RuntimeShared;
use crate::metering::{Refused, Transport};
use crate::mount::ErasedSocket;
use crate::protocol::Vsn;
use crate::socket::{ConnectInfo, Params};

/// Frames queued for one connection are gathered up to this many bytes and written with one
/// system call at the end of the batch (tungstenite writes eagerly, one call per frame, at 0).
/// Larger frames are written as they come. The buffer keeps its capacity, which stays within
/// about twice one frame (at most 8 KiB, see `MAX_FRAME_OUT`) plus this, as a `Vec` grows by
/// doubling: an idle connection keeps what its busiest moment needed, no more.
const WRITE_BATCH_BYTES: usize = 1024;

/// The subprotocol prefix phoenix.js uses to carry `authToken`.
const AUTH_PREFIX: &str = "base64url.bearer.phx.";

fn refuse(status: StatusCode, detail: &str) -> http::Response<Full<Bytes>> {
    let body = serde_json::json!({ "errors": { "detail": detail } }).to_string();
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn header(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Why an upgrade from a forbidden origin is refused.
pub(super) const ORIGIN_REFUSED: &str = "origin not allowed";

/// A refused upgrade: the status, the detail of its JSON error body, and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) detail: &'static str,
    pub(crate) why: &'static str,
}

impl Refusal {
    fn forbidden(why: &'static str) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            detail: "Forbidden",
            why,
        }
    }

    fn bad_request(detail: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            detail,
            why: detail,
        }
    }
}

/// What the checks before `connect` found out about a request.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) params: Params,
    pub(crate) vsn: Vsn,
    pub(crate) auth_token: Option<String>,
    pub(crate) origin: Option<String>,
    /// Whether the client offered subprotocols (`phoenix` among them: the answer names it).
    pub(crate) subprotocols: bool,
}

/// Every check before `connect`, in Phoenix's order: method, origin, subprotocols (and the auth
/// token they carry), the query parameters and `vsn`. Pure and never panics.
pub(crate) fn request_checks<B>(
    request: &http::Request<B>,
    config: &TransportConfig,
) -> Result<Checked, Refusal> {
    if request.method() != http::Method::GET {
        return Err(Refusal::bad_request("WebSocket upgrades use GET"));
    }
    let headers = request.headers();
    let origin = header(headers, ORIGIN).map(str::to_owned);
    let host = header(headers, HOST).or(request.uri().authority().map(|a| a.as_str()));
    if !config.check_origin.allows(origin.as_deref(), host) {
        return Err(Refusal::forbidden(ORIGIN_REFUSED));
    }

    let offered: Vec<&str> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let auth_token = match offered.iter().find_map(|p| p.strip_prefix(AUTH_PREFIX)) {
        None => None,
        Some(encoded) => match decode_token(encoded) {
            Some(token) => Some(token),
            None => return Err(Refusal::forbidden("undecodable auth token")),
        },
    };
    // Offering subprotocols (the token's included) means offering `phoenix` too.
    let subprotocols = !offered.is_empty();
    if subprotocols && !offered.contains(&"phoenix") {
        return Err(Refusal::forbidden(
            "the phoenix subprotocol was not offered",
        ));
    }

    let params = Params::from_query(request.uri().query().unwrap_or_default());
    if params.iter().any(|(key, _)| key.starts_with("vsn[")) {
        return Err(Refusal::forbidden("vsn is not a string"));
    }
    let vsn =
        Vsn::negotiate(params.get("vsn")).map_err(|_| Refusal::forbidden("unsupported vsn"))?;
    Ok(Checked {
        params,
        vsn,
        auth_token,
        origin,
        subprotocols,
    })
}

/// The upgrade headers, checked after `connect` (as Phoenix does): `Connection: upgrade`,
/// `Upgrade: websocket`, version 13 and a key. Returns the key. Pure and never panics.
pub(crate) fn upgrade_headers(headers: &HeaderMap) -> Result<&str, Refusal> {
    let key = header(headers, SEC_WEBSOCKET_KEY);
    let valid = has_token(headers, CONNECTION, "upgrade")
        && has_token(headers, UPGRADE, "websocket")
        && header(headers, SEC_WEBSOCKET_VERSION) == Some("13");
    match (valid, key) {
        (true, Some(key)) => Ok(key),
        _ => Err(Refusal::bad_request(
            "not a valid WebSocket upgrade request",
        )),
    }
}

/// Handles a request to a socket's `/websocket` path (503 once the runtime has shut down).
/// `hold` is kept until the connection ends, however it ends (the endpoint's connection slot).
pub(crate) async fn upgrade<B, H: Send + 'static>(
    socket: Arc<dyn ErasedSocket>,
    shared: Arc<RuntimeShared>,
    mut request: http::Request<B>,
    peer: SocketAddr,
    hold: H,
) -> http::Response<Full<Bytes>> {
    // A server the runtime does not own (a tower router) may outlive it; a draining one
    // takes no new sockets.
    if shared.shutdown.is_cancelled() || shared.drainer.is_draining() {
        shared.meters.refused(Refused::ShuttingDown);
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        );
    }
    let checked = match request_checks(&request, &shared.config) {
        Ok(checked) => checked,
        Err(refusal) => {
            if refusal.status == StatusCode::FORBIDDEN {
                let origin = header(request.headers(), ORIGIN);
                tracing::warn!(why = refusal.why, ?origin, "WebSocket refused");
            }
            shared.meters.refused(if refusal.why == ORIGIN_REFUSED {
                Refused::Origin
            } else {
                Refused::BadRequest
            });
            return refuse(refusal.status, refusal.detail);
        }
    };
    let info = ConnectInfo {
        peer,
        auth_token: checked.auth_token,
        uri: request.uri().clone(),
        origin: checked.origin,
        user_agent: header(request.headers(), USER_AGENT).map(str::to_owned),
    };
    let span = tracing::debug_span!(
        "socket.connect",
        otel.kind = "server",
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let connected =
        tracing::Instrument::instrument(socket.connect(&checked.params, &info), span.clone()).await;
    let (id, accepted) = match connected {
        Ok(accepted) => {
            span.record("http.response.status_code", 101);
            accepted
        }
        Err(refusal) => {
            span.record("http.response.status_code", refusal.status.as_u16());
            shared.meters.refused(Refused::Forbidden);
            tracing::debug!(status = %refusal.status, "WebSocket refused by connect");
            return refuse(
                refusal.status,
                refusal.status.canonical_reason().unwrap_or("Refused"),
            );
        }
    };
    // Reserved right after `connect`, released when the connection ends however it ends.
    let reservation = match id.as_deref().map(|id| shared.socket_ids.reserve(id)) {
        None => None,
        Some(Ok(reservation)) => Some(reservation),
        Some(Err(OverLimit)) => {
            shared.meters.refused(Refused::SocketIdCap);
            tracing::debug!(id, "WebSocket refused: too many sockets with this id");
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many sockets open with this socket id",
            );
        }
    };
    let key = match upgrade_headers(request.headers()) {
        Ok(key) => derive_accept_key(key.as_bytes()),
        Err(refusal) => {
            shared.meters.refused(Refused::BadRequest);
            return refuse(refusal.status, refusal.detail);
        }
    };

    // The runtime's endpoint shares an HTTP/1.1 connection's stream for direct writes.
    let tcp = match request.version() {
        http::Version::HTTP_11 => request.extensions().get::<DirectTcp>().map(|d| d.0.clone()),
        _ => None,
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let vsn = checked.vsn;
    let task_shared = shared.clone();
    shared.connections.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        // Settings are read from the shared config here rather than kept in this task's state
        // for the connection's life (every byte of it is paid per connection).
        let config = &task_shared.config;
        let queue = Outbound::with_tcp(config.outbound_queue, config.outbound_queue_bytes, tcp);
        let io = ConnectionIo::new(TokioIo::new(upgraded), queue.1.direct_writes());
        let io = Watched::new(io, config.message_timeout);
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_bytes)
            .write_buffer_size(WRITE_BATCH_BYTES)
            .max_frame_size(Some(config.max_frame_bytes))
            .max_message_size(Some(config.max_frame_bytes));
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
        let linger_bytes = config.max_frame_bytes.saturating_mul(4).max(1024 * 1024);
        let careful = connection::run(&mut ws, queue, accepted, vsn, task_shared).await;
        // The socket is gone: its id may be used again while the connection drains.
        drop(reservation);
        if careful {
            connection::linger(ws, linger_bytes).await;
        }
        drop(hold);
    });

    shared
        .meters
        .transport(Transport::WebSocket)
        .accepted
        .increment(1);
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::try_from(key) {
        out.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if checked.subprotocols {
        out.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("phoenix"));
    }
    response
}

/// phoenix.js encodes the token with `btoa` (standard alphabet) and strips `=`; accept the
/// URL-safe alphabet too.
fn decode_token(encoded: &str) -> Option<String> {
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let trimmed = encoded.trim_end_matches('=');
    engines
        .iter()
        .find_map(|engine| engine.decode(trimmed).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}
