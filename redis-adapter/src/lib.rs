//! A Redis pub/sub [`Adapter`] for `fawkes-runtime`: the nodes of a cluster exchange their
//! frames (broadcasts, presence, direct pushes, heartbeats) through one Redis server.
//!
//! ```no_run
//! # async fn run() -> Result<(), fawkes_redis::RedisAdapterError> {
//! use std::sync::Arc;
//! use fawkes_redis::{RedisAdapter, RedisConfig};
//!
//! let adapter = RedisAdapter::new(RedisConfig::new("redis://127.0.0.1:6379/", "node-1"))?;
//! let config = fawkes_runtime::RuntimeConfig {
//!     adapter: Some(Arc::new(adapter)),
//!     ..Default::default()
//! };
//! # let _ = config; Ok(()) }
//! ```
//!
//! # Design
//!
//! **Channels.** Two Redis channels per node: `{prefix}:all`, where
//! [`Adapter::publish`] sends, and `{prefix}:node:{node_name}`, where
//! [`Adapter::send_to`] reaches one node. Each node subscribes to both over *one* pub/sub
//! connection. Redis delivers a channel's messages in the order they were published, and
//! one connection's messages in the order they came.
//!
//! **Wire.** Each Redis message is a small header naming the sending node (a version byte,
//! the name's length as a big-endian `u16`, the name) followed by the frame. A node drops its
//! own messages (on `{prefix}:all`, and the probes on its own channel, see *Outages*) by
//! reading the header alone: frames are opaque and never parsed here. A message that is not
//! in this form is dropped (logged at debug level).
//!
//! **Publishing.** [`Adapter::publish`] and [`Adapter::send_to`] never block: they put the
//! frame on *one* bounded queue with `try_send`. The queue is bounded twice, by
//! [`RedisConfig::queue`] frames (16,384 by default) and by [`RedisConfig::queue_bytes`] bytes
//! of frames (64 MiB by default; an empty queue takes any one frame): a frame that finds it
//! full is dropped and counted ([`RedisStats::dropped`]). *One* publisher task drains the
//! queue in order over one Redis connection, sending what has piled up as a pipeline of
//! `PUBLISH`es (up to 512 frames or about 1 MiB per round trip). One queue, one task, one
//! connection: the frames of a node reach each other node in the order they were sent,
//! published or sent to it alone (point 4 of the adapter contract). While the publishing
//! connection is down, frames are dropped and counted, never kept for later.
//!
//! **What is counted, what is reported.** Redis answers each `PUBLISH` of a pipeline on its
//! own: frames it refused (an ACL, say) count as dropped, the others as published
//! ([`RedisStats::published`]). When the link itself fails under a pipeline, the client
//! cannot tell which of its frames Redis received before it did, so the whole pipeline
//! counts as dropped. Frames dropped while the state reported to the runtime is
//! [`AdapterState::Connected`] (a full queue; frames refused on some channels while the
//! link stays up) are also reported to it ([`Inbound::lost`]): presence changes among them
//! are lost, and the runtime sends its presence state again. Frames dropped while the state
//! is [`AdapterState::Disconnected`] (the link down, or failing under them) need no report:
//! the link's return resynchronises; nor do those dropped after [`Adapter::close`].
//!
//! **Outages.** Each connection has its own task. When either fails (an error, a closed
//! connection, an unanswered `PING` on a quiet link) the adapter reports
//! [`AdapterState::Disconnected`] to the runtime and logs *one* warning for the outage (the
//! failed attempts that follow at debug level, "redis link still down"), then relinks with a
//! backoff of 100 ms doubling to at most 1 s, so delivery resumes within about a second of
//! Redis answering again (the design target is well under 5 s). The backoff starts over only
//! once a link has proved itself by staying up 5 s: a link that opens and then fails on use
//! is retried no faster than one that cannot open (such a link, if the probe below does not
//! catch its failure, is lost and restored at most about once a second, each time logged and
//! reported). The publishing connection counts as up
//! only once Redis has published a probe on it (an empty frame on the node's own channel,
//! which its subscriber drops): a node whose Redis user may not `PUBLISH` stays
//! [`AdapterState::Disconnected`], retrying with the backoff, rather than flapping between
//! states. If Redis refuses the `PUBLISH`es of a pipeline, the probe is sent again: refused
//! too, the link counts as lost (the user lost the right to publish); taken, the link stays
//! up, the refused frames are dropped and reported lost, and the refusal is logged as a
//! warning once per link (then at debug level). The subscriber resubscribes to both
//! channels; losing it also makes the publisher relink, as its connection went with the same
//! server. The state is [`AdapterState::Connected`] only while the subscription is
//! established *and* the publishing connection answers; on getting there after an outage the
//! adapter logs one info line, "redis link restored", counts a reconnection
//! ([`RedisStats::reconnects`]), and the runtime resynchronises with the other nodes.
//! Delivery is at most once: what was published during an outage is lost, as in
//! Phoenix.PubSub.
//!
//! **Starting.** [`RedisAdapter::new`] only checks the configuration: Redis need not be up.
//! Called inside a Tokio runtime it starts linking at once (so the link may be up by the time
//! the runtime starts); otherwise it does so in [`Adapter::start`]. Frames published before
//! the link is up are dropped; [`RedisAdapter::connected`] waits for it.
//!
//! **Stopping.** [`Adapter::close`] (called by the runtime when it shuts down, right after it
//! publishes that the node leaves) sends everything queued before the call, within its
//! deadline, then stops both tasks. Dropping the adapter stops them at once.
//!
//! **Metrics.** Through the `metrics` facade, as the runtime's (a no-op unless the
//! application installed a recorder before building the adapter): counters
//! `fawkes_redis_reconnects_total` ([`RedisStats::reconnects`]) and
//! `fawkes_redis_frames_dropped_total` ([`RedisStats::dropped`]). The runtime's
//! `Runtime::record_gauges` adds the cluster's view (members, link, frames in, out and lost).
//!
//! # Testing
//!
//! With the `testing` feature, `fawkes_redis::testing::RedisServer` runs a throwaway
//! `redis-server` on a free port, which can be stopped and started again to test outages.

