//! The LongPoll transport over real HTTP (hyper's client): sessions, polls and posts as
//! phoenix.js' `LongPoll` makes them. The helpers here serve the `longpoll_*` files too.

use std::time::Duration;

use bytes::Bytes;
use fawkes_runtime::TransportConfig;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::support::TestEndpoint;

/// LongPoll on, a short poll window.
pub(super) fn config() -> TransportConfig {
    TransportConfig {
        longpoll: true,
        longpoll_window: Duration::from_millis(300),
        ..TransportConfig::default()
    }
}

/// A runtime with [`config`].
pub(super) async fn start() -> TestEndpoint {
    TestEndpoint::start_with(config()).await
}

/// One HTTP/1.1 connection to the endpoint, kept open between requests.
pub(super) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    addr: std::net::SocketAddr,
}

impl Conn {
    pub(super) async fn open(t: &TestEndpoint) -> Self {
        Self::connect(t.addr).await
    }

    pub(super) async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        Self { sender, addr }
    }

    /// A request to `/socket/longpoll?{query}` with `headers` (a body is ndjson unless
    /// `headers` name a content type): the HTTP status and the JSON body (`null` if none).
    pub(super) async fn send(
        &mut self,
        method: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (u16, Value) {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("/socket/longpoll?{query}"))
            .header("host", self.addr.to_string());
        let typed = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !typed {
            builder = builder.header("content-type", "application/x-ndjson");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        self.sender.ready().await.expect("connection ready");
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(request))
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
}

/// One request with `headers` on a fresh connection.
pub(super) async fn request_with(
    t: &TestEndpoint,
    method: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, Value) {
    Conn::open(t).await.send(method, query, headers, body).await
}

/// One request on a fresh connection: the HTTP status and the JSON body.
pub(super) async fn request(
    t: &TestEndpoint,
    method: &str,
    query: &str,
    body: Option<String>,
) -> (u16, Value) {
    request_with(t, method, query, &[], body).await
}

/// Opens a session for `user`: its token.
pub(super) async fn open(t: &TestEndpoint, user: &str) -> String {
    let (http, body) = request(t, "GET", &format!("user={user}&vsn=2.0.0"), None).await;
    assert_eq!(http, 200);
    assert_eq!(body["status"], 410, "{body}");
    assert_eq!(body["messages"], json!([]));
    body["token"].as_str().expect("a token").to_owned()
}

/// Polls until a message comes (or the session is gone): the answer's body.
pub(super) async fn poll_messages(t: &TestEndpoint, token: &str) -> Value {
    for _ in 0..50 {
        let (_, polled) = request(t, "GET", &format!("token={token}"), None).await;
        if polled["status"] != 204 {
            return polled;
        }
    }
    panic!("no message in 50 polls");
}

