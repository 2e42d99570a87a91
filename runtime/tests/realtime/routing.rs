//! Routing of client messages (protocol §3.2).

use fawkes_runtime::testing::WsClient;
use serde_json::{Value, json};

use crate::support::TestEndpoint;

#[tokio::test]
async fn heartbeat_is_answered_on_the_phoenix_topic_with_the_ref_echoed() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let r = c.heartbeat().await;
    let reply = c.reply(&r).await;
    assert_eq!(reply.join_ref, Value::Null);
    assert_eq!(reply.topic, "phoenix");
    assert_eq!(reply.payload, json!({"status": "ok", "response": {}}));
}

#[tokio::test]
async fn join_replies_with_the_join_ref_and_the_channels_response() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (join_ref, reply) = c.join("lab:1", json!({})).await;
    assert_eq!(reply.join_ref, json!(join_ref));
    assert_eq!(reply.msg_ref, json!(join_ref));
    assert_eq!(
        reply.payload,
        json!({"status": "ok", "response": {"joined": "lab:1"}})
    );

    let r = c
        .push(&join_ref, "lab:1", "echo", json!({"a": [1, "ü"]}))
        .await;
    let echoed = c.reply(&r).await;
    assert_eq!(echoed.join_ref, json!(join_ref));
    assert_eq!(
        echoed.payload,
        json!({"status": "ok", "response": {"a": [1, "ü"]}})
    );

    let r = c.push(&join_ref, "lab:1", "custom", json!({"x": 1})).await;
    assert_eq!(
        c.reply(&r).await.payload,
        json!({"status": "maybe", "response": {"x": 1}})
    );
}

#[tokio::test]
async fn pushes_during_join_follow_the_join_reply() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    c.send_frame(
        json!("1"),
        json!("1"),
        "lab:w",
        "phx_join",
        json!({"push_on_join": true}),
    )
    .await;
    let first = c.expect("any frame", |_| true).await;
    assert_eq!(first.event, "phx_reply", "the join reply comes first");
    let welcome = c.expect("welcome", |f| f.event == "welcome").await;
    assert_eq!(welcome.join_ref, json!("1"));
    assert_eq!(welcome.msg_ref, Value::Null);
    assert_eq!(welcome.payload, json!({"user": "ann"}));
}

#[tokio::test]
async fn unmatched_topics_get_an_error_with_null_join_ref() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    c.send_frame(json!("1"), json!("1"), "nope:1", "phx_join", json!({}))
        .await;
    let reply = c.reply("1").await;
    assert_eq!(reply.join_ref, Value::Null);
    assert_eq!(
        reply.payload,
        json!({"status": "error", "response": {"reason": "unmatched topic"}})
    );

    // "other:exact" is mounted exactly: a longer topic does not match.
    c.send_frame(
        json!("2"),
        json!("2"),
        "other:exact:1",
        "phx_join",
        json!({}),
    )
    .await;
    assert_eq!(
        c.reply("2").await.response(),
        &json!({"reason": "unmatched topic"})
    );
    c.send_frame(json!("3"), json!("3"), "other:exact", "phx_join", json!({}))
        .await;
    assert_eq!(c.reply("3").await.status(), Some("ok"));

    // A message to a topic never joined.
    c.send_frame(Value::Null, json!("4"), "lab:never", "echo", json!({}))
        .await;
    let reply = c.reply("4").await;
    assert_eq!(reply.join_ref, Value::Null);
    assert_eq!(reply.response(), &json!({"reason": "unmatched topic"}));
}

