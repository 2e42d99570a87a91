//! `TestSocket`: one connection of a [`super::ChannelCase`], driven without a network.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::case::Observer;
use super::frame::{DEADLINE, Frame, Inbox, listing};
use super::matcher::Match;
use crate::Runtime;
use crate::protocol::{Inbound, Payload, Ref, Vsn, events};
use crate::socket_actor::{SocketMsg, StartArgs, Startable};
use crate::transport::{Control, OutFrame, Outbound, OutboundReceiver};

/// A join the channel refused: the error reply's response (conventionally
/// `{"reason": "..."}`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("join refused: {response}")]
pub struct JoinRefused {
    /// The error reply's `response`.
    pub response: Value,
}

/// One connection of a [`super::ChannelCase`]: the server side is the real socket actor with
/// its channels; the client side is this value, which sends what a client would and asserts
/// on what the server sends it. Made by [`super::ChannelCase::connect`] or
/// [`super::ChannelCase::socket_with_assigns`].
///
/// Assertions wait up to [`DEADLINE`] and return the matched payload; refutations wait the
/// case's refute window ([`super::REFUTE_WINDOW`] by default) and fail if a matching message
/// arrives. Payloads are matched with a [`Match`]: a `serde_json::Value` the payload must
/// contain, or [`super::matching`] with a predicate. Frames skipped by an assertion stay for
/// later ones; a failure lists them.
///
/// Dropping it closes the connection (its channels terminate).
pub struct TestSocket {
    actor: ActorRef<SocketMsg>,
    task: Option<JoinHandle<()>>,
    rx: OutboundReceiver,
    control: Arc<Control>,
    observer: Observer,
    id: Option<String>,
    inbox: Inbox,
    next_ref: u64,
    /// The join_ref of each joined topic.
    joins: HashMap<String, String>,
    refute_window: Duration,
}

