//! Phoenix Channels for Rust: sockets, channels, presence and a PubSub on a ractor supervision
//! tree, speaking the protocol of the official Phoenix JavaScript client (npm `phoenix`), which
//! connects to it unmodified.
//!
//! What you write: a [`Socket`] (who may connect, and their assigns), [`Channel`]s (what
//! happens on a topic: `join`, `handle_in`, `handle_info`, `terminate`), and a [`SocketMount`]
//! tying the channels to topic patterns. What serves it: [`Endpoint::serve`] on a listener, or
//! [`Runtime::socket_service`], a `tower::Service` you mount in an axum (or any tower) app
//! beside your own routes. From anywhere: [`PubSub`] broadcasts, [`Presence`] lists,
//! [`SocketRegistry`] pushes to or disconnects one user's sockets.
//!
//! # A whole app
//!
//! A room where everyone sees who is online (phoenix.js's `Presence` reads `presence_state`
//! and `presence_diff`) and `shout`s reach everyone else, served on a port; then its test,
//! with the helpers of the `testing` feature.
//!
//! ```
//! use std::time::Duration;
//!
//! use fawkes_runtime::{
//!     Channel, ChannelContext, ChannelError, ConnectError, ConnectInfo, Continue, HandleIn,
//!     JoinOutcome, Params, Payload, Reply, Runtime, RuntimeConfig, Socket, SocketMount,
//! };
//! use serde_json::json;
//!
//! /// Who may connect: anyone with a `name`.
//! struct UserSocket;
//!
//! impl Socket for UserSocket {
//!     type Assigns = String;
//!
//!     async fn connect(&self, params: &Params, _: &ConnectInfo) -> Result<String, ConnectError> {
//!         params.get("name").map(str::to_owned).ok_or_else(ConnectError::forbidden)
//!     }
//! }
//!
//! /// `room:*`: presence, and `shout` to the others.
//! struct Room;
//!
//! /// What a join sends itself: track once the join reply is out.
//! struct AfterJoin;
//!
//! impl Channel for Room {
//!     type Assigns = String;
//!     type State = ();
//!     type Info = AfterJoin;
//!
//!     async fn join(&self, _topic: &str, _payload: Payload, ctx: &mut ChannelContext<Self>)
//!         -> Result<JoinOutcome<()>, ChannelError> {
//!         ctx.handle().send(AfterJoin); // handled right after the join, before anything else
//!         Ok(JoinOutcome::ok(()))
//!     }
//!
//!     async fn handle_info(&self, _: AfterJoin, _: &mut (), ctx: &mut ChannelContext<Self>)
//!         -> Result<Continue, ChannelError> {
//!         let name = ctx.assigns().clone();
//!         ctx.track(&name, json!({ "device": "web" })).await?;
//!         ctx.push_presence_state().await;
//!         Ok(Continue::Continue)
//!     }
//!
//!     async fn handle_in(&self, event: &str, payload: Payload, _: &mut (), ctx: &mut ChannelContext<Self>)
//!         -> Result<HandleIn, ChannelError> {
//!         if event != "shout" {
//!             return Ok(HandleIn::Reply(Reply::error("unknown event")));
//!         }
//!         #[derive(serde::Deserialize)]
//!         struct Shout { text: String }
//!         let Ok(Shout { text }) = payload.decode::<Shout>() else {
//!             return Ok(HandleIn::Reply(Reply::error("invalid shout")));
//!         };
//!         let from = ctx.assigns().clone();
//!         ctx.broadcast_from("shout", json!({ "from": from, "text": text }));
//!         Ok(HandleIn::Reply(Reply::ok()))
//!     }
//! }
//!
//! fn mount() -> SocketMount<UserSocket> {
//!     SocketMount::new(UserSocket).channel("room:*", Room)
//! }
//!
//! /// Serves ws://127.0.0.1:4000/socket/websocket until Ctrl-C.
//! async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//!     let runtime = Runtime::start(RuntimeConfig::default()).await?;
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
//!     // Any code holding the runtime can broadcast, outside any channel.
//!     runtime.pubsub().broadcast("room:lobby", "news", json!({ "hello": "world" }));
//!     let ctrl_c = async { tokio::signal::ctrl_c().await.unwrap_or_default() };
//!     runtime
//!         .endpoint()
//!         .socket("/socket", mount())? // an invalid topic pattern is reported here
//!         .serve(listener, ctrl_c, Duration::from_secs(10))
//!         .await;
//!     runtime.shutdown(Duration::from_secs(10)).await;
//!     Ok(())
//! }
//!
//! // The test (usually `#[tokio::test]` in your tests; `testing` in your dev-dependencies).
//! # #[cfg(feature = "testing")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use fawkes_runtime::testing::ChannelCase;
//!
//! let case = ChannelCase::start(mount()).await;
//! let mut ada = case.connect(&[("name", "ada")]).await.expect("ada connects");
//! let mut bob = case.connect(&[("name", "bob")]).await.expect("bob connects");
//! ada.subscribe_and_join("room:lobby", json!({})).await.expect("ada joins");
//! bob.join("room:lobby", json!({})).await.expect("bob joins");
//! bob.assert_push("presence_state", json!({})).await;
//!
//! let shout = ada.push("room:lobby", "shout", json!({ "text": "hi" })).await;
//! ada.assert_reply(&shout, "ok", json!({})).await;
//! bob.assert_push("shout", json!({ "from": "ada", "text": "hi" })).await;
//! case.assert_broadcast("shout", json!({ "from": "ada" })).await;
//! ada.refute_push("shout", json!({})).await; // broadcast_from: not back to the sender
//! # let _ = serve; // not run here: it would listen on a fixed port
//! # }
//! # #[cfg(not(feature = "testing"))]
//! # fn main() {}
//! ```
//!
//! More in `examples/` (run with `cargo run -p fawkes-runtime --example NAME`): `echo`, the
//! smallest server; `cursors`, cursor sharing with presence, `broadcast_from`, a ticker and an
//! admin-only topic, with its tests; `axum`, the socket mounted in an axum app; `crash`, a
//! channel that panics and takes only its own join down.
//!
//! # Metrics
//!
//! The runtime records through the [`metrics`](https://docs.rs/metrics) facade: nothing is
//! recorded, and nothing costs more than a no-op, until the application installs a recorder
//! (e.g. `metrics-exporter-prometheus`). Install it **before [`Runtime::start`]**: the
//! runtime's handles are registered there, and each channel pattern's when its mount is served
//! ([`Endpoint::socket`], [`Runtime::socket_service`]); a recorder installed later sees none
//! of them. Labels are low-cardinality: `pattern` is the mount pattern that matched the topic
//! (`room:*`), never a topic, a user or a socket id. A recorder that keeps histogram samples
//! until they are drained (`metrics-exporter-prometheus`'s does, until a render or an upkeep)
//! must be drained on a schedule: with `install_recorder` call
//! `PrometheusHandle::run_upkeep` every few seconds (or use `install`, which does), or every
//! client event's `handle_in` sample stays in memory.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `fawkes_connections_accepted_total` | counter | `transport` | WebSocket upgrades answered 101 (`websocket`), LongPoll sessions opened (`longpoll`) |
//! | `fawkes_connections_refused_total` | counter | `reason` | `node_cap`, `address_cap` (an [`Endpoint`]'s [`HttpLimits`]; counted at `accept`, so they include connections that would have been plain HTTP requests, and when a LongPoll session would go over them), `origin` (LongPoll: any request from a refused origin), `forbidden` (`connect` refused), `socket_id_cap` (`max_sockets_per_id`), `bad_request` (method, upgrade headers, subprotocols, `vsn`, an undecodable token), `shutting_down` |
//! | `fawkes_joins_total` | counter | `pattern`, `outcome` | `ok`, `error` (refused), `crash` |
//! | `fawkes_join_duration_seconds` | histogram | `pattern` | from the `join` callback's start to its reply queued |
//! | `fawkes_client_events_total` | counter | `pattern` | client events routed to `handle_in` |
//! | `fawkes_handle_in_duration_seconds` | histogram | `pattern` | `handle_in` |
//! | `fawkes_channel_crashes_total` | counter | `pattern` | a callback (`join`, `handle_in`, `handle_info`, `handle_out`, `terminate`) panicked or returned `Err` |
//! | `fawkes_broadcasts_total` | counter | `origin` | `local` (published here), `remote` (from another node) |
//! | `fawkes_deliveries_total` | counter | | frames broadcasts queued to subscribers (a `Subscription` counts one per broadcast; an intercepted event goes to `handle_out` instead) |
//! | `fawkes_deliveries_dropped_total` | counter | | frames not queued: a subscriber's queue was full |
//! | `fawkes_slow_consumer_disconnects_total` | counter | `transport` | connections (sessions) closed as slow consumers |
//! | `fawkes_close_codes_total` | counter | `code`, `transport` | the code of each connection the server closed: 1001, 1003, 1007–1009, 1011–1013 (a slow consumer's 1013 even when its client no longer reads); for a LongPoll session, the code a WebSocket would have been closed with for the same reason |
//! | `fawkes_joined_channels` | gauge | `pattern` | live joins |
//!
//! Counts of state are gauges set by [`Runtime::record_gauges`], which the application calls
//! right before rendering a scrape (they are not kept up to date on the way of a frame):
//! `fawkes_connections` (open sockets, label `transport`: `websocket` or `longpoll`),
//! `fawkes_topics` (topics with subscribers),
//! `fawkes_presence_entries` (presences on this node, other nodes' included),
//! `fawkes_registry_sockets` (sockets registered under a socket id or disconnect topic),
//! `fawkes_outbound_queue_max_frames` (the fullest connection's outbound queue now), the
//! counter `fawkes_supervisor_restarts_total`, and, only with an adapter,
//! `fawkes_cluster_members` (other nodes heard from), `fawkes_cluster_link_up` (1 or 0) and
//! the counters `fawkes_cluster_frames_in_total`, `fawkes_cluster_frames_out_total`,
//! `fawkes_cluster_frames_lost_total` (received from, handed to the adapter for, and dropped
//! from other nodes).
//!
//! The `transport` label is `websocket` or `longpoll`; the `longpoll` series appear with the
//! first LongPoll session (a runtime without LongPoll exports none).
//!
//! Recording costs an atomic add on a handle: a broadcast adds its deliveries once, not per
//! frame; nothing is looked up by name or allocated per frame.
//!
//! Supervision tree (see `ARCHITECTURE.md`): a root supervisor with four children, `topics`
//! (one topic actor per topic with subscribers), `sockets` (one socket actor per connection),
//! `presence` (the presence shards) and the socket registry ([`SocketRegistry`]: live sockets by
//! socket id). A failed registry, presence shard or supervisor is restarted (its state rebuilt,
//! or its dependants told: joins that lost their topic or presences end with `phx_error` and
//! rejoin); a topic or socket actor that fails takes only its own topic or connection down.
//! Restarts are bounded ([`SupervisionConfig`]); a root that gives up leaves the runtime
//! [`Health::Down`] ([`Runtime::health`]).

