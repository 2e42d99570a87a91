//! The runtime's metrics, through the `metrics` facade (see the crate docs for the list).
//!
//! Every handle is registered once: the runtime's at [`crate::Runtime::start`] ([`Meters`]),
//! a channel pattern's when its mount is built ([`PatternMeters`]). Recording is then an
//! atomic add on a handle (a no-op handle when no recorder was installed before), never a
//! lookup by name. Counts of state (connections, topics, presences, the fullest outbound
//! queue, ...) are not maintained on the way of a frame: [`crate::Runtime::record_gauges`]
//! reads them when a scrape asks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::transport::QueueProbe;

/// Why an upgrade (or a connection) was refused: the `reason` label of
/// `fawkes_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The endpoint's cap on open connections.
    NodeCap,
    /// The endpoint's cap per client address.
    AddressCap,
    /// The origin is not allowed.
    Origin,
    /// `Socket::connect` refused.
    Forbidden,
    /// Too many sockets with this socket id.
    SocketIdCap,
    /// Not a valid WebSocket upgrade (method, headers, subprotocols, `vsn`, auth token).
    BadRequest,
    /// The runtime is shutting down.
    ShuttingDown,
}

impl Refused {
    const ALL: [Refused; 7] = [
        Refused::NodeCap,
        Refused::AddressCap,
        Refused::Origin,
        Refused::Forbidden,
        Refused::SocketIdCap,
        Refused::BadRequest,
        Refused::ShuttingDown,
    ];

    fn label(self) -> &'static str {
        match self {
            Refused::NodeCap => "node_cap",
            Refused::AddressCap => "address_cap",
            Refused::Origin => "origin",
            Refused::Forbidden => "forbidden",
            Refused::SocketIdCap => "socket_id_cap",
            Refused::BadRequest => "bad_request",
            Refused::ShuttingDown => "shutting_down",
        }
    }
}

/// The close codes the server sends (see `transport`), each with its counter.
const CLOSE_CODES: [u16; 8] = [1001, 1003, 1007, 1008, 1009, 1011, 1012, 1013];

/// How a socket reaches its client: the `transport` label of the connection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A WebSocket connection.
    WebSocket,
    /// A LongPoll session.
    LongPoll,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::LongPoll => "longpoll",
        }
    }
}

/// The connection metrics of one transport (label `transport`).
pub(crate) struct TransportMeters {
    pub(crate) accepted: Counter,
    pub(crate) slow_consumers: Counter,
    close_codes: [Counter; CLOSE_CODES.len()],
    transport: Transport,
    connections: Gauge,
}

impl TransportMeters {
    fn register(transport: Transport) -> Self {
        let label = transport.label();
        Self {
            accepted: counter!("fawkes_connections_accepted_total", "transport" => label),
            slow_consumers: counter!("fawkes_slow_consumer_disconnects_total", "transport" => label),
            close_codes: CLOSE_CODES.map(|code| {
                counter!("fawkes_close_codes_total", "code" => code.to_string(), "transport" => label)
            }),
            transport,
            connections: gauge!("fawkes_connections", "transport" => label),
        }
    }

    /// A close frame with `code` was sent (or attempted, for a client that does not read;
    /// for a LongPoll session: the session ended for the reason a WebSocket closes with it).
    pub(crate) fn close_code(&self, code: u16) {
        match CLOSE_CODES.iter().position(|c| *c == code) {
            Some(at) => self.close_codes[at].increment(1),
            None => counter!(
                "fawkes_close_codes_total",
                "code" => code.to_string(),
                "transport" => self.transport.label()
            )
            .increment(1),
        }
    }
}

/// The runtime-wide handles, and the state counts read at scrape time.
pub(crate) struct Meters {
    refused: [Counter; Refused::ALL.len()],
    pub(crate) broadcasts_local: Counter,
    pub(crate) broadcasts_remote: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) deliveries_dropped: Counter,
    websocket: TransportMeters,
    /// Registered with the first LongPoll session, so that a runtime without LongPoll
    /// exports no `longpoll` series.
    longpoll: std::sync::OnceLock<TransportMeters>,
    /// Presence entries on this node (every shard's topics add theirs).
    pub(crate) presence_entries: Arc<AtomicUsize>,
    /// The outbound queues of the open connections, for the fullest one's depth.
    queues: Mutex<Queues>,
    pub(crate) gauges: Gauges,
}

