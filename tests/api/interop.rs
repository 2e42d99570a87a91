//! The official phoenix.js client against the app socket with real access tokens.

#[path = "../js/node.rs"]
mod node;

use serde_json::json;

use crate::support::TestServer;

/// Registers `name` and logs in; returns the token.
async fn token_for(t: &TestServer, name: &str) -> String {
    let email = format!("{}@example.com", name.to_lowercase());
    let user = json!({"user": {"name": name, "subname": "Js", "email": email, "job": "J", "password": "correct horse battery"}});
    assert_eq!(t.post("/api/v1/users", None, user).await.status, 201);
    t.login(&email, "correct horse battery").await
}

#[tokio::test]
async fn phoenix_js_connects_with_real_tokens_and_its_presence_stays_in_sync() {
    let t = TestServer::start().await;
    let (a, b, c) = (
        token_for(&t, "Ann").await,
        token_for(&t, "Bob").await,
        token_for(&t, "Cy").await,
    );
    // Ann and Bob's conversation, with one message before Bob first joins.
    let bob_id = t.get("/api/v1/me", Some(&b)).await.body["data"]["id"]
        .as_i64()
        .expect("id");
    let conversation = t.conversation(&a, bob_id).await;
    let first = t
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&a),
            json!({"content": "m0"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let url = format!("{}/socket", t.url.replace("http://", "ws://"));
    let ann_id = t.get("/api/v1/me", Some(&a)).await.body["data"]["id"].to_string();
    let conversation = conversation.to_string();
    let output = node::run_interop(&[
        "app",
        &url,
        &a,
        &b,
        &c,
        &conversation,
        &ann_id,
        &bob_id.to_string(),
    ])
    .await;
    for scenario in [
        "ok a real access token, as authToken and as a param",
        "ok three clients' Presence stays in sync through joins, an update, a leave and a disconnect",
        "ok a conversation recovers what it missed across a reconnect and gets the rest live",
        "ok two users chat over room:chat and every device of the recipient gets each message",
        "ok a bad token never connects",
    ] {
        assert!(
            output.contains(scenario),
            "missing `{scenario}` in:\n{output}"
        );
    }
}
