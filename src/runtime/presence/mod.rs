//! Presence: who is on a topic, with arbitrary JSON metas, in the shapes phoenix.js expects.
//!
//! Topics are spread over several shard actors by a hash of the topic, so a hot topic does not
//! block the others. Each shard keeps its topics' presences and a pending diff per topic; the
//! first change to a quiet topic schedules a flush after the coalescing window, and the flush
//! broadcasts one `presence_diff` `{"joins": {…}, "leaves": {…}}` with every change of the
//! window. A storm of N joins therefore costs a handful of diffs per member, not N.
//!
//! Presences follow their owner: when a channel join ends for any reason (leave, crash,
//! duplicate join, socket gone) the socket actor untracks everything it owned.
//!
//! `presence_state` is the [`Presence::list`] of a topic, pushed by the channel after its join
//! (see [`super::ChannelContext::push_presence_state`]).

mod state;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;

use super::pubsub::{PubSub, SubscriberId};
use state::TopicPresence;

/// The presence event names phoenix.js listens to.
pub mod events {
    /// The full list, pushed after a join.
    pub const STATE: &str = "presence_state";
    /// Joins and leaves since the last diff, broadcast to the topic.
    pub const DIFF: &str = "presence_diff";
}

/// Presence settings.
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    /// How long changes to one topic are collected before one diff is broadcast.
    pub window: Duration,
    /// Shard actors (topics are spread over them by hash).
    pub shards: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(25),
            shards: 16,
        }
    }
}

/// Why a presence operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// This owner already tracks this key on this topic.
    #[error("already tracked")]
    AlreadyTracked,
    /// This owner tracks no such key on this topic.
    #[error("not tracked")]
    NotTracked,
    /// Metas must be JSON objects (the `phx_ref` goes into them).
    #[error("a presence meta must be a JSON object")]
    MetaNotAnObject,
    /// The presence shard is gone (the runtime is shutting down).
    #[error("presence unavailable")]
    Unavailable,
}

pub(crate) enum PresenceMsg {
    Track(
        String,
        SubscriberId,
        String,
        Value,
        RpcReplyPort<Result<String, PresenceError>>,
    ),
    Update(
        String,
        SubscriberId,
        String,
        Value,
        RpcReplyPort<Result<String, PresenceError>>,
    ),
    Untrack(String, SubscriberId, String),
    UntrackOwner(String, SubscriberId),
    List(String, RpcReplyPort<Arc<str>>),
    Flush(String),
}

/// The presence handle: cheap to clone.
#[derive(Clone)]
pub struct Presence {
    shards: Arc<[ActorRef<PresenceMsg>]>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Presence {
    pub(crate) async fn start(
        config: &PresenceConfig,
        pubsub: PubSub,
        supervisor: ActorCell,
    ) -> Result<Self, ractor::SpawnErr> {
        let mut shards = Vec::new();
        for index in 0..config.shards.max(1) {
            let args = ShardArgs {
                pubsub: pubsub.clone(),
                window: config.window,
                index: index as u16,
            };
            let (shard, _) = Actor::spawn_linked(None, Shard, args, supervisor.clone()).await?;
            shards.push(shard);
        }
        Ok(Self {
            shards: shards.into(),
        })
    }

    fn shard(&self, topic: &str) -> &ActorRef<PresenceMsg> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        topic.hash(&mut hasher);
        &self.shards[(hasher.finish() % self.shards.len() as u64) as usize]
    }

    /// Tracks `owner` under `key` on `topic` with `meta` (a JSON object); returns its `phx_ref`.
    pub async fn track(
        &self,
        topic: &str,
        owner: SubscriberId,
        key: &str,
        meta: Value,
    ) -> Result<String, PresenceError> {
        ractor::call!(
            self.shard(topic),
            PresenceMsg::Track,
            topic.to_owned(),
            owner,
            key.to_owned(),
            meta
        )
        .unwrap_or(Err(PresenceError::Unavailable))
    }

    /// Replaces `owner`'s meta for `key`; returns the new `phx_ref`.
    pub async fn update(
        &self,
        topic: &str,
        owner: SubscriberId,
        key: &str,
        meta: Value,
    ) -> Result<String, PresenceError> {
        ractor::call!(
            self.shard(topic),
            PresenceMsg::Update,
            topic.to_owned(),
            owner,
            key.to_owned(),
            meta
        )
        .unwrap_or(Err(PresenceError::Unavailable))
    }

    /// Stops tracking `owner` under `key`.
    pub fn untrack(&self, topic: &str, owner: SubscriberId, key: &str) {
        let _ = self.shard(topic).cast(PresenceMsg::Untrack(
            topic.to_owned(),
            owner,
            key.to_owned(),
        ));
    }

