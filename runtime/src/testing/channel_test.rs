//! `ChannelTest`: channels without a network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::frame::{DEADLINE, Frame, Inbox};
use crate::mount::{ErasedSocket, MountedSocket};
use crate::protocol::{Inbound, Payload, Ref, Vsn};
use crate::socket_actor::{SocketMsg, StartArgs};
use crate::transport::{Control, OutFrame, Outbound};
use crate::{
    ConnectError, ConnectInfo, Params, PubSub, Runtime, Socket, SocketMount, TransportConfig,
};

/// The messages of an outbound queue slot: fragments are joined back into one text message,
/// a batch gives each of its messages.
fn reassemble(out: OutFrame) -> Vec<Message> {
    let OutFrame::Fragments(fragments) = out else {
        return out.into_messages();
    };
    let mut text = Vec::new();
    for message in fragments {
        if let Message::Frame(frame) = message {
            text.extend_from_slice(frame.payload());
        }
    }
    vec![Message::Text(
        String::from_utf8_lossy(&text).into_owned().into(),
    )]
}

/// Drives one socket's channels without a network, like `Phoenix.ChannelTest`.
pub struct ChannelTest {
    runtime: Runtime,
    actor: ActorRef<SocketMsg>,
    rx: crate::transport::OutboundReceiver,
    _control: Arc<Control>,
    inbox: Inbox,
    next_ref: u64,
    joins: std::collections::HashMap<String, String>,
}

impl ChannelTest {
    /// Connects `mount`'s socket with `params` (as if from the query string).
    pub async fn connect<S: Socket>(
        mount: SocketMount<S>,
        params: &[(&str, &str)],
    ) -> Result<Self, ConnectError> {
        let runtime = Runtime::start(TransportConfig::default())
            .await
            .map_err(|_| ConnectError::with_status(http::StatusCode::INTERNAL_SERVER_ERROR))?;
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let info = ConnectInfo {
            peer: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_token: None,
            uri: format!("/socket/websocket?{query}")
                .parse()
                .unwrap_or_default(),
            origin: None,
            user_agent: None,
        };
        let socket = MountedSocket::from(mount);
        let (_, accepted) = socket.connect(&Params::from_query(&query), &info).await?;
        let (out, rx, control) = Outbound::new(
            TransportConfig::default().outbound_queue,
            TransportConfig::default().outbound_queue_bytes,
        );
        let args = StartArgs {
            vsn: Vsn::V2,
            out,
            control: control.clone(),
            pubsub: runtime.pubsub().clone(),
            presence: runtime.presence().clone(),
            registry: runtime.registry().clone(),
            supervisor: runtime.shared.sockets.clone(),
            max_channels: TransportConfig::default().max_channels,
        };
        let (actor, _) = accepted
            .start(args)
            .await
            .map_err(|_| ConnectError::with_status(http::StatusCode::INTERNAL_SERVER_ERROR))?;
        Ok(Self {
            runtime,
            actor,
            rx,
            _control: control,
            inbox: Inbox::default(),
            next_ref: 0,
            joins: Default::default(),
        })
    }

    /// The PubSub the channels use (to broadcast from "elsewhere" or subscribe).
    pub fn pubsub(&self) -> &PubSub {
        self.runtime.pubsub()
    }

    fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    fn send(
        &self,
        join_ref: Option<&str>,
        msg_ref: &str,
        topic: &str,
        event: &str,
        payload: Payload,
    ) {
        let _ = self.actor.cast(SocketMsg::Frame(
            Inbound {
                join_ref: join_ref.map_or(Ref::NULL, Ref::from_string),
                msg_ref: Ref::from_string(msg_ref),
                topic: topic.to_owned(),
                event: event.to_owned(),
                payload,
            },
            None,
        ));
    }

    /// Joins `topic` and returns the join reply (`status`, `response`).
    pub async fn join(&mut self, topic: &str, payload: Value) -> Frame {
        let join_ref = self.make_ref();
        self.send(
            Some(&join_ref),
            &join_ref,
            topic,
            "phx_join",
            Payload::Json(payload),
        );
        let reply = self.assert_reply(&join_ref).await;
        if reply.status() == Some("ok") {
            self.joins.insert(topic.to_owned(), join_ref);
        }
        reply
    }

    /// Pushes `event` on a joined topic; returns the ref to pass to [`ChannelTest::assert_reply`].
    pub async fn push(&mut self, topic: &str, event: &str, payload: impl Into<Payload>) -> String {
        let msg_ref = self.make_ref();
        let join_ref = self.joins.get(topic).cloned();
        self.send(join_ref.as_deref(), &msg_ref, topic, event, payload.into());
        msg_ref
    }

    /// Leaves `topic`; returns the leave's ref.
    pub async fn leave(&mut self, topic: &str) -> String {
        let msg_ref = self.push(topic, "phx_leave", json!({})).await;
        self.joins.remove(topic);
        msg_ref
    }

    async fn expect(&mut self, what: &str, matches: impl Fn(&Frame) -> bool) -> Frame {
        if let Some(frame) = self.inbox.take(&matches) {
            return frame;
        }
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(out) => {
                    let mut found = None;
                    for frame in reassemble(out).iter().filter_map(Frame::decode) {
                        if found.is_none() && matches(&frame) {
                            found = Some(frame);
                        } else {
                            self.inbox.0.push_back(frame);
                        }
                    }
                    if let Some(frame) = found {
                        return frame;
                    }
                }
                _ => panic!(
                    "expected {what} within {DEADLINE:?}; unmatched frames: {:?}",
                    self.inbox.0
                ),
            }
        }
    }

    /// The reply to `msg_ref`.
    pub async fn assert_reply(&mut self, msg_ref: &str) -> Frame {
        self.expect(&format!("a reply to {msg_ref}"), |f| {
            f.event == "phx_reply" && f.msg_ref == msg_ref
        })
        .await
    }

    /// The next push (join_ref set) of `event`; returns its payload.
    pub async fn assert_push(&mut self, event: &str) -> Value {
        self.expect(&format!("a push of {event}"), |f| {
            f.event == event && !f.join_ref.is_null()
        })
        .await
        .payload
    }

    /// The next broadcast (join_ref null) of `event`; returns its payload.
    pub async fn assert_broadcast(&mut self, event: &str) -> Value {
        self.expect(&format!("a broadcast of {event}"), |f| {
            f.event == event && f.join_ref.is_null()
        })
        .await
        .payload
    }

    /// The next `phx_close` or `phx_error` for `topic`.
    pub async fn assert_closed(&mut self, topic: &str) -> Frame {
        self.expect(&format!("phx_close or phx_error on {topic}"), |f| {
            f.topic == topic && (f.event == "phx_close" || f.event == "phx_error")
        })
        .await
    }
}

impl Drop for ChannelTest {
    fn drop(&mut self) {
        let _ = self.actor.cast(SocketMsg::Closed);
        // Stop this test's supervision tree too.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let runtime = self.runtime.clone();
            handle.spawn(async move { runtime.shutdown(Duration::from_secs(1)).await });
        }
    }
}
