//! `POST /api/v1/socket_tokens`: a short-lived token for connecting the app socket, so that a
//! browser need not put its access token in a WebSocket URL. See
//! [`Accounts::issue_socket_token`](crate::accounts::Accounts::issue_socket_token).

use http::StatusCode;
use serde_json::json;

use super::authenticate;
use crate::app::App;
use crate::web::error::ApiError;
use crate::web::openapi::responses::{TooManyRequests, Unauthorized};
use crate::web::openapi::schemas::SocketTokenData;
use crate::web::response::{self, Response};

/// → 201 `{"data": {"token", "issued_at", "expires_at"}}`, for the caller's session (bearer token).
#[utoipa::path(
    post,
    path = "/api/v1/socket_tokens",
    operation_id = "create_socket_token",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "A socket token for the caller's session",
            body = SocketTokenData),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn create<B>(app: &App, request: http::Request<B>) -> Result<Response, ApiError> {
    let claims = authenticate(app, &request)?;
    let token = app.accounts.issue_socket_token(&claims)?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({ "data": token }),
    ))
}
