//! The official phoenix.js client over LongPoll against the app socket with real access
//! tokens: `tests/js/longpoll.mjs`, modes `app` and `app-cap`.

// `interop.rs` includes it too; only `run_script` is used here.
#[allow(clippy::duplicate_mod, dead_code)]
#[path = "../js/node.rs"]
mod node;

use std::time::Duration;

use serde_json::json;

use crate::support::TestServer;

/// A server with LongPoll on, a short poll window (the scenarios wait for sessions to end)
/// and at most `cap` sockets per user.
async fn start(cap: usize) -> TestServer {
    TestServer::start_with(|c| {
        c.socket.transport.longpoll = true;
        c.socket.transport.longpoll_window = Duration::from_secs(1);
        c.socket.transport.max_sockets_per_id = cap;
    })
    .await
}

/// Registers `name`; returns (id, password).
async fn register(t: &TestServer, name: &str) -> (i64, String) {
    let email = format!("{}@example.com", name.to_lowercase());
    let password = "correct horse battery".to_owned();
    let user = json!({"user": {"name": name, "subname": "Lp", "email": email, "job": "J", "password": password}});
    let resp = t.post("/api/v1/users", None, user).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    (resp.body["data"]["id"].as_i64().expect("id"), password)
}

/// Logs `name` in (again); returns the access token.
async fn login(t: &TestServer, name: &str, password: &str) -> String {
    t.login(&format!("{}@example.com", name.to_lowercase()), password)
        .await
}

fn socket_url(t: &TestServer) -> String {
    format!("{}/socket", t.url.replace("http://", "ws://"))
}

#[tokio::test]
async fn phoenix_js_over_longpoll_with_real_tokens() {
    let t = start(32).await;
    let (ann_id, ann_password) = register(&t, "Ann").await;
    let (bob_id, bob_password) = register(&t, "Bob").await;
    let (_, cy_password) = register(&t, "Cy").await;
    let ann = login(&t, "Ann", &ann_password).await;
    let ann_again = login(&t, "Ann", &ann_password).await;
    let bob = login(&t, "Bob", &bob_password).await;
    let cy = login(&t, "Cy", &cy_password).await;
    // Ann and Bob's conversation, with one message before Bob first joins.
    let conversation = t.conversation(&ann, bob_id).await;
    let first = t
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&ann),
            json!({"content": "m0"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let output = node::run_script(
        "longpoll.mjs",
        &[
            "app",
            &socket_url(&t),
            &ann,
            &ann_again,
            &bob,
            &cy,
            &conversation.to_string(),
            &ann_id.to_string(),
            &bob_id.to_string(),
        ],
    )
    .await;
    for scenario in [
        "ok presence and room messages over LongPoll beside WebSocket, one entry per user and a meta per device",
        "ok room:chat over LongPoll: every device of the recipient gets each message",
        "ok a conversation over LongPoll recovers what it missed across a reconnect and gets the rest live",
        "ok an access token as a connect param works over LongPoll beside the session token",
        "ok logout ends the LongPoll sessions of that login, and their reconnect is refused",
        "ok a bad token gets 403 over LongPoll and never joins",
    ] {
        assert!(
            output.contains(scenario),
            "missing `{scenario}` in:\n{output}"
        );
    }
    let me = t.get("/api/v1/me", Some(&ann_again)).await;
    assert_eq!(me.status, 401, "the logged-out token stays revoked");
}

#[tokio::test]
async fn the_socket_cap_counts_longpoll_sessions() {
    let t = start(2).await;
    let (_, password) = register(&t, "Dee").await;
    let dee = login(&t, "Dee", &password).await;
    let output = node::run_script("longpoll.mjs", &["app-cap", &socket_url(&t), &dee]).await;
    assert!(
        output.contains(
            "ok the per-id socket cap counts LongPoll sessions and a timed-out session gives its place back"
        ),
        "{output}"
    );
}
