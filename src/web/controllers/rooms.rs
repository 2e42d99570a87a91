//! `POST /api/v1/rooms/{name}/messages`: post into a room from REST; WebSocket members of
//! `room:<name>` receive it as `message:new`, exactly as if sent over the channel.
//!
//! `{name}` is percent-decoded (UTF-8), so `/rooms/caf%C3%A9/messages` reaches `room:café`.
//! Only topics the `room:*` channel serves can be posted to: a name whose topic belongs to
//! another channel (`room:chat`) answers 404, by the socket's own first-match rule
//! ([`channel_for`]).

use bytes::Bytes;
use http::StatusCode;
use percent_encoding::percent_decode_str;
use serde_json::json;

use super::authenticate;
use crate::app::App;
use crate::rooms;
use crate::web::error::ApiError;
use crate::web::openapi::responses::{
    BadRequest, NotFound, PayloadTooLarge, TooManyRequests, Unauthorized, UnprocessableEntity,
    UnsupportedMediaType,
};
use crate::web::openapi::schemas::{RoomMessageData, RoomMessageRequest};
use crate::web::request::json_body;
use crate::web::response::{self, Response};
use crate::web::user_socket::{AppChannel, channel_for};

/// Publishes `{"body"}` to `room:<name>` as `message:new`.
#[utoipa::path(
    post,
    path = "/api/v1/rooms/{name}/messages",
    operation_id = "post_room_message",
    tag = "rooms",
    params(("name" = String, Path, description = "The room: `room:<name>` (percent-decoded UTF-8; \
        at most `socket.transport.max_topic_bytes` bytes with the `room:` prefix)", example = "lobby")),
    request_body = RoomMessageRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Published", body = RoomMessageData),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn post_message<B>(
    app: &App,
    request: http::Request<B>,
    raw_name: &str,
) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let claims = authenticate(app, &request)?;
    let topic = room_topic(raw_name, app.config.socket.transport.max_topic_bytes)?;
    let body = json_body(request).await?;
    let text = rooms::validate_message(&body).map_err(ApiError::Validation)?;
    let payload = rooms::message_payload(claims.user_id, &text);
    app.pubsub
        .broadcast(&topic, rooms::MESSAGE_EVENT, payload.clone());
    Ok(response::json(
        StatusCode::ACCEPTED,
        &json!({ "data": { "topic": topic, "event": rooms::MESSAGE_EVENT, "payload": payload } }),
    ))
}

/// The topic for the raw (percent-encoded) path segment `raw_name`: 400 if it does not decode
/// to UTF-8, 422 if longer than `max_topic_bytes`, 404 if the `room:*` channel does not serve it.
fn room_topic(raw_name: &str, max_topic_bytes: usize) -> Result<String, ApiError> {
    let name = percent_decode_str(raw_name).decode_utf8().map_err(|_| {
        ApiError::BadRequest("the room name is not UTF-8 once percent-decoded".to_owned())
    })?;
    let topic = rooms::checked_topic(&name, max_topic_bytes).map_err(ApiError::Validation)?;
    if channel_for(&topic) != Some(AppChannel::Room) {
        return Err(ApiError::NotFound);
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_decoded_and_checked() {
        assert_eq!(
            room_topic("caf%C3%A9%20au%20lait", 255).ok(),
            Some("room:café au lait".to_owned())
        );
        assert_eq!(
            room_topic("a%2Fb+c", 255).ok(),
            Some("room:a/b+c".to_owned())
        );
        assert!(matches!(
            room_topic("%FF%FE", 255),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(room_topic("chat", 255), Err(ApiError::NotFound)));
        assert!(matches!(room_topic("ch%61t", 255), Err(ApiError::NotFound)));
        assert!(matches!(
            room_topic(&"%C3%A9".repeat(126), 255),
            Err(ApiError::Validation(_))
        ));
    }
}
