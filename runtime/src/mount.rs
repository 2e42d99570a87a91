//! Mounting: a [`Socket`] with its [`Channel`]s on topic patterns, and the type erasure that
//! lets one socket actor drive channels of different types.
//!
//! Every channel callback runs through [`guard`], which turns a panic or an `Err` into a
//! crash result for that join only.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::channel::{Channel, ChannelContext, Continue, HandleIn, JoinOutcome, StopReason};
use super::metering::PatternMeters;
use super::protocol::Payload;
use super::socket::{ConnectError, ConnectInfo, Params, Socket};

/// A topic pattern: `"room:*"` matches every topic starting with `room:` (including `room:`
/// itself); a pattern without `*` matches exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPattern {
    /// Exactly this topic.
    Exact(String),
    /// Any topic with this prefix.
    Prefix(String),
}

/// A pattern with `*` anywhere but at the end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic pattern {0:?}: `*` is allowed only at the end")]
pub struct InvalidPattern(pub String);

impl TopicPattern {
    /// Parses `"room:*"` or `"lobby"`.
    pub fn parse(pattern: &str) -> Result<Self, InvalidPattern> {
        match pattern.find('*') {
            None => Ok(TopicPattern::Exact(pattern.to_owned())),
            Some(at) if at == pattern.len() - 1 => {
                Ok(TopicPattern::Prefix(pattern[..at].to_owned()))
            }
            Some(_) => Err(InvalidPattern(pattern.to_owned())),
        }
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Exact(t) => t == topic,
            TopicPattern::Prefix(p) => topic.starts_with(p.as_str()),
        }
    }
}

/// What a callback produced, plus the pushes it queued.
pub(crate) struct Outcome<T> {
    pub(crate) result: Result<T, String>,
    pub(crate) pushes: Vec<(String, Payload)>,
}

/// Runs a callback future, turning a panic or an `Err` into `Err(description)`.
async fn guard<T, E: std::fmt::Display>(
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic_message(panic.as_ref())),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("panicked: {text}")
}

/// The result of an erased join.
pub(crate) enum ErasedJoin<A> {
    Joined {
        instance: Box<dyn ErasedInstance<A>>,
        reply: Value,
        pushes: Vec<(String, Payload)>,
    },
    Refused(Value),
    Crashed(String),
}

/// A mounted channel, type-erased over its state and messages.
pub(crate) trait ErasedChannel<A>: Send + Sync {
    fn intercepts(&self) -> Arc<[String]>;
    fn join<'a>(
        self: Arc<Self>,
        topic: &'a str,
        payload: Payload,
        ctx: super::socket_actor::ContextParts<A>,
    ) -> BoxFuture<'a, ErasedJoin<A>>;
}

/// One live join, type-erased.
pub(crate) trait ErasedInstance<A>: Send {
    fn handle_in<'a>(
        &'a mut self,
        event: &'a str,
        payload: Payload,
    ) -> BoxFuture<'a, Outcome<HandleIn>>;
    fn handle_info(&mut self, message: Box<dyn Any + Send>) -> BoxFuture<'_, Outcome<Continue>>;
    fn handle_out<'a>(
        &'a mut self,
        event: &'a str,
        payload: Payload,
    ) -> BoxFuture<'a, Outcome<Continue>>;
    fn terminate<'a>(&'a mut self, reason: &'a StopReason) -> BoxFuture<'a, Outcome<()>>;
}

struct Mounted<C>(Arc<C>);

struct Instance<C: Channel> {
    channel: Arc<C>,
    state: C::State,
    ctx: ChannelContext<C>,
}

impl<C: Channel> Instance<C> {
    fn outcome<T>(&mut self, result: Result<T, String>) -> Outcome<T> {
        Outcome {
            result,
            pushes: std::mem::take(&mut self.ctx.pushes),
        }
    }
}

impl<C: Channel> ErasedChannel<C::Assigns> for Mounted<C> {
    fn intercepts(&self) -> Arc<[String]> {
        self.0
            .intercepts()
            .iter()
            .map(|e| (*e).to_owned())
            .collect()
    }

