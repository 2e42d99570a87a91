//! Test helpers (feature `testing`), in the spirit of `Phoenix.ChannelTest`.
//!
//! - [`ChannelTest`] drives a socket's channels without a network: join, push, and assert on
//!   replies, pushes and broadcasts.
//! - [`WsClient`] is a real WebSocket client speaking the V2 protocol, for integration tests
//!   against a server on port 0.
//!
//! - [`faults`] makes chosen actors of a runtime's supervision tree fail on purpose.
//!
//! Every wait has a deadline ([`DEADLINE`]); nothing sleeps a fixed time.

mod channel_test;
mod conformance;
pub mod faults;
mod frame;
mod ws_client;

pub use crate::socket_actor::detached_context;
pub use channel_test::ChannelTest;
pub use conformance::adapter_conformance;
pub use frame::{DEADLINE, Frame};
pub use ws_client::{ConnectFailure, WsClient};
