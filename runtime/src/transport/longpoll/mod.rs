//! The LongPoll transport (`<socket path>/longpoll`, when `TransportConfig::longpoll` is on):
//! sessions as Phoenix serves them to phoenix.js' `LongPoll`. See docs/longpoll-design.md.
//!
//! The status is in a JSON body `{"status":…}` (phoenix.js reads it there, not the HTTP
//! status), `cache-control: no-store`, `access-control-allow-origin: *`. The origin is checked
//! on every request, as Phoenix does (`{"status":403}`).
//! - `OPTIONS`: the CORS preflight (the auth and session token headers).
//! - `GET` without a session token (phoenix.js sends no `token` param until it holds one; a
//!   `token` that is not of a session token's form, such as the application's own connect
//!   param, counts as none): the socket's `connect`, then a new session:
//!   `{"status":410,"token":T,"messages":[]}`; `{"status":403}` when `connect` refuses (and,
//!   with HTTP 429, over `max_sockets_per_id`). Over the endpoint's connection caps, or while
//!   the runtime drains or shuts down: HTTP 503 with `{"status":500}` (phoenix.js retries on
//!   its backoff; it has no case for a 503 in the body).
//! - `GET` with a token: a poll, `{"status":200,"token":T,"messages":[…]}` or, when
//!   nothing came within the window, `{"status":204,…}`. A newer poll of the same session
//!   answers the older one at once with 204 (Phoenix hands the messages to the newest poll
//!   and lets the older one run out with 204).
//! - `GET` or `POST` with a session token that names no live session here (forged, another
//!   node's, a restarted node's, or a session that has ended: idle, disconnected, cut off as
//!   a slow consumer, drained, its socket actor crashed): `{"status":410}` without a new
//!   session. phoenix.js then drops the token, opens a session with a GET without one and
//!   rejoins (Phoenix answers a crashed session's token with 410 too: its process is gone).
//! - `POST` with a token: `application/x-ndjson`, at most [`MAX_BATCH`] lines, each a V2 JSON
//!   frame (`[…]`), a V1 one (`{…}`, when the session's `vsn` is 1.x) or base64 of a binary
//!   frame (another content type: the body is one text frame). `{"status":200}` when every
//!   line was handed on; `{"status":410}` when the session is gone. One window covers the
//!   whole POST (its body read and its lines handed on): past it, `{"status":408}` (the
//!   message rate or the inbound window held lines back; the rest are dropped). A second
//!   POST while one is in flight gets `{"status":409}` and is not handled (phoenix.js never
//!   sends two). A body over [`body_limit`] (`max(2 × max_frame_bytes, 1 MiB)`, read as it
//!   streams in), or a line over `max_frame_bytes`, gets `{"status":413}`; over
//!   [`MAX_BATCH`] lines or a malformed line, `{"status":400}`. phoenix.js answers any
//!   status but 200 by closing and reconnecting (close 1011), so each of these ends the
//!   session (a 413 as a WebSocket is closed with 1009, a 400 with 1003, a 408 with 1008, a
//!   409 with 1003, a client gone mid-body with 1001).
//!
//! A session owns what a WebSocket connection owns (a socket actor, its bounded outbound
//! queue, a drain ticket, an id reservation, and, behind an [`crate::Endpoint`], a slot of its
//! connection caps), so channels, presence, the registry, the drain and the limits work the
//! same. It ends after 1.5 windows without a poll.

mod body;
mod poll;
mod session;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, CACHE_CONTROL, CONTENT_TYPE, HOST,
    ORIGIN, RETRY_AFTER, USER_AGENT,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};

use super::upgrade::ORIGIN_REFUSED;
use super::{CloseReason, Outbound, TransportConfig, request_checks};
use crate::RuntimeShared;
use crate::metering::{Refused, Transport};
use crate::mount::ErasedSocket;
use crate::socket::ConnectInfo;
use crate::socket_actor::StartArgs;
use body::{BadBody, body_limit, lines};
use session::{Holds, MAX_BATCH, Posted, Session};
use token::Signer;

/// The header phoenix.js sends the auth token in over LongPoll.
const AUTH_HEADER: &str = "x-phoenix-authtoken";

/// The header a newer phoenix.js sends the session token in (1.8.x uses the query).
const TOKEN_HEADER: &str = "x-phoenix-longpoll-token";

