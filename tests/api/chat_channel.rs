//! `room:chat` over real WebSockets: the tutorial's two-user exchange with a recipient on two
//! devices, delivery counts, REST posts delivered the same way, and every refusal.

use fawkes::testing::WsClient;
use serde_json::{Value, json};

use crate::support::TestServer;

const TOPIC: &str = "room:chat";

/// A socket of `token` that has joined `room:chat`, with its join_ref.
async fn chat_socket(t: &TestServer, token: &str) -> (WsClient, String) {
    let mut socket = t.socket(token).await;
    let (join_ref, reply) = socket.join(TOPIC, json!({})).await;
    assert_eq!(reply.status(), Some("ok"), "{reply:?}");
    (socket, join_ref)
}

/// Pushes `send_msg` and returns the reply's status and response.
async fn send(client: &mut WsClient, join_ref: &str, payload: Value) -> (String, Value) {
    let msg_ref = client.push(join_ref, TOPIC, "send_msg", payload).await;
    let reply = client.reply(&msg_ref).await;
    (
        reply.status().unwrap_or_default().to_owned(),
        reply.response().clone(),
    )
}

/// Waits for `receive_msg` of message `id`; checks it came on the client's `room:chat` join.
async fn receive(client: &mut WsClient, join_ref: &str, id: &Value) -> Value {
    let frame = client
        .expect("receive_msg", |f| {
            f.topic == TOPIC && f.event == "receive_msg" && f.payload["message"]["id"] == *id
        })
        .await;
    assert_eq!(
        frame.join_ref,
        json!(join_ref),
        "pushed on the room:chat join"
    );
    frame.payload
}

async fn history(t: &TestServer, token: &str, id: i64) -> Vec<String> {
    let resp = t
        .get(&format!("/api/v1/conversations/{id}/messages"), Some(token))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    resp.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["content"].as_str().expect("content").to_owned())
        .collect()
}

#[tokio::test]
async fn two_users_exchange_messages_and_every_device_of_the_recipient_gets_them() {
    let t = TestServer::start().await;
    let (a, ta) = t.user("a@example.com").await;
    let (b, tb) = t.user("b@example.com").await;
    let conv = t.conversation(&ta, b).await;
    let (mut ann, ann_join) = chat_socket(&t, &ta).await;
    // The sender's other device: a sent message is not pushed back to its own side.
    let (mut ann_tablet, ann_tablet_join) = chat_socket(&t, &ta).await;
    let (mut phone, phone_join) = chat_socket(&t, &tb).await;
    let (mut laptop, laptop_join) = chat_socket(&t, &tb).await;
    // Connected but not in room:chat: not counted, gets nothing.
    let mut elsewhere = t.socket(&tb).await;
    let (lobby_join, _) = elsewhere.join("room:lobby", json!({})).await;

    let (status, response) = send(
        &mut ann,
        &ann_join,
        json!({"user": b, "conv": conv, "message": "  hello bob  "}),
    )
    .await;
    assert_eq!(status, "ok", "{response}");
    assert_eq!(response["delivered"], json!(2), "two devices in room:chat");
    let message = &response["message"];
    assert_eq!(message["content"], json!("hello bob"), "trimmed");
    assert_eq!(message["sender_id"], json!(a));
    assert_eq!(message["conversation_id"], json!(conv));
    for (device, join_ref) in [(&mut phone, &phone_join), (&mut laptop, &laptop_join)] {
        let got = receive(device, join_ref, &message["id"]).await;
        assert_eq!(got, json!({ "message": message }));
    }

    // Bob answers from his phone; both of ann's devices get it.
    let (status, response) = send(
        &mut phone,
        &phone_join,
        json!({"user": a, "conv": conv, "message": "hi ann"}),
    )
    .await;
    assert_eq!(status, "ok", "{response}");
    assert_eq!(response["delivered"], json!(2), "ann's two devices");
    let got = receive(&mut ann, &ann_join, &response["message"]["id"]).await;
    assert_eq!(got["message"]["content"], json!("hi ann"));

    // Both are stored, in order; the socket outside room:chat got no receive_msg.
    assert_eq!(history(&t, &ta, conv).await, ["hello bob", "hi ann"]);
    // (A round trip first, so that anything already queued for it has been read.)
    let r = elsewhere
        .push(&lobby_join, "room:lobby", "ping", json!({}))
        .await;
    elsewhere.reply(&r).await;
    assert!(
        elsewhere
            .unmatched()
            .iter()
            .all(|f| f.event != "receive_msg"),
        "{:?}",
        elsewhere.unmatched()
    );
    // Ann's tablet got bob's answer, not her own message.
    let answer = receive(
        &mut ann_tablet,
        &ann_tablet_join,
        &response["message"]["id"],
    )
    .await;
    assert_eq!(answer["message"]["content"], json!("hi ann"));
    assert!(
        ann_tablet
            .unmatched()
            .iter()
            .all(|f| f.event != "receive_msg"),
        "{:?}",
        ann_tablet.unmatched()
    );
}

