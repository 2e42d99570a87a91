//! A real WebSocket client for integration tests.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};

use super::frame::{DEADLINE, Frame, Inbox};

/// A real WebSocket client (V2 by default) for integration tests.
pub struct WsClient {
    ws: WebSocketStream<TcpStream>,
    inbox: Inbox,
    next_ref: u64,
    close: Option<(u16, String)>,
}

/// Why [`WsClient::connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    /// The server answered the upgrade with this HTTP status.
    #[error("the server refused the WebSocket upgrade with HTTP status {0}")]
    Status(u16),
    /// Anything else.
    #[error("could not connect: {0}")]
    Other(String),
}

impl WsClient {
    /// Connects to `url` (`ws://127.0.0.1:PORT/socket/websocket?vsn=2.0.0&…`).
    pub async fn connect(url: &str) -> Result<Self, ConnectFailure> {
        Self::connect_with(url, &[]).await
    }

    /// Connects with extra request headers (e.g. `Origin`, `Sec-WebSocket-Protocol`).
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, ConnectFailure> {
        Self::open(url, headers, None).await
    }

    /// Connects with the socket's receive buffer set to `bytes` (the kernel rounds it up to
    /// its minimum): a client whose buffers fill after a few frames while it does not read,
    /// to test how the server treats a slow consumer.
    pub async fn connect_with_receive_buffer(
        url: &str,
        bytes: u32,
    ) -> Result<Self, ConnectFailure> {
        Self::open(url, &[], Some(bytes)).await
    }

