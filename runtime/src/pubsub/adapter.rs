//! The seam between nodes: an [`Adapter`] carries frames to the other nodes of a cluster.
//!
//! **What crosses the wire:** frames the runtime makes and reads (see `crate::cluster`):
//! broadcasts ([`RemoteBroadcast`]: the origin node's name, topic, event and payload — JSON, or
//! raw bytes for binary payloads — never encoded WebSocket frames, never subscriber ids),
//! presence changes and state transfers, direct pushes and their acknowledgements, and node
//! heartbeats. An adapter moves them as opaque bytes.
//!
//! **The contract every adapter keeps** (checked by `fawkes_runtime::testing::adapter_conformance`):
//! 1. Each node has a unique, stable name ([`Adapter::node_name`]).
//! 2. [`Adapter::publish`] and [`Adapter::send_to`] never block the caller.
//! 3. Every *other* node linked to the cluster receives each published frame once; the
//!    publishing node does not receive its own. A frame sent to one node reaches that node
//!    only.
//! 4. Frames from one node arrive at each other node in the order that node sent them,
//!    published or sent to it alone.
//! 5. Delivery is at most once: a node that is down or unlinked misses frames (as
//!    Phoenix.PubSub); nothing is queued without bound while a link is down.
//! 6. The link's state is reported with [`Inbound::set_state`]; after a lost link the
//!    adapter reconnects by itself and reports [`AdapterState::Connected`] again.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::protocol::Payload;

/// A broadcast travelling between nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteBroadcast {
    /// The publishing node.
    pub node: String,
    /// Topic.
    pub topic: String,
    /// Event.
    pub event: String,
    /// Payload.
    pub payload: Payload,
}

/// A message that is not a valid [`RemoteBroadcast`] encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid remote broadcast: {0}")]
pub struct InvalidRemote(String);

impl InvalidRemote {
    pub(crate) fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

/// The wire form's JSON payload: a value, or JSON text written as is.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum WireJson<'a> {
    Value(&'a Value),
    Raw(&'a RawValue),
}

/// The wire form, as written.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    v: u8,
    node: &'a str,
    topic: &'a str,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<WireJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<String>,
    /// The frame kind (a broadcast) among the cluster's frames.
    k: &'static str,
}

impl RemoteBroadcast {
    /// The wire form: a JSON object `{"v":1,"k":"b","node","topic","event","json"|"binary"}` (binary
    /// payloads as standard base64; pre-encoded JSON written as is, it is valid by
    /// construction).
    pub fn encode(&self) -> Vec<u8> {
        let (json, binary) = match &self.payload {
            Payload::Json(v) => (Some(WireJson::Value(v)), None),
            Payload::Encoded(raw) => (Some(WireJson::Raw(raw)), None),
            Payload::Binary(b) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        };
        let envelope = Envelope {
            v: 1,
            node: &self.node,
            topic: &self.topic,
            event: &self.event,
            json,
            binary,
            k: "b",
        };
        // Strings, numbers and valid JSON always serialize.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Parses the wire form. A message that is not JSON (its payload included), lacks a
    /// field, or is of another version is an error: nothing is delivered for it.
    pub fn decode(bytes: &[u8]) -> Result<Self, InvalidRemote> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| InvalidRemote(e.to_string()))?;
        if v["v"] != 1 {
            return Err(InvalidRemote("unknown version".into()));
        }
        let text = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| InvalidRemote(format!("missing {k}")))
        };
        let payload = match (v.get("json"), v.get("binary").and_then(Value::as_str)) {
            (Some(json), None) => Payload::Json(json.clone()),
            (None, Some(b64)) => Payload::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| InvalidRemote(e.to_string()))?
                    .into(),
            ),
            _ => return Err(InvalidRemote("needs exactly one of json, binary".into())),
        };
        Ok(Self {
            node: text("node")?,
            topic: text("topic")?,
            event: text("event")?,
            payload,
        })
    }
}

/// The state of an adapter's link to the other nodes (reported through
/// [`Inbound::set_state`], read with [`crate::PubSub::adapter_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterState {
    /// Linked: published frames reach the other nodes.
    Connected,
    /// Not linked yet, or lost and reconnecting: this node serves its own clients, frames to
    /// and from the other nodes are dropped (at most once).
    Disconnected,
}

/// Where an adapter hands over the frames it receives from other nodes. Bounded: a frame that
/// finds the queue full ([`Inbound::CAPACITY`] frames or [`Inbound::CAPACITY_BYTES`] bytes
/// waiting) is dropped and counted (delivery between nodes is at most once); the runtime then
/// asks the other nodes for their presence state again.
#[derive(Clone)]
pub struct Inbound {
    tx: mpsc::Sender<Bytes>,
    shared: Arc<InboundShared>,
}

