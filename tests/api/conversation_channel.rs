//! `conversation:<id>` over a real WebSocket: participants only, `last_seen_id` recovery in
//! the join reply, and messages posted over REST arriving live as `message:new`.

use serde_json::{Value, json};

use crate::support::TestServer;

async fn post(t: &TestServer, token: &str, id: i64, content: &str) -> i64 {
    let resp = t
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            Some(token),
            json!({ "content": content }),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    resp.body["data"]["id"].as_i64().expect("id")
}

fn ids(messages: &Value) -> Vec<i64> {
    messages
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn only_participants_join_and_recover_what_they_missed_then_get_it_live() {
    let t = TestServer::start().await;
    let (_, ta) = t.user("a@example.com").await;
    let (b, tb) = t.user("b@example.com").await;
    let (_, tc) = t.user("c@example.com").await;
    let id = t.conversation(&ta, b).await;
    let topic = format!("conversation:{id}");
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(post(&t, &ta, id, &format!("m{i}")).await);
    }

    // An outsider is refused, as are unknown and malformed ids; the socket carries on.
    let mut carol = t.socket(&tc).await;
    for refused in [
        topic.clone(),
        "conversation:999999".into(),
        "conversation:x".into(),
    ] {
        let (_, reply) = carol.join(&refused, json!({ "last_seen_id": 0 })).await;
        assert_eq!(reply.status(), Some("error"), "{refused}");
        assert_eq!(reply.response(), &json!({ "reason": "unauthorized" }));
    }
    let (_, reply) = carol.join("room:lobby", json!({})).await;
    assert_eq!(reply.status(), Some("ok"), "the outsider's socket lives on");

    // A participant who saw the first message gets the rest in the join reply.
    let mut bob = t.socket(&tb).await;
    let (_, reply) = bob.join(&topic, json!({ "last_seen_id": "x" })).await;
    assert_eq!(reply.response(), &json!({ "reason": "invalid" }));
    let (join_ref, reply) = bob.join(&topic, json!({ "last_seen_id": sent[0] })).await;
    assert_eq!(reply.status(), Some("ok"));
    assert_eq!(ids(&reply.response()["messages"]), sent[1..].to_vec());
    assert_eq!(reply.response()["has_more"], json!(false));
    assert_eq!(reply.response()["messages"][0]["content"], json!("m1"));

    // Joining without `last_seen_id` replies `{}`.
    let mut ann = t.socket(&ta).await;
    let (_, reply) = ann.join(&topic, json!({})).await;
    assert_eq!((reply.status(), reply.response()), (Some("ok"), &json!({})));

    // A message posted over REST arrives live to both participants' sockets.
    let new = post(&t, &ta, id, "live").await;
    for client in [&mut bob, &mut ann] {
        let pushed = client
            .expect("message:new for the new message", |f| {
                f.topic == topic
                    && f.event == "message:new"
                    && f.payload["message"]["id"] == json!(new)
            })
            .await;
        assert_eq!(pushed.payload["message"]["content"], json!("live"));
    }

    // The channel only delivers: client events get an error reply and the join lives on.
    let msg_ref = bob.push(&join_ref, &topic, "message:new", json!({})).await;
    let reply = bob.reply(&msg_ref).await;
    assert_eq!(reply.status(), Some("error"));
    let again = post(&t, &ta, id, "still here").await;
    bob.expect("the join still delivers", |f| {
        f.event == "message:new" && f.payload["message"]["id"] == json!(again)
    })
    .await;
}

#[tokio::test]
async fn a_long_absence_is_recovered_a_page_at_a_time() {
    let t = TestServer::start().await;
    let (_, ta) = t.user("a@example.com").await;
    let (b, tb) = t.user("b@example.com").await;
    let id = t.conversation(&ta, b).await;
    let mut sent = Vec::new();
    for i in 0..105 {
        sent.push(post(&t, &ta, id, &format!("m{i}")).await);
    }
    let mut bob = t.socket(&tb).await;
    let (_, reply) = bob
        .join(&format!("conversation:{id}"), json!({ "last_seen_id": 0 }))
        .await;
    assert_eq!(ids(&reply.response()["messages"]), sent[..100].to_vec());
    assert_eq!(reply.response()["has_more"], json!(true));
    let rest = t
        .get(
            &format!("/api/v1/conversations/{id}/messages?after={}", sent[99]),
            Some(&tb),
        )
        .await;
    assert_eq!(ids(&rest.body["data"]), sent[100..].to_vec());
}

#[tokio::test]
async fn only_the_canonical_spelling_of_a_conversation_id_joins() {
    let t = TestServer::start().await;
    let (_, ta) = t.user("a@example.com").await;
    let (b, tb) = t.user("b@example.com").await;
    let id = t.conversation(&ta, b).await;

    // A participant joining another spelling of the id would be accepted and never receive a
    // message (they are broadcast on `conversation:<id>`): refused instead.
    let mut bob = t.socket(&tb).await;
    for spelling in [
        format!("conversation:0{id}"),
        format!("conversation:+{id}"),
        format!("conversation:{id} "),
        format!("conversation:{id}.0"),
    ] {
        let (_, reply) = bob.join(&spelling, json!({})).await;
        assert_eq!(reply.status(), Some("error"), "{spelling}");
        assert_eq!(reply.response(), &json!({ "reason": "unauthorized" }));
    }

    // The canonical spelling joins and receives.
    let topic = format!("conversation:{id}");
    let (_, reply) = bob.join(&topic, json!({})).await;
    assert_eq!(reply.status(), Some("ok"));
    let sent = post(&t, &ta, id, "hello").await;
    let frame = bob.event(&topic, "message:new").await;
    assert_eq!(frame.payload["message"]["id"], json!(sent));
}
