//! `conversation:<id>`: a conversation's live messages, for its two participants only.
//!
//! Join payload: `{"last_seen_id": n}` (optional, a non-negative integer). The join reply is
//! `{"messages": [...], "has_more": bool}` with the messages after `n`, oldest first, at most
//! [`crate::chat::MAX_HISTORY`]; when `has_more` is true the client pages on with
//! `GET /api/v1/conversations/{id}/messages?after=`. Without `last_seen_id` the reply is `{}`.
//! Anyone else's join is refused with `{"reason": "unauthorized"}` (also for an unknown or
//! malformed id); a malformed `last_seen_id` with `{"reason": "invalid"}`.
//!
//! Messages posted after the commit arrive as `message:new` `{"message": {...}}`. Delivery is
//! at least once: right after the join is subscribed, the channel reads once more and pushes
//! any message committed between its join read and the subscription, so a message can arrive
//! twice but is never missed. Clients deduplicate by `id`.

use serde_json::{Value, json};

use crate::chat::{Chat, ChatError, MAX_HISTORY};
use crate::runtime::{
    Channel, ChannelContext, ChannelError, Continue, HandleIn, JoinOutcome, Payload, Reply,
};
use crate::web::user_socket::SocketUser;

/// The event new messages are pushed and broadcast with.
pub const MESSAGE_NEW: &str = "message:new";

/// The conversation channel.
pub struct ConversationChannel {
    chat: Chat,
}

impl ConversationChannel {
    /// A channel reading through `chat`.
    pub fn new(chat: Chat) -> Self {
        Self { chat }
    }
}

/// Messages the conversation channel sends itself.
pub enum ConversationInfo {
    /// The join is subscribed: push what was committed since the join's read.
    CatchUp,
}

/// Per-join state.
pub struct ConversationState {
    id: i64,
    /// The newest message id the client has (from the join reply), if it asked for recovery.
    last_id: Option<i64>,
}

/// The id of a `conversation:<id>` topic, written canonically: a positive decimal integer with
/// no sign and no leading zero. Messages are broadcast on exactly that spelling, so a join of
/// another (`conversation:03`, `conversation:+3`) would be accepted and never receive anything.
fn conversation_id(topic: &str) -> Option<i64> {
    let raw = topic.strip_prefix("conversation:")?;
    let id = raw.parse::<i64>().ok().filter(|id| *id > 0)?;
    (id.to_string() == raw).then_some(id)
}

impl Channel for ConversationChannel {
    type Assigns = SocketUser;
    type State = ConversationState;
    type Info = ConversationInfo;

    async fn join(
        &self,
        topic: &str,
        payload: Payload,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<ConversationState>, ChannelError> {
        let Some(id) = conversation_id(topic) else {
            return Ok(JoinOutcome::refuse("unauthorized"));
        };
        let me = ctx.assigns().user_id;
        let last_seen = match payload.as_json().and_then(|p| p.get("last_seen_id")) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64().filter(|n| *n >= 0) {
                Some(n) => Some(n),
                None => return Ok(JoinOutcome::refuse("invalid")),
            },
        };
        let Some(after) = last_seen else {
            return match self.chat.get_conversation(me, id).await {
                Ok(_) => Ok(JoinOutcome::ok(ConversationState { id, last_id: None })),
                Err(ChatError::NotFound) => Ok(JoinOutcome::refuse("unauthorized")),
                Err(e) => Err(e.into()),
            };
        };
        let page = match self
            .chat
            .history(me, id, None, Some(after), MAX_HISTORY)
            .await
        {
            Ok(page) => page,
            Err(ChatError::NotFound) => return Ok(JoinOutcome::refuse("unauthorized")),
            Err(e) => return Err(e.into()),
        };
        let last_id = Some(page.messages.last().map_or(after, |m| m.id));
        if !page.has_more {
            ctx.handle().send(ConversationInfo::CatchUp);
        }
        let reply = json!({ "messages": page.messages, "has_more": page.has_more });
        Ok(JoinOutcome::ok_with(
            ConversationState { id, last_id },
            reply,
        ))
    }

    async fn handle_info(
        &self,
        message: ConversationInfo,
        state: &mut ConversationState,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<Continue, ChannelError> {
        match message {
            ConversationInfo::CatchUp => {
                let me = ctx.assigns().user_id;
                let page = self
                    .chat
                    .history(me, state.id, None, state.last_id, MAX_HISTORY)
                    .await?;
                for message in page.messages {
                    state.last_id = Some(message.id);
                    ctx.push(MESSAGE_NEW, json!({ "message": message }));
                }
            }
        }
        Ok(Continue::Continue)
    }

    async fn handle_in(
        &self,
        _event: &str,
        _payload: Payload,
        _state: &mut ConversationState,
        _ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        // Messages are posted through `room:chat` or REST; this topic only delivers.
        Ok(HandleIn::Reply(Reply::error("unhandled event")))
    }
}
