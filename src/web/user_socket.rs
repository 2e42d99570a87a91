//! The app's socket: `/socket/websocket`, authenticated with a socket token or an access token.
//!
//! The token comes from phoenix.js `authToken` (the `base64url.bearer.phx.…` subprotocol) or
//! the `token` query parameter. Browsers should use a socket token (`POST
//! /api/v1/socket_tokens`: valid for a minute, for connecting only) rather than their access
//! token, which would otherwise sit in URLs that proxies log. A missing, expired, revoked or
//! forged token is refused with 403 before the upgrade. The socket id is `user_socket:<user
//! id>` (deleting the account closes them all; changing its password or e-mail closes those of
//! the user's other sessions, keeping the ones of the session that made the change, on every
//! node: `PubSub::disconnect_except`), and each socket also listens on
//! `user_token:<jti>` of its session (the access token, or the one that asked for the socket
//! token), so logging out closes exactly the sockets of that session.
//!
//! [`CHANNELS`] is the one list of the app's channels in mount order; [`channel_for`] answers
//! which channel a topic goes to by the same first-match rule the socket uses, so REST
//! endpoints that act on topics (room posts) ask it rather than keep their own list.

use crate::accounts::Accounts;
use crate::chat::Chat;
use crate::runtime::{
    ConnectError, ConnectInfo, Params, Socket, SocketMount, SocketRegistry, TopicPattern,
};
use crate::web::channels::chat::{CHAT_TOPIC, ChatChannel};
use crate::web::channels::conversation::ConversationChannel;
use crate::web::channels::room::RoomChannel;

/// Who is on a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketUser {
    /// The user.
    pub user_id: i64,
    /// The id of the session's access token (for a socket token, its parent's).
    pub jti: String,
    /// The user's name (shown in presence).
    pub name: String,
}

/// The socket id of a user's sockets.
pub fn user_socket_id(user_id: i64) -> String {
    format!("user_socket:{user_id}")
}

/// The disconnect topic of the sockets opened with token `jti`.
pub fn token_topic(jti: &str) -> String {
    format!("user_token:{jti}")
}

/// The app's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppChannel {
    /// `room:chat`: private messages.
    Chat,
    /// `room:*`: rooms with presence.
    Room,
    /// `conversation:*`: one conversation's participants.
    Conversation,
}

/// The app's channels on their topic patterns, in mount order: the first pattern matching a
/// topic serves it (`room:chat` is the chat channel's, not a room).
pub const CHANNELS: [(&str, AppChannel); 3] = [
    (CHAT_TOPIC, AppChannel::Chat),
    ("room:*", AppChannel::Room),
    ("conversation:*", AppChannel::Conversation),
];

/// The channel that serves `topic` on the app socket, if any.
pub fn channel_for(topic: &str) -> Option<AppChannel> {
    CHANNELS
        .iter()
        .find(|(pattern, _)| TopicPattern::parse(pattern).is_ok_and(|p| p.matches(topic)))
        .map(|(_, channel)| *channel)
}

/// Authenticates sockets with the accounts context.
pub struct UserSocket {
    accounts: Accounts,
}

impl Socket for UserSocket {
    type Assigns = SocketUser;

    async fn connect(
        &self,
        params: &Params,
        info: &ConnectInfo,
    ) -> Result<SocketUser, ConnectError> {
        let token = info
            .auth_token
            .as_deref()
            .or(params.get("token"))
            .ok_or_else(ConnectError::forbidden)?;
        let claims = self
            .accounts
            .authenticate_socket(token)
            .map_err(|_| ConnectError::forbidden())?;
        // The token may outlive its user only until the revocation reaches here; check.
        let user = self
            .accounts
            .get_user(claims.user_id)
            .await
            .map_err(|_| ConnectError::forbidden())?;
        Ok(SocketUser {
            user_id: claims.user_id,
            jti: claims.jti,
            name: user.name,
        })
    }

    fn id(&self, user: &SocketUser) -> Option<String> {
        Some(user_socket_id(user.user_id))
    }

    fn disconnect_topics(&self, user: &SocketUser) -> Vec<String> {
        vec![token_topic(&user.jti)]
    }
}

/// The app's socket with its [`CHANNELS`]. `registry` is the runtime's registry, used for
/// direct delivery.
pub fn mount(accounts: Accounts, chat: Chat, registry: SocketRegistry) -> SocketMount<UserSocket> {
    let mut mount = SocketMount::new(UserSocket { accounts });
    for (pattern, channel) in CHANNELS {
        mount = match channel {
            AppChannel::Chat => {
                mount.channel(pattern, ChatChannel::new(chat.clone(), registry.clone()))
            }
            AppChannel::Room => mount.channel(pattern, RoomChannel),
            AppChannel::Conversation => {
                mount.channel(pattern, ConversationChannel::new(chat.clone()))
            }
        };
    }
    mount
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_the_first_match_wins() {
        for (pattern, _) in CHANNELS {
            assert!(TopicPattern::parse(pattern).is_ok(), "{pattern}");
        }
        assert_eq!(channel_for("room:chat"), Some(AppChannel::Chat));
        assert_eq!(channel_for("room:lobby"), Some(AppChannel::Room));
        assert_eq!(channel_for("room:chat2"), Some(AppChannel::Room));
        assert_eq!(
            channel_for("conversation:1"),
            Some(AppChannel::Conversation)
        );
        assert_eq!(channel_for("lobby"), None);
    }
}