#![deny(missing_docs)]

mod link;
mod publisher;
mod subscriber;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use fawkes_runtime::{Adapter, AdapterState, BoxFuture, Inbound};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::link::Shared;
use crate::publisher::{Outgoing, Target};

/// How a node links to Redis.
#[derive(Clone)]
pub struct RedisConfig {
    /// The server: `redis://[user:password@]host[:port][/db]` (or `unix:///path`).
    pub url: String,
    /// This node's name, unique in the cluster (see [`Adapter::node_name`]).
    pub node_name: String,
    /// The channels' common prefix, `"fawkes"` by default: clusters sharing a Redis server
    /// need different prefixes.
    pub prefix: String,
    /// Frames waiting to be published before more are dropped; 16,384 by default.
    pub queue: usize,
    /// Bytes of frames waiting to be published before more are dropped; 64 MiB by default.
    /// (An empty queue takes any one frame, however large.)
    pub queue_bytes: usize,
}

impl RedisConfig {
    /// Node `node_name` linking to the Redis server at `url`, with the default prefix and
    /// queue bounds.
    pub fn new(url: impl Into<String>, node_name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            node_name: node_name.into(),
            prefix: "fawkes".into(),
            queue: 16_384,
            queue_bytes: 64 * 1024 * 1024,
        }
    }
}

impl fmt::Debug for RedisConfig {
    /// The URL's password, if any, is not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("node_name", &self.node_name)
            .field("prefix", &self.prefix)
            .field("queue", &self.queue)
            .field("queue_bytes", &self.queue_bytes)
            .finish()
    }
}

/// `url` with what is between `://` and `@` (user and password) hidden.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(end)) if start + 3 <= end => {
            format!("{}***{}", &url[..start + 3], &url[end..])
        }
        _ => url.to_owned(),
    }
}

/// What is wrong with the scheme of a URL the client refused, if that is it.
fn url_problem(url: &str) -> Option<String> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Some("no scheme".into());
    };
    match scheme.to_ascii_lowercase().as_str() {
        "redis" | "valkey" | "unix" | "redis+unix" | "valkey+unix" => None,
        "rediss" | "valkeys" => Some("TLS (rediss://) is not supported by this build".into()),
        _ => Some(format!("unsupported scheme {scheme:?}")),
    }
}