/// The messages of a poll's answer, decoded as JSON frames.
pub(super) fn frames(polled: &Value) -> Vec<Value> {
    polled["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| serde_json::from_str(m.as_str().expect("a frame string")).expect("JSON"))
        .collect()
}

/// Joins `topic` over the session and polls until its reply comes: the reply's status.
pub(super) async fn join(t: &TestEndpoint, token: &str, topic: &str, payload: Value) -> Value {
    let frame = json!(["j", "j", topic, "phx_join", payload]).to_string();
    let (_, posted) = request(t, "POST", &format!("token={token}"), Some(frame)).await;
    assert_eq!(posted, json!({"status": 200}));
    for _ in 0..50 {
        let polled = poll_messages(t, token).await;
        assert!(
            polled["messages"].is_array(),
            "the session is gone: {polled}"
        );
        let reply = frames(&polled)
            .into_iter()
            .find(|f| f[3] == "phx_reply" && f[2] == topic && f[1] == "j");
        if let Some(reply) = reply {
            return reply[4]["status"].clone();
        }
    }
    panic!("no join reply for {topic}");
}

/// A V2 heartbeat line.
pub(super) fn heartbeat(n: usize) -> String {
    json!([null, n.to_string(), "phoenix", "heartbeat", {}]).to_string()
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
    assert_eq!(
        frames(&polled)[0],
        json!(["1", "1", "lab:a", "phx_reply", {"status": "ok", "response": {"joined": "lab:a"}}])
    );

    let (_, empty) = request(&t, "GET", &query, None).await;
    assert_eq!(empty["status"], 204, "nothing within the window: {empty}");
    assert_eq!(empty["messages"], json!([]));
}

/// `token` with one character of its tag changed: a forged session token.
pub(super) fn forge(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = bytes.len() - 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("base64url")
}

#[tokio::test]
async fn a_poll_answers_with_everything_queued_past_100() {
    let t = TestEndpoint::start_with(TransportConfig {
        longpoll_window: Duration::from_secs(2),
        ..config()
    })
    .await;
    let token = open(&t, "pat").await;
    let query = format!("token={token}");
    // A heartbeat's reply is queued as its line is handed on: 150 wait after these POSTs.
    for lines in [0..100, 100..150] {
        let lines: Vec<String> = lines.map(heartbeat).collect();
        let (_, posted) = request(&t, "POST", &query, Some(lines.join("\n"))).await;
        assert_eq!(posted, json!({"status": 200}));
    }
    let (_, polled) = request(&t, "GET", &query, None).await;
    let refs: Vec<Value> = frames(&polled).iter().map(|f| f[1].clone()).collect();
    let expected: Vec<Value> = (0..150).map(|n| json!(n.to_string())).collect();
    assert_eq!(refs, expected, "all of them in one answer, in order");
}

#[tokio::test]
async fn a_session_token_that_does_not_verify_is_gone_without_a_new_session() {
    let t = start().await;
    let token = open(&t, "bob").await;
    // Another runtime with the same node name: a restarted node's token.
    let restarted = open(&start().await, "bob").await;
    for bad in [forge(&token), restarted] {
        let (_, posted) = request(&t, "POST", &format!("token={bad}"), Some("[]".into())).await;
        assert_eq!(
            posted,
            json!({"status": 410}),
            "a POST cannot open a session"
        );
        let query = format!("user=bob&vsn=2.0.0&token={bad}");
        let (_, polled) = request(&t, "GET", &query, None).await;
        assert_eq!(polled, json!({"status": 410}), "no new session for a GET");
        let header = [("x-phoenix-longpoll-token", bad.as_str())];
        let (_, polled) = request_with(&t, "GET", "user=bob&vsn=2.0.0", &header, None).await;
        assert_eq!(polled, json!({"status": 410}), "nor with the header");
    }
    assert_eq!(t.runtime.stats().connections, 1, "only the first session");
}

#[tokio::test]
async fn a_token_param_that_is_no_session_token_opens_a_session() {
    let t = start().await;
    // None, empty, `null`, `undefined`, or the application's own `token` connect param.
    for (n, token) in [
        "",
        "token=&",
        "token=null&",
        "token=undefined&",
        "token=s3cret&",
    ]
    .into_iter()
    .enumerate()
    {
        let (_, opened) = request(&t, "GET", &format!("{token}user=u{n}&vsn=2.0.0"), None).await;
        assert_eq!(opened["status"], 410, "{token}: {opened}");
        assert!(opened["token"].is_string(), "{token}: {opened}");
    }
    assert_eq!(t.runtime.stats().connections, 5);
    // The application's param and the session token together: the session's is used.
    let token = open(&t, "kim").await;
    let query = format!("token=s3cret&vsn=2.0.0&token={token}");
    let (_, posted) = request(&t, "POST", &query, Some(heartbeat(1))).await;
    assert_eq!(posted, json!({"status": 200}));
    let (_, polled) = request(&t, "GET", &query, None).await;
    assert_eq!(polled["status"], 200, "the heartbeat's reply: {polled}");
}

#[tokio::test]
async fn a_refused_connect_is_forbidden() {
    let t = start().await;
    let (_, refused) = request(&t, "GET", "vsn=2.0.0", None).await;
    assert_eq!(
        refused,
        json!({"status": 403}),
        "connect refuses a missing user"
    );
}

#[tokio::test]
async fn the_origin_is_checked_on_every_request_not_only_on_open() {
    let t = start().await;
    let token = open(&t, "olga").await;
    let query = format!("token={token}");
    let evil = [("origin", "http://evil.example")];
    let (_, posted) = request_with(&t, "POST", &query, &evil, Some(heartbeat(1))).await;
    assert_eq!(posted, json!({"status": 403}), "a POST from another origin");
    let (_, polled) = request_with(&t, "GET", &query, &evil, None).await;
    assert_eq!(polled, json!({"status": 403}), "a poll from another origin");
    let (_, preflight) = request_with(&t, "OPTIONS", &query, &evil, None).await;
    assert_eq!(preflight, json!({"status": 403}), "a preflight too");
    // The session's own origin (here: none, as a native client) still works.
    let (_, posted) = request(&t, "POST", &query, Some(heartbeat(2))).await;
    assert_eq!(posted, json!({"status": 200}));
    let own = format!("http://{}", t.addr);
    let (_, polled) = request_with(&t, "GET", &query, &[("origin", own.as_str())], None).await;
    assert_eq!(polled["status"], 200, "the heartbeat's reply: {polled}");
}

#[tokio::test]
async fn v1_lines_are_read_as_v1_frames_when_the_session_is_v1() {
    let t = start().await;
    let (_, opened) = request(&t, "GET", "user=vic&vsn=1.0.0", None).await;
    let token = opened["token"].as_str().expect("a token").to_owned();
    let query = format!("token={token}");
    let join = json!({"topic": "lab:v1", "event": "phx_join", "payload": {}, "ref": "1"});
    let (_, posted) = request(&t, "POST", &query, Some(join.to_string())).await;
    assert_eq!(posted, json!({"status": 200}));
    let polled = poll_messages(&t, &token).await;
    assert_eq!(
        frames(&polled)[0],
        json!({"topic": "lab:v1", "event": "phx_reply", "ref": "1",
               "payload": {"status": "ok", "response": {"joined": "lab:v1"}}})
    );
}

#[tokio::test]
async fn longpoll_is_off_by_default() {
    let t = TestEndpoint::start().await;
    let (http, _) = request(&t, "GET", "user=dave&vsn=2.0.0", None).await;
    assert_eq!(http, 404);
}
