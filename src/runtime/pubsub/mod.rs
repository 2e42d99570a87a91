//! PubSub: topics, subscribers, broadcasts.
//!
//! Each topic with subscribers has a topic actor (ractor) that owns its subscriber list and
//! fans broadcasts out. A topic actor handles its messages in order, so two broadcasts to one
//! topic from one sender reach every subscriber in send order. Channel subscribers use the
//! *fastlane*: the topic actor encodes a broadcast once per serializer and puts the same bytes
//! on every subscriber's outbound queue, without going through the socket actor.
//!
//! Topic actors start on the first subscription and stop when the last subscriber leaves. The
//! map from topic to actor is sharded (`DashMap`); no lock is held across an await.

mod adapter;
mod topic;

pub use adapter::{Adapter, InvalidRemote, MemoryAdapter, MemoryBus, RemoteBroadcast};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use ractor::{Actor, ActorCell, ActorRef};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::protocol::{Payload, Vsn};
use super::sessions::Sessions;
use super::socket_actor::SocketMsg;
use super::transport::Outbound;
use topic::TopicActor;
pub(crate) use topic::TopicMsg;

/// Identifies one subscription (one channel join, one socket id, one [`Subscription`]); also
/// the owner of presences tracked by that join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

impl SubscriberId {
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
    /// Any other code: the raw broadcast.
    Forward(mpsc::UnboundedSender<Arc<Broadcast>>),
}

struct Inner {
    topics: DashMap<String, ActorRef<TopicMsg>>,
    adapter: Arc<dyn Adapter>,
    sessions: Sessions,
    supervisor: ActorCell,
    next_id: AtomicU64,
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
pub struct Subscription {
    id: SubscriberId,
    topic: String,
    rx: mpsc::UnboundedReceiver<Arc<Broadcast>>,
    pubsub: PubSub,
}

impl Subscription {
    /// The next broadcast, or `None` once the PubSub is gone.
    pub async fn recv(&mut self) -> Option<Arc<Broadcast>> {
        self.rx.recv().await
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
    /// A PubSub whose topic actors are supervised by `supervisor`.
    /// A PubSub for this node, connected to the others through `adapter`.
    pub(crate) fn new(
        supervisor: ActorCell,
        adapter: Arc<dyn Adapter>,
        sessions: Sessions,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<RemoteBroadcast>();
        adapter.start(tx);
        let this = Self {
            inner: Arc::new(Inner {
                topics: DashMap::new(),
                adapter,
                sessions,
                supervisor,
                next_id: AtomicU64::new(1),
            }),
        };
        // Other nodes' broadcasts are delivered here as local ones. Holding only a weak
        // reference lets the PubSub go when its runtime does.
        let weak = Arc::downgrade(&this.inner);
        tokio::spawn(async move {
            while let Some(remote) = rx.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                PubSub { inner }.dispatch(&remote.topic, &remote.event, remote.payload, None);
            }
        });
        this
    }

    /// This node's name (from the adapter).
    pub fn node_name(&self) -> &str {
        self.inner.adapter.node_name()
    }

    pub(crate) fn next_id(&self) -> SubscriberId {
        SubscriberId(self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Subscribes the caller to `topic`.
    pub async fn subscribe(&self, topic: &str) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id();
        self.add(topic, id, Delivery::Forward(tx), None).await;
        Subscription {
            id,
            topic: topic.to_owned(),
            rx,
            pubsub: self.clone(),
        }
    }

    /// Adds a subscriber. `first` is put on a fastlane subscriber's queue before any broadcast
    /// can reach it (the join reply). Returns `false` only if the runtime is shutting down.
    pub(crate) async fn add(
        &self,
        topic: &str,
        id: SubscriberId,
        delivery: Delivery,
        first: Option<Message>,
    ) -> bool {
        // A topic actor may be stopping (its last subscriber just left): it refuses, or the
        // call fails, and we retry on a fresh actor. Each attempt sends its own copy.
        for _ in 0..16 {
            let Some(actor) = self.topic_actor(topic).await else {
                return false;
            };
            match ractor::call!(
                actor,
                TopicMsg::Subscribe,
                id,
                delivery.clone(),
                first.clone()
            ) {
                Ok(true) => return true,
                Ok(false) | Err(_) => self.forget(topic, &actor),
            }
        }
        tracing::error!(%topic, "could not subscribe after 16 attempts");
        false
    }

    /// Removes subscriber `id` from `topic`.
    pub fn unsubscribe(&self, topic: &str, id: SubscriberId) {
        if let Some(actor) = self.inner.topics.get(topic).map(|a| a.clone()) {
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
        self.dispatch(topic, event, payload.into(), None);
    }

    /// Closes every socket whose id (or disconnect topic) is `socket_id`, with close code 1001,
    /// on every node (each node's session registry closes its own).
    pub fn disconnect(&self, socket_id: &str) {
        self.broadcast(socket_id, super::protocol::events::DISCONNECT, json!({}));
    }

    /// How many topics have subscribers.
    pub fn topic_count(&self) -> usize {
        self.inner.topics.len()
    }

    /// Publishes to the other nodes, then delivers here.
    fn send(&self, topic: &str, event: &str, payload: Payload, from: Option<SubscriberId>) {
        self.inner.adapter.publish(RemoteBroadcast {
            node: self.node_name().to_owned(),
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload: payload.clone(),
        });
        self.dispatch(topic, event, payload, from);
    }

    /// Delivers to this node's subscribers (through the topic's actor, in order).
    fn dispatch(&self, topic: &str, event: &str, payload: Payload, from: Option<SubscriberId>) {
        if event == super::protocol::events::DISCONNECT {
            self.inner.sessions.disconnect(topic);
        }
        let Some(actor) = self.inner.topics.get(topic).map(|a| a.clone()) else {
            return;
        };
        let _ = actor.cast(TopicMsg::Broadcast(Arc::new(Broadcast {
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
            from,
        })));
    }

    async fn topic_actor(&self, topic: &str) -> Option<ActorRef<TopicMsg>> {
        if let Some(actor) = self.inner.topics.get(topic).map(|a| a.clone()) {
            return Some(actor);
        }
        let (actor, _) = Actor::spawn_linked(
            None,
            TopicActor,
            (topic.to_owned(), self.clone()),
            self.inner.supervisor.clone(),
        )
        .await
        .ok()?;
        // Another task may have won the race: use its actor and retire ours.
        let winner = self
            .inner
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| actor.clone())
            .clone();
        if winner.get_id() != actor.get_id() {
            actor.stop(None);
        }
        Some(winner)
    }

    /// Removes `actor` from the map if it is still the one registered for `topic`.
    pub(crate) fn forget(&self, topic: &str, actor: &ActorRef<TopicMsg>) {
        self.inner
            .topics
            .remove_if(topic, |_, registered| registered.get_id() == actor.get_id());
    }
}
