//! The session registry: which live sockets carry a name.
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
//! What it is for:
//! - [`Sessions::push`]: direct delivery. An event goes to every socket with the name that has
//!   joined a given topic, as if that join's channel had pushed it, and the call returns how
//!   many sockets it reached.
//! - [`Sessions::disconnect`]: closes every socket with the name (close code 1001; phoenix.js
//!   reconnects, and its token is then checked again). [`PubSub::disconnect`](super::PubSub)
//!   does the same on every node.
//!
//! The registry is per node: `push` reaches this node's sockets only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use tokio_tungstenite::tungstenite::Message;

use super::protocol::{self, Payload, Ref, Vsn};
use super::transport::{CloseReason, Control, Outbound, Sent, encoded_to_message};

/// One live socket as the registry sees it. Shared with its socket actor, which records here
/// the topics it has joined.
pub(crate) struct Session {
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
    held: Option<Vec<Message>>,
}

impl Session {
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
    /// now on are held until [`Session::joined`].
    pub(crate) fn joining(&self, topic: Arc<str>, join_ref: Ref) {
        let join = Join {
            join_ref,
            held: Some(Vec::new()),
        };
        self.joins().insert(topic, join);
    }

    /// The join reply of `topic` is queued: release the held pushes after it.
    pub(crate) fn joined(&self, topic: &str) {
        let mut joins = self.joins();
        let held = joins.get_mut(topic).and_then(|join| join.held.take());
        for frame in held.into_iter().flatten() {
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
            Some(held) => {
                held.push(frame);
                true
            }
            None => self.out.send(frame) == Sent::Queued,
        }
    }
}

/// Messages of the registry actor.
pub(crate) enum SessionsMsg {
    Register {
        socket: ActorId,
        names: Vec<String>,
        session: Arc<Session>,
        connected_at: Instant,
    },
    Unregister {
        socket: ActorId,
        names: Vec<String>,
    },
    Lookup(String, RpcReplyPort<Vec<Arc<Session>>>),
    Disconnect(String),
    Names(RpcReplyPort<usize>),
}

/// How long a disconnect is remembered for sockets still registering: a socket whose connect
/// check started before a disconnect of one of its names, and that registers after it, is
/// closed as it registers (its token may have been revoked in between).
const REMEMBER_DISCONNECTS: Duration = Duration::from_secs(60);

struct Registry;

#[derive(Default)]
struct RegistryState {
    /// Name → its live sockets.
    names: HashMap<String, HashMap<ActorId, Arc<Session>>>,
    /// Recent disconnects: name → when.
    disconnected: HashMap<String, Instant>,
}

impl RegistryState {
    fn register(
        &mut self,
        socket: ActorId,
        names: Vec<String>,
        session: Arc<Session>,
        connected_at: Instant,
    ) {
        let missed = names.iter().any(|name| {
            self.disconnected
                .get(name)
                .is_some_and(|at| *at >= connected_at)
        });
        if missed {
            session.disconnect();
        }
        for name in names {
            let sockets = self.names.entry(name).or_default();
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

    fn disconnect(&mut self, name: String) {
        for session in self.names.get(&name).into_iter().flat_map(HashMap::values) {
            session.disconnect();
        }
        let now = Instant::now();
        self.disconnected
            .retain(|_, at| now.duration_since(*at) < REMEMBER_DISCONNECTS);
        self.disconnected.insert(name, now);
    }
}

impl Actor for Registry {
    type Msg = SessionsMsg;
    type State = RegistryState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<SessionsMsg>,
        _args: (),
    ) -> Result<RegistryState, ActorProcessingErr> {
        Ok(RegistryState::default())
    }

    async fn handle(
        &self,
        _myself: ActorRef<SessionsMsg>,
        message: SessionsMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionsMsg::Register {
                socket,
                names,
                session,
                connected_at,
            } => state.register(socket, names, session, connected_at),
            SessionsMsg::Unregister { socket, names } => state.unregister(socket, names),
            SessionsMsg::Lookup(name, reply) => {
                let found = state
                    .names
                    .get(&name)
                    .map(|sockets| sockets.values().cloned().collect())
                    .unwrap_or_default();
                let _ = reply.send(found);
            }
            SessionsMsg::Disconnect(name) => state.disconnect(name),
            SessionsMsg::Names(reply) => {
                let _ = reply.send(state.names.len());
            }
        }
        Ok(())
    }
}

/// The session registry handle: cheap to clone, usable anywhere in the server
/// ([`Runtime::sessions`](super::Runtime::sessions)). See the module docs.
#[derive(Clone)]
pub struct Sessions {
    actor: ActorRef<SessionsMsg>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("actor", &self.actor.get_id())
            .finish()
    }
}

impl Sessions {
    /// Starts the registry actor under `supervisor`.
    pub(crate) async fn start(supervisor: ActorCell) -> Result<Self, SpawnErr> {
        let (actor, _) = Actor::spawn_linked(None, Registry, (), supervisor).await?;
        Ok(Self { actor })
    }

    pub(crate) fn register(
        &self,
        socket: ActorId,
        names: Vec<String>,
        session: Arc<Session>,
        connected_at: Instant,
    ) {
        let sent = self.actor.cast(SessionsMsg::Register {
            socket,
            names,
            session,
            connected_at,
        });
        if sent.is_err() {
            tracing::warn!("session registry unavailable: socket not registered");
        }
    }

    pub(crate) fn unregister(&self, socket: ActorId, names: Vec<String>) {
        // Fails only when the registry is gone, and its map with it.
        let _ = self.actor.cast(SessionsMsg::Unregister { socket, names });
    }

    async fn lookup(&self, name: &str) -> Vec<Arc<Session>> {
        match ractor::call!(self.actor, SessionsMsg::Lookup, name.to_owned()) {
            Ok(sessions) => sessions,
            Err(e) => {
                tracing::warn!(error = %e, "session registry unavailable: lookup found nothing");
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
        ractor::call!(self.actor, SessionsMsg::Names).unwrap_or_default()
    }

    /// Pushes `event` to every socket carrying `name` that has joined `topic`, on that join
    /// (the client sees a push from its channel). Returns how many sockets it was queued for.
    pub async fn push(
        &self,
        name: &str,
        topic: &str,
        event: &str,
        payload: impl Into<Payload>,
    ) -> usize {
        let payload = payload.into();
        self.lookup(name)
            .await
            .iter()
            .filter(|session| session.push(topic, event, &payload))
            .count()
    }

    /// Closes every socket carrying `name` on this node with close code 1001, straight away
    /// (a socket busy in a callback too), including a socket whose connect check started
    /// before this call and that registers after it.
    pub fn disconnect(&self, name: &str) {
        let sent = self.actor.cast(SessionsMsg::Disconnect(name.to_owned()));
        if sent.is_err() {
            tracing::warn!(%name, "session registry unavailable: disconnect not carried out");
        }
    }
}
