//! One connection's I/O loop: reads client frames as fast as its rate and inbound window
//! allow, decodes them (answering heartbeats itself), writes the outbound queue in batches,
//! enforces the idle timeout, and closes with the right code.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use ractor::ActorRef;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

use super::deadline::{SlowMessage, Watched};
use super::inflow::Inflow;
use super::outbound::ConnectionIo;
use super::{
    CloseReason, Control, MAX_EVENT_BYTES, MAX_REF_BYTES, OutFrame, Outbound, OutboundReceiver,
    encoded_to_message,
};
use crate::RuntimeShared;
use crate::metering::Transport;
use crate::protocol::{self, Inbound, Payload, Ref, Vsn, events};
use crate::socket_actor::{SocketMsg, StartArgs, Startable};

/// Most frames written per flush.
const BATCH: usize = 64;

/// Largest frame written. Larger messages go out as fragments (zero-copy slices of the same
/// bytes), because the WebSocket's write buffer keeps the capacity of the largest frame it
/// ever held: one 1.5 MiB presence list per connection would otherwise pin 1.5 MiB each.
const MAX_FRAME_OUT: usize = 8 * 1024;

pub(super) type Ws = WebSocketStream<Watched<ConnectionIo<TokioIo<Upgraded>>>>;

/// A client message read and not handed on yet.
struct Held {
    message: Message,
    /// Counted against the rate already.
    rated: bool,
    /// Its share of the inbound window, once it has one.
    permit: Option<OwnedSemaphorePermit>,
}

/// What the held message waits for before it may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Nothing,
    /// The rate allows it at this time.
    Rate(Instant),
    /// This many units of the inbound window.
    Window(u32),
}

/// Whether `held` may go on now; if not, what it waits for.
fn admit(inflow: &Inflow, held: &mut Held) -> Wait {
    if !held.rated {
        if let Err(until) = inflow.rate() {
            return Wait::Rate(until);
        }
        held.rated = true;
    }
    let cost = Inflow::cost(&held.message);
    if cost > 0 && held.permit.is_none() {
        match inflow.try_window(cost) {
            Some(permit) => held.permit = Some(permit),
            None => return Wait::Window(cost),
        }
    }
    Wait::Nothing
}

