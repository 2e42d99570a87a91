//! Presence: who is on a topic, with arbitrary JSON metas, in the shapes phoenix.js expects.
//!
//! Topics are spread over several shard actors by a hash of the topic, so a hot topic does not
//! block the others. Each shard keeps its topics' presences and a pending diff per topic; the
//! first change to a quiet topic schedules a flush after the coalescing window, and the flush
//! broadcasts one `presence_diff` `{"joins": {…}, "leaves": {…}}` with every change of the
//! window. A storm of N joins therefore costs a handful of diffs per member, not N.
//!
//! Presences follow their owner: when a channel join ends for any reason (leave, stop, crash,
//! duplicate join, refused or crashed after tracking in `join`, socket gone or killed) the
//! socket actor untracks everything it owned.
//!
//! `presence_state` is the [`Presence::list`] of a topic, pushed by the channel after its join
//! (see [`super::ChannelContext::push_presence_state`]).
//!
//! A shard that fails loses its topics' presences and pending diffs. It is restarted empty,
//! and every subscription to the topics it had ends: channel joins get `phx_error` and
//! phoenix.js rejoins, which re-tracks their presences and pushes a fresh `presence_state`,
//! so every client's list converges on the new shard's. This is what Phoenix does when a
//! channel's tracker dies; re-tracking in place would need each join's metas outside the dead
//! shard, and clients' lists would still hold the metas whose `leaves` died with it.

mod shard;
mod state;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorCell, ActorRef, RpcReplyPort, SpawnErr};
use serde_json::Value;
use serde_json::value::RawValue;

use super::pubsub::{PubSub, SubscriberId};
use super::supervisor::{Child, Slot, SupervisorMsg};
use crate::cluster::wire::Op;
use shard::spawn_shard;
pub(crate) use state::Origin;

/// Presences of one topic as another node sends them: `(key, meta)`.
pub(crate) type Entries = Vec<(String, serde_json::Map<String, Value>)>;

/// The presence event names phoenix.js listens to.
pub mod events {
    /// The full list, pushed after a join.
    pub const STATE: &str = "presence_state";
    /// Joins and leaves since the last diff, broadcast to the topic.
    pub const DIFF: &str = "presence_diff";
}

/// Presence settings. Deserializes (serde) from `window_ms` (milliseconds, whole or decimal)
/// and `shards`, each optional.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PresenceConfig {
    /// How long changes to one topic are collected before one diff is broadcast (zero: one
    /// diff per change). Setting `window_ms`.
    #[serde(rename = "window_ms", with = "crate::units::millis")]
    pub window: Duration,
    /// Shard actors (topics are spread over them by hash); 0 counts as 1.
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
    /// The presence shard is gone (it failed and was not replaced in time, or the runtime is
    /// down).
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
    List(String, RpcReplyPort<Arc<RawValue>>),
    Flush(String),
    /// Another node's changes to a topic of this shard.
    Remote(Arc<Origin>, String, Vec<Op>),
    /// Another node's shard's whole state, for the topics of this shard (every shard gets
    /// one, possibly empty: what is not in it is gone).
    Replace(Arc<Origin>, HashMap<String, Entries>),
    /// A node is gone: drop its presences.
    DropNode(Arc<str>),
    /// Send this shard's own presences to a node (or all).
    Dump(Option<Arc<str>>),
    /// Fault injection: panic in the handler.
    #[cfg(feature = "testing")]
    Fail,
}

/// How long a call to a failed shard waits for its replacement before giving up.
const RESTART_WAIT: Duration = Duration::from_secs(1);

