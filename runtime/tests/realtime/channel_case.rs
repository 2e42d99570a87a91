//! `ChannelCase` catches what the old single-socket helper could not: `broadcast_from`
//! replaced by `broadcast`, replies that should not come, wrong reply statuses; and
//! `socket_with_assigns` skips `connect`.

use std::panic::AssertUnwindSafe;

use fawkes_runtime::testing::{ChannelCase, matching};
use fawkes_runtime::{
    Channel, ChannelContext, ChannelError, HandleIn, JoinOutcome, Payload, Reply, SocketMount,
    StopReason,
};
use futures_util::FutureExt as _;
use serde_json::json;

use crate::support::{Lab, Terminations, TestSocket};

/// Relays `move` to the other users of a board with `broadcast_from`, or, as the mutant,
/// to everyone with `broadcast`.
struct Relay {
    mutant: bool,
}

impl Channel for Relay {
    type Assigns = String;
    type State = ();
    type Info = ();

    async fn join(
        &self,
        _: &str,
        _: Payload,
        _: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<()>, ChannelError> {
        Ok(JoinOutcome::ok(()))
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _: &mut (),
        ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        let mut moved = payload.as_json().cloned().unwrap_or_default();
        moved["user"] = json!(ctx.assigns());
        if self.mutant {
            ctx.broadcast(event, moved);
        } else {
            ctx.broadcast_from(event, moved);
        }
        Ok(HandleIn::Reply(Reply::ok()))
    }
}

/// The test of the relay: the others and the test see a move, the mover does not.
async fn moves_reach_the_others_but_not_the_mover(relay: Relay) {
    let mount = SocketMount::new(TestSocket::default()).channel("board:*", relay);
    let case = ChannelCase::start(mount).await;
    let mut ann = case.connect(&[("user", "ann")]).await.expect("connects");
    let mut bob = case.connect(&[("user", "bob")]).await.expect("connects");
    ann.subscribe_and_join("board:1", json!({}))
        .await
        .expect("joins");
    bob.join("board:1", json!({})).await.expect("joins");

    let moved = ann.push("board:1", "move", json!({"x": 1})).await;
    ann.assert_reply(&moved, "ok", json!({})).await;
    case.assert_broadcast("move", json!({"x": 1, "user": "ann"}))
        .await;
    bob.assert_push("move", json!({"x": 1, "user": "ann"}))
        .await;
    ann.refute_push("move", json!({})).await;
}

#[tokio::test]
async fn broadcast_from_reaches_the_test_and_the_others_not_the_sender() {
    moves_reach_the_others_but_not_the_mover(Relay { mutant: false }).await;
}

#[tokio::test]
async fn the_same_test_fails_when_broadcast_from_becomes_broadcast() {
    let run = AssertUnwindSafe(moves_reach_the_others_but_not_the_mover(Relay {
        mutant: true,
    }))
    .catch_unwind()
    .await;
    let panic = run.expect_err("the mutant must fail the test");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.starts_with("refute_push: unexpected \"move\" on \"board:1\""),
        "failed for another reason: {message}"
    );
}

fn lab(terminated: &Terminations) -> SocketMount<TestSocket> {
    SocketMount::new(TestSocket::default()).channel(
        "lab:*",
        Lab {
            terminated: terminated.clone(),
            handles: Default::default(),
        },
    )
}

#[tokio::test]
async fn refute_reply_passes_without_a_reply_and_fails_with_one() {
    let case = ChannelCase::start(lab(&Terminations::default())).await;
    let mut t = case.connect(&[("user", "ann")]).await.expect("connects");
    t.join("lab:1", json!({})).await.expect("joins");
    let silent = t.push("lab:1", "noreply", json!({})).await;
    t.refute_reply(&silent).await;

    let echoed = t.push("lab:1", "echo", json!({"e": 1})).await;
    let run = AssertUnwindSafe(t.refute_reply(&echoed))
        .catch_unwind()
        .await;
    let panic = run.expect_err("a reply came");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("refute_reply: unexpected reply \"ok\""),
        "{message}"
    );
}

#[tokio::test]
#[should_panic(expected = "assert_reply: expected a reply \"ok\"")]
async fn assert_reply_checks_the_status() {
    let case = ChannelCase::start(lab(&Terminations::default())).await;
    let mut t = case.connect(&[("user", "ann")]).await.expect("connects");
    t.join("lab:1", json!({})).await.expect("joins");
    let r = t.push("lab:1", "custom", json!({"m": 1})).await;
    // The reply's status is "maybe".
    t.assert_reply(&r, "ok", json!({"m": 1})).await;
}