/// Handles set by [`crate::Runtime::record_gauges`].
pub(crate) struct Gauges {
    pub(crate) topics: Gauge,
    pub(crate) presence_entries: Gauge,
    pub(crate) registry_sockets: Gauge,
    pub(crate) outbound_queue_max: Gauge,
    pub(crate) supervisor_restarts: Counter,
    /// Only with an adapter: registered when first recorded, so that a single node exports
    /// no cluster series.
    pub(crate) cluster: std::sync::OnceLock<ClusterGauges>,
}

/// The cluster's series (a runtime with an adapter).
pub(crate) struct ClusterGauges {
    pub(crate) members: Gauge,
    pub(crate) link_up: Gauge,
    pub(crate) frames_in: Counter,
    pub(crate) frames_out: Counter,
    pub(crate) frames_lost: Counter,
}

impl ClusterGauges {
    pub(crate) fn register() -> Self {
        Self {
            members: gauge!("fawkes_cluster_members"),
            link_up: gauge!("fawkes_cluster_link_up"),
            frames_in: counter!("fawkes_cluster_frames_in_total"),
            frames_out: counter!("fawkes_cluster_frames_out_total"),
            frames_lost: counter!("fawkes_cluster_frames_lost_total"),
        }
    }
}

#[derive(Default)]
struct Queues {
    next: u64,
    open: HashMap<u64, QueueProbe>,
}

/// A connection's outbound queue in [`Meters`]'s list, removed when dropped.
pub(crate) struct WatchedQueue {
    meters: Arc<Meters>,
    id: u64,
}

impl Drop for WatchedQueue {
    fn drop(&mut self) {
        self.meters.queues().open.remove(&self.id);
    }
}

impl Meters {
    /// Registers every runtime-wide handle with the recorder installed now (if any).
    pub(crate) fn register() -> Arc<Self> {
        Arc::new(Self {
            refused: Refused::ALL
                .map(|r| counter!("fawkes_connections_refused_total", "reason" => r.label())),
            broadcasts_local: counter!("fawkes_broadcasts_total", "origin" => "local"),
            broadcasts_remote: counter!("fawkes_broadcasts_total", "origin" => "remote"),
            deliveries: counter!("fawkes_deliveries_total"),
            deliveries_dropped: counter!("fawkes_deliveries_dropped_total"),
            websocket: TransportMeters::register(Transport::WebSocket),
            longpoll: std::sync::OnceLock::new(),
            presence_entries: Arc::default(),
            queues: Mutex::default(),
            gauges: Gauges {
                topics: gauge!("fawkes_topics"),
                presence_entries: gauge!("fawkes_presence_entries"),
                registry_sockets: gauge!("fawkes_registry_sockets"),
                outbound_queue_max: gauge!("fawkes_outbound_queue_max_frames"),
                supervisor_restarts: counter!("fawkes_supervisor_restarts_total"),
                cluster: std::sync::OnceLock::new(),
            },
        })
    }

    pub(crate) fn refused(&self, why: Refused) {
        let at = Refused::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.refused[at].increment(1);
    }

    /// The connection metrics of `transport`.
    pub(crate) fn transport(&self, transport: Transport) -> &TransportMeters {
        match transport {
            Transport::WebSocket => &self.websocket,
            Transport::LongPoll => self
                .longpoll
                .get_or_init(|| TransportMeters::register(Transport::LongPoll)),
        }
    }

    fn queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists a connection's outbound queue until the guard is dropped (once per connection).
    pub(crate) fn watch_queue(self: &Arc<Self>, probe: QueueProbe) -> WatchedQueue {
        let mut queues = self.queues();
        queues.next += 1;
        let id = queues.next;
        queues.open.insert(id, probe);
        WatchedQueue {
            meters: self.clone(),
            id,
        }
    }

    /// The frames waiting in the fullest outbound queue now.
    pub(crate) fn outbound_queue_max(&self) -> usize {
        let probes: Vec<QueueProbe> = self.queues().open.values().cloned().collect();
        probes.iter().map(QueueProbe::frames).max().unwrap_or(0)
    }
}