/// The presence handle: cheap to clone.
#[derive(Clone)]
pub struct Presence {
    /// Each shard's current instance (replaced when it restarts).
    shards: Arc<[Slot<ActorRef<PresenceMsg>>]>,
    pubsub: PubSub,
    window: Duration,
    /// The `presence` supervisor.
    supervisor: Slot<ActorCell>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Presence {
    /// Starts the shards under `supervisor`, which restarts each when it fails.
    pub(crate) async fn start(
        config: &PresenceConfig,
        pubsub: PubSub,
        supervisor: &ActorRef<SupervisorMsg>,
    ) -> Result<Self, SpawnErr> {
        let mut shards = Vec::new();
        for index in 0..config.shards.max(1) {
            let shard = spawn_shard(&pubsub, config.window, index, supervisor.get_cell()).await?;
            shards.push(Slot::new(shard));
        }
        let this = Self {
            shards: shards.into(),
            pubsub,
            window: config.window,
            supervisor: Slot::new(supervisor.get_cell()),
        };
        for (index, shard) in this.shards.iter().enumerate() {
            ractor::call!(
                supervisor,
                SupervisorMsg::Adopt,
                shard.get().get_cell(),
                this.shard_child(index)
            )
            .map_err(|e| SpawnErr::StartupFailed(e.to_string().into()))?;
        }
        Ok(this)
    }

    /// Shard `index` as a permanent child: a restart starts it empty and puts it in its slot.
    fn shard_child(&self, index: usize) -> Child {
        let this = self.clone();
        Child::new(format!("presence shard {index}"), move |parent| {
            let this = this.clone();
            Box::pin(async move {
                let shard = spawn_shard(&this.pubsub, this.window, index, parent).await?;
                this.shards[index].set(shard.clone());
                // Only now can the other nodes' whole states, asked for here (one node per
                // heartbeat), reach the new instance: they are routed through the slot.
                this.pubsub.cluster().pull_all();
                Ok(shard.get_cell())
            })
        })
    }

    /// The `presence` supervisor was restarted as `fresh` (its shards died with the old one):
    /// start every shard under it.
    pub(crate) async fn restart_shards(
        &self,
        fresh: &ActorRef<SupervisorMsg>,
    ) -> Result<(), SpawnErr> {
        self.supervisor.set(fresh.get_cell());
        for index in 0..self.shards.len() {
            ractor::call!(fresh, SupervisorMsg::Start, self.shard_child(index))
                .map_err(|e| e.to_string())
                .and_then(|started| started.map(|_| ()))
                .map_err(|e| SpawnErr::StartupFailed(e.into()))?;
        }
        Ok(())
    }

    fn slot(&self, topic: &str) -> &Slot<ActorRef<PresenceMsg>> {
        &self.shards[self.index_of(topic)]
    }

    fn index_of(&self, topic: &str) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        topic.hash(&mut hasher);
        (hasher.finish() % self.shards.len() as u64) as usize
    }

    fn cast_all(&self, message: impl Fn() -> PresenceMsg) {
        for slot in self.shards.iter() {
            let _ = slot.get().cast(message());
        }
    }

    /// Applies node `node`'s changes to `topic`, made on its shard `shard`.
    pub(crate) fn remote_ops(&self, node: &str, inc: u64, shard: u16, topic: String, ops: Vec<Op>) {
        let origin = Arc::new(Origin {
            node: node.into(),
            inc,
            shard,
        });
        let _ = self
            .shard_of(&topic)
            .cast(PresenceMsg::Remote(origin, topic, ops));
    }

    /// Replaces what node `node`'s shard `shard` tracks here with its whole state `topics`.
    pub(crate) fn replace(
        &self,
        node: &str,
        inc: u64,
        shard: u16,
        topics: HashMap<String, Entries>,
    ) {
        let origin = Arc::new(Origin {
            node: node.into(),
            inc,
            shard,
        });
        let mut parts: Vec<HashMap<String, Entries>> = vec![HashMap::new(); self.shards.len()];
        for (topic, entries) in topics {
            parts[self.index_of(&topic)].insert(topic, entries);
        }
        for (slot, part) in self.shards.iter().zip(parts) {
            let _ = slot.get().cast(PresenceMsg::Replace(origin.clone(), part));
        }
    }

