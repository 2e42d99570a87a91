//! Shapes the document describes that have no Rust type of their own in the server: request
//! bodies the controllers read field by field, the `{"data": …, "meta": …}` envelopes they
//! build with `json!`, and the query parameters of list requests. Never built: they exist only
//! to be described (the API tests and the schemathesis run in CI hold them to the server's
//! real bodies).

// Described, never constructed or read.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{SocketToken, User, UserView};
use crate::chat::{Conversation, Message};

/// `{"user": {...}}`: a registration.
#[derive(Serialize, ToSchema)]
pub(crate) struct RegisterRequest {
    user: RegisterUser,
}

/// The new user's profile. Text is trimmed; unknown fields are ignored.
#[derive(Serialize, ToSchema)]
pub(crate) struct RegisterUser {
    /// Given name, 1..100 characters.
    #[schema(min_length = 1, max_length = 100, example = "Ada")]
    name: String,
    /// Family name, 1..100 characters.
    #[schema(min_length = 1, max_length = 100, example = "Lovelace")]
    subname: String,
    /// E-mail address (unique, case-insensitively), at most 160 characters.
    #[schema(
        min_length = 1,
        max_length = 160,
        format = "email",
        example = "ada@example.com"
    )]
    email: String,
    /// Job title, 1..100 characters.
    #[schema(min_length = 1, max_length = 100, example = "Analyst")]
    job: String,
    /// 12..128 characters. Without one the server generates a password and answers it once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 12, max_length = 128)]
    password: Option<String>,
}

/// `{"user": {...}}`: a profile change; only the fields given change.
#[derive(Serialize, ToSchema)]
pub(crate) struct UpdateRequest {
    user: UpdateUser,
}

/// The fields to change. A new `password` or `email` needs `current_password`.
#[derive(Serialize, ToSchema)]
pub(crate) struct UpdateUser {
    /// Given name, 1..100 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    /// Family name, 1..100 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 100)]
    subname: Option<String>,
    /// E-mail address, at most 160 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 160)]
    email: Option<String>,
    /// Job title, 1..100 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 100)]
    job: Option<String>,
    /// New password, 12..128 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 12, max_length = 128)]
    password: Option<String>,
    /// The password now in force: required to change `password` or `email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    current_password: Option<String>,
}

/// A login: `{"email", "password"}`, or the same under `creds`.
#[derive(Serialize, ToSchema)]
pub(crate) struct LoginRequest {
    /// E-mail address.
    #[schema(min_length = 1)]
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// Password.
    #[schema(min_length = 1)]
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    /// The credentials, as Phoenix tutorials send them; read instead of the top-level fields
    /// when it is an object.
    #[serde(skip_serializing_if = "Option::is_none")]
    creds: Option<Credentials>,
}

/// E-mail address and password.
#[derive(Serialize, ToSchema)]
pub(crate) struct Credentials {
    /// E-mail address.
    #[schema(min_length = 1)]
    email: String,
    /// Password.
    #[schema(min_length = 1)]
    password: String,
}

/// `{"body"}`: a room message.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomMessageRequest {
    /// 1..4000 characters after trimming.
    #[schema(min_length = 1, max_length = 4000, example = "hello")]
    body: String,
}

/// `{"recipient_id"}`: the other participant of the conversation to open.
#[derive(Serialize, ToSchema)]
pub(crate) struct OpenConversationRequest {
    /// A user's id, not the caller's.
    #[schema(example = 2)]
    recipient_id: i64,
}

/// `{"content"}`: a conversation message.
#[derive(Serialize, ToSchema)]
pub(crate) struct PostMessageRequest {
    /// 1..4000 characters after trimming.
    #[schema(min_length = 1, max_length = 4000, example = "hello")]
    content: String,
}

/// `{"data": user}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserData {
    data: User,
}

/// `{"data": user}`, as the caller may see them.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserViewData {
    data: UserView,
}

/// A page of users.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserPage {
    /// In id order; e-mail addresses only on the caller's own record.
    data: Vec<UserView>,
    meta: UserPageMeta,
}

/// Where the next page starts.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserPageMeta {
    /// The `after` cursor of the next page (an id, as a string), or `null` on the last page.
    next: Option<String>,
}

/// `{"data": user}` of a new user.
#[derive(Serialize, ToSchema)]
pub(crate) struct RegisteredData {
    data: RegisteredUser,
}

