//! What one client may make the server hold: names are bounded, V1 frames are objects only, an
//! oversized frame is refused with a close code the client actually reads, and one socket id
//! cannot open sockets without end.

use std::time::Duration;

use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{
    ConnectError, ConnectInfo, Params, Runtime, Socket, SocketMount, TransportConfig,
};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::raw::upgrade_response;
use crate::support::{TestEndpoint, eventually};

/// Sends one V2 frame on a fresh connection and returns how the server closed it.
async fn close_after(
    t: &TestEndpoint,
    join_ref: Value,
    msg_ref: Value,
    topic: &str,
    event: &str,
) -> (u16, String) {
    let mut c = t.client("ann").await;
    c.send_frame(join_ref, msg_ref, topic, event, json!({}))
        .await;
    c.closed().await
}

#[tokio::test]
async fn names_over_their_limits_close_with_1003_before_anything_keeps_them() {
    let t = TestEndpoint::start().await;
    let long_topic = format!("lab:{}", "x".repeat(252));
    assert_eq!(long_topic.len(), 256);
    assert_eq!(
        close_after(&t, json!("1"), json!("1"), &long_topic, "phx_join").await,
        (1003, "topic too long".to_owned())
    );
    let (event, long_ref) = ("e".repeat(65), "r".repeat(63));
    assert_eq!(
        close_after(&t, json!("1"), json!("1"), "lab:e", &event).await,
        (1003, "event too long".to_owned())
    );
    assert_eq!(
        close_after(&t, json!("1"), json!(long_ref), "lab:r", "phx_join").await,
        (1003, "ref too long".to_owned()),
        "64 bytes of JSON text at most, quotes included"
    );
    assert_eq!(
        close_after(&t, json!(long_ref), json!("1"), "lab:r", "phx_join").await,
        (1003, "join_ref too long".to_owned())
    );
    assert!(eventually(|| t.runtime.connection_count() == 0).await);
    assert!(
        t.terminations().iter().all(|(topic, _)| topic.len() <= 255),
        "the long topic was never joined: {:?}",
        t.terminations().len()
    );

    // Right at the limits everything works.
    let mut c = t.client("bob").await;
    let topic = format!("lab:{}", "x".repeat(251));
    let join_ref = "j".repeat(62);
    c.send_frame(
        json!(join_ref),
        json!(join_ref),
        &topic,
        "phx_join",
        json!({}),
    )
    .await;
    assert_eq!(c.reply(&join_ref).await.status(), Some("ok"));
    let r = c.push(&join_ref, &topic, &"e".repeat(64), json!({})).await;
    assert_eq!(c.reply(&r).await.status(), Some("error"), "unhandled event");
}

#[tokio::test]
async fn the_topic_limit_is_a_setting_and_binary_frames_obey_it() {
    let t = TestEndpoint::start_with(TransportConfig {
        max_topic_bytes: 16,
        ..Default::default()
    })
    .await;
    let mut c = t.client("ann").await;
    let (j, _) = c.join("lab:sixteen-byte", json!({})).await;
    c.push_binary(&j, "lab:seventeen-byt", "echo", b"\x01")
        .await;
    assert_eq!(c.closed().await, (1003, "topic too long".to_owned()));
}

#[tokio::test]
async fn v1_frames_must_be_objects() {
    let t = TestEndpoint::start().await;
    for frame in [
        r#"["lab:v1","phx_join",{},"1","1"]"#,
        r#"["lab:v1","phx_join",{},"1"]"#,
    ] {
        let mut c = WsClient::connect(&t.url("user=old&vsn=1.0.0"))
            .await
            .expect("connect");
        c.send(Message::Text(frame.into())).await;
        let (code, reason) = c.closed().await;
        assert_eq!(code, 1003, "{frame}: {reason}");
        assert!(reason.starts_with("malformed frame"), "{reason}");
        assert!(
            c.unmatched().is_empty(),
            "no join reply: {:?}",
            c.unmatched()
        );
    }
}

