//! The frames nodes exchange, and their JSON wire form: one object per frame, its kind in
//! `"k"`, its sender in `"node"` and `"inc"` (the sender's incarnation: a random number drawn
//! when its runtime starts, so a node restarted under the same name is told apart from its
//! previous life).

use std::collections::HashMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::protocol::Payload;
use crate::pubsub::{InvalidRemote, RemoteBroadcast};

/// One presence change, as replicated to other nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Op {
    /// `key` joined with `meta` (which holds its `phx_ref`).
    #[serde(rename = "j")]
    Join(String, Map<String, Value>),
    /// The meta of `key` with this `phx_ref` left.
    #[serde(rename = "l")]
    Leave(String, String),
}

/// A payload on the wire: JSON, or binary as base64. (A JSON value, not raw JSON text: frames
/// are an internally tagged enum, which serde buffers, and raw text does not survive that.)
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WirePayload {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    json: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    binary: Option<String>,
}

impl WirePayload {
    pub(crate) fn from_payload(payload: &Payload) -> Self {
        match payload {
            Payload::Binary(bytes) => Self {
                json: None,
                binary: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
            Payload::Json(value) => Self {
                json: Some(value.clone()),
                binary: None,
            },
            Payload::Encoded(raw) => Self {
                // Valid JSON by construction.
                json: Some(serde_json::from_str(raw.get()).unwrap_or(Value::Null)),
                binary: None,
            },
        }
    }

    pub(crate) fn into_payload(self) -> Result<Payload, InvalidRemote> {
        match (self.json, self.binary) {
            (Some(json), None) => Ok(Payload::Json(json)),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(|b| Payload::Binary(b.into()))
                .map_err(|e| InvalidRemote::new(e.to_string())),
            _ => Err(InvalidRemote::new("needs exactly one of json, binary")),
        }
    }
}

/// Every frame but broadcasts (which keep [`RemoteBroadcast`]'s form, kind `"b"`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k")]
pub(crate) enum Control {
    /// "I am alive" (published every heartbeat interval).
    #[serde(rename = "hb")]
    Heartbeat { node: String, inc: u64 },
    /// "Send me your presences." (`reply` is kept for the wire form's sake; every `sync` is
    /// answered with the receiver's whole state, and a node hearing of a new member sends it
    /// its own and asks for the member's.)
    #[serde(rename = "sync")]
    Sync { node: String, inc: u64, reply: bool },
    /// "I am leaving": forget my presences now.
    #[serde(rename = "bye")]
    Bye { node: String, inc: u64 },
    /// Changes to the presences of `topic` tracked on the sender's shard `shard`, in order.
    #[serde(rename = "pops")]
    PresenceOps {
        node: String,
        inc: u64,
        shard: u16,
        topic: String,
        ops: Vec<Op>,
    },
    /// Every presence tracked on the sender's shard `shard`, by topic: replaces what the
    /// receiver holds from that shard.
    #[serde(rename = "pdump")]
    PresenceDump {
        node: String,
        inc: u64,
        shard: u16,
        topics: HashMap<String, crate::presence::Entries>,
    },
    /// A direct push to the sockets named `name` that joined `topic`; answered with `Ack`.
    #[serde(rename = "push")]
    Push {
        node: String,
        inc: u64,
        id: u64,
        name: String,
        topic: String,
        event: String,
        payload: WirePayload,
    },
    /// How many sockets push `id` of the pusher's life `of` reached on the sender.
    #[serde(rename = "ack")]
    Ack {
        node: String,
        inc: u64,
        of: u64,
        id: u64,
        count: usize,
    },
    /// Close the sockets named `name` but those also named `keep`.
    #[serde(rename = "dx")]
    DisconnectExcept {
        node: String,
        inc: u64,
        name: String,
        keep: String,
    },
}

impl Control {
    /// The sender and its incarnation.
    pub(crate) fn sender(&self) -> (&str, u64) {
        match self {
            Control::Heartbeat { node, inc }
            | Control::Sync { node, inc, .. }
            | Control::Bye { node, inc }
            | Control::PresenceOps { node, inc, .. }
            | Control::PresenceDump { node, inc, .. }
            | Control::Push { node, inc, .. }
            | Control::Ack { node, inc, .. }
            | Control::DisconnectExcept { node, inc, .. } => (node, *inc),
        }
    }

