//! WebSocket transport: the upgrade, the connection's I/O loop, its bounded outbound queue,
//! and how and why a connection is closed.
//!
//! Close codes (phoenix.js reconnects after any code but 1000):
//!
//! | situation | code |
//! |---|---|
//! | `disconnect` broadcast to the socket id | 1001 |
//! | idle timeout (no frame from the client) | 1001 |
//! | malformed frame (bad JSON, wrong shape, a V1 frame that is not an object, unknown binary kind) | 1003 |
//! | topic longer than `max_topic_bytes` (`topic too long`), event longer than 64 bytes (`event too long`), `ref` or `join_ref` longer than 64 bytes of JSON text (`ref too long`, `join_ref too long`) | 1003 |
//! | invalid UTF-8 in a text frame | 1007 |
//! | a message started and not finished within `message_timeout` (`message too slow`) | 1008 |
//! | frame larger than `max_frame_bytes` | 1009 |
//! | internal error (the socket actor died) | 1011 |
//! | server shutting down | 1012 |
//! | slow consumer (outbound queue over `outbound_queue` frames or `outbound_queue_bytes`, or a write over `write_timeout`) | 1013 when the close frame can still be delivered; otherwise the connection is dropped |
//!
//! A server-initiated close (any code above but 1013) is careful, so that a client still
//! sending reads the close frame instead of a reset: the close frame is sent, the write side
//! is shut down, and whatever the client still sends is read and discarded, for a bounded time
//! and amount, before the connection is closed. A slow consumer gets what was queued before
//! the cut and then 1013 only if its connection takes them within 200 ms: one that does not
//! read has no room for them, and its connection is simply dropped.
//!
//! Names are checked as soon as a frame is decoded, before it reaches the socket actor: nothing
//! over a limit is ever stored. (An error reply would have to echo the oversized topic for
//! phoenix.js to route it, which a client that does not read could pile up in its queue.)
//!
//! What one connection can make the server hold or do is bounded:
//! - inbound, by backpressure: a frame read waits, and the connection reads nothing more,
//!   while the client is over `max_messages_per_second` (every message counts, heartbeats
//!   included) or while its frames in flight to the socket actor fill the inbound window: 32
//!   frames or 1 MiB of frame text (a frame holds its size in KiB, at least 32 KiB and at most
//!   the whole window; decoded JSON is typically 10–40 times its text). TCP then pushes back on
//!   the client; nothing is lost. A message whose first byte arrived must be complete within
//!   `message_timeout` (1008 otherwise), pings between its fragments notwithstanding;
//! - outbound, by cutting off: more than `outbound_queue` frames or `outbound_queue_bytes`
//!   bytes waiting for the client (direct pushes held for a join reply included) make it a
//!   slow consumer (1013), even while a write to it is stuck.

mod config;
mod connection;
mod deadline;
mod inflow;
mod longpoll;
mod origin;
mod outbound;
mod socket_ids;
mod upgrade;
mod wire;

pub(crate) use socket_ids::{OverLimit, SocketIds};
pub(crate) use upgrade::{request_checks, upgrade_headers};

use std::sync::OnceLock;

use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::protocol::Encoded;
pub use config::{MAX_EVENT_BYTES, MAX_REF_BYTES, TransportConfig};
pub(crate) use longpoll::{Admission, Sessions, handle as longpoll};
pub use origin::{CheckOrigin, InvalidOrigin, OriginPattern};
pub(crate) use outbound::{OutFrame, Outbound, OutboundReceiver, QueueProbe, Sent};
pub(crate) use upgrade::upgrade;
pub(crate) use wire::{DirectTcp, Framed, SharedTcp};

/// Why a connection is being closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Disconnected,
    Idle,
    Malformed(String),
    /// A name over its limit: `"topic"`, `"event"`, `"ref"` or `"join_ref"`.
    TooLong(&'static str),
    InvalidUtf8,
    /// A message took longer than `message_timeout` to arrive.
    SlowMessage,
    TooBig,
    Internal,
    Shutdown,
    /// The drain reached this socket: what it was handed is done and what is queued written.
    Drain,
    SlowConsumer,
}

impl CloseReason {
    pub(crate) fn code(&self) -> u16 {
        match self {
            CloseReason::Disconnected | CloseReason::Idle => 1001,
            CloseReason::Malformed(_) | CloseReason::TooLong(_) => 1003,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::SlowMessage => 1008,
            CloseReason::TooBig => 1009,
            CloseReason::Internal => 1011,
            CloseReason::Shutdown | CloseReason::Drain => 1012,
            CloseReason::SlowConsumer => 1013,
        }
    }

    pub(crate) fn text(&self) -> String {
        let too_long;
        let text = match self {
            CloseReason::TooLong(what) => {
                too_long = format!("{what} too long");
                too_long.as_str()
            }
            CloseReason::Disconnected => "disconnected",
            CloseReason::Idle => "idle timeout",
            CloseReason::Malformed(why) => why.as_str(),
            CloseReason::InvalidUtf8 => "invalid UTF-8",
            CloseReason::SlowMessage => "message too slow",
            CloseReason::TooBig => "frame too large",
            CloseReason::Internal => "internal error",
            CloseReason::Shutdown | CloseReason::Drain => "server shutting down",
            CloseReason::SlowConsumer => "slow consumer",
        };
        // A close reason must fit in 123 bytes.
        let mut end = text.len().min(120);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_owned()
    }
}

/// Closes a connection once, from anywhere: the first reason wins.
#[derive(Debug, Default)]
pub(crate) struct Control {
    token: CancellationToken,
    reason: OnceLock<CloseReason>,
}

impl Control {
    pub(crate) fn close(&self, reason: CloseReason) {
        if self.reason.set(reason.clone()).is_ok() {
            tracing::debug!(?reason, "closing connection");
        }
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> Option<&CloseReason> {
        self.reason.get()
    }

    pub(crate) async fn closed(&self) {
        self.token.cancelled().await;
    }
}

/// An encoded frame as a WebSocket message (no copy: the bytes move).
pub(crate) fn encoded_to_message(encoded: Encoded) -> Message {
    match encoded {
        Encoded::Text(text) => Message::Text(text.into()),
        Encoded::Binary(bytes) => Message::Binary(bytes.into()),
    }
}
