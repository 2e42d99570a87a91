//! The socket as a tower service: the axum example (`examples/axum.rs`) on port 0, driven by a
//! real WebSocket client and a raw HTTP request; and patterns checked when a mount is served.

use std::time::Duration;

use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{
    ConnectError, ConnectInfo, Params, Runtime, Socket, SocketMount, TransportConfig,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::support::SyncPanic;

#[path = "../../../examples/axum.rs"]
#[allow(dead_code)]
mod example;

/// The example app, served by axum on port 0.
struct AxumApp {
    runtime: Runtime,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AxumApp {
    async fn start(config: TransportConfig) -> Self {
        let runtime = Runtime::start(config).await.expect("runtime");
        let router = example::router(&runtime).expect("valid patterns");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(example::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Self {
            runtime,
            addr,
            stop: Some(stop),
            served,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("ws://{}/socket/websocket?vsn=2.0.0&name={name}", self.addr)
    }

    async fn client(&self, name: &str) -> WsClient {
        WsClient::connect(&self.url(name)).await.expect("connects")
    }

    /// `GET path` over a fresh connection: the status and the JSON body.
    async fn get(&self, path: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .expect("answered in time")
            .expect("read");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Stops axum (in-flight requests finish), then the runtime.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.served.await.expect("serve task").expect("served");
        self.runtime.shutdown(Duration::from_secs(5)).await;
    }
}

/// Polls `condition` until it holds, for at most five seconds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_axum_router_serves_the_socket_beside_its_json_route() {
    let app = AxumApp::start(TransportConfig::default()).await;
    let mut ada = app.client("ada").await;
    let mut bob = app.client("bob").await;

    let (ada_join, reply) = ada.join("room:lobby", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));
    // The peer address came from axum's ConnectInfo, through `peer_addr_from`.
    let peer: std::net::SocketAddr = reply.response()["peer"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("a peer address");
    assert!(peer.ip().is_loopback() && peer.port() != 0, "{peer}");
    let (_, reply) = bob.join("room:lobby", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));

    let ping = ada
        .push(&ada_join, "room:lobby", "ping", json!({"n": 1}))
        .await;
    let reply = ada.reply(&ping).await;
    assert_eq!(reply.status(), Some("ok"));
    assert_eq!(reply.response(), &json!({"n": 1}));

    let shout = ada
        .push(&ada_join, "room:lobby", "shout", json!({"text": "hi"}))
        .await;
    assert_eq!(ada.reply(&shout).await.status(), Some("ok"));
    for client in [&mut ada, &mut bob] {
        let frame = client.event("room:lobby", "shout").await;
        assert_eq!(frame.payload, json!({"from": "ada", "text": "hi"}));
    }

    // The other route, on the same port; the sockets count in the runtime's stats.
    let (status, body) = app.get("/api/stats").await;
    assert_eq!(status, 200);
    assert_eq!(body["connections"], json!(2));
    assert_eq!(app.get("/nowhere").await.0, 404);
    app.stop().await;
}

#[tokio::test]
async fn sockets_served_through_axum_are_the_runtimes() {
    // The per-id cap applies (the example's socket id is `visitor:<name>`).
    let app = AxumApp::start(TransportConfig {
        max_sockets_per_id: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(
        WsClient::upgrade_status(&app.url(""), &[]).await,
        403,
        "connect refuses a missing name"
    );
    let mut ada = app.client("ada").await;
    assert_eq!(WsClient::upgrade_status(&app.url("ada"), &[]).await, 429);
    assert_eq!(app.runtime.connection_count(), 1);

    // Runtime::shutdown closes them (clients reconnect: 1012), though axum still serves;
    // later upgrades are refused.
    assert!(app.runtime.shutdown(Duration::from_secs(5)).await);
    assert_eq!(ada.closed().await.0, 1012);
    let runtime = app.runtime.clone();
    eventually("the socket is uncounted", || {
        runtime.connection_count() == 0
    })
    .await;
    assert_eq!(WsClient::upgrade_status(&app.url("bob"), &[]).await, 503);
    assert_eq!(
        app.get("/api/stats").await.0,
        200,
        "the rest of the app is up"
    );
    app.stop().await;
}

struct Anyone;

impl Socket for Anyone {
    type Assigns = String;

    async fn connect(&self, _: &Params, _: &ConnectInfo) -> Result<String, ConnectError> {
        Ok("anyone".to_owned())
    }
}

#[tokio::test]
async fn an_invalid_topic_pattern_is_refused_when_the_mount_is_served_naming_it() {
    let runtime = Runtime::start(TransportConfig::default())
        .await
        .expect("runtime");
    let mount = || {
        SocketMount::new(Anyone)
            .channel("room:*", SyncPanic)
            .channel("room:*:chat", SyncPanic)
            .channel("*lobby", SyncPanic)
    };
    let expected = r#"invalid topic pattern "room:*:chat": `*` is allowed only at the end"#;

    let error = runtime.socket_service(mount()).expect_err("refused");
    assert_eq!(error.to_string(), expected);
    assert_eq!(error.0, "room:*:chat");
    let error = runtime
        .endpoint()
        .socket("/socket", mount())
        .err()
        .expect("refused");
    assert_eq!(error.to_string(), expected);
    // A boxed error, as an app's `main` returns it.
    let boxed: Box<dyn std::error::Error> = Box::new(error);
    assert!(boxed.to_string().contains("room:*:chat"));

    let valid = SocketMount::new(Anyone).channel("room:*", SyncPanic);
    assert!(runtime.socket_service(valid).is_ok());
    runtime.shutdown(Duration::from_secs(1)).await;
}
