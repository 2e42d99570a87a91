//! The graceful drain on a real server: at the signal the listener closes and `/ready` says
//! draining, in-flight requests finish, and the WebSockets close with 1012 one batch at a
//! time, each after the replies it was making: every `send_msg` acknowledged is in the
//! history, and nothing unacknowledged is; a socket drained later sees the presence leave of
//! one drained before it.

use std::collections::BTreeSet;
use std::time::Duration;

use fawkes::testing::WsClient;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{TestServer, eventually, raw_json_body};

/// Chat sockets streaming `send_msg` through the drain.
const SENDERS: usize = 3;
/// Messages each sender keeps in flight (sent, not yet acknowledged).
const WINDOW: usize = 8;
/// Pause between two batches (of one socket each).
const INTERVAL_MS: u64 = 300;

/// What one sender saw: the messages acknowledged `ok` (id, content), how many of them
/// after the shutdown began, and the close code.
struct Stream {
    acked: Vec<(i64, String)>,
    acked_after_signal: usize,
    close: u16,
}

/// Streams `send_msg` to `recipient` in `conv` until the server closes the socket.
async fn stream(
    mut client: WsClient,
    join_ref: String,
    recipient: i64,
    conv: i64,
    signal: tokio::sync::watch::Receiver<Option<Instant>>,
) -> Stream {
    let mut in_flight = std::collections::HashMap::new();
    let mut acked = Vec::new();
    let mut acked_after_signal = 0;
    let mut sent = 0usize;
    loop {
        while in_flight.len() < WINDOW {
            let content = format!("c{conv}m{sent}");
            let msg_ref = client
                .push(
                    &join_ref,
                    "room:chat",
                    "send_msg",
                    json!({"user": recipient, "conv": conv, "message": content}),
                )
                .await;
            in_flight.insert(msg_ref, content);
            sent += 1;
        }
        let Some(reply) = client
            .try_expect(Duration::from_secs(15), &|f| f.event == "phx_reply")
            .await
        else {
            break;
        };
        let msg_ref = reply.msg_ref.as_str().expect("ref").to_owned();
        let content = in_flight
            .remove(&msg_ref)
            .expect("a reply to a message sent");
        assert_eq!(reply.status(), Some("ok"), "{:?}", reply.response());
        let message = &reply.response()["message"];
        assert_eq!(message["content"], json!(content));
        acked.push((message["id"].as_i64().expect("id"), content));
        if signal.borrow().is_some() {
            acked_after_signal += 1;
        }
    }
    Stream {
        acked,
        acked_after_signal,
        close: client.closed().await.0,
    }
}

