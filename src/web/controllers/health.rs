//! `GET /health` (liveness: the realtime runtime is up) and `GET /ready` (the node is not
//! draining, the runtime is up and the database answers).

use http::StatusCode;
use serde_json::json;

use crate::app::App;
use crate::web::error::ApiError;
use crate::web::openapi::responses::ServiceUnavailable;
use crate::web::openapi::schemas::{Health, Ready};
use crate::web::response::{self, Response};

/// 200 while the runtime's supervision tree runs; 503 once its root supervisor has given up
/// (the process should be restarted: the binary exits by itself).
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "probes",
    responses(
        (status = 200, description = "Live", body = Health),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) fn live(app: &App) -> Result<Response, ApiError> {
    runtime_up(app)?;
    Ok(response::json(StatusCode::OK, &json!({ "status": "ok" })))
}

/// 200 when the node takes traffic; 503 from the instant a shutdown begins (`"status":
/// "draining"`), so that a load balancer sends it nothing new, or when the runtime is down or
/// the database unreachable.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "probes",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn ready(app: &App) -> Result<Response, ApiError> {
    if app.runtime.is_draining() {
        return Ok(response::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "draining",
                "errors": { "detail": "Service Unavailable: this node is draining" },
            }),
        ));
    }
    runtime_up(app)?;
    match app.db.ping().await {
        Ok(()) => Ok(response::json(
            StatusCode::OK,
            &json!({
                "status": "ok",
                "database": "ok",
                "realtime": "ok",
                "pubsub": pubsub(app),
            }),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            Err(ApiError::Unavailable)
        }
    }
}

/// The cluster link as `/ready` reports it. A link that is down does not fail readiness: the
/// node still serves its own clients, and chat history is in the database.
fn pubsub(app: &App) -> serde_json::Value {
    let stats = app.pubsub.cluster_stats();
    json!({
        "adapter": app.config.pubsub.adapter,
        "node": stats.node,
        "state": stats.state,
        "members": stats.members,
    })
}

fn runtime_up(app: &App) -> Result<(), ApiError> {
    let health = app.runtime.health();
    if health.is_up() {
        return Ok(());
    }
    tracing::warn!(?health, "health check: the realtime runtime is not up");
    Err(ApiError::Unavailable)
}
