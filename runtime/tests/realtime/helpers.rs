//! The shipped channel test helpers (`ChannelCase`, `TestSocket`) on the lab channel.

use fawkes_runtime::SocketMount;
use fawkes_runtime::testing::{ChannelCase, JoinRefused};
use serde_json::json;

use crate::support::{Lab, Terminations, TestSocket};

fn mount(terminated: &Terminations) -> SocketMount<TestSocket> {
    SocketMount::new(TestSocket::default()).channel(
        "lab:*",
        Lab {
            terminated: terminated.clone(),
            handles: Default::default(),
        },
    )
}

#[tokio::test]
async fn join_push_and_assert_without_a_network() {
    let case = ChannelCase::start(mount(&Terminations::default())).await;
    let mut t = case.connect(&[("user", "ann")]).await.expect("connects");
    let joined = t
        .subscribe_and_join("lab:1", json!({"push_on_join": true}))
        .await;
    assert_eq!(joined, Ok(json!({"joined": "lab:1"})));
    assert_eq!(
        t.assert_push("welcome", json!({})).await,
        json!({"user": "ann"})
    );

    let r = t.push("lab:1", "count", json!({})).await;
    assert_eq!(
        t.assert_reply(&r, "ok", json!({})).await,
        json!({"count": 1})
    );

    // A broadcast reaches the test's subscription and the socket's own channel.
    let r = t.push("lab:1", "broadcast", json!({"b": 1})).await;
    t.assert_reply(&r, "ok", json!({})).await;
    assert_eq!(
        case.assert_broadcast("shout", json!({})).await,
        json!({"b": 1})
    );
    t.assert_push("shout", json!({"b": 1})).await;

    // So do broadcasts from elsewhere in the server.
    case.pubsub().broadcast("lab:1", "news", json!({"n": 2}));
    case.assert_broadcast("news", json!({"n": 2})).await;
    t.assert_push("news", json!({"n": 2})).await;

    // A custom status is checked like any other.
    let r = t.push("lab:1", "custom", json!({"m": 1})).await;
    t.assert_reply(&r, "maybe", json!({"m": 1})).await;

    t.push("lab:1", "panic", json!({})).await;
    assert_eq!(
        t.assert_error("lab:1").await,
        json!({"reason": "channel_crash"})
    );

    let refused = t.join("lab:2", json!({"refuse": true})).await;
    assert_eq!(
        refused,
        Err(JoinRefused {
            response: json!({"reason": "unauthorized"})
        })
    );
}

#[tokio::test]
async fn leaving_or_stopping_is_answered_then_closed() {
    let case = ChannelCase::start(mount(&Terminations::default())).await;
    let mut t = case.connect(&[("user", "ann")]).await.expect("connects");
    t.join("lab:1", json!({})).await.expect("joins");
    let r = t.leave("lab:1").await;
    t.assert_reply(&r, "ok", json!({})).await;
    t.assert_close("lab:1").await;
    // And the topic can be joined again; a channel that stops with a reply is answered, then
    // closed, the same way.
    t.join("lab:1", json!({})).await.expect("joins again");
    let r = t.push("lab:1", "stop", json!({})).await;
    t.assert_reply(&r, "ok", json!({})).await;
    t.assert_close("lab:1").await;
}

#[tokio::test]
async fn connect_refusals_surface_as_errors() {
    let case = ChannelCase::start(mount(&Terminations::default())).await;
    let refused = case.connect(&[]).await.expect_err("no user, no connection");
    assert_eq!(refused.status, http::StatusCode::FORBIDDEN);
    let refused = case
        .connect(&[("user", "ann"), ("refuse", "401")])
        .await
        .expect_err("refused");
    assert_eq!(refused.status, http::StatusCode::UNAUTHORIZED);
}