/// A configuration [`RedisAdapter::new`] refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisAdapterError {
    /// The URL is not one the Redis client accepts.
    #[error(
        "invalid Redis URL {url:?}: {reason} (expected redis://[user:password@]host[:port][/db] or unix:///path)"
    )]
    InvalidUrl {
        /// The URL, its password hidden.
        url: String,
        /// What the client found wrong with it.
        reason: String,
    },
    /// The node name is empty, or longer than 65,535 bytes.
    #[error("invalid node name: it must be 1 to 65,535 bytes long (got {0} bytes)")]
    InvalidNodeName(usize),
    /// The channel prefix is empty.
    #[error("invalid channel prefix: it must not be empty")]
    EmptyPrefix,
    /// The publish queue has no room.
    #[error("invalid publish queue: it must hold at least one frame")]
    EmptyQueue,
    /// The publish queue's byte bound is zero.
    #[error("invalid publish queue: its byte bound (queue_bytes) must not be zero")]
    EmptyQueueBytes,
}

/// A snapshot of an adapter's link and counters ([`RedisAdapter::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisStats {
    /// The link's state, as last reported to the runtime.
    pub state: AdapterState,
    /// Frames Redis accepted for publishing.
    pub published: u64,
    /// Frames not sent: the queue was full (in frames or in bytes), the link was down, it
    /// failed while they were on their way, or Redis refused them. Those dropped while
    /// [`RedisStats::state`] was [`AdapterState::Connected`] are also reported to the runtime
    /// ([`Inbound::lost`]).
    pub dropped: u64,
    /// Frames received from other nodes and handed to the runtime.
    pub received: u64,
    /// Times the link was restored after an outage (the first link not counted).
    pub reconnects: u64,
}

/// The tasks, once spawned; before, what they need.
enum Tasks {
    /// Not spawned yet (no Tokio runtime when the adapter was made).
    Pending(mpsc::Receiver<Outgoing>),
    Running {
        publisher: JoinHandle<()>,
        subscriber: JoinHandle<()>,
    },
    Stopped,
}

/// Links a node to the others through Redis pub/sub: see the crate docs for the design.
pub struct RedisAdapter {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Outgoing>,
    /// `true` on `close`; dropped with the adapter, which stops the tasks too.
    stop: watch::Sender<bool>,
    tasks: Mutex<Tasks>,
}

impl RedisAdapter {
    /// An adapter for `config`. Checks the URL (scheme and syntax), the node name, the prefix
    /// and the queue; does not need Redis to be up: it links in the background and keeps
    /// retrying (see the crate docs).
    pub fn new(config: RedisConfig) -> Result<Self, RedisAdapterError> {
        let client = redis::Client::open(config.url.as_str()).map_err(|e| {
            RedisAdapterError::InvalidUrl {
                url: redact(&config.url),
                reason: url_problem(&config.url).unwrap_or_else(|| e.to_string()),
            }
        })?;
        let header = wire::header(&config.node_name)
            .ok_or(RedisAdapterError::InvalidNodeName(config.node_name.len()))?;
        if config.prefix.is_empty() {
            return Err(RedisAdapterError::EmptyPrefix);
        }
        if config.queue == 0 {
            return Err(RedisAdapterError::EmptyQueue);
        }
        if config.queue_bytes == 0 {
            return Err(RedisAdapterError::EmptyQueueBytes);
        }
        let shared = Arc::new(Shared::new(
            config.node_name,
            client,
            &config.prefix,
            header,
            config.queue_bytes,
        ));
        let (queue, rx) = mpsc::channel(config.queue);
        let adapter = Self {
            shared,
            queue,
            stop: watch::Sender::new(false),
            tasks: Mutex::new(Tasks::Pending(rx)),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            adapter.spawn();
        }
        Ok(adapter)
    }

