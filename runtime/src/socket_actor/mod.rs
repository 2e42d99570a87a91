//! The socket actor: one per connection. Crate-private; users see [`super::Socket`] and
//! [`super::Channel`].
//!
//! It owns the connection's joined channels (topic → join) and routes every decoded client
//! message by the rules of the Phoenix protocol (heartbeats are answered by the transport
//! before they get here). Channel callbacks run inside this actor, one at a time, each guarded
//! so that a panic or `Err` ends only that join. Broadcasts reach the client without passing
//! through here (fastlane), except intercepted events. Every way a join ends goes through one
//! function (`ending.rs`), so none can forget to untrack, unsubscribe or unregister it.

use std::any::Any;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::channel::{Channel, ChannelContext, Continue, HandleIn, JoinInbox, Reply, StopReason};
use super::metering::JoinedGuard;
use super::mount::{Accepted, ErasedInstance, ErasedJoin, Outcome, Routes};
use super::presence::Presence;
use super::protocol::{self, Inbound, Ref, Vsn, events};
use super::pubsub::{Broadcast, Delivery, PubSub, SubscriberId};
use super::registry::{LiveSocket, SocketRegistry};
use super::supervisor::Slot;
use super::transport::{CloseReason, Control, Outbound, encoded_to_message};

#[cfg(any(test, feature = "testing"))]
mod detached;
mod ending;
mod joins;
mod output;
#[cfg(any(test, feature = "testing"))]
pub use detached::detached_context;
use ending::{Ending, How};
use joins::Joins;

/// Messages a socket actor handles.
pub(crate) enum SocketMsg {
    /// A decoded client message, with the transport's inbound-window permit (released when
    /// the message has been handled).
    Frame(Inbound, Option<tokio::sync::OwnedSemaphorePermit>),
    /// An intercepted broadcast for the join `subscriber` of `topic`.
    Intercepted {
        topic: Arc<str>,
        subscriber: SubscriberId,
        broadcast: Arc<Broadcast>,
    },
    /// A typed message for `handle_info` of the join `subscriber` of `topic`.
    Info {
        topic: Arc<str>,
        subscriber: SubscriberId,
        message: Box<dyn Any + Send>,
    },
    /// The topic actor of the join `subscriber` of `topic` ended under it (it failed, or the
    /// topic's presences were lost): end the join with `phx_error`, so the client rejoins.
    SubscriptionLost {
        topic: Arc<str>,
        subscriber: SubscriberId,
    },
    /// The drain reached this socket. Handled after every frame handed on before it (so after
    /// their replies were queued), it closes the connection with 1012 (which writes what is
    /// queued first); frames handed on after it are never handled (neither answered nor done).
    Drain,
    /// The connection is gone: terminate every channel and stop.
    Closed,
}

/// What a new channel context is built from.
pub(crate) struct ContextParts<A> {
    topic: Arc<str>,
    join_ref: Ref,
    assigns: Arc<A>,
    socket_id: Option<Arc<str>>,
    pubsub: PubSub,
    presence: Presence,
    subscriber: SubscriberId,
    socket: ActorRef<SocketMsg>,
    inbox: Arc<JoinInbox>,
}

impl<A: Send + Sync + 'static> ContextParts<A> {
    pub(crate) fn into_context<C: Channel<Assigns = A>>(self) -> ChannelContext<C> {
        ChannelContext {
            topic: self.topic,
            join_ref: self.join_ref,
            assigns: self.assigns,
            socket_id: self.socket_id,
            pubsub: self.pubsub,
            presence: self.presence,
            subscriber: self.subscriber,
            socket: self.socket,
            inbox: self.inbox,
            pushes: Vec::new(),
        }
    }
}

/// Everything a socket actor needs besides the accepted connection.
pub(crate) struct StartArgs {
    pub(crate) vsn: Vsn,
    pub(crate) out: Outbound,
    pub(crate) control: Arc<Control>,
    pub(crate) pubsub: PubSub,
    pub(crate) presence: Presence,
    pub(crate) registry: SocketRegistry,
    /// The `sockets` supervisor (its slot: it may have been restarted).
    pub(crate) supervisor: Slot<ActorCell>,
    pub(crate) max_channels: usize,
}