/// The new user, with the password the server generated when the request had none.
#[derive(Serialize, ToSchema)]
pub(crate) struct RegisteredUser {
    #[serde(flatten)]
    user: User,
    /// The generated password: shown this once, only when the request gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

/// `{"data": session}`: a login.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionData {
    data: Session,
}

/// Who logged in and their access token.
#[derive(Serialize, ToSchema)]
pub(crate) struct Session {
    user: User,
    /// The access token, for `Authorization: Bearer …` and the socket's `token` parameter.
    token: String,
    /// When the token expires.
    expires_at: DateTime<Utc>,
}

/// `{"data": socket_token}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SocketTokenData {
    data: SocketToken,
}

/// `{"data": broadcast}`: what was published to the room.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomMessageData {
    data: RoomBroadcast,
}

/// A room broadcast.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomBroadcast {
    /// `room:<name>`.
    topic: String,
    /// `message:new`.
    event: String,
    payload: RoomPayload,
}

/// What the room's members receive.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomPayload {
    /// The sender.
    user_id: i64,
    /// The trimmed text.
    body: String,
}

/// `{"data": conversation}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConversationData {
    data: Conversation,
}

/// The caller's conversations, most recent activity first.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConversationList {
    data: Vec<Conversation>,
}

/// A page of history.
#[derive(Serialize, ToSchema)]
pub(crate) struct MessagePage {
    /// Oldest first.
    data: Vec<Message>,
    meta: MessagePageMeta,
}

/// Whether the history goes on.
#[derive(Serialize, ToSchema)]
pub(crate) struct MessagePageMeta {
    /// Whether more messages lie beyond this page, in the direction asked for.
    has_more: bool,
}

/// `{"data": message, "meta": {"delivered"}}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct MessageCreated {
    data: Message,
    meta: MessageCreatedMeta,
}

/// How far the message went live.
#[derive(Serialize, ToSchema)]
pub(crate) struct MessageCreatedMeta {
    /// How many of this node's sockets it was pushed to.
    #[schema(minimum = 0)]
    delivered: u64,
}

/// Liveness.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`.
    status: String,
}

/// Readiness.
#[derive(Serialize, ToSchema)]
pub(crate) struct Ready {
    /// `ok`.
    status: String,
    /// `ok`.
    database: String,
    /// `ok`.
    realtime: String,
    pubsub: PubSubStatus,
}

/// The cluster link. A link that is down does not fail readiness.
#[derive(Serialize, ToSchema)]
pub(crate) struct PubSubStatus {
    /// `memory` or `redis`.
    adapter: String,
    /// This node's name.
    node: String,
    /// `connected` or `disconnected`.
    state: String,
    /// The other nodes heard from.
    members: Vec<String>,
}

/// `{"errors": {"detail"}}`: the body of every error but a validation failure.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    errors: ErrorDetail,
}

/// A 503's body: `{"errors": {"detail"}}`, and on `/ready` while the node drains also
/// `"status": "draining"`.
#[derive(Serialize, ToSchema)]
pub(crate) struct UnavailableBody {
    /// `draining` (only `/ready`, from the instant a shutdown begins).
    #[schema(nullable = false)]
    status: Option<Draining>,
    errors: ErrorDetail,
}

/// The node is draining (shutting down); a load balancer should send it nothing new.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Draining {
    /// The only value.
    Draining,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// A message for people (the status' reason phrase, or what was wrong with the request).
    detail: String,
}

/// `{"errors": {"field": ["message", …]}}`: every problem of the request, by field.
#[derive(Serialize, ToSchema)]
pub(crate) struct ValidationBody {
    errors: crate::accounts::FieldErrors,
}

/// `GET /api/v1/users`'s query.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UserPageQuery {
    /// Page size, 1..100 (default 50). An empty value counts as absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
    /// Cursor: start after this user id (`meta.next` of the previous page).
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// `GET /api/v1/conversations/{id}/messages`'s query.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Page size, 1..100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
    /// Cursor: the newest messages older than this message id (the default, from the end).
    #[param(minimum = 0)]
    before: Option<i64>,
    /// Cursor: the oldest messages newer than this message id (not with `before`: 422).
    #[param(minimum = 0)]
    after: Option<i64>,
}
