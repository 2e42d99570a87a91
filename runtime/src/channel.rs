//! The [`Channel`] trait: what happens on a topic.
//!
//! A channel is mounted on a topic pattern (`"room:*"` or an exact topic) of a socket. Each
//! successful join creates a *state* (`Channel::State`, the per-join assigns); the channel value
//! itself is the behaviour, shared by all joins (`&self`), like a ractor actor and its state.
//!
//! In the order you meet them:
//! - **Join** — [`Channel::join`] decides whether the client may join the topic and returns
//!   the state, or refuses with a reply (the client gets `{"status":"error","response":…}`).
//! - **Incoming events** — [`Channel::handle_in`] gets every client event on the topic and may
//!   reply, not reply, or stop the channel. [`Payload::decode`] reads a payload into your own
//!   serde type (an error, not a panic, for the wrong shape); [`Reply::ok_json`] and
//!   [`Payload::json`] go the other way.
//! - **Broadcasts** — [`ChannelContext::broadcast`] sends an event to every subscriber of the
//!   topic (this client included); [`ChannelContext::broadcast_from`] to all but this one. A
//!   broadcast is encoded once per serializer and the same bytes go to every subscriber.
//! - **Pushes** — [`ChannelContext::push`] sends an event to this client only.
//! - **Intercepting** — events listed in [`Channel::intercepts`] reach
//!   [`Channel::handle_out`] once per subscriber instead of going out directly; that costs one
//!   encode per subscriber instead of one per broadcast, so intercept only what you must.
//! - **Messages** — [`Channel::handle_info`] receives typed messages sent through a
//!   [`ChannelHandle`] (from a timer, a background task, anywhere in the server).
//! - **Terminate** — [`Channel::terminate`] runs when the channel stops (leave, socket closed,
//!   duplicate join, or a stop you asked for).
//!
//! **Failure isolation:** a panic or an `Err` in `join` answers the join with
//! `{"reason":"join crashed"}`; in any other callback it ends this join only, with
//! `phx_error` `{"reason":"channel_crash"}` (phoenix.js then rejoins). The socket and its other
//! channels carry on.
//!
//! **Security:** `join` and `handle_in` payloads are untrusted client data.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ractor::ActorRef;
use serde::Serialize;
use serde_json::{Value, json};

use super::presence::{Presence, PresenceError};
use super::protocol::{Payload, PayloadError, Ref};
use super::pubsub::{PubSub, SubscriberId};
use super::socket_actor::SocketMsg;

/// What a callback may fail with; the channel then crashes (see the module docs).
pub type ChannelError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a join.
#[derive(Debug)]
pub enum JoinOutcome<S> {
    /// Joined: the per-join state, and the reply's response (usually `{}`).
    Joined {
        /// Per-join state.
        state: S,
        /// The join reply's `response`.
        reply: Value,
    },
    /// Refused: the error reply's `response`, conventionally `{"reason": "..."}`.
    Refused(Value),
}

impl<S> JoinOutcome<S> {
    /// Joined, replying `{}`.
    pub fn ok(state: S) -> Self {
        JoinOutcome::Joined {
            state,
            reply: json!({}),
        }
    }

    /// Joined, replying `reply`.
    pub fn ok_with(state: S, reply: Value) -> Self {
        JoinOutcome::Joined { state, reply }
    }

    /// Refused with `{"reason": reason}`.
    pub fn refuse(reason: &str) -> Self {
        JoinOutcome::Refused(json!({ "reason": reason }))
    }
}

/// A reply to a client event: a status (`"ok"`, `"error"`, or any string) and a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status phoenix.js matches with `receive(status, …)`.
    pub status: String,
    /// The response: JSON, or bytes (sent as a binary reply frame on V2).
    pub response: Payload,
}

impl Reply {
    /// `ok` with `{}`.
    pub fn ok() -> Self {
        Self::ok_with(json!({}))
    }

    /// `ok` with `response`.
    pub fn ok_with(response: impl Into<Payload>) -> Self {
        Self {
            status: "ok".to_owned(),
            response: response.into(),
        }
    }

    /// `error` with `{"reason": reason}`.
    pub fn error(reason: &str) -> Self {
        Self::error_with(json!({ "reason": reason }))
    }