#[tokio::test]
#[should_panic(expected = "assert_reply: expected a reply \"ok\" with a payload containing")]
async fn assert_reply_checks_the_response() {
    let case = ChannelCase::start(lab(&Terminations::default())).await;
    let mut t = case.connect(&[("user", "ann")]).await.expect("connects");
    t.join("lab:1", json!({})).await.expect("joins");
    let r = t.push("lab:1", "echo", json!({"m": 1})).await;
    t.assert_reply(&r, "ok", json!({"m": 2})).await;
}

#[tokio::test]
async fn a_failed_assertion_lists_what_came_instead() {
    let case = ChannelCase::start(lab(&Terminations::default())).await;
    let mut t = case.connect(&[("user", "ann")]).await.expect("connects");
    t.join("lab:1", json!({})).await.expect("joins");
    let r = t.push("lab:1", "push", json!({"p": 1})).await;
    t.assert_reply(&r, "ok", json!({})).await;
    let run = AssertUnwindSafe(t.assert_push("pushed", json!({"p": 2})))
        .catch_unwind()
        .await;
    let message = run
        .expect_err("no such push")
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("received instead:\n    \"pushed\" on \"lab:1\": {\"p\":1}"),
        "{message}"
    );
    // What was skipped is still there for the next assertion.
    t.assert_push("pushed", matching(|p| p["p"] == 1)).await;
}

#[tokio::test]
async fn refute_broadcast_sees_broadcasts_on_subscribed_topics() {
    let case = ChannelCase::start(lab(&Terminations::default())).await;
    let mut t = case.connect(&[("user", "ann")]).await.expect("connects");
    t.subscribe_and_join("lab:1", json!({}))
        .await
        .expect("joins");
    case.pubsub().broadcast("lab:1", "news", json!({"n": 1}));
    case.refute_broadcast("news", json!({"n": 2})).await;
    let run = AssertUnwindSafe(case.refute_broadcast("news", json!({})))
        .catch_unwind()
        .await;
    let message = run
        .expect_err("a broadcast came")
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("refute_broadcast: unexpected broadcast of \"news\""),
        "{message}"
    );
    // Topics the test did not subscribe to are not observed.
    case.pubsub().broadcast("lab:2", "news", json!({"n": 3}));
    case.refute_broadcast("news", json!({"n": 3})).await;
}

#[tokio::test]
async fn socket_with_assigns_skips_connect_and_keeps_the_socket_id() {
    let terminated = Terminations::default();
    let case = ChannelCase::start(lab(&terminated)).await;
    // `connect` would refuse a socket without a user; built from assigns, it is never asked.
    assert!(case.connect(&[]).await.is_err());
    let mut zed = case.socket_with_assigns("zed".to_owned()).await;
    assert_eq!(zed.id(), Some("test_socket:zed"));
    zed.join("lab:1", json!({"push_on_join": true}))
        .await
        .expect("joins");
    zed.assert_push("welcome", json!({"user": "zed"})).await;

    // The socket id works as for a connected socket: a disconnect closes it (1001) and its
    // channels terminate.
    case.pubsub().disconnect("test_socket:zed");
    assert_eq!(zed.assert_disconnected().await, 1001);
    zed.close().await;
    let log = terminated.lock().expect("log").clone();
    assert_eq!(log, vec![("lab:1".to_owned(), StopReason::Closed)]);

    let other = case
        .socket_with_id(Some("custom:1"), "amy".to_owned())
        .await;
    assert_eq!(other.id(), Some("custom:1"));
    let anonymous = case.socket_with_id(None, "amy".to_owned()).await;
    assert_eq!(anonymous.id(), None);
}

#[tokio::test]
#[should_panic(expected = "assert_broadcast: the test observes no topic")]
async fn assert_broadcast_without_a_subscription_says_so() {
    let case = ChannelCase::start(lab(&Terminations::default())).await;
    let mut t = case.connect(&[("user", "ann")]).await.expect("connects");
    // Joined, but not subscribed: the test observes nothing.
    t.join("lab:1", json!({})).await.expect("joins");
    case.pubsub().broadcast("lab:1", "news", json!({}));
    case.assert_broadcast("news", json!({})).await;
}
