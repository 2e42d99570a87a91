//! Frames between nodes over a real redis-server: who gets what, in which order, and what
//! `close` still sends.

mod common;

use std::time::Duration;

use common::{LINK_WITHIN, eventually, frame, next, node};
use fawkes_redis::testing::RedisServer;
use fawkes_redis::{RedisAdapter, RedisConfig};
use fawkes_runtime::{Adapter as _, AdapterState};

#[tokio::test]
async fn send_to_reaches_only_its_node_and_publish_every_other_node_once() {
    let redis = RedisServer::start();
    let (a, mut on_a) = node(&redis.url(), "node-a").await;
    let (b, mut on_b) = node(&redis.url(), "node-b").await;
    let (_c, mut on_c) = node(&redis.url(), "node-c").await;

    a.send_to("node-b", frame("for b"));
    a.publish(frame("for all"));
    assert_eq!(next(&mut on_b, "the frame sent to b").await, "for b");
    assert_eq!(next(&mut on_b, "the published frame on b").await, "for all");
    // c would have got "for b" before "for all": one sender, one subscription.
    assert_eq!(
        next(&mut on_c, "the published frame on c").await,
        "for all",
        "a frame sent to one node reaches that node only"
    );

    // Once Redis has taken a's frames, a frame b publishes comes after them on `all`: had
    // a received its own, it would come first.
    eventually(LINK_WITHIN, "Redis took a's frames", || {
        a.stats().published == 2
    })
    .await;
    b.publish(frame("from b"));
    assert_eq!(
        next(&mut on_a, "b's frame on a").await,
        "from b",
        "a node does not receive its own frames"
    );
    assert_eq!(next(&mut on_c, "b's frame on c").await, "from b", "once");
    assert!(on_b.try_recv().is_none());
    assert_eq!(a.stats().received, 1);
    assert_eq!(b.stats().received, 2);

    // A frame to oneself, or to nobody, goes nowhere.
    a.send_to("node-a", frame("to self"));
    a.send_to("node-z", frame("to nobody"));
    a.publish(frame("after"));
    assert_eq!(next(&mut on_b, "the frame after").await, "after");
    assert_eq!(next(&mut on_c, "the frame after").await, "after");
}

#[tokio::test]
async fn frames_keep_their_order_across_publish_and_send_to() {
    let redis = RedisServer::start();
    let (a, _on_a) = node(&redis.url(), "node-a").await;
    let (_b, mut on_b) = node(&redis.url(), "node-b").await;
    let (_c, mut on_c) = node(&redis.url(), "node-c").await;

    for i in 0..1_000 {
        if i % 2 == 0 {
            a.publish(frame(format!("all {i}")));
        } else {
            a.send_to("node-b", frame(format!("b {i}")));
        }
    }
    for i in 0..1_000 {
        let expected = if i % 2 == 0 {
            format!("all {i}")
        } else {
            format!("b {i}")
        };
        assert_eq!(next(&mut on_b, "an ordered frame on b").await, expected);
    }
    for i in (0..1_000).step_by(2) {
        assert_eq!(
            next(&mut on_c, "an ordered frame on c").await,
            format!("all {i}")
        );
    }
    let stats = a.stats();
    assert_eq!((stats.published, stats.dropped), (1_000, 0));
}

#[tokio::test]
async fn close_sends_what_was_queued_before_it() {
    let redis = RedisServer::start();
    let (a, _on_a) = node(&redis.url(), "node-a").await;
    let (_b, mut on_b) = node(&redis.url(), "node-b").await;

    for i in 0..1_000 {
        a.publish(frame(format!("{i}")));
    }
    a.close(Duration::from_secs(10)).await;
    for i in 0..1_000 {
        assert_eq!(
            next(&mut on_b, "a frame queued before close").await,
            format!("{i}")
        );
    }
    let stats = a.stats();
    assert_eq!((stats.published, stats.dropped), (1_000, 0));
    assert_eq!(stats.state, AdapterState::Disconnected);
    // Closed: nothing more is sent.
    a.publish(frame("after close"));
    assert_eq!(a.stats().dropped, 1);
}

#[tokio::test]
async fn a_bad_url_is_refused_with_a_clear_message() {
    for (url, reason) in [
        ("http://127.0.0.1:6379/", "unsupported scheme \"http\""),
        ("127.0.0.1:6379", "no scheme"),
        ("rediss://127.0.0.1:6379/", "TLS"),
        ("redis://127.0.0.1:6379/x", "Invalid database number"),
        ("redis://[::1/", "did not parse"),
    ] {
        let error =
            RedisAdapter::new(RedisConfig::new(url, "node-a")).expect_err("a bad URL is refused");
        let message = error.to_string();
        assert!(message.starts_with("invalid Redis URL"), "{url}: {message}");
        assert!(message.contains(reason), "{url}: {message}");
        assert!(message.contains("expected redis://"), "{url}: {message}");
    }
    // The message does not give the password away.
    let error = RedisAdapter::new(RedisConfig::new("http://u:secret@127.0.0.1:6379/", "n"))
        .expect_err("a bad URL is refused");
    assert!(!error.to_string().contains("secret"), "{error}");
}

#[tokio::test]
async fn an_adapter_made_before_redis_is_up_links_when_it_comes() {
    let mut redis = RedisServer::start();
    redis.stop();
    let adapter =
        RedisAdapter::new(RedisConfig::new(redis.url(), "node-a")).expect("Redis need not be up");
    assert_eq!(adapter.stats().state, AdapterState::Disconnected);
    redis.start_again();
    assert!(
        adapter.connected(LINK_WITHIN).await,
        "{:?}",
        adapter.stats()
    );
    assert_eq!(
        adapter.stats().reconnects,
        0,
        "the first link is not a reconnection"
    );
}

#[tokio::test]
async fn a_quiet_link_is_checked_with_pings_and_stays_up() {
    let redis = RedisServer::start();
    let (a, _on_a) = node(&redis.url(), "node-a").await;
    let (b, mut on_b) = node(&redis.url(), "node-b").await;
    a.publish(frame("before"));
    assert_eq!(next(&mut on_b, "a frame").await, "before");

    // Each node's subscription and publishing connection, quiet now, are checked with a
    // PING: poll Redis until the last command of all four connections is one.
    let client = redis::Client::open(redis.url()).expect("the server's URL");
    let mut conn = client
        .get_connection()
        .expect("a connection to the test server");
    eventually(Duration::from_secs(10), "all four links pinged", || {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut conn)
            .expect("CLIENT LIST");
        let ours: Vec<&str> = clients
            .lines()
            .filter(|line| !line.contains("cmd=client|list"))
            .collect();
        let pinged = |subscriber: bool| {
            ours.iter()
                .filter(|line| line.contains(" sub=2 ") == subscriber)
                .filter(|line| line.contains(" cmd=ping "))
                .count()
        };
        ours.len() == 4 && pinged(true) == 2 && pinged(false) == 2
    })
    .await;

    for adapter in [&a, &b] {
        let stats = adapter.stats();
        assert_eq!(
            (stats.state, stats.reconnects),
            (AdapterState::Connected, 0)
        );
    }
    a.publish(frame("after"));
    assert_eq!(next(&mut on_b, "a frame after the pings").await, "after");
}
