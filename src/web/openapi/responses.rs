//! The error responses, one component each: the bodies [`ApiError`](crate::web::error::ApiError)
//! and [`normalize`](crate::web::error::normalize) send, with the headers that come with them.

// Described, never constructed.
#![allow(dead_code)]

use utoipa::ToResponse;

use super::schemas::{ErrorBody, UnavailableBody, ValidationBody};

/// The request is malformed: unparsable JSON, a missing `{"user": {...}}` envelope, a room
/// name that is not UTF-8 once percent-decoded.
#[derive(ToResponse)]
pub(crate) struct BadRequest(ErrorBody);

/// No valid credentials: the bearer token is missing, garbled, forged, expired or revoked (or
/// its user is gone); on login, a wrong e-mail address or password.
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "`Bearer`")))]
pub(crate) struct Unauthorized(ErrorBody);

/// Authenticated, but this is someone else's account.
#[derive(ToResponse)]
pub(crate) struct Forbidden(ErrorBody);

/// No such resource, or not one the caller may see (a conversation they are not in, a
/// non-numeric id).
#[derive(ToResponse)]
pub(crate) struct NotFound(ErrorBody);

/// The path exists but not with this method; `Allow` lists the methods it has.
#[derive(ToResponse)]
#[response(headers(("Allow" = String, description = "The path's methods, e.g. `GET, POST`")))]
pub(crate) struct MethodNotAllowed(ErrorBody);

/// The request took longer than `http.request_timeout_secs`.
#[derive(ToResponse)]
pub(crate) struct RequestTimeout(ErrorBody);

/// The body is larger than `http.body_limit_bytes`.
#[derive(ToResponse)]
pub(crate) struct PayloadTooLarge(ErrorBody);

/// The body is not JSON (`Content-Type` is not `application/json` or `application/*+json`).
#[derive(ToResponse)]
pub(crate) struct UnsupportedMediaType(ErrorBody);

/// The request is well-formed but its values are not acceptable: every problem, by field.
#[derive(ToResponse)]
pub(crate) struct UnprocessableEntity(ValidationBody);

/// Over a rate limit (`rate_limit.*`): retry after the time given.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait, at least 1")))]
pub(crate) struct TooManyRequests(ErrorBody);

/// A server failure (logged, never detailed in the body).
#[derive(ToResponse)]
pub(crate) struct InternalServerError(ErrorBody);

/// Not ready or not live: the node is draining (`/ready` then adds `"status": "draining"`
/// beside `errors`), the runtime has stopped, or the database does not answer.
#[derive(ToResponse)]
pub(crate) struct ServiceUnavailable(UnavailableBody);
