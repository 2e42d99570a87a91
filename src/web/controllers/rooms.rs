//! `POST /api/v1/rooms/{name}/messages`: post into a room from REST; WebSocket members of
//! `room:<name>` receive it as `message:new`, exactly as if sent over the channel.

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use super::authenticate;
use crate::app::App;
use crate::rooms;
use crate::web::error::ApiError;
use crate::web::request::json_body;
use crate::web::response::{self, Response};

pub(crate) async fn post_message<B>(
    app: &App,
    request: http::Request<B>,
    room: &str,
) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let claims = authenticate(app, &request)?;
    let body = json_body(request).await?;
    let text = rooms::validate_message(&body).map_err(ApiError::Validation)?;
    let topic = rooms::topic(room);
    let payload = rooms::message_payload(claims.user_id, &text);
    app.pubsub
        .broadcast(&topic, rooms::MESSAGE_EVENT, payload.clone());
    Ok(response::json(
        StatusCode::ACCEPTED,
        &json!({ "data": { "topic": topic, "event": rooms::MESSAGE_EVENT, "payload": payload } }),
    ))
}
