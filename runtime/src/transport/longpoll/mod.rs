//! The LongPoll transport (`<socket path>/longpoll`, when `TransportConfig::longpoll` is on):
//! sessions as Phoenix serves them to phoenix.js' `LongPoll`. See docs/longpoll-design.md.
//!
//! Every answer is HTTP 200 with the status in a JSON body (phoenix.js reads it there):
//! - `OPTIONS`: the CORS preflight (the auth and session token headers).
//! - `GET` without a valid session token: the socket's `connect`, then a new session:
//!   `{"status":410,"token":T,"messages":[]}`; `{"status":403}` when refused.
//! - `GET` with a token: a poll, `{"status":200,"token":T,"messages":[…]}` or, when nothing
//!   came within the window, `{"status":204,…}`.
//! - `POST` with a token: `application/x-ndjson`, at most 100 lines, each a V2 JSON frame or
//!   base64 of a binary one (another content type: the body is one text frame):
//!   `{"status":200}` when every line was handed on, `{"status":408}` when the inbound window
//!   stayed full for a whole window, `{"status":410}` when the session is gone.
//!
//! A session owns what a WebSocket connection owns (a socket actor, its bounded outbound
//! queue, a drain ticket, an id reservation), so channels, presence, the registry, the drain
//! and the limits work the same. It ends after 1.5 windows without a poll.

mod session;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use dashmap::DashMap;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, CACHE_CONTROL, CONTENT_TYPE, ORIGIN,
    USER_AGENT,
};
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt as _, Full, Limited};
use tokio_tungstenite::tungstenite::Message;

use super::upgrade::ORIGIN_REFUSED;
use super::{Outbound, request_checks};
use crate::RuntimeShared;
use crate::metering::Refused;
use crate::mount::ErasedSocket;
use crate::socket::ConnectInfo;
use crate::socket_actor::StartArgs;
use session::{Holds, MAX_BATCH, Posted, Session};
use token::Signer;

/// The header phoenix.js sends the auth token in over LongPoll.
const AUTH_HEADER: &str = "x-phoenix-authtoken";

/// The header a newer phoenix.js sends the session token in (1.8.x uses the query).
const TOKEN_HEADER: &str = "x-phoenix-longpoll-token";

/// The live LongPoll sessions of one mounted socket.
pub(crate) struct Sessions {
    signer: Option<Signer>,
    live: DashMap<u64, Arc<Session>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// An empty table whose tokens are bound to `node` and a fresh random key.
    pub(crate) fn new(node: &str) -> Arc<Self> {
        Arc::new(Self {
            signer: Signer::new(node),
            live: DashMap::new(),
            next: AtomicU64::new(1),
        })
    }

    fn remove(&self, id: u64) {
        self.live.remove(&id);
    }

    /// The live session a request names, if any.
    fn find(&self, headers: &HeaderMap, query: Option<&str>) -> Option<Arc<Session>> {
        let signer = self.signer.as_ref()?;
        let token = headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                    .filter(|(key, _)| key == "token")
                    .last()
                    .map(|(_, value)| value.into_owned())
            })?;
        let id = signer.verify(&token)?;
        self.live.get(&id).map(|s| s.clone())
    }
}

/// An answer: HTTP 200, the status and the rest in the JSON body.
fn answer(body: serde_json::Value) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

fn status(status: u16) -> http::Response<Full<Bytes>> {
    answer(serde_json::json!({ "status": status }))
}

/// The CORS preflight: the requested headers, GET, POST and OPTIONS, for an hour.
fn preflight(headers: &HeaderMap) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    let out = response.headers_mut();
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    out.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("get, post, options"),
    );
    let requested = headers
        .get(ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("x-phoenix-authtoken, content-type"));
    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested);
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("3600"));
    response
}

/// Handles a request to a socket's `/longpoll` path.
pub(crate) async fn handle<B>(
    sessions: Arc<Sessions>,
    socket: Arc<dyn ErasedSocket>,
    shared: Arc<RuntimeShared>,
    request: http::Request<B>,
    peer: SocketAddr,
) -> http::Response<Full<Bytes>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let window = shared.config.longpoll_window;
    match *request.method() {
        Method::OPTIONS => preflight(request.headers()),
        Method::GET => match sessions.find(request.headers(), request.uri().query()) {
            Some(session) => {
                let messages = session.poll(window).await;
                if messages.is_empty() && session.closed() {
                    return status(410);
                }
                let code = if messages.is_empty() { 204 } else { 200 };
                let token = sessions.signer.as_ref().map(|s| s.sign(session.id));
                answer(serde_json::json!({
                    "status": code, "token": token, "messages": messages
                }))
            }
            None => open(sessions, socket, shared, request, peer).await,
        },
        Method::POST => {
            let Some(session) = sessions.find(request.headers(), request.uri().query()) else {
                return status(410);
            };
            let ndjson = request
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-ndjson"));
            let limit = shared.config.max_frame_bytes.saturating_mul(MAX_BATCH);
            let body = match Limited::new(request.into_body(), limit).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    session.close(super::CloseReason::TooBig);
                    return status(410);
                }
            };
            let Some(lines) = lines(&body, ndjson) else {
                session.close(super::CloseReason::Malformed(
                    "malformed LongPoll body".to_owned(),
                ));
                return status(410);
            };
            match session.post(lines, window).await {
                Posted::Ok => status(200),
                Posted::TimedOut => status(408),
                Posted::Gone => status(410),
            }
        }
        _ => status(400),
    }
}

