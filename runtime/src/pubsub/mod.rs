//! PubSub: topics, subscribers, broadcasts.
//!
//! Each topic with subscribers has a topic actor (ractor) that owns its subscriber list and
//! fans broadcasts out. A topic actor handles its messages in order, so two broadcasts to one
//! topic from one sender reach every subscriber in send order. Channel subscribers use the
//! *fastlane*: the topic actor encodes a broadcast once per serializer and puts the same bytes
//! on every subscriber's outbound queue, without going through the socket actor.
//!
//! A topic actor starts with its first subscriber and stops when a removal empties it and no
//! subscription is on its way (an unsubscribe of an id it never had, or a broadcast, never
//! stops it). The map from topic to actor is sharded (`DashMap`); no lock is held across an
//! await. A topic actor that fails (or ends with its supervisor) tells its subscribers:
//! channel joins end with `phx_error` and phoenix.js rejoins; a [`Subscription`] ends.
//!
//! Every queue towards a subscriber is bounded: a fastlane subscriber's is its connection's outbound queue (a
//! client that falls behind is cut off as a slow consumer), a [`Subscription`]'s holds
//! [`Subscription::DEFAULT_CAPACITY`] broadcasts (or what [`PubSub::subscribe_with_capacity`]
//! asked for) and one that falls behind is ended the same way. The topic actor never waits
//! for a subscriber.

mod adapter;
mod fanout;
#[cfg(test)]
mod tests;
mod topic;

pub(crate) use adapter::InboundShared;
pub use adapter::{
    Adapter, AdapterState, BoxFuture, Inbound, InvalidRemote, MemoryAdapter, MemoryBus,
    RemoteBroadcast,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use ractor::{ActorCell, ActorId, ActorRef};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::cluster::Cluster;
use super::metering::Meters;
use super::protocol::{Payload, Vsn};
use super::registry::SocketRegistry;
use super::socket_actor::SocketMsg;
use super::supervisor::Slot;
use super::transport::Outbound;
pub(crate) use topic::TopicMsg;
use topic::{TopicActor, TopicArgs};

/// Identifies one subscription (one channel join, one socket id, one [`Subscription`]); also
/// the owner of presences tracked by that join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

impl SubscriberId {
    /// The raw id (never 0).
    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    #[cfg(test)]
    pub(crate) fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

/// A broadcast as subscribers receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// Topic.
    pub topic: String,
    /// Event.
    pub event: String,
    /// Payload.
    pub payload: Payload,
    /// The subscriber excluded from delivery (`broadcast_from`).
    pub(crate) from: Option<SubscriberId>,
}

/// How a subscriber receives broadcasts.
#[derive(Clone)]
pub(crate) enum Delivery {
    /// A joined channel: encoded frames straight onto the connection's outbound queue;
    /// intercepted events go to the socket actor for `handle_out`.
    Fastlane {
        out: Outbound,
        vsn: Vsn,
        intercepts: Arc<[String]>,
        socket: ActorRef<SocketMsg>,
    },
    /// Any other code: the raw broadcast, on a bounded queue. A full queue ends the
    /// subscription (`overflowed` is set first).
    Forward {
        tx: mpsc::Sender<Arc<Broadcast>>,
        overflowed: Arc<AtomicBool>,
    },
}

/// A topic's actor in the map, with its membership: subscribers plus subscriptions on their
/// way. The actor leaves the map (and stops) only when that count is zero, checked under the
/// map's lock, so a subscriber that found it is always served.
pub(crate) struct TopicEntry {
    actor: ActorRef<TopicMsg>,
    members: Arc<AtomicUsize>,
}

struct Inner {
    topics: DashMap<String, TopicEntry>,
    cluster: Arc<Cluster>,
    registry: SocketRegistry,
    /// The `topics` supervisor (replaced when it restarts).
    supervisor: Slot<ActorCell>,
    next_id: AtomicU64,
    meters: Arc<Meters>,
}

/// The cluster as one node sees it ([`PubSub::cluster_stats`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStats {
    /// This node's name.
    pub node: String,
    /// The link to the other nodes.
    pub state: AdapterState,
    /// The other nodes heard from (sorted; empty for a single node).
    pub members: Vec<String>,
    /// Frames received from other nodes.
    pub received: u64,
    /// Frames from other nodes dropped because this node's inbound queue was full.
    pub dropped: u64,
}