#[tokio::test]
async fn refused_and_crashed_joins() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    c.send_frame(
        json!("1"),
        json!("1"),
        "lab:a",
        "phx_join",
        json!({"refuse": true}),
    )
    .await;
    let reply = c.reply("1").await;
    assert_eq!(reply.join_ref, json!("1"));
    assert_eq!(
        reply.payload,
        json!({"status": "error", "response": {"reason": "unauthorized"}})
    );
    for (r, payload) in [("2", json!({"panic": true})), ("3", json!({"err": true}))] {
        c.send_frame(json!(r), json!(r), "lab:b", "phx_join", payload)
            .await;
        assert_eq!(
            c.reply(r).await.payload,
            json!({"status": "error", "response": {"reason": "join crashed"}})
        );
    }
    // Nothing was joined by any of these; the socket still works.
    let (_, reply) = c.join("lab:b", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));
    assert_eq!(
        t.runtime.pubsub().topic_count(),
        1,
        "only lab:b: nothing subscribed for the refused or crashed joins"
    );
}

#[tokio::test]
async fn leave_replies_ok_then_closes_and_leaving_an_unjoined_topic_is_ok() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (join_ref, _) = c.join("lab:l", json!({})).await;
    let r = c.push(&join_ref, "lab:l", "phx_leave", json!({})).await;
    let reply = c
        .expect("leave reply", |f| f.event == "phx_reply" && f.msg_ref == r)
        .await;
    assert_eq!(reply.join_ref, json!(join_ref));
    assert_eq!(reply.payload, json!({"status": "ok", "response": {}}));
    let close = c.event("lab:l", "phx_close").await;
    assert_eq!(
        (close.join_ref.clone(), close.msg_ref.clone()),
        (json!(join_ref), json!(join_ref))
    );
    assert_eq!(close.payload, json!({}));
    assert!(
        c.unmatched().is_empty(),
        "reply before close: {:?}",
        c.unmatched()
    );
    assert_eq!(
        t.terminations(),
        vec![("lab:l".into(), fawkes_runtime::StopReason::Left)]
    );

    // Leaving something never joined is fine, with the join_ref echoed.
    c.send_frame(json!("77"), json!("78"), "lab:x", "phx_leave", json!({}))
        .await;
    let reply = c.reply("78").await;
    assert_eq!(reply.join_ref, json!("77"));
    assert_eq!(reply.status(), Some("ok"));
}

#[tokio::test]
async fn duplicate_join_replaces_the_old_channel_and_closes_its_join_ref() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (old, _) = c.join("lab:d", json!({})).await;
    let r = c.push(&old, "lab:d", "count", json!({})).await;
    assert_eq!(c.reply(&r).await.response(), &json!({"count": 1}));

    c.send_frame(json!("50"), json!("50"), "lab:d", "phx_join", json!({}))
        .await;
    let reply = c.expect("any frame", |_| true).await;
    assert_eq!(
        (reply.event.as_str(), reply.msg_ref.clone()),
        ("phx_reply", json!("50")),
        "new join's reply first"
    );
    let close = c.expect("old close", |f| f.event == "phx_close").await;
    assert_eq!(close.join_ref, json!(old));
    assert_eq!(
        t.terminations(),
        vec![("lab:d".into(), fawkes_runtime::StopReason::DuplicateJoin)]
    );

    // The new instance has fresh state; the old join_ref is stale and dropped silently.
    c.send_frame(json!(old), json!("51"), "lab:d", "count", json!({}))
        .await;
    c.send_frame(json!("50"), json!("52"), "lab:d", "count", json!({}))
        .await;
    let reply = c.expect("reply", |f| f.event == "phx_reply").await;
    assert_eq!(reply.msg_ref, json!("52"), "the stale message got no reply");
    assert_eq!(reply.response(), &json!({"count": 1}));
}

