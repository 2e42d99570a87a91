//! The app's `room:*` channel: presence with the user's name, messages, status updates, and
//! room messages posted over REST reaching WebSocket members.

use fawkes::testing::WsClient;
use serde_json::{Value, json};

use crate::support::TestServer;

/// Registers `name` and logs in; returns (user id, token).
async fn named_user(t: &TestServer, name: &str) -> (i64, String) {
    let email = format!("{}@example.com", name.to_lowercase());
    let resp = t
        .post(
            "/api/v1/users",
            None,
            json!({"user": {"name": name, "subname": "X", "email": email, "job": "J", "password": "correct horse battery"}}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let id = resp.body["data"]["id"].as_i64().expect("id");
    (id, t.login(&email, "correct horse battery").await)
}

async fn connect(t: &TestServer, token: &str) -> WsClient {
    t.socket(token).await
}

async fn join_room(c: &mut WsClient, topic: &str) -> (String, Value) {
    let (join_ref, reply) = c.join(topic, json!({})).await;
    assert_eq!(reply.status(), Some("ok"));
    let state = c.event(topic, "presence_state").await;
    assert_eq!(state.join_ref, json!(join_ref));
    (join_ref, state.payload)
}

#[tokio::test]
async fn joining_a_room_tracks_the_user_by_id_with_name_and_online_at() {
    let t = TestServer::start().await;
    let (ann_id, ann_token) = named_user(&t, "Ann").await;
    let (bob_id, bob_token) = named_user(&t, "Bob").await;
    let mut ann = connect(&t, &ann_token).await;
    let (_, state) = join_room(&mut ann, "room:lobby").await;
    let meta = &state[ann_id.to_string()]["metas"][0];
    assert_eq!(meta["name"], "Ann");
    let online_at: i64 = meta["online_at"]
        .as_str()
        .expect("unix seconds as a string")
        .parse()
        .expect("number");
    assert!((chrono::Utc::now().timestamp() - online_at).abs() < 60);
    assert_eq!(meta["phx_ref"].as_str().map(str::len), Some(20));

    let mut bob = connect(&t, &bob_token).await;
    let (jb, bob_state) = join_room(&mut bob, "room:lobby").await;
    // The state is the window's snapshot; anything newer (bob's own join, perhaps) follows as a
    // diff. Bob's synced view holds both users.
    let mut keys: std::collections::BTreeSet<String> = bob_state
        .as_object()
        .expect("state")
        .keys()
        .cloned()
        .collect();
    while keys.len() < 2 {
        let diff = bob.event("room:lobby", "presence_diff").await;
        keys.extend(
            diff.payload["joins"]
                .as_object()
                .expect("joins")
                .keys()
                .cloned(),
        );
    }
    assert_eq!(
        keys,
        [ann_id.to_string(), bob_id.to_string()]
            .into_iter()
            .collect()
    );
    let joined = ann
        .expect("bob's join", |f| {
            f.event == "presence_diff" && f.payload["joins"].get(bob_id.to_string()).is_some()
        })
        .await;
    assert_eq!(
        joined.payload["joins"][bob_id.to_string()]["metas"][0]["name"],
        "Bob"
    );

    let r = bob
        .push(&jb, "room:lobby", "status:set", json!({"status": "away"}))
        .await;
    assert_eq!(
        bob.reply(&r).await.payload,
        json!({"status": "ok", "response": {}})
    );
    let update = ann
        .expect("bob's update", |f| {
            f.event == "presence_diff" && f.payload["leaves"].get(bob_id.to_string()).is_some()
        })
        .await;
    assert_eq!(
        update.payload["joins"][bob_id.to_string()]["metas"][0]["status"],
        "away"
    );
    let r = bob
        .push(&jb, "room:lobby", "status:set", json!({"status": ""}))
        .await;
    assert_eq!(bob.reply(&r).await.response()["reason"], "invalid");
}

#[tokio::test]
async fn messages_are_validated_and_broadcast_to_the_room() {
    let t = TestServer::start().await;
    let (ann_id, ann_token) = named_user(&t, "Ann").await;
    let (_, bob_token) = named_user(&t, "Bob").await;
    let mut ann = connect(&t, &ann_token).await;
    let mut bob = connect(&t, &bob_token).await;
    let (ja, _) = join_room(&mut ann, "room:chat1").await;
    join_room(&mut bob, "room:chat1").await;

    let r = ann
        .push(
            &ja,
            "room:chat1",
            "message:new",
            json!({"body": "  hello bob  "}),
        )
        .await;
    assert_eq!(
        ann.reply(&r).await.payload,
        json!({"status": "ok", "response": {}})
    );
    for c in [&mut ann, &mut bob] {
        let message = c.event("room:chat1", "message:new").await;
        assert_eq!(
            message.payload,
            json!({"user_id": ann_id, "body": "hello bob"})
        );
    }

    for (payload, error) in [
        (json!({"body": "   "}), "can't be blank"),
        (json!({}), "can't be blank"),
        (json!({"body": 42}), "is invalid"),
        (
            json!({"body": "x".repeat(4001)}),
            "should be at most 4000 character(s)",
        ),
    ] {
        let r = ann.push(&ja, "room:chat1", "message:new", payload).await;
        let reply = ann.reply(&r).await;
        assert_eq!(
            reply.payload,
            json!({"status": "error", "response": {"reason": "invalid", "errors": {"body": [error]}}})
        );
    }
    // The channel lives on.
    let r = ann
        .push(&ja, "room:chat1", "ping", json!({"still": "here"}))
        .await;
    assert_eq!(ann.reply(&r).await.response(), &json!({"still": "here"}));
}

#[tokio::test]
async fn a_message_posted_over_rest_reaches_websocket_members() {
    let t = TestServer::start().await;
    let (ann_id, ann_token) = named_user(&t, "Ann").await;
    let (_, bob_token) = named_user(&t, "Bob").await;
    let mut bob = connect(&t, &bob_token).await;
    join_room(&mut bob, "room:news").await;

    let resp = t
        .post(
            "/api/v1/rooms/news/messages",
            Some(&ann_token),
            json!({"body": "from REST"}),
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    assert_eq!(resp.body["data"]["topic"], "room:news");
    let message = bob.event("room:news", "message:new").await;
    assert_eq!(
        message.payload,
        json!({"user_id": ann_id, "body": "from REST"})
    );

    let resp = t
        .post(
            "/api/v1/rooms/news/messages",
            Some(&ann_token),
            json!({"body": ""}),
        )
        .await;
    assert_eq!(
        resp.assert_json_error(422)["body"],
        json!(["can't be blank"])
    );
    t.post("/api/v1/rooms/news/messages", None, json!({"body": "x"}))
        .await
        .assert_json_error(401);
}

#[tokio::test]
async fn rest_posts_reach_only_topics_the_room_channel_serves() {
    let t = TestServer::start().await;
    let (_, ann_token) = named_user(&t, "Ann").await;
    let (_, bob_token) = named_user(&t, "Bob").await;
    let mut bob = connect(&t, &bob_token).await;
    let (_, reply) = bob.join("room:chat", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));

    // `room:chat` is the private-message channel's, however the name is spelled.
    for name in ["chat", "ch%61t", "%63hat"] {
        let resp = t
            .post(
                &format!("/api/v1/rooms/{name}/messages"),
                Some(&ann_token),
                json!({"body": "sneaky"}),
            )
            .await;
        assert_eq!(
            resp.body,
            crate::support::detail("Not Found"),
            "{name}: {}",
            resp.text
        );
        resp.assert_json_error(404);
    }
    let h = bob.heartbeat().await;
    bob.reply(&h).await;
    assert!(
        bob.unmatched().iter().all(|f| f.event != "message:new"),
        "{:?}",
        bob.unmatched()
    );
    // A room whose name merely starts like it is still a room.
    let resp = t
        .post(
            "/api/v1/rooms/chat2/messages",
            Some(&ann_token),
            json!({"body": "fine"}),
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
}

#[tokio::test]
async fn room_names_are_percent_decoded_and_bounded() {
    let t = TestServer::start().await;
    let (ann_id, ann_token) = named_user(&t, "Ann").await;
    let (_, bob_token) = named_user(&t, "Bob").await;
    let mut bob = connect(&t, &bob_token).await;
    join_room(&mut bob, "room:café au lait").await;

    let resp = t
        .post(
            "/api/v1/rooms/caf%C3%A9%20au%20lait/messages",
            Some(&ann_token),
            json!({"body": "un crème"}),
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    assert_eq!(resp.body["data"]["topic"], "room:café au lait");
    let message = bob.event("room:café au lait", "message:new").await;
    assert_eq!(
        message.payload,
        json!({"user_id": ann_id, "body": "un crème"})
    );

    // Not UTF-8 once decoded: 400 with a JSON body.
    let resp = t
        .post(
            "/api/v1/rooms/caf%E9/messages",
            Some(&ann_token),
            json!({"body": "x"}),
        )
        .await;
    resp.assert_json_error(400);
    // `room:` plus the decoded name may take 255 bytes; "é" is two.
    let at_limit = "%C3%A9".repeat(125);
    let resp = t
        .post(
            &format!("/api/v1/rooms/{at_limit}/messages"),
            Some(&ann_token),
            json!({"body": "x"}),
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    let resp = t
        .post(
            &format!("/api/v1/rooms/{at_limit}x/messages"),
            Some(&ann_token),
            json!({"body": "x"}),
        )
        .await;
    assert_eq!(
        resp.assert_json_error(422)["name"],
        json!(["should be at most 250 byte(s) in UTF-8"])
    );
}