    fn join<'a>(
        self: Arc<Self>,
        topic: &'a str,
        payload: Payload,
        parts: super::socket_actor::ContextParts<C::Assigns>,
    ) -> BoxFuture<'a, ErasedJoin<C::Assigns>> {
        Box::pin(async move {
            let channel = self.0.clone();
            let mut ctx = parts.into_context::<C>();
            // The call happens inside the guarded future, so code a callback runs before its
            // first await is guarded too.
            match guard(async { channel.join(topic, payload, &mut ctx).await }).await {
                Ok(JoinOutcome::Joined { state, reply }) => {
                    let pushes = std::mem::take(&mut ctx.pushes);
                    ErasedJoin::Joined {
                        instance: Box::new(Instance {
                            channel,
                            state,
                            ctx,
                        }),
                        reply,
                        pushes,
                    }
                }
                Ok(JoinOutcome::Refused(reply)) => ErasedJoin::Refused(reply),
                Err(e) => ErasedJoin::Crashed(e),
            }
        })
    }
}

impl<C: Channel> ErasedInstance<C::Assigns> for Instance<C> {
    fn handle_in<'a>(
        &'a mut self,
        event: &'a str,
        payload: Payload,
    ) -> BoxFuture<'a, Outcome<HandleIn>> {
        Box::pin(async move {
            let (channel, state, ctx) = (&self.channel, &mut self.state, &mut self.ctx);
            let result = guard(async { channel.handle_in(event, payload, state, ctx).await }).await;
            self.outcome(result)
        })
    }

    fn handle_info(&mut self, message: Box<dyn Any + Send>) -> BoxFuture<'_, Outcome<Continue>> {
        Box::pin(async move {
            let result = match message.downcast::<C::Info>() {
                Ok(message) => {
                    let (channel, state, ctx) = (&self.channel, &mut self.state, &mut self.ctx);
                    guard(async { channel.handle_info(*message, state, ctx).await }).await
                }
                Err(_) => {
                    tracing::warn!(topic = %self.ctx.topic, "handle_info: message of the wrong type dropped");
                    Ok(Continue::Continue)
                }
            };
            self.outcome(result)
        })
    }

    fn handle_out<'a>(
        &'a mut self,
        event: &'a str,
        payload: Payload,
    ) -> BoxFuture<'a, Outcome<Continue>> {
        Box::pin(async move {
            let (channel, state, ctx) = (&self.channel, &mut self.state, &mut self.ctx);
            let result =
                guard(async { channel.handle_out(event, payload, state, ctx).await }).await;
            self.outcome(result)
        })
    }

    fn terminate<'a>(&'a mut self, reason: &'a StopReason) -> BoxFuture<'a, Outcome<()>> {
        Box::pin(async move {
            let (channel, state, ctx) = (&self.channel, &mut self.state, &mut self.ctx);
            let result = guard(async {
                channel.terminate(reason, state, ctx).await;
                Ok::<(), std::convert::Infallible>(())
            })
            .await;
            self.outcome(result)
        })
    }
}

/// One route: a pattern, the channel mounted on it, and the pattern's metrics.
pub(crate) struct Route<A> {
    pattern: TopicPattern,
    pub(crate) channel: Arc<dyn ErasedChannel<A>>,
    pub(crate) meters: Arc<PatternMeters>,
}

/// A route as mounted: its pattern not parsed yet.
type Unparsed<A> = (String, Arc<dyn ErasedChannel<A>>);

/// The channel routes of a socket, in declaration order (first match wins).
pub(crate) struct Routes<A> {
    routes: Vec<Route<A>>,
}

impl<A> Routes<A> {
    pub(crate) fn find(&self, topic: &str) -> Option<&Route<A>> {
        self.routes.iter().find(|r| r.pattern.matches(topic))
    }

