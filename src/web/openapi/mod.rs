//! The API's OpenAPI 3.1 description, generated from the code ([utoipa]): each controller
//! carries its operation (`#[utoipa::path]`), the types it answers derive their schemas, and
//! [`ApiDoc`] gathers them. Served at `GET /api/openapi.json`.
//!
//! The development routes (`/dev/*`) are left out: they exist only in `dev`, answer only
//! loopback clients, and are no part of the API a client may rely on.

pub(crate) mod responses;
pub(crate) mod schemas;

use std::sync::LazyLock;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::controllers::{conversations, health, rooms, sessions, socket_tokens, users};
use super::error::ApiError;
use super::response::{self, Response};
use crate::accounts::FieldErrors;
use responses::{
    BadRequest, Forbidden, InternalServerError, MethodNotAllowed, NotFound, PayloadTooLarge,
    RequestTimeout, ServiceUnavailable, TooManyRequests, Unauthorized, UnprocessableEntity,
    UnsupportedMediaType,
};
use schemas::{Draining, ErrorBody, ErrorDetail, UnavailableBody, ValidationBody};

/// The name of the bearer-token security scheme operations refer to.
pub const BEARER: &str = "bearer";

/// The document's root: every operation, schema and reusable response.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fawkes",
        description = "The REST API of Fawkes, a Phoenix-Channels server. Every error has a JSON \
            body: `{\"errors\": {\"detail\": \"…\"}}`, or for a validation failure (422) \
            `{\"errors\": {\"field\": [\"message\", …]}}`. Every operation but the probes \
            (`/health`, `/ready`) may answer 429 with `Retry-After` \
            (`rate_limit.requests_per_ip_per_second`). A method a path does not have answers \
            405 with `Allow` (see `components.responses`); every operation may answer 408 (a \
            request over `http.request_timeout_secs`) and 500 (a server failure)."
    ),
    paths(
        health::live,
        health::ready,
        serve,
        users::create,
        users::index,
        users::show,
        users::update,
        users::delete,
        users::me,
        sessions::create,
        sessions::delete,
        socket_tokens::create,
        rooms::post_message,
        conversations::open,
        conversations::index,
        conversations::show,
        conversations::messages,
        conversations::post,
    ),
    components(
        schemas(
            ErrorBody,
            ErrorDetail,
            UnavailableBody,
            Draining,
            ValidationBody,
            FieldErrors
        ),
        responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        RequestTimeout,
        PayloadTooLarge,
        UnsupportedMediaType,
        UnprocessableEntity,
        TooManyRequests,
        InternalServerError,
        ServiceUnavailable,
        )
    ),
    modifiers(&BearerScheme, &EveryOperation),
    tags(
        (name = "probes", description = "Liveness and readiness, never rate limited"),
        (name = "meta", description = "This document"),
        (name = "users", description = "Registration, profiles"),
        (name = "sessions", description = "Access tokens and socket tokens"),
        (name = "rooms", description = "Posting into `room:*` channels"),
        (name = "conversations", description = "Two-person conversations and their history"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme: the access token from `POST /api/v1/sessions`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "The access token of `POST /api/v1/sessions` (socket tokens are refused here)"
                .to_owned(),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// Adds the answers any operation may give whatever it is (the request timeout's 408 and a
/// server failure's 500) to every operation, so that a client generated from the document
/// knows their bodies.
struct EveryOperation;

impl Modify for EveryOperation {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, RefOr};
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, name) in [("408", "RequestTimeout"), ("500", "InternalServerError")] {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

/// The document as JSON, built once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    // Our own document always serializes; an empty object would fail the API tests.
    Bytes::from(serde_json::to_vec(&ApiDoc::openapi()).unwrap_or_else(|_| b"{}".to_vec()))
});

/// The document as JSON.
pub fn document() -> Bytes {
    DOCUMENT.clone()
}

/// The OpenAPI 3.1 document describing this API.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses(
        (status = 200, description = "This document", content_type = "application/json",
            body = Object),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) fn serve() -> Result<Response, ApiError> {
    let mut response = http::Response::new(Full::new(document()));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(response::JSON));
    Ok(response)
}