impl std::fmt::Debug for TestSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSocket")
            .field("id", &self.id)
            .field("joined", &self.joins.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TestSocket {
    /// Starts the socket actor of an accepted connection.
    pub(crate) async fn start(
        runtime: &Runtime,
        observer: Observer,
        accepted: Box<dyn Startable>,
        id: Option<String>,
        refute_window: Duration,
    ) -> Self {
        let config = runtime.config();
        let (out, rx, control) = Outbound::new(config.outbound_queue, config.outbound_queue_bytes);
        let args = StartArgs {
            vsn: Vsn::V2,
            out,
            control: control.clone(),
            pubsub: runtime.pubsub().clone(),
            presence: runtime.presence().clone(),
            registry: runtime.registry().clone(),
            supervisor: runtime.shared.sockets.clone(),
            max_channels: config.max_channels,
        };
        let (actor, task) = accepted
            .start(args)
            .await
            .unwrap_or_else(|e| panic!("TestSocket: the socket actor did not start: {e}"));
        Self {
            actor,
            task: Some(task),
            rx,
            control,
            observer,
            id,
            inbox: Inbox::default(),
            next_ref: 0,
            joins: HashMap::new(),
            refute_window,
        }
    }

    /// The socket id ([`crate::Socket::id`], or the one given to
    /// [`super::ChannelCase::socket_with_id`]).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
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

    /// Joins `topic` with `payload`: the join reply's response if the channel accepted, or
    /// the refusal.
    ///
    /// # Panics
    /// If no join reply comes within [`DEADLINE`].
    pub async fn join(
        &mut self,
        topic: &str,
        payload: impl Into<Payload>,
    ) -> Result<Value, JoinRefused> {
        let join_ref = self.make_ref();
        self.send(
            Some(&join_ref),
            &join_ref,
            topic,
            events::JOIN,
            payload.into(),
        );
        let reply = self
            .expect("join reply", &|f| is_reply(f, &join_ref), || {
                format!("a reply to the join of {topic:?}")
            })
            .await;
        if reply.status() == Some("ok") {
            self.joins.insert(topic.to_owned(), join_ref);
            Ok(reply.response_value())
        } else {
            Err(JoinRefused {
                response: reply.response_value(),
            })
        }
    }

    /// Subscribes the test to `topic` (see [`super::ChannelCase::assert_broadcast`]), then
    /// joins it, as Phoenix's `subscribe_and_join`. The subscription stays if the join is
    /// refused.
    ///
    /// # Panics
    /// If no join reply comes within [`DEADLINE`].
    pub async fn subscribe_and_join(
        &mut self,
        topic: &str,
        payload: impl Into<Payload>,
    ) -> Result<Value, JoinRefused> {
        self.observer.subscribe(topic).await;
        self.join(topic, payload).await
    }

    /// Pushes `event` on `topic` (for a joined topic, with its join_ref); returns the
    /// message ref, for [`TestSocket::assert_reply`].
    pub async fn push(&mut self, topic: &str, event: &str, payload: impl Into<Payload>) -> String {
        let msg_ref = self.make_ref();
        let join_ref = self.joins.get(topic).cloned();
        self.send(join_ref.as_deref(), &msg_ref, topic, event, payload.into());
        msg_ref
    }

    /// Leaves `topic` (`phx_leave`); returns the message ref (the reply is `ok`, followed by
    /// `phx_close`: [`TestSocket::assert_close`]).
    pub async fn leave(&mut self, topic: &str) -> String {
        let msg_ref = self.push(topic, events::LEAVE, json!({})).await;
        self.joins.remove(topic);
        msg_ref
    }

    /// The reply to `msg_ref`, within [`DEADLINE`]; checks its status (`"ok"`, `"error"`, …)
    /// and that its response matches `response`, and returns the response.
    ///
    /// # Panics
    /// If no reply to `msg_ref` comes in time, or its status or response differ.
    pub async fn assert_reply(
        &mut self,
        msg_ref: &str,
        status: &str,
        response: impl Match,
    ) -> Value {
        let reply = self
            .expect("assert_reply", &|f| is_reply(f, msg_ref), || {
                format!("a reply to ref {msg_ref}")
            })
            .await;
        let got = reply.response_value();
        if reply.status() != Some(status) || !response.matches(&got) {
            panic!(
                "assert_reply: expected a reply {status:?} with {} to ref {msg_ref}, got {}",
                response.describe(),
                reply.summary()
            );
        }
        got
    }

    /// Fails if a reply to `msg_ref` arrives (or has arrived unasserted) within the refute
    /// window.
    ///
    /// # Panics
    /// If one does.
    pub async fn refute_reply(&mut self, msg_ref: &str) {
        self.refute("refute_reply", &|f| is_reply(f, msg_ref)).await;
    }

    /// A frame with `event` whose payload matches `payload`, within [`DEADLINE`]; returns
    /// the payload. Pushes and the broadcasts that reach this socket's channels both count
    /// (a client cannot tell them apart either).
    ///
    /// # Panics
    /// If none arrives in time; the message lists the frames received instead.
    pub async fn assert_push(&mut self, event: &str, payload: impl Match) -> Value {
        let is = |f: &Frame| f.event == event && payload.matches(&f.payload_value());
        self.expect("assert_push", &is, || {
            format!("a push of {event:?} with {}", payload.describe())
        })
        .await
        .payload_value()
    }

    /// Fails if a frame with `event` whose payload matches `payload` arrives (or has arrived
    /// unasserted) within the refute window.
    ///
    /// # Panics
    /// If one does.
    pub async fn refute_push(&mut self, event: &str, payload: impl Match) {
        let is = |f: &Frame| f.event == event && payload.matches(&f.payload_value());
        self.refute("refute_push", &is).await;
    }

    /// `phx_close` on `topic` (the channel stopped on purpose, or was left), within
    /// [`DEADLINE`].
    ///
    /// # Panics
    /// If it does not come in time.
    pub async fn assert_close(&mut self, topic: &str) {
        self.expect("assert_close", &|f| is_end(f, topic, events::CLOSE), || {
            format!("phx_close on {topic:?}")
        })
        .await;
        self.joins.remove(topic);
    }

    /// `phx_error` on `topic` (the channel crashed), within [`DEADLINE`]; returns its
    /// payload.
    ///
    /// # Panics
    /// If it does not come in time.
    pub async fn assert_error(&mut self, topic: &str) -> Value {
        let frame = self
            .expect("assert_error", &|f| is_end(f, topic, events::ERROR), || {
                format!("phx_error on {topic:?}")
            })
            .await;
        self.joins.remove(topic);
        frame.payload_value()
    }

    /// Waits up to [`DEADLINE`] for the server to close this connection (a `disconnect`
    /// broadcast to its socket id, say); returns the WebSocket close code it would send.
    /// The socket's channels then terminate, as after a real connection's close.
    ///
    /// # Panics
    /// If the connection is not closed in time.
    pub async fn assert_disconnected(&mut self) -> u16 {
        if tokio::time::timeout(DEADLINE, self.control.closed())
            .await
            .is_err()
        {
            panic!("assert_disconnected: the connection was not closed within {DEADLINE:?}");
        }
        let _ = self.actor.cast(SocketMsg::Closed);
        self.control.reason().map_or(1000, |reason| reason.code())
    }

    /// Closes the connection and waits (up to [`DEADLINE`]) until its channels have
    /// terminated.
    ///
    /// # Panics
    /// If the socket does not stop in time.
    pub async fn close(mut self) {
        let _ = self.actor.cast(SocketMsg::Closed);
        if let Some(task) = self.task.take()
            && tokio::time::timeout(DEADLINE, task).await.is_err()
        {
            panic!("close: the socket did not stop within {DEADLINE:?}");
        }
    }

    /// Frames received and not yet matched by an assertion.
    pub fn unmatched(&self) -> Vec<Frame> {
        self.inbox.0.iter().cloned().collect()
    }

    /// The first frame matching `is`, already received or arriving before `deadline`; the
    /// others stay in the inbox in arrival order.
    async fn receive(&mut self, deadline: Instant, is: &impl Fn(&Frame) -> bool) -> Option<Frame> {
        if let Some(frame) = self.inbox.take(is) {
            return Some(frame);
        }
        loop {
            let out = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()?;
            let mut found = None;
            for frame in reassemble(out).iter().filter_map(Frame::decode) {
                if found.is_none() && is(&frame) {
                    found = Some(frame);
                } else {
                    self.inbox.0.push_back(frame);
                }
            }
            if found.is_some() {
                return found;
            }
        }
    }

    async fn expect(
        &mut self,
        assertion: &str,
        is: &impl Fn(&Frame) -> bool,
        what: impl FnOnce() -> String,
    ) -> Frame {
        match self.receive(Instant::now() + DEADLINE, is).await {
            Some(frame) => frame,
            None => panic!(
                "{assertion}: expected {} within {DEADLINE:?}{}",
                what(),
                listing("received instead", &self.inbox.0)
            ),
        }
    }

    async fn refute(&mut self, assertion: &str, is: &impl Fn(&Frame) -> bool) {
        if let Some(frame) = self.receive(Instant::now() + self.refute_window, is).await {
            panic!("{assertion}: unexpected {}", frame.summary());
        }
    }
}

impl Drop for TestSocket {
    fn drop(&mut self) {
        let _ = self.actor.cast(SocketMsg::Closed);
    }
}

fn is_reply(frame: &Frame, msg_ref: &str) -> bool {
    frame.event == events::REPLY && frame.msg_ref == msg_ref
}

fn is_end(frame: &Frame, topic: &str, event: &str) -> bool {
    frame.topic == topic && frame.event == event
}

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