    /// Stops tracking everything `owner` tracks on `topic`.
    pub fn untrack_owner(&self, topic: &str, owner: SubscriberId) {
        let _ = self
            .shard(topic)
            .cast(PresenceMsg::UntrackOwner(topic.to_owned(), owner));
    }

    /// `{key: {"metas": [...]}}` for `topic` (the `presence_state` payload). It may lack the
    /// changes of the current coalescing window; those follow as `presence_diff`.
    pub async fn list(&self, topic: &str) -> Value {
        serde_json::from_str(&self.list_encoded(topic).await)
            .unwrap_or_else(|_| Value::Object(Default::default()))
    }

    /// [`Presence::list`], encoded once per window and shared by every caller.
    pub(crate) async fn list_encoded(&self, topic: &str) -> Arc<str> {
        ractor::call!(self.shard(topic), PresenceMsg::List, topic.to_owned())
            .unwrap_or_else(|_| Arc::from("{}"))
    }
}

struct ShardArgs {
    pubsub: PubSub,
    window: Duration,
    index: u16,
}

struct ShardState {
    args: ShardArgs,
    topics: HashMap<String, TopicPresence>,
    scheduled: std::collections::HashSet<String>,
    counter: AtomicU32,
}

impl ShardState {
    /// A unique `phx_ref`: 12 bytes (nanosecond clock, shard, counter), URL-safe base64 →
    /// 16 characters.
    fn next_ref(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
        bytes[8..10].copy_from_slice(&self.args.index.to_be_bytes());
        bytes[10..].copy_from_slice(&(count as u16).to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// After a change to `topic`: flush now (no window) or schedule one flush.
    fn changed(&mut self, myself: &ActorRef<PresenceMsg>, topic: &str) {
        if self.args.window.is_zero() {
            self.flush(topic);
        } else if self.scheduled.insert(topic.to_owned()) {
            let topic = topic.to_owned();
            myself.send_after(self.args.window, move || PresenceMsg::Flush(topic));
        }
    }

    fn flush(&mut self, topic: &str) {
        self.scheduled.remove(topic);
        let Some(presence) = self.topics.get_mut(topic) else {
            return;
        };
        if let Some(diff) = presence.take_diff() {
            self.args.pubsub.local_broadcast(topic, events::DIFF, diff);
        }
        if presence.is_idle() {
            self.topics.remove(topic);
        }
    }
}

struct Shard;

impl Actor for Shard {
    type Msg = PresenceMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<PresenceMsg>,
        args: ShardArgs,
    ) -> Result<ShardState, ActorProcessingErr> {
        Ok(ShardState {
            args,
            topics: HashMap::new(),
            scheduled: Default::default(),
            counter: AtomicU32::new(0),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PresenceMsg>,
        message: PresenceMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PresenceMsg::Track(topic, owner, key, meta, reply) => {
                let phx_ref = state.next_ref();
                let result = state.topics.entry(topic.clone()).or_default().track(
                    owner,
                    &key,
                    meta,
                    phx_ref.clone(),
                );
                if result.is_ok() {
                    state.changed(&myself, &topic);
                }
                let _ = reply.send(result.map(|()| phx_ref));
            }
            PresenceMsg::Update(topic, owner, key, meta, reply) => {
                let phx_ref = state.next_ref();
                let result = match state.topics.get_mut(&topic) {
                    Some(presence) => presence.update(owner, &key, meta, phx_ref.clone()),
                    None => Err(PresenceError::NotTracked),
                };
                if result.is_ok() {
                    state.changed(&myself, &topic);
                }
                let _ = reply.send(result.map(|()| phx_ref));
            }
            PresenceMsg::Untrack(topic, owner, key) => {
                if state
                    .topics
                    .get_mut(&topic)
                    .is_some_and(|p| p.untrack(owner, &key))
                {
                    state.changed(&myself, &topic);
                }
            }
            PresenceMsg::UntrackOwner(topic, owner) => {
                if state
                    .topics
                    .get_mut(&topic)
                    .is_some_and(|p| p.untrack_owner(owner) > 0)
                {
                    state.changed(&myself, &topic);
                }
            }
            PresenceMsg::List(topic, reply) => {
                let snapshot = state
                    .topics
                    .get_mut(&topic)
                    .map_or_else(|| Arc::from("{}"), TopicPresence::snapshot);
                let _ = reply.send(snapshot);
            }
            PresenceMsg::Flush(topic) => state.flush(&topic),
        }
        Ok(())
    }
}
