//! Reading requests: JSON bodies, bearer tokens, query strings, path ids.

use std::collections::HashMap;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http_body_util::BodyExt as _;
use serde_json::Value;

use super::error::ApiError;

pub use crate::runtime::PeerAddr;

/// Reads the body as a JSON value. Not JSON content type → 415; over the body limit → 413;
/// unparsable → 400.
pub async fn json_body<B>(request: http::Request<B>) -> Result<Value, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = request
        .into_body()
        .collect()
        .await
        .map_err(|e| {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("could not read the request body".to_owned())
            }
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token<B>(request: &http::Request<B>) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The query string's parameters (the last value of a repeated key wins).
pub fn query<B>(request: &http::Request<B>) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// A numeric path id; anything else names no resource (404).
pub fn path_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// Page size when a list request names no `limit`.
pub const DEFAULT_PAGE: u64 = 50;

/// A list request's query parameters, read with one rule set and collecting a field error for
/// each bad value: an empty value counts as absent, a cursor is a non-negative integer, and a
/// `limit` is an integer in `1..=max` (default [`DEFAULT_PAGE`]).
pub struct PageQuery {
    params: HashMap<String, String>,
    errors: crate::accounts::FieldErrors,
}

impl PageQuery {
    /// Reads `request`'s query string.
    pub fn new<B>(request: &http::Request<B>) -> Self {
        Self {
            params: query(request),
            errors: crate::accounts::FieldErrors::default(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The id cursor `name` (`after`, `before`), if given.
    pub fn cursor(&mut self, name: &str) -> Option<i64> {
        match self.get(name).map(str::parse::<i64>) {
            None => None,
            Some(Ok(n)) if n >= 0 => Some(n),
            Some(_) => {
                self.errors.add(name, "is invalid");
                None
            }
        }
    }

    /// `limit`, in `1..=max`.
    pub fn limit(&mut self, max: u64) -> u64 {
        match self.get("limit").map(str::parse::<u64>) {
            None => DEFAULT_PAGE.min(max),
            Some(Ok(n)) if (1..=max).contains(&n) => n,
            Some(_) => {
                self.errors
                    .add("limit", format!("must be an integer from 1 to {max}"));
                DEFAULT_PAGE.min(max)
            }
        }
    }

    /// Every bad value as one 422, or nothing.
    pub fn finish(self) -> Result<(), ApiError> {
        self.errors.into_result().map_err(ApiError::Validation)
    }
}