#![deny(missing_docs)]

mod channel;
pub(crate) mod cluster;
mod drain;
mod endpoint;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod metering;
pub(crate) mod mount;
pub(crate) mod presence;
pub mod protocol;
pub(crate) mod pubsub;
pub(crate) mod registry;
mod socket;
pub(crate) mod socket_actor;
pub(crate) mod supervisor;
#[cfg(feature = "testing")]
pub mod testing;
pub(crate) mod transport;
mod units;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ractor::ActorCell;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use channel::{
    Channel, ChannelContext, ChannelError, ChannelHandle, Continue, HandleIn, JoinOutcome, Reply,
    StopReason,
};
pub use cluster::ClusterConfig;
pub use drain::{DrainConfig, Drained};
pub use endpoint::{
    Body as HttpBody, Endpoint, FallbackService, HttpLimits, PeerAddr, SocketService,
};
pub use mount::{InvalidPattern, SocketMount, TopicPattern};
pub use presence::{Presence, PresenceConfig, PresenceError, events as presence_events};
pub use protocol::{Payload, PayloadError};
pub use pubsub::{
    Adapter, AdapterState, BoxFuture, Broadcast, ClusterStats, Inbound, InvalidRemote,
    MemoryAdapter, MemoryBus, PubSub, RemoteBroadcast, SubscriberId, Subscription,
};
pub use registry::SocketRegistry;
pub use socket::{ConnectError, ConnectInfo, Params, Socket};
pub use transport::{
    CheckOrigin, InvalidOrigin, MAX_EVENT_BYTES, MAX_REF_BYTES, OriginPattern, TransportConfig,
};