    async fn open(
        url: &str,
        headers: &[(&str, &str)],
        receive_buffer: Option<u32>,
    ) -> Result<Self, ConnectFailure> {
        let mut request = url
            .into_client_request()
            .map_err(|e| ConnectFailure::Other(e.to_string()))?;
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ConnectFailure::Other(e.to_string()))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|e| ConnectFailure::Other(e.to_string()))?;
            request.headers_mut().insert(name, value);
        }
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let failed = |e: std::io::Error| ConnectFailure::Other(e.to_string());
        let stream = match receive_buffer {
            None => TcpStream::connect(authority).await.map_err(failed)?,
            Some(bytes) => {
                let addr = tokio::net::lookup_host(authority)
                    .await
                    .map_err(failed)?
                    .next()
                    .ok_or_else(|| ConnectFailure::Other("no address".into()))?;
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(failed)?;
                socket.set_recv_buffer_size(bytes).map_err(failed)?;
                socket.connect(addr).await.map_err(failed)?
            }
        };
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((ws, _)) => Ok(Self {
                ws,
                inbox: Inbox::default(),
                next_ref: 0,
                close: None,
            }),
            Err(tungstenite::Error::Http(response)) => {
                Err(ConnectFailure::Status(response.status().as_u16()))
            }
            Err(e) => Err(ConnectFailure::Other(e.to_string())),
        }
    }

    /// The HTTP status an upgrade attempt gets: 101 when it connects (the connection is then
    /// dropped), else the refusal's status.
    ///
    /// # Panics
    /// If the attempt fails without an HTTP answer (e.g. nothing listens).
    pub async fn upgrade_status(url: &str, headers: &[(&str, &str)]) -> u16 {
        match Self::connect_with(url, headers).await {
            Ok(_) => 101,
            Err(ConnectFailure::Status(status)) => status,
            Err(ConnectFailure::Other(e)) => {
                panic!("upgrade to {url} failed without an HTTP answer: {e}")
            }
        }
    }

    /// A fresh ref, as phoenix.js makes them (decimal strings from one counter).
    pub fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    /// Sends a raw message.
    pub async fn send(&mut self, message: Message) {
        let _ = self.ws.send(message).await;
    }

    /// Sends several raw messages in one write (they reach the server together, as a client
    /// that pipelines does).
    pub async fn send_batch(&mut self, messages: Vec<Message>) {
        for message in messages {
            let _ = self.ws.feed(message).await;
        }
        let _ = self.ws.flush().await;
    }

    /// A V2 text frame `[join_ref, ref, topic, event, payload]` (for [`WsClient::send_batch`]).
    pub fn frame(
        join_ref: Value,
        msg_ref: Value,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> Message {
        Message::Text(
            json!([join_ref, msg_ref, topic, event, payload])
                .to_string()
                .into(),
        )
    }

    /// Sends a V2 frame `[join_ref, ref, topic, event, payload]`.
    pub async fn send_frame(
        &mut self,
        join_ref: Value,
        msg_ref: Value,
        topic: &str,
        event: &str,
        payload: Value,
    ) {
        self.send(Self::frame(join_ref, msg_ref, topic, event, payload))
            .await;
    }

    /// Joins `topic`; returns the join_ref and the reply frame.
    pub async fn join(&mut self, topic: &str, payload: Value) -> (String, Frame) {
        let join_ref = self.make_ref();
        self.send_frame(json!(join_ref), json!(join_ref), topic, "phx_join", payload)
            .await;
        let reply = self.reply(&join_ref).await;
        (join_ref, reply)
    }

    /// Pushes `event` on a joined topic; returns the message ref.
    pub async fn push(
        &mut self,
        join_ref: &str,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> String {
        let msg_ref = self.make_ref();
        self.send_frame(json!(join_ref), json!(msg_ref), topic, event, payload)
            .await;
        msg_ref
    }

    /// Pushes a binary payload (a V2 binary frame).
    pub async fn push_binary(
        &mut self,
        join_ref: &str,
        topic: &str,
        event: &str,
        payload: &[u8],
    ) -> String {
        let msg_ref = self.make_ref();
        let fields = [join_ref, msg_ref.as_str(), topic, event];
        let mut frame = vec![0u8];
        for field in fields {
            let len = u8::try_from(field.len()).expect("binary frame fields are at most 255 bytes");
            frame.push(len);
        }
        for field in fields {
            frame.extend_from_slice(field.as_bytes());
        }
        frame.extend_from_slice(payload);
        self.send(Message::Binary(frame.into())).await;
        msg_ref
    }

    /// Sends a heartbeat; returns its ref.
    pub async fn heartbeat(&mut self) -> String {
        let msg_ref = self.make_ref();
        self.send_frame(
            Value::Null,
            json!(msg_ref),
            "phoenix",
            "heartbeat",
            json!({}),
        )
        .await;
        msg_ref
    }

    /// The next frame matching `matches`, within [`DEADLINE`]; panics otherwise.
    pub async fn expect(&mut self, what: &str, matches: impl Fn(&Frame) -> bool) -> Frame {
        match self.try_expect(DEADLINE, &matches).await {
            Some(frame) => frame,
            None => panic!(
                "expected {what} within {DEADLINE:?}; unmatched frames: {:?}; close: {:?}",
                self.inbox.0, self.close
            ),
        }
    }

    /// The next frame matching `matches` within `limit`, or `None`.
    pub async fn try_expect(
        &mut self,
        limit: Duration,
        matches: &impl Fn(&Frame) -> bool,
    ) -> Option<Frame> {
        if let Some(frame) = self.inbox.take(matches) {
            return Some(frame);
        }
        let deadline = tokio::time::Instant::now() + limit;
        while self.close.is_none() {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match next {
                Some(Ok(Message::Close(frame))) => {
                    self.close = Some(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    }));
                }
                Some(Ok(message)) => {
                    if let Some(frame) = Frame::decode(&message) {
                        if matches(&frame) {
                            return Some(frame);
                        }
                        self.inbox.0.push_back(frame);
                    }
                }
                Some(Err(_)) | None => self.close = Some((1006, String::new())),
            }
        }
        None
    }

    /// The reply to `msg_ref`.
    pub async fn reply(&mut self, msg_ref: &str) -> Frame {
        self.expect(&format!("a reply to ref {msg_ref}"), |f| {
            f.event == "phx_reply" && f.msg_ref == msg_ref
        })
        .await
    }

    /// The next frame with `event` on `topic`.
    pub async fn event(&mut self, topic: &str, event: &str) -> Frame {
        self.expect(&format!("{event} on {topic}"), |f| {
            f.topic == topic && f.event == event
        })
        .await
    }

    /// Waits for the server to close the connection; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.close.is_none() {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("connection not closed within {DEADLINE:?}"),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.close = Some(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    }));
                }
                Ok(Some(Ok(message))) => {
                    if let Some(frame) = Frame::decode(&message) {
                        self.inbox.0.push_back(frame);
                    }
                }
                Ok(Some(Err(_)) | None) => self.close = Some((1006, String::new())),
            }
        }
        self.close.clone().unwrap_or((1006, String::new()))
    }

    /// Frames received and not yet matched.
    pub fn unmatched(&self) -> Vec<Frame> {
        self.inbox.0.iter().cloned().collect()
    }
}
