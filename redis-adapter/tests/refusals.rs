//! Redis refusing a node's `PUBLISH`es (its user's ACL), altogether or on some channels: the
//! node neither relinks in a tight loop nor flaps between states, logs once, and counts and
//! reports exactly the frames that were not published.

mod common;

use std::time::{Duration, Instant};

use common::{LINK_WITHIN, Log, admin, connections_accepted, eventually, frame, next, node};
use fawkes_redis::testing::RedisServer;
use fawkes_runtime::{Adapter as _, AdapterState};

/// How long the tests watch a node whose publishing Redis refuses.
const WATCH: Duration = Duration::from_secs(3);

/// Runs `ACL SETUSER user rules...` on the test server.
fn set_user(admin: &mut redis::Connection, user: &str, rules: &[&str]) {
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg(rules)
        .query(admin)
        .unwrap_or_else(|e| panic!("ACL SETUSER {user} {rules:?}: {e}"));
}

/// The URL of the test server for `user` (password `secret`).
fn url_as(redis: &RedisServer, user: &str) -> String {
    format!("redis://{user}:secret@127.0.0.1:{}/", redis.port())
}

#[tokio::test]
async fn a_node_whose_user_may_not_publish_waits_with_backoff_and_logs_one_outage() {
    let log = Log::install();
    let redis = RedisServer::start();
    let mut admin = admin(&redis.url());
    set_user(
        &mut admin,
        "user-a",
        &["on", ">secret", "~*", "&*", "+@all"],
    );
    let (a, on_a) = node(&url_as(&redis, "user-a"), "node-a").await;
    let (_b, mut on_b) = node(&redis.url(), "node-b").await;
    a.publish(frame("before"));
    assert_eq!(
        next(&mut on_b, "a frame before the refusal").await,
        "before"
    );

    // The link opens and answers PING, but Redis refuses every PUBLISH now.
    set_user(&mut admin, "user-a", &["-publish"]);
    let accepted_before = connections_accepted(&mut admin);
    a.publish(frame("refused"));
    eventually(LINK_WITHIN, "node-a counts its refused frame", || {
        a.stats().dropped == 1
    })
    .await;

    // Meanwhile the runtime keeps publishing (its heartbeats, its resynchronisations): that
    // must not make the node relink at once, again and again, nor report itself linked.
    let until = Instant::now() + WATCH;
    let mut reported_connected = false;
    while Instant::now() < until {
        a.publish(frame("refused"));
        a.send_to("node-b", frame("refused"));
        reported_connected |=
            a.stats().state == AdapterState::Connected || on_a.state() == AdapterState::Connected;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relinks = connections_accepted(&mut admin) - accepted_before;
    let stats = a.stats();
    assert!(
        relinks <= 10,
        "node-a relinked {relinks} times in {WATCH:?}: the backoff bounds it"
    );
    assert_eq!(
        stats.reconnects, 0,
        "no restoration while refused: {stats:?}"
    );
    assert!(
        !reported_connected,
        "node-a reported itself linked while Redis refused its PUBLISHes: {stats:?}"
    );
    assert_eq!(stats.published, 1, "{stats:?}");
    assert_eq!(
        on_a.lost(),
        0,
        "frames dropped while the link is reported down need no report"
    );
    assert_eq!(log.count("node-a", "redis link lost"), 1, "one warning");
    assert_eq!(log.count("node-a", "WARN"), 1, "and no other");
    assert_eq!(log.count("node-a", "redis link restored"), 0);

    // Allowed again: the node relinks by itself, once, and says so once.
    set_user(&mut admin, "user-a", &["+publish"]);
    eventually(LINK_WITHIN, "node-a relinks once it may publish", || {
        a.stats().state == AdapterState::Connected && on_a.state() == AdapterState::Connected
    })
    .await;
    a.publish(frame("after"));
    assert_eq!(
        next(&mut on_b, "a frame after the refusal").await,
        "after",
        "no refused frame was published"
    );
    assert_eq!(a.stats().reconnects, 1);
    assert_eq!(log.count("node-a", "redis link restored"), 1);
    assert_eq!(log.count("node-a", "WARN"), 1);
}

#[tokio::test]
async fn frames_refused_on_one_channel_are_the_only_ones_dropped_and_are_reported_lost() {
    let log = Log::install();
    let redis = RedisServer::start();
    let mut admin = admin(&redis.url());
    // May publish to all and to node-b, not to node-c.
    set_user(
        &mut admin,
        "user-p",
        &[
            "on",
            ">secret",
            "~*",
            "resetchannels",
            "&fawkes:all",
            "&fawkes:node:node-p",
            "&fawkes:node:node-b",
            "+@all",
        ],
    );
    let (p, on_p) = node(&url_as(&redis, "user-p"), "node-p").await;
    let (_b, mut on_b) = node(&redis.url(), "node-b").await;
    let (_c, mut on_c) = node(&redis.url(), "node-c").await;

    // Queued together, so most likely published as one pipeline.
    p.publish(frame("1"));
    p.send_to("node-c", frame("to c"));
    p.send_to("node-b", frame("to b"));
    p.publish(frame("3"));
    for expected in ["1", "to b", "3"] {
        assert_eq!(next(&mut on_b, "a frame on node-b").await, expected);
    }
    for expected in ["1", "3"] {
        assert_eq!(next(&mut on_c, "a frame on node-c").await, expected);
    }
    eventually(LINK_WITHIN, "every frame accounted for", || {
        let stats = p.stats();
        stats.published + stats.dropped == 4
    })
    .await;
    let stats = p.stats();
    assert_eq!(
        (stats.published, stats.dropped),
        (3, 1),
        "only the refused frame counts as dropped"
    );
    // The link works: it stays up, and the runtime learns of the lost frame.
    assert_eq!(
        (stats.state, stats.reconnects),
        (AdapterState::Connected, 0)
    );
    assert_eq!(on_p.state(), AdapterState::Connected);
    assert_eq!(on_p.lost(), 1);
    assert_eq!(log.count("node-p", "redis refused to publish frames"), 1);

    // Refused again: counted and reported again, logged at debug level only.
    p.send_to("node-c", frame("to c"));
    eventually(LINK_WITHIN, "the second refusal reported", || {
        on_p.lost() == 2
    })
    .await;
    assert_eq!(p.stats().dropped, 2);
    assert_eq!(log.count("node-p", "WARN"), 1);
    p.publish(frame("still linked"));
    assert_eq!(next(&mut on_b, "a frame").await, "still linked");
    assert_eq!(p.stats().reconnects, 0);
}