#[tokio::test]
async fn null_join_ref_is_accepted_and_stale_join_refs_are_dropped() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (join_ref, _) = c.join("lab:n", json!({})).await;
    c.send_frame(Value::Null, json!("10"), "lab:n", "echo", json!({"n": 1}))
        .await;
    let reply = c.reply("10").await;
    assert_eq!(
        reply.join_ref,
        json!(join_ref),
        "the reply carries the recorded join_ref"
    );
    // Strict comparison: number 1 is not string "1".
    c.send_frame(json!(1), json!("11"), "lab:n", "echo", json!({}))
        .await;
    c.send_frame(json!("999"), json!("12"), "lab:n", "phx_leave", json!({}))
        .await;
    c.send_frame(json!(join_ref), json!("13"), "lab:n", "echo", json!({}))
        .await;
    let next = c.expect("reply", |f| f.event == "phx_reply").await;
    assert_eq!(
        next.msg_ref,
        json!("13"),
        "stale messages and leaves were dropped"
    );
}

#[tokio::test]
async fn refs_of_any_json_type_are_echoed_verbatim() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    c.send_frame(json!(7), json!(7), "lab:r", "phx_join", json!({}))
        .await;
    let reply = c.expect("join reply", |f| f.event == "phx_reply").await;
    assert_eq!((reply.join_ref, reply.msg_ref), (json!(7), json!(7)));
    c.send_frame(json!(7), json!({"k": [1]}), "lab:r", "echo", json!({}))
        .await;
    let reply = c.expect("reply", |f| f.event == "phx_reply").await;
    assert_eq!(reply.msg_ref, json!({"k": [1]}));
}

#[tokio::test]
async fn at_most_max_channels_per_socket() {
    let config = fawkes_runtime::TransportConfig {
        max_channels: 3,
        ..Default::default()
    };
    let t = TestEndpoint::start_with(config).await;
    let mut c = t.client("ann").await;
    for i in 0..3 {
        assert_eq!(
            c.join(&format!("lab:{i}"), json!({})).await.1.status(),
            Some("ok")
        );
    }
    let (join_ref, reply) = c.join("lab:3", json!({})).await;
    assert_eq!(reply.join_ref, json!(join_ref));
    assert_eq!(
        reply.payload,
        json!({"status": "error", "response": {"reason": "too many channels joined"}})
    );
    // Leaving one makes room.
    c.send_frame(Value::Null, json!("x"), "lab:0", "phx_leave", json!({}))
        .await;
    c.event("lab:0", "phx_close").await;
    assert_eq!(c.join("lab:3", json!({})).await.1.status(), Some("ok"));
}

/// Many joins (past the point where the socket keeps them in a map rather than a vector, and
/// back): each message reaches its own join (its own state), and the bound holds throughout.
#[tokio::test]
async fn many_joins_route_to_their_own_channel_and_keep_the_bound() {
    const MAX: usize = 40;
    let config = fawkes_runtime::TransportConfig {
        max_channels: MAX,
        ..Default::default()
    };
    let t = TestEndpoint::start_with(config).await;
    let mut c = t.client("ann").await;
    let mut refs = Vec::new();
    for i in 0..MAX {
        let (join_ref, reply) = c.join(&format!("lab:{i}"), json!({})).await;
        assert_eq!(reply.status(), Some("ok"), "join {i}");
        refs.push(join_ref);
    }
    let (_, reply) = c.join("lab:over", json!({})).await;
    assert_eq!(
        reply.payload,
        json!({"status": "error", "response": {"reason": "too many channels joined"}})
    );
    // Join i counts i + 1 messages: each join keeps its own state.
    for (i, join_ref) in refs.iter().enumerate() {
        for _ in 0..=i {
            c.push(join_ref, &format!("lab:{i}"), "count", json!({}))
                .await;
        }
    }
    let mut live: Vec<usize> = (0..MAX).collect();
    check_counts(&mut c, &live, &refs, 1).await;
    // Leave all but three, in an order unrelated to the joins.
    while live.len() > 3 {
        let i = live.remove(live.len() * 5 / 7);
        let topic = format!("lab:{i}");
        c.send_frame(json!(refs[i]), json!("x"), &topic, "phx_leave", json!({}))
            .await;
        c.event(&topic, "phx_close").await;
    }
    check_counts(&mut c, &live, &refs, 2).await;
    // Back up to the bound (a left topic anew among them), and not past it.
    let mut joined = live.len();
    for i in (0..2 * MAX).filter(|i| !live.contains(i)) {
        let (_, reply) = c.join(&format!("lab:{i}"), json!({})).await;
        if joined < MAX {
            assert_eq!(reply.status(), Some("ok"), "join {i} at {joined}");
            joined += 1;
        } else {
            assert_eq!(reply.status(), Some("error"), "join {i} over the bound");
            break;
        }
    }
}

