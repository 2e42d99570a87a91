//! Message payloads, and how they turn into and out of the application's own types.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

/// A message payload: JSON (text frames) or raw bytes (binary frames).
///
/// Client payloads arrive as [`Payload::Json`] (text frames) or [`Payload::Binary`] (V2 binary
/// frames). Decode one into your own type with [`Payload::decode`]; build one from your own
/// type with [`Payload::json`] (or [`Payload::encode`], serialized once up front).
///
/// ```
/// use fawkes_runtime::Payload;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Move { x: i32, y: i32 }
///
/// let payload = Payload::json(&Move { x: 3, y: 4 })?;
/// assert_eq!(payload.decode::<Move>()?, Move { x: 3, y: 4 });
/// // The wrong shape is an error, not a panic: client payloads are untrusted.
/// assert!(Payload::from(serde_json::json!({"x": "left"})).decode::<Move>().is_err());
/// # Ok::<(), fawkes_runtime::PayloadError>(())
/// ```
///
/// Two payloads are equal when they are the same variant with equal contents (pre-encoded
/// JSON compares by its text).
#[derive(Debug, Clone)]
pub enum Payload {
    /// Any JSON value (by convention an object).
    Json(Value),
    /// Raw bytes from, or for, a binary frame.
    Binary(Bytes),
    /// JSON already serialized (outbound): written into frames as is, so a large payload sent
    /// to many clients is serialized once and its bytes shared. Valid JSON by construction
    /// ([`RawValue`] is checked when it is made): build one with [`Payload::encode`],
    /// [`Payload::from_encoded`], or from a `Box<RawValue>`.
    Encoded(Arc<RawValue>),
}

/// Why a payload could not be decoded into, or encoded from, a type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload is raw bytes (a binary frame), not JSON.
    #[error("the payload is binary, not JSON")]
    Binary,
    /// The JSON does not have the shape of the type asked for (or is not JSON at all).
    #[error("the payload does not decode: {0}")]
    Decode(#[source] serde_json::Error),
    /// The value could not be serialized as JSON (a map with non-string keys, a failing
    /// `Serialize` implementation).
    #[error("the value does not encode as JSON: {0}")]
    Encode(#[source] serde_json::Error),
}

impl Payload {
    /// The empty object `{}`.
    pub fn empty() -> Self {
        Payload::Json(Value::Object(Default::default()))
    }

    /// `value` as a JSON payload ([`Payload::Json`]): what [`Payload::as_json`] and a
    /// channel's `handle_out` see as is.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        serde_json::to_value(value)
            .map(Payload::Json)
            .map_err(PayloadError::Encode)
    }

    /// `value` serialized now, once ([`Payload::Encoded`]): no JSON tree is built, and every
    /// frame carrying it copies its text as is. For large payloads sent to many clients.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        serde_json::value::to_raw_value(value)
            .map(|raw| Payload::Encoded(raw.into()))
            .map_err(PayloadError::Encode)
    }

    /// JSON text serialized elsewhere (a cache, a database column), checked once here:
    /// [`PayloadError::Decode`] if it is not valid JSON.
    pub fn from_encoded(text: impl Into<String>) -> Result<Self, PayloadError> {
        RawValue::from_string(text.into())
            .map(|raw| Payload::Encoded(raw.into()))
            .map_err(PayloadError::Decode)
    }

    /// Decodes the payload into `T` (any serde type; a [`Value`] takes any JSON).
    /// [`PayloadError::Binary`] for bytes, [`PayloadError::Decode`] for JSON of another shape.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        match self {
            Payload::Json(value) => T::deserialize(value).map_err(PayloadError::Decode),
            Payload::Encoded(raw) => serde_json::from_str(raw.get()).map_err(PayloadError::Decode),
            Payload::Binary(_) => Err(PayloadError::Binary),
        }
    }

    /// The JSON value, if this is [`Payload::Json`] (`None` for bytes and for pre-encoded
    /// JSON: [`Payload::decode`] reads both JSON forms).
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            Payload::Json(v) => Some(v),
            Payload::Binary(_) | Payload::Encoded(_) => None,
        }
    }

    /// The bytes, if this is [`Payload::Binary`].
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Payload::Binary(bytes) => Some(bytes),
            Payload::Json(_) | Payload::Encoded(_) => None,
        }
    }
}

/// `{}`, pre-encoded (shared: no allocation per call).
pub(crate) fn empty_object() -> Arc<RawValue> {
    static EMPTY: std::sync::LazyLock<Arc<RawValue>> = std::sync::LazyLock::new(|| {
        Arc::from(RawValue::from_string("{}".to_owned()).expect("`{}` is JSON"))
    });
    EMPTY.clone()
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Payload::Json(a), Payload::Json(b)) => a == b,
            (Payload::Binary(a), Payload::Binary(b)) => a == b,
            (Payload::Encoded(a), Payload::Encoded(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl From<Value> for Payload {
    fn from(v: Value) -> Self {
        Payload::Json(v)
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Payload::Binary(bytes)
    }
}

impl From<Box<RawValue>> for Payload {
    fn from(raw: Box<RawValue>) -> Self {
        Payload::Encoded(raw.into())
    }
}

impl From<Arc<RawValue>> for Payload {
    fn from(raw: Arc<RawValue>) -> Self {
        Payload::Encoded(raw)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Cursor {
        x: i32,
        name: String,
    }

    #[test]
    fn every_json_form_decodes_and_bytes_or_the_wrong_shape_are_errors() {
        let cursor = Cursor {
            x: 7,
            name: "ü".into(),
        };
        let json = Payload::json(&cursor).expect("encodes");
        assert_eq!(json, Payload::Json(json!({"x": 7, "name": "ü"})));
        let encoded = Payload::encode(&cursor).expect("encodes");
        let Payload::Encoded(raw) = &encoded else {
            panic!("pre-encoded: {encoded:?}")
        };
        assert_eq!(raw.get(), r#"{"x":7,"name":"ü"}"#);
        for payload in [&json, &encoded] {
            assert_eq!(payload.decode::<Cursor>().expect("decodes"), cursor);
            assert_eq!(
                payload.decode::<Value>().expect("any JSON"),
                json!({"x": 7, "name": "ü"})
            );
        }
        assert!(matches!(
            Payload::Binary(Bytes::from_static(b"\x01")).decode::<Value>(),
            Err(PayloadError::Binary)
        ));
        let error = Payload::from(json!({"x": "seven"}))
            .decode::<Cursor>()
            .expect_err("wrong shape");
        assert!(matches!(error, PayloadError::Decode(_)));
        assert!(error.to_string().starts_with("the payload does not decode"));
    }

    #[test]
    fn pre_encoded_json_is_checked_when_it_is_made() {
        assert!(matches!(
            Payload::from_encoded("{\"a\":"),
            Err(PayloadError::Decode(_))
        ));
        let ok = Payload::from_encoded(" [1, 2] ").expect("valid JSON");
        assert_eq!(ok.decode::<Vec<u8>>().expect("decodes"), vec![1, 2]);
        // A map whose keys are not strings is not JSON.
        let map = std::collections::HashMap::from([((1, 2), 3)]);
        assert!(matches!(Payload::json(&map), Err(PayloadError::Encode(_))));
        assert!(matches!(
            Payload::encode(&map),
            Err(PayloadError::Encode(_))
        ));
    }
}