    /// Node `node` is gone: its presences leave.
    pub(crate) fn drop_node(&self, node: &str) {
        let node: Arc<str> = node.into();
        self.cast_all(|| PresenceMsg::DropNode(node.clone()));
    }

    /// Every shard sends its own presences to `to` (or every other node).
    pub(crate) fn dump(&self, to: Option<&str>) {
        let to: Option<Arc<str>> = to.map(Into::into);
        self.cast_all(|| PresenceMsg::Dump(to.clone()));
    }

    /// The current shard of `topic`.
    pub(crate) fn shard_of(&self, topic: &str) -> ActorRef<PresenceMsg> {
        self.slot(topic).get()
    }

    #[cfg(feature = "testing")]
    /// The slot of the `presence` supervisor.
    pub(crate) fn supervisor(&self) -> &Slot<ActorCell> {
        &self.supervisor
    }

    #[cfg(feature = "testing")]
    /// The slot of `topic`'s shard.
    pub(crate) fn shard_slot(&self, topic: &str) -> &Slot<ActorRef<PresenceMsg>> {
        self.slot(topic)
    }

    /// Calls `topic`'s shard; if that shard has failed, once more on its replacement.
    async fn call<T: Send + 'static>(
        &self,
        topic: &str,
        message: impl Fn(RpcReplyPort<T>) -> PresenceMsg,
    ) -> Option<T> {
        let slot = self.slot(topic);
        let shard = slot.get();
        if let Ok(CallResult::Success(answer)) = shard.call(&message, None).await {
            return Some(answer);
        }
        let fresh = slot
            .replacement(|s| s.get_id() == shard.get_id(), RESTART_WAIT)
            .await?;
        match fresh.call(message, None).await {
            Ok(CallResult::Success(answer)) => Some(answer),
            _ => None,
        }
    }

    /// Tracks `owner` under `key` on `topic` with `meta` (a JSON object); returns its `phx_ref`.
    pub async fn track(
        &self,
        topic: &str,
        owner: SubscriberId,
        key: &str,
        meta: Value,
    ) -> Result<String, PresenceError> {
        self.call(topic, |reply| {
            PresenceMsg::Track(topic.to_owned(), owner, key.to_owned(), meta.clone(), reply)
        })
        .await
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
        self.call(topic, |reply| {
            PresenceMsg::Update(topic.to_owned(), owner, key.to_owned(), meta.clone(), reply)
        })
        .await
        .unwrap_or(Err(PresenceError::Unavailable))
    }

    /// Stops tracking `owner` under `key`.
    pub fn untrack(&self, topic: &str, owner: SubscriberId, key: &str) {
        let _ = self.shard_of(topic).cast(PresenceMsg::Untrack(
            topic.to_owned(),
            owner,
            key.to_owned(),
        ));
    }

    /// Stops tracking everything `owner` tracks on `topic`.
    pub fn untrack_owner(&self, topic: &str, owner: SubscriberId) {
        let _ = self
            .shard_of(topic)
            .cast(PresenceMsg::UntrackOwner(topic.to_owned(), owner));
    }

    /// `{key: {"metas": [...]}}` for `topic` (the `presence_state` payload). It may lack the
    /// changes of the current coalescing window; those follow as `presence_diff`.
    pub async fn list(&self, topic: &str) -> Value {
        serde_json::from_str(self.list_encoded(topic).await.get())
            .unwrap_or_else(|_| Value::Object(Default::default()))
    }

    /// [`Presence::list`], encoded once per window and shared by every caller.
    pub(crate) async fn list_encoded(&self, topic: &str) -> Arc<RawValue> {
        self.call(topic, |reply| PresenceMsg::List(topic.to_owned(), reply))
            .await
            .unwrap_or_else(crate::protocol::empty_object)
    }
}