pub use supervisor::SupervisionConfig;
pub use supervisor::tree::Health;

use supervisor::Slot;
use supervisor::tree::Tree;

/// The supervision tree could not start.
#[derive(Debug, thiserror::Error)]
#[error("the runtime could not start: {0}")]
pub struct StartError(String);

/// Counters since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open sockets: WebSocket connections and LongPoll sessions.
    pub connections: usize,
    /// Connections (and LongPoll sessions) accepted so far.
    pub connections_total: u64,
    /// Connections closed because the client stopped reading (outbound queue over its frames
    /// or bytes, or a write timed out).
    pub slow_consumer_disconnects: u64,
    /// Times a connection stopped reading because its frames in flight to its socket actor
    /// filled the inbound window (32 frames or 1 MiB of frame text).
    pub inbound_window_full: u64,
    /// Times a connection stopped reading (or a LongPoll POST held a line back) because its
    /// client sent faster than `max_messages_per_second` allows.
    pub rate_limited: u64,
}

/// Everything a runtime is configured with.
///
/// The settings deserialize (serde) from a configuration file's sections `transport`
/// ([`TransportConfig`]), `presence` ([`PresenceConfig`]) and `supervision`
/// ([`SupervisionConfig`]), every one optional, durations in the unit their names say; the
/// adapter is code, set after reading.
///
/// ```
/// use std::time::Duration;
/// use fawkes_runtime::RuntimeConfig;
///
/// let config: RuntimeConfig = serde_json::from_str(
///     r#"{"transport": {"idle_timeout_secs": 90}, "presence": {"window_ms": 50}}"#,
/// )?;
/// assert_eq!(config.transport.idle_timeout, Duration::from_secs(90));
/// assert_eq!(config.presence.window, Duration::from_millis(50));
/// assert_eq!(config.supervision.max_restarts, 3);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// WebSocket transport.
    pub transport: TransportConfig,
    /// Presence.
    pub presence: PresenceConfig,
    /// How broadcasts reach other nodes; `None`: a single node. Not part of the serde form.
    #[serde(skip)]
    pub adapter: Option<Arc<dyn Adapter>>,
    /// Restart intensity of the supervisors.
    pub supervision: SupervisionConfig,
    /// How the nodes of a cluster watch each other (used when `adapter` links several).
    pub cluster: ClusterConfig,
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("transport", &self.transport)
            .field("presence", &self.presence)
            .field(
                "adapter",
                &self.adapter.as_ref().map(|a| a.node_name().to_owned()),
            )
            .field("supervision", &self.supervision)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl From<TransportConfig> for RuntimeConfig {
    fn from(transport: TransportConfig) -> Self {
        Self {
            transport,
            ..Default::default()
        }
    }
}

