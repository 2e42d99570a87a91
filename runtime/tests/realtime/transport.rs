//! The WebSocket transport: handshake checks, serializers, limits and close codes.

use std::time::Duration;

use base64::Engine as _;
use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{CheckOrigin, OriginPattern, TransportConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::support::{TestEndpoint, eventually};

#[tokio::test]
async fn connect_refusals_are_http_statuses_before_the_upgrade() {
    let t = TestEndpoint::start().await;
    assert_eq!(
        WsClient::upgrade_status(&t.url("vsn=2.0.0"), &[]).await,
        403,
        "connect refused"
    );
    assert_eq!(
        WsClient::upgrade_status(&t.url("user=a&refuse=401&vsn=2.0.0"), &[]).await,
        401,
        "custom status"
    );
    for vsn in ["3.0.0", "2.1.0", "abc", ""] {
        assert_eq!(
            WsClient::upgrade_status(&t.url(&format!("user=a&vsn={vsn}")), &[]).await,
            403,
            "vsn {vsn:?}"
        );
    }
    assert_eq!(
        WsClient::upgrade_status(&t.url("user=a&vsn=2.0.0"), &[]).await,
        101
    );
    let wrong_path = format!("ws://{}/socket/nope?user=a", t.addr);
    assert_eq!(WsClient::upgrade_status(&wrong_path, &[]).await, 404);

    // A plain POST to the socket path is not an upgrade.
    let response = raw(t.addr, "POST /socket/websocket HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let response = raw(
        t.addr,
        "GET /socket/websocket?user=a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "missing upgrade headers: {response}"
    );
}

async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
        .await
        .expect("in time")
        .expect("read");
    out
}

#[tokio::test]
async fn the_auth_token_subprotocol_is_decoded_and_answered_with_phoenix() {
    let t = TestEndpoint::start().await;
    let token = base64::engine::general_purpose::STANDARD_NO_PAD.encode("s3cr3t?");
    let protocols = format!("phoenix, base64url.bearer.phx.{token}");
    let mut c = WsClient::connect_with(
        &t.url("vsn=2.0.0"),
        &[("sec-websocket-protocol", &protocols)],
    )
    .await
    .expect("the client accepts the server's `phoenix` answer");
    c.send_frame(
        json!("1"),
        json!("1"),
        "lab:t",
        "phx_join",
        json!({"push_on_join": true}),
    )
    .await;
    assert_eq!(
        c.event("lab:t", "welcome").await.payload,
        json!({"user": "token:s3cr3t?"})
    );

    let refused = WsClient::upgrade_status(
        &t.url("user=a&vsn=2.0.0"),
        &[("sec-websocket-protocol", "graphql-ws")],
    )
    .await;
    assert_eq!(refused, 403, "no phoenix subprotocol offered");
    let refused = WsClient::upgrade_status(
        &t.url("vsn=2.0.0"),
        &[(
            "sec-websocket-protocol",
            "phoenix, base64url.bearer.phx.!!!",
        )],
    )
    .await;
    assert_eq!(refused, 403, "undecodable token");
}

#[tokio::test]
async fn origins_are_checked() {
    let t = TestEndpoint::start().await;
    let url = t.url("user=a&vsn=2.0.0");
    let same = format!("http://127.0.0.1:{}", t.addr.port() + 1);
    assert_eq!(
        WsClient::upgrade_status(&url, &[("origin", &same)]).await,
        101,
        "same host, any port"
    );
    assert_eq!(
        WsClient::upgrade_status(&url, &[("origin", "http://evil.example")]).await,
        403
    );
    assert_eq!(
        WsClient::upgrade_status(&url, &[]).await,
        101,
        "no Origin header"
    );

    let listed = TransportConfig {
        check_origin: CheckOrigin::List(vec![
            OriginPattern::parse("//*.example.com").expect("pattern"),
        ]),
        ..Default::default()
    };
    let t = TestEndpoint::start_with(listed).await;
    let url = t.url("user=a&vsn=2.0.0");
    assert_eq!(
        WsClient::upgrade_status(&url, &[("origin", "https://app.example.com")]).await,
        101
    );
    assert_eq!(
        WsClient::upgrade_status(&url, &[("origin", "https://example.com:8443")]).await,
        101
    );
    assert_eq!(
        WsClient::upgrade_status(&url, &[("origin", "https://example.org")]).await,
        403
    );
}

