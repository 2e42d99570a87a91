//! Redis going away and coming back: both nodes report it, publishing neither blocks nor
//! piles up, delivery resumes, and each outage is logged once per node.

mod common;

use common::{LINK_WITHIN, Log, eventually, frame, next, node};
use fawkes_redis::testing::RedisServer;
use fawkes_runtime::{Adapter as _, AdapterState};

#[tokio::test]
async fn an_outage_is_reported_logged_once_and_recovered_from() {
    let log = Log::install();

    let mut redis = RedisServer::start();
    let (a, mut on_a) = node(&redis.url(), "node-a").await;
    let (b, mut on_b) = node(&redis.url(), "node-b").await;

    redis.stop();
    eventually(LINK_WITHIN, "both nodes report the link down", || {
        [&a, &b]
            .iter()
            .all(|n| n.stats().state == AdapterState::Disconnected)
            && [&on_a, &on_b]
                .iter()
                .all(|p| p.state() == AdapterState::Disconnected)
    })
    .await;

    // Publishing during the outage returns at once and drops every frame (counted) rather
    // than keeping it: none is delivered after Redis returns.
    let before = a.stats().dropped;
    for i in 0..100_000 {
        if i % 2 == 0 {
            a.publish(frame("lost"));
        } else {
            a.send_to("node-b", frame("lost"));
        }
    }
    eventually(
        LINK_WITHIN,
        "every frame of the outage counted as dropped",
        || a.stats().dropped - before == 100_000,
    )
    .await;
    assert_eq!(a.stats().published, 0);

    redis.start_again();
    eventually(LINK_WITHIN, "both nodes report the link restored", || {
        [&a, &b]
            .iter()
            .all(|n| n.stats().state == AdapterState::Connected)
            && [&on_a, &on_b]
                .iter()
                .all(|p| p.state() == AdapterState::Connected)
    })
    .await;
    a.publish(frame("after the outage"));
    b.send_to("node-a", frame("to a after the outage"));
    assert_eq!(
        next(&mut on_b, "a frame published after the outage").await,
        "after the outage",
        "nothing published during the outage is delivered"
    );
    assert_eq!(
        next(&mut on_a, "a frame sent after the outage").await,
        "to a after the outage"
    );

    for (name, adapter) in [("node-a", &a), ("node-b", &b)] {
        assert_eq!(adapter.stats().reconnects, 1, "{name}");
        assert_eq!(
            log.count(name, "redis link lost"),
            1,
            "one warning per outage for {name}"
        );
        assert_eq!(log.count(name, "redis link restored"), 1, "{name}");
        assert_eq!(log.count(name, "WARN"), 1, "no other warning for {name}");
    }
}

#[tokio::test]
async fn a_connection_killed_alone_is_relinked() {
    let redis = RedisServer::start();
    let (c, mut on_c) = node(&redis.url(), "node-c").await;
    let (d, mut on_d) = node(&redis.url(), "node-d").await;
    let client = redis::Client::open(redis.url()).expect("the server's URL");
    let mut admin = client
        .get_connection()
        .expect("a connection to the test server");

    // The subscriptions go (Redis stays up): each node relinks, a reconnection.
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query(&mut admin)
        .expect("CLIENT KILL");
    assert_eq!(killed, 2);
    eventually(LINK_WITHIN, "both nodes resubscribed", || {
        [&c, &d].iter().all(|n| {
            let stats = n.stats();
            stats.reconnects == 1 && stats.state == AdapterState::Connected
        })
    })
    .await;
    c.publish(frame("after the subscriptions"));
    assert_eq!(next(&mut on_d, "a frame").await, "after the subscriptions");

    // The publishing connections go: found out by the idle PING, without a frame lost to
    // them first.
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query(&mut admin)
        .expect("CLIENT KILL");
    assert_eq!(killed, 2);
    eventually(LINK_WITHIN, "both nodes relinked their publishers", || {
        [&c, &d].iter().all(|n| {
            let stats = n.stats();
            stats.reconnects == 2 && stats.state == AdapterState::Connected
        })
    })
    .await;
    d.publish(frame("after the publishers"));
    assert_eq!(next(&mut on_c, "a frame").await, "after the publishers");
    assert_eq!(c.stats().dropped + d.stats().dropped, 0);
}