#[tokio::test]
async fn refusals_get_a_reason_store_nothing_and_the_channel_lives_on() {
    let t = TestServer::start().await;
    let (a, ta) = t.user("a@example.com").await;
    let (b, tb) = t.user("b@example.com").await;
    let (c, tc) = t.user("c@example.com").await;
    let conv = t.conversation(&ta, b).await;
    let other_conv = t.conversation(&tc, b).await;
    let (mut ann, join) = chat_socket(&t, &ta).await;
    let (mut carol, carol_join) = chat_socket(&t, &tc).await;

    let cases = [
        // Not a participant, and an unknown conversation: the same answer.
        (
            json!({"user": b, "conv": other_conv, "message": "hi"}),
            json!({"reason": "not_found"}),
        ),
        (
            json!({"user": b, "conv": 999_999, "message": "hi"}),
            json!({"reason": "not_found"}),
        ),
        // The recipient is not the other participant (a third user, or oneself).
        (
            json!({"user": c, "conv": conv, "message": "hi"}),
            json!({"reason": "wrong_recipient"}),
        ),
        (
            json!({"user": a, "conv": conv, "message": "hi"}),
            json!({"reason": "wrong_recipient"}),
        ),
        // Invalid text.
        (
            json!({"user": b, "conv": conv, "message": "   "}),
            json!({"reason": "invalid", "errors": {"message": ["can't be blank"]}}),
        ),
        (
            json!({"user": b, "conv": conv}),
            json!({"reason": "invalid", "errors": {"message": ["can't be blank"]}}),
        ),
        (
            json!({"user": b, "conv": conv, "message": 42}),
            json!({"reason": "invalid", "errors": {"message": ["is invalid"]}}),
        ),
        (
            json!({"user": b, "conv": conv, "message": "x".repeat(4001)}),
            json!({"reason": "invalid", "errors": {"message": ["should be at most 4000 character(s)"]}}),
        ),
        // Malformed ids.
        (
            json!({"user": "b", "conv": -1, "message": "hi"}),
            json!({"reason": "invalid", "errors": {
                "user": ["should be a positive integer"],
                "conv": ["should be a positive integer"],
            }}),
        ),
        (
            json!("not an object"),
            json!({"reason": "invalid", "errors": {
                "user": ["should be a positive integer"],
                "conv": ["should be a positive integer"],
                "message": ["can't be blank"],
            }}),
        ),
    ];
    for (payload, expected) in cases {
        let (status, response) = send(&mut ann, &join, payload.clone()).await;
        assert_eq!(
            (status.as_str(), &response),
            ("error", &expected),
            "{payload}"
        );
    }
    // An outsider cannot write into someone else's conversation either.
    let (status, response) = send(
        &mut carol,
        &carol_join,
        json!({"user": b, "conv": conv, "message": "intrusion"}),
    )
    .await;
    assert_eq!(
        (status.as_str(), response),
        ("error", json!({"reason": "not_found"}))
    );

    // Nothing was stored, and the same join still sends.
    assert!(history(&t, &ta, conv).await.is_empty());
    let (status, response) = send(
        &mut ann,
        &join,
        json!({"user": b, "conv": conv, "message": "4000 is fine"}),
    )
    .await;
    assert_eq!(status, "ok", "{response}");
    assert_eq!(response["delivered"], json!(0), "bob is offline");
    // Other events are answered, not crashed on.
    let r = ann.push(&join, TOPIC, "what", json!({})).await;
    assert_eq!(
        ann.reply(&r).await.response(),
        &json!({"reason": "unhandled event"})
    );
    assert_eq!(
        history(&t, &tb, conv).await,
        ["4000 is fine"],
        "offline recipients find it in history"
    );
}

