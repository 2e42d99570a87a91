//! `GET /health` (liveness) and `GET /ready` (the database answers).

use http::StatusCode;
use serde_json::json;

use crate::app::App;
use crate::web::error::ApiError;
use crate::web::response::{self, Response};

pub(crate) fn live() -> Response {
    response::json(StatusCode::OK, &json!({ "status": "ok" }))
}

pub(crate) async fn ready(app: &App) -> Result<Response, ApiError> {
    match app.db.ping().await {
        Ok(()) => Ok(response::json(
            StatusCode::OK,
            &json!({ "status": "ok", "database": "ok" }),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            Err(ApiError::Unavailable)
        }
    }
}
