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
//! | frame larger than `max_frame_bytes` | 1009 |
//! | internal error (the socket actor died) | 1011 |
//! | server shutting down | 1012 |
//! | slow consumer (outbound queue full) | 1013, or the TCP connection is dropped |
//!
//! A server-initiated close (any code above but 1013) is careful, so that a client still
//! sending reads the close frame instead of a reset: the close frame is sent, the write side
//! is shut down, and whatever the client still sends is read and discarded, for a bounded time
//! and amount, before the connection is closed.
//!
//! Names are checked as soon as a frame is decoded, before it reaches the socket actor: nothing
//! over a limit is ever stored. (An error reply would have to echo the oversized topic for
//! phoenix.js to route it, which a client that does not read could pile up in its queue.)

mod connection;
mod origin;
mod socket_ids;
mod upgrade;

pub(crate) use socket_ids::{OverLimit, SocketIds};
pub(crate) use upgrade::{request_checks, upgrade_headers};

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::protocol::Encoded;
pub use origin::{CheckOrigin, InvalidOrigin, OriginPattern};
pub(crate) use upgrade::upgrade;

/// Transport settings.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Which `Origin` headers are accepted.
    pub check_origin: CheckOrigin,
    /// Largest accepted frame (and message), in bytes; larger → close 1009.
    pub max_frame_bytes: usize,
    /// Close after this long without any frame from the client (phoenix.js heartbeats every
    /// 30 s).
    pub idle_timeout: Duration,
    /// Frames queued for a client before it counts as a slow consumer and is disconnected.
    pub outbound_queue: usize,
    /// How long one write to a client may take before it counts as a slow consumer.
    pub write_timeout: Duration,
    /// Channels one socket may join at once.
    pub max_channels: usize,
    /// Read buffer per connection, in bytes (tungstenite's default is 128 KiB).
    pub read_buffer_bytes: usize,
    /// After a connection ends, how long its channels get to finish before the socket actor
    /// is killed (a callback that never returns).
    pub close_grace: Duration,
    /// Longest topic name a client may send, in bytes; longer → close 1003 (`topic too long`).
    /// Event names and `ref`/`join_ref` are limited to [`MAX_EVENT_BYTES`] and
    /// [`MAX_REF_BYTES`].
    pub max_topic_bytes: usize,
    /// Live sockets per socket id ([`super::Socket::id`]); beyond it the upgrade is refused
    /// with HTTP 429. 0: no limit. Sockets without an id are not limited.
    pub max_sockets_per_id: usize,
}

/// Longest event name a client may send, in bytes; longer → close 1003 (`event too long`).
pub const MAX_EVENT_BYTES: usize = 64;

/// Longest `ref` or `join_ref` a client may send, in bytes of JSON text (a string's quotes
/// count); longer → close 1003 (`ref too long`, `join_ref too long`).
pub const MAX_REF_BYTES: usize = 64;

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            check_origin: CheckOrigin::SameHost,
            max_frame_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            outbound_queue: 1024,
            write_timeout: Duration::from_secs(10),
            max_channels: 100,
            read_buffer_bytes: 2048,
            close_grace: Duration::from_secs(5),
            max_topic_bytes: 255,
            max_sockets_per_id: 32,
        }
    }
}

/// Why a connection is being closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Disconnected,
    Idle,
    Malformed(String),
    /// A name over its limit: `"topic"`, `"event"`, `"ref"` or `"join_ref"`.
    TooLong(&'static str),
    InvalidUtf8,
    TooBig,
    Internal,
    Shutdown,
    SlowConsumer,
}