    /// `error` with `response`.
    pub fn error_with(response: impl Into<Payload>) -> Self {
        Self {
            status: "error".to_owned(),
            response: response.into(),
        }
    }

    /// `ok` with `response` serialized as JSON (see [`Payload::json`]).
    ///
    /// ```
    /// # use fawkes_runtime::Reply;
    /// #[derive(serde::Serialize)]
    /// struct Score { points: u32 }
    ///
    /// let reply = Reply::ok_json(&Score { points: 3 })?;
    /// assert_eq!(reply.response, serde_json::json!({"points": 3}).into());
    /// # Ok::<(), fawkes_runtime::PayloadError>(())
    /// ```
    pub fn ok_json<T: Serialize + ?Sized>(response: &T) -> Result<Self, PayloadError> {
        Payload::json(response).map(Self::ok_with)
    }

    /// `error` with `response` serialized as JSON (see [`Payload::json`]).
    pub fn error_json<T: Serialize + ?Sized>(response: &T) -> Result<Self, PayloadError> {
        Payload::json(response).map(Self::error_with)
    }
}

/// Why a channel stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Stopped on purpose by the channel: the client gets `phx_close`.
    Normal,
    /// Stopped on purpose with a reason: the client gets `phx_close`.
    Shutdown(String),
    /// The client left (`phx_leave`).
    Left,
    /// The connection closed.
    Closed,
    /// The client joined the same topic again; this instance is replaced.
    DuplicateJoin,
    /// A failure: the client gets `phx_error` and rejoins.
    Error(String),
}

impl StopReason {
    /// Whether the client is told `phx_close` (on purpose) rather than `phx_error`.
    pub fn is_graceful(&self) -> bool {
        !matches!(self, StopReason::Error(_))
    }
}

/// What [`Channel::handle_in`] decides.
#[derive(Debug)]
pub enum HandleIn {
    /// No reply (the client's push times out unless you reply some other way).
    NoReply,
    /// Reply to the event.
    Reply(Reply),
    /// Stop the channel, optionally replying first.
    Stop(StopReason, Option<Reply>),
}

/// What [`Channel::handle_info`] and [`Channel::handle_out`] decide.
#[derive(Debug)]
pub enum Continue {
    /// Keep going.
    Continue,
    /// Stop the channel.
    Stop(StopReason),
}

/// The channel's view of its join: topic, assigns, and the ways to send.
pub struct ChannelContext<C: Channel + ?Sized> {
    pub(crate) topic: Arc<str>,
    pub(crate) join_ref: Ref,
    pub(crate) assigns: Arc<C::Assigns>,
    pub(crate) socket_id: Option<Arc<str>>,
    pub(crate) pubsub: PubSub,
    pub(crate) presence: Presence,
    pub(crate) subscriber: SubscriberId,
    pub(crate) socket: ActorRef<SocketMsg>,
    pub(crate) inbox: Arc<JoinInbox>,
    pub(crate) pushes: Vec<(String, Payload)>,
}

impl<C: Channel + ?Sized> ChannelContext<C> {
    /// The joined topic, e.g. `room:lobby`.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The socket's assigns (what [`super::Socket::connect`] returned).
    pub fn assigns(&self) -> &C::Assigns {
        &self.assigns
    }

    /// This join's `join_ref`, as the client sent it.
    pub fn join_ref(&self) -> &Ref {
        &self.join_ref
    }

    /// The socket id, if the socket declared one.
    pub fn socket_id(&self) -> Option<&str> {
        self.socket_id.as_deref()
    }

    /// Sends `event` to this client only. Pushes made during `join` go out right after the
    /// join reply; during `handle_in`, before its reply.
    pub fn push(&mut self, event: impl Into<String>, payload: impl Into<Payload>) {
        self.pushes.push((event.into(), payload.into()));
    }

    /// Sends `event` to every subscriber of this topic, this client included.
    pub fn broadcast(&self, event: &str, payload: impl Into<Payload>) {
        self.pubsub.broadcast(&self.topic, event, payload);
    }

    /// Sends `event` to every subscriber of this topic except this channel.
    pub fn broadcast_from(&self, event: &str, payload: impl Into<Payload>) {
        self.pubsub
            .broadcast_from(self.subscriber, &self.topic, event, payload);
    }

