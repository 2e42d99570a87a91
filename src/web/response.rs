//! Building responses.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Full};
use serde::Serialize;

/// The body type handlers produce.
pub type Body = Full<Bytes>;
/// A handler's response.
pub type Response = http::Response<Body>;
/// The body type the server sends (any middleware's body, boxed).
pub type BoxBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The JSON content type.
pub const JSON: &str = "application/json; charset=utf-8";

/// `value` as a JSON response with `status`.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    // Serializing our own response types cannot fail; fall back to an empty object if it did.
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

/// An empty `204 No Content`.
pub fn no_content() -> Response {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// `bytes` as a boxed body.
pub fn boxed(bytes: Bytes) -> BoxBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}