#[tokio::test]
async fn binary_payloads_round_trip_as_binary_frames() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (j, _) = c.join("lab:bin", json!({})).await;
    let bytes = [0u8, 1, 2, 0xfa, 0xff];
    let r = c.push_binary(&j, "lab:bin", "echo", &bytes).await;
    let reply = c.reply(&r).await;
    assert_eq!(reply.status(), Some("ok"));
    assert_eq!(reply.join_ref, json!(j));
    assert_eq!(
        reply.binary.as_deref(),
        Some(&bytes[..]),
        "binary reply frame with the same bytes"
    );

    // A binary broadcast reaches V2 subscribers as a binary broadcast frame.
    t.runtime.pubsub().broadcast(
        "lab:bin",
        "blob",
        fawkes_runtime::Payload::Binary(bytes.to_vec().into()),
    );
    let blob = c.event("lab:bin", "blob").await;
    assert_eq!(
        (blob.join_ref, blob.binary.as_deref()),
        (Value::Null, Some(&bytes[..]))
    );
}

#[tokio::test]
async fn v1_object_frames_work_with_vsn_1_or_without_vsn() {
    let t = TestEndpoint::start().await;
    for query in ["user=old&vsn=1.0.0", "user=old"] {
        let mut c = WsClient::connect(&t.url(query)).await.expect("connect");
        let frame = |v: Value| Message::Text(v.to_string().into());
        c.send(frame(json!({"topic": "lab:v1", "event": "phx_join", "payload": {}, "ref": "1", "join_ref": "1"}))).await;
        let reply = c.reply("1").await;
        assert_eq!(
            reply.payload,
            json!({"status": "ok", "response": {"joined": "lab:v1"}}),
            "{query}"
        );
        c.send(frame(
            json!({"topic": "lab:v1", "event": "echo", "payload": {"v": 1}, "ref": "2"}),
        ))
        .await;
        assert_eq!(c.reply("2").await.response(), &json!({"v": 1}));
        c.send(frame(
            json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "3"}),
        ))
        .await;
        assert_eq!(c.reply("3").await.topic, "phoenix");
        // V1 has no binary frames: one closes the connection as malformed.
        c.send(Message::Binary(vec![0u8, 0, 0, 0, 0].into())).await;
        assert_eq!(c.closed().await.0, 1003);
    }
}

#[tokio::test]
async fn malformed_frames_close_with_1003_and_invalid_utf8_with_1007() {
    let t = TestEndpoint::start().await;
    for bad in [
        "this is not json",
        "[1,2,3]",
        r#"{"topic":"t"}"#,
        r#"[null,null,5,"e",{}]"#,
    ] {
        let mut c = t.client("ann").await;
        c.send(Message::Text(bad.into())).await;
        let (code, reason) = c.closed().await;
        assert_eq!(code, 1003, "{bad}: {reason}");
        assert!(reason.starts_with("malformed frame"), "{reason}");
    }
    let mut c = t.client("ann").await;
    c.send(Message::Binary(vec![9u8, 0, 0].into())).await;
    assert_eq!(c.closed().await.0, 1003, "unknown binary kind");

    let mut c = t.client("ann").await;
    let frame = Frame::message(vec![b'[', 0xff, 0xfe, b']'], OpCode::Data(Data::Text), true);
    c.send(Message::Frame(frame)).await;
    assert_eq!(c.closed().await.0, 1007);
}

#[tokio::test]
async fn frames_over_the_limit_close_with_1009() {
    let t = TestEndpoint::start_with(TransportConfig {
        max_frame_bytes: 1024,
        ..Default::default()
    })
    .await;
    let mut c = t.client("ann").await;
    let (j, _) = c.join("lab:big", json!({})).await;
    let r = c
        .push(&j, "lab:big", "echo", json!({"fits": "x".repeat(500)}))
        .await;
    c.reply(&r).await;
    c.push(&j, "lab:big", "echo", json!({"too": "x".repeat(2000)}))
        .await;
    assert_eq!(c.closed().await.0, 1009);
    // Other connections are fine.
    let mut other = t.client("bob").await;
    let h = other.heartbeat().await;
    other.reply(&h).await;
}

