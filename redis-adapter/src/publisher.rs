//! The publisher task: drains the one outgoing queue, in order, over one Redis connection,
//! several `PUBLISH`es per round trip.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::link::{Backoff, Shared, Side, pause};
use crate::wire::Message;

/// Most frames sent per round trip.
const BATCH_FRAMES: usize = 512;
/// A batch stops growing past this many bytes of frames.
const BATCH_BYTES: usize = 1 << 20;
/// An idle connection is checked with a `PING` this often.
const IDLE_PING: Duration = Duration::from_secs(1);
/// The longest wait for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait for Redis to answer a batch or a `PING` before the link counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a queued frame goes.
#[derive(Debug)]
pub(crate) enum Target {
    /// Every other node (`{prefix}:all`).
    All,
    /// One node's channel, `{prefix}:node:{name}`.
    Node(String),
}

/// A frame waiting in the queue.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) target: Target,
    pub(crate) frame: Bytes,
}

/// How serving a connection ended.
enum Served {
    /// Closed or dropped: the task ends.
    Done,
    /// The link failed, or Redis refuses this node's `PUBLISH`es: relink. `unsent` frames of
    /// the batch on its way when it failed were not published.
    Lost { error: String, unsent: u64 },
}

/// What became of a batch.
enum Outcome {
    /// Redis published every frame.
    Sent,
    /// The link works, but Redis refused `refused` of the frames (an ACL, say); the others
    /// were published. `error` is the first refusal.
    Refused { refused: u64, error: String },
    /// The link failed (an I/O error, a timeout): none of the `unsent` frames is known to
    /// have been published.
    Failed { error: String, unsent: u64 },
}

/// Runs until the adapter is closed (after sending what was queued) or dropped. `stop`
/// turns `true` on `close`; its sender going away (the adapter dropped) stops at once.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Outgoing>,
    mut stop: watch::Receiver<bool>,
) {
    let mut losses = shared.subscriber_losses.subscribe();
    let mut backoff = Backoff::new();
    loop {
        let mut conn = loop {
            // While unlinked, what is queued is dropped, never kept for later.
            drop_queued(&shared, &mut queue);
            if *stop.borrow() {
                return;
            }
            match connect(&shared).await {
                Ok(conn) => break conn,
                Err(error) => shared.down(Side::Publisher, &error),
            }
            if !pause(backoff.next(), &mut stop).await {
                return;
            }
        };
        losses.borrow_and_update();
        shared.up(Side::Publisher);
        let linked_at = Instant::now();
        let (error, unsent) =
            match serve(&shared, &mut conn, &mut queue, &mut stop, &mut losses).await {
                Served::Done => return,
                Served::Lost { error, unsent } => (error, unsent),
            };
        // Down first: frames dropped with the link need no report to the runtime, the
        // link's return resynchronises it.
        shared.down(Side::Publisher, &error);
        shared.drop_frames(unsent);
        if !pause(backoff.after_loss(linked_at.elapsed()), &mut stop).await {
            return;
        }
    }
}

/// A connection over which Redis publishes for this node: it answers a probe, an empty
/// frame published on this node's own channel (its subscriber drops it). A link that opens
/// but may not publish is thus never reported up.
async fn connect(shared: &Shared) -> Result<MultiplexedConnection, String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut conn = shared
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    probe(shared, &mut conn).await?;
    Ok(conn)
}

/// Publishes an empty frame on this node's own channel: `Err` if Redis refuses it.
async fn probe(shared: &Shared, conn: &mut MultiplexedConnection) -> Result<(), String> {
    let message = Message {
        header: &shared.header,
        frame: &[],
    };
    redis::cmd("PUBLISH")
        .arg(&shared.own_channel)
        .arg(message)
        .query_async::<()>(conn)
        .await
        .map_err(|e| e.to_string())
}