/// The frames of a POST body: ndjson lines (V2 JSON text, or base64 of a binary frame), or
/// the whole body as one text frame. `None`: malformed, or over [`MAX_BATCH`] lines.
fn lines(body: &Bytes, ndjson: bool) -> Option<Vec<Message>> {
    let text = std::str::from_utf8(body).ok()?;
    if !ndjson {
        return Some(vec![Message::Text(text.into())]);
    }
    let mut frames = Vec::new();
    for line in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
        if frames.len() == MAX_BATCH {
            return None;
        }
        frames.push(if line.starts_with('[') {
            Message::Text(line.into())
        } else {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(line)
                .ok()?;
            Message::Binary(bytes.into())
        });
    }
    Some(frames)
}

/// Opens a session: the upgrade's checks (origin, `vsn`), `connect` (auth token from
/// `X-Phoenix-AuthToken`), the per-id cap, then the socket actor and the session's task.
async fn open<B>(
    sessions: Arc<Sessions>,
    socket: Arc<dyn ErasedSocket>,
    shared: Arc<RuntimeShared>,
    request: http::Request<B>,
    peer: SocketAddr,
) -> http::Response<Full<Bytes>> {
    let Some(signer) = sessions.signer.as_ref() else {
        return status(500);
    };
    if shared.shutdown.is_cancelled() || shared.drainer.is_draining() {
        shared.meters.refused(Refused::ShuttingDown);
        return status(500);
    }
    let checked = match request_checks(&request, &shared.config) {
        Ok(checked) => checked,
        Err(refusal) => {
            tracing::debug!(why = refusal.why, "LongPoll session refused");
            shared.meters.refused(if refusal.why == ORIGIN_REFUSED {
                Refused::Origin
            } else {
                Refused::BadRequest
            });
            return status(403);
        }
    };
    let headers = request.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let info = ConnectInfo {
        peer,
        auth_token: text(AUTH_HEADER).map(str::to_owned),
        uri: request.uri().clone(),
        origin: text(ORIGIN.as_str()).map(str::to_owned),
        user_agent: text(USER_AGENT.as_str()).map(str::to_owned),
    };
    let (id, accepted) = match socket.connect(&checked.params, &info).await {
        Ok(accepted) => accepted,
        Err(_) => {
            shared.meters.refused(Refused::Forbidden);
            return status(403);
        }
    };
    let reservation = match id.as_deref().map(|id| shared.socket_ids.reserve(id)) {
        None => None,
        Some(Ok(reservation)) => reservation,
        Some(Err(_)) => {
            shared.meters.refused(Refused::SocketIdCap);
            return status(403);
        }
    };
    let config = &shared.config;
    let (out, rx, control) = Outbound::new(config.outbound_queue, config.outbound_queue_bytes);
    let args = StartArgs {
        vsn: checked.vsn,
        out: out.clone(),
        control: control.clone(),
        pubsub: shared.pubsub.clone(),
        presence: shared.presence.clone(),
        registry: shared.registry.clone(),
        supervisor: shared.sockets.clone(),
        max_channels: config.max_channels,
    };
    let (actor, actor_done) = match accepted.start(args).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "could not start a socket actor");
            return status(500);
        }
    };
    shared.metrics_connected();
    shared.meters.accepted.increment(1);
    let ticket = shared.drainer.register(&actor);
    let id = sessions.next.fetch_add(1, Ordering::Relaxed);
    let session = Arc::new(Session::new(
        id,
        actor,
        out,
        control,
        rx,
        checked.vsn,
        &shared,
    ));
    sessions.live.insert(id, session.clone());
    let token = signer.sign(id);
    let holds = Holds {
        actor_done,
        ticket,
        reservation,
    };
    let task_shared = shared.clone();
    shared
        .connections
        .spawn(session::run(session, sessions.clone(), holds, task_shared));
    answer(serde_json::json!({ "status": 410, "token": token, "messages": [] }))
}
