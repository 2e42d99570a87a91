//! What the adapter and its two tasks share: names, counters, and the link's state, which is
//! [`AdapterState::Connected`] only while both the subscription and the publishing
//! connection are up.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use fawkes_runtime::{AdapterState, Inbound};
use tokio::sync::watch;

/// The first wait before reconnecting; doubled after each failed attempt.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest wait between attempts: delivery resumes within about a second of Redis
/// answering again.
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// A link that stayed up this long has proved itself: when it is lost, the backoff starts
/// over. One lost sooner (it opens, then fails on use) keeps the backoff where it was.
const PROVEN_AFTER: Duration = Duration::from_secs(5);

/// One of the two connections to Redis.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    /// The pub/sub connection, subscribed to both channels.
    Subscriber,
    /// The connection the queued frames are published over.
    Publisher,
}

/// The link as seen by both tasks, changed under one lock so that a state is reported, and
/// an outage logged, once.
#[derive(Default)]
struct Link {
    subscriber: bool,
    publisher: bool,
    /// Linked at least once.
    ever: bool,
    /// A warning was logged for the current outage.
    outage: bool,
    /// The runtime's inbound, once `start` gave it: it is told each change.
    inbound: Option<Inbound>,
}

/// Shared by the adapter and its tasks.
pub(crate) struct Shared {
    pub(crate) node: String,
    pub(crate) client: redis::Client,
    /// `{prefix}:all`.
    pub(crate) all_channel: String,
    /// `{prefix}:node:{node}`.
    pub(crate) own_channel: String,
    /// `{prefix}:node:`, the other nodes' channels without their names.
    pub(crate) node_channel_prefix: String,
    /// This node's message header (see `wire`).
    pub(crate) header: Vec<u8>,
    pub(crate) published: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    /// `fawkes_redis_frames_dropped_total` and `fawkes_redis_reconnects_total`, registered
    /// when the adapter is built (a no-op without a recorder installed before).
    frames_dropped_metric: metrics::Counter,
    reconnects_metric: metrics::Counter,
    /// Bytes of the frames waiting in the publish queue, and their cap.
    pub(crate) queued_bytes: AtomicUsize,
    pub(crate) max_queued_bytes: usize,
    /// The publishing connection is up: frames are queued, not dropped.
    pub(crate) publisher_up: AtomicBool,
    /// `close` was called: nothing more is queued, and losing the link is not an outage.
    pub(crate) closing: AtomicBool,
    /// Where received frames go, once `start` gave it.
    pub(crate) inbound: OnceLock<Inbound>,
    /// Bumped each time the subscription is lost: the publisher then drops its connection
    /// too (after a Redis restart it would be dead without knowing it yet).
    pub(crate) subscriber_losses: watch::Sender<u64>,
    state: watch::Sender<AdapterState>,
    link: Mutex<Link>,
}

