//! The cluster: this node's view of the other nodes, over its [`Adapter`].
//!
//! Every node publishes a heartbeat every [`ClusterConfig::heartbeat`]; a node heard from is a
//! *member* until it says goodbye (a runtime that shuts down publishes `bye`) or is silent for
//! [`ClusterConfig::node_timeout`] (it died, or the link to it is down). Each runtime draws a
//! random *incarnation* when it starts, so a node restarted under the same name is a new member
//! and its previous life's presences are dropped, never resurrected.
//!
//! What crosses between nodes (see `wire`):
//! - **Broadcasts**: delivered to this node's subscribers as if published here (PubSub).
//! - **Presence**: each presence shard replicates its own joins and leaves (`pops`, once per
//!   coalescing window) and, when asked, its whole state (`pdump`). A node that hears of a new
//!   member asks it for its state (`sync`) and sends its own; a node whose link comes back, or
//!   that lost frames, sends its state to all and asks the members for theirs one per
//!   heartbeat, because what was published meanwhile is lost.
//!   A member that leaves or times out has its presences removed everywhere, announced to the
//!   clients as leaves.
//! - **Direct pushes** ([`SocketRegistry::push`]): sent to every member, each answers how many
//!   of its sockets it reached; the caller waits at most [`ClusterConfig::push_timeout`] and
//!   counts the answers that came.
//! - **Disconnects** (`PubSub::disconnect`, `PubSub::disconnect_except`) are carried out on
//!   every node.
//!
//! Frames are handled by one task in arrival order, so what one node sent is applied here in
//! the order it was sent.

mod handler;
#[cfg(test)]
mod tests;
pub(crate) mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::presence::Presence;
use crate::protocol::Payload;
use crate::pubsub::{Adapter, AdapterState, Inbound, InboundShared, PubSub};
use crate::registry::SocketRegistry;
use wire::{Control, WirePayload};

/// How nodes watch each other. Deserializes (serde) from `heartbeat_ms`, `node_timeout_ms`
/// and `push_timeout_ms` (milliseconds), each optional.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// How often this node tells the others it is alive. Setting `heartbeat_ms`.
    #[serde(rename = "heartbeat_ms", with = "crate::units::millis")]
    pub heartbeat: Duration,
    /// How long a silent node stays a member: after that its presences are removed on this
    /// node (announced as leaves). Setting `node_timeout_ms`.
    #[serde(rename = "node_timeout_ms", with = "crate::units::millis")]
    pub node_timeout: Duration,
    /// How long a direct push waits for the other nodes' counts. Setting `push_timeout_ms`.
    #[serde(rename = "push_timeout_ms", with = "crate::units::millis")]
    pub push_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(15),
            push_timeout: Duration::from_secs(1),
        }
    }
}

/// Heartbeats between two resynchronisations caused by lost frames, at the least...
const RESYNC_EVERY_TICKS: u32 = 5;
/// ...and at the most, while frames keep being lost.
const RESYNC_MAX_TICKS: u32 = 60;

/// A node heard from.
struct Member {
    inc: u64,
    last_seen: Instant,
}

/// A direct push waiting for the other nodes' counts.
struct PendingPush {
    waiting: HashSet<String>,
    count: usize,
    done: Option<oneshot::Sender<()>>,
}

/// What a frame's sender is to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    Known,
    /// Never heard of before (or forgotten).
    New,
    /// A new incarnation of a known node: its previous life is gone.
    Restarted,
}

/// This node's cluster membership and its link to the others.
pub(crate) struct Cluster {
    adapter: Arc<dyn Adapter>,
    node: Arc<str>,
    inc: u64,
    config: ClusterConfig,
    members: Mutex<HashMap<String, Member>>,
    /// `members.len()`, read without the lock (presence replicates only when it is not 0).
    peers: AtomicUsize,
    pushes: Mutex<HashMap<u64, PendingPush>>,
    next_push: AtomicU64,
    inbound: Arc<InboundShared>,
    rx: Mutex<Option<mpsc::Receiver<Bytes>>>,
    stop: CancellationToken,
    /// Members to ask for their whole presence state, one per heartbeat.
    pulls: Mutex<VecDeque<String>>,
    /// Set once this node has said goodbye: it sends nothing more.
    gone: AtomicBool,
    /// A node alone by construction (no adapter configured): nothing is framed or sent.
    solo: bool,
    /// Frames handed to the adapter for other nodes.
    sent: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("peers", &self.peers())
            .finish()
    }
}

