//! `ChannelCase`: one runtime and one mounted socket shared by many test sockets, and the
//! broadcasts the test itself observes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::select_all;
use tokio::time::Instant;

use super::frame::{DEADLINE, Frame};
use super::matcher::Match;
use super::test_socket::TestSocket;
use crate::mount::{ErasedSocket as _, MountedSocket};
use crate::protocol::{self, Vsn};
use crate::pubsub::{Broadcast, Subscription};
use crate::socket_actor::Startable;
use crate::transport::encoded_to_message;
use crate::{
    ConnectError, ConnectInfo, Params, PubSub, Runtime, RuntimeConfig, Socket, SocketMount,
};

/// How long a `refute_*` waits for a message that must not come, unless changed with
/// [`ChannelCase::with_refute_window`].
pub const REFUTE_WINDOW: Duration = Duration::from_millis(100);

/// A runtime with a mounted socket, from which a test makes as many [`TestSocket`]s as it
/// needs, like a Phoenix `ChannelCase` with its endpoint.
///
/// All test sockets share the runtime, so they see each other's broadcasts and presences.
/// The test itself also observes broadcasts, as a Phoenix test process does: the topics
/// passed to [`TestSocket::subscribe_and_join`] (or [`ChannelCase::subscribe`]) are
/// subscribed on the runtime's PubSub, and [`ChannelCase::assert_broadcast`] sees every
/// broadcast on them, including those a channel sends with `broadcast_from`, which the
/// sending socket never receives.
///
/// Dropping the case stops its runtime (if it started it); [`ChannelCase::shutdown`] does so
/// and waits. See the [module docs](super) for a whole test.
pub struct ChannelCase<S: Socket> {
    socket: MountedSocket<S>,
    runtime: Runtime,
    owns_runtime: bool,
    refute_window: Duration,
    observer: Observer,
}

impl<S: Socket> std::fmt::Debug for ChannelCase<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelCase")
            .field("runtime", &self.runtime)
            .field("refute_window", &self.refute_window)
            .finish_non_exhaustive()
    }
}

/// The test's own subscriptions, shared by the case and its sockets.
#[derive(Clone)]
pub(crate) struct Observer {
    pubsub: PubSub,
    observed: Arc<tokio::sync::Mutex<Observed>>,
}

impl Observer {
    /// Subscribes the test to `topic` (once).
    pub(crate) async fn subscribe(&self, topic: &str) {
        let mut observed = self.observed.lock().await;
        if !observed.subscriptions.contains_key(topic) {
            let subscription = self.pubsub.subscribe(topic).await;
            observed
                .subscriptions
                .insert(topic.to_owned(), subscription);
        }
    }
}

/// The broadcasts the test subscribed to, and those received but not yet asserted on.
#[derive(Default)]
struct Observed {
    subscriptions: HashMap<String, Subscription>,
    inbox: VecDeque<Frame>,
    /// Subscriptions that ended, and why (for failure messages).
    ended: Vec<String>,
}

impl<S: Socket> ChannelCase<S> {
    /// Starts a runtime with the default configuration and mounts `mount` on it.
    ///
    /// # Panics
    /// If the runtime cannot start.
    pub async fn start(mount: SocketMount<S>) -> Self {
        Self::start_with(RuntimeConfig::default(), mount).await
    }

    /// Starts a runtime configured with `config` and mounts `mount` on it.
    ///
    /// # Panics
    /// If the runtime cannot start.
    pub async fn start_with(config: impl Into<RuntimeConfig>, mount: SocketMount<S>) -> Self {
        let runtime = Runtime::start(config)
            .await
            .unwrap_or_else(|e| panic!("ChannelCase: {e}"));
        Self::new(runtime, mount, true)
    }

    /// Mounts `mount` on a runtime the test already has (say, one the application under
    /// test also uses). Dropping the case leaves that runtime running.
    pub fn with_runtime(runtime: &Runtime, mount: SocketMount<S>) -> Self {
        Self::new(runtime.clone(), mount, false)
    }

