//! The WebSocket upgrade, in Phoenix's order: method, origin, subprotocols (auth token),
//! serializer, `connect`, upgrade headers, then 101 Switching Protocols.

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

use super::connection;
use crate::runtime::RuntimeShared;
use crate::runtime::mount::ErasedSocket;
use crate::runtime::protocol::Vsn;
use crate::runtime::socket::{ConnectInfo, Params};

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

/// Handles a request to a socket's `/websocket` path.
pub(crate) async fn upgrade<B>(
    socket: Arc<dyn ErasedSocket>,
    shared: Arc<RuntimeShared>,
    mut request: http::Request<B>,
    peer: SocketAddr,
) -> http::Response<Full<Bytes>> {
    if request.method() != http::Method::GET {
        return refuse(StatusCode::BAD_REQUEST, "WebSocket upgrades use GET");
    }
    let headers = request.headers();
    let origin = header(headers, ORIGIN).map(str::to_owned);
    let host = header(headers, HOST).or(request.uri().authority().map(|a| a.as_str()));
    if !shared.config.check_origin.allows(origin.as_deref(), host) {
        tracing::warn!(?origin, "WebSocket refused: origin not allowed");
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }

    let offered: Vec<String> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let auth_token = match offered.iter().find_map(|p| p.strip_prefix(AUTH_PREFIX)) {
        None => None,
        Some(encoded) => match decode_token(encoded) {
            Some(token) => Some(token),
            None => return refuse(StatusCode::FORBIDDEN, "Forbidden"),
        },
    };
    let subprotocols: Vec<&String> = offered
        .iter()
        .filter(|p| !p.starts_with(AUTH_PREFIX))
        .collect();
    if !offered.is_empty() && !subprotocols.iter().any(|p| *p == "phoenix") {
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }

    let params = Params::from_query(request.uri().query().unwrap_or_default());
    if params.iter().any(|(key, _)| key.starts_with("vsn[")) {
        tracing::warn!("WebSocket refused: vsn is not a string");
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }
    let vsn = match Vsn::negotiate(params.get("vsn")) {
        Ok(vsn) => vsn,
        Err(e) => {
            tracing::warn!(error = %e, "WebSocket refused");
            return refuse(StatusCode::FORBIDDEN, "Forbidden");
        }
    };
    let info = ConnectInfo {
        peer,
        auth_token,
        uri: request.uri().clone(),
        origin,
        user_agent: header(headers, USER_AGENT).map(str::to_owned),
    };
    let accepted = match socket.connect(&params, &info).await {
        Ok(accepted) => accepted,
        Err(refusal) => {
            tracing::debug!(status = %refusal.status, "WebSocket refused by connect");
            return refuse(
                refusal.status,
                refusal.status.canonical_reason().unwrap_or("Refused"),
            );
        }
    };

    let headers = request.headers();
    let key = header(headers, SEC_WEBSOCKET_KEY).map(str::to_owned);
    let valid = has_token(headers, CONNECTION, "upgrade")
        && has_token(headers, UPGRADE, "websocket")
        && header(headers, SEC_WEBSOCKET_VERSION) == Some("13");
    let (true, Some(key)) = (valid, key) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "not a valid WebSocket upgrade request",
        );
    };

    let on_upgrade = hyper::upgrade::on(&mut request);
    let config = &shared.config;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_bytes)
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_frame_size(Some(config.max_frame_bytes))
        .max_message_size(Some(config.max_frame_bytes));
    let task_shared = shared.clone();
    shared.connections.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .await;
        connection::run(ws, accepted, vsn, task_shared).await;
    });

    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::try_from(derive_accept_key(key.as_bytes())) {
        out.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if !subprotocols.is_empty() {
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
