//! The subscriber task: one pub/sub connection subscribed to `{prefix}:all` and this node's
//! own channel, handing the other nodes' frames to the runtime.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::link::{Backoff, Shared, Side, pause};
use crate::wire;

/// The longest wait for the connection to open and the subscriptions to be confirmed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A quiet subscription is checked with a `PING` this often...
const IDLE_PING: Duration = Duration::from_secs(2);
/// ...which must be answered within this time.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs until the adapter is closed or dropped (`stop` changes or its sender goes away).
pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let linked = tokio::select! {
            linked = subscribe(&shared) => linked,
            _ = stop.changed() => return,
        };
        let (mut sink, mut stream) = match linked {
            Ok(halves) => halves,
            Err(error) => {
                shared.down(Side::Subscriber, &error);
                if !pause(backoff.next(), &mut stop).await {
                    return;
                }
                continue;
            }
        };
        shared.up(Side::Subscriber);
        let linked_at = Instant::now();
        let Some(error) = listen(&shared, &mut sink, &mut stream, &mut stop).await else {
            return;
        };
        shared.down(Side::Subscriber, &error);
        // The publishing connection went with the same Redis, most likely: it relinks too,
        // so that "connected" again means both work.
        shared.subscriber_losses.send_modify(|n| *n += 1);
        if !pause(backoff.after_loss(linked_at.elapsed()), &mut stop).await {
            return;
        }
    }
}

/// A pub/sub connection subscribed to both channels.
async fn subscribe(shared: &Shared) -> Result<(PubSubSink, PubSubStream), String> {
    let linking = async {
        let mut pubsub = shared.client.get_async_pubsub().await?;
        pubsub
            .subscribe(&[&shared.all_channel, &shared.own_channel])
            .await?;
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, linking).await {
        Ok(Ok(halves)) => Ok(halves),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no subscription within {CONNECT_TIMEOUT:?}")),
    }
}

/// Delivers messages until the link fails (its error) or the adapter stops (`None`).
async fn listen(
    shared: &Shared,
    sink: &mut PubSubSink,
    stream: &mut PubSubStream,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut idle_until = Instant::now() + IDLE_PING;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return None,
            message = stream.next() => {
                let Some(message) = message else {
                    return Some("the connection closed".into());
                };
                receive(shared, message.get_channel_name(), message.get_payload_bytes());
                idle_until = Instant::now() + IDLE_PING;
            }
            () = tokio::time::sleep_until(idle_until) => {
                match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => idle_until = Instant::now() + IDLE_PING,
                    Ok(Err(error)) => return Some(error.to_string()),
                    Err(_) => return Some(format!("no answer to PING within {PING_TIMEOUT:?}")),
                }
            }
        }
    }
}

/// One message from Redis: its frame goes to the runtime unless this node sent it (its own
/// messages on `{prefix}:all`, and the probes its publisher sends to its own channel).
fn receive(shared: &Shared, channel: &str, message: &[u8]) {
    let (sender, frame) = match wire::decode(message) {
        Ok(parts) => parts,
        Err(error) => {
            tracing::debug!(
                node = %shared.node, channel, ?error,
                "redis: a malformed message was dropped"
            );
            return;
        }
    };
    if sender == shared.node.as_bytes() {
        return;
    }
    let Some(inbound) = shared.inbound.get() else {
        tracing::debug!(
            node = %shared.node,
            "redis: a frame came before the runtime started; dropped"
        );
        return;
    };
    shared.received.fetch_add(1, Ordering::Relaxed);
    inbound.deliver(Bytes::copy_from_slice(frame));
}