impl Cluster {
    /// Links `adapter`: frames from other nodes wait (bounded) until [`Cluster::run`].
    pub(crate) fn new(adapter: Arc<dyn Adapter>, config: ClusterConfig) -> Arc<Self> {
        Self::build(adapter, config, false)
    }

    /// A node that will never have another: broadcasts and presence changes are not framed
    /// at all (the default runtime, with no adapter configured).
    pub(crate) fn solo(adapter: Arc<dyn Adapter>, config: ClusterConfig) -> Arc<Self> {
        Self::build(adapter, config, true)
    }

    fn build(adapter: Arc<dyn Adapter>, config: ClusterConfig, solo: bool) -> Arc<Self> {
        let (inbound, rx, shared) = Inbound::new(Inbound::CAPACITY);
        let node: Arc<str> = adapter.node_name().into();
        adapter.start(inbound);
        Arc::new(Self {
            adapter,
            node,
            inc: rand_u64(),
            config,
            members: Mutex::new(HashMap::new()),
            peers: AtomicUsize::new(0),
            pushes: Mutex::new(HashMap::new()),
            next_push: AtomicU64::new(1),
            inbound: shared,
            rx: Mutex::new(Some(rx)),
            stop: CancellationToken::new(),
            pulls: Mutex::new(VecDeque::new()),
            gone: AtomicBool::new(false),
            solo,
            sent: AtomicU64::new(0),
        })
    }

    /// This node's name.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// This node's incarnation.
    pub(crate) fn inc(&self) -> u64 {
        self.inc
    }

    /// How many other nodes are members.
    pub(crate) fn peers(&self) -> usize {
        self.peers.load(Ordering::Acquire)
    }

