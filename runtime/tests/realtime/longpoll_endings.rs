//! How LongPoll sessions end, as WebSocket connections do: cut off when the client stops
//! polling while messages keep coming (bounded buffer), idle after 1.5 windows, the socket
//! id's disconnect, the drain; each time its joins terminate and the next poll gets 410.

use std::time::Duration;

use fawkes_runtime::{DrainConfig, TransportConfig};
use serde_json::json;

use super::longpoll::{config, join, open, request, start};
use super::support::{TestEndpoint, eventually};

/// Polls until the session is gone: whether a poll answered 410 within 50 polls.
async fn polls_gone(t: &TestEndpoint, token: &str) -> bool {
    for _ in 0..50 {
        let (_, polled) = request(t, "GET", &format!("token={token}"), None).await;
        if polled == json!({"status": 410}) {
            return true;
        }
    }
    false
}

fn terminated(t: &TestEndpoint, topic: &str) -> bool {
    t.terminations().iter().any(|(seen, _)| seen == topic)
}

#[tokio::test]
async fn a_client_that_stops_polling_is_cut_off_not_buffered_forever() {
    // Idle only after 3 s: the buffer's bound ends the session first.
    let t = TestEndpoint::start_with(TransportConfig {
        outbound_queue: 8,
        longpoll_window: Duration::from_secs(2),
        ..config()
    })
    .await;
    let token = open(&t, "lou").await;
    assert_eq!(join(&t, &token, "presence:hall", json!({})).await, "ok");
    assert_eq!(join(&t, &token, "lab:hall", json!({})).await, "ok");
    let mut wes = t.client("wes").await;
    wes.join("presence:hall", json!({})).await;
    let state = wes.event("presence:hall", "presence_state").await;
    assert!(state.payload.get("lou").is_some(), "{state:?}");

    // Lou stops polling; the broadcasts keep coming.
    for i in 0..50 {
        t.runtime
            .pubsub()
            .broadcast("lab:hall", "news", json!({ "i": i }));
    }
    assert!(eventually(|| t.runtime.stats().slow_consumer_disconnects == 1).await);
    wes.expect("lou leaves", |f| {
        f.event == "presence_diff" && f.payload["leaves"].get("lou").is_some()
    })
    .await;
    assert!(eventually(|| terminated(&t, "lab:hall")).await);
    assert!(eventually(|| t.runtime.stats().connections == 1).await);
    assert!(polls_gone(&t, &token).await);
}

#[tokio::test]
async fn a_session_without_polls_for_one_and_a_half_windows_ends() {
    let t = start().await;
    let token = open(&t, "carol").await;
    assert_eq!(join(&t, &token, "lab:idle", json!({})).await, "ok");
    assert_eq!(t.runtime.stats().connections, 1);
    // No poll from here: 1.5 windows of 300 ms later the session ends.
    assert!(eventually(|| t.runtime.stats().connections == 0).await);
    assert!(eventually(|| terminated(&t, "lab:idle")).await);
    let (_, posted) = request(&t, "POST", &format!("token={token}"), Some("[]".into())).await;
    assert_eq!(posted, json!({"status": 410}));
}

#[tokio::test]
async fn the_socket_id_disconnect_ends_a_session() {
    let t = start().await;
    let token = open(&t, "dan").await;
    assert_eq!(join(&t, &token, "lab:dan", json!({})).await, "ok");
    t.runtime.pubsub().disconnect("test_socket:dan");
    assert!(polls_gone(&t, &token).await, "the next poll gets 410");
    assert!(eventually(|| terminated(&t, "lab:dan")).await);

    // A disconnect topic (what a logout broadcasts) too.
    let (_, opened) = request(&t, "GET", "user=eve&session=s1&vsn=2.0.0", None).await;
    let token: String = opened["token"].as_str().expect("a token").to_owned();
    t.runtime.pubsub().disconnect("test_session:s1");
    assert!(polls_gone(&t, &token).await);
    assert!(eventually(|| t.runtime.stats().connections == 0).await);
}

#[tokio::test]
async fn the_drain_ends_sessions_and_refuses_new_ones() {
    let t = start().await;
    let token = open(&t, "fay").await;
    assert_eq!(join(&t, &token, "lab:fay", json!({})).await, "ok");
    let runtime = t.runtime.clone();
    let drained = tokio::spawn(async move {
        runtime
            .drain(DrainConfig::all_at_once(Duration::from_secs(5)))
            .await
    });
    assert!(polls_gone(&t, &token).await);
    assert!(eventually(|| terminated(&t, "lab:fay")).await);
    drained.await.expect("the drain");
    assert_eq!(t.runtime.stats().connections, 0);
    let (http, refused) = request(&t, "GET", "user=gil&vsn=2.0.0", None).await;
    assert_eq!((http, refused), (503, json!({"status": 500})));
}