/// A started socket actor and its task.
pub(crate) type Started = Result<(ActorRef<SocketMsg>, JoinHandle<()>), SpawnErr>;

/// An accepted connection that can start its socket actor.
pub(crate) trait Startable: Send {
    fn start(self: Box<Self>, args: StartArgs) -> BoxFuture<'static, Started>;
}

impl<A: Send + Sync + 'static> Startable for Accepted<A> {
    fn start(self: Box<Self>, args: StartArgs) -> BoxFuture<'static, Started> {
        Box::pin(async move {
            let supervisor = args.supervisor.get();
            Actor::spawn_linked(None, SocketActor::<A>::default(), (*self, args), supervisor).await
        })
    }
}

struct Joined<A> {
    join_ref: Ref,
    subscriber: SubscriberId,
    instance: Box<dyn ErasedInstance<A>>,
    /// Its pattern's metrics; counts it as joined while it lives.
    meters: JoinedGuard,
}

pub(crate) struct SocketState<A> {
    vsn: Vsn,
    out: Outbound,
    pubsub: PubSub,
    presence: Presence,
    assigns: Arc<A>,
    socket_id: Option<Arc<str>>,
    routes: Arc<Routes<A>>,
    max_channels: usize,
    /// The joins, by topic (few for most sockets; see [`Joins`]).
    channels: Joins<Joined<A>>,
    /// Messages joins send themselves while their `join` runs.
    inbox: Arc<JoinInbox>,
    /// The join in progress (from its `join` callback until it is recorded in `channels` or
    /// has failed): if the actor dies meanwhile (killed after `close_grace`, or stopped with
    /// its supervisor), its state's `Drop` removes what the join may have left: a subscription
    /// on its way to the topic actor, presences tracked by `join`.
    joining: Option<(Arc<str>, SubscriberId)>,
    /// This socket in the socket registry, under its id and disconnect topics.
    registered: Option<Registered>,
    /// Closes the connection (the drain's 1012).
    control: Arc<Control>,
    /// The drain reached this socket: client frames are no longer handled.
    draining: bool,
}

/// A socket's registration in the socket registry.
struct Registered {
    registry: SocketRegistry,
    socket: ractor::ActorId,
    names: Vec<String>,
    /// What the registry hands out for this socket (pushes reach its joins through it).
    live: Arc<LiveSocket>,
}

impl Drop for Registered {
    /// However the socket ends, its names stop pointing at it (and pushes already holding its
    /// `LiveSocket` find no join).
    fn drop(&mut self) {
        self.live.clear();
        self.registry
            .unregister(self.socket, std::mem::take(&mut self.names));
    }
}

pub(crate) struct SocketActor<A>(std::marker::PhantomData<fn() -> A>);