/// Reads one HTTP/1.1 response head and body from `stream` until the server closes it.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn a_drain_closes_sockets_in_batches_after_their_acks_and_keeps_every_acked_message() {
    let t = TestServer::start_with(|config| {
        config.shutdown.drain_batch_size = 1;
        config.shutdown.drain_interval_ms = INTERVAL_MS;
        config.shutdown.timeout_secs = 30;
    })
    .await;
    let (recipient, _) = t.user("recipient@example.com").await;

    // Oldest socket first: `first` is drained an interval before `second`, then the senders.
    let (first_id, first_token) = t.user("first@example.com").await;
    let (_, second_token) = t.user("second@example.com").await;
    let mut first = t.socket(&first_token).await;
    first.join("room:lobby", json!({})).await;
    first.event("room:lobby", "presence_state").await;
    let mut second = t.socket(&second_token).await;
    second.join("room:lobby", json!({})).await;
    let first_key = first_id.to_string();
    second
        .expect("first in second's presence", |f| {
            f.event == "presence_state" && f.payload.get(&first_key).is_some()
                || f.event == "presence_diff" && f.payload["joins"].get(&first_key).is_some()
        })
        .await;

    let (signal_tx, signal) = tokio::sync::watch::channel(None);
    let mut senders = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..SENDERS {
        let (_, token) = t.user(&format!("sender{i}@example.com")).await;
        let conv = t.conversation(&token, recipient).await;
        let mut client = t.socket(&token).await;
        let (join_ref, reply) = client.join("room:chat", json!({})).await;
        assert_eq!(reply.status(), Some("ok"));
        senders.push((
            conv,
            tokio::spawn(stream(client, join_ref, recipient, conv, signal.clone())),
        ));
        tokens.push(token);
    }

    // An HTTP request in flight (its body not sent yet), and a `/ready` whose head is
    // half-sent, when the shutdown begins.
    let server = t.server.as_ref().expect("server");
    let addr = server.local_addr();
    let body = r#"{"user":{"name":"Late","subname":"Comer","email":"late@example.com","job":"Pilot","password":"a long enough password"}}"#;
    let mut in_flight = TcpStream::connect(addr).await.expect("connect");
    in_flight
        .write_all(
            format!(
                "POST /api/v1/users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write head");
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        in_flight.read_exact(&mut byte).await.expect("100 Continue");
        interim.push(byte[0]);
    }
    let mut ready = TcpStream::connect(addr).await.expect("connect");
    ready
        .write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write half a head");
    // Let the streams run, then signal.
    tokio::time::sleep(Duration::from_millis(200)).await;

    signal_tx.send_replace(Some(Instant::now()));
    server.shutdown_token().cancel();
    ready
        .write_all(b"connection: close\r\n\r\n")
        .await
        .expect("end the head");
    let response = read_response(&mut ready).await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert_eq!(raw_json_body(&response)["status"], "draining");
    let refused = eventually(Duration::from_secs(5), || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    assert!(refused.is_some(), "new connections are refused");
    in_flight
        .write_all(body.as_bytes())
        .await
        .expect("write body");
    let response = read_response(&mut in_flight).await;
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "the request in flight finishes: {response}"
    );

    // The socket drained later sees the leave of the one drained before it.
    assert_eq!(first.closed().await.0, 1012);
    second
        .expect("first's leave", |f| {
            f.event == "presence_diff" && f.payload["leaves"].get(&first_key).is_some()
        })
        .await;
    assert_eq!(second.closed().await.0, 1012);

    let mut streams = Vec::new();
    for (conv, sender) in senders {
        streams.push((conv, sender.await.expect("sender")));
    }
    for (_, stream) in &streams {
        assert_eq!(stream.close, 1012, "drained sockets are told to come back");
    }
    let last = &streams[SENDERS - 1].1;
    assert!(
        last.acked_after_signal > 0,
        "the last socket drained kept streaming during the drain"
    );
    let mut t = t;
    let server = t.server.take().expect("server");
    tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("shutdown completes");

    // Restarted on the same database: exactly the acknowledged messages are stored (none
    // acknowledged and lost, none stored without its acknowledgement).
    let t = TestServer::start_on(t.db, t.config).await;
    for ((conv, stream), token) in streams.iter().zip(&tokens) {
        let resp = t
            .get(
                &format!("/api/v1/conversations/{conv}/messages?limit=100"),
                Some(token),
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        let mut stored = BTreeSet::new();
        let mut page: Value = resp.body;
        loop {
            for m in page["data"].as_array().expect("data") {
                stored.insert((
                    m["id"].as_i64().expect("id"),
                    m["content"].as_str().expect("content").to_owned(),
                ));
            }
            if page["meta"]["has_more"] != json!(true) {
                break;
            }
            let Some(&(before, _)) = stored.first() else {
                break;
            };
            page = t
                .get(
                    &format!("/api/v1/conversations/{conv}/messages?limit=100&before={before}"),
                    Some(token),
                )
                .await
                .body;
        }
        let acked: BTreeSet<_> = stream.acked.iter().cloned().collect();
        assert!(!acked.is_empty());
        assert_eq!(stored, acked, "conversation {conv}");
    }
}
