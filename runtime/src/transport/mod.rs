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
mod socket_ids;
mod upgrade;

pub(crate) use socket_ids::{OverLimit, SocketIds};
pub(crate) use upgrade::{request_checks, upgrade_headers};

use std::sync::{Arc, OnceLock};

use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::protocol::Encoded;
pub use config::{MAX_EVENT_BYTES, MAX_REF_BYTES, TransportConfig};
pub(crate) use longpoll::{Admission, Sessions, handle as longpoll};
pub use origin::{CheckOrigin, InvalidOrigin, OriginPattern};
pub(crate) use upgrade::upgrade;

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

/// A connection's bounded outbound queue: at most `capacity` frames and `max_bytes` bytes
/// (counted inside the queue's lock, from lengths the frames already know: no allocation).
/// It allocates only while frames wait (an idle connection's queue costs nothing), and gives
/// the memory back once drained.
#[derive(Debug)]
struct Queue {
    state: std::sync::Mutex<QueueState>,
    ready: tokio::sync::Notify,
    capacity: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    frames: std::collections::VecDeque<OutFrame>,
    /// The total length of `frames`.
    bytes: usize,
    receiver_gone: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a frame of `len` bytes fits after `frames` frames of `bytes` bytes. Over either
    /// bound is a slow consumer, but an empty queue takes any one frame: a client that keeps
    /// up must be able to receive a frame larger than the budget.
    fn fits(&self, frames: usize, bytes: usize, len: usize) -> bool {
        let over_bytes = bytes > 0 && bytes.saturating_add(len) > self.max_bytes;
        frames < self.capacity && !over_bytes
    }
}

/// A look at a connection's outbound queue from outside (the metrics' fullest queue), which
/// does not keep it alive.
#[derive(Debug, Clone)]
pub(crate) struct QueueProbe(std::sync::Weak<Queue>);