/// Serves one connection until it ends. Returns whether the server closed it carefully and
/// the client may still be sending: the caller then [`linger`]s on the WebSocket.
pub(super) async fn run(
    ws: &mut Ws,
    (out, mut rx, control): (Outbound, OutboundReceiver, Arc<Control>),
    accepted: Box<dyn Startable>,
    vsn: Vsn,
    shared: Arc<RuntimeShared>,
) -> bool {
    let config = &shared.config;
    let args = StartArgs {
        vsn,
        out: out.clone(),
        control: control.clone(),
        pubsub: shared.pubsub.clone(),
        presence: shared.presence.clone(),
        registry: shared.registry.clone(),
        supervisor: shared.sockets.clone(),
        max_channels: config.max_channels,
    };
    let (actor, mut actor_done) = match accepted.start(args).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "could not start a socket actor");
            return false;
        }
    };
    shared.metrics_connected(Transport::WebSocket);
    // Its turn in a drain: the actor, after every frame handed on before (their replies
    // queued), closes the connection with 1012; what is queued is written first.
    let ticket = shared.drainer.register(&actor);
    let _watched = shared.meters.watch_queue(out.probe());
    let inflow = Inflow::new(config.max_messages_per_second, config.max_messages_burst);
    // A message read is handed on at once unless it must wait for the rate or for room in the
    // inbound window; meanwhile the connection reads nothing more.
    let mut held: Option<Held> = None;
    let mut wait = Wait::Nothing;
    let mut actor_ended = false;
    // The long-lived futures are made once, not on every wakeup: a delivery should cost a
    // queue pop and a write, not re-registering a timer and two wakers. The timer is the idle
    // timeout's, re-armed lazily when it fires from the time of the last client frame, and
    // the rate's while a message waits for it.
    let limits = Limits {
        topic: config.max_topic_bytes,
    };
    let mut last_inbound = Instant::now();
    let timer = tokio::time::sleep(config.idle_timeout);
    let closed = control.closed();
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(timer, closed, shutdown);
    // Prebuilt frames taken off the queue and not written yet: a write abandoned at a close
    // leaves them here, and the close path writes them first.
    let mut gathered = Gathered::default();
    loop {
        if wait == Wait::Nothing
            && let Some(mut message) = held.take()
        {
            match admit(&inflow, &mut message) {
                Wait::Nothing => {
                    if let Err(reason) =
                        inbound(message.message, vsn, limits, &actor, &out, message.permit)
                    {
                        control.close(reason);
                        break;
                    }
                }
                waiting => {
                    match waiting {
                        Wait::Rate(until) => {
                            shared.metrics_rate_limited();
                            timer.as_mut().reset(until);
                        }
                        _ => shared.metrics_window_full(),
                    }
                    wait = waiting;
                    held = Some(message);
                }
            }
        }
        let window_cost = match wait {
            Wait::Window(cost) => cost,
            _ => 0,
        };
        tokio::select! {
            () = &mut closed => break,
            () = &mut shutdown => {
                control.close(CloseReason::Shutdown);
                break;
            }
            _ = &mut actor_done => {
                actor_ended = true;
                control.close(CloseReason::Internal);
                break;
            }
            permit = inflow.window(window_cost), if window_cost > 0 => {
                if let Some(held) = held.as_mut() {
                    held.permit = permit;
                }
                wait = Wait::Nothing;
                // The server, not the client, kept a message in progress waiting.
                ws.get_mut().resumed();
            }
            () = &mut timer => {
                let now = Instant::now();
                if let Wait::Rate(until) = wait
                    && until <= now
                {
                    // Unlike a window wait, the message clock keeps running: the client chose
                    // its pace (pings sent over the rate mid-message must not keep a partial
                    // message alive).
                    wait = Wait::Nothing;
                }
                if held.is_some() {
                    // Not reading is the server's doing: the client is not idle.
                    last_inbound = now;
                }
                let idle_at = last_inbound + config.idle_timeout;
                if idle_at <= now {
                    control.close(CloseReason::Idle);
                    break;
                }
                let next = match wait {
                    Wait::Rate(until) => until.min(idle_at),
                    _ => idle_at,
                };
                timer.as_mut().reset(next);
            }
            frame = rx.recv() => {
                let written = write_batch(
                    ws,
                    frame,
                    &mut rx,
                    config.write_timeout,
                    closed.as_mut(),
                    &control,
                    &mut gathered,
                );
                match written.await {
                    Written::Done => rx.written(),
                    // E.g. the queue overflowed while a write to this client was stuck.
                    Written::Closed => break,
                    Written::TimedOut => {
                        tracing::warn!("slow consumer: a write timed out; disconnecting");
                        control.close(CloseReason::SlowConsumer);
                        break;
                    }
                }
            }
            read = ws.next(), if held.is_none() => {
                match read {
                    Some(Ok(message)) => {
                        if matches!(message, Message::Close(_)) {
                            // tungstenite writes its close reply on the next read: nothing
                            // may be written directly after it.
                            rx.stop_direct();
                        }
                        last_inbound = Instant::now();
                        held = Some(Held { message, rated: false, permit: None });
                    }
                    Some(Err(e)) => {
                        if let Some(reason) = read_error(&e) {
                            control.close(reason);
                        }
                        break;
                    }
                    None => break,
                }
            }
        }
    }
    // Nothing is written directly any more: what is still sent is queued behind the end.
    rx.stop_direct();
    // Tell the client why, unless it is gone or not reading; then stop writing, so that a
    // client that reads sees the end at once.
    if let Some(reason) = control.reason() {
        shared
            .meters
            .transport(Transport::WebSocket)
            .close_code(reason.code());
    }
    // Boxed: it runs once per connection, and inline its timers would be part of every idle
    // connection's task for its whole life.
    let careful = Box::pin(async {
        match control.reason() {
            Some(reason @ (CloseReason::SlowConsumer | CloseReason::Drain)) => {
                // A slow consumer: best effort and brief, what was queued before the cut, then
                // the code; a client that does not read has no room for them and is simply
                // dropped. A drained socket: every reply and push queued, within the write
                // timeout.
                let drain = *reason == CloseReason::Drain;
                let limit = if drain {
                    config.write_timeout
                } else {
                    SLOW_CONSUMER_CLOSE
                };
                let frame = close_frame(reason);
                let flush = async {
                    let framed = &mut gathered;
                    while let Some(queued) = rx.try_recv() {
                        write_out(ws, queued, framed).await?;
                    }
                    framed.write(ws).await?;
                    ws.send(Message::Close(Some(frame))).await
                };
                let sent = timeout(limit, flush).await;
                drain && matches!(sent, Ok(Ok(())))
            }
            Some(reason) => {
                let frame = close_frame(reason);
                let sent =
                    timeout(Duration::from_secs(1), ws.send(Message::Close(Some(frame)))).await;
                matches!(sent, Ok(Ok(())))
            }
            None => {
                let _ = timeout(
                    Duration::from_secs(1),
                    futures_util::SinkExt::close(&mut *ws),
                )
                .await;
                false
            }
        }
    })
    .await;
    if careful {
        let _ = timeout(Duration::from_secs(1), ws.get_mut().shutdown()).await;
    }
    drop(held);
    drop(ticket);
    let _ = actor.cast(SocketMsg::Closed);
    // A channel callback that never returns must not keep the actor (and its subscriptions)
    // alive forever: give it a grace period, then kill it (its state's `Drop` cleans up).
    if !actor_ended && timeout(config.close_grace, &mut actor_done).await.is_err() {
        tracing::warn!("socket actor did not stop within the grace period; killing it");
        actor.kill();
    }
    shared.metrics_disconnected(
        Transport::WebSocket,
        control.reason() == Some(&CloseReason::SlowConsumer),
    );
    careful
}