#[tokio::test]
async fn idle_connections_are_closed_with_a_code_that_makes_clients_reconnect() {
    let t = TestEndpoint::start_with(TransportConfig {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let mut c = t.client("ann").await;
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    assert_ne!(code, 1000, "1000 would stop phoenix.js from reconnecting");
}

#[tokio::test]
async fn disconnect_by_socket_id_closes_every_socket_with_that_id() {
    let t = TestEndpoint::start().await;
    let mut ann1 = t.client("ann").await;
    let mut ann2 = t.client("ann").await;
    let mut bob = t.client("bob").await;
    let (j, _) = ann1.join("lab:x", json!({})).await;
    assert_eq!(t.runtime.connection_count(), 3);
    t.runtime.pubsub().disconnect("test_socket:ann");
    assert_eq!(ann1.closed().await, (1001, "disconnected".to_owned()));
    assert_eq!(ann2.closed().await.0, 1001);
    let h = bob.heartbeat().await;
    bob.reply(&h).await;
    assert!(eventually(|| t.runtime.connection_count() == 1).await);
    // Any other event on the id topic is ignored.
    t.runtime
        .pubsub()
        .broadcast("test_socket:bob", "something", json!({}));
    let h = bob.heartbeat().await;
    bob.reply(&h).await;
    let _ = j;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_without_slowing_the_others() {
    let t = TestEndpoint::start_with(TransportConfig {
        outbound_queue: 8,
        write_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let mut slow = t.client("slow").await;
    let mut fast = t.client("fast").await;
    slow.join("lab:flood", json!({})).await;
    fast.join("lab:flood", json!({})).await;
    // `slow` never reads again. Far more than its queue and the socket buffers can hold.
    let blob = "x".repeat(64 * 1024);
    let total = 400;
    let reader = tokio::spawn(async move {
        for i in 0..total {
            let frame = fast.event("lab:flood", "flood").await;
            assert_eq!(frame.payload["i"], i, "in order, none lost");
        }
        fast
    });
    for i in 0..total {
        t.runtime
            .pubsub()
            .broadcast("lab:flood", "flood", json!({"i": i, "blob": blob}));
        tokio::task::yield_now().await;
    }
    let mut fast = reader.await.expect("the fast client got everything");
    assert!(
        eventually(|| t.runtime.connection_count() == 1).await,
        "the slow client was disconnected"
    );
    let h = fast.heartbeat().await;
    fast.reply(&h).await;
    drop(slow);
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1012() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    c.join("lab:s", json!({})).await;
    let runtime = t.runtime.clone();
    let drained = tokio::spawn(async move { runtime.shutdown(Duration::from_secs(5)).await });
    assert_eq!(c.closed().await, (1012, "server shutting down".to_owned()));
    assert!(drained.await.expect("join"), "every connection finished");
    let closed = || {
        t.terminations()
            .iter()
            .any(|(topic, r)| topic == "lab:s" && *r == fawkes_runtime::StopReason::Closed)
    };
    assert!(
        eventually(closed).await,
        "the channel got terminate(Closed)"
    );
}

#[tokio::test]
async fn a_vsn_that_is_not_a_string_is_refused() {
    let t = TestEndpoint::start().await;
    assert_eq!(
        WsClient::upgrade_status(&t.url("user=a&vsn[]=2.0.0"), &[]).await,
        403
    );
}

#[tokio::test]
async fn large_messages_are_written_as_fragments_and_arrive_whole() {
    let t = TestEndpoint::start().await;
    let mut c = t.client("ann").await;
    let (j, _) = c.join("lab:large", json!({})).await;
    // Multi-byte characters straddle the fragment boundaries.
    let text = "ünïcødé ✓ ".repeat(20_000);
    let r = c.push(&j, "lab:large", "echo", json!({"text": text})).await;
    assert_eq!(
        c.reply(&r).await.response()["text"].as_str(),
        Some(text.as_str())
    );
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = c.push_binary(&j, "lab:large", "echo", &bytes).await;
    assert_eq!(c.reply(&r).await.binary.as_deref(), Some(&bytes[..]));
}