/// State shared by every connection of a runtime.
pub(crate) struct RuntimeShared {
    pub(crate) pubsub: PubSub,
    pub(crate) presence: Presence,
    pub(crate) registry: SocketRegistry,
    /// The `sockets` supervisor (replaced when it restarts).
    pub(crate) sockets: Slot<ActorCell>,
    pub(crate) config: TransportConfig,
    pub(crate) shutdown: CancellationToken,
    pub(crate) connections: TaskTracker,
    /// Live sockets per socket id (`max_sockets_per_id`).
    pub(crate) socket_ids: Arc<transport::SocketIds>,
    /// Live connections in the order they started, for the drain.
    pub(crate) drainer: Arc<drain::Drainer>,
    /// The metrics handles, registered at start.
    pub(crate) meters: Arc<metering::Meters>,
    connected: AtomicUsize,
    /// Of `connected`, the LongPoll sessions.
    connected_longpoll: AtomicUsize,
    connected_total: AtomicU64,
    slow_consumers: AtomicU64,
    window_full: AtomicU64,
    rate_limited: AtomicU64,
}

impl RuntimeShared {
    /// A socket of `transport` was accepted (a WebSocket upgraded, a LongPoll session opened).
    pub(crate) fn metrics_connected(&self, transport: metering::Transport) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.connected_total.fetch_add(1, Ordering::Relaxed);
        if transport == metering::Transport::LongPoll {
            self.connected_longpoll.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Open LongPoll sessions.
    pub(crate) fn longpoll_count(&self) -> usize {
        self.connected_longpoll.load(Ordering::Relaxed)
    }

    /// Counted only when a connection has to wait, never on the way of a frame that goes on.
    pub(crate) fn metrics_window_full(&self) {
        self.window_full.fetch_add(1, Ordering::Relaxed);
    }

    /// Counted only when a connection has to wait.
    pub(crate) fn metrics_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// A socket of `transport` ended (cut off as a slow consumer or not).
    pub(crate) fn metrics_disconnected(&self, transport: metering::Transport, slow_consumer: bool) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
        if transport == metering::Transport::LongPoll {
            self.connected_longpoll.fetch_sub(1, Ordering::Relaxed);
        }
        if slow_consumer {
            self.slow_consumers.fetch_add(1, Ordering::Relaxed);
            self.meters.transport(transport).slow_consumers.increment(1);
        }
    }
}