    fn new(runtime: Runtime, mount: SocketMount<S>, owns_runtime: bool) -> Self {
        Self {
            socket: MountedSocket::from(mount),
            observer: Observer {
                pubsub: runtime.pubsub().clone(),
                observed: Default::default(),
            },
            runtime,
            owns_runtime,
            refute_window: REFUTE_WINDOW,
        }
    }

    /// How long each `refute_*` of this case and of the sockets made after this call waits
    /// ([`REFUTE_WINDOW`] unless set): a message that arrives later is not seen.
    pub fn with_refute_window(mut self, window: Duration) -> Self {
        self.refute_window = window;
        self
    }

    /// The runtime the test sockets live on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The runtime's PubSub (to broadcast as other parts of the server would).
    pub fn pubsub(&self) -> &PubSub {
        self.runtime.pubsub()
    }

    /// Connects a test socket the way a client would: runs the socket's
    /// [`Socket::connect`] with `params` (as if from the query string) and, if it accepts,
    /// starts the connection.
    pub async fn connect(&self, params: &[(&str, &str)]) -> Result<TestSocket, ConnectError> {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let info = ConnectInfo {
            peer: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_token: None,
            uri: format!("/socket/websocket?{query}")
                .parse()
                .unwrap_or_default(),
            origin: None,
            user_agent: None,
        };
        self.connect_with(params, info).await
    }

    /// Like [`ChannelCase::connect`], with the connection details `connect` sees (an auth
    /// token, say) given by the test.
    pub async fn connect_with(
        &self,
        params: &[(&str, &str)],
        info: ConnectInfo,
    ) -> Result<TestSocket, ConnectError> {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (id, accepted) = self
            .socket
            .connect(&Params::from_query(&query), &info)
            .await?;
        Ok(self.start_socket(accepted, id).await)
    }

    /// A test socket with these assigns, skipping [`Socket::connect`] (as Phoenix's
    /// `socket/3`). Its socket id and disconnect topics come from the socket's
    /// [`Socket::id`] and [`Socket::disconnect_topics`], as for a connected one.
    pub async fn socket_with_assigns(&self, assigns: S::Assigns) -> TestSocket {
        let id = self.socket.socket().id(&assigns);
        self.socket_with_id(id.as_deref(), assigns).await
    }

    /// Like [`ChannelCase::socket_with_assigns`], with the socket id given by the test
    /// (`None`: no id) instead of [`Socket::id`].
    pub async fn socket_with_id(&self, id: Option<&str>, assigns: S::Assigns) -> TestSocket {
        let id = id.map(str::to_owned);
        let accepted = self.socket.accept(assigns, id.clone());
        self.start_socket(Box::new(accepted), id).await
    }

    async fn start_socket(&self, accepted: Box<dyn Startable>, id: Option<String>) -> TestSocket {
        TestSocket::start(
            &self.runtime,
            self.observer.clone(),
            accepted,
            id,
            self.refute_window,
        )
        .await
    }

    /// Subscribes the test to `topic`: from now on [`ChannelCase::assert_broadcast`] sees
    /// its broadcasts. Subscribing twice to one topic is one subscription.
    pub async fn subscribe(&self, topic: &str) {
        self.observer.subscribe(topic).await;
    }

    /// Stops observing `topic`.
    pub async fn unsubscribe(&self, topic: &str) {
        let mut observed = self.observer.observed.lock().await;
        observed.subscriptions.remove(topic);
    }

    /// A broadcast of `event` matching `payload` on a topic the test subscribed to, within
    /// [`DEADLINE`]; returns its payload. Broadcasts are matched in arrival order, and the
    /// ones skipped stay for later assertions.
    ///
    /// # Panics
    /// If none arrives in time; the message lists the broadcasts seen instead.
    pub async fn assert_broadcast(&self, event: &str, payload: impl Match) -> serde_json::Value {
        let is = |f: &Frame| f.event == event && payload.matches(&f.payload_value());
        let mut observed = self.observer.observed.lock().await;
        if observed.subscriptions.is_empty() && !observed.inbox.iter().any(is) {
            panic!(
                "assert_broadcast: the test observes no topic (subscribe with \
                 `TestSocket::subscribe_and_join` or `ChannelCase::subscribe`)"
            );
        }
        match observed.receive(Instant::now() + DEADLINE, &is).await {
            Some(frame) => frame.payload_value(),
            None => panic!(
                "assert_broadcast: no broadcast of {event:?} with {} within {DEADLINE:?} on {:?}{}{}",
                payload.describe(),
                observed.topics(),
                observed.ended_note(),
                super::frame::listing("broadcasts seen", &observed.inbox),
            ),
        }
    }

