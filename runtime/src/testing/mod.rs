//! Test helpers (feature `testing`), in the spirit of `Phoenix.ChannelTest`.
//!
//! - [`ChannelCase`] runs a runtime with your [`crate::SocketMount`] and makes
//!   [`TestSocket`]s on it: connected through your socket's `connect`
//!   ([`ChannelCase::connect`]) or built straight from assigns
//!   ([`ChannelCase::socket_with_assigns`]). Each test socket joins, pushes, and asserts on
//!   what the server sends it ([`TestSocket::assert_reply`], [`TestSocket::assert_push`], and
//!   their `refute_*`); the test itself observes the broadcasts on the topics it subscribed to
//!   ([`TestSocket::subscribe_and_join`], [`ChannelCase::assert_broadcast`]), so it sees what
//!   `broadcast_from` sends to the others.
//! - [`detached_context`] builds a [`crate::ChannelContext`] outside any socket, to unit-test
//!   one callback.
//! - [`WsClient`] is a real WebSocket client speaking the V2 protocol, for integration tests
//!   against a server on port 0.
//! - [`faults`] makes chosen actors of a runtime's supervision tree fail on purpose;
//!   [`adapter_conformance`] checks a PubSub adapter.
//!
//! Assertions wait up to [`DEADLINE`] for what they expect and return it; refutations wait a
//! short window ([`REFUTE_WINDOW`], as ExUnit's `refute_receive`) for what must not come.
//! Payloads are matched with a [`Match`]: a `serde_json::Value` the payload contains, or
//! [`matching`] with a predicate. A failure panics with what was received instead.
//!
//! A channel relaying cursor moves to the *other* users of a board, and its test:
//!
//! ```
//! use fawkes_runtime::testing::ChannelCase;
//! use fawkes_runtime::*;
//! use serde_json::json;
//!
//! struct UserSocket;
//!
//! impl Socket for UserSocket {
//!     type Assigns = String;
//!     async fn connect(&self, params: &Params, _: &ConnectInfo) -> Result<String, ConnectError> {
//!         params.get("name").map(str::to_owned).ok_or_else(ConnectError::forbidden)
//!     }
//! }
//!
//! struct Board;
//!
//! impl Channel for Board {
//!     type Assigns = String;
//!     type State = ();
//!     type Info = ();
//!
//!     async fn join(&self, _: &str, _: Payload, _: &mut ChannelContext<Self>)
//!         -> Result<JoinOutcome<()>, ChannelError> {
//!         Ok(JoinOutcome::ok(()))
//!     }
//!
//!     async fn handle_in(&self, _: &str, payload: Payload, _: &mut (), ctx: &mut ChannelContext<Self>)
//!         -> Result<HandleIn, ChannelError> {
//!         let mut moved = payload.as_json().cloned().unwrap_or_default();
//!         moved["user"] = json!(ctx.assigns());
//!         ctx.broadcast_from("cursor:move", moved); // to everyone on the board but the mover
//!         Ok(HandleIn::Reply(Reply::ok()))
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let mount = SocketMount::new(UserSocket).channel("board:*", Board);
//!     let case = ChannelCase::start(mount).await;
//!     // One socket through `connect`, one straight from its assigns.
//!     let mut ann = case.connect(&[("name", "ann")]).await.expect("ann may connect");
//!     let mut bob = case.socket_with_assigns("bob".to_owned()).await;
//!     assert!(case.connect(&[]).await.is_err(), "no name, no connection");
//!
//!     ann.subscribe_and_join("board:1", json!({})).await.expect("ann joins");
//!     bob.join("board:1", json!({})).await.expect("bob joins");
//!
//!     let moved = ann.push("board:1", "cursor:move", json!({"x": 3, "y": 4})).await;
//!     ann.assert_reply(&moved, "ok", json!({})).await;
//!     // The test saw the broadcast, bob got it, and ann, who moved, did not.
//!     case.assert_broadcast("cursor:move", json!({"user": "ann", "x": 3})).await;
//!     bob.assert_push("cursor:move", json!({"user": "ann", "y": 4})).await;
//!     ann.refute_push("cursor:move", json!({})).await;
//! }
//! ```

mod case;
mod conformance;
pub mod faults;
mod frame;
mod matcher;
mod test_socket;
mod ws_client;

pub use crate::socket_actor::detached_context;
pub use case::{ChannelCase, REFUTE_WINDOW};
pub use conformance::{InboundProbe, adapter_conformance, inbound_probe};
pub use frame::{DEADLINE, Frame};
pub use matcher::{Match, Matching, matching};
pub use test_socket::{JoinRefused, TestSocket};
pub use ws_client::{ConnectFailure, WsClient};