impl<A> Default for SocketActor<A> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<A: Send + Sync + 'static> Actor for SocketActor<A> {
    type Msg = SocketMsg;
    type State = SocketState<A>;
    type Arguments = (Accepted<A>, StartArgs);

    async fn pre_start(
        &self,
        myself: ActorRef<SocketMsg>,
        (accepted, args): Self::Arguments,
    ) -> Result<SocketState<A>, ActorProcessingErr> {
        let names: Vec<String> = accepted
            .id
            .iter()
            .chain(&accepted.disconnect_topics)
            .cloned()
            .collect();
        let registered = (!names.is_empty()).then(|| {
            let live = Arc::new(LiveSocket::new(
                args.out.clone(),
                args.control.clone(),
                args.vsn,
            ));
            args.registry.register(
                myself.get_id(),
                names.clone(),
                live.clone(),
                accepted.connected_at,
            );
            Registered {
                registry: args.registry.clone(),
                socket: myself.get_id(),
                names,
                live,
            }
        });
        Ok(SocketState {
            vsn: args.vsn,
            out: args.out,
            pubsub: args.pubsub,
            presence: args.presence,
            assigns: accepted.assigns,
            socket_id: accepted.id.map(Arc::from),
            routes: accepted.routes,
            max_channels: args.max_channels,
            channels: Joins::default(),
            inbox: Arc::default(),
            joining: None,
            registered,
            control: args.control,
            draining: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SocketMsg>,
        message: SocketMsg,
        state: &mut SocketState<A>,
    ) -> Result<(), ActorProcessingErr> {
        // The larger futures are boxed: the actor's loop future is sized for its largest state
        // and lives as long as the connection, so keeping routing inline cost ~5 KB per idle
        // connection. Boxed, that memory exists only while a message is being handled.
        match message {
            // Handed on after the drain: never handled.
            SocketMsg::Frame(_, _) if state.draining => {}
            SocketMsg::Frame(inbound, _permit) => Box::pin(state.route(&myself, inbound)).await,
            SocketMsg::Intercepted {
                topic,
                subscriber,
                broadcast,
            } => {
                let Some(joined) = state.member(&topic, subscriber) else {
                    return Ok(());
                };
                let outcome = joined
                    .instance
                    .handle_out(&broadcast.event, broadcast.payload.clone())
                    .await;
                Box::pin(state.after_continue(&topic, outcome)).await;
            }
            SocketMsg::Info {
                topic,
                subscriber,
                message,
            } => {
                let Some(joined) = state.member(&topic, subscriber) else {
                    return Ok(());
                };
                let outcome = joined.instance.handle_info(message).await;
                Box::pin(state.after_continue(&topic, outcome)).await;
            }
            SocketMsg::SubscriptionLost { topic, subscriber } => {
                if state.member(&topic, subscriber).is_some() {
                    tracing::error!(%topic, "the topic's subscription was lost; ending the join");
                    let how = How::Stopped {
                        reason: StopReason::Error("subscription lost".into()),
                        tell: true,
                        reply: None,
                    };
                    Box::pin(state.end_join(&topic, how)).await;
                }
            }
            SocketMsg::Drain => {
                state.draining = true;
                state.control.close(CloseReason::Drain);
            }
            SocketMsg::Closed => {
                Box::pin(state.shutdown()).await;
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SocketMsg>,
        state: &mut SocketState<A>,
    ) -> Result<(), ActorProcessingErr> {
        // Normally empty by now; covers a stop for any other reason.
        Box::pin(state.shutdown()).await;
        Ok(())
    }
}

impl<A: Send + Sync + 'static> SocketState<A> {
    /// The join `subscriber` of `topic`, if it is still live (a replaced or ended join's
    /// messages are dropped; join_refs chosen by clients are not trusted to be unique).
    fn member(&mut self, topic: &str, subscriber: SubscriberId) -> Option<&mut Joined<A>> {
        self.channels
            .get_mut(topic)
            .filter(|j| j.subscriber == subscriber)
    }

    /// Routes one client message (protocol §3.2).
    async fn route(&mut self, myself: &ActorRef<SocketMsg>, msg: Inbound) {
        let joined = self.channels.contains(msg.topic.as_str());
        match (msg.event.as_str(), joined) {
            (events::JOIN, false) => self.join(myself, msg, None).await,
            (events::JOIN, true) => {
                let topic: Arc<str> = Arc::from(msg.topic.as_str());
                // Its `phx_close` follows the new join's reply.
                let how = How::Stopped {
                    reason: StopReason::DuplicateJoin,
                    tell: false,
                    reply: None,
                };
                let old = self.end_join(&topic, how).await;
                self.join(myself, msg, old).await;
            }
            (events::LEAVE, true) => {
                let topic: Arc<str> = Arc::from(msg.topic.as_str());
                let Some(recorded) = self.current_join_ref(&topic, &msg.join_ref) else {
                    return;
                };
                let how = How::Stopped {
                    reason: StopReason::Left,
                    tell: true,
                    reply: self.reply_frame(&recorded, &msg.msg_ref, &topic, &Reply::ok()),
                };
                self.end_join(&topic, how).await;
            }
            (_, true) => {
                let topic: Arc<str> = Arc::from(msg.topic.as_str());
                let Some(recorded) = self.current_join_ref(&topic, &msg.join_ref) else {
                    return;
                };
                let Some(joined) = self.channels.get_mut(&topic) else {
                    return;
                };
                let span = tracing::debug_span!(
                    parent: None,
                    "channel.handle_in",
                    otel.kind = "server",
                    messaging.destination.name = %topic,
                    messaging.destination.template = tracing::field::Empty,
                    messaging.operation.name = %msg.event,
                );
                self.routes.record_pattern(&span, &topic);
                let started = std::time::Instant::now();
                let outcome = joined
                    .instance
                    .handle_in(&msg.event, msg.payload)
                    .instrument(span)
                    .await;
                let meters = joined.meters.meters();
                meters.client_events.increment(1);
                meters.handle_in.record(started.elapsed());
                self.push_all(&recorded, &topic, outcome.pushes);
                match outcome.result {
                    Ok(HandleIn::NoReply) => {}
                    Ok(HandleIn::Reply(reply)) => {
                        self.reply(&recorded, &msg.msg_ref, &topic, &reply)
                    }
                    Ok(HandleIn::Stop(reason, reply)) => {
                        let reply = reply
                            .and_then(|r| self.reply_frame(&recorded, &msg.msg_ref, &topic, &r));
                        let how = How::Stopped {
                            reason,
                            tell: true,
                            reply,
                        };
                        self.end_join(&topic, how).await;
                    }
                    Err(crash) => {
                        self.end_join(&topic, How::Crashed(crash)).await;
                    }
                }
            }
            (events::LEAVE, false) => {
                self.reply(&msg.join_ref, &msg.msg_ref, &msg.topic, &Reply::ok())
            }
            (_, false) => self.reply(
                &Ref::NULL,
                &msg.msg_ref,
                &msg.topic,
                &Reply::error("unmatched topic"),
            ),
        }
    }

    /// The recorded join_ref if the message's join_ref is null or equal to it; stale → `None`.
    fn current_join_ref(&self, topic: &str, join_ref: &Ref) -> Option<Ref> {
        let recorded = &self.channels.get(topic)?.join_ref;
        (join_ref.is_null() || join_ref == recorded).then(|| recorded.clone())
    }

    /// Joins `msg.topic`. `replaced` is the join_ref of a join this one replaces: its
    /// `phx_close` goes out right after this join's reply.
    async fn join(&mut self, myself: &ActorRef<SocketMsg>, msg: Inbound, replaced: Option<Ref>) {
        let topic: Arc<str> = Arc::from(msg.topic.as_str());
        let close_replaced = |state: &Self| {
            if let Some(old) = &replaced {
                state.send(protocol::encode_close(state.vsn, old, &topic));
            }
        };
        let Some((route, meters)) = self
            .routes
            .find(&topic)
            .map(|r| (r.channel.clone(), r.meters.clone()))
        else {
            tracing::debug!(%topic, "join refused: unmatched topic");
            self.reply(
                &Ref::NULL,
                &msg.msg_ref,
                &topic,
                &Reply::error("unmatched topic"),
            );
            close_replaced(self);
            return;
        };
        if self.channels.len() >= self.max_channels {
            meters.joins_error.increment(1);
            self.reply(
                &msg.join_ref,
                &msg.msg_ref,
                &topic,
                &Reply::error("too many channels joined"),
            );
            close_replaced(self);
            return;
        }
        let subscriber = self.pubsub.next_id();
        let parts = ContextParts {
            topic: topic.clone(),
            join_ref: msg.join_ref.clone(),
            assigns: self.assigns.clone(),
            socket_id: self.socket_id.clone(),
            pubsub: self.pubsub.clone(),
            presence: self.presence.clone(),
            subscriber,
            socket: myself.clone(),
            inbox: self.inbox.clone(),
        };
        let intercepts = route.intercepts();
        self.inbox.open(subscriber);
        self.joining = Some((topic.clone(), subscriber));
        let span = tracing::debug_span!(
            parent: None,
            "channel.join",
            otel.kind = "server",
            messaging.destination.name = %topic,
            messaging.destination.template = tracing::field::Empty,
        );
        self.routes.record_pattern(&span, &topic);
        let started = std::time::Instant::now();
        let outcome = route
            .join(&topic, msg.payload, parts)
            .instrument(span)
            .await;
        // Messages the join sent itself meanwhile: handled below if it joined, else dropped.
        let early = self.inbox.close();
        let mut ending = Ending {
            topic: topic.clone(),
            join_ref: msg.join_ref.clone(),
            subscriber,
            instance: None,
            meters: meters.clone(),
        };
        let (instance, reply, pushes) = match outcome {
            ErasedJoin::Joined {
                instance,
                reply,
                pushes,
            } => (instance, reply, pushes),
            ErasedJoin::Refused(response) => {
                // Whatever `join` did before refusing (a presence tracked) is undone first.
                self.end(ending, How::NotJoined).await;
                let reply = Reply::error_with(response);
                self.reply(&msg.join_ref, &msg.msg_ref, &topic, &reply);
                meters.joins_error.increment(1);
                meters.join_duration.record(started.elapsed());
                close_replaced(self);
                return;
            }
            ErasedJoin::Crashed(error) => {
                tracing::error!(%topic, %error, "channel join crashed");
                self.end(ending, How::NotJoined).await;
                let reply = Reply::error("join crashed");
                self.reply(&msg.join_ref, &msg.msg_ref, &topic, &reply);
                meters.joins_crash.increment(1);
                meters.crashes.increment(1);
                meters.join_duration.record(started.elapsed());
                close_replaced(self);
                return;
            }
        };
        let reply = Reply::ok_with(reply);
        let frame = protocol::encode_reply(
            self.vsn,
            &msg.join_ref,
            &msg.msg_ref,
            &topic,
            &reply.status,
            &reply.response,
        )
        .map(encoded_to_message)
        .ok();
        let delivery = Delivery::Fastlane {
            out: self.out.clone(),
            vsn: self.vsn,
            intercepts,
            socket: myself.clone(),
        };
        if let Some(registered) = &self.registered {
            registered.live.joining(topic.clone(), msg.join_ref.clone());
        }
        // The topic actor queues the reply before any broadcast can follow it.
        if !self.pubsub.add(&topic, subscriber, delivery, frame).await {
            // Only while shutting down. Never record a join whose reply was not sent.
            tracing::error!(%topic, "join: could not subscribe; answering join crashed");
            ending.instance = Some(instance);
            self.end(ending, How::NotJoined).await;
            let reply = Reply::error("join crashed");
            self.reply(&msg.join_ref, &msg.msg_ref, &topic, &reply);
            meters.joins_crash.increment(1);
            close_replaced(self);
            return;
        }
        meters.joins_ok.increment(1);
        meters.join_duration.record(started.elapsed());
        close_replaced(self);
        self.push_all(&msg.join_ref, &topic, pushes);
        if let Some(registered) = &self.registered {
            registered.live.joined(&topic);
        }
        self.joining = None;
        self.channels.insert(
            topic.clone(),
            Joined {
                join_ref: msg.join_ref,
                subscriber,
                instance,
                meters: meters.joined(),
            },
        );
        for message in early {
            let Some(joined) = self.member(&topic, subscriber) else {
                break;
            };
            let outcome = joined.instance.handle_info(message).await;
            self.after_continue(&topic, outcome).await;
        }
    }

    /// After `handle_info`/`handle_out`: send pushes, then stop or crash if asked.
    async fn after_continue(&mut self, topic: &Arc<str>, outcome: Outcome<Continue>) {
        let Some(join_ref) = self.channels.get(topic).map(|j| j.join_ref.clone()) else {
            return;
        };
        self.push_all(&join_ref, topic, outcome.pushes);
        match outcome.result {
            Ok(Continue::Continue) => {}
            Ok(Continue::Stop(reason)) => {
                let how = How::Stopped {
                    reason,
                    tell: true,
                    reply: None,
                };
                self.end_join(topic, how).await;
            }
            Err(crash) => {
                self.end_join(topic, How::Crashed(crash)).await;
            }
        }
    }
}
