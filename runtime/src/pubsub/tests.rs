//! The topic actor's life, deterministically: what may and may not make it leave the map.

use std::time::Duration;

use super::*;
use crate::{Runtime, TransportConfig};

const WAIT: Duration = Duration::from_secs(5);

/// The `n` of the next broadcast `subscription` receives.
async fn next_n(subscription: &mut Subscription) -> serde_json::Value {
    let broadcast = tokio::time::timeout(WAIT, subscription.recv())
        .await
        .expect("a broadcast in time")
        .expect("subscribed");
    broadcast.payload.as_json().expect("JSON")["n"].clone()
}

#[tokio::test]
async fn stray_unsubscribes_and_broadcasts_never_make_a_topic_actor_leave_under_a_subscriber() {
    let runtime = Runtime::start(TransportConfig::default())
        .await
        .expect("runtime");
    let pubsub = runtime.pubsub().clone();
    // An id that never subscribed to the topic (other code's, or a join's on an actor that
    // has stopped since).
    let stranger = pubsub.next_id();

    // A fresh topic actor (it starts with its first subscriber) takes an unsubscribe of an
    // unknown id and a broadcast, then serves the next subscriber itself.
    let mut first = pubsub.subscribe("t").await;
    let actor = pubsub.topic_actor("t").expect("started").get_id();
    pubsub.unsubscribe("t", stranger);
    pubsub.broadcast("t", "e", json!({"n": 1}));
    let mut second = pubsub.subscribe("t").await;
    assert_eq!(pubsub.topic_actor("t").map(|a| a.get_id()), Some(actor));
    pubsub.broadcast("t", "e", json!({"n": 2}));
    assert_eq!(next_n(&mut first).await, 1);
    assert_eq!(next_n(&mut first).await, 2);
    assert_eq!(next_n(&mut second).await, 2);

    // Emptied while a subscription is on its way to it (counted in under the map's lock, as
    // `add` does when it finds the actor): neither its own removals nor stray messages make
    // it leave, and the subscription it was found for is accepted.
    let found = pubsub
        .inner
        .topics
        .get("t")
        .map(|entry| {
            entry.members.fetch_add(1, Ordering::AcqRel);
            entry.actor.clone()
        })
        .expect("in the map");
    drop((first, second));
    pubsub.unsubscribe("t", stranger);
    pubsub.broadcast("t", "e", json!({"n": 3}));
    let (tx, mut rx) = mpsc::channel(8);
    let id = pubsub.next_id();
    let delivery = Delivery::Forward {
        tx,
        overflowed: Arc::default(),
    };
    let accepted = ractor::call!(found, TopicMsg::Subscribe, id, delivery, None)
        .expect("the actor it found is alive");
    assert!(accepted, "the subscription on its way is served");
    assert_eq!(pubsub.topic_actor("t").map(|a| a.get_id()), Some(actor));
    pubsub.broadcast("t", "e", json!({"n": 4}));
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("in time")
        .expect("subscribed");
    assert_eq!(got.payload.as_json().expect("JSON")["n"], 4);

    // Its last subscriber gone and nothing on its way: now it leaves.
    pubsub.unsubscribe("t", id);
    let deadline = tokio::time::Instant::now() + WAIT;
    while pubsub.topic_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pubsub.topic_count(), 0);
}