/// A running runtime: supervisors, PubSub, and the connections it serves.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) shared: Arc<RuntimeShared>,
    tree: Arc<Tree>,
}

/// What the supervisors have done since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SupervisionStats {
    /// Children restarted (or, for topic actors, failures their subscribers were told of).
    pub restarts: u64,
    /// Supervisors that gave up after too many restarts (each failed, and its parent
    /// restarted it or gave up in turn).
    pub gave_up: u64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl Runtime {
    /// Starts the supervision tree (`TransportConfig` converts into a [`RuntimeConfig`]).
    pub async fn start(config: impl Into<RuntimeConfig>) -> Result<Self, StartError> {
        let config = config.into();
        let adapter = config.adapter.clone();
        let meters = metering::Meters::register();
        let tree = supervisor::tree::start(
            config.supervision,
            &config.presence,
            adapter,
            config.cluster.clone(),
            meters.clone(),
        )
        .await
        .map_err(|e| StartError(e.to_string()))?;
        Ok(Self {
            shared: Arc::new(RuntimeShared {
                pubsub: tree.pubsub.clone(),
                presence: tree.presence.clone(),
                registry: tree.registry.clone(),
                sockets: tree.sockets.clone(),
                socket_ids: transport::SocketIds::new(config.transport.max_sockets_per_id),
                drainer: Arc::default(),
                config: config.transport,
                shutdown: CancellationToken::new(),
                connections: TaskTracker::new(),
                meters,
                connected: AtomicUsize::new(0),
                connected_longpoll: AtomicUsize::new(0),
                connected_total: AtomicU64::new(0),
                slow_consumers: AtomicU64::new(0),
                window_full: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
            }),
            tree: Arc::new(tree),
        })
    }

    /// Whether the supervision tree is running: [`Health::Down`] once the root supervisor has
    /// given up (logged at error level), [`Health::Stopped`] after [`Runtime::shutdown`].
    pub fn health(&self) -> Health {
        self.tree.health.get()
    }

    /// Resolves when the runtime stops being up — the root supervisor gave up ([`Health::Down`])
    /// or [`Runtime::shutdown`] ran — with that health. A server binary waits on this to exit
    /// (and be restarted by its own supervisor, as an OTP node stops when its application does).
    pub async fn stopped(&self) -> Health {
        self.tree.health.wait_for(|health| !health.is_up()).await
    }

    /// Restarts and give-ups of the supervisors so far.
    pub fn supervision_stats(&self) -> SupervisionStats {
        SupervisionStats {
            restarts: self.tree.counters.restarts.load(Ordering::Relaxed),
            gave_up: self.tree.counters.gave_up.load(Ordering::Relaxed),
        }
    }

    /// The health slot (fault injection waits on it).
    #[cfg(feature = "testing")]
    pub(crate) fn health_slot(&self) -> &Slot<Health> {
        &self.tree.health
    }

    /// The PubSub.
    pub fn pubsub(&self) -> &PubSub {
        &self.shared.pubsub
    }

    /// The presence tracker.
    pub fn presence(&self) -> &Presence {
        &self.shared.presence
    }

    /// The socket registry: live sockets by socket id, for direct pushes and disconnects.
    pub fn registry(&self) -> &SocketRegistry {
        &self.shared.registry
    }

    /// The transport settings.
    pub fn config(&self) -> &TransportConfig {
        &self.shared.config
    }

    /// Open sockets: WebSocket connections and LongPoll sessions.
    pub fn connection_count(&self) -> usize {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Counters: connections, slow-consumer disconnects, reads held back.
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.connection_count(),
            connections_total: self.shared.connected_total.load(Ordering::Relaxed),
            slow_consumer_disconnects: self.shared.slow_consumers.load(Ordering::Relaxed),
            inbound_window_full: self.shared.window_full.load(Ordering::Relaxed),
            rate_limited: self.shared.rate_limited.load(Ordering::Relaxed),
        }
    }

    /// Sets the gauges of the runtime's metrics to what they are now (connections, joined
    /// topics, presence entries, the registry's sockets, the fullest outbound queue, the
    /// supervisors' restarts and, with an adapter, the cluster's members, link and frames).
    /// These are counts of state, read here rather than kept up to date on the way of every
    /// frame: call it right before rendering a scrape. It costs a lock per open connection
    /// (each outbound queue is looked at); without a recorder it records nothing.
    pub fn record_gauges(&self) {
        metering::record_gauges(self);
    }

    /// An endpoint builder serving sockets of this runtime.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.shared.clone())
    }

    /// `mount` as a `tower::Service`, for an HTTP server the application runs itself (mount
    /// it in an axum `Router` at `/socket/websocket`); see [`SocketService`]. Refuses a mount
    /// with an invalid topic pattern, naming it.
    pub fn socket_service<S: Socket>(
        &self,
        mount: SocketMount<S>,
    ) -> Result<SocketService, InvalidPattern> {
        let socket = mount::MountedSocket::build(mount)?;
        Ok(SocketService::new(self.shared.clone(), Arc::new(socket)))
    }
}

impl Drop for RuntimeShared {
    /// A runtime dropped without [`Runtime::shutdown`]: its cluster tasks stop too.
    fn drop(&mut self) {
        self.pubsub.cluster().halt();
    }
}