#[tokio::test]
async fn a_frame_over_the_limit_reaches_a_real_client_as_1009() {
    // The default limit (1 MiB) and a client that sends 2 MiB in one frame. Its send must not
    // fail: a server that closes with the rest of the frame unread resets the connection, and
    // a client whose send fails reports 1006 (browsers do) without reading the close frame.
    let t = TestEndpoint::start().await;
    let frame = json!([null, "1", "lab:big", "echo", {"blob": "x".repeat(2 * 1024 * 1024)}]);
    for attempt in 0..3 {
        // A small send buffer, as on a real network: the frame cannot all wait in the
        // client's kernel while the server closes (loopback would otherwise absorb it).
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_send_buffer_size(64 * 1024).expect("SO_SNDBUF");
        let stream = socket.connect(t.addr).await.expect("connect");
        let (mut ws, _) = tokio_tungstenite::client_async(t.url("user=ann&vsn=2.0.0"), stream)
            .await
            .expect("upgrade");
        let sent = ws.send(Message::Text(frame.to_string().into())).await;
        assert!(sent.is_ok(), "attempt {attempt}: the send failed: {sent:?}");
        let close = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => break frame,
                    Some(Ok(_)) => {}
                    other => panic!("attempt {attempt}: no close frame: {other:?}"),
                }
            }
        })
        .await
        .expect("closed in time")
        .expect("a close code");
        assert_eq!(
            (u16::from(close.code), close.reason.as_str()),
            (1009, "frame too large"),
            "attempt {attempt}"
        );
    }
    // The server is fine.
    let mut other = t.client("bob").await;
    let h = other.heartbeat().await;
    other.reply(&h).await;
}

/// A socket without an id (anyone may connect).
struct Anonymous;

impl Socket for Anonymous {
    type Assigns = ();

    async fn connect(&self, _: &Params, _: &ConnectInfo) -> Result<(), ConnectError> {
        Ok(())
    }
}

#[tokio::test]
async fn one_socket_id_cannot_open_sockets_without_end() {
    let t = TestEndpoint::start_with(TransportConfig {
        max_sockets_per_id: 3,
        ..Default::default()
    })
    .await;
    let mut ann = Vec::new();
    for _ in 0..3 {
        ann.push(t.client("ann").await);
    }
    let url = t.url("user=ann&vsn=2.0.0");
    assert_eq!(WsClient::upgrade_status(&url, &[]).await, 429, "the 4th");
    let refused = upgrade_response(t.addr, "/socket/websocket?user=ann&vsn=2.0.0").await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(
        refused.contains("application/json")
            && refused
                .ends_with(r#"{"errors":{"detail":"too many sockets open with this socket id"}}"#),
        "{refused}"
    );
    // Another id is not affected.
    let mut bob = t.client("bob").await;
    let h = bob.heartbeat().await;
    bob.reply(&h).await;

    // A socket that ends (here: the client closes) gives its place back.
    let mut first = ann.remove(0);
    first.send(Message::Close(None)).await;
    first.closed().await;
    let mut again = None;
    for _ in 0..100 {
        match WsClient::connect(&url).await {
            Ok(client) => {
                again = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let mut again = again.expect("a new socket is accepted once one closed");
    let h = again.heartbeat().await;
    again.reply(&h).await;
    assert_eq!(
        WsClient::upgrade_status(&url, &[]).await,
        429,
        "and the cap holds again"
    );

    // Sockets closed by the server give their place back too.
    t.runtime.pubsub().disconnect("test_socket:ann");
    for mut c in ann.into_iter().chain([again]) {
        assert_eq!(c.closed().await.0, 1001);
    }
    let mut reopened = Vec::new();
    for _ in 0..3 {
        let mut client = None;
        for _ in 0..100 {
            if let Ok(c) = WsClient::connect(&url).await {
                client = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reopened.push(client.expect("accepted again after a disconnect"));
    }
}

#[tokio::test]
async fn sockets_without_an_id_are_not_capped() {
    let runtime = Runtime::start(TransportConfig {
        max_sockets_per_id: 1,
        ..Default::default()
    })
    .await
    .expect("runtime");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(
        runtime
            .endpoint()
            .socket("/socket", SocketMount::new(Anonymous))
            .expect("no patterns")
            .serve(
                listener,
                shutdown.clone().cancelled_owned(),
                Duration::from_secs(1),
            ),
    );
    let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0");
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(WsClient::connect(&url).await.expect("no id, no cap"));
    }
    shutdown.cancel();
}