    /// Records the pattern `topic` is routed by, as mounted (`room:*`), on `span` as
    /// `messaging.destination.template`; nothing is looked up for a disabled span.
    pub(crate) fn record_pattern(&self, span: &tracing::Span, topic: &str) {
        if span.is_disabled() {
            return;
        }
        match self.find(topic).map(|route| &route.pattern) {
            Some(TopicPattern::Exact(t)) => {
                span.record("messaging.destination.template", t.as_str());
            }
            Some(TopicPattern::Prefix(p)) => {
                span.record("messaging.destination.template", format!("{p}*"));
            }
            None => {}
        }
    }
}

/// A socket and its channels, ready to be served by an [`super::Endpoint`] (at a path) or as
/// a [`super::SocketService`] (mounted in any tower router).
///
/// Topic patterns are checked once, when the mount is served: [`super::Endpoint::socket`] and
/// [`super::Runtime::socket_service`] refuse a mount with an invalid pattern with an
/// [`InvalidPattern`] naming it, so [`SocketMount::channel`] itself cannot fail and mounts
/// chain without a `?` per channel.
///
/// ```
/// # use fawkes_runtime::*;
/// # struct UserSocket;
/// # impl Socket for UserSocket {
/// #     type Assigns = ();
/// #     async fn connect(&self, _: &Params, _: &ConnectInfo) -> Result<(), ConnectError> { Ok(()) }
/// # }
/// # struct Room;
/// # impl Channel for Room {
/// #     type Assigns = (); type State = (); type Info = ();
/// #     async fn join(&self, _: &str, _: Payload, _: &mut ChannelContext<Self>) -> Result<JoinOutcome<()>, ChannelError> { Ok(JoinOutcome::ok(())) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runtime = Runtime::start(TransportConfig::default()).await?;
/// let mount = SocketMount::new(UserSocket)
///     .channel("room:*", Room) // every topic starting with `room:`
///     .channel("lobby", Room); // exactly `lobby`
/// let endpoint = runtime.endpoint().socket("/socket", mount)?;
///
/// // A `*` anywhere but at the end is refused when the mount is served.
/// let bad = SocketMount::new(UserSocket).channel("room:*:chat", Room);
/// let error = runtime.socket_service(bad).err().expect("refused");
/// assert_eq!(error.to_string(), r#"invalid topic pattern "room:*:chat": `*` is allowed only at the end"#);
/// # drop(endpoint);
/// # runtime.shutdown(std::time::Duration::from_secs(1)).await;
/// # Ok(())
/// # }
/// ```
pub struct SocketMount<S: Socket> {
    socket: S,
    /// Patterns as written, parsed when the mount is served.
    routes: Vec<Unparsed<S::Assigns>>,
}

impl<S: Socket> SocketMount<S> {
    /// A socket with no channels yet.
    pub fn new(socket: S) -> Self {
        Self {
            socket,
            routes: Vec::new(),
        }
    }

    /// Mounts `channel` on `pattern`: `"room:*"` matches every topic starting with `room:`
    /// (`room:` itself included), a pattern without `*` matches exactly (see
    /// [`TopicPattern`]). Earlier mounts win. The pattern is checked when the mount is served.
    pub fn channel<C>(mut self, pattern: &str, channel: C) -> Self
    where
        C: Channel<Assigns = S::Assigns>,
    {
        self.routes
            .push((pattern.to_owned(), Arc::new(Mounted(Arc::new(channel)))));
        self
    }
}

/// A connection accepted by [`Socket::connect`], not yet started.
pub(crate) struct Accepted<A> {
    pub(crate) assigns: Arc<A>,
    pub(crate) id: Option<String>,
    pub(crate) disconnect_topics: Vec<String>,
    pub(crate) routes: Arc<Routes<A>>,
    /// When the connect check started (a disconnect from then on applies to this socket).
    pub(crate) connected_at: std::time::Instant,
}

/// A connection accepted by `connect`: its socket id, and what starts its socket actor.
pub(crate) type Connected = (Option<String>, Box<dyn super::socket_actor::Startable>);