/// How long the close frame of a slow consumer (1013) may take to be written before the
/// connection is dropped without it.
const SLOW_CONSUMER_CLOSE: Duration = Duration::from_millis(200);

/// The close frame telling the client `reason`.
fn close_frame(reason: &CloseReason) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(reason.code()),
        reason: reason.text().into(),
    }
}

/// Longest a closed connection is drained in [`linger`].
const LINGER_FOR: Duration = Duration::from_secs(2);

/// [`linger`] stops once the client has been quiet this long.
const LINGER_QUIET: Duration = Duration::from_millis(500);

/// After the server sent its close frame and shut down its write side: reads and discards
/// what the client still sends (the rest of an oversized frame, its own close frame) until it
/// closes, goes quiet, or `max_bytes` or [`LINGER_FOR`] is reached. Closing a socket with
/// unread input makes the kernel reset the connection: a client still sending then sees its
/// send fail and reports 1006 (browsers do) without reading the close frame.
pub(super) async fn linger(mut ws: Ws, max_bytes: usize) {
    let io = ws.get_mut();
    io.disarm();
    let deadline = Instant::now() + LINGER_FOR;
    let mut buf = vec![0u8; 8 * 1024];
    let mut left = max_bytes;
    while left > 0 {
        let until = deadline.min(Instant::now() + LINGER_QUIET);
        match tokio::time::timeout_at(until, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            // Closed, failed, quiet, or out of time.
            _ => break,
        }
    }
}

/// How [`write_batch`] ended.
enum Written {
    Done,
    /// The connection is being closed (`closed` completed): the write was abandoned.
    Closed,
    /// The client did not take it within the write timeout (or the write failed).
    TimedOut,
}

/// Writes `first` and whatever else is queued (up to a batch), then flushes once; gives up
/// when `limit` passes or `closed` completes, except for a drain: the frames it took off the
/// queue are written (within `limit`) before the drain's careful close writes the rest, so
/// nothing queued is lost and no message is cut in the middle of its fragments.
async fn write_batch(
    sink: &mut Ws,
    first: OutFrame,
    rx: &mut OutboundReceiver,
    limit: Duration,
    closed: std::pin::Pin<&mut impl Future<Output = ()>>,
    control: &Control,
    framed: &mut Gathered,
) -> Written {
    let write = async {
        write_out(sink, first, framed).await?;
        for _ in 1..BATCH {
            match rx.try_recv() {
                Some(frame) => write_out(sink, frame, framed).await?,
                None => break,
            }
        }
        framed.write(sink).await?;
        sink.flush().await
    };
    let outcome = |written: Result<Result<(), WsError>, _>| match written {
        Ok(Ok(())) => Written::Done,
        _ => Written::TimedOut,
    };
    let mut write = std::pin::pin!(timeout(limit, write));
    tokio::select! {
        biased;
        written = &mut write => return outcome(written),
        () = closed => {}
    }
    if control.reason() != Some(&CloseReason::Drain) {
        return Written::Closed;
    }
    match outcome(write.await) {
        Written::Done => Written::Closed,
        other => other,
    }
}

/// Prebuilt frames ([`OutFrame::Wire`]) gathered to be written together, in one `writev`
/// (under direct writes, which take a write whole).
#[derive(Default)]
struct Gathered {
    frames: Vec<bytes::Bytes>,
}

impl Gathered {
    /// Writes the frames gathered, after whatever tungstenite holds (flushed first).
    async fn write(&mut self, sink: &mut Ws) -> Result<(), WsError> {
        if self.frames.is_empty() {
            return Ok(());
        }
        sink.flush().await?;
        let io = sink.get_mut();
        let mut slices: Vec<std::io::IoSlice<'_>> = self
            .frames
            .iter()
            .map(|f| std::io::IoSlice::new(f))
            .collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let n = io.write_vectored(slices).await?;
            if n == 0 {
                return Err(WsError::Io(std::io::ErrorKind::WriteZero.into()));
            }
            std::io::IoSlice::advance_slices(&mut slices, n);
        }
        self.frames.clear();
        Ok(())
    }
}

