//! One connection's I/O loop: reads and decodes client frames (answering heartbeats itself),
//! writes the outbound queue in batches, enforces the idle timeout, and closes with the right
//! code.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use ractor::ActorRef;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

use super::{
    CloseReason, MAX_EVENT_BYTES, MAX_REF_BYTES, OutFrame, Outbound, OutboundReceiver,
    encoded_to_message,
};
use crate::runtime::RuntimeShared;
use crate::runtime::protocol::{self, Inbound, Payload, Ref, Vsn, events};
use crate::runtime::socket_actor::{SocketMsg, StartArgs, Startable};

/// Most frames written per flush.
const BATCH: usize = 64;

/// Largest frame written. Larger messages go out as fragments (zero-copy slices of the same
/// bytes), because the WebSocket's write buffer keeps the capacity of the largest frame it
/// ever held: one 1.5 MiB presence list per connection would otherwise pin 1.5 MiB each.
const MAX_FRAME_OUT: usize = 8 * 1024;

/// Client frames handed to the socket actor and not yet handled. When they are all taken the
/// connection stops reading (TCP pushes back on the client) until the actor catches up.
const INBOUND_WINDOW: usize = 32;

pub(super) type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Serves one connection until it ends. Returns the WebSocket when the server closed it and
/// the client may still be sending: the caller then [`linger`]s on it.
pub(super) async fn run(
    ws: Ws,
    accepted: Box<dyn Startable>,
    vsn: Vsn,
    shared: Arc<RuntimeShared>,
) -> Option<Ws> {
    let config = &shared.config;
    let (out, mut rx, control) = Outbound::new(config.outbound_queue);
    let args = StartArgs {
        vsn,
        out: out.clone(),
        control: control.clone(),
        pubsub: shared.pubsub.clone(),
        presence: shared.presence.clone(),
        sessions: shared.sessions.clone(),
        supervisor: shared.sockets.clone(),
        max_channels: config.max_channels,
    };
    let (actor, mut actor_done) = match accepted.start(args).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "could not start a socket actor");
            return None;
        }
    };
    shared.metrics_connected();
    let (mut sink, mut stream) = ws.split();
    let window = Arc::new(Semaphore::new(INBOUND_WINDOW));
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut actor_ended = false;
    // The long-lived futures are made once, not on every wakeup: a delivery should cost a
    // queue pop and a write, not re-registering a timer and two wakers. The idle timer is
    // re-armed lazily, when it fires, from the time of the last client frame.
    let limits = Limits {
        topic: config.max_topic_bytes,
    };
    let mut last_inbound = Instant::now();
    let idle = tokio::time::sleep(config.idle_timeout);
    let closed = control.closed();
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(idle, closed, shutdown);
    loop {
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
            acquired = window.clone().acquire_owned(), if permit.is_none() => {
                permit = acquired.ok();
            }
            () = &mut idle => {
                let deadline = last_inbound + config.idle_timeout;
                if deadline > Instant::now() {
                    idle.as_mut().reset(deadline);
                    continue;
                }
                control.close(CloseReason::Idle);
                break;
            }
            frame = rx.recv() => {
                if !write_batch(&mut sink, frame, &mut rx, config.write_timeout).await {
                    tracing::warn!("slow consumer: a write timed out; disconnecting");
                    control.close(CloseReason::SlowConsumer);
                    break;
                }
            }
            read = stream.next(), if permit.is_some() => {
                match read {
                    Some(Ok(message)) => {
                        last_inbound = Instant::now();
                        if let Err(reason) = inbound(message, vsn, limits, &actor, &out, &mut permit) {
                            control.close(reason);
                            break;
                        }
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
    // Tell the client why, unless it is gone or not reading; then stop writing, so that a
    // client that reads sees the end at once.
    let mut careful = None;
    if let Some(reason) = control.reason()
        && *reason != CloseReason::SlowConsumer
    {
        let frame = CloseFrame {
            code: CloseCode::from(reason.code()),
            reason: reason.text().into(),
        };
        let sent = timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
        if matches!(sent, Ok(Ok(()))) {
            careful = sink.reunite(stream).ok();
        }
    } else {
        let _ = timeout(Duration::from_secs(1), sink.close()).await;
    }
    if let Some(ws) = careful.as_mut() {
        let _ = timeout(Duration::from_secs(1), ws.get_mut().shutdown()).await;
    }
    let _ = actor.cast(SocketMsg::Closed);
    // A channel callback that never returns must not keep the actor (and its subscriptions)
    // alive forever: give it a grace period, then kill it (its state's `Drop` cleans up).
    if !actor_ended && timeout(config.close_grace, &mut actor_done).await.is_err() {
        tracing::warn!("socket actor did not stop within the grace period; killing it");
        actor.kill();
    }
    shared.metrics_disconnected(control.reason() == Some(&CloseReason::SlowConsumer));
    careful
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

/// Writes `first` and whatever else is queued (up to a batch), then flushes once.
async fn write_batch(
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    first: OutFrame,
    rx: &mut OutboundReceiver,
    limit: Duration,
) -> bool {
    let write = async {
        for message in first.into_messages() {
            feed_split(sink, message).await?;
        }
        for _ in 1..BATCH {
            match rx.try_recv() {
                Some(frame) => {
                    for message in frame.into_messages() {
                        feed_split(sink, message).await?;
                    }
                }
                None => break,
            }
        }
        sink.flush().await
    };
    matches!(timeout(limit, write).await, Ok(Ok(())))
}

/// Feeds `message`, as fragments of at most [`MAX_FRAME_OUT`] bytes if it is larger.
async fn feed_split(
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    message: Message,
) -> Result<(), WsError> {
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
struct Limits {
    topic: usize,
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
fn inbound(
    message: Message,
    vsn: Vsn,
    limits: Limits,
    actor: &ActorRef<SocketMsg>,
    out: &Outbound,
    permit: &mut Option<OwnedSemaphorePermit>,
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
        .cast(SocketMsg::Frame(msg, permit.take()))
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
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => Some(CloseReason::TooBig),
        WsError::Capacity(_) => Some(CloseReason::TooBig),
        WsError::Utf8(_) => Some(CloseReason::InvalidUtf8),
        WsError::Protocol(p) => Some(CloseReason::Malformed(p.to_string())),
        _ => None,
    }
}