impl CloseReason {
    pub(crate) fn code(&self) -> u16 {
        match self {
            CloseReason::Disconnected | CloseReason::Idle => 1001,
            CloseReason::Malformed(_) | CloseReason::TooLong(_) => 1003,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::TooBig => 1009,
            CloseReason::Internal => 1011,
            CloseReason::Shutdown => 1012,
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
            CloseReason::TooBig => "frame too large",
            CloseReason::Internal => "internal error",
            CloseReason::Shutdown => "server shutting down",
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

/// A connection's bounded outbound queue. It allocates only while frames wait (an idle
/// connection's queue costs nothing), and gives the memory back once drained.
#[derive(Debug)]
struct Queue {
    state: std::sync::Mutex<QueueState>,
    ready: tokio::sync::Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    frames: std::collections::VecDeque<OutFrame>,
    receiver_gone: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Frames kept in a drained queue's buffer; beyond this it is released.
const KEEP_QUEUE_CAPACITY: usize = 8;

/// The sending side of a connection's outbound queue. A full queue marks the client as a slow
/// consumer and closes the connection; nothing waits on a slow client.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    queue: Arc<Queue>,
    control: Arc<Control>,
}

/// The receiving side (the connection's writer).
#[derive(Debug)]
pub(crate) struct OutboundReceiver {
    queue: Arc<Queue>,
}

impl OutboundReceiver {
    /// The next frame, waiting for one.
    pub(crate) async fn recv(&self) -> OutFrame {
        loop {
            // `notify_one` leaves a permit when nobody waits, so a send between the check and
            // the wait is not missed.
            let ready = self.queue.ready.notified();
            if let Some(frame) = self.try_recv() {
                return frame;
            }
            ready.await;
        }
    }

    /// The next frame, if one waits.
    pub(crate) fn try_recv(&self) -> Option<OutFrame> {
        let mut state = self.queue.lock();
        let frame = state.frames.pop_front();
        if state.frames.is_empty() && state.frames.capacity() > KEEP_QUEUE_CAPACITY {
            state.frames.shrink_to(KEEP_QUEUE_CAPACITY);
        }
        frame
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.receiver_gone = true;
        state.frames = Default::default();
    }
}

/// One slot of the outbound queue: a message, or the fragments of one message, or a batch of
/// whole messages (never interleaved with other frames).
#[derive(Debug)]
pub(crate) enum OutFrame {
    One(Message),
    /// The frames of one message.
    Fragments(Vec<Message>),
    /// Whole messages, in order.
    Batch(Vec<Message>),
}

impl OutFrame {
    /// The messages to write, in order.
    pub(crate) fn into_messages(self) -> Vec<Message> {
        match self {
            OutFrame::One(message) => vec![message],
            OutFrame::Fragments(messages) | OutFrame::Batch(messages) => messages,
        }
    }
}

/// What happened to a frame given to [`Outbound::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    Queued,
    /// The queue was full: the connection is being closed.
    Overflow,
    /// The connection is gone.
    Gone,
}

impl Outbound {
    pub(crate) fn new(capacity: usize) -> (Self, OutboundReceiver, Arc<Control>) {
        let queue = Arc::new(Queue {
            state: std::sync::Mutex::new(QueueState::default()),
            ready: tokio::sync::Notify::new(),
            capacity: capacity.max(1),
        });
        let control = Arc::new(Control::default());
        let outbound = Self {
            queue: queue.clone(),
            control: control.clone(),
        };
        (outbound, OutboundReceiver { queue }, control)
    }

    pub(crate) fn send(&self, frame: Message) -> Sent {
        self.enqueue(OutFrame::One(frame))
    }

    /// Queues several whole messages to be written back to back, in one write when they fit.
    pub(crate) fn send_batch(&self, messages: Vec<Message>) -> Sent {
        self.enqueue(OutFrame::Batch(messages))
    }

    /// Queues the fragments of one message; they are written back to back.
    pub(crate) fn send_fragments(&self, fragments: Vec<Message>) -> Sent {
        self.enqueue(OutFrame::Fragments(fragments))
    }

    fn enqueue(&self, frame: OutFrame) -> Sent {
        {
            let mut state = self.queue.lock();
            if state.receiver_gone {
                return Sent::Gone;
            }
            if state.frames.len() >= self.queue.capacity {
                drop(state);
                if self.control.reason().is_none() {
                    tracing::warn!("slow consumer: outbound queue full; disconnecting");
                }
                self.control.close(CloseReason::SlowConsumer);
                return Sent::Overflow;
            }
            state.frames.push_back(frame);
        }
        self.queue.ready.notify_one();
        Sent::Queued
    }
}

/// An encoded frame as a WebSocket message (no copy: the bytes move).
pub(crate) fn encoded_to_message(encoded: Encoded) -> Message {
    match encoded {
        Encoded::Text(text) => Message::Text(text.into()),
        Encoded::Binary(bytes) => Message::Binary(bytes.into()),
    }
}
