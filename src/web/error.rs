//! The one place that turns failures into HTTP responses.
//!
//! Every error the API returns has a JSON body: `{"errors": {"detail": "…"}}`, or for
//! validation `{"errors": {"field": ["message", …]}}`. Middleware that answers on its own
//! (body limit, timeout, CORS) is passed through [`normalize`], so no error response is ever
//! HTML, plain text or empty.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::json;

use super::response::{self, BoxBody, Response};
use crate::accounts::{AccountsError, FieldErrors};

/// An API failure, mapped to a status and a JSON body by [`ApiError::into_response`].
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, missing envelope).
    BadRequest(String),
    /// 401: no valid credentials (missing, garbled, forged, expired or revoked token).
    Unauthorized,
    /// 401: wrong e-mail or password.
    InvalidCredentials,
    /// 403: authenticated, but not allowed.
    Forbidden,
    /// 404.
    NotFound,
    /// 405, with the methods the path does allow.
    MethodNotAllowed(&'static str),
    /// 413.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 422: per-field validation messages.
    Validation(FieldErrors),
    /// 429, with how long to wait.
    TooManyRequests(Duration),
    /// 503.
    Unavailable,
    /// 500. The message is logged, never sent.
    Internal(String),
}

impl ApiError {
    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response for this error.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Validation(errors) => json!({ "errors": errors }),
            ApiError::BadRequest(detail) => json!({ "errors": { "detail": detail } }),
            ApiError::InvalidCredentials => {
                json!({ "errors": { "detail": "Invalid e-mail or password" } })
            }
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                detail_body(status)
            }
            _ => detail_body(status),
        };
        let mut response = response::json(status, &body);
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized | ApiError::InvalidCredentials => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed(allow) => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::TooManyRequests(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        response
    }
}

fn detail_body(status: StatusCode) -> serde_json::Value {
    json!({ "errors": { "detail": status.canonical_reason().unwrap_or("Error") } })
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        match e {
            AccountsError::Invalid(errors) => ApiError::Validation(errors),
            AccountsError::InvalidCredentials => ApiError::InvalidCredentials,
            AccountsError::Unauthenticated => ApiError::Unauthorized,
            AccountsError::Forbidden => ApiError::Forbidden,
            AccountsError::NotFound => ApiError::NotFound,
            AccountsError::Database(e) => ApiError::Internal(format!("database: {e}")),
            AccountsError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

/// Gives middleware-made error responses (413 from the body limit, 408 from the timeout, …)
/// the standard JSON body, and boxes every body into one type.
pub fn normalize<B>(response: http::Response<B>) -> http::Response<BoxBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (mut parts, _) = response.into_parts();
        let body = serde_json::to_vec(&detail_body(status)).unwrap_or_default();
        parts.headers.remove(CONTENT_LENGTH);
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(response::JSON));
        return http::Response::from_parts(parts, response::boxed(Bytes::from(body)));
    }
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}
