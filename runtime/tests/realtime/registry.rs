//! The socket registry: every live socket of a socket id, direct pushes to the joined ones,
//! disconnects, and no stale entry whatever way a socket ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fawkes_runtime::TransportConfig;
use fawkes_runtime::testing::WsClient;
use serde_json::json;

use crate::support::{TestEndpoint, eventually_async};

#[tokio::test]
async fn every_device_is_registered_and_direct_pushes_reach_the_joined_ones() {
    let t = TestEndpoint::start().await;
    let sessions = t.runtime.registry().clone();
    let mut phone = t.client("ann").await;
    let mut laptop = t.client("ann").await;
    let mut bob = t.client("bob").await;
    assert!(
        eventually_async(|| async { sessions.count("test_socket:ann").await == 2 }).await,
        "both of ann's devices count, not only the first"
    );
    assert!(eventually_async(|| async { sessions.count("test_socket:bob").await == 1 }).await);
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
    let sessions = t.runtime.registry().clone();
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
    let sessions = t.runtime.registry().clone();
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

#[tokio::test]
async fn disconnect_closes_a_socket_busy_in_a_callback() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (j, _) = c.join("lab:h", json!({})).await;
    c.push(&j, "lab:h", "hang", json!({})).await;
    t.runtime.registry().disconnect("test_socket:ann");
    assert_eq!(c.closed().await, (1001, "disconnected".to_owned()));
}

#[tokio::test]
async fn a_disconnect_during_the_connect_check_closes_the_socket_once_it_is_up() {
    let t = TestEndpoint::start().await;
    let url = t.url("user=ann&vsn=2.0.0&hold=1");
    let connecting = tokio::spawn(async move { WsClient::connect(&url).await });
    // The token was fine when checked; the logout lands before the socket is registered.
    t.hold.arrived.notified().await;
    t.runtime.registry().disconnect("test_socket:ann");
    t.hold.release.notify_one();
    let mut late = connecting.await.expect("task").expect("connect");
    assert_eq!(late.closed().await, (1001, "disconnected".to_owned()));

    // A socket that connects after the disconnect is not affected by it.
    let mut fresh = t.client("ann").await;
    let (j, _) = fresh.join("lab:after", json!({})).await;
    let r = fresh
        .push(&j, "lab:after", "echo", json!({"ok": true}))
        .await;
    assert_eq!(fresh.reply(&r).await.status(), Some("ok"));
}

#[tokio::test]
async fn disconnect_except_spares_the_sockets_that_also_carry_the_kept_name() {
    let t = TestEndpoint::start().await;
    let connect = |session: &str, hold: bool| {
        let hold = if hold { "&hold=1" } else { "" };
        let url = t.url(&format!("user=ann&session={session}&vsn=2.0.0{hold}"));
        async move { WsClient::connect(&url).await.expect("connect") }
    };
    let mut kept = connect("a", false).await;
    let mut other = connect("b", false).await;
    let mut bob = t.client("bob").await;
    // One more of session b, whose connect check started before the call and registers after.
    let late = tokio::spawn(connect("b", true));
    t.hold.arrived.notified().await;
    t.runtime
        .registry()
        .disconnect_except("test_socket:ann", "test_session:a");
    t.hold.release.notify_one();
    let mut late = late.await.expect("task");
    assert_eq!(other.closed().await, (1001, "disconnected".to_owned()));
    assert_eq!(late.closed().await, (1001, "disconnected".to_owned()));
    // Session a's socket and other ids' are open; so is one of session a that registers late.
    let early = tokio::spawn(connect("a", true));
    t.hold.arrived.notified().await;
    t.runtime
        .registry()
        .disconnect_except("test_socket:ann", "test_session:a");
    t.hold.release.notify_one();
    let mut early = early.await.expect("task");
    for c in [&mut kept, &mut bob, &mut early] {
        let (j, _) = c.join("lab:spared", json!({})).await;
        let r = c.push(&j, "lab:spared", "echo", json!({})).await;
        assert_eq!(c.reply(&r).await.status(), Some("ok"));
    }
    let sessions = t.runtime.registry();
    assert!(eventually_async(|| async { sessions.count("test_socket:ann").await == 2 }).await);
}

/// Pushes run on other threads while the client joins and leaves over and over: on every
/// join, pushes come after the join reply and never after the leave reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_pushes_never_precede_the_join_reply_nor_follow_the_leave_reply() {
    // The client reads only at the end: give its queue room for every push.
    let t = TestEndpoint::start_with(TransportConfig {
        outbound_queue: 1_000_000,
        ..TransportConfig::default()
    })
    .await;
    let sessions = t.runtime.registry().clone();
    let mut c = t.client("ann").await;
    assert!(eventually_async(|| async { sessions.count("test_socket:ann").await == 1 }).await);
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (sessions, stop) = (sessions.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reached = 0usize;
            while !stop.load(Ordering::Relaxed) {
                reached += sessions
                    .push("test_socket:ann", "lab:race", "note", json!({}))
                    .await;
            }
            reached
        })
    };
    const ROUNDS: usize = 200;
    for round in 0..ROUNDS {
        let join_ref = format!("j{round}");
        c.send_frame(
            json!(join_ref),
            json!(join_ref),
            "lab:race",
            "phx_join",
            json!({}),
        )
        .await;
        c.send_frame(
            json!(join_ref),
            json!(format!("l{round}")),
            "lab:race",
            "phx_leave",
            json!({}),
        )
        .await;
    }
    // The socket actor handles frames in order: once this join is answered, every round is.
    c.send_frame(json!("end"), json!("end"), "lab:end", "phx_join", json!({}))
        .await;
    let mut frames = Vec::new();
    loop {
        let frame = c
            .try_expect(Duration::from_secs(5), &|_| true)
            .await
            .expect("frames until the last join reply");
        if frame.msg_ref == json!("end") {
            break;
        }
        frames.push(frame);
    }
    stop.store(true, Ordering::Relaxed);
    let reached = pusher.await.expect("pusher");

    // Walk the frames: each join_ref's notes lie strictly between its two replies.
    let mut open: Option<String> = None;
    let mut notes = 0usize;
    for f in frames.iter().filter(|f| f.topic == "lab:race") {
        let join_ref = f.join_ref.as_str().unwrap_or_default().to_owned();
        match (f.event.as_str(), f.msg_ref.as_str()) {
            ("phx_reply", Some(r)) if r.starts_with('j') => {
                assert_eq!(f.status(), Some("ok"));
                open = Some(join_ref);
            }
            ("phx_reply", Some(r)) if r.starts_with('l') => {
                assert_eq!(open.as_deref(), Some(join_ref.as_str()));
                open = None;
            }
            ("note", _) => {
                assert_eq!(
                    open.as_deref(),
                    Some(join_ref.as_str()),
                    "a push outside its join's lifetime: {f:?}"
                );
                notes += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        notes, reached,
        "every push counted was delivered, and only those"
    );
}