impl Shared {
    pub(crate) fn new(
        node: String,
        client: redis::Client,
        prefix: &str,
        header: Vec<u8>,
        max_queued_bytes: usize,
    ) -> Self {
        Self {
            all_channel: format!("{prefix}:all"),
            own_channel: format!("{prefix}:node:{node}"),
            node_channel_prefix: format!("{prefix}:node:"),
            node,
            client,
            header,
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            frames_dropped_metric: metrics::counter!("fawkes_redis_frames_dropped_total"),
            reconnects_metric: metrics::counter!("fawkes_redis_reconnects_total"),
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes,
            publisher_up: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            inbound: OnceLock::new(),
            subscriber_losses: watch::Sender::new(0),
            state: watch::Sender::new(AdapterState::Disconnected),
            link: Mutex::new(Link::default()),
        }
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state last reported.
    pub(crate) fn state(&self) -> AdapterState {
        *self.state.borrow()
    }

    /// A receiver of state changes (for `RedisAdapter::connected`).
    pub(crate) fn watch_state(&self) -> watch::Receiver<AdapterState> {
        self.state.subscribe()
    }

    /// `frames` this node asked to send were dropped: they are counted, and reported to the
    /// runtime as lost if the link is reported [`AdapterState::Connected`] (frames dropped
    /// while it is reported down need no report: its return resynchronises; nor do those
    /// dropped after `close`, the node is leaving).
    pub(crate) fn drop_frames(&self, frames: u64) {
        if frames == 0 {
            return;
        }
        self.dropped.fetch_add(frames, Ordering::Relaxed);
        self.frames_dropped_metric.increment(frames);
        if self.state() == AdapterState::Connected
            && !self.closing.load(Ordering::Acquire)
            && let Some(inbound) = self.inbound.get()
        {
            inbound.lost(frames);
        }
    }

    /// A frame of `len` bytes left the publish queue.
    pub(crate) fn dequeued(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
    }

    /// `start` handed over the runtime's inbound: it learns the current state.
    pub(crate) fn attach(&self, inbound: Inbound) {
        let mut link = self.link();
        inbound.set_state(self.state());
        link.inbound = Some(inbound.clone());
        drop(link);
        if self.inbound.set(inbound).is_err() {
            tracing::debug!(
                node = %self.node,
                "redis adapter started twice: the first inbound stays"
            );
        }
    }

    /// `side` is linked; when both are, the link is [`AdapterState::Connected`].
    pub(crate) fn up(&self, side: Side) {
        let mut link = self.link();
        match side {
            Side::Subscriber => link.subscriber = true,
            Side::Publisher => {
                link.publisher = true;
                self.publisher_up.store(true, Ordering::Release);
            }
        }
        if !(link.subscriber && link.publisher) || self.state() == AdapterState::Connected {
            return;
        }
        if link.outage {
            if link.ever {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                self.reconnects_metric.increment(1);
            }
            tracing::info!(node = %self.node, "redis link restored");
        } else {
            tracing::info!(node = %self.node, "redis linked");
        }
        link.outage = false;
        link.ever = true;
        self.report(&link, AdapterState::Connected);
    }

    /// `side` lost its link or failed to make one: the link is
    /// [`AdapterState::Disconnected`], and the first failure of an outage is logged as a
    /// warning (the others at debug level).
    pub(crate) fn down(&self, side: Side, error: &dyn Display) {
        let mut link = self.link();
        match side {
            Side::Subscriber => link.subscriber = false,
            Side::Publisher => {
                link.publisher = false;
                self.publisher_up.store(false, Ordering::Release);
            }
        }
        let closing = self.closing.load(Ordering::Acquire);
        if link.outage || closing {
            tracing::debug!(node = %self.node, ?side, %error, "redis link still down");
        } else {
            link.outage = true;
            if link.ever {
                tracing::warn!(
                    node = %self.node, ?side, %error,
                    "redis link lost: frames to and from other nodes are dropped until it is restored; reconnecting"
                );
            } else {
                tracing::warn!(
                    node = %self.node, ?side, %error,
                    "redis not reachable: frames to and from other nodes are dropped until it is; retrying"
                );
            }
        }
        self.report(&link, AdapterState::Disconnected);
    }

    /// After `close`: unlinked, without a warning.
    pub(crate) fn closed(&self) {
        let mut link = self.link();
        link.subscriber = false;
        link.publisher = false;
        self.publisher_up.store(false, Ordering::Release);
        self.report(&link, AdapterState::Disconnected);
    }

    fn report(&self, link: &Link, state: AdapterState) {
        self.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
        if let Some(inbound) = &link.inbound {
            inbound.set_state(state);
        }
    }
}

/// Waits `wait` before the next attempt to link; `false` if the adapter stops meanwhile
/// (`close`, or the adapter dropped).
pub(crate) async fn pause(wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        _ = stop.changed() => false,
    }
}

/// Waits between attempts to link: 100 ms, doubling up to 1 s. It starts over only when a link
/// has proved itself by staying up [`PROVEN_AFTER`]: a link that opens and then fails at once
/// (Redis refusing what it is used for, say) is retried no faster than one that cannot open.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(BACKOFF_START)
    }

    /// The wait before the next attempt, after one that failed.
    pub(crate) fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_CAP);
        wait
    }

    /// The wait before relinking a link that was up for `held` and is lost.
    pub(crate) fn after_loss(&mut self, held: Duration) -> Duration {
        if held >= PROVEN_AFTER {
            self.0 = BACKOFF_START;
        }
        self.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap_and_starts_over_after_a_proven_link() {
        let mut backoff = Backoff::new();
        let waits: Vec<_> = (0..6).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        // Links that fail on use, however often, do not shorten the wait...
        for _ in 0..3 {
            assert_eq!(backoff.after_loss(Duration::ZERO), BACKOFF_CAP);
        }
        // ...one that held does.
        assert_eq!(backoff.after_loss(PROVEN_AFTER), BACKOFF_START);
        assert_eq!(backoff.next(), BACKOFF_START * 2);
    }
}
