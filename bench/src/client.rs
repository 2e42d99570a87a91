//! A minimal Phoenix V2 client over a WebSocket bound to a chosen source address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

pub(crate) type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;
pub(crate) type Stream = SplitStream<WebSocketStream<TcpStream>>;

/// The `n`th of `count` source addresses: 127.0.0.2, 127.0.0.3, …
pub(crate) fn source(n: usize, count: u8) -> IpAddr {
    let count = usize::from(count.max(1));
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (n % count) as u8))
}

/// TCP connects that went unanswered and were retried from another port (see [`tcp_connect`]).
pub(crate) static CONNECT_RETRIES: AtomicU64 = AtomicU64::new(0);

/// How long a TCP connect may wait for the server's answer before it is retried.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// Connects from a fresh ephemeral port of `from`. On loopback at churn rates a new
/// connection's 4-tuple can meet one of the server's own `TIME_WAIT` sockets; the kernel then
/// leaves the SYN unanswered until that socket expires (about a minute), which says nothing
/// about the server. Such a connect is abandoned after [`CONNECT_WAIT`] and retried from another
/// port, at most three times, and counted in [`CONNECT_RETRIES`].
async fn tcp_connect(server: SocketAddr, from: IpAddr) -> Result<TcpStream, String> {
    for attempt in 1..=3 {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(from, 0))
            .map_err(|e| format!("bind {from}: {e}"))?;
        match tokio::time::timeout(CONNECT_WAIT, socket.connect(server)).await {
            Ok(connected) => return connected.map_err(|e| format!("connect: {e}")),
            Err(_) if attempt < 3 => {
                CONNECT_RETRIES.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => break,
        }
    }
    Err(format!(
        "connect: no answer within {CONNECT_WAIT:?}, three times"
    ))
}

/// Opens a V2 WebSocket to `server` from `from`, authenticated with `token`.
pub(crate) async fn connect(
    server: SocketAddr,
    path: &str,
    token: &str,
    from: IpAddr,
) -> Result<(Sink, Stream), String> {
    if !server.ip().is_loopback() {
        return Err(format!(
            "{server} is not a loopback address; fawkes-bench only targets loopback"
        ));
    }
    let stream = tcp_connect(server, from).await?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{server}{path}?token={token}&vsn=2.0.0");
    let request = url.into_client_request().map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    Ok(ws.split())
}

/// Sends a V2 frame.
pub(crate) async fn send(
    sink: &mut Sink,
    join_ref: Value,
    msg_ref: &str,
    topic: &str,
    event: &str,
    payload: Value,
) -> Result<(), String> {
    let text = json!([join_ref, msg_ref, topic, event, payload]).to_string();
    sink.send(Message::Text(text.into()))
        .await
        .map_err(|e| e.to_string())
}

/// A received frame, parsed only as far as routing needs.
pub(crate) struct Frame {
    pub(crate) msg_ref: Value,
    pub(crate) topic: String,
    pub(crate) event: String,
    pub(crate) payload: Value,
}

/// Parses a V2 text frame fully (used for replies and by clients that track presence).
pub(crate) fn parse(text: &str) -> Option<Frame> {
    let Value::Array(mut parts) = serde_json::from_str::<Value>(text).ok()? else {
        return None;
    };
    if parts.len() < 5 {
        return None;
    }
    let payload = parts.pop()?;
    let event = parts.pop()?.as_str()?.to_owned();
    let topic = parts.pop()?.as_str()?.to_owned();
    let msg_ref = parts.pop()?;
    Some(Frame {
        msg_ref,
        topic,
        event,
        payload,
    })
}

/// The heartbeat phoenix.js sends every 25 s, for clients that hold their connection longer
/// than the server's idle timeout: `due` in a `select!`, then `send`.
pub(crate) struct Heartbeat {
    every: tokio::time::Interval,
    next_ref: u64,
}

impl Heartbeat {
    /// A heartbeat first due 25 s from now.
    pub(crate) async fn start() -> Self {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(25));
        every.tick().await;
        Self { every, next_ref: 1 }
    }

    /// Resolves when the next heartbeat is due.
    pub(crate) async fn due(&mut self) {
        self.every.tick().await;
    }

    /// Sends one (a failure shows as the connection's end on the read side).
    pub(crate) async fn send(&mut self, sink: &mut Sink) {
        self.next_ref += 1;
        let msg_ref = self.next_ref.to_string();
        let _ = send(
            sink,
            Value::Null,
            &msg_ref,
            "phoenix",
            "heartbeat",
            json!({}),
        )
        .await;
    }
}
