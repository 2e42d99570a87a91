//! The session registry: every live socket of a socket id, direct pushes to the joined ones,
//! disconnects, and no stale entry whatever way a socket ends.

use serde_json::json;

use crate::support::{TestEndpoint, eventually_async};

#[tokio::test]
async fn every_device_is_registered_and_direct_pushes_reach_the_joined_ones() {
    let t = TestEndpoint::start().await;
    let sessions = t.runtime.sessions().clone();
    let mut phone = t.client("ann").await;
    let mut laptop = t.client("ann").await;
    let mut bob = t.client("bob").await;
    assert!(
        eventually_async(|| async { sessions.count("test_socket:ann").await == 2 }).await,
        "both of ann's devices count, not only the first"
    );
    assert_eq!(sessions.count("test_socket:bob").await, 1);
    assert_eq!(sessions.count("test_socket:nobody").await, 0);

    // Only the phone has joined: the push reaches it on that join, and nothing else.
    let (phone_join, _) = phone.join("lab:inbox", json!({})).await;
    let reached = sessions
        .push("test_socket:ann", "lab:inbox", "note", json!({"n": 1}))
        .await;
    assert_eq!(reached, 1);
    let note = phone.event("lab:inbox", "note").await;
    assert_eq!(note.join_ref, json!(phone_join));
    assert_eq!(note.payload, json!({"n": 1}));

    // Once the laptop joins, both get the next one; the laptop's first note is n=2, so it
    // never got n=1.
    let (laptop_join, _) = laptop.join("lab:inbox", json!({})).await;
    let reached = sessions
        .push("test_socket:ann", "lab:inbox", "note", json!({"n": 2}))
        .await;
    assert_eq!(reached, 2);
    let note = laptop.event("lab:inbox", "note").await;
    assert_eq!(note.join_ref, json!(laptop_join));
    assert_eq!(note.payload, json!({"n": 2}));
    assert_eq!(
        phone.event("lab:inbox", "note").await.payload,
        json!({"n": 2})
    );

    // Bob's socket is not ann's, even on the same topic.
    let (bob_join, _) = bob.join("lab:inbox", json!({})).await;
    // After a leave, the join no longer counts.
    let r = phone
        .push(&phone_join, "lab:inbox", "phx_leave", json!({}))
        .await;
    phone.reply(&r).await;
    let reached = sessions
        .push("test_socket:ann", "lab:inbox", "note", json!({"n": 3}))
        .await;
    assert_eq!(reached, 1);
    assert_eq!(
        laptop.event("lab:inbox", "note").await.payload,
        json!({"n": 3})
    );
    let r = bob
        .push(&bob_join, "lab:inbox", "echo", json!({"still": "here"}))
        .await;
    assert_eq!(bob.reply(&r).await.status(), Some("ok"));
    assert!(
        bob.unmatched().iter().all(|f| f.event != "note"),
        "bob never got ann's notes: {:?}",
        bob.unmatched()
    );
}

#[tokio::test]
async fn a_crashed_join_stops_receiving_direct_pushes() {
    let t = TestEndpoint::start().await;
    let sessions = t.runtime.sessions().clone();
    let mut c = t.client("ann").await;
    let (j, _) = c.join("lab:inbox", json!({})).await;
    c.push(&j, "lab:inbox", "panic", json!({})).await;
    c.event("lab:inbox", "phx_error").await;
    assert_eq!(
        sessions
            .push("test_socket:ann", "lab:inbox", "note", json!({}))
            .await,
        0
    );
}

#[tokio::test]
async fn disconnect_closes_every_device_of_that_id_and_no_entry_outlives_its_socket() {
    let t = TestEndpoint::start().await;
    let sessions = t.runtime.sessions().clone();
    let mut phone = t.client("ann").await;
    let mut laptop = t.client("ann").await;
    let mut bob = t.client("bob").await;
    let carol = t.client("carol").await;
    assert!(eventually_async(|| async { sessions.name_count().await == 3 }).await);

    sessions.disconnect("test_socket:ann");
    assert_eq!(phone.closed().await, (1001, "disconnected".to_owned()));
    assert_eq!(laptop.closed().await, (1001, "disconnected".to_owned()));
    assert!(
        eventually_async(|| async { sessions.count("test_socket:ann").await == 0 }).await,
        "disconnected sockets leave the registry"
    );

    // Bob's socket is untouched and still answers.
    let (j, _) = bob.join("lab:b", json!({})).await;
    let r = bob.push(&j, "lab:b", "echo", json!({"ok": 1})).await;
    assert_eq!(bob.reply(&r).await.status(), Some("ok"));

    // Carol vanishes without a close frame; bob closes politely.
    drop(carol);
    bob.send(tokio_tungstenite::tungstenite::Message::Close(None))
        .await;
    assert!(
        eventually_async(|| async { sessions.name_count().await == 0 }).await,
        "names left: {}",
        sessions.name_count().await
    );
}
