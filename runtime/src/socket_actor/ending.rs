//! How a socket actor's joins end: on purpose (leave, stop, replaced), by a crash, with the
//! connection, or with the actor itself (its state's `Drop`).

use std::sync::Arc;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::SocketState;
use crate::channel::StopReason;
use crate::mount::crash_payload;
use crate::protocol::{self, Ref};
use crate::transport::encoded_to_message;

impl<A: Send + Sync + 'static> SocketState<A> {
    /// Ends a join on purpose (or on request): `terminate`, unsubscribe, and — if `notify` —
    /// `phx_close` (graceful reason) or `phx_error`, preceded by `reply` (the answer to the
    /// message that ended it) in the same write. Returns the join_ref it had.
    pub(super) async fn stop_channel(
        &mut self,
        topic: &Arc<str>,
        reason: StopReason,
        notify: bool,
        reply: Option<Message>,
    ) -> Option<Ref> {
        let mut joined = self.channels.remove(topic)?;
        // Before any reply goes out: no direct push may follow it (phoenix.js has dropped the
        // channel by then).
        self.left(topic);
        self.pubsub.unsubscribe(topic, joined.subscriber);
        self.presence.untrack_owner(topic, joined.subscriber);
        // The client is answered before `terminate` runs, as Phoenix does: a slow `terminate`
        // never delays the reply.
        if notify {
            let close = if reason.is_graceful() {
                protocol::encode_close(self.vsn, &joined.join_ref, topic)
            } else {
                protocol::encode_error(self.vsn, &joined.join_ref, topic, &error_payload(&reason))
            };
            let close = encoded_to_message(close);
            // Queued as one batch: the writer sends both in one write.
            match reply {
                Some(reply) => self.out.send_batch(vec![reply, close]),
                None => self.out.send(close),
            };
        } else if let Some(reply) = reply {
            self.out.send(reply);
        }
        let outcome = joined.instance.terminate(&reason).await;
        if let Err(e) = outcome.result {
            tracing::error!(%topic, error = %e, "channel terminate crashed");
        }
        if notify {
            // Protocol §3.4: what `terminate` pushes goes after the close (phoenix.js ignores it).
            self.push_all(&joined.join_ref, topic, outcome.pushes);
        }
        Some(joined.join_ref)
    }

    /// A callback failed: drop the join (no `terminate`: its state may be broken) and tell the
    /// client `phx_error`.
    pub(super) fn crash(&mut self, topic: &Arc<str>, error: &str) {
        tracing::error!(%topic, %error, "channel crashed");
        let Some(joined) = self.channels.remove(topic) else {
            return;
        };
        self.left(topic);
        self.pubsub.unsubscribe(topic, joined.subscriber);
        self.presence.untrack_owner(topic, joined.subscriber);
        self.send(protocol::encode_error(
            self.vsn,
            &joined.join_ref,
            topic,
            &crash_payload(),
        ));
    }

    /// The connection is gone: terminate every join, drop every subscription.
    pub(super) async fn shutdown(&mut self) {
        let topics: Vec<Arc<str>> = self.channels.keys().cloned().collect();
        for topic in topics {
            self.stop_channel(&topic, StopReason::Closed, false, None)
                .await;
        }
        // Dropping the registration unregisters the socket.
        self.registered = None;
    }

    /// The join of `topic` has ended: direct pushes no longer reach it.
    pub(super) fn left(&self, topic: &str) {
        if let Some(registered) = &self.registered {
            registered.session.left(topic);
        }
    }
}

impl<A> Drop for SocketState<A> {
    /// Covers an actor that ends without `post_stop` (a panic or a kill): its subscriptions
    /// and presences must not outlive it.
    fn drop(&mut self) {
        let joins = self
            .channels
            .drain()
            .map(|(topic, joined)| (topic, joined.subscriber));
        for (topic, subscriber) in joins.chain(self.joining.take()) {
            self.pubsub.unsubscribe(&topic, subscriber);
            self.presence.untrack_owner(&topic, subscriber);
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
