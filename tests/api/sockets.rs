//! The app's socket: token authentication, and sockets closed when their token or user goes.

use base64::Engine as _;
use fawkes::testing::WsClient;
use serde_json::json;

use crate::support::TestServer;

fn ws_url(t: &TestServer, query: &str) -> String {
    format!(
        "{}/socket/websocket?{query}",
        t.url.replace("http://", "ws://")
    )
}

#[tokio::test]
async fn sockets_authenticate_with_a_token_in_the_query_or_the_subprotocol() {
    let t = TestServer::start().await;
    let (_, token) = t.user("ws@example.com").await;
    let mut c = WsClient::connect(&ws_url(&t, &format!("token={token}&vsn=2.0.0")))
        .await
        .expect("query token");
    let (j, reply) = c.join("room:lobby", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));
    let r = c.push(&j, "room:lobby", "ping", json!({"n": 1})).await;
    assert_eq!(c.reply(&r).await.response(), &json!({"n": 1}));

    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&token);
    let protocols = format!("phoenix, base64url.bearer.phx.{b64}");
    let mut c = WsClient::connect_with(
        &ws_url(&t, "vsn=2.0.0"),
        &[("sec-websocket-protocol", &protocols)],
    )
    .await
    .expect("subprotocol token");
    assert_eq!(c.join("room:x", json!({})).await.1.status(), Some("ok"));
}

#[tokio::test]
async fn missing_forged_or_revoked_tokens_are_refused_before_the_upgrade() {
    let t = TestServer::start().await;
    let (_, token) = t.user("nope@example.com").await;
    assert_eq!(
        WsClient::upgrade_status(&ws_url(&t, "vsn=2.0.0"), &[]).await,
        403
    );
    assert_eq!(
        WsClient::upgrade_status(&ws_url(&t, "token=garbage&vsn=2.0.0"), &[]).await,
        403
    );
    let mut forged = token.clone();
    forged.pop();
    assert_eq!(
        WsClient::upgrade_status(&ws_url(&t, &format!("token={forged}&vsn=2.0.0")), &[]).await,
        403
    );
    assert_eq!(
        t.call("DELETE", "/api/v1/sessions", Some(&token), None)
            .await
            .status,
        204
    );
    assert_eq!(
        WsClient::upgrade_status(&ws_url(&t, &format!("token={token}&vsn=2.0.0")), &[]).await,
        403
    );
}

#[tokio::test]
async fn logging_out_closes_exactly_the_sockets_opened_with_that_token() {
    let t = TestServer::start().await;
    let (_, password) = t.register("multi@example.com").await;
    let phone = t.login("multi@example.com", &password).await;
    let laptop = t.login("multi@example.com", &password).await;
    let mut on_phone = WsClient::connect(&ws_url(&t, &format!("token={phone}&vsn=2.0.0")))
        .await
        .expect("phone");
    let mut on_laptop = WsClient::connect(&ws_url(&t, &format!("token={laptop}&vsn=2.0.0")))
        .await
        .expect("laptop");
    on_phone.join("room:a", json!({})).await;
    on_laptop.join("room:a", json!({})).await;

    assert_eq!(
        t.call("DELETE", "/api/v1/sessions", Some(&phone), None)
            .await
            .status,
        204
    );
    assert_eq!(
        on_phone.closed().await,
        (1001, "disconnected".to_owned()),
        "1001: phoenix.js reconnects, and is refused"
    );
    let h = on_laptop.heartbeat().await;
    on_laptop.reply(&h).await;
}

#[tokio::test]
async fn deleting_an_account_closes_all_its_sockets() {
    let t = TestServer::start().await;
    let (id, token) = t.user("gone@example.com").await;
    let (_, other) = t.user("stays@example.com").await;
    let mut a = WsClient::connect(&ws_url(&t, &format!("token={token}&vsn=2.0.0")))
        .await
        .expect("a");
    let mut b = WsClient::connect(&ws_url(&t, &format!("token={token}&vsn=2.0.0")))
        .await
        .expect("b");
    let mut c = WsClient::connect(&ws_url(&t, &format!("token={other}&vsn=2.0.0")))
        .await
        .expect("c");
    assert_eq!(
        t.call("DELETE", &format!("/api/v1/users/{id}"), Some(&token), None)
            .await
            .status,
        204
    );
    assert_eq!(a.closed().await.0, 1001);
    assert_eq!(b.closed().await.0, 1001);
    let h = c.heartbeat().await;
    c.reply(&h).await;
}
