//! Client → server frames.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Inbound, Payload, Ref, Vsn};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape for the serializer.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A binary frame on a V1 connection.
    #[error("binary frames need vsn 2.0.0")]
    BinaryNotSupported,
    /// A binary frame with a kind other than push (0).
    #[error("unknown binary frame kind {0}")]
    BinaryKind(u8),
    /// A binary frame shorter than its header says.
    #[error("truncated binary frame")]
    Truncated,
    /// A binary frame field that is not UTF-8.
    #[error("binary frame field is not UTF-8")]
    Utf8,
}

/// Decodes a text frame.
pub fn decode_text(vsn: Vsn, text: &str) -> Result<Inbound, DecodeError> {
    match vsn {
        Vsn::V2 => decode_v2(text),
        Vsn::V1 => decode_v1(text),
    }
}

fn malformed(e: impl fmt::Display) -> DecodeError {
    DecodeError::Malformed(e.to_string())
}

fn decode_v2(text: &str) -> Result<Inbound, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let inbound = de.deserialize_seq(V2Visitor).map_err(malformed)?;
    de.end().map_err(malformed)?;
    Ok(inbound)
}

/// `[join_ref, ref, topic, event, payload, ...ignored]`.
struct V2Visitor;

impl<'de> Visitor<'de> for V2Visitor {
    type Value = Inbound;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array [join_ref, ref, topic, event, payload]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inbound, A::Error> {
        let missing = |n| de::Error::invalid_length(n, &"5 elements");
        let join_ref: &RawValue = seq.next_element()?.ok_or_else(|| missing(0))?;
        let msg_ref: &RawValue = seq.next_element()?.ok_or_else(|| missing(1))?;
        let topic: String = seq.next_element()?.ok_or_else(|| missing(2))?;
        let event: String = seq.next_element()?.ok_or_else(|| missing(3))?;
        let payload: Value = seq.next_element()?.ok_or_else(|| missing(4))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Inbound {
            join_ref: Ref::from_json(join_ref.get()),
            msg_ref: Ref::from_json(msg_ref.get()),
            topic,
            event,
            payload: Payload::Json(payload),
        })
    }
}

#[derive(serde::Deserialize)]
struct V1Frame<'a> {
    topic: String,
    event: String,
    payload: Value,
    #[serde(rename = "ref", borrow)]
    msg_ref: &'a RawValue,
    #[serde(default, borrow)]
    join_ref: Option<&'a RawValue>,
}

fn decode_v1(text: &str) -> Result<Inbound, DecodeError> {
    // A derived struct would also accept `[topic, event, payload, ref]`; V1 is objects only.
    if !text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(DecodeError::Malformed(
            "a V1 frame must be a JSON object".to_owned(),
        ));
    }
    let frame: V1Frame<'_> = serde_json::from_str(text).map_err(malformed)?;
    Ok(Inbound {
        join_ref: frame
            .join_ref
            .map_or(Ref::NULL, |r| Ref::from_json(r.get())),
        msg_ref: Ref::from_json(frame.msg_ref.get()),
        topic: frame.topic,
        event: frame.event,
        payload: Payload::Json(frame.payload),
    })
}

/// Decodes a binary frame: only V2 client pushes,
/// `[0][len join_ref][len ref][len topic][len event] join_ref ref topic event payload…`.
pub fn decode_binary(vsn: Vsn, frame: &[u8]) -> Result<Inbound, DecodeError> {
    if vsn != Vsn::V2 {
        return Err(DecodeError::BinaryNotSupported);
    }
    let (&kind, rest) = frame.split_first().ok_or(DecodeError::Truncated)?;
    if kind != 0 {
        return Err(DecodeError::BinaryKind(kind));
    }
    let [a, b, c, d] = *rest.first_chunk::<4>().ok_or(DecodeError::Truncated)?;
    let mut body = &rest[4..];
    let mut field = |len: u8| -> Result<&str, DecodeError> {
        let (head, tail) = body
            .split_at_checked(usize::from(len))
            .ok_or(DecodeError::Truncated)?;
        body = tail;
        std::str::from_utf8(head).map_err(|_| DecodeError::Utf8)
    };
    let join_ref = Ref::from_string(field(a)?);
    let msg_ref = Ref::from_string(field(b)?);
    let topic = field(c)?.to_owned();
    let event = field(d)?.to_owned();
    Ok(Inbound {
        join_ref,
        msg_ref,
        topic,
        event,
        payload: Payload::Binary(Bytes::copy_from_slice(body)),
    })
}
