//! `/api/v1/conversations`: open, list and read conversations, read and post messages.
//! Conversations the caller is not in answer 404, as if they did not exist.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::authenticate;
use crate::accounts::FieldErrors;
use crate::app::App;
use crate::chat::{ChatError, MAX_HISTORY};
use crate::web::channels::chat::deliver;
use crate::web::error::ApiError;
use crate::web::openapi::responses::{
    BadRequest, NotFound, PayloadTooLarge, TooManyRequests, Unauthorized, UnprocessableEntity,
    UnsupportedMediaType,
};
use crate::web::openapi::schemas::{
    ConversationData, ConversationList, HistoryQuery, MessageCreated, MessagePage,
    OpenConversationRequest, PostMessageRequest,
};
use crate::web::request::{PageQuery, json_body, path_id};
use crate::web::response::{self, Response};

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Invalid(errors) => ApiError::Validation(errors),
            ChatError::NotFound => ApiError::NotFound,
            // Only `room:chat` names a recipient; REST never gets here.
            ChatError::WrongRecipient => ApiError::NotFound,
            ChatError::Database(e) => ApiError::Internal(format!("database: {e}")),
        }
    }
}

/// `POST /api/v1/conversations` `{"recipient_id"}` → 201, or 200 if it existed.
#[utoipa::path(
    post,
    path = "/api/v1/conversations",
    operation_id = "open_conversation",
    tag = "conversations",
    request_body = OpenConversationRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "It existed already", body = ConversationData,
            links(
                ("GetConversation" = (
                    operation_id = "get_conversation",
                    parameters(("id" = "$response.body#/data/id"))
                )),
                ("ListMessages" = (
                    operation_id = "list_messages",
                    parameters(("id" = "$response.body#/data/id"))
                )),
                ("PostMessage" = (
                    operation_id = "post_message",
                    parameters(("id" = "$response.body#/data/id"))
                ))
            )),
        (status = 201, description = "Opened", body = ConversationData,
            links(
                ("GetConversation" = (
                    operation_id = "get_conversation",
                    parameters(("id" = "$response.body#/data/id"))
                )),
                ("ListMessages" = (
                    operation_id = "list_messages",
                    parameters(("id" = "$response.body#/data/id"))
                )),
                ("PostMessage" = (
                    operation_id = "post_message",
                    parameters(("id" = "$response.body#/data/id"))
                ))
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn open<B>(app: &App, request: http::Request<B>) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let claims = authenticate(app, &request)?;
    let body = json_body(request).await?;
    let Some(recipient) = body.get("recipient_id").and_then(Value::as_i64) else {
        return Err(ApiError::Validation(FieldErrors::single(
            "recipient_id",
            "is invalid",
        )));
    };
    let (conversation, created) = app
        .chat
        .open_conversation(claims.user_id, recipient)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(response::json(status, &json!({ "data": conversation })))
}

/// `GET /api/v1/conversations`: the caller's, most recent activity first.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    operation_id = "list_conversations",
    tag = "conversations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's conversations", body = ConversationList),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn index<B>(app: &App, request: http::Request<B>) -> Result<Response, ApiError> {
    let claims = authenticate(app, &request)?;
    let conversations = app.chat.list_conversations(claims.user_id).await?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "data": conversations }),
    ))
}

/// `GET /api/v1/conversations/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}",
    operation_id = "get_conversation",
    tag = "conversations",
    params(("id" = i64, Path, description = "Conversation id", example = 1)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation", body = ConversationData),
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
    let claims = authenticate(app, &request)?;
    let conversation = app
        .chat
        .get_conversation(claims.user_id, path_id(id)?)
        .await?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "data": conversation }),
    ))
}

/// `GET /api/v1/conversations/{id}/messages?before=&after=&limit=`.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    operation_id = "list_messages",
    tag = "conversations",
    params(("id" = i64, Path, description = "Conversation id", example = 1), HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of history", body = MessagePage),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn messages<B>(
    app: &App,
    request: http::Request<B>,
    id: &str,
) -> Result<Response, ApiError> {
    let claims = authenticate(app, &request)?;
    let id = path_id(id)?;
    let mut page_query = PageQuery::new(&request);
    let before = page_query.cursor("before");
    let after = page_query.cursor("after");
    let limit = page_query.limit(MAX_HISTORY);
    page_query.finish()?;
    let history = app
        .chat
        .history(claims.user_id, id, before, after, limit)
        .await?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "data": history.messages, "meta": { "has_more": history.has_more } }),
    ))
}

/// `POST /api/v1/conversations/{id}/messages` `{"content"}` → 201 with `meta.delivered`; once
/// committed, delivered live like a `room:chat` message (see [`deliver`]).
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages",
    operation_id = "post_message",
    tag = "conversations",
    params(("id" = i64, Path, description = "Conversation id", example = 1)),
    request_body = PostMessageRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored, then delivered", body = MessageCreated,
            links(("ListMessages" = (
                operation_id = "list_messages",
                parameters(("id" = "$response.body#/data/conversation_id"))
            )))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
    )
)]
pub(crate) async fn post<B>(
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
    let body = json_body(request).await?;
    let (conversation, message) = app.chat.post_message(claims.user_id, id, &body).await?;
    let delivered = deliver(&app.pubsub, &app.registry, &conversation, &message).await;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({ "data": message, "meta": { "delivered": delivered } }),
    ))
}