/// What a new session holds for its life to count in the front door's connection caps (an
/// [`crate::Endpoint`]'s slots), or which cap refuses it.
pub(crate) type Admission =
    Box<dyn FnOnce() -> Result<Box<dyn Send + Sync>, Refused> + Send + 'static>;

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

    /// The session a request names: live, gone, or none (the request carries no session
    /// token).
    fn find(&self, headers: &HeaderMap, query: Option<&str>) -> Found {
        let Some(token) = session_token(headers, query) else {
            return Found::None;
        };
        match self.signer.as_ref().and_then(|s| s.verify(&token)) {
            None => Found::Gone,
            Some(id) => self
                .live
                .get(&id)
                .map_or(Found::Gone, |s| Found::Live(s.clone())),
        }
    }
}

/// The session token a request carries: the `X-Phoenix-LongPoll-Token` header, or else the
/// last `token` query param, of a session token's form. Another `token` (phoenix.js sends
/// none before it holds a session; `null`, `undefined`, empty; the application's own
/// `token` connect param, which travels in the same query) is no session token.
fn session_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|token| token::is_session_token(token))
        .map(str::to_owned);
    header.or_else(|| {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .filter(|(key, value)| key == "token" && token::is_session_token(value))
            .last()
            .map(|(_, value)| value.into_owned())
    })
}

/// What a request's session token names.
enum Found {
    Live(Arc<Session>),
    /// A session token that names no live session here: forged, another node's, a restarted
    /// node's, or of a session that has ended. `{"status":410}` and no new session: the
    /// client holds a token, and phoenix.js answers 410 by dropping it and reconnecting with
    /// a GET without one (a session opened for this 410 would sit unused).
    Gone,
    /// No session token: a GET opens a new session.
    None,
}

type Response = http::Response<Full<Bytes>>;

/// An answer: the status and the rest in the JSON body, with HTTP status `http`.
fn answer_as(http: StatusCode, body: serde_json::Value) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = http;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// An answer with HTTP 200, as Phoenix gives every one.
fn answer(body: serde_json::Value) -> Response {
    answer_as(StatusCode::OK, body)
}

fn status(status: u16) -> Response {
    answer(serde_json::json!({ "status": status }))
}

/// A refusal for a reason the client should retry later (a cap, the drain): HTTP 503 as a
/// WebSocket upgrade gets, and `{"status":500}`, which phoenix.js retries on its backoff.
fn unavailable() -> Response {
    let mut response = answer_as(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "status": 500 }),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// The CORS preflight: the requested headers, GET, POST and OPTIONS, for an hour.
fn preflight(headers: &HeaderMap) -> Response {
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

/// Whether the request's `Origin` (if any) is allowed, by the rule the upgrade applies.
fn origin_allowed<B>(request: &http::Request<B>, config: &TransportConfig) -> bool {
    let headers = request.headers();
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or(request.uri().authority().map(|a| a.as_str()));
    config.check_origin.allows(origin, host)
}

/// Handles a request to a socket's `/longpoll` path. `admission`, when given, is what a new
/// session must hold (the endpoint's connection caps).
pub(crate) async fn handle<B>(
    sessions: Arc<Sessions>,
    socket: Arc<dyn ErasedSocket>,
    shared: Arc<RuntimeShared>,
    request: http::Request<B>,
    peer: SocketAddr,
    admission: Option<Admission>,
) -> Response
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Every request, as Phoenix does: a session opened from an allowed origin cannot be
    // polled or posted to from another.
    if !origin_allowed(&request, &shared.config) {
        let origin = request.headers().get(ORIGIN);
        tracing::debug!(?origin, "LongPoll request refused: origin not allowed");
        shared.meters.refused(Refused::Origin);
        return status(403);
    }
    match *request.method() {
        Method::OPTIONS => preflight(request.headers()),
        Method::GET => match sessions.find(request.headers(), request.uri().query()) {
            Found::Live(session) => poll(&sessions, &session, &shared).await,
            Found::Gone => status(410),
            Found::None => open(sessions, socket, shared, request, peer, admission).await,
        },
        Method::POST => match sessions.find(request.headers(), request.uri().query()) {
            Found::Live(session) => post(&session, &shared, request).await,
            Found::Gone | Found::None => status(410),
        },
        _ => status(400),
    }
}

/// A poll: what the session's queue holds within the window.
async fn poll(sessions: &Sessions, session: &Session, shared: &RuntimeShared) -> Response {
    let polled = session.poll(shared.config.longpoll_window).await;
    if polled.messages.is_empty() && !polled.superseded && session.closed() {
        return status(410);
    }
    let code = if polled.messages.is_empty() { 204 } else { 200 };
    let token = sessions.signer.as_ref().map(|s| s.sign(session.id));
    answer(serde_json::json!({
        "status": code, "token": token, "messages": polled.messages
    }))
}

