//! A failing channel takes down its own join only.

use serde_json::json;

use crate::support::{TestEndpoint, eventually, eventually_async};

#[tokio::test]
async fn a_panicking_channel_errors_alone_while_its_sibling_and_other_sockets_carry_on() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let mut other = t.client("bob").await;
    let (bad, _) = c.join("lab:bad", json!({})).await;
    let (good, _) = c.join("lab:good", json!({})).await;
    let (obad, _) = other.join("lab:bad", json!({})).await;

    let r = c.push(&bad, "lab:bad", "panic", json!({})).await;
    let error = c.event("lab:bad", "phx_error").await;
    assert_eq!(
        (error.join_ref.clone(), error.msg_ref.clone()),
        (json!(bad), json!(bad))
    );
    assert_eq!(error.payload, json!({"reason": "channel_crash"}));
    assert!(
        c.unmatched().iter().all(|f| f.msg_ref != r),
        "no reply to the crashing push"
    );

    // The sibling channel on the same socket still answers.
    let r = c
        .push(&good, "lab:good", "echo", json!({"still": "here"}))
        .await;
    assert_eq!(c.reply(&r).await.response(), &json!({"still": "here"}));
    // The socket still answers heartbeats.
    let h = c.heartbeat().await;
    c.reply(&h).await;
    // Another socket on the same topic is unaffected.
    let r = other.push(&obad, "lab:bad", "echo", json!({})).await;
    assert_eq!(other.reply(&r).await.status(), Some("ok"));

    // The crashed join is gone: its topic is unmatched until rejoined, and a broadcast on it
    // reaches only bob.
    c.send_frame(json!(bad), json!("z"), "lab:bad", "echo", json!({}))
        .await;
    assert_eq!(
        c.reply("z").await.response(),
        &json!({"reason": "unmatched topic"})
    );
    let r = other
        .push(&obad, "lab:bad", "broadcast", json!({"n": 1}))
        .await;
    other.reply(&r).await;
    other.event("lab:bad", "shout").await;
    // phoenix.js rejoins after phx_error; that works.
    let (rejoined, reply) = c.join("lab:bad", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));
    let r = c.push(&rejoined, "lab:bad", "count", json!({})).await;
    assert_eq!(
        c.reply(&r).await.response(),
        &json!({"count": 1}),
        "fresh state after a crash"
    );
    assert!(
        c.unmatched().iter().all(|f| f.event != "shout"),
        "the crashed join no longer received broadcasts: {:?}",
        c.unmatched()
    );
    // A crash skips terminate (the state may be broken).
    assert!(t.terminations().is_empty());
}

#[tokio::test]
async fn errors_in_handle_in_handle_info_and_handle_out_are_crashes_of_that_join() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (a, _) = c.join("lab:a", json!({})).await;
    c.push(&a, "lab:a", "fail", json!({})).await;
    assert_eq!(
        c.event("lab:a", "phx_error").await.payload,
        json!({"reason": "channel_crash"})
    );

    let (b, _) = c.join("lab:b", json!({})).await;
    c.push(&b, "lab:b", "info_crash", json!({})).await;
    assert_eq!(c.event("lab:b", "phx_error").await.join_ref, json!(b));

    let (d, _) = c.join("lab:d", json!({})).await;
    c.push(&d, "lab:d", "intercept", json!({"crash_out": true}))
        .await;
    assert_eq!(c.event("lab:d", "phx_error").await.join_ref, json!(d));

    let (e, _) = c.join("lab:e", json!({})).await;
    let r = c.push(&e, "lab:e", "echo", json!({})).await;
    assert_eq!(c.reply(&r).await.status(), Some("ok"));
}