#[tokio::test]
async fn rest_posts_reach_the_recipients_room_chat_sockets_too() {
    let t = TestServer::start().await;
    let (_, ta) = t.user("a@example.com").await;
    let (b, tb) = t.user("b@example.com").await;
    let conv = t.conversation(&ta, b).await;
    let (mut phone, phone_join) = chat_socket(&t, &tb).await;
    let (mut laptop, laptop_join) = chat_socket(&t, &tb).await;
    let resp = t
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&ta),
            json!({"content": "over rest"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    assert_eq!(resp.body["meta"], json!({"delivered": 2}));
    let message = &resp.body["data"];
    for (device, join_ref) in [(&mut phone, &phone_join), (&mut laptop, &laptop_join)] {
        let got = receive(device, join_ref, &message["id"]).await;
        assert_eq!(got, json!({ "message": message }));
    }

    // A device that leaves room:chat is no longer counted; one that closes neither.
    let r = laptop
        .push(&laptop_join, TOPIC, "phx_leave", json!({}))
        .await;
    laptop.reply(&r).await;
    drop(phone);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let resp = t
            .post(
                &format!("/api/v1/conversations/{conv}/messages"),
                Some(&ta),
                json!({"content": "anyone?"}),
            )
            .await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        if resp.body["meta"]["delivered"] == json!(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed socket left the registry"
        );
    }
}

/// Makes the database refuse messages whose content is `boom`: at commit on PostgreSQL (a
/// deferred constraint trigger), at insert on SQLite.
async fn refuse_boom(t: &TestServer) {
    let db = sea_orm::Database::connect(&t.db.url)
        .await
        .expect("connect");
    let statements: &[&str] = if t.db.is_postgres() {
        &[
            "CREATE FUNCTION refuse_boom() RETURNS trigger AS $$ BEGIN \
             IF NEW.content = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE CONSTRAINT TRIGGER refuse_boom AFTER INSERT ON messages \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
        ]
    } else {
        &[
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON messages WHEN NEW.content = 'boom' \
           BEGIN SELECT RAISE(ABORT, 'boom refused'); END",
        ]
    };
    for statement in statements {
        sea_orm::ConnectionTrait::execute_unprepared(&db, statement)
            .await
            .expect("install the trigger");
    }
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_message_the_database_refuses_is_never_acknowledged() {
    let t = TestServer::start().await;
    let (_, ta) = t.user("a@example.com").await;
    let (b, tb) = t.user("b@example.com").await;
    let conv = t.conversation(&ta, b).await;
    refuse_boom(&t).await;
    let (mut ann, join) = chat_socket(&t, &ta).await;
    let (mut bob, bob_join) = chat_socket(&t, &tb).await;

    let (status, response) = send(
        &mut ann,
        &join,
        json!({"user": b, "conv": conv, "message": "boom"}),
    )
    .await;
    assert_eq!(
        (status.as_str(), response),
        ("error", json!({"reason": "unavailable"}))
    );
    // Nothing stored, nothing delivered; the channel carries on.
    assert!(history(&t, &ta, conv).await.is_empty());
    let (status, response) = send(
        &mut ann,
        &join,
        json!({"user": b, "conv": conv, "message": "fine"}),
    )
    .await;
    assert_eq!(status, "ok", "{response}");
    let got = receive(&mut bob, &bob_join, &response["message"]["id"]).await;
    assert_eq!(got["message"]["content"], json!("fine"));
    assert!(
        bob.unmatched().iter().all(|f| f.event != "receive_msg"),
        "the refused message never reached bob: {:?}",
        bob.unmatched()
    );
    assert_eq!(history(&t, &tb, conv).await, ["fine"]);
}
