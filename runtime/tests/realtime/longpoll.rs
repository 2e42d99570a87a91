//! The LongPoll transport over real HTTP (hyper's client): sessions, polls and posts as
//! phoenix.js' `LongPoll` makes them.

use std::time::Duration;

use bytes::Bytes;
use fawkes_runtime::TransportConfig;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::support::TestEndpoint;

/// A runtime with LongPoll on and a short poll window.
async fn start() -> TestEndpoint {
    TestEndpoint::start_with(TransportConfig {
        longpoll: true,
        longpoll_window: Duration::from_millis(300),
        ..TransportConfig::default()
    })
    .await
}

/// One request on a fresh connection: the HTTP status and the JSON body.
async fn request(
    t: &TestEndpoint,
    method: &str,
    query: &str,
    body: Option<String>,
) -> (u16, Value) {
    let stream = TcpStream::connect(t.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("/socket/longpoll?{query}"))
        .header("host", t.addr.to_string());
    if body.is_some() {
        builder = builder.header("content-type", "application/x-ndjson");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("in time")
        .expect("response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

/// Opens a session for `user`: its token.
async fn open(t: &TestEndpoint, user: &str) -> String {
    let (http, body) = request(t, "GET", &format!("user={user}&vsn=2.0.0"), None).await;
    assert_eq!(http, 200);
    assert_eq!(body["status"], 410, "{body}");
    assert_eq!(body["messages"], json!([]));
    body["token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn a_session_opens_joins_and_polls_its_reply() {
    let t = start().await;
    let token = open(&t, "alice").await;
    let query = format!("user=alice&vsn=2.0.0&token={token}");

    let join = json!(["1", "1", "lab:a", "phx_join", {}]).to_string();
    let (_, posted) = request(&t, "POST", &query, Some(join)).await;
    assert_eq!(posted, json!({"status": 200}));

    let (_, polled) = request(&t, "GET", &query, None).await;
    assert_eq!(polled["status"], 200, "{polled}");
    assert_eq!(polled["token"], token.as_str());
    let messages = polled["messages"].as_array().expect("messages");
    let reply: Value =
        serde_json::from_str(messages[0].as_str().expect("a frame string")).expect("a V2 frame");
    assert_eq!(
        reply,
        json!(["1", "1", "lab:a", "phx_reply", {"status": "ok", "response": {"joined": "lab:a"}}])
    );

    let (_, empty) = request(&t, "GET", &query, None).await;
    assert_eq!(empty["status"], 204, "nothing within the window: {empty}");
    assert_eq!(empty["messages"], json!([]));
}

#[tokio::test]
async fn a_bad_token_is_gone_and_a_refused_connect_is_forbidden() {
    let t = start().await;
    let (_, posted) = request(&t, "POST", "token=forged", Some("[]".into())).await;
    assert_eq!(
        posted,
        json!({"status": 410}),
        "a POST cannot open a session"
    );
    let (_, polled) = request(&t, "GET", "user=bob&vsn=2.0.0&token=forged", None).await;
    assert_eq!(
        polled["status"], 410,
        "a GET with a bad token gets a new session"
    );
    assert!(polled["token"].is_string());
    let (_, refused) = request(&t, "GET", "vsn=2.0.0", None).await;
    assert_eq!(
        refused,
        json!({"status": 403}),
        "connect refuses a missing user"
    );
}

#[tokio::test]
async fn a_session_without_polls_ends_and_its_token_is_gone() {
    let t = start().await;
    let token = open(&t, "carol").await;
    assert_eq!(t.runtime.stats().connections, 1);
    // 1.5 windows of 300 ms without a poll.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let query = format!("token={token}");
    let (_, posted) = request(&t, "POST", &query, Some("[]".into())).await;
    assert_eq!(posted, json!({"status": 410}));
    assert!(
        super::support::eventually(|| t.runtime.stats().connections == 0).await,
        "the session's socket is gone"
    );
}

#[tokio::test]
async fn longpoll_is_off_by_default() {
    let t = TestEndpoint::start().await;
    let (http, _) = request(&t, "GET", "user=dave&vsn=2.0.0", None).await;
    assert_eq!(http, 404);
}