    /// The PubSub, to broadcast on other topics.
    pub fn pubsub(&self) -> &PubSub {
        &self.pubsub
    }

    /// Tracks this join's presence on its topic under `key` with `meta` (a JSON object);
    /// returns the meta's `phx_ref`. The presence goes when the join ends, whatever the reason
    /// (a join refused or crashed after tracking included).
    pub async fn track(&self, key: &str, meta: Value) -> Result<String, PresenceError> {
        self.presence
            .track(&self.topic, self.subscriber, key, meta)
            .await
    }

    /// Replaces this join's meta for `key` (new `phx_ref`, the old one as `phx_ref_prev`).
    pub async fn update_presence(&self, key: &str, meta: Value) -> Result<String, PresenceError> {
        self.presence
            .update(&self.topic, self.subscriber, key, meta)
            .await
    }

    /// Stops tracking this join under `key`.
    pub fn untrack(&self, key: &str) {
        self.presence.untrack(&self.topic, self.subscriber, key);
    }

    /// Pushes `presence_state` (the topic's presence list) to this client. Call it after the
    /// join (e.g. from `handle_info` of a message sent to yourself in `join`), so the list is
    /// taken once this join receives `presence_diff` broadcasts.
    pub async fn push_presence_state(&mut self) {
        let state = self.presence.list_encoded(&self.topic).await;
        self.push(super::presence::events::STATE, Payload::Encoded(state));
    }

    /// The presence tracker, for other topics.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// A handle that delivers typed messages to [`Channel::handle_info`] of this join.
    pub fn handle(&self) -> ChannelHandle<C::Info> {
        ChannelHandle {
            socket: self.socket.clone(),
            topic: self.topic.clone(),
            subscriber: self.subscriber,
            inbox: self.inbox.clone(),
            _message: PhantomData,
        }
    }
}

/// Holds the messages a join sends to its own handle while its `join` runs (one per socket:
/// joins run one at a time). The socket actor handles them right after the join, before its
/// next message, as Phoenix handles `send(self(), …)` from `join` before the next client
/// message.
#[derive(Default)]
pub(crate) struct JoinInbox {
    /// The raw id of the join whose `join` is running (0: none).
    joining: AtomicU64,
    held: Mutex<Vec<Box<dyn Any + Send>>>,
}

impl JoinInbox {
    /// `join` of `subscriber` starts: its own messages are held from now on.
    pub(crate) fn open(&self, subscriber: SubscriberId) {
        self.joining.store(subscriber.raw(), Ordering::Release);
    }

    /// `join` has returned: the held messages, in send order; later ones go to the mailbox.
    pub(crate) fn close(&self) -> Vec<Box<dyn Any + Send>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        self.joining.store(0, Ordering::Release);
        std::mem::take(&mut *held)
    }

    /// Holds `message` if `subscriber`'s `join` is running; else gives it back.
    fn hold(
        &self,
        subscriber: SubscriberId,
        message: Box<dyn Any + Send>,
    ) -> Result<(), Box<dyn Any + Send>> {
        if self.joining.load(Ordering::Acquire) != subscriber.raw() {
            return Err(message);
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock: `close` may have run in between.
        if self.joining.load(Ordering::Acquire) != subscriber.raw() {
            return Err(message);
        }
        held.push(message);
        Ok(())
    }
}

/// Sends typed messages to one join of a channel. Cheap to clone; usable from any task.
pub struct ChannelHandle<M> {
    socket: ActorRef<SocketMsg>,
    topic: Arc<str>,
    subscriber: SubscriberId,
    inbox: Arc<JoinInbox>,
    _message: PhantomData<fn(M)>,
}

impl<M> Clone for ChannelHandle<M> {
    fn clone(&self) -> Self {
        Self {
            socket: self.socket.clone(),
            topic: self.topic.clone(),
            subscriber: self.subscriber,
            inbox: self.inbox.clone(),
            _message: PhantomData,
        }
    }
}

