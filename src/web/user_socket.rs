//! The app's socket: `/socket/websocket`, authenticated with an access token.
//!
//! The token comes from phoenix.js `authToken` (the `base64url.bearer.phx.…` subprotocol) or
//! the `token` query parameter. A missing, expired, revoked or forged token is refused with
//! 403 before the upgrade. The socket id is `user_socket:<user id>` (deleting the account
//! closes them all), and each socket also listens on `user_token:<jti>`, so logging out closes
//! exactly the sockets opened with that token.

use crate::accounts::Accounts;
use crate::chat::Chat;
use crate::runtime::{ConnectError, ConnectInfo, Params, Sessions, Socket, SocketMount};
use crate::web::channels::chat::{CHAT_TOPIC, ChatChannel};
use crate::web::channels::conversation::ConversationChannel;
use crate::web::channels::room::RoomChannel;

/// Who is on a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketUser {
    /// The user.
    pub user_id: i64,
    /// The id of the token the socket authenticated with.
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
            .authenticate(token)
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

/// The app's socket with its channels: `room:chat` (matched before `room:*`), `room:*` and
/// `conversation:*`. `sessions` is the runtime's registry, used for direct delivery.
pub fn mount(accounts: Accounts, chat: Chat, sessions: Sessions) -> SocketMount<UserSocket> {
    let mount = SocketMount::new(UserSocket { accounts });
    // The patterns are static and valid.
    #[allow(clippy::expect_used)]
    mount
        .channel(CHAT_TOPIC, ChatChannel::new(chat.clone(), sessions))
        .and_then(|m| m.channel("room:*", RoomChannel))
        .and_then(|m| m.channel("conversation:*", ConversationChannel::new(chat)))
        .expect("valid topic pattern")
}
