//! The graceful drain, as Phoenix's socket drainer: refuse new sockets, then close the live
//! ones in batches with code 1012 (clients reconnect, to another node behind a load balancer),
//! a pause between batches, the whole bounded by a deadline.
//!
//! Every connection registers its socket actor here when it starts (one lock per connection,
//! never per frame; nothing else is kept per connection); the drain sends a batch's actors
//! `SocketMsg::Drain`. Queued behind every frame the actor was handed, it is handled after
//! them (so a reply being made, e.g. a chat message being committed, is queued); the actor
//! then stops handling client frames and closes the connection, which writes what is queued,
//! then the close frame 1012 (`transport::connection`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::ActorRef;

use crate::socket_actor::SocketMsg;
use crate::{Health, Runtime};

/// How [`crate::Runtime::drain`] closes the sockets.
///
/// The defaults close 5,000 sockets a second, the rate of Phoenix's drainer (10,000 every
/// 2 s), in steps ten times smaller (1,000 every 200 ms), so that the nodes taking the
/// reconnects never get ten thousand in the same instant; a node with up to about 140,000
/// sockets is drained within the 30 s deadline.
///
/// ```
/// use std::time::Duration;
/// use fawkes_runtime::DrainConfig;
///
/// let drain = DrainConfig {
///     batch_size: 100,
///     interval: Duration::from_millis(500),
///     ..DrainConfig::default()
/// };
/// assert_eq!(drain.timeout, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainConfig {
    /// Sockets told to close at once (at least one is).
    pub batch_size: usize,
    /// Pause between two batches.
    pub interval: Duration,
    /// Deadline for the whole drain, from its start: sockets still open then are closed at
    /// once (1012 too, without waiting for their messages in progress).
    pub timeout: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
        }
    }
}

