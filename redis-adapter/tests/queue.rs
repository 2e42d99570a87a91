//! The publish queue's bounds, in frames and in bytes: what does not fit is dropped, counted,
//! and reported to the runtime as lost while the link stays up.
//!
//! These tests run on a current-thread runtime: the publisher task cannot drain the queue
//! while a test fills it without awaiting, so exactly what fits gets in.

mod common;

use common::{LINK_WITHIN, eventually, frame, next, node, node_with};
use fawkes_redis::testing::RedisServer;
use fawkes_redis::{RedisAdapter, RedisConfig};
use fawkes_runtime::testing::InboundProbe;
use fawkes_runtime::{Adapter as _, AdapterState};

/// `text` padded with dots to `len` bytes.
fn padded(text: &str, len: usize) -> bytes::Bytes {
    let mut body = text.to_owned();
    body.extend(std::iter::repeat_n('.', len - text.len()));
    frame(body)
}

/// The node is linked, has reported nothing else, and has counted `published` and `dropped`
/// frames, every dropped one reported lost.
fn linked_with(adapter: &RedisAdapter, probe: &InboundProbe, published: u64, dropped: u64) {
    let stats = adapter.stats();
    assert_eq!((stats.published, stats.dropped), (published, dropped));
    assert_eq!(probe.lost(), dropped, "every dropped frame reported lost");
    assert_eq!(
        (stats.state, stats.reconnects),
        (AdapterState::Connected, 0)
    );
    assert_eq!(probe.state(), AdapterState::Connected);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_frames_and_reports_them_lost_while_linked() {
    let redis = RedisServer::start();
    let (a, on_a) = node_with(RedisConfig {
        queue: 16,
        ..RedisConfig::new(redis.url(), "node-a")
    })
    .await;
    let (_b, mut on_b) = node(&redis.url(), "node-b").await;

    for i in 0..1_000 {
        a.publish(frame(format!("{i}")));
    }
    for i in 0..16 {
        assert_eq!(next(&mut on_b, "a queued frame").await, format!("{i}"));
    }
    eventually(LINK_WITHIN, "every frame accounted for", || {
        let stats = a.stats();
        stats.published + stats.dropped == 1_000
    })
    .await;
    linked_with(&a, &on_a, 16, 984);

    // Room again once drained.
    a.publish(frame("after"));
    assert_eq!(next(&mut on_b, "a frame after the flood").await, "after");
    assert!(on_b.try_recv().is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn the_queue_is_bounded_in_bytes_too() {
    let redis = RedisServer::start();
    let (a, on_a) = node_with(RedisConfig {
        queue_bytes: 100_000,
        ..RedisConfig::new(redis.url(), "node-a")
    })
    .await;
    let (_b, mut on_b) = node(&redis.url(), "node-b").await;

    // Far fewer frames than the queue holds, but ten of them fill its bytes.
    for i in 0..50 {
        a.publish(padded(&format!("{i} "), 10_000));
    }
    for i in 0..10 {
        let got = next(&mut on_b, "a queued frame").await;
        assert!(
            got.starts_with(&format!("{i} ")),
            "frame {i}: {}",
            &got[..8]
        );
        assert_eq!(got.len(), 10_000);
    }
    eventually(LINK_WITHIN, "every frame accounted for", || {
        let stats = a.stats();
        stats.published + stats.dropped == 50
    })
    .await;
    linked_with(&a, &on_a, 10, 40);

    // An empty queue takes any one frame, even one larger than the bound.
    a.publish(padded("large", 300_000));
    let got = next(&mut on_b, "the large frame").await;
    assert_eq!((got.len(), &got[..5]), (300_000, "large"));
    assert!(on_b.try_recv().is_none());
    eventually(LINK_WITHIN, "the large frame published", || {
        a.stats().published == 11
    })
    .await;
    linked_with(&a, &on_a, 11, 40);
}