/// Each of `live`'s joins answers on its own topic and join_ref with its own count: join `i`
/// counted `i + 1` messages, and `checked` more in earlier checks and this one.
async fn check_counts(c: &mut WsClient, live: &[usize], refs: &[String], checked: usize) {
    for &i in live {
        let topic = format!("lab:{i}");
        let r = c.push(&refs[i], &topic, "count", json!({})).await;
        let reply = c.reply(&r).await;
        assert_eq!(reply.topic, topic);
        assert_eq!(reply.join_ref, json!(refs[i]));
        assert_eq!(reply.status(), Some("ok"));
        assert_eq!(
            reply.payload["response"]["count"],
            json!(i + 1 + checked),
            "join {i}"
        );
    }
}

#[tokio::test]
async fn stopping_on_purpose_closes_and_a_stop_with_error_errors() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (a, _) = c.join("lab:a", json!({})).await;
    let r = c.push(&a, "lab:a", "stop", json!({})).await;
    assert_eq!(c.reply(&r).await.status(), Some("ok"));
    let close = c.event("lab:a", "phx_close").await;
    assert_eq!(close.join_ref, json!(a));

    let (b, _) = c.join("lab:b", json!({})).await;
    c.push(&b, "lab:b", "stop_error", json!({})).await;
    let error = c.event("lab:b", "phx_error").await;
    assert_eq!(
        (error.join_ref.clone(), error.msg_ref.clone()),
        (json!(b), json!(b))
    );
    assert_eq!(error.payload, json!({"reason": "channel_crash"}));

    let (d, _) = c.join("lab:c", json!({})).await;
    c.push(&d, "lab:c", "info_stop", json!({})).await;
    assert_eq!(c.event("lab:c", "phx_close").await.join_ref, json!(d));
    let reasons: Vec<_> = t.terminations().into_iter().map(|(_, r)| r).collect();
    use fawkes_runtime::StopReason::*;
    assert_eq!(
        reasons,
        vec![
            Normal,
            Error("asked to fail".into()),
            Shutdown("done".into())
        ]
    );
}

#[tokio::test]
async fn pushes_and_typed_info_messages_reach_only_this_client() {
    let t = TestEndpoint::start().await;
    let mut a = t.client("ann").await;
    let mut b = t.client("bob").await;
    let (ja, _) = a.join("lab:p", json!({})).await;
    b.join("lab:p", json!({})).await;
    let r = a.push(&ja, "lab:p", "push", json!({"only": "ann"})).await;
    let pushed = a.event("lab:p", "pushed").await;
    assert_eq!(
        (pushed.join_ref.clone(), pushed.msg_ref.clone()),
        (json!(ja), Value::Null)
    );
    assert_eq!(a.reply(&r).await.status(), Some("ok"));
    a.push(&ja, "lab:p", "info", json!({"via": "handle_info"}))
        .await;
    assert_eq!(
        a.event("lab:p", "info").await.payload,
        json!({"via": "handle_info"})
    );
    // A broadcast sent afterwards is the sentinel: anything misdelivered to b came before it.
    a.push(&ja, "lab:p", "broadcast", json!({"sentinel": true}))
        .await;
    b.event("lab:p", "shout").await;
    let stray: Vec<_> = b
        .unmatched()
        .into_iter()
        .filter(|f| f.event == "pushed" || f.event == "info")
        .collect();
    assert!(stray.is_empty(), "pushes are not broadcasts: {stray:?}");
}
