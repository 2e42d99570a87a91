//! The seam between nodes: an [`Adapter`] carries broadcasts to the other nodes of a cluster.
//!
//! **What crosses the wire:** a [`RemoteBroadcast`] — the origin node's name, the topic, the
//! event, and the payload (JSON, or raw bytes for binary payloads), encoded by
//! [`RemoteBroadcast::encode`]. Never encoded frames (each node encodes for its own
//! subscribers' serializers), never subscriber ids (`broadcast_from` excludes a subscriber on
//! its own node only), never presence state (each node tracks its own joins).
//!
//! **The contract every adapter keeps** (checked by `fawkes_runtime::testing::adapter_conformance`):
//! 1. Each node has a unique, stable name ([`Adapter::node_name`]).
//! 2. [`Adapter::publish`] never blocks the caller.
//! 3. Every *other* node started on the same cluster receives each published message once; the
//!    publishing node does not receive its own messages (it has delivered them locally).
//! 4. Messages published by one node on one topic arrive at every other node in publish order.
//! 5. Delivery is at most once: a node that is down misses messages (as Phoenix.PubSub).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
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

impl RemoteBroadcast {
    /// The wire form: a JSON object `{"v":1,"node","topic","event","json"|"binary"}` (binary
    /// payloads as standard base64).
    pub fn encode(&self) -> Vec<u8> {
        let mut envelope =
            json!({ "v": 1, "node": self.node, "topic": self.topic, "event": self.event });
        match &self.payload {
            Payload::Json(v) => envelope["json"] = v.clone(),
            Payload::Encoded(text) => {
                envelope["json"] = serde_json::from_str(text).unwrap_or(Value::Null)
            }
            Payload::Binary(b) => {
                envelope["binary"] = json!(base64::engine::general_purpose::STANDARD.encode(b))
            }
        }
        envelope.to_string().into_bytes()
    }

    /// Parses the wire form.
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

/// Carries broadcasts between nodes. See the module docs for the contract.
pub trait Adapter: Send + Sync + 'static {
    /// This node's unique name.
    fn node_name(&self) -> &str;
    /// Sends `message` to the other nodes without blocking.
    fn publish(&self, message: RemoteBroadcast);
    /// Starts delivering other nodes' messages to `deliver`. Called once, by the PubSub.
    fn start(&self, deliver: mpsc::UnboundedSender<RemoteBroadcast>);
}

/// An in-process "cluster": every adapter made from one bus is a node that sees the others'
/// broadcasts. A runtime alone on its bus is a single node (the default).
#[derive(Default)]
pub struct MemoryBus {
    nodes: Mutex<Vec<(String, mpsc::UnboundedSender<RemoteBroadcast>)>>,
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

    fn publish(&self, message: RemoteBroadcast) {
        let mut nodes = self.bus.nodes.lock().unwrap_or_else(|e| e.into_inner());
        // One unbounded channel per receiving node keeps each sender's order; a closed one is a
        // node that is gone.
        nodes.retain(|(name, tx)| *name == self.node || tx.send(message.clone()).is_ok());
    }

    fn start(&self, deliver: mpsc::UnboundedSender<RemoteBroadcast>) {
        let mut nodes = self.bus.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.push((self.node.clone(), deliver));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_round_trips() {
        for payload in [
            Payload::Json(json!({"a": [1, "ü"]})),
            Payload::Binary(vec![0u8, 255, 7].into()),
        ] {
            let message = RemoteBroadcast {
                node: "n1".into(),
                topic: "room:1".into(),
                event: "e".into(),
                payload,
            };
            assert_eq!(RemoteBroadcast::decode(&message.encode()), Ok(message));
        }
        assert!(RemoteBroadcast::decode(b"{}").is_err());
        assert!(RemoteBroadcast::decode(br#"{"v":1,"node":"n","topic":"t","event":"e"}"#).is_err());
        assert!(RemoteBroadcast::decode(b"nope").is_err());
    }
}
