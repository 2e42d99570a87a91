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
}

impl RemoteBroadcast {
    /// The wire form: a JSON object `{"v":1,"node","topic","event","json"|"binary"}` (binary
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