    /// The wire form.
    pub(crate) fn encode(&self) -> bytes::Bytes {
        // Strings, numbers and JSON values always serialize.
        serde_json::to_vec(self).unwrap_or_default().into()
    }
}

/// A frame as received.
#[derive(Debug)]
pub(crate) enum Frame {
    Broadcast(RemoteBroadcast),
    Control(Control),
}

/// The kind of a frame, read without parsing the rest.
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(borrow, default)]
    k: Option<&'a str>,
}

impl Frame {
    /// Parses a frame; anything else is an error and is dropped.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, InvalidRemote> {
        let kind: Kind<'_> =
            serde_json::from_slice(bytes).map_err(|e| InvalidRemote::new(e.to_string()))?;
        match kind.k {
            None | Some("b") => RemoteBroadcast::decode(bytes).map(Frame::Broadcast),
            Some(_) => serde_json::from_slice(bytes)
                .map(Frame::Control)
                .map_err(|e| InvalidRemote::new(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn control_frames_round_trip() {
        let mut meta = Map::new();
        meta.insert("phx_ref".into(), json!("r1"));
        let frames = [
            Control::Heartbeat {
                node: "a".into(),
                inc: 7,
            },
            Control::PresenceOps {
                node: "a".into(),
                inc: 7,
                shard: 3,
                topic: "room:1".into(),
                ops: vec![
                    Op::Join("42".into(), meta.clone()),
                    Op::Leave("42".into(), "r0".into()),
                ],
            },
            Control::Push {
                node: "a".into(),
                inc: 7,
                id: 1,
                name: "user_socket:1".into(),
                topic: "room:chat".into(),
                event: "receive_msg".into(),
                payload: WirePayload::from_payload(&Payload::Binary(vec![1, 2].into())),
            },
            Control::Push {
                node: "a".into(),
                inc: 7,
                id: 2,
                name: "user_socket:1".into(),
                topic: "room:chat".into(),
                event: "receive_msg".into(),
                payload: WirePayload::from_payload(&Payload::Json(json!({"m": [1, "ü"]}))),
            },
        ];
        for frame in frames {
            let bytes = frame.encode();
            let Ok(Frame::Control(back)) = Frame::decode(&bytes) else {
                panic!("decodes: {}", String::from_utf8_lossy(&bytes));
            };
            assert_eq!(back.sender(), ("a", 7));
            assert_eq!(back.encode(), bytes, "same wire form");
        }
        let broadcast = RemoteBroadcast {
            node: "a".into(),
            topic: "t".into(),
            event: "e".into(),
            payload: Payload::Json(json!({"x": 1})),
        };
        assert!(matches!(
            Frame::decode(&broadcast.encode()),
            Ok(Frame::Broadcast(b)) if b == broadcast
        ));
        assert!(Frame::decode(br#"{"k":"nope","node":"a"}"#).is_err());
        assert!(Frame::decode(b"[").is_err());
    }

    #[test]
    fn payloads_cross_intact() {
        for payload in [
            Payload::Json(json!({"a": [1, "ü"]})),
            Payload::Binary(vec![0u8, 255].into()),
            Payload::from_encoded(r#"{"pre":true}"#).expect("JSON"),
        ] {
            let frame = Control::Push {
                node: "a".into(),
                inc: 1,
                id: 1,
                name: "n".into(),
                topic: "t".into(),
                event: "e".into(),
                payload: WirePayload::from_payload(&payload),
            };
            let Ok(Frame::Control(Control::Push { payload: back, .. })) =
                Frame::decode(&frame.encode())
            else {
                panic!("a push decodes");
            };
            let back = back.into_payload().expect("payload");
            assert_eq!(
                back.decode::<Value>().ok(),
                payload.decode::<Value>().ok(),
                "{payload:?}"
            );
            assert_eq!(back.as_binary(), payload.as_binary());
        }
    }
}