#[tokio::test]
async fn nothing_leaks_when_joins_crash_leave_or_the_socket_drops() {
    let t = TestEndpoint::start().await;
    let pubsub = t.runtime.pubsub().clone();
    {
        let mut c = t.client("ann").await;
        for i in 0..5 {
            let topic = format!("lab:{i}");
            let (j, _) = c.join(&topic, json!({})).await;
            match i % 3 {
                0 => {
                    c.push(&j, &topic, "panic", json!({})).await;
                    c.event(&topic, "phx_error").await;
                }
                1 => {
                    c.push(&j, &topic, "phx_leave", json!({})).await;
                    c.event(&topic, "phx_close").await;
                }
                _ => {}
            }
        }
        // lab:2 (still joined); the socket id lives in the socket registry.
        assert!(
            eventually(|| pubsub.topic_count() == 1).await,
            "topics: {}",
            pubsub.topic_count()
        );
        assert_eq!(t.runtime.connection_count(), 1);
        assert_eq!(t.runtime.registry().count("test_socket:ann").await, 1);
        // The client goes away without a word.
    }
    assert!(
        eventually(|| pubsub.topic_count() == 0).await,
        "topics left: {}",
        pubsub.topic_count()
    );
    assert!(eventually(|| t.runtime.connection_count() == 0).await);
    let sessions = t.runtime.registry();
    assert!(
        eventually_async(|| async { sessions.name_count().await == 0 }).await,
        "no stale registry entry"
    );
    let closed = t
        .terminations()
        .into_iter()
        .filter(|(_, r)| *r == fawkes_runtime::StopReason::Closed)
        .count();
    assert_eq!(closed, 1, "the join still open got terminate(Closed)");
}

#[tokio::test]
async fn a_panic_before_the_callbacks_future_exists_is_still_isolated() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (s, _) = c.join("sync:1", json!({})).await;
    let (l, _) = c.join("lab:1", json!({})).await;
    let r = c.push(&s, "sync:1", "echo", json!({"fine": true})).await;
    assert_eq!(c.reply(&r).await.response(), &json!({"fine": true}));
    c.push(&s, "sync:1", "sync_panic", json!({})).await;
    assert_eq!(
        c.event("sync:1", "phx_error").await.payload,
        json!({"reason": "channel_crash"})
    );
    let r = c.push(&l, "lab:1", "echo", json!({})).await;
    assert_eq!(
        c.reply(&r).await.status(),
        Some("ok"),
        "the socket lives on"
    );
}

#[tokio::test]
async fn handles_of_a_replaced_join_do_not_reach_its_successor_even_with_the_same_join_ref() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    // A client that reuses join_ref "1" (V1 clients send none at all).
    c.send_frame(json!("1"), json!("1"), "lab:h", "phx_join", json!({}))
        .await;
    c.reply("1").await;
    c.send_frame(json!("1"), json!("2"), "lab:h", "remember", json!({}))
        .await;
    c.reply("2").await;
    c.send_frame(json!("1"), json!("3"), "lab:h", "phx_join", json!({}))
        .await;
    c.reply("3").await;
    c.send_frame(json!("1"), json!("4"), "lab:h", "remember", json!({}))
        .await;
    c.reply("4").await;
    let (old, new) = {
        let handles = t.handles.lock().expect("handles");
        (handles[0].clone(), handles[1].clone())
    };
    assert!(old.send(crate::support::LabInfo::Push(json!({"from": "old"}))));
    assert!(new.send(crate::support::LabInfo::Push(json!({"from": "new"}))));
    let info = c.event("lab:h", "info").await;
    assert_eq!(
        info.payload,
        json!({"from": "new"}),
        "the old join's message was dropped"
    );
}

#[tokio::test]
async fn a_callback_that_never_returns_cannot_keep_a_dead_connection_alive() {
    let t = TestEndpoint::start_with(fawkes_runtime::TransportConfig {
        close_grace: std::time::Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let pubsub = t.runtime.pubsub().clone();
    {
        let mut c = t.client("ann").await;
        let (j, _) = c.join("lab:stuck", json!({})).await;
        c.push(&j, "lab:stuck", "hang", json!({})).await;
        // Heartbeats are answered by the transport even while the socket actor is stuck.
        let h = c.heartbeat().await;
        c.reply(&h).await;
    }
    assert!(eventually(|| t.runtime.connection_count() == 0).await);
    assert!(
        eventually(|| pubsub.topic_count() == 0).await,
        "the killed socket's subscriptions are gone: {}",
        pubsub.topic_count()
    );
}
