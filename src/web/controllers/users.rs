//! `/api/v1/users` and `/api/v1/me`. A user's e-mail address (and record times) are shown
//! only to that user; everyone else sees id, name, subname and job.

use bytes::Bytes;
use http::header::LOCATION;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use super::{authenticate, envelope};
use crate::accounts::{AccountsError, MAX_PAGE};
use crate::app::App;
use crate::web::error::ApiError;
use crate::web::openapi::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, TooManyRequests, Unauthorized,
    UnprocessableEntity, UnsupportedMediaType,
};
use crate::web::openapi::schemas::{
    RegisterRequest, RegisteredData, UpdateRequest, UserData, UserPage, UserPageQuery, UserViewData,
};
use crate::web::request::{PageQuery, PeerAddr, json_body, path_id};
use crate::web::response::{self, Response};
use crate::web::user_socket::{token_topic, user_socket_id};

/// Registers a user from `{"user": {...}}`: 201, `Location`, and the generated password once.
/// Limited per client address, every attempt counted, and for the whole node, valid requests
/// only (429 with `Retry-After`): invalid bodies cannot use up everyone's registrations.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "register",
    tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = RegisteredData,
            headers(("Location" = String, description = "`/api/v1/users/{id}`")),
            links(("GetUser" = (
                operation_id = "get_user",
                parameters(("id" = "$response.body#/data/id"))
            )))),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn create<B>(app: &App, request: http::Request<B>) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let peer = request.extensions().get::<PeerAddr>().copied();
    if let Some(peer) = peer {
        app.register_limiter
            .check_address(peer.client())
            .map_err(ApiError::TooManyRequests)?;
    }
    let body = json_body(request).await?;
    let registered = app
        .accounts
        .register_admitted(envelope(&body, "user")?, || match peer {
            Some(_) => app
                .register_limiter
                .check_node()
                .map_err(ApiError::TooManyRequests),
            None => Ok(()),
        })
        .await?;
    let id = registered.user.id;
    let mut data = json!(registered.user);
    if let Some(password) = registered.generated_password {
        data["password"] = json!(password);
    }
    let mut response = response::json(StatusCode::CREATED, &json!({ "data": data }));
    response.headers_mut().insert(
        LOCATION,
        HeaderValue::try_from(format!("/api/v1/users/{id}"))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(response)
}

/// Lists users in id order: `?limit=1..100&after=CURSOR` → `{"data", "meta": {"next"}}`.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "list_users",
    tag = "users",
    params(UserPageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 401, response = Unauthorized),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn index<B>(app: &App, request: http::Request<B>) -> Result<Response, ApiError> {
    let viewer = authenticate(app, &request)?.user_id;
    let mut page_query = PageQuery::new(&request);
    let (limit, after) = (page_query.limit(MAX_PAGE), page_query.cursor("after"));
    page_query.finish()?;
    let page = app.accounts.list_users(after, limit).await?;
    let users: Vec<_> = page.users.into_iter().map(|u| u.shown_to(viewer)).collect();
    Ok(response::json(
        StatusCode::OK,
        &json!({ "data": users, "meta": { "next": page.next.map(|id| id.to_string()) } }),
    ))
}

/// One user.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    operation_id = "get_user",
    tag = "users",
    params(("id" = i64, Path, description = "User id", example = 1)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user (their e-mail address only to themself)",
            body = UserViewData),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn show<B>(
    app: &App,
    request: http::Request<B>,
    id: &str,
) -> Result<Response, ApiError> {
    let viewer = authenticate(app, &request)?.user_id;
    let user = app.accounts.get_user(path_id(id)?).await?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "data": user.shown_to(viewer) }),
    ))
}

/// The caller. A valid token whose user is gone is treated as unauthenticated.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserData),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn me<B>(app: &App, request: http::Request<B>) -> Result<Response, ApiError> {
    let claims = authenticate(app, &request)?;
    let user = match app.accounts.get_user(claims.user_id).await {
        Err(AccountsError::NotFound) => return Err(ApiError::Unauthorized),
        other => other?,
    };
    Ok(response::json(StatusCode::OK, &json!({ "data": user })))
}

/// Changes the caller's own profile from `{"user": {...}}`; anyone else's → 403. A new
/// `password` or `email` needs `current_password` (its check counts as a login attempt for the
/// rate limits) and revokes every other token of the user, closing their sockets; the
/// addresses known from correct logins as the user's (exempt from the login lockout) are
/// forgotten.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    operation_id = "update_user",
    tag = "users",
    params(("id" = i64, Path, description = "User id: the caller's own", example = 1)),
    request_body = UpdateRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user as it is now", body = UserData),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn update<B>(
    app: &App,
    request: http::Request<B>,
    id: &str,
) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let claims = authenticate(app, &request)?;
    let id = path_id(id)?;
    let peer = request.extensions().get::<PeerAddr>().copied();
    let body = json_body(request).await?;
    let input = envelope(&body, "user")?;
    if let Some(peer) = peer
        && id == claims.user_id
        && input.get("current_password").is_some_and(|p| !p.is_null())
    {
        let me = app.accounts.get_user(id).await?;
        app.login_limiter
            .check(peer.client(), &me.email)
            .map_err(ApiError::TooManyRequests)?;
    }
    let updated = app
        .accounts
        .update_user(claims.user_id, id, input, &claims)
        .await?;
    if updated.sessions_revoked {
        // The user's other sessions' sockets close (1001; their tokens are revoked, so they
        // are refused on reconnect); the presenting session's stay open, on every node.
        app.pubsub
            .disconnect_except(&user_socket_id(id), &token_topic(&claims.jti));
        // The addresses that logged in with the old credentials are no longer the owner's
        // usual ones as far as the login lockout knows.
        app.login_limiter.forget(&updated.previous_email);
        app.login_limiter.forget(&updated.user.email);
    }
    Ok(response::json(
        StatusCode::OK,
        &json!({ "data": updated.user }),
    ))
}

/// Deletes the caller's own account (revoking all its tokens and closing all its sockets);
/// anyone else's → 403.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    operation_id = "delete_user",
    tag = "users",
    params(("id" = i64, Path, description = "User id: the caller's own", example = 1)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; every token of the user is revoked"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn delete<B>(
    app: &App,
    request: http::Request<B>,
    id: &str,
) -> Result<Response, ApiError> {
    let claims = authenticate(app, &request)?;
    app.accounts
        .delete_user(claims.user_id, path_id(id)?)
        .await?;
    app.pubsub.disconnect(&user_socket_id(claims.user_id));
    Ok(response::no_content())
}
