//! `room:chat`: private messages between the two participants of a conversation.
//!
//! Any authenticated user may join `room:chat` (reply `{}`). Then:
//! - push `send_msg` `{"user": recipient_id, "conv": conversation_id, "message": text}`: the
//!   message is validated and committed, then delivered (see [`deliver`]), then the sender
//!   gets `ok` `{"message": {...}, "delivered": n}`, where `n` counts the recipient's sockets
//!   that got it as `receive_msg`. An offline recipient (`n` = 0) finds it in the history.
//!   An `ok` therefore always means the message is stored.
//! - errors, after which the channel lives on:
//!   `{"reason": "invalid", "errors": {"user" | "conv" | "message": [...]}}` (text 1..4000
//!   characters after trimming; ids positive integers); `{"reason": "not_found"}` for an
//!   unknown conversation and for one the sender is not in (the same answer, so ids reveal
//!   nothing, as over REST); `{"reason": "wrong_recipient"}` when `user` is not the
//!   conversation's other participant; `{"reason": "unavailable"}` if the database failed
//!   (nothing was stored; retry).
//!
//! The recipient receives `receive_msg` `{"message": {...}}` on every one of its sockets that
//! has joined `room:chat`, from any device; both participants' `conversation:<id>` joins get
//! `message:new` as well.

use serde_json::{Value, json};

use crate::accounts::FieldErrors;
use crate::chat::{Chat, ChatError, Conversation, Message, conversation_topic, validate_text};
use crate::runtime::{
    Channel, ChannelContext, ChannelError, HandleIn, JoinOutcome, Payload, PubSub, Reply,
    SocketRegistry,
};
use crate::web::channels::conversation::MESSAGE_NEW;
use crate::web::channels::invalid;
use crate::web::user_socket::{SocketUser, user_socket_id};

/// The topic of this channel.
pub const CHAT_TOPIC: &str = "room:chat";
/// The event clients push to send a message.
pub const SEND_MSG: &str = "send_msg";
/// The event the recipient's sockets get.
pub const RECEIVE_MSG: &str = "receive_msg";

/// Delivers a committed `message` live: `message:new` on the conversation's topic, and
/// `receive_msg` to every socket of the recipient (the participant who did not send it) that
/// has joined `room:chat` on this node. Returns how many of those sockets it reached.
pub async fn deliver(
    pubsub: &PubSub,
    registry: &SocketRegistry,
    conversation: &Conversation,
    message: &Message,
) -> usize {
    let payload = json!({ "message": message });
    pubsub.broadcast(
        &conversation_topic(conversation.id),
        MESSAGE_NEW,
        payload.clone(),
    );
    let recipient = conversation.other(message.sender_id);
    registry
        .push(&user_socket_id(recipient), CHAT_TOPIC, RECEIVE_MSG, payload)
        .await
}

/// The `room:chat` channel.
pub struct ChatChannel {
    chat: Chat,
    registry: SocketRegistry,
}

impl ChatChannel {
    /// A channel storing through `chat` and delivering through `registry`.
    pub fn new(chat: Chat, registry: SocketRegistry) -> Self {
        Self { chat, registry }
    }

    async fn send_msg(&self, payload: &Value, ctx: &ChannelContext<Self>) -> Reply {
        let mut errors = FieldErrors::default();
        let mut id_of = |field: &str| {
            let id = payload
                .get(field)
                .and_then(Value::as_i64)
                .filter(|n| *n > 0);
            if id.is_none() {
                errors.add(field, "should be a positive integer");
            }
            id
        };
        let (recipient, conversation) = (id_of("user"), id_of("conv"));
        let (Some(recipient), Some(conversation)) = (recipient, conversation) else {
            // Report the text's problems too, so one answer lists them all.
            validate_text(payload.get("message"), "message", &mut errors);
            return invalid(&errors);
        };
        let me = ctx.assigns().user_id;
        let sent = self
            .chat
            .send_message(me, conversation, recipient, payload.get("message"))
            .await;
        match sent {
            Ok((conversation, message)) => {
                let delivered =
                    deliver(ctx.pubsub(), &self.registry, &conversation, &message).await;
                Reply::ok_with(json!({ "message": message, "delivered": delivered }))
            }
            Err(ChatError::Invalid(errors)) => invalid(&errors),
            Err(ChatError::NotFound) => Reply::error("not_found"),
            Err(ChatError::WrongRecipient) => Reply::error("wrong_recipient"),
            Err(ChatError::Database(e)) => {
                tracing::error!(error = %e, "send_msg: the message could not be stored");
                Reply::error("unavailable")
            }
        }
    }
}

impl Channel for ChatChannel {
    type Assigns = SocketUser;
    type State = ();
    type Info = ();

    async fn join(
        &self,
        _topic: &str,
        _payload: Payload,
        _ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<()>, ChannelError> {
        Ok(JoinOutcome::ok(()))
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _state: &mut (),
        ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        let reply = match (event, payload.as_json()) {
            (SEND_MSG, Some(json)) => self.send_msg(json, ctx).await,
            (SEND_MSG, None) => invalid(FieldErrors::single("message", "should be JSON")),
            _ => Reply::error("unhandled event"),
        };
        Ok(HandleIn::Reply(reply))
    }
}
