//! A presence shard: the actor owning the presences of the topics hashed to it, local and
//! replicated from other nodes, and their pending diffs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};

use super::state::TopicPresence;
use super::{PresenceError, PresenceMsg, events};
use crate::cluster::wire::Control;
use crate::pubsub::PubSub;

pub(super) struct ShardArgs {
    pubsub: PubSub,
    window: Duration,
    index: u16,
}

pub(super) async fn spawn_shard(
    pubsub: &PubSub,
    window: Duration,
    index: usize,
    supervisor: ActorCell,
) -> Result<ActorRef<PresenceMsg>, SpawnErr> {
    let args = ShardArgs {
        pubsub: pubsub.clone(),
        window,
        index: index as u16,
    };
    let (shard, _) = Actor::spawn_linked(None, Shard, args, supervisor).await?;
    Ok(shard)
}

struct ShardState {
    args: ShardArgs,
    topics: HashMap<String, TopicPresence>,
    scheduled: std::collections::HashSet<String>,
    counter: AtomicU32,
}

impl ShardState {
    /// The node's presence entry count, which each topic's entries join.
    fn entry_total(&self) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
        self.args.pubsub.meters().presence_entries.clone()
    }

    /// A `phx_ref` unique in the cluster: 15 bytes (nanosecond clock, node incarnation, shard,
    /// counter), URL-safe base64 → 20 characters.
    fn next_ref(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let inc = self.args.pubsub.cluster().inc();
        let mut bytes = [0u8; 15];
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
        bytes[8..11].copy_from_slice(&inc.to_be_bytes()[..3]);
        bytes[11..13].copy_from_slice(&self.args.index.to_be_bytes());
        bytes[13..].copy_from_slice(&(count as u16).to_be_bytes());
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
        let ops = presence.take_outgoing();
        let cluster = self.args.pubsub.cluster();
        // With no other node, nothing to tell: a node that comes asks for the whole state.
        if !ops.is_empty() && cluster.peers() > 0 {
            cluster.publish(&Control::PresenceOps {
                node: cluster.node().to_owned(),
                inc: cluster.inc(),
                shard: self.args.index,
                topic: topic.to_owned(),
                ops,
            });
        }
        if presence.is_idle() {
            self.topics.remove(topic);
        }
    }

    /// This shard's own presences, by topic, as another node's copy replaces them.
    fn dump(&self) -> Control {
        let cluster = self.args.pubsub.cluster();
        Control::PresenceDump {
            node: cluster.node().to_owned(),
            inc: cluster.inc(),
            shard: self.args.index,
            topics: self
                .topics
                .iter()
                .map(|(topic, presence)| (topic.clone(), presence.local_entries()))
                .filter(|(_, entries)| !entries.is_empty())
                .collect(),
        }
    }
}

impl Drop for ShardState {
    /// However the shard ends (failed, or stopped with its supervisor), its topics' presences
    /// go with it: every subscription to those topics ends, so their joins rejoin and
    /// re-track (see the module docs).
    fn drop(&mut self) {
        for topic in self.topics.keys() {
            self.args.pubsub.lost(topic);
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
        let state = ShardState {
            args,
            topics: HashMap::new(),
            scheduled: Default::default(),
            counter: AtomicU32::new(0),
        };
        let cluster = state.args.pubsub.cluster();
        if cluster.peers() > 0 {
            // A restarted shard: the other nodes forget what its previous instance tracked
            // (those joins rejoin here and track anew). Asking for theirs, lost with it, waits
            // until this instance is in its slot (see `Presence::shard_child`).
            cluster.publish(&state.dump());
        }
        Ok(state)
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
                let replicate = state.args.pubsub.cluster().clustered();
                let total = state.entry_total();
                let result = state
                    .topics
                    .entry(topic.clone())
                    .or_insert_with(|| TopicPresence::new(replicate).counted_in(total))
                    .track(owner, &key, meta, phx_ref.clone());
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
                    .map_or_else(crate::protocol::empty_object, TopicPresence::snapshot);
                let _ = reply.send(snapshot);
            }
            PresenceMsg::Flush(topic) => state.flush(&topic),
            PresenceMsg::Remote(origin, topic, ops) => {
                let total = state.entry_total();
                if state
                    .topics
                    .entry(topic.clone())
                    .or_insert_with(|| TopicPresence::new(true).counted_in(total))
                    .apply_remote(&origin, ops)
                {
                    state.changed(&myself, &topic);
                } else if state.topics.get(&topic).is_some_and(TopicPresence::is_idle) {
                    state.topics.remove(&topic);
                }
            }
            PresenceMsg::Replace(origin, mut part) => {
                let mut changed = Vec::new();
                for (topic, presence) in &mut state.topics {
                    let entries = part.remove(topic).unwrap_or_default();
                    if (!entries.is_empty() || presence.has_origin(&origin))
                        && presence.replace_origin(&origin, entries)
                    {
                        changed.push(topic.clone());
                    }
                }
                for (topic, entries) in part {
                    let mut presence = TopicPresence::new(true).counted_in(state.entry_total());
                    if presence.replace_origin(&origin, entries) {
                        state.topics.insert(topic.clone(), presence);
                        changed.push(topic);
                    }
                }
                for topic in changed {
                    state.changed(&myself, &topic);
                }
            }
            PresenceMsg::DropNode(node) => {
                let changed: Vec<String> = state
                    .topics
                    .iter_mut()
                    .filter_map(|(topic, p)| p.drop_node(&node).then(|| topic.clone()))
                    .collect();
                for topic in changed {
                    state.changed(&myself, &topic);
                }
            }
            PresenceMsg::Dump(to) => {
                let dump = state.dump();
                let cluster = state.args.pubsub.cluster();
                match to {
                    Some(node) => cluster.send_to(&node, &dump),
                    None => cluster.publish(&dump),
                }
            }
            #[cfg(feature = "testing")]
            PresenceMsg::Fail => panic!("fault injected into presence shard {}", state.args.index),
        }
        Ok(())
    }
}
