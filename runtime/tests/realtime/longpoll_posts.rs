//! LongPoll POSTs: the body's bound, the frame limit per line, the line count, the message
//! rate, one POST in flight, and a client gone mid-body (each refusal ends the session).

use std::time::Duration;

use fawkes_runtime::TransportConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::longpoll::{Conn, config, heartbeat, join, open, request};
use super::support::{TestEndpoint, eventually};

/// Frames of at most 1 KiB: the body bound is then its floor, 1 MiB.
async fn small_frames() -> TestEndpoint {
    TestEndpoint::start_with(TransportConfig {
        max_frame_bytes: 1024,
        ..config()
    })
    .await
}

/// Whether the session is gone: a POST to it answers 410.
async fn gone(t: &TestEndpoint, token: &str) -> bool {
    let (_, posted) = request(t, "POST", &format!("token={token}"), Some(heartbeat(0))).await;
    posted == json!({"status": 410})
}

#[tokio::test]
async fn a_body_over_the_bound_is_refused_as_it_streams_in() {
    let t = small_frames().await;
    let token = open(&t, "bea").await;
    // The head announces 100 MiB; one byte over the 1 MiB bound is sent (all of it read, so
    // the server's close is clean), and the answer comes then.
    let mut stream = TcpStream::connect(t.addr).await.expect("connect");
    let head = format!(
        "POST /socket/longpoll?token={token} HTTP/1.1\r\nhost: {}\r\n\
         content-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n",
        t.addr,
        100 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..16 {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = write.write_all(b"x").await;
        write
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = read.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed without an answer: {answer:?}");
            answer.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&answer).contains(r#"{"status":413}"#) {
                break;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "413 before the body's end: {}",
        String::from_utf8_lossy(&answer)
    );
    drop(writer.await);
    assert!(gone(&t, &token).await, "the session ended, as a 1009 would");
}

#[tokio::test]
async fn a_line_over_the_frame_limit_is_413_and_more_than_100_lines_400() {
    let t = small_frames().await;
    let token = open(&t, "cal").await;
    let query = format!("token={token}");
    let long = json!([null, "1", "lab:x", "echo", {"pad": "x".repeat(2000)}]).to_string();
    let (_, posted) = request(&t, "POST", &query, Some(long)).await;
    assert_eq!(
        posted,
        json!({"status": 413}),
        "a 2 KB line, frames of 1 KiB"
    );
    assert!(gone(&t, &token).await);

    let token = open(&t, "cal").await;
    let lines: Vec<String> = (0..101).map(heartbeat).collect();
    let (_, posted) = request(
        &t,
        "POST",
        &format!("token={token}"),
        Some(lines.join("\n")),
    )
    .await;
    assert_eq!(posted, json!({"status": 400}), "101 lines");
    assert!(gone(&t, &token).await);

    let token = open(&t, "cal").await;
    let lines: Vec<String> = (0..100).map(heartbeat).collect();
    let (_, posted) = request(
        &t,
        "POST",
        &format!("token={token}"),
        Some(lines.join("\n")),
    )
    .await;
    assert_eq!(posted, json!({"status": 200}), "100 lines");
}

#[tokio::test]
async fn the_message_rate_applies_to_posted_lines_and_a_408_ends_the_session() {
    let t = TestEndpoint::start_with(TransportConfig {
        max_messages_per_second: 1,
        max_messages_burst: 3,
        ..config()
    })
    .await;
    let token = open(&t, "rae").await;
    assert_eq!(join(&t, &token, "lab:rae", json!({})).await, "ok");
    // The join took one of the three; at most three lines fit, the fourth would wait about a
    // second, past the 300 ms window.
    let lines: Vec<String> = (1..=4).map(heartbeat).collect();
    let query = format!("token={token}");
    let (_, posted) = request(&t, "POST", &query, Some(lines.join("\n"))).await;
    assert_eq!(posted, json!({"status": 408}));
    assert!(t.runtime.stats().rate_limited >= 1);
    // phoenix.js answers the 408 by reconnecting: the session ends at once.
    let (_, polled) = request(&t, "GET", &query, None).await;
    assert_eq!(polled, json!({"status": 410}));
    assert!(eventually(|| t.runtime.stats().connections == 0).await);
    assert!(eventually(|| terminated(&t, "lab:rae")).await);
}

#[tokio::test]
async fn one_window_covers_the_body_and_the_lines() {
    let window = Duration::from_millis(1500);
    let t = TestEndpoint::start_with(TransportConfig {
        max_messages_per_second: 1,
        max_messages_burst: 1,
        longpoll_window: window,
        ..config()
    })
    .await;
    let token = open(&t, "una").await;
    // The body comes in over 800 ms (within the window); its second line then waits about a
    // second for the rate (within a window too, but not within what is left of it).
    let mut stream = TcpStream::connect(t.addr).await.expect("connect");
    let body = [heartbeat(1), heartbeat(2)].join("\n");
    let head = format!(
        "POST /socket/longpoll?token={token} HTTP/1.1\r\nhost: {}\r\n\
         content-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n",
        t.addr,
        body.len()
    );
    let (first, rest) = body.split_at(10);
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(first.as_bytes()).await.expect("a part");
    // A slow client, not a wait for an event.
    tokio::time::sleep(window * 8 / 15).await;
    stream.write_all(rest.as_bytes()).await.expect("the rest");
    assert_eq!(answer(&mut stream).await, json!({"status": 408}));
    assert!(gone(&t, &token).await, "a 408 ends the session");
}

/// The JSON body of the HTTP/1.1 response read from `stream`.
async fn answer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> serde_json::Value {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if let Some((_, body)) = text.split_once("\r\n\r\n")
                && let Ok(json) = serde_json::from_str(body)
            {
                return json;
            }
            assert!(n > 0, "closed without an answer: {text}");
        }
    });
    read.await.expect("an answer in time")
}