    /// The other members' names.
    pub(crate) fn member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.members().keys().cloned().collect();
        names.sort();
        names
    }

    /// The adapter's link state.
    pub(crate) fn state(&self) -> AdapterState {
        *self.inbound.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frames received from other nodes, and those dropped because this node fell behind.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.inbound.received.load(Ordering::Relaxed),
            self.inbound.dropped.load(Ordering::Relaxed),
        )
    }

    /// Frames handed to the adapter for other nodes so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn members(&self) -> MutexGuard<'_, HashMap<String, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pushes(&self) -> MutexGuard<'_, HashMap<u64, PendingPush>> {
        self.pushes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this node may have others (frames are worth making).
    pub(crate) fn clustered(&self) -> bool {
        !self.solo
    }

    /// Sends a broadcast's frame to every other node.
    pub(crate) fn publish_frame(&self, frame: Bytes) {
        if !self.gone.load(Ordering::Acquire) {
            self.sent.fetch_add(1, Ordering::Relaxed);
            self.adapter.publish(frame);
        }
    }

    /// Sends `control` to every other node.
    pub(crate) fn publish(&self, control: &Control) {
        if !self.gone.load(Ordering::Acquire) {
            self.sent.fetch_add(1, Ordering::Relaxed);
            self.adapter.publish(control.encode());
        }
    }

    /// Sends `control` to `node` only.
    pub(crate) fn send_to(&self, node: &str, control: &Control) {
        if !self.gone.load(Ordering::Acquire) {
            self.sent.fetch_add(1, Ordering::Relaxed);
            self.adapter.send_to(node, control.encode());
        }
    }

    /// Starts handling other nodes' frames and the heartbeat. Called once the PubSub, the
    /// presence and the registry exist.
    pub(crate) fn run(
        self: &Arc<Self>,
        pubsub: PubSub,
        presence: Presence,
        registry: SocketRegistry,
    ) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let handler = handler::Handler {
            cluster: self.clone(),
            pubsub,
            presence: presence.clone(),
            registry,
        };
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    frame = rx.recv() => match frame {
                        Some(frame) => {
                            handler.cluster.inbound.taken(frame.len());
                            handler.handle(&frame).await;
                        }
                        None => break,
                    },
                }
            }
        });
        if self.solo {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.heartbeat(presence).await });
    }

    /// Publishes the heartbeat, forgets silent members, and resynchronises whenever the link
    /// comes (back) up.
    async fn heartbeat(self: Arc<Self>, presence: Presence) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut links = 0;
        // Frames lost (dropped here, or reported lost on the way out) as of the last resync.
        let mut losses = (0, 0);
        let mut ticks_since_resync = u32::MAX;
        // Heartbeats between two resyncs for lost frames: doubles while frames keep being lost
        // (up to `RESYNC_MAX_TICKS`), back to `RESYNC_EVERY_TICKS` after a quiet gap.
        let mut gap = RESYNC_EVERY_TICKS;
        loop {
            let changed = self.inbound.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let reconnects = self.inbound.reconnects.load(Ordering::Relaxed);
            if reconnects != links {
                links = reconnects;
                // Linked (again): what was published while unlinked is lost both ways.
                self.resync(&presence);
                ticks_since_resync = 0;
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = &mut changed => {}
                _ = tick.tick() => {
                    self.publish(&Control::Heartbeat { node: self.node.to_string(), inc: self.inc });
                    self.pull_next();
                    ticks_since_resync = ticks_since_resync.saturating_add(1);
                    let now = (
                        self.inbound.dropped.load(Ordering::Relaxed),
                        self.inbound.lost.load(Ordering::Relaxed),
                    );
                    // Frames were lost while linked (this node fell behind, or its adapter
                    // could not send): presence changes among them are lost both ways. Not
                    // more often than every `gap` heartbeats, so that a node whose losses go
                    // on (overloaded, or refused by Redis) does not bring whole states about
                    // without end.
                    if now != losses && ticks_since_resync >= gap {
                        tracing::warn!(
                            dropped = now.0 - losses.0,
                            lost = now.1 - losses.1,
                            "frames between nodes lost: resynchronising presence"
                        );
                        losses = now;
                        self.resync(&presence);
                        gap = if ticks_since_resync < 2 * gap {
                            (gap * 2).min(RESYNC_MAX_TICKS)
                        } else {
                            RESYNC_EVERY_TICKS
                        };
                        ticks_since_resync = 0;
                    }
                    for node in self.expired() {
                        tracing::warn!(%node, "cluster node silent: its presences are removed");
                        self.forget(&node, &presence);
                    }
                }
            }
        }
    }

    /// Sends this node's whole presence state to every other node, and asks the members for
    /// theirs one at a time (see [`Cluster::pull_all`]).
    fn resync(&self, presence: &Presence) {
        presence.dump(None);
        self.pull_all();
        self.pull_next();
    }

    /// Queues every member to be asked for its whole presence state, one per heartbeat: their
    /// answers arrive one node's state at a time, not all at once into the bounded inbound
    /// queue (which would drop some and call for another resync).
    pub(crate) fn pull_all(&self) {
        let names = self.member_names();
        let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            if !pulls.contains(&name) {
                pulls.push_back(name);
            }
        }
    }

    /// Asks the next queued member for its whole presence state.
    fn pull_next(&self) {
        let next = self
            .pulls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        if let Some(node) = next
            && self.members().contains_key(&node)
        {
            self.send_to(&node, &self.sync());
        }
    }

    /// "Send me your presences."
    pub(crate) fn sync(&self) -> Control {
        Control::Sync {
            node: self.node.to_string(),
            inc: self.inc,
            reply: true,
        }
    }

    /// Members silent for longer than the node timeout.
    fn expired(&self) -> Vec<String> {
        let now = Instant::now();
        self.members()
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) > self.config.node_timeout)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Records a frame from `node`.
    fn heard(&self, node: &str, inc: u64) -> Heard {
        let mut members = self.members();
        let now = Instant::now();
        let heard = match members.get_mut(node) {
            Some(member) if member.inc == inc => {
                member.last_seen = now;
                return Heard::Known;
            }
            Some(member) => {
                *member = Member {
                    inc,
                    last_seen: now,
                };
                Heard::Restarted
            }
            None => {
                members.insert(
                    node.to_owned(),
                    Member {
                        inc,
                        last_seen: now,
                    },
                );
                Heard::New
            }
        };
        self.peers.store(members.len(), Ordering::Release);
        drop(members);
        tracing::info!(%node, "cluster node joined");
        heard
    }

    /// `node` is gone: forget it, drop its presences, stop waiting for its counts.
    fn forget(&self, node: &str, presence: &Presence) {
        {
            let mut members = self.members();
            if members.remove(node).is_none() {
                return;
            }
            self.peers.store(members.len(), Ordering::Release);
        }
        presence.drop_node(node);
        for pending in self.pushes().values_mut() {
            pending.waiting.remove(node);
            if pending.waiting.is_empty()
                && let Some(done) = pending.done.take()
            {
                let _ = done.send(());
            }
        }
    }

    /// Pushes to the sockets named `name` on the other nodes; how many they reached, as
    /// counted by the nodes that answered within the push timeout.
    pub(crate) async fn push(
        &self,
        name: &str,
        topic: &str,
        event: &str,
        payload: &Payload,
    ) -> usize {
        let waiting: HashSet<String> = self.members().keys().cloned().collect();
        // Unlinked, nothing can reach the others (nor their counts): do not wait for them.
        if waiting.is_empty() || self.state() != AdapterState::Connected {
            return 0;
        }
        let id = self.next_push.fetch_add(1, Ordering::Relaxed);
        let (done, answered) = oneshot::channel();
        let pending = PendingPush {
            waiting,
            count: 0,
            done: Some(done),
        };
        self.pushes().insert(id, pending);
        // However this call ends (answered, timed out, or its caller gone), the entry goes.
        let entry = PendingGuard { cluster: self, id };
        self.publish(&Control::Push {
            node: self.node.to_string(),
            inc: self.inc,
            id,
            name: name.to_owned(),
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload: WirePayload::from_payload(payload),
        });
        if tokio::time::timeout(self.config.push_timeout, answered)
            .await
            .is_err()
        {
            tracing::debug!(%name, "not every node counted a direct push in time");
        }
        entry.take()
    }

    fn acked(&self, node: &str, of: u64, id: u64, count: usize) {
        if of != self.inc {
            // An answer to a push of this node's previous life.
            return;
        }
        let mut pushes = self.pushes();
        let Some(pending) = pushes.get_mut(&id) else {
            return;
        };
        if pending.waiting.remove(node) {
            pending.count += count;
        }
        if pending.waiting.is_empty()
            && let Some(done) = pending.done.take()
        {
            let _ = done.send(());
        }
    }

    /// Tells the others this node leaves (they drop its presences now), sends what is still
    /// queued within `deadline`, and stops.
    pub(crate) async fn leave(&self, deadline: Duration) {
        if self.stop.is_cancelled() {
            return;
        }
        // What this node would still send (its joins ending as its sockets close, a heartbeat)
        // would only make the others hear of it again: nothing goes after the goodbye.
        self.gone.store(true, Ordering::Release);
        let bye = Control::Bye {
            node: self.node.to_string(),
            inc: self.inc,
        };
        self.adapter.publish(bye.encode());
        self.stop.cancel();
        self.adapter.close(deadline).await;
    }

    /// Stops the tasks without a goodbye (the runtime was dropped).
    pub(crate) fn halt(&self) {
        self.stop.cancel();
    }
}

/// A pending push's entry, removed when the push ends however it ends.
struct PendingGuard<'a> {
    cluster: &'a Cluster,
    id: u64,
}

impl PendingGuard<'_> {
    /// Removes the entry; the count it gathered.
    fn take(self) -> usize {
        self.cluster
            .pushes()
            .remove(&self.id)
            .map_or(0, |p| p.count)
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.cluster.pushes().remove(&self.id);
    }
}

/// A random 64-bit number (the incarnation), from the standard library's randomly keyed
/// hasher and the clock: unique enough to tell two lives of a node apart.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