/// A POST: its body read within its bound, its lines handed to the socket actor in order.
async fn post<B>(session: &Session, shared: &RuntimeShared, request: http::Request<B>) -> Response
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // One window for the whole POST: reading the body and handing every line on.
    let deadline = session::deadline(shared.config.longpoll_window);
    let Some(in_flight) = session.begin_post() else {
        // phoenix.js never sends two POSTs at once; a client that does would close on any
        // answer but 200 anyway. The POST in flight is answered 410 (or 200, when it had
        // already handed its last line on; the next request then gets 410).
        session.close(CloseReason::Malformed(
            "two LongPoll POSTs in flight".to_owned(),
        ));
        return status(409);
    };
    let config = &shared.config;
    let ndjson = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    let limit = body_limit(config);
    let read =
        tokio::time::timeout_at(deadline, Limited::new(request.into_body(), limit).collect());
    let body = match read.await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            tracing::debug!(limit, "LongPoll POST body too large; ending the session");
            session.close(CloseReason::TooBig);
            return status(413);
        }
        // The client went away mid-body: phoenix.js reconnects on a POST that got no answer
        // (and cuts one off only when it leaves), so it will not use this session again; a
        // session left alive would keep its joins and presence beside the new one.
        Ok(Err(_)) => {
            tracing::debug!("LongPoll POST cut off mid-body; ending the session");
            session.close(CloseReason::Disconnected);
            return status(400);
        }
        Err(_) => return timed_out(session),
    };
    let lines = match lines(&body, ndjson, session.vsn(), config.max_frame_bytes) {
        Ok(lines) => lines,
        Err(bad) => {
            tracing::debug!(?bad, "LongPoll POST refused; ending the session");
            let (reason, code) = match bad {
                BadBody::TooBig => (CloseReason::TooBig, 413),
                BadBody::TooManyLines => (
                    CloseReason::Malformed(format!("more than {MAX_BATCH} lines in a POST")),
                    400,
                ),
                BadBody::Malformed => (
                    CloseReason::Malformed("malformed LongPoll body".to_owned()),
                    400,
                ),
            };
            session.close(reason);
            return status(code);
        }
    };
    match session.post(&in_flight, lines, deadline, shared).await {
        Posted::Ok => status(200),
        Posted::TimedOut => timed_out(session),
        Posted::Gone => status(410),
    }
}

/// A POST not handled within its window: `{"status":408}`, and the session ends, since
/// phoenix.js answers any status but 200 by closing and reconnecting (a session left alive
/// would keep its joins and presence for 1.5 windows beside the new one).
fn timed_out(session: &Session) -> Response {
    tracing::debug!("LongPoll POST not handled within the window; ending the session");
    session.close(CloseReason::SlowMessage);
    status(408)
}

/// Opens a session: the upgrade's checks (origin, `vsn`), a slot of the connection caps,
/// `connect` (auth token from `X-Phoenix-AuthToken`), the per-id cap, then the socket actor
/// and the session's task.
async fn open<B>(
    sessions: Arc<Sessions>,
    socket: Arc<dyn ErasedSocket>,
    shared: Arc<RuntimeShared>,
    request: http::Request<B>,
    peer: SocketAddr,
    admission: Option<Admission>,
) -> Response {
    let Some(signer) = sessions.signer.as_ref() else {
        return status(500);
    };
    if shared.shutdown.is_cancelled() || shared.drainer.is_draining() {
        shared.meters.refused(Refused::ShuttingDown);
        return unavailable();
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
    // Before `connect`: a client over a cap costs no more than a WebSocket refused at the
    // front door.
    let slot = match admission.map(|admit| admit()).transpose() {
        Ok(slot) => slot,
        Err(why) => {
            shared.meters.refused(why);
            tracing::debug!(?why, "LongPoll session refused: connection limit reached");
            return unavailable();
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
            tracing::debug!(
                id,
                "LongPoll session refused: too many sockets with this id"
            );
            // 403 in the body: phoenix.js backs off (a 429 there would be an unknown status).
            return answer_as(
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({ "status": 403 }),
            );
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
    shared.metrics_connected(Transport::LongPoll);
    shared
        .meters
        .transport(Transport::LongPoll)
        .accepted
        .increment(1);
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
        slot,
    };
    let task_shared = shared.clone();
    shared
        .connections
        .spawn(session::run(session, sessions.clone(), holds, task_shared));
    answer(serde_json::json!({ "status": 410, "token": token, "messages": [] }))
}
