//! The socket registry: which live sockets carry a name.
//!
//! A socket is registered under its [`Socket::id`](super::Socket::id) (e.g. `user_socket:42`,
//! shared by every device of that user) and under each of its
//! [`Socket::disconnect_topics`](super::Socket::disconnect_topics) when it starts, and is
//! unregistered when it ends for any reason: closed by either side, dropped, disconnected, or
//! its actor failed (the socket actor's state unregisters when it is dropped). So a name never
//! keeps a dead socket, and a user's second device is as registered as the first.
//!
//! One actor owns the map. Registrations are casts; lookups are calls answered from the map
//! alone. The registry never waits on a socket, so a channel callback can use it freely (two
//! users messaging each other at once cannot deadlock on each other's sockets).
//!
//! The registry is restarted when it fails. Its handle keeps a journal of the live sockets and
//! the recent disconnects (written before each message is sent), and the restarted actor is
//! rebuilt from it before any handle reaches it: names keep working, a disconnect sent while
//! the registry was down still closes its sockets, and a lookup that hit the failed registry
//! is answered by its replacement.
//!
//! What it is for:
//! - [`SocketRegistry::push`]: direct delivery. An event goes to every socket with the name that has
//!   joined a given topic, as if that join's channel had pushed it, and the call returns how
//!   many sockets it reached.
//! - [`SocketRegistry::disconnect`]: closes every socket with the name (close code 1001; phoenix.js
//!   reconnects, and its token is then checked again). [`PubSub::disconnect`](super::PubSub)
//!   does the same on every node.
//! - [`SocketRegistry::disconnect_except`]: the same, sparing the sockets that also carry another
//!   name (a user's sockets but those of the session that changed the password).
//!
//! Each node has its own registry of its own sockets. `push` reaches the other nodes' sockets
//! too, through the cluster (see `crate::cluster`), and counts them; `disconnect` and
//! `disconnect_except` are this node's ([`PubSub::disconnect`](super::PubSub::disconnect) and
//! [`PubSub::disconnect_except`](super::PubSub::disconnect_except) are every node's).

mod journal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use tokio_tungstenite::tungstenite::Message;

use super::cluster::Cluster;
use super::protocol::{self, Payload, Ref, Vsn};
use super::supervisor::{Child, Slot};
use super::transport::{CloseReason, Control, Outbound, Sent, encoded_to_message};
use journal::Journal;

/// One live socket as the registry sees it. Shared with its socket actor, which records here
/// the topics it has joined.
pub(crate) struct LiveSocket {
    out: Outbound,
    control: Arc<Control>,
    vsn: Vsn,
    /// Joined topic → its join, mirrored by the socket actor.
    joins: Mutex<HashMap<Arc<str>, Join>>,
}

/// A join as direct pushes see it.
struct Join {
    join_ref: Ref,
    /// `Some` while the join reply is being queued: pushes wait here, so the client never
    /// sees a push before its join reply, and none is lost once it has the reply.
    held: Option<Held>,
}

/// Pushes waiting for a join reply, bounded like the outbound queue they are bound for.
#[derive(Default)]
struct Held {
    frames: Vec<Message>,
    /// Their total length.
    bytes: usize,
}

impl LiveSocket {
    pub(crate) fn new(out: Outbound, control: Arc<Control>, vsn: Vsn) -> Self {
        Self {
            out,
            control,
            vsn,
            joins: Mutex::new(HashMap::new()),
        }
    }

    fn joins(&self) -> MutexGuard<'_, HashMap<Arc<str>, Join>> {
        self.joins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The socket is about to queue the reply of a successful join of `topic`: pushes from
    /// now on are held until [`LiveSocket::joined`].
    pub(crate) fn joining(&self, topic: Arc<str>, join_ref: Ref) {
        let join = Join {
            join_ref,
            held: Some(Held::default()),
        };
        self.joins().insert(topic, join);
    }

    /// The join reply of `topic` is queued: release the held pushes after it.
    pub(crate) fn joined(&self, topic: &str) {
        let mut joins = self.joins();
        let held = joins.get_mut(topic).and_then(|join| join.held.take());
        for frame in held.into_iter().flat_map(|held| held.frames) {
            self.out.send(frame);
        }
    }