/// Sends queued frames until the link fails, the subscription is lost, or the adapter stops.
async fn serve(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    queue: &mut mpsc::Receiver<Outgoing>,
    stop: &mut watch::Receiver<bool>,
    losses: &mut watch::Receiver<u64>,
) -> Served {
    let mut batch = Vec::with_capacity(BATCH_FRAMES);
    let mut idle_until = Instant::now() + IDLE_PING;
    // Refusals are logged as a warning once per link, then at debug level.
    let mut refusals_logged = false;
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_ok() {
                    // Closing: everything queued before `close` goes out, in order.
                    flush(shared, conn, queue, &mut batch).await;
                }
                return Served::Done;
            }
            _ = losses.changed() => {
                return Served::Lost { error: "the subscription was lost".into(), unsent: 0 };
            }
            first = queue.recv() => {
                let Some(first) = first else { return Served::Done };
                fill(shared, first, queue, &mut batch);
                match send(shared, conn, &mut batch).await {
                    Outcome::Sent => {}
                    Outcome::Failed { error, unsent } => return Served::Lost { error, unsent },
                    Outcome::Refused { refused, error } => {
                        // Refused altogether (the node's user lost the right to publish)? The
                        // link is then of no use: relink, with backoff, until Redis takes the
                        // probe again. Refused on some channels only: the link stays up, and
                        // the runtime learns that frames were lost.
                        if let Err(probe_error) = probe(shared, conn).await {
                            return Served::Lost { error: probe_error, unsent: refused };
                        }
                        if refusals_logged {
                            tracing::debug!(
                                node = %shared.node, refused, %error,
                                "redis refused to publish frames; they are dropped"
                            );
                        } else {
                            refusals_logged = true;
                            tracing::warn!(
                                node = %shared.node, refused, %error,
                                "redis refused to publish frames on some channels (check this node's ACL); they are dropped"
                            );
                        }
                        shared.drop_frames(refused);
                    }
                }
                idle_until = Instant::now() + IDLE_PING;
            }
            () = tokio::time::sleep_until(idle_until) => {
                if let Err(error) = redis::cmd("PING").query_async::<()>(conn).await {
                    return Served::Lost { error: error.to_string(), unsent: 0 };
                }
                idle_until = Instant::now() + IDLE_PING;
            }
        }
    }
}

/// Takes `first` and what else is already queued into `batch`, up to its limits.
fn fill(
    shared: &Shared,
    first: Outgoing,
    queue: &mut mpsc::Receiver<Outgoing>,
    batch: &mut Vec<Outgoing>,
) {
    let mut bytes = first.frame.len();
    shared.dequeued(bytes);
    batch.push(first);
    while batch.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
        let Ok(next) = queue.try_recv() else { break };
        shared.dequeued(next.frame.len());
        bytes += next.frame.len();
        batch.push(next);
    }
}

/// Publishes `batch` in one round trip and empties it. Frames Redis published count as
/// published; the others are for the caller to drop, as it alone knows whether the link
/// stays up.
///
/// Redis answers each `PUBLISH` of a pipeline on its own, so a refusal (an error reply) names
/// the frames it concerns and the others count as published. When the link itself fails (an
/// I/O error, no answer in time) the client cannot tell which frames Redis received before
/// it did, so the whole batch counts as not sent.
async fn send(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    batch: &mut Vec<Outgoing>,
) -> Outcome {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for out in batch.iter() {
        let message = Message {
            header: &shared.header,
            frame: &out.frame,
        };
        let cmd = pipe.cmd("PUBLISH");
        match &out.target {
            Target::All => cmd.arg(&shared.all_channel),
            Target::Node(channel) => cmd.arg(channel),
        };
        cmd.arg(message);
    }
    let frames = batch.len() as u64;
    batch.clear();
    let replies = match pipe
        .query_async::<Vec<redis::RedisResult<redis::Value>>>(conn)
        .await
    {
        Ok(replies) => replies,
        Err(error) => {
            return Outcome::Failed {
                error: error.to_string(),
                unsent: frames,
            };
        }
    };
    let mut published = 0;
    let mut first_refusal = None;
    for reply in replies {
        match reply {
            Ok(_) => published += 1,
            Err(error) => {
                first_refusal.get_or_insert(error);
            }
        }
    }
    shared.published.fetch_add(published, Ordering::Relaxed);
    match first_refusal {
        None if published == frames => Outcome::Sent,
        None => Outcome::Failed {
            error: format!("{published} replies to {frames} PUBLISHes"),
            unsent: frames - published,
        },
        Some(error) => Outcome::Refused {
            refused: frames - published,
            error: error.to_string(),
        },
    }
}

/// Sends everything still queued (`close`); on a failure the rest is dropped.
async fn flush(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    queue: &mut mpsc::Receiver<Outgoing>,
    batch: &mut Vec<Outgoing>,
) {
    while let Ok(first) = queue.try_recv() {
        fill(shared, first, queue, batch);
        match send(shared, conn, batch).await {
            Outcome::Sent => {}
            Outcome::Refused { refused, error } => {
                tracing::debug!(
                    node = %shared.node, refused, %error,
                    "redis: frames queued before close were refused"
                );
                shared.drop_frames(refused);
            }
            Outcome::Failed { error, unsent } => {
                tracing::debug!(
                    node = %shared.node, %error,
                    "redis: frames queued before close were dropped"
                );
                shared.drop_frames(unsent);
                drop_queued(shared, queue);
                return;
            }
        }
    }
}

/// Empties the queue, dropping its frames.
fn drop_queued(shared: &Shared, queue: &mut mpsc::Receiver<Outgoing>) {
    let mut dropped = 0;
    while let Ok(out) = queue.try_recv() {
        shared.dequeued(out.frame.len());
        dropped += 1;
    }
    shared.drop_frames(dropped);
}