/// The handles of one mounted channel pattern (label `pattern`, as written in the mount).
pub(crate) struct PatternMeters {
    pub(crate) joins_ok: Counter,
    pub(crate) joins_error: Counter,
    pub(crate) joins_crash: Counter,
    pub(crate) join_duration: Histogram,
    pub(crate) client_events: Counter,
    pub(crate) handle_in: Histogram,
    pub(crate) crashes: Counter,
    joined: Gauge,
}

impl PatternMeters {
    pub(crate) fn register(pattern: &str) -> Arc<Self> {
        let p = || pattern.to_owned();
        let joins = |outcome: &'static str| counter!("fawkes_joins_total", "pattern" => p(), "outcome" => outcome);
        Arc::new(Self {
            joins_ok: joins("ok"),
            joins_error: joins("error"),
            joins_crash: joins("crash"),
            join_duration: histogram!("fawkes_join_duration_seconds", "pattern" => p()),
            client_events: counter!("fawkes_client_events_total", "pattern" => p()),
            handle_in: histogram!("fawkes_handle_in_duration_seconds", "pattern" => p()),
            crashes: counter!("fawkes_channel_crashes_total", "pattern" => p()),
            joined: gauge!("fawkes_joined_channels", "pattern" => p()),
        })
    }

    /// Counts one live join of this pattern until the guard is dropped (however it ends).
    pub(crate) fn joined(self: &Arc<Self>) -> JoinedGuard {
        self.joined.increment(1.0);
        JoinedGuard(self.clone())
    }
}

/// One join counted in `fawkes_joined_channels`.
pub(crate) struct JoinedGuard(Arc<PatternMeters>);

impl JoinedGuard {
    pub(crate) fn meters(&self) -> &PatternMeters {
        &self.0
    }

    pub(crate) fn pattern(&self) -> &Arc<PatternMeters> {
        &self.0
    }
}

impl Drop for JoinedGuard {
    fn drop(&mut self) {
        self.0.joined.decrement(1.0);
    }
}

/// Presence entries counted in a shared total: each topic's count, taken back when it goes.
#[derive(Default)]
pub(crate) struct EntryCount {
    total: Arc<AtomicUsize>,
    mine: usize,
}

impl EntryCount {
    pub(crate) fn new(total: Arc<AtomicUsize>) -> Self {
        Self { total, mine: 0 }
    }

    pub(crate) fn add(&mut self) {
        self.mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove(&mut self) {
        if self.mine > 0 {
            self.mine -= 1;
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for EntryCount {
    fn drop(&mut self) {
        self.total.fetch_sub(self.mine, Ordering::Relaxed);
    }
}

/// [`crate::Runtime::record_gauges`]: the counts of state, read now.
pub(crate) fn record_gauges(runtime: &crate::Runtime) {
    let shared = &runtime.shared;
    let meters = &shared.meters;
    let gauges = &meters.gauges;
    let longpoll = shared.longpoll_count();
    meters
        .websocket
        .connections
        .set(runtime.connection_count().saturating_sub(longpoll) as f64);
    if let Some(series) = meters.longpoll.get() {
        series.connections.set(longpoll as f64);
    }
    gauges.topics.set(shared.pubsub.topic_count() as f64);
    gauges
        .presence_entries
        .set(meters.presence_entries.load(Ordering::Relaxed) as f64);
    gauges
        .registry_sockets
        .set(shared.registry.live_count() as f64);
    gauges
        .outbound_queue_max
        .set(meters.outbound_queue_max() as f64);
    gauges
        .supervisor_restarts
        .absolute(runtime.supervision_stats().restarts);
    let cluster = shared.pubsub.cluster();
    if cluster.clustered() {
        let series = gauges.cluster.get_or_init(ClusterGauges::register);
        let (received, dropped) = cluster.counts();
        series.members.set(cluster.peers() as f64);
        let up = cluster.state() == crate::AdapterState::Connected;
        series.link_up.set(if up { 1.0 } else { 0.0 });
        series.frames_in.absolute(received);
        series.frames_out.absolute(cluster.sent());
        series.frames_lost.absolute(dropped);
    }
}