/// Writes one queued frame: a prebuilt one is gathered into `framed`, anything else is fed to
/// tungstenite after the frames gathered before it.
async fn write_out(sink: &mut Ws, frame: OutFrame, framed: &mut Gathered) -> Result<(), WsError> {
    match frame {
        OutFrame::Wire(bytes) => {
            framed.frames.push(bytes);
            Ok(())
        }
        OutFrame::Flush => Ok(()),
        other => {
            framed.write(sink).await?;
            for message in other.into_messages() {
                feed_split(sink, message).await?;
            }
            Ok(())
        }
    }
}

/// Feeds `message`, as fragments of at most [`MAX_FRAME_OUT`] bytes if it is larger.
async fn feed_split(sink: &mut Ws, message: Message) -> Result<(), WsError> {
    let (opcode, last_is_final, data) = match message {
        Message::Text(ref t) if t.len() > MAX_FRAME_OUT => {
            (OpCode::Data(Data::Text), true, message.into_data())
        }
        Message::Binary(ref b) if b.len() > MAX_FRAME_OUT => {
            (OpCode::Data(Data::Binary), true, message.into_data())
        }
        Message::Frame(frame) if frame.payload().len() > MAX_FRAME_OUT => {
            let header = frame.header();
            let (opcode, is_final) = (header.opcode, header.is_final);
            (opcode, is_final, frame.into_payload())
        }
        other => return sink.feed(other).await,
    };
    let mut offset = 0;
    let mut opcode = opcode;
    while offset < data.len() {
        let end = (offset + MAX_FRAME_OUT).min(data.len());
        let is_final = last_is_final && end == data.len();
        sink.feed(Message::Frame(Frame::message(
            data.slice(offset..end),
            opcode,
            is_final,
        )))
        .await?;
        opcode = OpCode::Data(Data::Continue);
        offset = end;
    }
    Ok(())
}

/// The name limits a decoded frame is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) topic: usize,
}

/// Refuses a frame with a name over its limit, before anything keeps it.
fn check_limits(msg: &Inbound, limits: Limits) -> Result<(), CloseReason> {
    if msg.topic.len() > limits.topic {
        return Err(CloseReason::TooLong("topic"));
    }
    if msg.event.len() > MAX_EVENT_BYTES {
        return Err(CloseReason::TooLong("event"));
    }
    if msg.msg_ref.as_json().len() > MAX_REF_BYTES {
        return Err(CloseReason::TooLong("ref"));
    }
    if msg.join_ref.as_json().len() > MAX_REF_BYTES {
        return Err(CloseReason::TooLong("join_ref"));
    }
    Ok(())
}

/// Handles one client frame. `Err` closes the connection with that reason.
pub(super) fn inbound(
    message: Message,
    vsn: Vsn,
    limits: Limits,
    actor: &ActorRef<SocketMsg>,
    out: &Outbound,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<(), CloseReason> {
    let decoded = match &message {
        Message::Text(text) => protocol::decode_text(vsn, text.as_str()),
        Message::Binary(bytes) => protocol::decode_binary(vsn, bytes),
        // Pings are answered by tungstenite; pongs and close frames need nothing here.
        _ => return Ok(()),
    };
    let msg = decoded.map_err(|e| CloseReason::Malformed(e.to_string()))?;
    check_limits(&msg, limits)?;
    if msg.topic == events::PHOENIX && msg.event == events::HEARTBEAT {
        heartbeat(&msg, vsn, out);
        return Ok(());
    }
    actor
        .cast(SocketMsg::Frame(msg, permit))
        .map_err(|_| CloseReason::Internal)
}

fn heartbeat(msg: &Inbound, vsn: Vsn, out: &Outbound) {
    if let Ok(reply) = protocol::encode_reply(
        vsn,
        &Ref::NULL,
        &msg.msg_ref,
        events::PHOENIX,
        "ok",
        &Payload::empty(),
    ) {
        out.send(encoded_to_message(reply));
    }
}

/// The close reason for a read error, or `None` when the client is simply gone.
fn read_error(e: &WsError) -> Option<CloseReason> {
    match e {
        WsError::Io(io) if SlowMessage::is(io) => Some(CloseReason::SlowMessage),
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => Some(CloseReason::TooBig),
        WsError::Capacity(_) => Some(CloseReason::TooBig),
        WsError::Utf8(_) => Some(CloseReason::InvalidUtf8),
        WsError::Protocol(p) => Some(CloseReason::Malformed(p.to_string())),
        _ => None,
    }
}