    /// The socket's join of `topic` has ended (or is about to be answered `phx_leave`): no
    /// push may reach it any more.
    pub(crate) fn left(&self, topic: &str) {
        self.joins().remove(topic);
    }

    /// The socket has ended: no join is left.
    pub(crate) fn clear(&self) {
        self.joins().clear();
    }

    /// Closes the connection with code 1001 straight away, without waiting for its socket
    /// actor (which may be busy in a callback).
    fn disconnect(&self) {
        self.control.close(CloseReason::Disconnected);
    }

    /// Pushes to this socket's join of `topic`, if it has one. Whether it was queued.
    fn push(&self, topic: &str, event: &str, payload: &Payload) -> bool {
        let mut joins = self.joins();
        let Some(join) = joins.get_mut(topic) else {
            return false;
        };
        let frame = match protocol::encode_push(self.vsn, &join.join_ref, topic, event, payload) {
            Ok(encoded) => encoded_to_message(encoded),
            Err(e) => {
                tracing::warn!(%topic, %event, error = %e, "direct push not encodable; dropped");
                return false;
            }
        };
        match &mut join.held {
            // Counted against the outbound queue's budget: beyond it, a slow consumer.
            Some(held)
                if self
                    .out
                    .within_budget(held.frames.len(), held.bytes, frame.len()) =>
            {
                held.bytes += frame.len();
                held.frames.push(frame);
                true
            }
            Some(_) => false,
            None => self.out.send(frame) == Sent::Queued,
        }
    }
}

/// Messages of the registry actor.
pub(crate) enum RegistryMsg {
    Register {
        socket: ActorId,
        names: Vec<String>,
        session: Arc<LiveSocket>,
    },
    Unregister {
        socket: ActorId,
        names: Vec<String>,
    },
    Lookup(String, RpcReplyPort<Vec<Arc<LiveSocket>>>),
    Disconnect(String),
    /// Disconnect the sockets with the first name that do not also have the second.
    DisconnectExcept(String, String),
    Names(RpcReplyPort<usize>),
    /// A restarted registry's first message: every live socket (from the journal).
    Rebuild(Vec<(ActorId, Arc<[String]>, Arc<LiveSocket>)>),
    /// Fault injection: panic in the handler.
    #[cfg(feature = "testing")]
    Fail,
}

/// How long a lookup that hit a failed registry waits for its replacement.
const RESTART_WAIT: Duration = Duration::from_secs(1);

struct RegistryActor;

/// The registry actor's index: name → its live sockets.
#[derive(Default)]
struct RegistryState {
    names: HashMap<String, HashMap<ActorId, Arc<LiveSocket>>>,
}

impl RegistryState {
    fn register(&mut self, socket: ActorId, names: &[String], session: &Arc<LiveSocket>) {
        for name in names {
            let sockets = self.names.entry(name.clone()).or_default();
            sockets.insert(socket, session.clone());
        }
    }

    fn unregister(&mut self, socket: ActorId, names: Vec<String>) {
        for name in names {
            if let Some(sockets) = self.names.get_mut(&name) {
                sockets.remove(&socket);
                if sockets.is_empty() {
                    self.names.remove(&name);
                }
            }
        }
    }

    fn disconnect(&self, name: &str) {
        for session in self.names.get(name).into_iter().flat_map(HashMap::values) {
            session.disconnect();
        }
    }

    fn disconnect_except(&self, name: &str, keep: &str) {
        let kept = self.names.get(keep);
        for (socket, session) in self.names.get(name).into_iter().flatten() {
            if !kept.is_some_and(|kept| kept.contains_key(socket)) {
                session.disconnect();
            }
        }
    }
}

impl Actor for RegistryActor {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<RegistryMsg>,
        _args: (),
    ) -> Result<RegistryState, ActorProcessingErr> {
        Ok(RegistryState::default())
    }

    async fn handle(
        &self,
        _myself: ActorRef<RegistryMsg>,
        message: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegistryMsg::Register {
                socket,
                names,
                session,
            } => state.register(socket, &names, &session),
            RegistryMsg::Unregister { socket, names } => state.unregister(socket, names),
            RegistryMsg::Lookup(name, reply) => {
                let found = state
                    .names
                    .get(&name)
                    .map(|sockets| sockets.values().cloned().collect())
                    .unwrap_or_default();
                let _ = reply.send(found);
            }
            RegistryMsg::Disconnect(name) => state.disconnect(&name),
            RegistryMsg::DisconnectExcept(name, keep) => state.disconnect_except(&name, &keep),
            RegistryMsg::Names(reply) => {
                let _ = reply.send(state.names.len());
            }
            RegistryMsg::Rebuild(live) => {
                *state = RegistryState::default();
                for (socket, names, session) in live {
                    state.register(socket, &names, &session);
                }
            }
            #[cfg(feature = "testing")]
            RegistryMsg::Fail => panic!("fault injected into the socket registry"),
        }
        Ok(())
    }
}

