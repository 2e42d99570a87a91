//! Direct writes (`transport/wire.rs`): a frame for a connection with nothing ahead of it is
//! written to its socket by the sender itself. What must still hold: order per join across
//! direct and queued writes, the join reply before anything else of the join, and a slow
//! consumer cut off without holding up anyone else.

use std::time::Duration;

use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{HttpLimits, TransportConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::TestEndpoint;

/// Reads `count` `tick` broadcasts on `topic` and returns their `n`s in the order they came.
async fn ticks(client: &mut WsClient, topic: &str, count: usize) -> Vec<u64> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let frame = client
            .expect("a tick", |f| f.topic == topic && f.event == "tick")
            .await;
        seen.push(frame.payload["n"].as_u64().expect("n"));
    }
    seen
}

#[tokio::test]
async fn a_burst_past_the_socket_buffers_arrives_whole_and_in_order() {
    // Small buffers on both ends: the first frames of the burst are written directly, the
    // kernel takes part of one (its rest is finished by the connection's writer), and the
    // others wait in the queue behind it.
    let t = TestEndpoint::start_buffered(
        TransportConfig::default(),
        HttpLimits::default(),
        Some(8192),
    )
    .await;
    let mut c = WsClient::connect_with_receive_buffer(&t.url("user=reader&vsn=2.0.0"), 4096)
        .await
        .expect("connect");
    c.join("lab:order", json!({})).await;
    // 2,100-byte payloads: frames do not divide the buffers evenly.
    let blob = "o".repeat(2100);
    let sent = 300u64;
    for n in 0..sent {
        t.runtime
            .pubsub()
            .broadcast("lab:order", "tick", json!({"n": n, "blob": blob}));
    }
    let seen = ticks(&mut c, "lab:order", 300).await;
    assert_eq!(seen, (0..sent).collect::<Vec<_>>(), "all of them, in order");
    assert_eq!(t.runtime.stats().slow_consumer_disconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_racing_the_writer_on_two_threads_arrive_whole_and_in_order() {
    // A queue that holds the whole run: the reader may fall behind, never be cut.
    let t = TestEndpoint::start_buffered(
        TransportConfig {
            outbound_queue: 4096,
            ..TransportConfig::default()
        },
        HttpLimits::default(),
        Some(16 * 1024),
    )
    .await;
    let mut reader = t.client("reader").await;
    reader.join("lab:race", json!({})).await;
    // The reader reads on one thread while the broadcasts are written on the other, so
    // direct writes, queued writes and the writer's own flushes interleave.
    let sent = 3000u64;
    let pubsub = t.runtime.pubsub().clone();
    let publisher = tokio::spawn(async move {
        let blob = "r".repeat(300);
        for n in 0..sent {
            pubsub.broadcast("lab:race", "tick", json!({"n": n, "blob": blob}));
            if n % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let seen = ticks(&mut reader, "lab:race", 3000).await;
    publisher.await.expect("publisher");
    assert_eq!(seen, (0..sent).collect::<Vec<_>>(), "all of them, in order");
    assert_eq!(t.runtime.stats().slow_consumer_disconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_cut_off_alone_while_the_others_get_everything() {
    let t = TestEndpoint::start_buffered(
        TransportConfig {
            outbound_queue: 512,
            ..TransportConfig::default()
        },
        HttpLimits::default(),
        Some(16 * 1024),
    )
    .await;
    let mut reader = t.client("reader").await;
    reader.join("lab:stall", json!({})).await;
    // Joined and never read again: its buffers fill, then its queue, and it is cut off.
    let mut stalled = WsClient::connect_with_receive_buffer(&t.url("user=stalled&vsn=2.0.0"), 4096)
        .await
        .expect("connect");
    stalled.join("lab:stall", json!({})).await;
    // 4 KB a millisecond: the reader keeps up (512 frames of slack are half a second); the
    // stalled one's buffers take a few and its queue 512 more, so it is cut well before the
    // 1,000th.
    let sent = 1000u64;
    let pubsub = t.runtime.pubsub().clone();
    let publisher = tokio::spawn(async move {
        let blob = "s".repeat(4000);
        for n in 0..sent {
            pubsub.broadcast("lab:stall", "tick", json!({"n": n, "blob": blob}));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let seen = ticks(&mut reader, "lab:stall", 1000).await;
    publisher.await.expect("publisher");
    assert_eq!(seen, (0..sent).collect::<Vec<_>>(), "all of them, in order");

    // The stalled one was cut off (1013, or dropped if its close frame found no room); what
    // it had received before is a prefix of the broadcasts, in order.
    let (code, _) = stalled.closed().await;
    assert!(code == 1013 || code == 1006, "closed with {code}");
    let got: Vec<u64> = stalled
        .unmatched()
        .iter()
        .filter(|f| f.event == "tick")
        .map(|f| f.payload["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(got, (0..got.len() as u64).collect::<Vec<_>>(), "a prefix");
    assert!((got.len() as u64) < sent);
    assert_eq!(t.runtime.stats().slow_consumer_disconnects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_reply_comes_before_the_broadcasts_of_a_busy_topic() {
    let t = TestEndpoint::start().await;
    // Someone on the topic already, reading, so that its topic actor is busy writing.
    let mut listener = t.client("listener").await;
    listener.join("lab:hot", json!({})).await;
    let stop = CancellationToken::new();
    let pubsub = t.runtime.pubsub().clone();
    let ticking = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                pubsub.broadcast("lab:hot", "tick", json!({"n": n}));
                n += 1;
                // Paced, so that the topic's mailbox does not grow without bound.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    for i in 0..20 {
        let mut c = t.client(&format!("joiner{i}")).await;
        let join_ref = format!("j{i}");
        c.send_frame(
            json!(join_ref),
            json!(join_ref),
            "lab:hot",
            "phx_join",
            json!({}),
        )
        .await;
        let first = c
            .expect("a frame on lab:hot", |f| f.topic == "lab:hot")
            .await;
        assert_eq!(first.event, "phx_reply", "joiner {i}: the reply first");
        assert_eq!(first.msg_ref, Value::from(join_ref));
        assert_eq!(first.payload["status"], "ok");
        // And the broadcasts follow it.
        c.expect("a tick after the join", |f| f.event == "tick")
            .await;
    }
    stop.cancel();
    ticking.await.expect("ticking");
    // The listener kept receiving throughout.
    listener.expect("a tick", |f| f.event == "tick").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_topic_spread_over_both_threads_delivers_everything_in_order_to_everyone() {
    // Over 1,024 subscribers: each broadcast is written by two shards at once.
    let t = TestEndpoint::start_buffered(
        TransportConfig::default(),
        HttpLimits::default(),
        Some(8192),
    )
    .await;
    let pubsub = t.runtime.pubsub().clone();
    let mut subscriptions = Vec::new();
    for _ in 0..1100 {
        subscriptions.push(pubsub.subscribe("lab:big").await);
    }
    // Two sockets among them, one with small buffers (direct writes, then queued ones).
    let mut fast = t.client("fast").await;
    fast.join("lab:big", json!({})).await;
    let mut small = WsClient::connect_with_receive_buffer(&t.url("user=small&vsn=2.0.0"), 4096)
        .await
        .expect("connect");
    small.join("lab:big", json!({})).await;
    let blob = "g".repeat(1500);
    let sent = 60u64;
    for n in 0..sent {
        pubsub.broadcast("lab:big", "tick", json!({"n": n, "blob": blob}));
        if n == 20 {
            // Membership changes between broadcasts: the shards see the new list.
            subscriptions.truncate(1050);
        }
    }
    let expected: Vec<u64> = (0..sent).collect();
    for (i, subscription) in subscriptions.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let broadcast = tokio::time::timeout(Duration::from_secs(10), subscription.recv())
                .await
                .expect("in time")
                .expect("still subscribed");
            let payload = broadcast.payload.as_json().expect("json");
            got.push(payload["n"].as_u64().expect("n"));
        }
        assert_eq!(got, expected, "subscription {i}");
    }
    assert_eq!(ticks(&mut fast, "lab:big", 60).await, expected);
    assert_eq!(ticks(&mut small, "lab:big", 60).await, expected);
    assert_eq!(t.runtime.stats().slow_consumer_disconnects, 0);
}