impl DrainConfig {
    /// Every socket in one batch, within `timeout` ([`crate::Runtime::shutdown`]).
    pub fn all_at_once(timeout: Duration) -> Self {
        Self {
            batch_size: usize::MAX,
            interval: Duration::ZERO,
            timeout,
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Sockets told to close in batches (sockets that arrived during the drain are closed as
    /// they arrive and not counted).
    pub sockets: usize,
    /// Batches sent.
    pub batches: usize,
    /// Sockets still open at the deadline, closed at once.
    pub cut: usize,
    /// Whether every connection had ended before the deadline.
    pub in_time: bool,
}

/// The live connections in the order they started, by their socket actors.
#[derive(Default)]
pub(crate) struct Drainer {
    draining: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Connections not told to drain yet, oldest first.
    waiting: BTreeMap<u64, ActorRef<SocketMsg>>,
}

/// A connection's place in the drain: its socket actor is sent [`SocketMsg::Drain`] when its
/// turn comes; dropped, the connection leaves the list. Nothing else per connection (no
/// token or channel: an idle connection's memory is what the drain must not grow).
pub(crate) struct DrainTicket {
    drainer: Arc<Drainer>,
    id: u64,
}

impl Drop for DrainTicket {
    fn drop(&mut self) {
        if let Ok(mut state) = self.drainer.state.lock() {
            state.waiting.remove(&self.id);
        }
    }
}

impl Drainer {
    /// Whether a drain has begun (new sockets are refused).
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Begins the drain: from now on new sockets are refused, and one that registers anyway
    /// (its upgrade was under way) is told to drain at once.
    pub(crate) fn begin(&self) {
        // Under the lock, so that a registration sees either the flag or the drain sees it.
        let _state = self.state.lock();
        self.draining.store(true, Ordering::Release);
    }

    /// Registers a starting connection by its socket actor (told to drain at once if a
    /// drain has begun).
    pub(crate) fn register(self: &Arc<Self>, actor: &ActorRef<SocketMsg>) -> DrainTicket {
        let mut id = u64::MAX;
        match self.state.lock() {
            Ok(mut state) if !self.is_draining() => {
                id = state.next;
                state.next += 1;
                state.waiting.insert(id, actor.clone());
            }
            _ => {
                let _ = actor.cast(SocketMsg::Drain);
            }
        }
        DrainTicket {
            drainer: self.clone(),
            id,
        }
    }

    /// Tells the `n` oldest connections not told yet to drain; returns how many there were.
    fn next_batch(&self, n: usize) -> usize {
        let Ok(mut state) = self.state.lock() else {
            return 0;
        };
        let mut told = 0;
        while told < n {
            let Some((_, actor)) = state.waiting.pop_first() else {
                break;
            };
            // An actor already gone: its connection is ending anyway.
            let _ = actor.cast(SocketMsg::Drain);
            told += 1;
        }
        told
    }

    fn anyone_waiting(&self) -> bool {
        self.state
            .lock()
            .is_ok_and(|state| !state.waiting.is_empty())
    }

    /// Tells every connection to drain, `config.batch_size` at a time with `config.interval`
    /// between batches, counting into `drained` (the caller bounds it with the deadline).
    pub(crate) async fn batches(&self, config: &DrainConfig, drained: &mut Drained) {
        let size = config.batch_size.max(1);
        loop {
            let told = self.next_batch(size);
            if told == 0 {
                return;
            }
            drained.sockets += told;
            drained.batches += 1;
            tracing::debug!(
                batch = drained.batches,
                sockets = told,
                "drain: told a batch of sockets to close"
            );
            if !self.anyone_waiting() {
                return;
            }
            tokio::time::sleep(config.interval).await;
        }
    }
}

impl Runtime {
    /// Closes every connection with code 1012 (clients reconnect) at once, waits up to
    /// `grace` for them to finish, then stops the supervision tree: [`Runtime::drain`] with
    /// every socket in one batch ([`DrainConfig::all_at_once`]). Returns whether all finished
    /// in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.drain(DrainConfig::all_at_once(grace)).await.in_time
    }

    /// Begins a drain without closing anything yet: from now on new sockets are refused
    /// (503) and [`Runtime::is_draining`] is true, e.g. for a readiness check to report.
    /// [`Runtime::drain`] calls it first; call it yourself to mark the node at the instant a
    /// shutdown signal arrives, before you start the drain.
    pub fn start_draining(&self) {
        self.shared.drainer.begin();
    }

    /// Whether a drain (or shutdown) has begun.
    pub fn is_draining(&self) -> bool {
        self.shared.drainer.is_draining()
    }

    /// Drains this node gracefully, as Phoenix's socket drainer, then stops the runtime:
    ///
    /// 1. new sockets are refused (503), at once ([`Runtime::start_draining`]);
    /// 2. the live sockets are closed with code 1012 (phoenix.js reconnects, behind a load
    ///    balancer to another node) `batch_size` at a time, oldest first, with `interval`
    ///    between batches. A socket's turn: its socket actor finishes every message it was
    ///    already handed and handles no later one (a reply being made is sent, so a
    ///    client never misses the reply to something that took effect), what is queued for
    ///    it is written, then the close frame; its joins then end as on any close, so their
    ///    presences leave (and sockets drained later, and other nodes, see the leaves);
    /// 3. at `timeout` from the start, sockets still open are closed at once;
    /// 4. the other nodes of a cluster are told this node is leaving, and the supervision
    ///    tree stops.
    ///
    /// HTTP is not the runtime's: stop your listener too (an [`Endpoint`](crate::Endpoint) stops on its
    /// `shutdown` future).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fawkes_runtime::{DrainConfig, Runtime, RuntimeConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let runtime = Runtime::start(RuntimeConfig::default()).await.expect("runtime");
    /// // On SIGTERM: stop the listener and mark the node (readiness), then drain.
    /// runtime.start_draining();
    /// assert!(runtime.is_draining());
    /// let drained = runtime
    ///     .drain(DrainConfig {
    ///         batch_size: 500,
    ///         interval: Duration::from_millis(500),
    ///         timeout: Duration::from_secs(20),
    ///     })
    ///     .await;
    /// assert!(drained.in_time); // no socket was open
    /// assert_eq!(drained.sockets, 0);
    /// # }
    /// ```
    pub async fn drain(&self, config: DrainConfig) -> Drained {
        let started = tokio::time::Instant::now();
        // A timeout too large to add ("wait forever") is as good as none.
        let deadline = started
            .checked_add(config.timeout)
            .unwrap_or(started + FOREVER);
        self.start_draining();
        self.shared.connections.close();
        let mut drained = Drained::default();
        let batches = self.shared.drainer.batches(&config, &mut drained);
        let _ = tokio::time::timeout_at(deadline, batches).await;
        drained.in_time = tokio::time::timeout_at(deadline, self.shared.connections.wait())
            .await
            .is_ok();
        if !drained.in_time {
            drained.cut = self.connection_count();
            tracing::warn!(
                sockets = drained.cut,
                "drain deadline reached; closing the remaining sockets at once"
            );
        }
        // Whatever is left closes now (1012), and nothing new is served.
        self.shared.shutdown.cancel();
        // Only now the goodbye: the other nodes drop this node's presences at once, not
        // after the node timeout (before it, they would show every socket still being
        // drained here as gone).
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.shared
            .pubsub
            .cluster()
            .leave(left.clamp(GOODBYE_MIN, GOODBYE_MAX))
            .await;
        if self.tree.health.get().is_up() {
            self.tree.health.set(Health::Stopped);
        }
        self.tree.root.stop(None);
        self.tree.watch.stop(None);
        drained
    }
}

/// A deadline past any real drain (about 30 years), for a timeout too large to add.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// The least time the goodbye to the other nodes gets, even past the drain's deadline.
const GOODBYE_MIN: Duration = Duration::from_millis(100);

/// The most time the goodbye to the other nodes gets.
const GOODBYE_MAX: Duration = Duration::from_secs(2);