#[tokio::test]
async fn a_second_post_in_flight_is_refused_and_ends_the_session() {
    let t = TestEndpoint::start_with(TransportConfig {
        max_messages_per_second: 1,
        max_messages_burst: 1,
        longpoll_window: Duration::from_secs(5),
        ..config()
    })
    .await;
    let token = open(&t, "sid").await;
    let query = format!("token={token}");
    // The second line waits about a second for the rate: the POST is in flight meanwhile.
    let body = [heartbeat(1), heartbeat(2)].join("\n");
    let first = tokio::spawn({
        let (addr, query) = (t.addr, query.clone());
        async move {
            let mut conn = Conn::connect(addr).await;
            conn.send("POST", &query, &[], Some(body)).await
        }
    });
    assert!(eventually(|| t.runtime.stats().rate_limited >= 1).await);
    let (_, second) = request(&t, "POST", &query, Some(heartbeat(3))).await;
    assert_eq!(second, json!({"status": 409}), "one POST in flight");
    // Only a client that is not phoenix.js sends two; it is not served further.
    let (_, first) = first.await.expect("the first POST");
    assert_eq!(first, json!({"status": 410}), "the session ended");
    assert!(eventually(|| t.runtime.stats().connections == 0).await);
}

#[tokio::test]
async fn a_client_gone_mid_post_ends_its_session() {
    let t = start_slow_posts().await;
    let token = open(&t, "gus").await;
    let query = format!("token={token}");
    let mut stream = TcpStream::connect(t.addr).await.expect("connect");
    let head = format!(
        "POST /socket/longpoll?{query} HTTP/1.1\r\nhost: {}\r\n\
         content-type: application/x-ndjson\r\ncontent-length: 1000\r\n\
         expect: 100-continue\r\n\r\n",
        t.addr
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    // `100 Continue` comes when the server starts reading the body: the POST is in flight.
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let continued = tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&seen).contains("100 Continue") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    });
    continued.await.expect("100 Continue in time");
    stream.write_all(b"[null,").await.expect("a part");
    // The client goes (its FIN mid-body). The server's answer, which nobody would read,
    // tells that it is done with the POST.
    let (mut read, write) = stream.into_split();
    drop(write);
    assert_eq!(answer(&mut read).await, json!({"status": 400}));
    // phoenix.js reconnects on a POST that got no answer: the session must not stay joined
    // beside the new one.
    assert!(eventually(|| t.runtime.stats().connections == 0).await);
    let (_, after) = request(&t, "POST", &query, Some(heartbeat(2))).await;
    assert_eq!(after, json!({"status": 410}), "the session ended");
}

/// A long window: a half-sent POST stays in flight for the whole test.
async fn start_slow_posts() -> TestEndpoint {
    TestEndpoint::start_with(TransportConfig {
        longpoll_window: Duration::from_secs(8),
        ..config()
    })
    .await
}

fn terminated(t: &TestEndpoint, topic: &str) -> bool {
    t.terminations().iter().any(|(seen, _)| seen == topic)
}
