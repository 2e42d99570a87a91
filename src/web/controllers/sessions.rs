//! `POST /api/v1/sessions` (log in) and `DELETE /api/v1/sessions` (log out).

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::authenticate;
use crate::accounts::{AccountsError, FieldErrors};
use crate::app::App;
use crate::metrics::{self, LoginOutcome};
use crate::web::error::ApiError;
use crate::web::openapi::responses::{
    BadRequest, PayloadTooLarge, TooManyRequests, Unauthorized, UnprocessableEntity,
    UnsupportedMediaType,
};
use crate::web::openapi::schemas::{LoginRequest, SessionData};
use crate::web::request::{PeerAddr, json_body};
use crate::web::response::{self, Response};
use crate::web::user_socket::token_topic;

/// Accepts `{"email", "password"}` or the tutorial's `{"creds": {"email", "password"}}`.
/// Each attempt with an e-mail and a password counts in `fawkes_login_attempts_total{outcome}`.
#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    operation_id = "log_in",
    tag = "sessions",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = SessionData,
            headers(("Authorization" = String, description = "`Bearer <token>`"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
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
    let body = json_body(request).await?;
    let creds = body.get("creds").filter(|c| c.is_object()).unwrap_or(&body);
    let field = |name: &str| {
        creds
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (email, password) = (field("email"), field("password"));
    let (Some(email), Some(password)) = (email, password) else {
        let mut errors = FieldErrors::default();
        for (name, value) in [("email", email), ("password", password)] {
            if value.is_none() {
                errors.add(name, "can't be blank");
            }
        }
        return Err(ApiError::Validation(errors));
    };
    if let Some(peer) = peer
        && let Err(refused) = app.login_limiter.check_attempt(peer.client(), email)
    {
        metrics::login_attempt(if refused.locked {
            LoginOutcome::Locked
        } else {
            LoginOutcome::RateLimited
        });
        return Err(ApiError::TooManyRequests(refused.wait));
    }
    let session = app.accounts.login(email, password).await;
    metrics::login_attempt(match &session {
        Ok(_) => LoginOutcome::Ok,
        Err(AccountsError::InvalidCredentials) => LoginOutcome::Invalid,
        Err(_) => LoginOutcome::Error,
    });
    let session = session?;
    if let Some(peer) = peer {
        // Only a correct password gets here: from now on this address may log in as this
        // e-mail while others have it locked (see `rate_limit`).
        app.login_limiter.succeeded(peer.client(), email);
    }
    tracing::Span::current().record("user_id", session.user.id);
    let mut response = response::json(
        StatusCode::OK,
        &json!({ "data": {
            "user": session.user,
            "token": session.token,
            "expires_at": session.expires_at,
        }}),
    );
    let bearer = HeaderValue::try_from(format!("Bearer {}", session.token))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    response.headers_mut().insert(AUTHORIZATION, bearer);
    Ok(response)
}

/// Revokes the presented token and closes the sockets opened with it.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions",
    operation_id = "log_out",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out: the token is revoked"),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn delete<B>(app: &App, request: http::Request<B>) -> Result<Response, ApiError> {
    let claims = authenticate(app, &request)?;
    app.accounts.logout(&claims).await?;
    app.pubsub.disconnect(&token_topic(&claims.jti));
    Ok(response::no_content())
}