    /// The link's state and the adapter's counters.
    pub fn stats(&self) -> RedisStats {
        let shared = &self.shared;
        RedisStats {
            state: shared.state(),
            published: shared.published.load(Ordering::Relaxed),
            dropped: shared.dropped.load(Ordering::Relaxed),
            received: shared.received.load(Ordering::Relaxed),
            reconnects: shared.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Waits until the link is [`AdapterState::Connected`], at most `within`; `false` if it
    /// is not by then. The link starts when the adapter is made inside a Tokio runtime, or
    /// else when the runtime starts it.
    pub async fn connected(&self, within: Duration) -> bool {
        let mut state = self.shared.watch_state();
        let linked = state.wait_for(|s| *s == AdapterState::Connected);
        matches!(tokio::time::timeout(within, linked).await, Ok(Ok(_)))
    }

    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the publisher and subscriber tasks, unless they are already running.
    fn spawn(&self) {
        let mut tasks = self.tasks();
        if !matches!(*tasks, Tasks::Pending(_)) {
            return;
        }
        let Tasks::Pending(rx) = std::mem::replace(&mut *tasks, Tasks::Stopped) else {
            return;
        };
        let publisher = tokio::spawn(publisher::run(
            self.shared.clone(),
            rx,
            self.stop.subscribe(),
        ));
        let subscriber = tokio::spawn(subscriber::run(self.shared.clone(), self.stop.subscribe()));
        *tasks = Tasks::Running {
            publisher,
            subscriber,
        };
    }

    /// Queues `frame` for the publisher, or drops it (counted, and reported to the runtime
    /// if the link is reported up): the link is down, or the queue is full in frames or in
    /// bytes.
    fn enqueue(&self, target: Target, frame: Bytes) {
        let shared = &self.shared;
        let linked =
            shared.publisher_up.load(Ordering::Acquire) && !shared.closing.load(Ordering::Acquire);
        if !linked {
            shared.drop_frames(1);
            return;
        }
        let len = frame.len();
        let before = shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if (before > 0 && before + len > shared.max_queued_bytes)
            || self.queue.try_send(Outgoing { target, frame }).is_err()
        {
            shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            shared.drop_frames(1);
        }
    }
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("node", &self.shared.node)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Adapter for RedisAdapter {
    fn node_name(&self) -> &str {
        &self.shared.node
    }

    fn publish(&self, frame: Bytes) {
        self.enqueue(Target::All, frame);
    }

    fn send_to(&self, node: &str, frame: Bytes) {
        if node == self.shared.node {
            return;
        }
        let channel = format!("{}{node}", self.shared.node_channel_prefix);
        self.enqueue(Target::Node(channel), frame);
    }

    fn start(&self, inbound: Inbound) {
        self.shared.attach(inbound);
        self.spawn();
    }

    fn close(&self, deadline: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.shared.closing.store(true, Ordering::Release);
            self.stop.send_replace(true);
            let tasks = std::mem::replace(&mut *self.tasks(), Tasks::Stopped);
            if let Tasks::Running {
                mut publisher,
                subscriber,
            } = tasks
            {
                if tokio::time::timeout(deadline, &mut publisher)
                    .await
                    .is_err()
                {
                    tracing::debug!(
                        node = %self.shared.node,
                        "redis: close deadline passed; frames still queued are dropped"
                    );
                    publisher.abort();
                }
                subscriber.abort();
            }
            self.shared.closed();
        })
    }
}

impl Drop for RedisAdapter {
    fn drop(&mut self) {
        if let Tasks::Running {
            publisher,
            subscriber,
        } = std::mem::replace(&mut *self.tasks(), Tasks::Stopped)
        {
            publisher.abort();
            subscriber.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        let config = RedisConfig::new("redis://:pw@h/", "n");
        assert!(!format!("{config:?}").contains("pw"));
    }

    #[test]
    fn the_configuration_is_checked_without_redis() {
        for (config, message) in [
            (RedisConfig::new("http://h/", "n"), "invalid Redis URL"),
            (RedisConfig::new("not a url", "n"), "invalid Redis URL"),
            (RedisConfig::new("redis://h/", ""), "invalid node name"),
            (
                RedisConfig {
                    prefix: String::new(),
                    ..RedisConfig::new("redis://h/", "n")
                },
                "prefix",
            ),
            (
                RedisConfig {
                    queue: 0,
                    ..RedisConfig::new("redis://h/", "n")
                },
                "at least one frame",
            ),
            (
                RedisConfig {
                    queue_bytes: 0,
                    ..RedisConfig::new("redis://h/", "n")
                },
                "queue_bytes",
            ),
        ] {
            let error = RedisAdapter::new(config).expect_err("refused");
            assert!(error.to_string().contains(message), "{error}");
        }
        // Made outside a Tokio runtime: nothing is spawned until `start`.
        let adapter = RedisAdapter::new(RedisConfig::new("redis://127.0.0.1:1/", "n"))
            .expect("a valid configuration");
        assert_eq!(adapter.stats().state, AdapterState::Disconnected);
        adapter.publish(Bytes::from_static(b"x"));
        assert_eq!(adapter.stats().dropped, 1);
    }
}
