//! The endpoint's front door: deadlines for request heads and idle connections, and the
//! connection cap, which WebSockets count against until they end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{HttpBody, HttpLimits, Runtime, TransportConfig};
use http_body_util::{BodyExt as _, StreamBody};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;

use crate::raw::{get, read_until_closed};
use crate::support::TestEndpoint;

fn limits(header_read_timeout: Duration, keep_alive_timeout: Duration) -> HttpLimits {
    HttpLimits {
        header_read_timeout,
        keep_alive_timeout,
        ..HttpLimits::default()
    }
}

/// Asserts a connection to `addr` is refused over the cap: a 503 with a JSON body, then closed.
async fn assert_refused(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("closed at once");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(
        answer.ends_with(r#"{"errors":{"detail":"too many connections"}}"#),
        "{answer}"
    );
}

#[tokio::test]
async fn silent_and_trickling_connections_are_closed_after_the_header_timeout() {
    let t = TestEndpoint::start_limited(
        TransportConfig::default(),
        limits(Duration::from_secs(1), Duration::from_secs(60)),
    )
    .await;
    let mut silent = TcpStream::connect(t.addr).await.expect("connect");
    let (mut trickle, mut writer) = TcpStream::connect(t.addr)
        .await
        .expect("connect")
        .into_split();
    let head = "GET /socket/websocket?user=a&vsn=2.0.0 HTTP/1.1\r\nhost: x\r\n\
                connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
                sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let trickling = tokio::spawn(async move {
        // One byte every 100 ms: the head would take about 20 s.
        for byte in head.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let limit = Duration::from_secs(5);
    let answer = read_until_closed(&mut silent, limit).await;
    assert_eq!(
        answer.as_deref(),
        Some(&[][..]),
        "the silent connection is closed, unanswered"
    );
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(limit, trickle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the trickling connection is closed: {closed:?}"
    );
    trickling.abort();

    // A client that sends its request in time is served.
    let h = WsClient::connect(&t.url("user=a&vsn=2.0.0")).await;
    assert!(h.is_ok(), "an upgrade in time works");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let t = TestEndpoint::start_limited(
        TransportConfig::default(),
        limits(Duration::from_secs(10), Duration::from_secs(1)),
    )
    .await;
    let mut stream = TcpStream::connect(t.addr).await.expect("connect");
    let first = get(&mut stream, "/nope").await;
    assert!(first.starts_with("HTTP/1.1 404"), "{first}");
    let second = get(&mut stream, "/nope").await;
    assert!(second.starts_with("HTTP/1.1 404"), "kept alive: {second}");
    let after = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(
        after.as_deref(),
        Some(&[][..]),
        "closed once idle for keep_alive_timeout"
    );
}

#[tokio::test]
async fn websockets_hold_a_connection_slot_until_they_end() {
    let t = TestEndpoint::start_limited(
        TransportConfig::default(),
        HttpLimits {
            max_connections: Some(2),
            ..HttpLimits::default()
        },
    )
    .await;
    let mut ann = t.client("ann").await;
    let mut bob = t.client("bob").await;
    assert_refused(t.addr).await;
    assert_eq!(
        t.runtime.connection_count(),
        2,
        "the refusal did not disturb them"
    );
    let h = bob.heartbeat().await;
    bob.reply(&h).await;

    ann.send(Message::Close(None)).await;
    ann.closed().await;
    let mut served = false;
    for _ in 0..250 {
        let mut stream = TcpStream::connect(t.addr).await.expect("connect");
        // Refused while the slot is taken: the write may then fail.
        let _ = stream
            .write_all(b"GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await;
        let answer = read_until_closed(&mut stream, Duration::from_secs(5))
            .await
            .expect("answered");
        if answer.starts_with(b"HTTP/1.1 404") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the WebSocket's slot came back when it ended");
}

/// An endpoint answering every request with `respond()`, under `limits`; it stops when the
/// guard is dropped.
async fn serve_with(
    respond: fn() -> http::Response<HttpBody>,
    limits: HttpLimits,
) -> (SocketAddr, tokio_util::sync::DropGuard) {
    let runtime = Runtime::start(TransportConfig::default())
        .await
        .expect("runtime");
    let service = tower::service_fn(move |_: http::Request<hyper::body::Incoming>| async move {
        Ok::<_, Infallible>(respond())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone().drop_guard();
    tokio::spawn(
        runtime
            .endpoint()
            .fallback(BoxCloneSyncService::new(service))
            .limits(limits)
            .serve(listener, shutdown.cancelled_owned(), Duration::from_secs(1)),
    );
    (addr, stop)
}

/// Chunks of the slow body below.
const CHUNKS: usize = 8;

/// A response whose body comes a chunk every 250 ms: 2 s in all.
fn slow_response() -> http::Response<HttpBody> {
    let chunks = futures_util::stream::unfold(0, |i| async move {
        if i == CHUNKS {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let chunk = Bytes::from(format!("chunk {i};"));
        Some((Ok::<_, Infallible>(http_body::Frame::data(chunk)), i + 1))
    });
    http::Response::new(
        StreamBody::new(chunks)
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
}

#[tokio::test]
async fn a_response_body_still_streaming_past_the_keep_alive_timeout_arrives_whole() {
    // The body outlasts the keep-alive timeout and the grace an idle connection gets to close
    // (1 s): the connection is not idle while it streams.
    let (addr, _stop) = serve_with(
        slow_response,
        limits(Duration::from_secs(10), Duration::from_millis(300)),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    // The connection is closed once idle after the body, not before its end.
    let answer = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("closed once idle");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    for i in 0..CHUNKS {
        assert!(
            answer.contains(&format!("chunk {i};")),
            "chunk {i} missing: {answer}"
        );
    }
    assert!(
        answer.ends_with("\r\n0\r\n\r\n"),
        "the body's end: {answer:?}"
    );
}

/// HTTP/2 only: its flow control lets a client take no data at all.
#[cfg(feature = "http2")]
#[tokio::test]
async fn an_http2_client_that_takes_no_data_does_not_hold_its_connection_open() {
    // The client advertises a zero flow-control window: the server can send the response's
    // head but never its body. The request never ends; the connection must still close once
    // the client has taken nothing for the keep-alive timeout.
    let hello = || {
        http::Response::new(
            http_body_util::Full::new(Bytes::from_static(b"hello"))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
    };
    let (addr, _stop) = serve_with(
        hello,
        limits(Duration::from_millis(500), Duration::from_millis(500)),
    )
    .await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake::<_, http_body_util::Empty<Bytes>>(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{addr}/hello"))
        .body(http_body_util::Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response head");
    assert_eq!(response.status(), 200);
    // The body is never read (and could not arrive): the server closes the connection.
    let closed = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(closed.is_ok(), "the connection is still open");
}

/// The connection preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test]
async fn http2_is_spoken_only_with_the_http2_feature() {
    let t = TestEndpoint::start().await;
    let mut stream = TcpStream::connect(t.addr).await.expect("connect");
    stream.write_all(H2_PREFACE).await.expect("write");
    if cfg!(feature = "http2") {
        // The server's preface: a SETTINGS frame (type 4) on stream 0.
        let mut head = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
            .await
            .expect("answered in time")
            .expect("a frame header");
        assert_eq!(head[3], 0x4, "{head:?}");
        assert_eq!(&head[5..], &[0, 0, 0, 0], "{head:?}");
    } else {
        // HTTP/1 alone: the preface is no request it can parse, and the connection is closed
        // without an HTTP/2 frame.
        let answer = read_until_closed(&mut stream, Duration::from_secs(5))
            .await
            .expect("closed");
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[tokio::test]
async fn serving_ends_when_its_shutdown_future_resolves() {
    let runtime = Runtime::start(TransportConfig::default())
        .await
        .expect("runtime");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(runtime.endpoint().serve(
        listener,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    // A kept-alive connection, idle when the server stops: told to close, it drains at once.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    assert!(
        get(&mut idle, "/nothing")
            .await
            .starts_with("HTTP/1.1 404 ")
    );
    let _ = stop.send(());
    let drained = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("stopped in time")
        .expect("serve task");
    assert!(drained, "every connection finished within the grace");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
    runtime.shutdown(Duration::from_secs(1)).await;
}
