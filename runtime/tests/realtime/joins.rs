//! What a join sees first and what it leaves behind: messages a channel sends itself during
//! `join` come before the client's next frame (and never reach a refused join), pushes held
//! for a join reply are bounded, and a socket actor killed in the middle of a join leaves no
//! subscription or presence behind.

use std::time::Duration;

use fawkes_runtime::TransportConfig;
use fawkes_runtime::testing::faults;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::raw::{next_text, text_frame, websocket};
use crate::support::{TestEndpoint, eventually, eventually_async};

/// The (event, ref, payload) of a V2 server frame.
fn parse(text: &str) -> (String, Value, Value) {
    let frame: Value = serde_json::from_str(text).expect("JSON");
    (
        frame[3].as_str().unwrap_or_default().to_owned(),
        frame[1].clone(),
        frame[4].clone(),
    )
}

#[tokio::test]
async fn messages_a_join_sends_itself_come_before_the_next_client_frame_and_never_after_a_refusal()
{
    let t = TestEndpoint::start().await;
    let (mut reader, mut writer) = websocket(t.addr, "user=ann&vsn=2.0.0").await.into_split();
    // The join and a message behind it in one write: both are in the socket actor's mailbox
    // before the join runs (one thread), ahead of anything the join sends itself.
    let mut pipelined = text_frame(
        &json!(["1", "1", "lab:self", "phx_join", {"self_send": [{"n": 1}, {"n": 2}]}]).to_string(),
    );
    pipelined.extend(text_frame(
        &json!(["1", "2", "lab:self", "echo", {"after": "join"}]).to_string(),
    ));
    writer.write_all(&pipelined).await.expect("write");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (event, msg_ref, payload) = parse(&next_text(&mut reader).await);
        seen.push(match event.as_str() {
            "phx_reply" => format!("reply {}", msg_ref.as_str().unwrap_or_default()),
            "info" => format!("info {}", payload["n"]),
            other => other.to_owned(),
        });
    }
    assert_eq!(seen, ["reply 1", "info 1", "info 2", "reply 2"]);

    // A refused join's messages to itself are dropped: the next join of the topic (a fresh
    // one) and a message behind it see none of them.
    let mut pipelined = text_frame(
        &json!(["3", "3", "lab:refused", "phx_join", {"self_send": [{"n": 3}], "refuse": true}])
            .to_string(),
    );
    pipelined.extend(text_frame(
        &json!(["4", "4", "lab:refused", "phx_join", {}]).to_string(),
    ));
    pipelined.extend(text_frame(
        &json!(["4", "5", "lab:refused", "echo", {}]).to_string(),
    ));
    writer.write_all(&pipelined).await.expect("write");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (event, msg_ref, payload) = parse(&next_text(&mut reader).await);
        seen.push(format!("{event} {msg_ref} {}", payload["status"]));
    }
    assert_eq!(
        seen,
        [
            r#"phx_reply "3" "error""#,
            r#"phx_reply "4" "ok""#,
            r#"phx_reply "5" "ok""#
        ]
    );
}

#[tokio::test]
async fn pushes_held_for_a_join_reply_are_bounded_by_the_outbound_budget() {
    let t = TestEndpoint::start_with(TransportConfig {
        outbound_queue: 16,
        ..Default::default()
    })
    .await;
    let mut ann = t.client("ann").await;
    let (j, _) = ann.join("lab:held", json!({})).await;
    // The topic actor is busy: bob's join waits for its subscription, with its direct pushes
    // held until the join reply is queued.
    let stalled = faults::stall_topic(&t.runtime, "lab:held").expect("a topic actor");
    let mut bob = t.client("bob").await;
    bob.send_frame(json!("1"), json!("1"), "lab:held", "phx_join", json!({}))
        .await;
    let sessions = t.runtime.registry();
    let push = || sessions.push("test_socket:bob", "lab:held", "direct", json!({}));
    assert!(
        eventually_async(|| async { push().await == 1 }).await,
        "bob's join is waiting for its subscription"
    );
    // Far more than its budget: held without end, they would all wait for the reply.
    let mut held = 1;
    for _ in 0..1000 {
        held += push().await;
    }
    assert!(held <= 16, "{held} pushes held");
    assert_eq!(bob.closed().await, (1013, "slow consumer".to_owned()));
    stalled.release();
    assert!(eventually(|| t.runtime.stats().slow_consumer_disconnects == 1).await);
    // Ann's join is unaffected.
    let r = ann
        .push(&j, "lab:held", "echo", json!({"still": "here"}))
        .await;
    assert_eq!(ann.reply(&r).await.status(), Some("ok"));
}

fn short_grace() -> TransportConfig {
    TransportConfig {
        close_grace: Duration::from_millis(100),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_socket_killed_while_its_join_waits_for_the_subscription_leaves_no_subscriber() {
    let t = TestEndpoint::start_with(short_grace()).await;
    let mut ann = t.client("ann").await;
    let (j, _) = ann.join("lab:quiet", json!({})).await;
    let stalled = faults::stall_topic(&t.runtime, "lab:quiet").expect("a topic actor");
    let mut bob = t.client("bob").await;
    bob.send_frame(json!("1"), json!("1"), "lab:quiet", "phx_join", json!({}))
        .await;
    // Its subscription is on its way (a direct push is held for the join reply).
    let sessions = t.runtime.registry();
    assert!(
        eventually_async(|| async {
            sessions
                .push("test_socket:bob", "lab:quiet", "probe", json!({}))
                .await
                == 1
        })
        .await
    );
    // The client goes; the actor, stuck in the join, is killed after `close_grace`.
    drop(bob);
    assert!(eventually(|| t.runtime.connection_count() == 1).await);
    // Its subscription lands on the topic actor only now, after the actor is gone.
    stalled.release();
    let r = ann.push(&j, "lab:quiet", "echo", json!({})).await;
    ann.reply(&r).await;
    // The last live subscriber leaves: the quiet topic's actor must go too.
    let r = ann.push(&j, "lab:quiet", "phx_leave", json!({})).await;
    ann.reply(&r).await;
    assert!(
        eventually(|| t.runtime.pubsub().topic_count() == 0).await,
        "the killed join's subscription kept the topic alive"
    );
}

#[tokio::test]
async fn a_socket_killed_in_the_middle_of_its_join_callback_leaves_no_presence() {
    let t = TestEndpoint::start_with(short_grace()).await;
    let mut bob = t.client("bob").await;
    bob.send_frame(
        json!("1"),
        json!("1"),
        "lab:stuck",
        "phx_join",
        json!({"track_and_hang": true}),
    )
    .await;
    let presence = t.runtime.presence();
    assert!(
        eventually_async(|| async { presence.list("lab:stuck").await.get("bob").is_some() }).await,
        "tracked during the join"
    );
    drop(bob);
    assert!(eventually(|| t.runtime.connection_count() == 0).await);
    assert!(
        eventually_async(|| async { presence.list("lab:stuck").await == json!({}) }).await,
        "the killed join's presence is gone: {}",
        presence.list("lab:stuck").await
    );
}