/// The PubSub handle: cheap to clone, usable anywhere in the server.
#[derive(Clone)]
pub struct PubSub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("topics", &self.inner.topics.len())
            .finish()
    }
}

/// A subscription made with [`PubSub::subscribe`]: receive with [`Subscription::recv`];
/// dropping it unsubscribes.
///
/// Its queue is bounded, like every other queue of the runtime: a subscription that lets
/// more than its capacity of broadcasts wait unread is a slow consumer and is ended (as a
/// client that does not read is disconnected). It still receives what was queued before,
/// then `None`, and [`Subscription::overflowed`] tells why. Read it from a task of its own
/// if the work per broadcast can take long.
pub struct Subscription {
    id: SubscriberId,
    topic: String,
    rx: mpsc::Receiver<Arc<Broadcast>>,
    overflowed: Arc<AtomicBool>,
    pubsub: PubSub,
}

impl Subscription {
    /// Broadcasts a subscription made with [`PubSub::subscribe`] holds unread before it is
    /// ended as a slow consumer.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// The next broadcast, or `None` once the PubSub is gone or this subscription has ended
    /// (its topic actor failed, the topic's presences were lost, or it fell more than its
    /// capacity behind: see [`Subscription::overflowed`]): subscribe again.
    pub async fn recv(&mut self) -> Option<Arc<Broadcast>> {
        self.rx.recv().await
    }

    /// Whether this subscription was ended because its queue was full (it missed the
    /// broadcast that did not fit and every later one).
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// This subscription's id (for [`PubSub::broadcast_from`]).
    pub fn id(&self) -> SubscriberId {
        self.id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.pubsub.unsubscribe(&self.topic, self.id);
    }
}

