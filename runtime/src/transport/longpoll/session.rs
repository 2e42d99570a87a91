//! One LongPoll session: the socket actor and outbound queue a WebSocket connection would
//! own, a task that ends the session when the client stops polling (or the actor, the drain
//! or the runtime ends it), and the poll and post a request performs on it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use ractor::ActorRef;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::super::connection::{Limits, inbound};
use super::super::inflow::Inflow;
use super::super::{CloseReason, Control, OutFrame, Outbound, OutboundReceiver};
use super::Sessions;
use crate::RuntimeShared;
use crate::drain::DrainTicket;
use crate::protocol::Vsn;
use crate::socket_actor::SocketMsg;
use crate::transport::socket_ids::Reservation;

/// Most messages in one poll's answer, and most lines in one POST (phoenix.js 1.8.9+ sends
/// at most this many).
pub(super) const MAX_BATCH: usize = 100;

/// A live session, shared by its task and the requests that reach it.
pub(super) struct Session {
    pub(super) id: u64,
    actor: ActorRef<SocketMsg>,
    out: Outbound,
    control: Arc<Control>,
    /// One poll at a time takes from the queue.
    rx: tokio::sync::Mutex<OutboundReceiver>,
    /// One POST at a time.
    post: tokio::sync::Mutex<Inflow>,
    /// Told at the start and end of every poll: the session is in use.
    polled: Notify,
    vsn: Vsn,
    limits: Limits,
}

/// What a POST came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Posted {
    /// Every line was handed to the socket actor.
    Ok,
    /// A line found no room in the inbound window within the poll window.
    TimedOut,
    /// The session is over (a malformed line ends it).
    Gone,
}

impl Session {
    pub(super) fn new(
        id: u64,
        actor: ActorRef<SocketMsg>,
        out: Outbound,
        control: Arc<Control>,
        rx: OutboundReceiver,
        vsn: Vsn,
        shared: &RuntimeShared,
    ) -> Self {
        let config = &shared.config;
        Self {
            id,
            actor,
            out,
            control,
            rx: tokio::sync::Mutex::new(rx),
            post: tokio::sync::Mutex::new(Inflow::new(
                config.max_messages_per_second,
                config.max_messages_burst,
            )),
            polled: Notify::new(),
            vsn,
            limits: Limits {
                topic: config.max_topic_bytes,
            },
        }
    }

    /// Whether the session has ended (or is ending).
    pub(super) fn closed(&self) -> bool {
        self.control.reason().is_some()
    }

    /// Waits up to `window` for a message, then takes what else is queued, up to
    /// [`MAX_BATCH`] messages. Empty: nothing came (or the session ended).
    pub(super) async fn poll(&self, window: Duration) -> Vec<String> {
        self.polled.notify_one();
        let rx = self.rx.lock().await;
        let mut messages = Vec::new();
        if let Some(first) = rx.try_recv() {
            push_frame(&mut messages, first);
        } else if !self.closed() {
            tokio::select! {
                frame = rx.recv() => push_frame(&mut messages, frame),
                () = self.control.closed() => {}
                () = tokio::time::sleep(window) => {}
            }
        }
        while messages.len() < MAX_BATCH {
            match rx.try_recv() {
                Some(frame) => push_frame(&mut messages, frame),
                None => break,
            }
        }
        drop(rx);
        self.polled.notify_one();
        messages
    }

    /// Hands the frames of a POST body to the socket actor, in order, as a WebSocket
    /// connection hands on its frames (same decoding, name limits, heartbeat answers and
    /// inbound window). A malformed line ends the session.
    pub(super) async fn post(&self, lines: Vec<Message>, window: Duration) -> Posted {
        let inflow = self.post.lock().await;
        for message in lines {
            if self.closed() {
                return Posted::Gone;
            }
            let cost = Inflow::cost(&message);
            let permit = match timeout(window, inflow.window(cost)).await {
                Ok(permit) => permit,
                Err(_) => return Posted::TimedOut,
            };
            if let Err(reason) = inbound(
                message,
                self.vsn,
                self.limits,
                &self.actor,
                &self.out,
                permit,
            ) {
                self.control.close(reason);
                return Posted::Gone;
            }
        }
        Posted::Ok
    }

    /// Ends the session with `reason` (a request found it malformed).
    pub(super) fn close(&self, reason: CloseReason) {
        self.control.close(reason);
    }
}

/// Appends the message(s) of one queued frame as strings: text as is, the fragments of one
/// message joined, binary as base64.
fn push_frame(messages: &mut Vec<String>, frame: OutFrame) {
    let joined = matches!(frame, OutFrame::Fragments(_));
    let mut buffer = BytesMut::new();
    for message in frame.into_messages() {
        let (bytes, binary): (Bytes, bool) = match message {
            Message::Text(text) => (Bytes::from(text), false),
            Message::Binary(bytes) => (bytes, true),
            Message::Frame(frame) => (frame.into_payload(), false),
            _ => continue,
        };
        if joined {
            buffer.extend_from_slice(&bytes);
        } else if binary {
            messages.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
        } else {
            messages.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    if joined {
        messages.push(String::from_utf8_lossy(&buffer).into_owned());
    }
}

/// What the session task holds until the session ends.
pub(super) struct Holds {
    pub(super) actor_done: JoinHandle<()>,
    pub(super) ticket: DrainTicket,
    pub(super) reservation: Option<Reservation>,
}

/// Runs until the session ends: no poll for 1.5 windows (idle), the actor's end, a
/// disconnect, the drain or the runtime's shutdown. Then the session leaves the table (a
/// request naming it gets 410) and the socket actor is stopped, as a WebSocket's is.
pub(super) async fn run(
    session: Arc<Session>,
    sessions: Arc<Sessions>,
    holds: Holds,
    shared: Arc<RuntimeShared>,
) {
    let Holds {
        mut actor_done,
        ticket,
        reservation,
    } = holds;
    let config = &shared.config;
    let idle = config.longpoll_window.mul_f64(1.5);
    let control = session.control.clone();
    let mut actor_ended = false;
    loop {
        tokio::select! {
            () = control.closed() => break,
            () = shared.shutdown.cancelled() => {
                control.close(CloseReason::Shutdown);
                break;
            }
            _ = &mut actor_done => {
                actor_ended = true;
                control.close(CloseReason::Internal);
                break;
            }
            polled = timeout(idle, session.polled.notified()) => {
                if polled.is_err() {
                    control.close(CloseReason::Idle);
                    break;
                }
            }
        }
    }
    if let Some(reason) = control.reason() {
        shared.meters.close_code(reason.code());
        if *reason == CloseReason::Drain {
            // The replies the drain waited for are queued: give the client a window to
            // fetch them.
            let probe = session.out.probe();
            let _ = timeout(config.longpoll_window, async {
                while probe.frames() > 0 {
                    session.polled.notified().await;
                }
            })
            .await;
        }
    }
    sessions.remove(session.id);
    drop(ticket);
    let _ = session.actor.cast(SocketMsg::Closed);
    if !actor_ended && timeout(config.close_grace, &mut actor_done).await.is_err() {
        tracing::warn!("socket actor did not stop within the grace period; killing it");
        session.actor.kill();
    }
    drop(reservation);
    shared.metrics_disconnected(control.reason() == Some(&CloseReason::SlowConsumer));
}