/// A mounted socket, type-erased over its assigns.
pub(crate) trait ErasedSocket: Send + Sync {
    fn connect<'a>(
        &'a self,
        params: &'a Params,
        info: &'a ConnectInfo,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>>;
}

pub(crate) struct MountedSocket<S: Socket> {
    socket: S,
    routes: Arc<Routes<S::Assigns>>,
}

impl<S: Socket> MountedSocket<S> {
    /// Parses every pattern of `mount`, the first invalid one refusing it, and registers each
    /// pattern's metrics (once: the socket actors record on these handles).
    pub(crate) fn build(mount: SocketMount<S>) -> Result<Self, InvalidPattern> {
        let routes = mount
            .routes
            .into_iter()
            .map(|(pattern, channel)| {
                Ok(Route {
                    pattern: TopicPattern::parse(&pattern)?,
                    channel,
                    meters: PatternMeters::register(&pattern),
                })
            })
            .collect::<Result<_, InvalidPattern>>()?;
        Ok(Self {
            socket: mount.socket,
            routes: Arc::new(Routes { routes }),
        })
    }
}

/// For the test helpers, which take a mount as built: an invalid pattern fails the test.
#[cfg(feature = "testing")]
impl<S: Socket> From<SocketMount<S>> for MountedSocket<S> {
    fn from(mount: SocketMount<S>) -> Self {
        match Self::build(mount) {
            Ok(mounted) => mounted,
            Err(e) => panic!("{e}"),
        }
    }
}

impl<S: Socket> ErasedSocket for MountedSocket<S> {
    fn connect<'a>(
        &'a self,
        params: &'a Params,
        info: &'a ConnectInfo,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>> {
        Box::pin(async move {
            let connected_at = std::time::Instant::now();
            let assigns = match guard(async {
                Ok::<_, std::convert::Infallible>(self.socket.connect(params, info).await)
            })
            .await
            {
                Ok(result) => result?,
                Err(panic) => {
                    tracing::error!(error = %panic, "socket connect crashed");
                    return Err(ConnectError::with_status(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                    ));
                }
            };
            let id = self.socket.id(&assigns);
            let accepted = Accepted {
                id: id.clone(),
                disconnect_topics: self.socket.disconnect_topics(&assigns),
                assigns: Arc::new(assigns),
                routes: self.routes.clone(),
                connected_at,
            };
            Ok((
                id,
                Box::new(accepted) as Box<dyn super::socket_actor::Startable>,
            ))
        })
    }
}

#[cfg(feature = "testing")]
impl<S: Socket> MountedSocket<S> {
    /// The socket handler (test sockets ask it for ids).
    pub(crate) fn socket(&self) -> &S {
        &self.socket
    }

    /// A connection with `assigns` and socket id `id`, as if `connect` had accepted it.
    pub(crate) fn accept(&self, assigns: S::Assigns, id: Option<String>) -> Accepted<S::Assigns> {
        Accepted {
            id,
            disconnect_topics: self.socket.disconnect_topics(&assigns),
            assigns: Arc::new(assigns),
            routes: self.routes.clone(),
            connected_at: std::time::Instant::now(),
        }
    }
}

/// The `phx_error` payload for a crashed channel.
pub(crate) fn crash_payload() -> Value {
    json!({ "reason": "channel_crash" })
}

#[cfg(test)]
mod tests {
    use super::TopicPattern;

    #[test]
    fn topic_patterns() {
        let room = TopicPattern::parse("room:*").expect("valid");
        assert!(room.matches("room:lobby") && room.matches("room:") && !room.matches("rooms:x"));
        let exact = TopicPattern::parse("lobby").expect("valid");
        assert!(exact.matches("lobby") && !exact.matches("lobby:1"));
        assert!(TopicPattern::parse("*").expect("valid").matches("anything"));
        assert!(TopicPattern::parse("room:*:x").is_err());
        assert!(TopicPattern::parse("*room").is_err());
        assert!(TopicPattern::parse("").expect("valid").matches(""));
    }
}