impl<M: Send + 'static> ChannelHandle<M> {
    /// Queues `message` for `handle_info`. Returns `false` if the socket is gone; a message for
    /// a join that has since ended is dropped.
    ///
    /// Messages sent while this join's [`Channel::join`] runs (from `join` itself or from any
    /// task) are handled right after the join succeeds, in send order, before the socket
    /// handles anything else (a client frame already waiting included), as Phoenix does with
    /// `send(self(), :after_join)`. If the join is refused or crashes they are dropped.
    pub fn send(&self, message: M) -> bool {
        let message = Box::new(message) as Box<dyn Any + Send>;
        match self.inbox.hold(self.subscriber, message) {
            Ok(()) => true,
            Err(message) => self
                .socket
                .cast(SocketMsg::Info {
                    topic: self.topic.clone(),
                    subscriber: self.subscriber,
                    message,
                })
                .is_ok(),
        }
    }
}

/// A channel: the behaviour of a topic. See the module docs for the life of a join.
///
/// ```
/// use fawkes_runtime::{Channel, ChannelContext, ChannelError, HandleIn, JoinOutcome, Payload, Reply};
///
/// /// Replies to `ping` with the same payload.
/// struct Echo;
///
/// impl Channel for Echo {
///     type Assigns = ();
///     type State = ();
///     type Info = ();
///
///     async fn join(&self, _topic: &str, _payload: Payload, _ctx: &mut ChannelContext<Self>)
///         -> Result<JoinOutcome<()>, ChannelError> {
///         Ok(JoinOutcome::ok(()))
///     }
///
///     async fn handle_in(&self, event: &str, payload: Payload, _state: &mut (), _ctx: &mut ChannelContext<Self>)
///         -> Result<HandleIn, ChannelError> {
///         Ok(match event {
///             "ping" => HandleIn::Reply(Reply::ok_with(payload)),
///             _ => HandleIn::Reply(Reply::error("unknown event")),
///         })
///     }
/// }
/// ```
pub trait Channel: Send + Sync + 'static {
    /// The socket's assigns type (must match the socket it is mounted on).
    type Assigns: Send + Sync + 'static;
    /// Per-join state.
    type State: Send + 'static;
    /// Messages [`Channel::handle_info`] accepts (use `()` if none).
    type Info: Send + 'static;

    /// Events that go through [`Channel::handle_out`] instead of straight to the client.
    fn intercepts(&self) -> &[&str] {
        &[]
    }

    /// Decides a join of `topic` with the client's `payload` (untrusted).
    ///
    /// Messages this join sends to its own [`ChannelContext::handle`] while `join` runs are
    /// handled by [`Channel::handle_info`] right after a successful join, before any later
    /// client message: track presence and push `presence_state` from there (see
    /// [`ChannelHandle::send`]).
    fn join(
        &self,
        topic: &str,
        payload: Payload,
        ctx: &mut ChannelContext<Self>,
    ) -> impl Future<Output = Result<JoinOutcome<Self::State>, ChannelError>> + Send;

    /// Handles a client event (untrusted payload). By default replies
    /// `error` `{"reason":"unhandled event"}`.
    fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        state: &mut Self::State,
        ctx: &mut ChannelContext<Self>,
    ) -> impl Future<Output = Result<HandleIn, ChannelError>> + Send {
        let _ = (event, payload, state, ctx);
        async { Ok(HandleIn::Reply(Reply::error("unhandled event"))) }
    }

    /// Handles a message sent through a [`ChannelHandle`].
    fn handle_info(
        &self,
        message: Self::Info,
        state: &mut Self::State,
        ctx: &mut ChannelContext<Self>,
    ) -> impl Future<Output = Result<Continue, ChannelError>> + Send {
        let _ = (message, state, ctx);
        async { Ok(Continue::Continue) }
    }

    /// Handles an intercepted broadcast; by default pushes it unchanged.
    fn handle_out(
        &self,
        event: &str,
        payload: Payload,
        state: &mut Self::State,
        ctx: &mut ChannelContext<Self>,
    ) -> impl Future<Output = Result<Continue, ChannelError>> + Send {
        let _ = state;
        ctx.push(event, payload);
        async { Ok(Continue::Continue) }
    }

    /// Runs when the join ends for any reason but a crash.
    fn terminate(
        &self,
        reason: &StopReason,
        state: &mut Self::State,
        ctx: &mut ChannelContext<Self>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (reason, state, ctx);
        async {}
    }
}
