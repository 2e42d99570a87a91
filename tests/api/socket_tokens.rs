//! Socket tokens (`POST /api/v1/socket_tokens`): short-lived, for connecting the app socket
//! only, tied to the session that asked for them.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use fawkes::testing::WsClient;
use serde_json::json;

use crate::support::{TestServer, eventually};

fn ws_url(t: &TestServer, query: &str) -> String {
    format!(
        "{}/socket/websocket?{query}&vsn=2.0.0",
        t.url.replace("http://", "ws://")
    )
}

/// A socket token for the session of `access`; returns (token, how long after its issue time
/// it expires).
async fn socket_token(t: &TestServer, access: &str) -> (String, chrono::Duration) {
    let resp = t
        .call("POST", "/api/v1/socket_tokens", Some(access), None)
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let token = resp.body["data"]["token"].as_str().expect("token");
    let time = |name: &str| {
        resp.body["data"][name]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {}", resp.text))
            .parse::<DateTime<Utc>>()
            .expect("RFC 3339")
    };
    (token.to_owned(), time("expires_at") - time("issued_at"))
}

#[tokio::test]
async fn a_socket_token_connects_by_query_or_auth_token_and_lives_a_minute() {
    let t = TestServer::start().await;
    let (_, access) = t.user("sock@example.com").await;
    let (token, lifetime) = socket_token(&t, &access).await;
    assert_ne!(token, access);
    assert_eq!(
        lifetime,
        chrono::Duration::seconds(60),
        "the default lifetime"
    );

    let mut c = WsClient::connect(&ws_url(&t, &format!("token={token}")))
        .await
        .expect("query token");
    assert_eq!(c.join("room:lobby", json!({})).await.1.status(), Some("ok"));

    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&token);
    let protocols = format!("phoenix, base64url.bearer.phx.{b64}");
    let mut c = WsClient::connect_with(&ws_url(&t, ""), &[("sec-websocket-protocol", &protocols)])
        .await
        .expect("authToken");
    assert_eq!(c.join("room:lobby", json!({})).await.1.status(), Some("ok"));

    // Without a bearer token there is none to be had.
    t.call("POST", "/api/v1/socket_tokens", None, None)
        .await
        .assert_json_error(401);
    t.call("POST", "/api/v1/socket_tokens", Some(&token), None)
        .await
        .assert_json_error(401);
}

#[tokio::test]
async fn a_socket_token_is_not_a_rest_bearer_token() {
    let t = TestServer::start().await;
    let (id, access) = t.user("rest@example.com").await;
    let (token, _) = socket_token(&t, &access).await;
    for path in [
        "/api/v1/me",
        "/api/v1/users",
        &format!("/api/v1/users/{id}"),
    ] {
        let resp = t.get(path, Some(&token)).await;
        resp.assert_json_error(401);
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{path}");
    }
    t.call("DELETE", "/api/v1/sessions", Some(&token), None)
        .await
        .assert_json_error(401);
    assert_eq!(t.get("/api/v1/me", Some(&access)).await.status, 200);
}

#[tokio::test]
async fn an_expired_socket_token_is_refused() {
    let t = TestServer::start_with(|c| c.socket.token_ttl_secs = 1).await;
    let (_, access) = t.user("brief@example.com").await;
    let (token, lifetime) = socket_token(&t, &access).await;
    assert_eq!(lifetime, chrono::Duration::seconds(1));
    let url = ws_url(&t, &format!("token={token}"));
    let refused = eventually(Duration::from_secs(10), || async {
        (WsClient::upgrade_status(&url, &[]).await == 403).then_some(())
    })
    .await;
    assert!(refused.is_some(), "refused once its second is over");
    // The session itself is fine, and a new socket token works again (retried: on a loaded
    // machine a whole second may pass before the upgrade).
    assert_eq!(t.get("/api/v1/me", Some(&access)).await.status, 200);
    let connected = eventually(Duration::from_secs(10), || async {
        let (fresh, _) = socket_token(&t, &access).await;
        WsClient::connect(&ws_url(&t, &format!("token={fresh}")))
            .await
            .ok()
    })
    .await;
    assert!(connected.is_some(), "a fresh socket token connects");
}

#[tokio::test]
async fn logging_out_the_parent_refuses_its_socket_tokens_and_closes_their_sockets() {
    let t = TestServer::start().await;
    let (_, password) = t.register("parent@example.com").await;
    let parent = t.login("parent@example.com", &password).await;
    let sibling = t.login("parent@example.com", &password).await;
    let (token, _) = socket_token(&t, &parent).await;
    let (sibling_token, _) = socket_token(&t, &sibling).await;
    let mut on_parent = WsClient::connect(&ws_url(&t, &format!("token={token}")))
        .await
        .expect("connect");
    on_parent.join("room:a", json!({})).await;
    let mut on_sibling = WsClient::connect(&ws_url(&t, &format!("token={sibling_token}")))
        .await
        .expect("connect");
    on_sibling.join("room:a", json!({})).await;

    let resp = t
        .call("DELETE", "/api/v1/sessions", Some(&parent), None)
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    assert_eq!(on_parent.closed().await.0, 1001);
    assert_eq!(
        WsClient::upgrade_status(&ws_url(&t, &format!("token={token}")), &[]).await,
        403
    );
    // The other session and its socket are untouched.
    let h = on_sibling.heartbeat().await;
    on_sibling.reply(&h).await;
    assert_eq!(
        WsClient::upgrade_status(&ws_url(&t, &format!("token={sibling_token}")), &[]).await,
        101
    );
}

#[tokio::test]
async fn a_password_change_elsewhere_refuses_the_other_sessions_socket_tokens() {
    let t = TestServer::start().await;
    let (id, password) = t.register("moved@example.com").await;
    let keeper = t.login("moved@example.com", &password).await;
    let other = t.login("moved@example.com", &password).await;
    let (kept, _) = socket_token(&t, &keeper).await;
    let (dropped, _) = socket_token(&t, &other).await;
    let resp = t
        .call(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(&keeper),
            Some(json!({"user": {"password": "another long password", "current_password": password}})),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        WsClient::upgrade_status(&ws_url(&t, &format!("token={dropped}")), &[]).await,
        403
    );
    WsClient::connect(&ws_url(&t, &format!("token={kept}")))
        .await
        .expect("the changing session's socket token still connects");
}