impl QueueProbe {
    /// The frames waiting in the queue now (0 once the connection is gone).
    pub(crate) fn frames(&self) -> usize {
        self.0
            .upgrade()
            .map_or(0, |queue| queue.lock().frames.len())
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
        let frame = state.frames.pop_front()?;
        state.bytes = state.bytes.saturating_sub(frame.len());
        if state.frames.is_empty() && state.frames.capacity() > KEEP_QUEUE_CAPACITY {
            state.frames.shrink_to(KEEP_QUEUE_CAPACITY);
        }
        Some(frame)
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.receiver_gone = true;
        state.frames = Default::default();
        state.bytes = 0;
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

    /// The bytes it holds (payloads; a broadcast's bytes count in full, though subscribers
    /// share them: they are what this client keeps alive).
    fn len(&self) -> usize {
        match self {
            OutFrame::One(message) => message.len(),
            OutFrame::Fragments(messages) | OutFrame::Batch(messages) => {
                messages.iter().map(Message::len).sum()
            }
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
    /// A queue of at most `capacity` frames and `max_bytes` bytes (both at least 1).
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> (Self, OutboundReceiver, Arc<Control>) {
        let queue = Arc::new(Queue {
            state: std::sync::Mutex::new(QueueState::default()),
            ready: tokio::sync::Notify::new(),
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
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

    /// A probe of this queue's depth.
    pub(crate) fn probe(&self) -> QueueProbe {
        QueueProbe(Arc::downgrade(&self.queue))
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
        let len = frame.len();
        {
            let mut state = self.queue.lock();
            if state.receiver_gone {
                return Sent::Gone;
            }
            if !self.queue.fits(state.frames.len(), state.bytes, len) {
                drop(state);
                self.overflow("outbound queue full");
                return Sent::Overflow;
            }
            state.frames.push_back(frame);
            state.bytes += len;
        }
        self.queue.ready.notify_one();
        Sent::Queued
    }

    /// Whether one more frame of `len` bytes fits in this connection's budget with `frames`
    /// frames of `bytes` bytes held for it outside its queue (pushes waiting for a join
    /// reply): they count against the budget with what is queued. If not, the connection is
    /// closed as a slow consumer.
    pub(crate) fn within_budget(&self, frames: usize, bytes: usize, len: usize) -> bool {
        let fits = {
            let state = self.queue.lock();
            let queued = (state.frames.len(), state.bytes);
            self.queue
                .fits(queued.0 + frames, queued.1.saturating_add(bytes), len)
        };
        if !fits {
            self.overflow("pushes held for a join reply over the outbound budget");
        }
        fits
    }

    fn overflow(&self, what: &str) {
        if self.control.reason().is_none() {
            tracing::warn!("slow consumer: {what}; disconnecting");
        }
        self.control.close(CloseReason::SlowConsumer);
    }
}

/// An encoded frame as a WebSocket message (no copy: the bytes move).
pub(crate) fn encoded_to_message(encoded: Encoded) -> Message {
    match encoded {
        Encoded::Text(text) => Message::Text(text.into()),
        Encoded::Binary(bytes) => Message::Binary(bytes.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Message {
        Message::Text("x".repeat(len).into())
    }

    #[test]
    fn the_queue_holds_at_most_its_bytes_and_counts_what_leaves() {
        let (out, rx, control) = Outbound::new(1024, 1000);
        assert_eq!(out.send(text(400)), Sent::Queued);
        assert_eq!(
            out.send_batch(vec![text(300), text(200)]),
            Sent::Queued,
            "900 bytes"
        );
        assert_eq!(rx.queue.lock().bytes, 900);
        // 900 + 400 would be over: taken out as a frame leaves, the room comes back.
        assert!(rx.try_recv().is_some());
        assert_eq!(rx.queue.lock().bytes, 500);
        assert_eq!(out.send_fragments(vec![text(250), text(250)]), Sent::Queued);
        assert_eq!(rx.queue.lock().bytes, 1000, "right at the budget");
        assert!(control.reason().is_none());
        assert_eq!(out.send(text(1)), Sent::Overflow, "one byte over");
        assert_eq!(control.reason(), Some(&CloseReason::SlowConsumer));
        while rx.try_recv().is_some() {}
        assert_eq!(rx.queue.lock().bytes, 0);
    }

    #[test]
    fn frames_held_outside_the_queue_count_against_its_budget() {
        let (out, _rx, control) = Outbound::new(4, 1000);
        assert_eq!(out.send(text(300)), Sent::Queued);
        assert!(out.within_budget(0, 0, 300), "300 queued + 300");
        assert!(out.within_budget(1, 300, 400), "right at the byte budget");
        assert!(
            out.within_budget(2, 2, 2),
            "three frames with the queued one"
        );
        assert!(control.reason().is_none());
        assert!(!out.within_budget(3, 3, 1), "one frame over");
        assert_eq!(control.reason(), Some(&CloseReason::SlowConsumer));
        let (out, _rx, control) = Outbound::new(4, 1000);
        assert!(
            out.within_budget(0, 0, 5000),
            "nothing waits: any one frame"
        );
        assert!(!out.within_budget(1, 5000, 1), "one byte over");
        assert!(control.reason().is_some());
    }

    #[test]
    fn an_empty_queue_takes_one_frame_larger_than_its_budget() {
        let (out, rx, control) = Outbound::new(1024, 1000);
        assert_eq!(out.send(text(5000)), Sent::Queued);
        assert_eq!(out.send(text(1)), Sent::Overflow);
        assert!(control.reason().is_some());
        drop(rx);
        assert_eq!(out.send(text(1)), Sent::Gone);

        // Frames count too.
        let (out, _rx, _) = Outbound::new(2, usize::MAX);
        assert_eq!(out.send(text(1)), Sent::Queued);
        assert_eq!(out.send(text(1)), Sent::Queued);
        assert_eq!(out.send(text(1)), Sent::Overflow);
    }
}
