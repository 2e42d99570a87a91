//! Controllers: thin translations between HTTP and the contexts.
//!
//! Each reads the request, calls one context function, and shapes the response. Business
//! rules and queries live in the contexts.

pub(crate) mod conversations;
pub(crate) mod dev;
pub(crate) mod health;
pub(crate) mod rooms;
pub(crate) mod sessions;
pub(crate) mod socket_tokens;
pub(crate) mod users;

use serde_json::Value;

use super::error::ApiError;
use super::request::bearer_token;
use crate::accounts::AccessClaims;
use crate::app::App;

/// The caller's token claims; records the user id in the request's span.
pub(crate) fn authenticate<B>(
    app: &App,
    request: &http::Request<B>,
) -> Result<AccessClaims, ApiError> {
    let token = bearer_token(request).ok_or(ApiError::Unauthorized)?;
    let claims = app.accounts.authenticate(token)?;
    tracing::Span::current().record("user_id", claims.user_id);
    Ok(claims)
}

/// The object under `key` in a JSON body, e.g. `{"user": {...}}`.
pub(crate) fn envelope<'a>(body: &'a Value, key: &str) -> Result<&'a Value, ApiError> {
    body.get(key).filter(|v| v.is_object()).ok_or_else(|| {
        ApiError::BadRequest(format!("expected a JSON object with a \"{key}\" object"))
    })
}
