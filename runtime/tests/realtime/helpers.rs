//! The shipped `ChannelTest` helper: channels without a network.

use fawkes_runtime::SocketMount;
use fawkes_runtime::testing::ChannelTest;
use serde_json::json;

use crate::support::{Lab, Terminations, TestSocket};

fn mount() -> SocketMount<TestSocket> {
    SocketMount::new(TestSocket::default()).channel(
        "lab:*",
        Lab {
            terminated: Terminations::default(),
            handles: Default::default(),
        },
    )
}

#[tokio::test]
async fn join_push_and_assert_without_a_network() {
    let mut t = ChannelTest::connect(mount(), &[("user", "ann")])
        .await
        .expect("connects");
    let joined = t.join("lab:1", json!({"push_on_join": true})).await;
    assert_eq!(joined.status(), Some("ok"));
    assert_eq!(joined.response(), &json!({"joined": "lab:1"}));
    assert_eq!(t.assert_push("welcome").await, json!({"user": "ann"}));

    let r = t.push("lab:1", "count", json!({})).await;
    assert_eq!(t.assert_reply(&r).await.response(), &json!({"count": 1}));

    let r = t.push("lab:1", "broadcast", json!({"b": 1})).await;
    t.assert_reply(&r).await;
    assert_eq!(t.assert_broadcast("shout").await, json!({"b": 1}));

    // Broadcasts from elsewhere in the server reach the channel.
    t.pubsub().broadcast("lab:1", "news", json!({"n": 2}));
    assert_eq!(t.assert_broadcast("news").await, json!({"n": 2}));

    let r = t.push("lab:1", "panic", json!({})).await;
    let crashed = t.assert_closed("lab:1").await;
    assert_eq!(crashed.event, "phx_error");
    let _ = r;

    let refused = t.join("lab:2", json!({"refuse": true})).await;
    assert_eq!(refused.response(), &json!({"reason": "unauthorized"}));
}

#[tokio::test]
async fn leaving_or_stopping_is_answered_then_closed() {
    let mut t = ChannelTest::connect(mount(), &[("user", "ann")])
        .await
        .expect("connects");
    t.join("lab:1", json!({})).await;
    let r = t.leave("lab:1").await;
    assert_eq!(t.assert_reply(&r).await.status(), Some("ok"));
    assert_eq!(t.assert_closed("lab:1").await.event, "phx_close");
    // And the topic can be joined again; a channel that stops with a reply is answered, then
    // closed, the same way.
    assert_eq!(t.join("lab:1", json!({})).await.status(), Some("ok"));
    let r = t.push("lab:1", "stop", json!({})).await;
    assert_eq!(t.assert_reply(&r).await.status(), Some("ok"));
    assert_eq!(t.assert_closed("lab:1").await.event, "phx_close");
}

#[tokio::test]
async fn connect_refusals_surface_as_errors() {
    assert!(ChannelTest::connect(mount(), &[]).await.is_err());
}