impl PubSub {
    /// A PubSub for this node, connected to the others through `cluster`, whose topic actors
    /// are supervised by the supervisor in `supervisor`.
    pub(crate) fn new(
        supervisor: Slot<ActorCell>,
        cluster: Arc<Cluster>,
        registry: SocketRegistry,
        meters: Arc<Meters>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                topics: DashMap::new(),
                cluster,
                registry,
                supervisor,
                next_id: AtomicU64::new(1),
                meters,
            }),
        }
    }

    /// This node's name (from the adapter).
    pub fn node_name(&self) -> &str {
        self.inner.cluster.node()
    }

    /// The state of the link to the other nodes (always [`AdapterState::Connected`] for a
    /// single node).
    pub fn adapter_state(&self) -> AdapterState {
        self.inner.cluster.state()
    }

    /// The cluster as this node sees it.
    pub fn cluster_stats(&self) -> ClusterStats {
        let (received, dropped) = self.inner.cluster.counts();
        ClusterStats {
            node: self.node_name().to_owned(),
            state: self.adapter_state(),
            members: self.inner.cluster.member_names(),
            received,
            dropped,
        }
    }

    /// The runtime's metrics handles.
    pub(crate) fn meters(&self) -> &Meters {
        &self.inner.meters
    }

    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    pub(crate) fn next_id(&self) -> SubscriberId {
        SubscriberId(self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Subscribes the caller to `topic`, with room for
    /// [`Subscription::DEFAULT_CAPACITY`] unread broadcasts.
    pub async fn subscribe(&self, topic: &str) -> Subscription {
        self.subscribe_with_capacity(topic, Subscription::DEFAULT_CAPACITY)
            .await
    }

    /// Subscribes the caller to `topic`, with room for `capacity` unread broadcasts (at least
    /// one); one more ends the subscription (see [`Subscription`]).
    pub async fn subscribe_with_capacity(&self, topic: &str, capacity: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        let id = self.next_id();
        let delivery = Delivery::Forward {
            tx,
            overflowed: overflowed.clone(),
        };
        self.add(topic, id, delivery, None).await;
        Subscription {
            id,
            topic: topic.to_owned(),
            rx,
            overflowed,
            pubsub: self.clone(),
        }
    }

    /// Adds a subscriber. `first` is put on a fastlane subscriber's queue before any broadcast
    /// can reach it (the join reply). Returns whether `first` was queued: then the subscriber
    /// receives the topic's broadcasts or, if its topic actor ends under it, is told
    /// ([`SocketMsg::SubscriptionLost`]). `false` only while the runtime is down.
    pub(crate) async fn add(
        &self,
        topic: &str,
        id: SubscriberId,
        delivery: Delivery,
        first: Option<Message>,
    ) -> bool {
        // Found in the map, an actor is ours: counted as a member under the map's lock, it
        // cannot leave the map before our subscription arrives. Only an actor that failed
        // meanwhile makes us try again (on its successor, or a fresh one).
        for _ in 0..16 {
            let existing = self.inner.topics.get(topic).map(|entry| {
                entry.members.fetch_add(1, Ordering::AcqRel);
                entry.actor.clone()
            });
            let actor = match existing {
                Some(actor) => actor,
                None => match self.start_topic(topic, id, &delivery, &first) {
                    Ok(None) => return true,
                    Ok(Some(actor)) => actor,
                    Err(e) => {
                        tracing::error!(%topic, error = %e, "could not start a topic actor");
                        return false;
                    }
                },
            };
            match ractor::call!(
                actor,
                TopicMsg::Subscribe,
                id,
                delivery.clone(),
                first.clone()
            ) {
                Ok(true) => return true,
                Ok(false) | Err(_) => self.forget(topic, actor.get_id()),
            }
        }
        tracing::error!(%topic, "could not subscribe after 16 attempts");
        false
    }

    /// Starts `topic`'s actor with `id` as its first subscriber, unless the topic has an actor
    /// (returned). Under the map's entry lock, so one topic never has two: `first` is queued
    /// and the actor enters the map before any broadcast can reach it; its mailbox is handled
    /// after its `pre_start` has added the subscriber.
    fn start_topic(
        &self,
        topic: &str,
        id: SubscriberId,
        delivery: &Delivery,
        first: &Option<Message>,
    ) -> Result<Option<ActorRef<TopicMsg>>, ractor::SpawnErr> {
        match self.inner.topics.entry(topic.to_owned()) {
            Entry::Occupied(entry) => {
                entry.get().members.fetch_add(1, Ordering::AcqRel);
                Ok(Some(entry.get().actor.clone()))
            }
            Entry::Vacant(entry) => {
                let members = Arc::new(AtomicUsize::new(1));
                let args = TopicArgs {
                    topic: topic.to_owned(),
                    pubsub: self.clone(),
                    members: members.clone(),
                    first: (id, delivery.clone()),
                };
                // If it cannot link (its supervisor is restarting), its state tells the
                // subscriber as it is dropped.
                let (actor, _) = ractor::ActorRuntime::spawn_linked_instant(
                    None,
                    TopicActor,
                    args,
                    self.inner.supervisor.get(),
                )?;
                if let (Some(frame), Delivery::Fastlane { out, .. }) = (first, delivery) {
                    out.send(frame.clone());
                }
                entry.insert(TopicEntry { actor, members });
                Ok(None)
            }
        }
    }

    /// Removes subscriber `id` from `topic`.
    pub fn unsubscribe(&self, topic: &str, id: SubscriberId) {
        if let Some(actor) = self.topic_actor(topic) {
            let _ = actor.cast(TopicMsg::Unsubscribe(id));
        }
    }

    /// Sends `event` to every subscriber of `topic`.
    pub fn broadcast(&self, topic: &str, event: &str, payload: impl Into<Payload>) {
        self.send(topic, event, payload.into(), None);
    }

    /// Sends `event` to every subscriber of `topic` except `from`.
    pub fn broadcast_from(
        &self,
        from: SubscriberId,
        topic: &str,
        event: &str,
        payload: impl Into<Payload>,
    ) {
        self.send(topic, event, payload.into(), Some(from));
    }

    /// Sends `event` to the subscribers on this node only.
    pub fn local_broadcast(&self, topic: &str, event: &str, payload: impl Into<Payload>) {
        self.inner.meters.broadcasts_local.increment(1);
        self.dispatch(topic, event, payload.into(), None);
    }

    /// Closes every socket whose id (or disconnect topic) is `socket_id`, with close code 1001,
    /// on every node (each node's socket registry closes its own).
    pub fn disconnect(&self, socket_id: &str) {
        self.broadcast(socket_id, super::protocol::events::DISCONNECT, json!({}));
    }

    /// Like [`PubSub::disconnect`], but spares the sockets that also carry `keep` (see
    /// [`SocketRegistry::disconnect_except`]), on every node.
    pub fn disconnect_except(&self, socket_id: &str, keep: &str) {
        self.inner.registry.disconnect_except(socket_id, keep);
        let cluster = &self.inner.cluster;
        cluster.publish(&super::cluster::wire::Control::DisconnectExcept {
            node: cluster.node().to_owned(),
            inc: cluster.inc(),
            name: socket_id.to_owned(),
            keep: keep.to_owned(),
        });
    }

    /// How many topics have subscribers.
    pub fn topic_count(&self) -> usize {
        self.inner.topics.len()
    }

    /// Publishes to the other nodes, then delivers here.
    fn send(&self, topic: &str, event: &str, payload: Payload, from: Option<SubscriberId>) {
        self.inner.meters.broadcasts_local.increment(1);
        if self.inner.cluster.clustered() {
            let remote = RemoteBroadcast {
                node: self.node_name().to_owned(),
                topic: topic.to_owned(),
                event: event.to_owned(),
                payload: payload.clone(),
            };
            self.inner.cluster.publish_frame(remote.encode().into());
        }
        self.dispatch(topic, event, payload, from);
    }

    /// Delivers another node's broadcast to this node's subscribers.
    pub(crate) fn dispatch_remote(&self, topic: &str, event: &str, payload: Payload) {
        self.inner.meters.broadcasts_remote.increment(1);
        self.dispatch(topic, event, payload, None);
    }

    /// Delivers to this node's subscribers (through the topic's actor, in order).
    fn dispatch(&self, topic: &str, event: &str, payload: Payload, from: Option<SubscriberId>) {
        if event == super::protocol::events::DISCONNECT {
            self.inner.registry.disconnect(topic);
        }
        let Some(actor) = self.topic_actor(topic) else {
            return;
        };
        let _ = actor.cast(TopicMsg::Broadcast(Arc::new(Broadcast {
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
            from,
        })));
    }

    /// The actor of `topic`, if it has one.
    pub(crate) fn topic_actor(&self, topic: &str) -> Option<ActorRef<TopicMsg>> {
        self.inner
            .topics
            .get(topic)
            .map(|entry| entry.actor.clone())
    }

    /// `topic`'s presences are lost: every subscription to it ends (channel joins get
    /// `phx_error` and rejoin, which re-tracks them).
    pub(crate) fn lost(&self, topic: &str) {
        if let Some(actor) = self.topic_actor(topic) {
            let _ = actor.cast(TopicMsg::Lost);
        }
    }

    #[cfg(feature = "testing")]
    /// The slot of the `topics` supervisor (a restart of it replaces the supervisor there).
    pub(crate) fn supervisor(&self) -> &Slot<ActorCell> {
        &self.inner.supervisor
    }

    /// Removes `actor` from the map if it is still the one registered for `topic`.
    pub(crate) fn forget(&self, topic: &str, actor: ActorId) {
        self.inner
            .topics
            .remove_if(topic, |_, entry| entry.actor.get_id() == actor);
    }

    /// Removes `actor` from the map if it is the one registered for `topic` and no
    /// subscription is on its way to it; whether it did (then it must stop).
    pub(crate) fn leave_if_unused(&self, topic: &str, actor: ActorId) -> bool {
        self.inner
            .topics
            .remove_if(topic, |_, entry| {
                entry.actor.get_id() == actor && entry.members.load(Ordering::Acquire) == 0
            })
            .is_some()
    }
}
