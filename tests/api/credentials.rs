//! Changing the password or e-mail: the current password is required, every other session
//! ends (tokens refused, sockets closed), the session that made the change lives on, sockets
//! included, durably.

use fawkes::testing::WsClient;
use serde_json::{Value, json};

use crate::support::TestServer;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new password";

fn ws_url(t: &TestServer, token: &str) -> String {
    format!(
        "{}/socket/websocket?token={token}&vsn=2.0.0",
        t.url.replace("http://", "ws://")
    )
}

async fn patch(t: &TestServer, id: i64, token: &str, user: Value) -> crate::support::Resp {
    t.call(
        "PATCH",
        &format!("/api/v1/users/{id}"),
        Some(token),
        Some(json!({ "user": user })),
    )
    .await
}

async fn joined_socket(t: &TestServer, token: &str) -> WsClient {
    let mut socket = t.socket(token).await;
    let (_, reply) = socket.join("room:lobby", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));
    socket
}

/// Asserts `socket` is still open and joined: it receives a room message posted by `token`.
async fn still_receives(t: &TestServer, token: &str, socket: &mut WsClient, body: &str) {
    let resp = t
        .post(
            "/api/v1/rooms/lobby/messages",
            Some(token),
            json!({ "body": body }),
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    let message = socket.event("room:lobby", "message:new").await;
    assert_eq!(message.payload["body"], body);
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_ends_every_other_session() {
    let t = TestServer::start().await;
    let (id, _) = t.register("pw@example.com").await;
    let a = t.login("pw@example.com", PASSWORD).await;
    let b = t.login("pw@example.com", PASSWORD).await;
    let mut a_socket = joined_socket(&t, &a).await;
    let mut b_socket = joined_socket(&t, &b).await;

    // Missing, empty, mistyped or wrong current password: 422 on it, and nothing changes.
    for (user, message) in [
        (json!({"password": NEW_PASSWORD}), "can't be blank"),
        (
            json!({"password": NEW_PASSWORD, "current_password": ""}),
            "can't be blank",
        ),
        (
            json!({"password": NEW_PASSWORD, "current_password": 12345}),
            "is invalid",
        ),
        (
            json!({"password": NEW_PASSWORD, "current_password": "not the password"}),
            "is invalid",
        ),
    ] {
        let resp = patch(&t, id, &a, user.clone()).await;
        assert_eq!(
            resp.assert_json_error(422)["current_password"],
            json!([message]),
            "{user}"
        );
    }
    assert_eq!(t.get("/api/v1/me", Some(&b)).await.status, 200);
    t.login("pw@example.com", PASSWORD).await;
    let h = b_socket.heartbeat().await;
    b_socket.reply(&h).await;

    // The right one: the password changes, A lives on (its socket stays open and joined), B
    // is refused everywhere.
    let resp = patch(
        &t,
        id,
        &a,
        json!({"password": NEW_PASSWORD, "current_password": PASSWORD}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(t.get("/api/v1/me", Some(&a)).await.status, 200);
    t.get("/api/v1/me", Some(&b)).await.assert_json_error(401);
    assert_eq!(b_socket.closed().await.0, 1001);
    assert_eq!(WsClient::upgrade_status(&ws_url(&t, &b), &[]).await, 403);
    still_receives(&t, &a, &mut a_socket, "after the password change").await;

    // The new password works at once, also for a token issued within the same second.
    let fresh = t.login("pw@example.com", NEW_PASSWORD).await;
    assert_eq!(t.get("/api/v1/me", Some(&fresh)).await.status, 200);
    t.post(
        "/api/v1/sessions",
        None,
        json!({"email": "pw@example.com", "password": PASSWORD}),
    )
    .await
    .assert_json_error(401);

    // Durable: after a restart A and the fresh token still work, B does not.
    let t = t.restart().await;
    assert_eq!(t.get("/api/v1/me", Some(&a)).await.status, 200);
    assert_eq!(t.get("/api/v1/me", Some(&fresh)).await.status, 200);
    t.get("/api/v1/me", Some(&b)).await.assert_json_error(401);
}

#[tokio::test]
async fn an_email_change_needs_the_current_password_and_ends_every_other_session() {
    let t = TestServer::start().await;
    let (id, _) = t.register("old@example.com").await;
    let a = t.login("old@example.com", PASSWORD).await;
    let b = t.login("old@example.com", PASSWORD).await;
    let mut a_socket = joined_socket(&t, &a).await;
    let mut b_socket = joined_socket(&t, &b).await;

    let resp = patch(&t, id, &a, json!({"email": "new@example.com"})).await;
    assert_eq!(
        resp.assert_json_error(422)["current_password"],
        json!(["can't be blank"])
    );
    let resp = patch(
        &t,
        id,
        &a,
        json!({"email": "new@example.com", "current_password": "wrong password"}),
    )
    .await;
    assert_eq!(
        resp.assert_json_error(422)["current_password"],
        json!(["is invalid"])
    );
    assert_eq!(
        t.get("/api/v1/me", Some(&b)).await.body["data"]["email"],
        "old@example.com"
    );

    // Only the case differs: the same address, no password needed, nobody logged out.
    let resp = patch(&t, id, &a, json!({"email": "OLD@example.com"})).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(t.get("/api/v1/me", Some(&b)).await.status, 200);

    let resp = patch(
        &t,
        id,
        &a,
        json!({"email": "new@example.com", "current_password": PASSWORD}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.body["data"]["email"], "new@example.com");
    assert_eq!(t.get("/api/v1/me", Some(&a)).await.status, 200);
    t.get("/api/v1/me", Some(&b)).await.assert_json_error(401);
    assert_eq!(b_socket.closed().await.0, 1001);
    assert_eq!(WsClient::upgrade_status(&ws_url(&t, &b), &[]).await, 403);
    still_receives(&t, &a, &mut a_socket, "after the e-mail change").await;
    t.login("new@example.com", PASSWORD).await;
}

#[tokio::test]
async fn profile_changes_other_than_credentials_need_no_password_and_end_no_session() {
    let t = TestServer::start().await;
    let (id, token) = t.user("calm@example.com").await;
    let other = t.login("calm@example.com", PASSWORD).await;
    let resp = patch(&t, id, &token, json!({"job": "Pilot", "name": "Amelia"})).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(t.get("/api/v1/me", Some(&other)).await.status, 200);
}

#[tokio::test]
async fn password_checks_of_profile_changes_are_rate_limited_like_logins() {
    let t = TestServer::start_with(|c| c.rate_limit.login_per_email_per_minute = 3).await;
    let (id, token) = t.user("guess@example.com").await;
    for _ in 0..2 {
        let resp = patch(
            &t,
            id,
            &token,
            json!({"password": NEW_PASSWORD, "current_password": "a wrong guess"}),
        )
        .await;
        resp.assert_json_error(422);
    }
    let resp = patch(
        &t,
        id,
        &token,
        json!({"password": NEW_PASSWORD, "current_password": PASSWORD}),
    )
    .await;
    resp.assert_json_error(429);
    assert!(resp.header("retry-after").is_some());
}
