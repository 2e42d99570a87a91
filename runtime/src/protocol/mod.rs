//! The Phoenix Channels wire protocol: frames in, frames out. Pure: no I/O, no tokio, no
//! ractor — bytes and values only.
//!
//! Three serializers, fixed per connection by the `vsn` query parameter:
//! - **V1 JSON** (`vsn=1.0.0`, or no `vsn`): text frames holding an object
//!   `{"topic","event","payload","ref","join_ref"?}`.
//! - **V2 JSON** (`vsn=2.0.0`, what phoenix.js sends): text frames holding
//!   `[join_ref, ref, topic, event, payload]`.
//! - **V2 binary**: binary frames with a kind byte and one-byte UTF-8 lengths, for raw byte
//!   payloads (push `0`, reply `1`, broadcast `2`).
//!
//! `join_ref` and `ref` are echoed back exactly as received, JSON type included ([`Ref`]).
//! Decoding never panics: a malformed frame is a [`DecodeError`].

mod decode;
mod encode;
mod payload;

use std::sync::Arc;

pub use decode::{DecodeError, decode_binary, decode_text};
pub use encode::{
    EncodeError, Encoded, encode_broadcast, encode_close, encode_error, encode_push, encode_reply,
    push_frame_parts,
};
pub(crate) use payload::empty_object;
pub use payload::{Payload, PayloadError};

/// The serializer a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vsn {
    /// `1.0.x`: object frames, text only.
    V1,
    /// `2.0.x`: array frames and binary frames.
    V2,
}

/// The `vsn` parameter named no supported serializer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported protocol version {0:?}")]
pub struct UnsupportedVsn(pub String);

impl Vsn {
    /// Picks the serializer for a `vsn` query value: absent → V1; `1.0.x` → V1; `2.0.x` → V2;
    /// anything else (other versions, not a version) is refused.
    pub fn negotiate(vsn: Option<&str>) -> Result<Self, UnsupportedVsn> {
        let Some(text) = vsn else {
            return Ok(Vsn::V1);
        };
        let parts: Vec<&str> = text.split('.').collect();
        let numbers: Option<Vec<u64>> = match parts.as_slice() {
            [_, _, _] => parts
                .iter()
                .map(|p| {
                    let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
                    // Semantic versions forbid leading zeros.
                    let canonical = p.len() == 1 || !p.starts_with('0');
                    (digits && canonical).then(|| p.parse().ok()).flatten()
                })
                .collect(),
            _ => None,
        };
        match numbers.as_deref() {
            Some([1, 0, _]) => Ok(Vsn::V1),
            Some([2, 0, _]) => Ok(Vsn::V2),
            _ => Err(UnsupportedVsn(text.to_owned())),
        }
    }
}

/// A `join_ref` or `ref`: JSON `null` or the raw JSON text the client sent (usually a string
/// such as `"12"`), echoed verbatim. Two refs are equal only if their JSON text is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ref(Option<Arc<str>>);

impl Ref {
    /// The `null` ref.
    pub const NULL: Ref = Ref(None);

    /// A ref from raw JSON text (`null` becomes [`Ref::NULL`]).
    pub fn from_json(raw: &str) -> Self {
        let raw = raw.trim();
        if raw == "null" {
            Ref::NULL
        } else {
            Ref(Some(Arc::from(raw)))
        }
    }

    /// A string ref, as binary frames carry them (empty means `null`).
    pub fn from_string(s: &str) -> Self {
        if s.is_empty() {
            return Ref::NULL;
        }
        // Serializing a &str cannot fail.
        Ref(Some(Arc::from(
            serde_json::to_string(s).unwrap_or_default(),
        )))
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        self.0.is_none()
    }

    /// The JSON text to write back.
    pub fn as_json(&self) -> &str {
        self.0.as_deref().unwrap_or("null")
    }

    /// The text for a binary frame: a JSON string's contents, other JSON as written, `null`
    /// as empty.
    pub fn as_binary_field(&self) -> std::borrow::Cow<'_, str> {
        match self.0.as_deref() {
            None => "".into(),
            Some(raw) if raw.starts_with('"') => serde_json::from_str::<String>(raw)
                .map(Into::into)
                .unwrap_or_else(|_| raw.into()),
            Some(raw) => raw.into(),
        }
    }
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_json())
    }
}

/// One decoded client message.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The join this message belongs to (`null` allowed).
    pub join_ref: Ref,
    /// The message's own ref, echoed in the reply.
    pub msg_ref: Ref,
    /// Topic, e.g. `room:lobby` or `phoenix`.
    pub topic: String,
    /// Event, e.g. `phx_join` or an application event.
    pub event: String,
    /// Payload.
    pub payload: Payload,
}

/// Reserved event names.
pub mod events {
    /// Join a topic.
    pub const JOIN: &str = "phx_join";
    /// Leave a topic.
    pub const LEAVE: &str = "phx_leave";
    /// A reply to a client message.
    pub const REPLY: &str = "phx_reply";
    /// A channel ended on purpose.
    pub const CLOSE: &str = "phx_close";
    /// A channel crashed.
    pub const ERROR: &str = "phx_error";
    /// Keep-alive, on topic [`PHOENIX`].
    pub const HEARTBEAT: &str = "heartbeat";
    /// The socket-level topic heartbeats use.
    pub const PHOENIX: &str = "phoenix";
    /// On a socket-id topic: close every socket with that id.
    pub const DISCONNECT: &str = "disconnect";
}

#[cfg(test)]
mod fuzz_regressions;
#[cfg(test)]
mod tests;
