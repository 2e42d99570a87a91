//! Every error has a JSON body with the documented shape; request ids; CORS; health.

use serde_json::json;

use crate::support::{TestServer, detail, raw_http, raw_json_body};

#[tokio::test]
async fn malformed_json_and_missing_envelope_are_400() {
    let t = TestServer::start().await;
    let request = http::Request::post(format!("{}/api/v1/users", t.url))
        .header("content-type", "application/json")
        .body("{\"user\": {".into())
        .expect("request");
    let resp = t.send(request).await;
    let detail = resp.assert_json_error(400)["detail"]
        .as_str()
        .expect("detail");
    assert!(detail.starts_with("malformed JSON"), "{detail}");

    let resp = t
        .post("/api/v1/users", None, json!({"name": "no envelope"}))
        .await;
    assert_eq!(
        resp.assert_json_error(400)["detail"],
        "expected a JSON object with a \"user\" object"
    );
    let resp = t
        .post("/api/v1/users", None, json!({"user": "not an object"}))
        .await;
    resp.assert_json_error(400);
    let resp = t.post("/api/v1/users", None, json!([1, 2])).await;
    resp.assert_json_error(400);
}

#[tokio::test]
async fn non_json_bodies_are_415() {
    let t = TestServer::start().await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut builder = http::Request::post(format!("{}/api/v1/users", t.url));
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let resp = t
            .send(builder.body("user[name]=x".into()).expect("request"))
            .await;
        resp.assert_json_error(415);
        assert_eq!(
            resp.body,
            detail("Unsupported Media Type"),
            "{content_type:?}"
        );
    }
    // JSON with parameters or a +json suffix is JSON.
    let request = http::Request::post(format!("{}/api/v1/sessions", t.url))
        .header("content-type", "application/vnd.api+json; charset=utf-8")
        .body(r#"{"email":"a@b.co","password":"xxxxxxxxxxxxxxx"}"#.into())
        .expect("request");
    t.send(request).await.assert_json_error(401);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let t = TestServer::start().await;
    // (`/` is the browser client's in `dev`, the tests' environment: see `site.rs`.)
    for path in [
        "/api",
        "/api/v1/nope",
        "/api/v1/users/1/extra",
        "/dev/unknown",
    ] {
        let resp = t.get(path, None).await;
        resp.assert_json_error(404);
        assert_eq!(resp.body, detail("Not Found"), "{path}");
    }
    for (method, path, allow) in [
        ("PUT", "/api/v1/me", "GET"),
        ("DELETE", "/api/v1/users", "GET, POST"),
        ("POST", "/api/v1/users/1", "GET, PATCH, DELETE"),
        ("GET", "/api/v1/sessions", "POST, DELETE"),
        ("POST", "/health", "GET"),
    ] {
        let resp = t.call(method, path, None, None).await;
        resp.assert_json_error(405);
        assert_eq!(resp.body, detail("Method Not Allowed"));
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_whether_declared_or_streamed() {
    let t = TestServer::start_with(|c| c.http.body_limit_bytes = 1024).await;
    let big = json!({"user": {"name": "x".repeat(2000)}});
    let resp = t.post("/api/v1/users", None, big).await;
    resp.assert_json_error(413);
    assert_eq!(resp.body, detail("Payload Too Large"));

    // Chunked, so the size is only found out while reading.
    let chunk = "y".repeat(1500);
    let body = format!("{{\"user\":{{\"name\":\"{chunk}\"}}}}");
    let request = format!(
        "POST /api/v1/users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let response = raw_http(t.server().local_addr(), request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    assert_eq!(raw_json_body(&response), detail("Payload Too Large"));
}

#[tokio::test]
async fn slow_requests_time_out_with_408() {
    let t = TestServer::start_with(|c| c.http.request_timeout_secs = 1).await;
    // Declares a body it never sends.
    let request = "POST /api/v1/users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"user\":";
    let response = raw_http(t.server().local_addr(), request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert_eq!(raw_json_body(&response), detail("Request Timeout"));
}

#[tokio::test]
async fn internal_errors_are_500_without_internals_and_ready_turns_503() {
    let t = TestServer::start().await;
    let (_, token) = t.user("doomed@example.com").await;
    let ready = t.get("/ready", None).await.body;
    assert_eq!(
        (&ready["status"], &ready["database"], &ready["realtime"]),
        (&json!("ok"), &json!("ok"), &json!("ok")),
        "{ready}"
    );
    assert_eq!(
        (
            &ready["pubsub"]["adapter"],
            &ready["pubsub"]["state"],
            &ready["pubsub"]["members"]
        ),
        (&json!("memory"), &json!("connected"), &json!([])),
        "a single node: {ready}"
    );

    t.server()
        .app()
        .db
        .close_by_ref()
        .await
        .expect("close pool");

    let resp = t.get("/api/v1/users", Some(&token)).await;
    resp.assert_json_error(500);
    assert_eq!(resp.body, detail("Internal Server Error"));
    let resp = t.get("/ready", None).await;
    resp.assert_json_error(503);
    assert_eq!(resp.body, detail("Service Unavailable"));
    // Liveness does not depend on the database.
    assert_eq!(t.get("/health", None).await.body, json!({"status": "ok"}));
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let t = TestServer::start().await;
    let request = http::Request::get(format!("{}/health", t.url))
        .header("x-request-id", "req-12345")
        .body(Default::default())
        .expect("request");
    assert_eq!(
        t.send(request).await.header("x-request-id"),
        Some("req-12345")
    );
    let a = t.get("/api/v1/nope", None).await;
    let b = t.get("/api/v1/nope", None).await;
    let (a, b) = (
        a.header("x-request-id").expect("generated"),
        b.header("x-request-id").expect("generated"),
    );
    assert_eq!(a.len(), 36, "a UUID: {a}");
    assert_ne!(a, b);
}

#[tokio::test]
async fn cors_preflight_and_exposed_headers() {
    let t =
        TestServer::start_with(|c| c.http.cors_origins = vec!["https://app.example.com".into()])
            .await;
    let preflight = http::Request::options(format!("{}/api/v1/sessions", t.url))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Default::default())
        .expect("request");
    let resp = t.send(preflight).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        resp.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST"))
    );

    let request = http::Request::get(format!("{}/health", t.url))
        .header("origin", "https://evil.example.net")
        .body(Default::default())
        .expect("request");
    assert_eq!(
        t.send(request).await.header("access-control-allow-origin"),
        None
    );
    let request = http::Request::get(format!("{}/health", t.url))
        .header("origin", "https://app.example.com")
        .body(Default::default())
        .expect("request");
    let resp = t.send(request).await;
    assert!(
        resp.header("access-control-expose-headers")
            .is_some_and(|h| h.contains("authorization"))
    );
}

#[tokio::test]
async fn dev_mailbox_exists_only_in_dev() {
    let t = TestServer::start_with(|c| c.env = fawkes::config::Environment::Test).await;
    t.get("/dev/mailbox", None).await.assert_json_error(404);
    assert_eq!(t.get("/health", None).await.status, 200);
}

#[tokio::test]
async fn dev_mailbox_refuses_requests_forwarded_by_a_local_proxy() {
    // `env = dev` on 127.0.0.1 behind a reverse proxy on the same host: every internet client
    // arrives from loopback, with the proxy's headers.
    let t = TestServer::start().await;
    assert_eq!(t.get("/dev/mailbox", None).await.status, 200);
    for (header, value) in [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-real-ip", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7;proto=https"),
        ("x-forwarded-for", "127.0.0.1"),
    ] {
        let mut request = t.request("GET", "/dev/mailbox", None, None);
        request.headers_mut().insert(
            header,
            http::HeaderValue::from_str(value).expect("header value"),
        );
        t.send(request).await.assert_json_error(404);
    }
    assert_eq!(t.get("/dev/mailbox", None).await.status, 200);
}
