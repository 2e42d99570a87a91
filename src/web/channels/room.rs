//! `room:*`: any authenticated user may join a room; everyone in it sees who is online.
//!
//! After a join the channel tracks the user's presence (key: the user id as a string; meta:
//! `online_at`, unix seconds as a string, and `name`) and pushes `presence_state`; joins and
//! leaves reach everyone as `presence_diff`. One user on several devices has one meta per
//! device under the same key.
//!
//! Events:
//! - `message:new` `{"body": text}` (1..4000 characters after trimming) → broadcast
//!   `message:new` `{"user_id", "body"}` to the room and reply `ok` `{}`; an invalid payload
//!   gets `error` `{"reason": "invalid", "errors": {...}}` and the channel lives on.
//! - `status:set` `{"status": text}` (1..32 characters) → updates the user's presence meta
//!   (`status` added; a new `phx_ref`, the old one as `phx_ref_prev`) and replies `ok` `{}`;
//!   if the join has no presence to update, `error` `{"reason": "not tracked"}` (the
//!   presence is tracked before any later client message is handled, so only a presence lost
//!   with its shard gets this).
//! - `ping` — replies `ok` with the payload it got (an echo, used by the benchmarks).
//!
//! Tenancy: the same channel can serve partitioned topics. Mount it once per prefix, e.g.
//! `mount.channel("tenant:*", RoomChannel)` for `tenant:<t>:room:<r>`; the join can check that
//! the user belongs to tenant `<t>` from the topic (see [`tenant_of`]).

use serde_json::{Value, json};

use crate::rooms;
use crate::runtime::{
    Channel, ChannelContext, ChannelError, Continue, HandleIn, JoinOutcome, Payload, Reply,
};
use crate::web::channels::invalid;
use crate::web::user_socket::SocketUser;

/// The room channel.
pub struct RoomChannel;

/// Messages the room channel sends itself.
pub enum RoomInfo {
    /// Track the user and push `presence_state` once the join is complete.
    AfterJoin,
}

/// Per-join state: when the user came online (kept across presence updates).
pub struct RoomState {
    online_at: String,
}

/// Longest `status`, in characters.
const MAX_STATUS_CHARS: usize = 32;

/// The tenant of a `tenant:<t>:room:<r>` topic.
pub fn tenant_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("tenant:")?;
    let (tenant, room) = rest.split_once(':')?;
    room.starts_with("room:").then_some(tenant)
}

impl Channel for RoomChannel {
    type Assigns = SocketUser;
    type State = RoomState;
    type Info = RoomInfo;

    async fn join(
        &self,
        _topic: &str,
        _payload: Payload,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<RoomState>, ChannelError> {
        ctx.handle().send(RoomInfo::AfterJoin);
        let online_at = chrono::Utc::now().timestamp().to_string();
        Ok(JoinOutcome::ok(RoomState { online_at }))
    }

    async fn handle_info(
        &self,
        message: RoomInfo,
        state: &mut RoomState,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<Continue, ChannelError> {
        match message {
            RoomInfo::AfterJoin => {
                let user = ctx.assigns();
                let meta = json!({ "online_at": state.online_at, "name": user.name });
                ctx.track(&user.user_id.to_string(), meta).await?;
                ctx.push_presence_state().await;
            }
        }
        Ok(Continue::Continue)
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        state: &mut RoomState,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        let json = payload.as_json().cloned().unwrap_or(Value::Null);
        Ok(match event {
            rooms::MESSAGE_EVENT => match rooms::validate_message(&json) {
                Ok(body) => {
                    let message = rooms::message_payload(ctx.assigns().user_id, &body);
                    ctx.broadcast(rooms::MESSAGE_EVENT, message);
                    HandleIn::Reply(Reply::ok())
                }
                Err(errors) => HandleIn::Reply(invalid(errors)),
            },
            "status:set" => match json.get("status").and_then(Value::as_str).map(str::trim) {
                Some(status) if (1..=MAX_STATUS_CHARS).contains(&status.chars().count()) => {
                    let user = ctx.assigns();
                    let meta = json!({ "online_at": state.online_at, "name": user.name, "status": status });
                    // Not tracked (yet, or any more: its presence shard failed): an error
                    // reply with a stable reason (never the runtime's error text), not a crash.
                    match ctx.update_presence(&user.user_id.to_string(), meta).await {
                        Ok(_) => HandleIn::Reply(Reply::ok()),
                        Err(crate::runtime::PresenceError::NotTracked) => {
                            HandleIn::Reply(Reply::error("not tracked"))
                        }
                        Err(_) => HandleIn::Reply(Reply::error("unavailable")),
                    }
                }
                _ => HandleIn::Reply(invalid(
                    json!({ "status": [format!("should be 1 to {MAX_STATUS_CHARS} character(s)")] }),
                )),
            },
            "ping" => HandleIn::Reply(Reply::ok_with(payload)),
            _ => HandleIn::Reply(Reply::error("unhandled event")),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{RoomChannel, RoomState, tenant_of};
    use crate::runtime::{Channel, HandleIn, Payload, Runtime, TransportConfig};
    use crate::testing::detached_context;
    use crate::web::user_socket::SocketUser;

    #[tokio::test]
    async fn status_set_without_a_tracked_presence_answers_an_error_instead_of_crashing() {
        let runtime = Runtime::start(TransportConfig::default())
            .await
            .expect("runtime");
        let user = SocketUser {
            user_id: 7,
            jti: "jti".into(),
            name: "Ann".into(),
        };
        let mut ctx = detached_context::<RoomChannel>(&runtime, "room:x", user).await;
        let mut state = RoomState {
            online_at: "0".into(),
        };
        let payload = Payload::Json(json!({"status": "away"}));
        let outcome = RoomChannel
            .handle_in("status:set", payload, &mut state, &mut ctx)
            .await;
        match outcome {
            Ok(HandleIn::Reply(reply)) => {
                assert_eq!(reply.status, "error");
                assert_eq!(
                    reply.response,
                    Payload::Json(json!({"reason": "not tracked"}))
                );
            }
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    #[test]
    fn tenants_come_from_the_topic() {
        assert_eq!(tenant_of("tenant:acme:room:lobby"), Some("acme"));
        assert_eq!(tenant_of("tenant:acme:other"), None);
        assert_eq!(tenant_of("room:lobby"), None);
    }
}