/// What the runtime reads of its adapter: state and counters.
#[derive(Debug)]
pub(crate) struct InboundShared {
    pub(crate) state: Mutex<AdapterState>,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// Frames this node sent that the adapter could not send (reported by the adapter).
    pub(crate) lost: AtomicU64,
    /// Bytes of the frames waiting for the runtime.
    pub(crate) bytes: AtomicUsize,
    pub(crate) max_bytes: usize,
    /// Bumped on every change to `Connected`: the runtime resynchronises after an outage.
    pub(crate) reconnects: AtomicU64,
    pub(crate) changed: tokio::sync::Notify,
}

impl InboundShared {
    /// A frame of `len` bytes left the queue.
    pub(crate) fn taken(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::AcqRel);
    }
}

impl Inbound {
    /// Frames waiting for the runtime before more are dropped.
    pub const CAPACITY: usize = 65_536;
    /// Bytes waiting for the runtime before more frames are dropped (an empty queue takes any
    /// one frame).
    pub const CAPACITY_BYTES: usize = 64 * 1024 * 1024;

    /// A queue with room for `capacity` frames and [`Inbound::CAPACITY_BYTES`], and its
    /// receiving end.
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<Bytes>, Arc<InboundShared>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(InboundShared {
            state: Mutex::new(AdapterState::Disconnected),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            max_bytes: Self::CAPACITY_BYTES,
            reconnects: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        });
        let inbound = Self {
            tx,
            shared: shared.clone(),
        };
        (inbound, rx, shared)
    }

    /// Hands over a frame another node sent. `false` when the runtime is gone or its queue
    /// is full (the frame is dropped and counted); never waits.
    pub fn deliver(&self, frame: Bytes) -> bool {
        self.shared.received.fetch_add(1, Ordering::Relaxed);
        let len = frame.len();
        let before = self.shared.bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.shared.max_bytes {
            self.shared.bytes.fetch_sub(len, Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(_) => {
                self.shared.bytes.fetch_sub(len, Ordering::AcqRel);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Reports that `frames` this node asked the adapter to send were dropped (a full send
    /// queue, a link that failed under them) while the link otherwise stayed up: the runtime
    /// sends its presence state again, since changes among them are lost. (Frames dropped
    /// while the link is down need no report: the link's return resynchronises.)
    pub fn lost(&self, frames: u64) {
        if frames > 0 {
            self.shared.lost.fetch_add(frames, Ordering::Relaxed);
        }
    }

    /// Reports the link's state. The adapter calls it on each change (calling it again with
    /// the same state does nothing); every change to [`AdapterState::Connected`] makes the
    /// runtime resynchronise with the other nodes (presence), as after an outage.
    pub fn set_state(&self, state: AdapterState) {
        let mut current = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if *current == state {
            return;
        }
        *current = state;
        if state == AdapterState::Connected {
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        drop(current);
        self.shared.changed.notify_waiters();
    }
}

/// Carries frames between the nodes of a cluster. See the module docs for the contract.
///
/// Frames are opaque bytes made by the runtime (broadcasts, presence, direct pushes, node
/// heartbeats); an adapter moves them and never looks inside.
pub trait Adapter: Send + Sync + 'static {
    /// This node's name, unique in the cluster and stable for the process's life.
    fn node_name(&self) -> &str;
    /// Sends `frame` to every other node, without blocking.
    fn publish(&self, frame: Bytes);
    /// Sends `frame` to node `node` only, without blocking; dropped if there is no such node.
    fn send_to(&self, node: &str, frame: Bytes);
    /// Starts delivering other nodes' frames to `inbound` and reporting the link's state there.
    /// Called once, by the runtime.
    fn start(&self, inbound: Inbound);
    /// Sends what is still queued (within `deadline`) and unlinks: the runtime calls it last
    /// when it shuts down, after publishing that it leaves.
    fn close(&self, deadline: Duration) -> BoxFuture<'_, ()> {
        let _ = deadline;
        Box::pin(async {})
    }
}

/// A boxed future (for [`Adapter::close`]).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// An in-process "cluster": every adapter made from one bus is a node that sees the others'
/// frames. A runtime alone on its bus is a single node (the default). A node can be cut off
/// and linked again ([`MemoryBus::set_linked`]), to test what a cluster does when a link fails.
#[derive(Default)]
pub struct MemoryBus {
    nodes: Mutex<Vec<BusNode>>,
}

struct BusNode {
    name: String,
    inbound: Inbound,
    linked: bool,
    /// Frames this node sends that are to be lost (and reported lost).
    lose: u64,
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An adapter for node `name` on this bus.
    pub fn adapter(self: &Arc<Self>, name: &str) -> MemoryAdapter {
        MemoryAdapter {
            node: name.to_owned(),
            bus: self.clone(),
        }
    }

    /// Cuts node `name` off the bus (`false`: it neither sends nor receives, and reports
    /// [`AdapterState::Disconnected`], as when its link to Redis is down) or links it again.
    pub fn set_linked(&self, name: &str, linked: bool) {
        let mut nodes = self.nodes();
        for node in nodes.iter_mut().filter(|n| n.name == name) {
            node.linked = linked;
            node.inbound.set_state(if linked {
                AdapterState::Connected
            } else {
                AdapterState::Disconnected
            });
        }
    }

    /// Loses the next `frames` frames node `name` sends while staying linked, reporting them
    /// lost ([`Inbound::lost`]) as an adapter whose send queue overflowed does.
    pub fn lose_next(&self, name: &str, frames: u64) {
        for node in self.nodes().iter_mut().filter(|n| n.name == name) {
            node.lose += frames;
        }
    }

    /// Whether a frame from `name` is lost (and reported).
    fn lost(nodes: &mut [BusNode], name: &str) -> bool {
        match nodes.iter_mut().find(|n| n.name == name && n.lose > 0) {
            Some(node) => {
                node.lose -= 1;
                node.inbound.lost(1);
                true
            }
            None => false,
        }
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, Vec<BusNode>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn linked(nodes: &[BusNode], name: &str) -> bool {
        nodes.iter().any(|n| n.name == name && n.linked)
    }
}

/// A node on a [`MemoryBus`].
pub struct MemoryAdapter {
    node: String,
    bus: Arc<MemoryBus>,
}

impl Adapter for MemoryAdapter {
    fn node_name(&self) -> &str {
        &self.node
    }

    fn publish(&self, frame: Bytes) {
        let mut nodes = self.bus.nodes();
        if !MemoryBus::linked(&nodes, &self.node) || MemoryBus::lost(&mut nodes, &self.node) {
            return;
        }
        // Each receiving node's queue keeps each sender's order; a closed one is a node that
        // is gone.
        nodes.retain(|n| {
            n.name == self.node
                || !n.linked
                || n.inbound.deliver(frame.clone())
                || !n.inbound.tx.is_closed()
        });
    }

    fn send_to(&self, node: &str, frame: Bytes) {
        let mut nodes = self.bus.nodes();
        if node == self.node
            || !MemoryBus::linked(&nodes, &self.node)
            || MemoryBus::lost(&mut nodes, &self.node)
        {
            return;
        }
        if let Some(n) = nodes.iter().find(|n| n.name == node && n.linked) {
            n.inbound.deliver(frame);
        }
    }

    fn start(&self, inbound: Inbound) {
        inbound.set_state(AdapterState::Connected);
        let mut nodes = self.bus.nodes();
        // A node restarted under its name takes its previous life's place.
        nodes.retain(|n| n.name != self.node);
        nodes.push(BusNode {
            name: self.node.clone(),
            inbound,
            linked: true,
            lose: 0,
        });
    }

    fn close(&self, _deadline: Duration) -> BoxFuture<'_, ()> {
        self.bus.nodes().retain(|n| n.name != self.node);
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(payload: Payload) -> RemoteBroadcast {
        RemoteBroadcast {
            node: "n1".into(),
            topic: "room:1".into(),
            event: "e".into(),
            payload,
        }
    }

    #[test]
    fn the_wire_form_round_trips() {
        for payload in [
            Payload::Json(json!({"a": [1, "ü"]})),
            Payload::Binary(vec![0u8, 255, 7].into()),
        ] {
            let message = message(payload);
            assert_eq!(RemoteBroadcast::decode(&message.encode()), Ok(message));
        }
        assert!(RemoteBroadcast::decode(b"{}").is_err());
        assert!(RemoteBroadcast::decode(br#"{"v":1,"node":"n","topic":"t","event":"e"}"#).is_err());
        assert!(RemoteBroadcast::decode(b"nope").is_err());
    }

    #[test]
    fn pre_encoded_json_crosses_as_itself_and_bad_json_is_rejected_not_nulled() {
        // Pre-encoded JSON reaches the other node as the same JSON (it once became `null`
        // when it did not parse; now it cannot be built unparsed).
        let encoded = Payload::from_encoded(r#"{"big":[1,2,3],"s":"ü"}"#).expect("JSON");
        let decoded = RemoteBroadcast::decode(&message(encoded).encode()).expect("decodes");
        assert_eq!(
            decoded.payload,
            Payload::Json(json!({"big": [1, 2, 3], "s": "ü"}))
        );
        // A message whose payload is not JSON is refused, not delivered as `null`.
        for bad in [
            &br#"{"v":1,"node":"n","topic":"t","event":"e","json":{"a":}"#[..],
            br#"{"v":1,"node":"n","topic":"t","event":"e","json":nul}"#,
            br#"{"v":1,"node":"n","topic":"t","event":"e","json":[1,2"#,
        ] {
            let error = RemoteBroadcast::decode(bad).expect_err("bad JSON");
            assert!(error.to_string().starts_with("invalid remote broadcast"));
        }
        // `null` itself is a payload like any other.
        let null = br#"{"v":1,"node":"n","topic":"t","event":"e","json":null}"#;
        assert_eq!(
            RemoteBroadcast::decode(null).map(|m| m.payload),
            Ok(Payload::Json(Value::Null))
        );
    }
}
