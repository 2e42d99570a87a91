//! Broadcasts: fan-out, exclusion of the sender, interception, ordering, and from outside.

use fawkes_runtime::{SubscriberId, Subscription};
use serde_json::{Value, json};

use crate::support::TestEndpoint;

#[tokio::test]
async fn broadcast_reaches_every_subscriber_including_the_sender_and_broadcast_from_skips_it() {
    let t = TestEndpoint::start().await;
    let mut a = t.client("ann").await;
    let mut b = t.client("bob").await;
    let mut outsider = t.client("cid").await;
    let (ja, _) = a.join("lab:room", json!({})).await;
    b.join("lab:room", json!({})).await;
    outsider.join("lab:elsewhere", json!({})).await;

    let r = a
        .push(&ja, "lab:room", "broadcast", json!({"body": "hi"}))
        .await;
    a.reply(&r).await;
    for c in [&mut a, &mut b] {
        let shout = c.event("lab:room", "shout").await;
        assert_eq!(
            (shout.join_ref, shout.msg_ref),
            (Value::Null, Value::Null),
            "broadcast frames carry no refs"
        );
        assert_eq!(shout.payload, json!({"body": "hi"}));
    }

    let r = a
        .push(&ja, "lab:room", "broadcast_from", json!({"body": "not me"}))
        .await;
    a.reply(&r).await;
    assert_eq!(
        b.event("lab:room", "shout").await.payload,
        json!({"body": "not me"})
    );
    // Sentinel: a broadcast after it; `a` must see only the sentinel.
    let r = a
        .push(&ja, "lab:room", "broadcast", json!({"body": "sentinel"}))
        .await;
    a.reply(&r).await;
    assert_eq!(
        a.event("lab:room", "shout").await.payload,
        json!({"body": "sentinel"})
    );
    let h = outsider.heartbeat().await;
    outsider.reply(&h).await;
    assert!(
        outsider.unmatched().iter().all(|f| f.event != "shout"),
        "other topics get nothing"
    );
}

#[tokio::test]
async fn intercepted_events_go_through_handle_out_for_each_subscriber() {
    let t = TestEndpoint::start().await;
    let mut a = t.client("ann").await;
    let mut b = t.client("bob").await;
    let (ja, _) = a.join("lab:i", json!({})).await;
    let (jb, _) = b.join("lab:i", json!({})).await;
    let r = a.push(&ja, "lab:i", "intercept", json!({"x": 1})).await;
    a.reply(&r).await;
    let seen_a = a.event("lab:i", "intercepted").await;
    let seen_b = b.event("lab:i", "intercepted").await;
    assert_eq!(seen_a.payload, json!({"x": 1, "seen_by": "ann"}));
    assert_eq!(seen_b.payload, json!({"x": 1, "seen_by": "bob"}));
    // handle_out pushes, so the frames carry each client's own join_ref.
    assert_eq!((seen_a.join_ref, seen_b.join_ref), (json!(ja), json!(jb)));
}

#[tokio::test]
async fn broadcasts_from_one_sender_arrive_in_order_at_every_subscriber() {
    let t = TestEndpoint::start().await;
    let mut clients = Vec::new();
    for name in ["a", "b", "c"] {
        let mut c = t.client(name).await;
        c.join("lab:order", json!({})).await;
        clients.push(c);
    }
    let pubsub = t.runtime.pubsub().clone();
    for i in 0..200 {
        pubsub.broadcast("lab:order", "n", json!({"i": i}));
    }
    for c in &mut clients {
        for i in 0..200 {
            assert_eq!(c.event("lab:order", "n").await.payload, json!({"i": i}));
        }
    }
}

#[tokio::test]
async fn code_outside_channels_can_subscribe_and_broadcast() {
    let t = TestEndpoint::start().await;
    let pubsub = t.runtime.pubsub().clone();
    let mut sub: Subscription = pubsub.subscribe("lab:news").await;
    let mut c = t.client("ann").await;
    let (j, _) = c.join("lab:news", json!({})).await;

    pubsub.broadcast("lab:news", "headline", json!({"t": "from the server"}));
    assert_eq!(
        c.event("lab:news", "headline").await.payload,
        json!({"t": "from the server"})
    );
    let got = sub.recv().await.expect("subscription gets it");
    assert_eq!(
        (got.topic.as_str(), got.event.as_str()),
        ("lab:news", "headline")
    );

    // A channel broadcast reaches the plain subscriber too.
    let r = c
        .push(&j, "lab:news", "broadcast", json!({"from": "ann"}))
        .await;
    c.reply(&r).await;
    let got = sub.recv().await.expect("subscription gets it");
    assert_eq!(got.payload.as_json(), Some(&json!({"from": "ann"})));

    // broadcast_from a subscription id skips that subscriber only.
    let id: SubscriberId = sub.id();
    pubsub.broadcast_from(id, "lab:news", "quiet", json!({}));
    c.event("lab:news", "quiet").await;
    drop(sub);
    drop(c);
    assert!(
        crate::support::eventually(|| pubsub.topic_count() == 0).await,
        "dropping unsubscribes"
    );
}

#[tokio::test]
async fn a_subscription_that_falls_behind_its_capacity_is_ended_and_the_others_go_on() {
    let t = TestEndpoint::start().await;
    let pubsub = t.runtime.pubsub().clone();
    let mut slow = pubsub.subscribe_with_capacity("lab:ticks", 2).await;
    let mut reader = pubsub.subscribe("lab:ticks").await;
    async fn next(sub: &mut Subscription) -> Option<Value> {
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv())
            .await
            .expect("a broadcast or the end in time")?;
        Some(got.payload.decode().expect("JSON"))
    }

    for i in 0..5 {
        pubsub.broadcast("lab:ticks", "tick", json!({"i": i}));
    }
    // The topic actor never waits for the slow one: the reader gets every tick.
    for i in 0..5 {
        assert_eq!(next(&mut reader).await, Some(json!({"i": i})));
    }
    // The slow one gets what fitted, then its end, and knows why.
    assert!(!reader.overflowed());
    assert_eq!(next(&mut slow).await, Some(json!({"i": 0})));
    assert_eq!(next(&mut slow).await, Some(json!({"i": 1})));
    assert_eq!(next(&mut slow).await, None, "ended, not lagging forever");
    assert!(slow.overflowed());

    // The reader is still subscribed.
    pubsub.broadcast("lab:ticks", "tick", json!({"i": 5}));
    assert_eq!(next(&mut reader).await, Some(json!({"i": 5})));
    assert_eq!(Subscription::DEFAULT_CAPACITY, 1024);
}