struct Inner {
    /// The registry actor (replaced when it restarts).
    actor: Slot<ActorRef<RegistryMsg>>,
    journal: Mutex<Journal>,
    /// The other nodes (set once the runtime's tree is up).
    cluster: OnceLock<Arc<Cluster>>,
}

/// The socket registry handle: cheap to clone, usable anywhere in the server
/// ([`Runtime::registry`](super::Runtime::registry)). Every clone reaches the registry actor
/// of the moment, also after it has been restarted. See the module docs.
#[derive(Clone)]
pub struct SocketRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SocketRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketRegistry")
            .field("actor", &self.inner.actor.get().get_id())
            .finish()
    }
}

impl SocketRegistry {
    /// Starts the registry actor under `supervisor`.
    pub(crate) async fn start(supervisor: ActorCell) -> Result<Self, SpawnErr> {
        let (actor, _) = Actor::spawn_linked(None, RegistryActor, (), supervisor).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                actor: Slot::new(actor),
                journal: Mutex::new(Journal::default()),
                cluster: OnceLock::new(),
            }),
        })
    }

    /// Links the registry to the other nodes.
    pub(crate) fn link(&self, cluster: Arc<Cluster>) {
        let _ = self.inner.cluster.set(cluster);
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        self.inner.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registry actor of the moment.
    pub(crate) fn current_cell(&self) -> ActorCell {
        self.inner.actor.get().get_cell()
    }

    #[cfg(feature = "testing")]
    /// The slot of the registry actor.
    pub(crate) fn slot(&self) -> &Slot<ActorRef<RegistryMsg>> {
        &self.inner.actor
    }

    /// The registry as a permanent child of its supervisor: a restart starts a fresh actor,
    /// rebuilds its index from the journal (closing sockets that missed a remembered
    /// disconnect), and only then lets the handles reach it.
    pub(crate) fn child(&self) -> Child {
        let this = self.clone();
        Child::new("registry", move |supervisor| {
            let this = this.clone();
            Box::pin(async move {
                let (actor, _) = Actor::spawn_linked(None, RegistryActor, (), supervisor).await?;
                let journal = this.journal();
                let mut live = Vec::with_capacity(journal.live.len());
                for (socket, (names, session, connected_at)) in &journal.live {
                    if journal.missed_disconnect(names, *connected_at) {
                        session.disconnect();
                    }
                    live.push((*socket, names.clone(), session.clone()));
                }
                // First in its mailbox: nothing else can reach it before the slot is set,
                // which happens under the journal lock that every sender takes.
                let _ = actor.cast(RegistryMsg::Rebuild(live));
                this.inner.actor.set(actor.clone());
                tracing::info!(sockets = journal.live.len(), "socket registry rebuilt");
                drop(journal);
                Ok(actor.get_cell())
            })
        })
    }

    /// Sockets registered under a name (a socket id or a disconnect topic) now.
    pub(crate) fn live_count(&self) -> usize {
        self.journal().live.len()
    }

    pub(crate) fn register(
        &self,
        socket: ActorId,
        names: Vec<String>,
        session: Arc<LiveSocket>,
        connected_at: Instant,
    ) {
        let mut journal = self.journal();
        if journal.missed_disconnect(&names, connected_at) {
            session.disconnect();
        }
        journal.live.insert(
            socket,
            (names.clone().into(), session.clone(), connected_at),
        );
        let sent = self.inner.actor.get().cast(RegistryMsg::Register {
            socket,
            names,
            session,
        });
        if sent.is_err() {
            tracing::warn!("socket registry down: socket registered once it restarts");
        }
    }

    pub(crate) fn unregister(&self, socket: ActorId, names: Vec<String>) {
        let mut journal = self.journal();
        journal.live.remove(&socket);
        // Fails only when the registry is gone; its replacement is rebuilt without it.
        let _ = self
            .inner
            .actor
            .get()
            .cast(RegistryMsg::Unregister { socket, names });
    }

    async fn lookup(&self, name: &str) -> Vec<Arc<LiveSocket>> {
        let actor = self.inner.actor.get();
        if let Ok(sessions) = ractor::call!(actor, RegistryMsg::Lookup, name.to_owned()) {
            return sessions;
        }
        // The registry failed: its replacement (rebuilt from the journal) answers.
        let fresh = self
            .inner
            .actor
            .replacement(|a| a.get_id() == actor.get_id(), RESTART_WAIT)
            .await;
        let answer = match fresh {
            Some(fresh) => ractor::call!(fresh, RegistryMsg::Lookup, name.to_owned()).ok(),
            None => None,
        };
        match answer {
            Some(sessions) => sessions,
            None => {
                tracing::warn!("socket registry unavailable: lookup found nothing");
                Vec::new()
            }
        }
    }

    /// How many live sockets carry `name` on this node.
    pub async fn count(&self, name: &str) -> usize {
        self.lookup(name).await.len()
    }

    /// How many names have at least one live socket (an empty server has none).
    pub async fn name_count(&self) -> usize {
        ractor::call!(self.inner.actor.get(), RegistryMsg::Names).unwrap_or_default()
    }

    /// Pushes `event` to every socket registered under `socket_id` (a [`Socket::id`], or one
    /// of its [`Socket::disconnect_topics`]) that has joined `topic`, on that join (the client
    /// sees a push from its channel), on every node of the cluster. Returns how many sockets
    /// it was queued for: this node's, plus those the other nodes counted and reported within
    /// the cluster's push timeout (`ClusterConfig::push_timeout`). A node that does not answer
    /// in time is not counted, though it may still deliver the push.
    ///
    /// [`Socket::id`]: super::Socket::id
    /// [`Socket::disconnect_topics`]: super::Socket::disconnect_topics
    pub async fn push(
        &self,
        socket_id: &str,
        topic: &str,
        event: &str,
        payload: impl Into<Payload>,
    ) -> usize {
        let payload = payload.into();
        let local = self.push_local(socket_id, topic, event, &payload).await;
        let remote = match self.inner.cluster.get() {
            Some(cluster) if cluster.peers() > 0 => {
                cluster.push(socket_id, topic, event, &payload).await
            }
            _ => 0,
        };
        local + remote
    }

    /// [`SocketRegistry::push`] on this node only.
    pub(crate) async fn push_local(
        &self,
        socket_id: &str,
        topic: &str,
        event: &str,
        payload: &Payload,
    ) -> usize {
        self.lookup(socket_id)
            .await
            .iter()
            .filter(|session| session.push(topic, event, payload))
            .count()
    }

    /// Closes every socket carrying `name` on this node with close code 1001, straight away
    /// (a socket busy in a callback too), including a socket whose connect check started
    /// before this call and that registers after it, and also while the registry restarts.
    pub fn disconnect(&self, name: &str) {
        let mut journal = self.journal();
        journal.disconnects.remember(name, None, Instant::now());
        let sent = self
            .inner
            .actor
            .get()
            .cast(RegistryMsg::Disconnect(name.to_owned()));
        if sent.is_err() {
            tracing::warn!(%name, "socket registry down: its restart carries out the disconnect");
        }
    }

    /// Like [`SocketRegistry::disconnect`], but spares the sockets that also carry `keep`: e.g.
    /// every socket of a user (`user_socket:42`) but those of the session that changed the
    /// password (`user_token:<its jti>`). A socket still registering is judged the same way
    /// (closed if it carries `name` and not `keep`).
    ///
    /// This node's sockets, like [`SocketRegistry::disconnect`];
    /// [`PubSub::disconnect_except`](super::PubSub::disconnect_except) does it on every node.
    pub fn disconnect_except(&self, name: &str, keep: &str) {
        let mut journal = self.journal();
        journal
            .disconnects
            .remember(name, Some(keep), Instant::now());
        let sent = self.inner.actor.get().cast(RegistryMsg::DisconnectExcept(
            name.to_owned(),
            keep.to_owned(),
        ));
        if sent.is_err() {
            tracing::warn!(%name, "socket registry down: its restart carries out the disconnect");
        }
    }
}
