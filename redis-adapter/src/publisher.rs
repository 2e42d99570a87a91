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

use crate::link::{Backoff, Shared, Side};
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
    /// The link failed: reconnect.
    Lost(String),
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
            tokio::select! {
                () = tokio::time::sleep(backoff.next()) => {}
                changed = stop.changed() => if changed.is_err() { return },
            }
        };
        backoff.reset();
        losses.borrow_and_update();
        shared.up(Side::Publisher);
        match serve(&shared, &mut conn, &mut queue, &mut stop, &mut losses).await {
            Served::Done => return,
            Served::Lost(error) => shared.down(Side::Publisher, &error),
        }
    }
}

/// A connection that answers `PING`.
async fn connect(shared: &Shared) -> Result<MultiplexedConnection, String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut conn = shared
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
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
            _ = losses.changed() => return Served::Lost("the subscription was lost".into()),
            first = queue.recv() => {
                let Some(first) = first else { return Served::Done };
                fill(first, queue, &mut batch);
                if let Err(error) = send(shared, conn, &mut batch).await {
                    return Served::Lost(error);
                }
                idle_until = Instant::now() + IDLE_PING;
            }
            () = tokio::time::sleep_until(idle_until) => {
                if let Err(error) = redis::cmd("PING").query_async::<()>(conn).await {
                    return Served::Lost(error.to_string());
                }
                idle_until = Instant::now() + IDLE_PING;
            }
        }
    }
}

/// Takes `first` and what else is already queued into `batch`, up to its limits.
fn fill(first: Outgoing, queue: &mut mpsc::Receiver<Outgoing>, batch: &mut Vec<Outgoing>) {
    let mut bytes = first.frame.len();
    batch.push(first);
    while batch.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
        let Ok(next) = queue.try_recv() else { break };
        bytes += next.frame.len();
        batch.push(next);
    }
}

/// Publishes `batch` in one round trip and empties it; its frames count as published, or as
/// dropped if the link failed.
async fn send(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    batch: &mut Vec<Outgoing>,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
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
        cmd.arg(message).ignore();
    }
    let frames = batch.len() as u64;
    batch.clear();
    match pipe.query_async::<()>(conn).await {
        Ok(()) => {
            shared.published.fetch_add(frames, Ordering::Relaxed);
            Ok(())
        }
        Err(error) => {
            shared.dropped.fetch_add(frames, Ordering::Relaxed);
            Err(error.to_string())
        }
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
        fill(first, queue, batch);
        if let Err(error) = send(shared, conn, batch).await {
            tracing::debug!(
                node = %shared.node, %error,
                "redis: frames queued before close were dropped"
            );
            drop_queued(shared, queue);
            return;
        }
    }
}

/// Empties the queue, counting its frames as dropped.
fn drop_queued(shared: &Shared, queue: &mut mpsc::Receiver<Outgoing>) {
    let mut dropped = 0;
    while queue.try_recv().is_ok() {
        dropped += 1;
    }
    if dropped > 0 {
        shared.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}