    /// Fails if a broadcast of `event` matching `payload` arrives (or has arrived unasserted)
    /// on a topic the test subscribed to, within the case's refute window ([`REFUTE_WINDOW`]
    /// unless set).
    ///
    /// # Panics
    /// If one does.
    pub async fn refute_broadcast(&self, event: &str, payload: impl Match) {
        let is = |f: &Frame| f.event == event && payload.matches(&f.payload_value());
        let mut observed = self.observer.observed.lock().await;
        if let Some(frame) = observed
            .receive(Instant::now() + self.refute_window, &is)
            .await
        {
            panic!(
                "refute_broadcast: unexpected broadcast of {event:?} with {}: {}",
                payload.describe(),
                frame.summary()
            );
        }
    }

    /// Stops the runtime (if this case started it), waiting up to a second for its
    /// connections to end.
    pub async fn shutdown(mut self) {
        if std::mem::take(&mut self.owns_runtime) {
            self.runtime.shutdown(Duration::from_secs(1)).await;
        }
    }
}

impl<S: Socket> Drop for ChannelCase<S> {
    fn drop(&mut self) {
        if !self.owns_runtime {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let runtime = self.runtime.clone();
            handle.spawn(async move { runtime.shutdown(Duration::from_secs(1)).await });
        }
    }
}

impl Observed {
    /// `; subscriptions ended: …` when any did, else nothing.
    fn ended_note(&self) -> String {
        if self.ended.is_empty() {
            String::new()
        } else {
            format!("; subscriptions ended: {}", self.ended.join(", "))
        }
    }

    fn topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self.subscriptions.keys().map(String::as_str).collect();
        topics.sort_unstable();
        topics
    }

    /// The first broadcast matching `is`, already received or arriving before `deadline`;
    /// the others stay in the inbox in arrival order.
    async fn receive(&mut self, deadline: Instant, is: &impl Fn(&Frame) -> bool) -> Option<Frame> {
        if let Some(at) = self.inbox.iter().position(is) {
            return self.inbox.remove(at);
        }
        loop {
            let next = async {
                if self.subscriptions.is_empty() {
                    std::future::pending::<()>().await;
                }
                let receives = self.subscriptions.values_mut().map(|s| Box::pin(s.recv()));
                let (broadcast, index, _) = select_all(receives).await;
                (broadcast, index)
            };
            match tokio::time::timeout_at(deadline, next).await {
                Err(_) => return None,
                // A subscription that ended (its topic actor failed) yields `None` from now
                // on: drop it (the map is unchanged since the receives were made, so the
                // index names the same entry).
                Ok((None, index)) => {
                    if let Some(topic) = self.subscriptions.keys().nth(index).cloned()
                        && let Some(ended) = self.subscriptions.remove(&topic)
                    {
                        let why = if ended.overflowed() {
                            "fell behind its capacity"
                        } else {
                            "its topic actor ended"
                        };
                        self.ended.push(format!("{topic:?} ({why})"));
                    }
                }
                Ok((Some(broadcast), _)) => {
                    let Some(frame) = seen(&broadcast) else {
                        continue;
                    };
                    if is(&frame) {
                        return Some(frame);
                    }
                    self.inbox.push_back(frame);
                }
            }
        }
    }
}

/// A broadcast as a V2 client would decode it.
fn seen(broadcast: &Broadcast) -> Option<Frame> {
    let encoded = protocol::encode_broadcast(
        Vsn::V2,
        &broadcast.topic,
        &broadcast.event,
        &broadcast.payload,
    )
    .ok()?;
    Frame::decode(&encoded_to_message(encoded))
}
