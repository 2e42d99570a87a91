//! Server → client frames.
//!
//! JSON objects are written with sorted keys, as Phoenix writes them, so encoded frames match
//! Phoenix's byte for byte (see the golden tests).

use serde_json::Value;

use super::{Payload, Ref, Vsn, events};

/// An encoded frame, ready for the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Binary payloads need V2.
    #[error("binary payloads need vsn 2.0.0")]
    BinaryNotSupported,
    /// A binary frame field (topic, event, ref, status) longer than 255 bytes.
    #[error("binary frame field longer than 255 bytes")]
    FieldTooLong,
}

fn json_str(out: &mut String, s: &str) {
    // Serializing a str into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn json_value(out: &mut String, v: &Value) {
    out.push_str(&serde_json::to_string(v).unwrap_or_default());
}

/// A JSON payload (parsed or already encoded), or `None` for bytes.
enum Json<'a> {
    Value(&'a Value),
    Text(&'a str),
}

impl<'a> Json<'a> {
    fn of(payload: &'a Payload) -> Option<Self> {
        match payload {
            Payload::Json(v) => Some(Json::Value(v)),
            Payload::Encoded(raw) => Some(Json::Text(raw.get())),
            Payload::Binary(_) => None,
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Value(v) => json_value(out, v),
            Json::Text(text) => out.push_str(text),
        }
    }
}

/// `[join_ref, ref, topic, event, payload]`.
fn v2(
    join_ref: &Ref,
    msg_ref: &Ref,
    topic: &str,
    event: &str,
    payload: &dyn Fn(&mut String),
) -> Encoded {
    let mut out = String::with_capacity(64 + topic.len());
    out.push('[');
    out.push_str(join_ref.as_json());
    out.push(',');
    out.push_str(msg_ref.as_json());
    out.push(',');
    json_str(&mut out, topic);
    out.push(',');
    json_str(&mut out, event);
    out.push(',');
    payload(&mut out);
    out.push(']');
    Encoded::Text(out)
}

/// `{"event","payload","ref","topic"}` (V1 never carries `join_ref`).
fn v1(msg_ref: &Ref, topic: &str, event: &str, payload: &dyn Fn(&mut String)) -> Encoded {
    let mut out = String::with_capacity(64 + topic.len());
    out.push_str("{\"event\":");
    json_str(&mut out, event);
    out.push_str(",\"payload\":");
    payload(&mut out);
    out.push_str(",\"ref\":");
    out.push_str(msg_ref.as_json());
    out.push_str(",\"topic\":");
    json_str(&mut out, topic);
    out.push('}');
    Encoded::Text(out)
}

/// A binary frame: kind byte, one length byte per field, the fields, then the payload.
fn binary(kind: u8, fields: &[&str], payload: &[u8]) -> Result<Encoded, EncodeError> {
    let mut out = Vec::with_capacity(
        1 + fields.len() + fields.iter().map(|f| f.len()).sum::<usize>() + payload.len(),
    );
    out.push(kind);
    for field in fields {
        out.push(u8::try_from(field.len()).map_err(|_| EncodeError::FieldTooLong)?);
    }
    for field in fields {
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(payload);
    Ok(Encoded::Binary(out))
}

/// A reply to the client message `msg_ref`: `phx_reply` with `{"response": R, "status": S}`.
/// A binary response becomes a V2 binary reply frame (kind 1).
pub fn encode_reply(
    vsn: Vsn,
    join_ref: &Ref,
    msg_ref: &Ref,
    topic: &str,
    status: &str,
    response: &Payload,
) -> Result<Encoded, EncodeError> {
    let Some(json) = Json::of(response) else {
        let Payload::Binary(bytes) = response else {
            return Err(EncodeError::BinaryNotSupported);
        };
        if vsn != Vsn::V2 {
            return Err(EncodeError::BinaryNotSupported);
        }
        let (j, r) = (join_ref.as_binary_field(), msg_ref.as_binary_field());
        return binary(1, &[&j, &r, topic, status], bytes);
    };
    let payload = |out: &mut String| {
        out.push_str("{\"response\":");
        json.write(out);
        out.push_str(",\"status\":");
        json_str(out, status);
        out.push('}');
    };
    Ok(match vsn {
        Vsn::V2 => v2(join_ref, msg_ref, topic, events::REPLY, &payload),
        Vsn::V1 => v1(msg_ref, topic, events::REPLY, &payload),
    })
}

/// A push from a channel to its client: carries the join_ref, no ref. Binary → kind 0.
pub fn encode_push(
    vsn: Vsn,
    join_ref: &Ref,
    topic: &str,
    event: &str,
    payload: &Payload,
) -> Result<Encoded, EncodeError> {
    match (vsn, Json::of(payload), payload) {
        (Vsn::V2, Some(json), _) => Ok(v2(join_ref, &Ref::NULL, topic, event, &|out| {
            json.write(out)
        })),
        (Vsn::V1, Some(json), _) => Ok(v1(&Ref::NULL, topic, event, &|out| json.write(out))),
        (Vsn::V2, None, Payload::Binary(bytes)) => {
            binary(0, &[&join_ref.as_binary_field(), topic, event], bytes)
        }
        _ => Err(EncodeError::BinaryNotSupported),
    }
}

/// A broadcast: no join_ref, no ref, so every join instance accepts it. Binary → kind 2.
pub fn encode_broadcast(
    vsn: Vsn,
    topic: &str,
    event: &str,
    payload: &Payload,
) -> Result<Encoded, EncodeError> {
    match (vsn, Json::of(payload), payload) {
        (Vsn::V2, Some(json), _) => Ok(v2(&Ref::NULL, &Ref::NULL, topic, event, &|out| {
            json.write(out)
        })),
        (Vsn::V1, Some(json), _) => Ok(v1(&Ref::NULL, topic, event, &|out| json.write(out))),
        (Vsn::V2, None, Payload::Binary(bytes)) => binary(2, &[topic, event], bytes),
        _ => Err(EncodeError::BinaryNotSupported),
    }
}

/// `phx_close` for a join: `[join_ref, join_ref, topic, "phx_close", {}]`.
pub fn encode_close(vsn: Vsn, join_ref: &Ref, topic: &str) -> Encoded {
    let empty = |out: &mut String| out.push_str("{}");
    match vsn {
        Vsn::V2 => v2(join_ref, join_ref, topic, events::CLOSE, &empty),
        Vsn::V1 => v1(join_ref, topic, events::CLOSE, &empty),
    }
}

/// `phx_error` for a join: `[join_ref, join_ref, topic, "phx_error", payload]`.
pub fn encode_error(vsn: Vsn, join_ref: &Ref, topic: &str, payload: &Value) -> Encoded {
    let payload = |out: &mut String| json_value(out, payload);
    match vsn {
        Vsn::V2 => v2(join_ref, join_ref, topic, events::ERROR, &payload),
        Vsn::V1 => v1(join_ref, topic, events::ERROR, &payload),
    }
}

/// The text around a push's payload: `(prefix, suffix)` such that `prefix + payload + suffix`
/// is the push frame. Lets a large pre-encoded payload be sent to many clients as a shared
/// middle fragment instead of one copy per client.
pub fn push_frame_parts(vsn: Vsn, join_ref: &Ref, topic: &str, event: &str) -> (String, String) {
    let mut prefix = String::with_capacity(64 + topic.len());
    match vsn {
        Vsn::V2 => {
            prefix.push('[');
            prefix.push_str(join_ref.as_json());
            prefix.push_str(",null,");
            json_str(&mut prefix, topic);
            prefix.push(',');
            json_str(&mut prefix, event);
            prefix.push(',');
            (prefix, "]".to_owned())
        }
        Vsn::V1 => {
            prefix.push_str("{\"event\":");
            json_str(&mut prefix, event);
            prefix.push_str(",\"payload\":");
            let mut suffix = String::from(",\"ref\":null,\"topic\":");
            json_str(&mut suffix, topic);
            suffix.push('}');
            (prefix, suffix)
        }
    }
}
