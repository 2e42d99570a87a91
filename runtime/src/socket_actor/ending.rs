//! How a socket actor's joins end.
//!
//! Every way a join ends goes through [`SocketState::end`]: a leave, a stop the channel asks
//! for, a crash, a rejoin of its topic that replaces it, a join refused or failed after its
//! `join` callback ran, a lost subscription, the connection closing. It releases what the
//! join held ([`SocketState::release`]: its registry entry, its subscription, its presences),
//! tells the client, and runs `terminate` where that applies. An actor that dies without
//! running its code (killed after `close_grace`, or a panic) cannot run `terminate`; its
//! state's `Drop` releases every join it had, the one in its `join` callback included.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::SocketState;
use crate::channel::StopReason;
use crate::metering::PatternMeters;
use crate::mount::{ErasedInstance, crash_payload};
use crate::protocol::{self, Ref};
use crate::pubsub::SubscriberId;
use crate::transport::encoded_to_message;

/// A join that is ending: taken out of the socket's joins, or one whose join did not
/// complete.
pub(super) struct Ending<A> {
    pub(super) topic: Arc<str>,
    pub(super) join_ref: Ref,
    pub(super) subscriber: SubscriberId,
    /// The channel's instance (its state), if its `join` succeeded.
    pub(super) instance: Option<Box<dyn ErasedInstance<A>>>,
    /// Its pattern's metrics (crashes).
    pub(super) meters: Arc<PatternMeters>,
}

/// How a join ends, and what the client is told.
pub(super) enum How {
    /// Stopped on purpose (by the channel, the client, a rejoin) or by the runtime:
    /// `terminate` runs with `reason`. If `tell`, the client gets `phx_close` (graceful
    /// reason) or `phx_error`, preceded by `reply` (the answer to the message that ended it)
    /// in the same write; else only `reply`, if any.
    Stopped {
        reason: StopReason,
        tell: bool,
        reply: Option<Message>,
    },
    /// A callback failed: no `terminate` (its state may be broken); the client gets
    /// `phx_error` `{"reason":"channel_crash"}`.
    Crashed(String),
    /// The join did not complete (refused, crashed in `join`, or could not subscribe): its
    /// join reply tells the client. `terminate` runs (reason `Closed`) if it has an instance.
    NotJoined,
}

impl<A: Send + Sync + 'static> SocketState<A> {
    /// Takes the current join of `topic` out of the socket's joins and ends it. Returns the
    /// join_ref it had (`None`: no such join).
    pub(super) async fn end_join(&mut self, topic: &Arc<str>, how: How) -> Option<Ref> {
        let joined = self.channels.remove(topic)?;
        let join_ref = joined.join_ref.clone();
        let ending = Ending {
            topic: topic.clone(),
            join_ref: joined.join_ref,
            subscriber: joined.subscriber,
            instance: Some(joined.instance),
            meters: joined.meters.pattern().clone(),
        };
        self.end(ending, how).await;
        Some(join_ref)
    }

    /// Ends a join, whatever the way (see the module docs): the one place that does.
    pub(super) async fn end(&mut self, ending: Ending<A>, how: How) {
        let Ending {
            topic,
            join_ref,
            subscriber,
            instance,
            meters,
        } = ending;
        if self.joining.as_ref().is_some_and(|(_, s)| *s == subscriber) {
            self.joining = None;
        }
        // Before anything reaches the client: no direct push may follow the answer
        // (phoenix.js has dropped the channel by then), and presences are gone before the
        // client (or anyone it tells) can look.
        self.release(&topic, subscriber);
        let (reason, tell) = match how {
            How::Stopped {
                reason,
                tell,
                reply,
            } => {
                // The client is answered before `terminate` runs, as Phoenix does: a slow
                // `terminate` never delays the reply.
                let close = tell.then(|| {
                    encoded_to_message(if reason.is_graceful() {
                        protocol::encode_close(self.vsn, &join_ref, &topic)
                    } else {
                        protocol::encode_error(self.vsn, &join_ref, &topic, &error_payload(&reason))
                    })
                });
                // Queued as one batch: the writer sends both in one write.
                match (reply, close) {
                    (Some(reply), Some(close)) => {
                        self.out.send_batch(vec![reply, close]);
                    }
                    (Some(frame), None) | (None, Some(frame)) => {
                        self.out.send(frame);
                    }
                    (None, None) => {}
                }
                (reason, tell)
            }
            How::Crashed(error) => {
                meters.crashes.increment(1);
                tracing::error!(%topic, %error, "channel crashed");
                self.send(protocol::encode_error(
                    self.vsn,
                    &join_ref,
                    &topic,
                    &crash_payload(),
                ));
                return;
            }
            How::NotJoined => (StopReason::Closed, false),
        };
        let Some(mut instance) = instance else {
            return;
        };
        let outcome = instance.terminate(&reason).await;
        if let Err(e) = outcome.result {
            meters.crashes.increment(1);
            tracing::error!(%topic, error = %e, "channel terminate crashed");
        }
        if tell {
            // Protocol §3.4: what `terminate` pushes goes after the close (phoenix.js ignores it).
            self.push_all(&join_ref, &topic, outcome.pushes);
        }
    }

    /// The connection is gone: end every join (`terminate` with `Closed`), then leave the
    /// socket registry.
    pub(super) async fn shutdown(&mut self) {
        let topics = self.channels.topics();
        for topic in topics {
            let how = How::Stopped {
                reason: StopReason::Closed,
                tell: false,
                reply: None,
            };
            self.end_join(&topic, how).await;
        }
        // Dropping the registration unregisters the socket.
        self.registered = None;
    }
}

impl<A> SocketState<A> {
    /// What a join holds outside the socket actor, released: direct pushes no longer reach
    /// it, its subscription and its presences go. Called by [`SocketState::end`] and by
    /// `Drop` only. Idempotent; safe for a join that never subscribed (an unsubscribe of an
    /// unknown id changes nothing).
    fn release(&self, topic: &str, subscriber: SubscriberId) {
        if let Some(registered) = &self.registered {
            registered.live.left(topic);
        }
        self.pubsub.unsubscribe(topic, subscriber);
        self.presence.untrack_owner(topic, subscriber);
    }
}

impl<A> Drop for SocketState<A> {
    /// Covers an actor that ends without `post_stop` (a panic or a kill): what its joins hold
    /// must not outlive it (`terminate` cannot run here).
    fn drop(&mut self) {
        let joins: Vec<(Arc<str>, SubscriberId)> = self
            .channels
            .take_all()
            .into_iter()
            .map(|(topic, joined)| (topic, joined.subscriber))
            .chain(self.joining.take())
            .collect();
        for (topic, subscriber) in joins {
            self.release(&topic, subscriber);
        }
        // `registered` unregisters itself when dropped with the state.
    }
}

fn error_payload(reason: &StopReason) -> Value {
    match reason {
        StopReason::Error(_) => crash_payload(),
        _ => json!({}),
    }
}
