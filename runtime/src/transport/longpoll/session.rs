//! One LongPoll session: the socket actor and outbound queue a WebSocket connection would
//! own, a task that ends the session when the client stops polling (or the actor, the drain
//! or the runtime ends it), and the poll and post a request performs on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;

use super::super::connection::{Limits, inbound};
use super::super::inflow::Inflow;
use super::super::{CloseReason, Control, Outbound, OutboundReceiver};
use super::Sessions;
use super::poll::{Polled, Polls};
use crate::RuntimeShared;
use crate::drain::DrainTicket;
use crate::metering::Transport;
use crate::protocol::Vsn;
use crate::socket_actor::SocketMsg;
use crate::transport::socket_ids::Reservation;

/// Most lines in one POST (phoenix.js 1.8.9+ sends at most this many).
pub(super) const MAX_BATCH: usize = 100;

/// A live session, shared by its task and the requests that reach it.
pub(super) struct Session {
    pub(super) id: u64,
    actor: ActorRef<SocketMsg>,
    out: Outbound,
    control: Arc<Control>,
    /// The outbound queue's receiver, which the polls take from.
    polls: Polls,
    /// A POST is in flight (at most one is).
    posting: AtomicBool,
    /// The message rate and inbound window of the session's POSTs.
    inflow: Inflow,
    /// Told at the start and end of every poll: the session is in use.
    polled: Notify,
    vsn: Vsn,
    limits: Limits,
}

/// The session's one POST in flight, until dropped.
pub(super) struct InFlight<'a>(&'a AtomicBool);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What a POST came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Posted {
    /// Every line was handed to the socket actor.
    Ok,
    /// The lines could not all be handed on within the window (the message rate or the
    /// inbound window held them back); the rest were dropped.
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
            polls: Polls::new(rx),
            posting: AtomicBool::new(false),
            inflow: Inflow::new(config.max_messages_per_second, config.max_messages_burst),
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

    /// The serializer version the session was opened with.
    pub(super) fn vsn(&self) -> Vsn {
        self.vsn
    }

    /// A poll: waits up to `window` for a message, then takes everything queued (see
    /// [`Polls::take`]). The session is in use meanwhile.
    pub(super) async fn poll(&self, window: Duration) -> Polled {
        self.polled.notify_one();
        let polled = self.polls.take(&self.control, window).await;
        self.polled.notify_one();
        polled
    }

    /// The session's one POST in flight, unless another one is.
    pub(super) fn begin_post(&self) -> Option<InFlight<'_>> {
        self.posting
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| InFlight(&self.posting))
    }

    /// Hands the frames of a POST body to the socket actor, in order, as a WebSocket
    /// connection hands on its frames (same decoding, name limits, heartbeat answers, message
    /// rate and inbound window), all before `deadline` (the POST's, its body's read
    /// included). A malformed line ends the session.
    pub(super) async fn post(
        &self,
        _in_flight: &InFlight<'_>,
        lines: Vec<Message>,
        deadline: Instant,
        shared: &RuntimeShared,
    ) -> Posted {
        for message in lines {
            if self.closed() {
                return Posted::Gone;
            }
            // Every message counts against the rate, heartbeats included.
            while let Err(until) = self.inflow.rate() {
                shared.metrics_rate_limited();
                if until > deadline {
                    return Posted::TimedOut;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    () = self.control.closed() => return Posted::Gone,
                }
            }
            let cost = Inflow::cost(&message);
            let permit = match self.inflow.try_window(cost) {
                Some(permit) => Some(permit),
                None => {
                    shared.metrics_window_full();
                    tokio::select! {
                        permit = timeout_at(deadline, self.inflow.window(cost)) => match permit {
                            Ok(permit) => permit,
                            Err(_) => return Posted::TimedOut,
                        },
                        () = self.control.closed() => return Posted::Gone,
                    }
                }
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

/// As good as never: 30 years, what tokio uses for a sleep it cannot reach.
const FAR_FUTURE: Duration = Duration::from_secs(86400 * 365 * 30);

/// `window` from now, or as good as never if that is past what an `Instant` can hold (an
/// embedder may set any `Duration`).
pub(super) fn deadline(window: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(window).unwrap_or(now + FAR_FUTURE)
}

/// What the session task holds until the session ends.
pub(super) struct Holds {
    pub(super) actor_done: JoinHandle<()>,
    pub(super) ticket: DrainTicket,
    pub(super) reservation: Option<Reservation>,
    /// The session's slot of the endpoint's connection caps, if it is under them.
    pub(super) slot: Option<Box<dyn Send + Sync>>,
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
        slot,
    } = holds;
    let config = &shared.config;
    // The session's queue counts in `fawkes_outbound_queue_max_frames` like a connection's.
    let _watched = shared.meters.watch_queue(session.out.probe());
    // 1.5 windows (saturating: a huge window must not overflow).
    let idle = config.longpoll_window.saturating_mul(3) / 2;
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
        shared
            .meters
            .transport(Transport::LongPoll)
            .close_code(reason.code());
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
    drop(slot);
    shared.metrics_disconnected(
        Transport::LongPoll,
        control.reason() == Some(&CloseReason::SlowConsumer),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_never_overflows() {
        let now = Instant::now();
        assert!(deadline(Duration::MAX) >= now + FAR_FUTURE);
        let soon = deadline(Duration::from_secs(1));
        assert!(soon > now && soon <= Instant::now() + Duration::from_secs(1));
    }
}
