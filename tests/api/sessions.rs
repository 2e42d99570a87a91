//! Login, tokens, logout, rate limits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::support::{TestServer, eventually};

#[tokio::test]
async fn login_returns_user_token_expiry_and_an_authorization_header() {
    let t = TestServer::start().await;
    let (id, password) = t.register("login@example.com").await;
    let resp = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "login@example.com", "password": password}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let data = &resp.body["data"];
    assert_eq!(data["user"]["id"], id);
    let token = data["token"].as_str().expect("token");
    assert!(token.starts_with("v4.local."), "PASETO v4.local: {token}");
    assert_eq!(
        resp.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    let expires: DateTime<Utc> = data["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("RFC 3339");
    let hours = (expires - Utc::now()).num_minutes() as f64 / 60.0;
    assert!(
        (23.9..=24.0).contains(&hours),
        "default expiry 24 h, got {hours} h"
    );

    // The tutorial's envelope works too.
    let resp = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"creds": {"email": "login@example.com", "password": password}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_ne!(
        resp.body["data"]["token"], data["token"],
        "every login gets its own token"
    );
}

#[tokio::test]
async fn wrong_email_and_wrong_password_get_the_same_401() {
    let t = TestServer::start().await;
    t.register("real@example.com").await;
    let wrong_password = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "real@example.com", "password": "not the password"}),
        )
        .await;
    let wrong_email = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "nobody@example.com", "password": "not the password"}),
        )
        .await;
    wrong_password.assert_json_error(401);
    wrong_email.assert_json_error(401);
    assert_eq!(wrong_password.body, wrong_email.body);
    assert_eq!(
        wrong_password.header("www-authenticate"),
        wrong_email.header("www-authenticate")
    );
    assert_eq!(
        wrong_password.header("content-length"),
        wrong_email.header("content-length")
    );
}

#[tokio::test]
async fn login_without_credentials_is_422() {
    let t = TestServer::start().await;
    let resp = t
        .post("/api/v1/sessions", None, json!({"email": "x@example.com"}))
        .await;
    assert_eq!(
        resp.assert_json_error(422)["password"],
        json!(["can't be blank"])
    );
    let resp = t.post("/api/v1/sessions", None, json!({"creds": {}})).await;
    let errors = resp.assert_json_error(422);
    assert_eq!(errors["email"], json!(["can't be blank"]));
    assert_eq!(errors["password"], json!(["can't be blank"]));
}

#[tokio::test]
async fn logins_are_rate_limited_per_email() {
    let t = TestServer::start_with(|c| c.rate_limit.login_per_email_per_minute = 3).await;
    let (_, password) = t.register("limited@example.com").await;
    t.register("free@example.com").await;
    let attempt = |email: &'static str, password: String| {
        let t = &t;
        async move {
            t.post(
                "/api/v1/sessions",
                None,
                json!({"email": email, "password": password}),
            )
            .await
        }
    };
    for _ in 0..3 {
        attempt("limited@example.com", "wrong password!".into())
            .await
            .assert_json_error(401);
    }
    // Over the limit: refused even with the right password, differing only in case.
    let resp = attempt("LIMITED@example.com", password.clone()).await;
    resp.assert_json_error(429);
    assert_eq!(resp.body, crate::support::detail("Too Many Requests"));
    let retry: u64 = resp
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    // Another address is not affected.
    assert_eq!(attempt("free@example.com", password).await.status, 200);
}

#[tokio::test]
async fn logins_are_rate_limited_per_client_address() {
    let t = TestServer::start_with(|c| c.rate_limit.login_per_ip_per_minute = 2).await;
    for i in 0..2 {
        let resp = t
            .post(
                "/api/v1/sessions",
                None,
                json!({"email": format!("n{i}@example.com"), "password": "whatever12345"}),
            )
            .await;
        resp.assert_json_error(401);
    }
    let resp = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "n9@example.com", "password": "whatever12345"}),
        )
        .await;
    resp.assert_json_error(429);
    assert!(resp.header("retry-after").is_some());
}

#[tokio::test]
async fn tokens_expire() {
    let t = TestServer::start_with(|c| c.token_ttl_secs = 2).await;
    let (_, token) = t.user("short@example.com").await;
    assert_eq!(t.get("/api/v1/me", Some(&token)).await.status, 200);
    let refused = eventually(Duration::from_secs(10), || async {
        let resp = t.get("/api/v1/me", Some(&token)).await;
        (resp.status == 401).then_some(resp)
    })
    .await
    .expect("token refused after its expiry");
    refused.assert_json_error(401);
}

#[tokio::test]
async fn logout_revokes_only_the_presented_token_everywhere_and_durably() {
    let t = TestServer::start().await;
    let (_, password) = t.register("bye@example.com").await;
    let first = t.login("bye@example.com", &password).await;
    let second = t.login("bye@example.com", &password).await;

    let resp = t
        .call("DELETE", "/api/v1/sessions", Some(&first), None)
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    t.get("/api/v1/me", Some(&first))
        .await
        .assert_json_error(401);
    t.get("/api/v1/users", Some(&first))
        .await
        .assert_json_error(401);
    t.call("DELETE", "/api/v1/sessions", Some(&first), None)
        .await
        .assert_json_error(401);
    assert_eq!(
        t.get("/api/v1/me", Some(&second)).await.status,
        200,
        "other sessions live on"
    );

    let t = t.restart().await;
    t.get("/api/v1/me", Some(&first))
        .await
        .assert_json_error(401);
    assert_eq!(t.get("/api/v1/me", Some(&second)).await.status, 200);
    t.call("DELETE", "/api/v1/sessions", None, None)
        .await
        .assert_json_error(401);
}

#[tokio::test]
async fn forged_garbled_and_foreign_tokens_are_refused() {
    let t = TestServer::start().await;
    let (_, token) = t.user("victim@example.com").await;
    let other = TestServer::start().await;
    let (_, foreign) = other.user("victim@example.com").await;

    let mut flipped = token.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let truncated = token[..token.len() - 4].to_owned();
    for bad in [
        foreign.as_str(),
        &flipped,
        &truncated,
        "garbage",
        "v4.local.",
        "v4.public.abc",
        "v2.local.abc",
    ] {
        let resp = t.get("/api/v1/me", Some(bad)).await;
        resp.assert_json_error(401);
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{bad}");
    }
    for header in [
        format!("Basic {token}"),
        token.clone(),
        "Bearer".to_owned(),
        String::new(),
    ] {
        let request = http::Request::get(format!("{}/api/v1/me", t.url))
            .header("authorization", header.as_str())
            .body(Default::default())
            .expect("request");
        t.send(request).await.assert_json_error(401);
    }
    assert_eq!(t.get("/api/v1/me", Some(&token)).await.status, 200);
}
