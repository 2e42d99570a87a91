//! What a client may keep half-sent: a WebSocket message whose first byte arrived must be
//! complete within `message_timeout` (trickling bytes or pinging between fragments does not
//! keep it alive), and an HTTP/1 request head is at most 64 KiB.

use std::net::SocketAddr;
use std::time::Duration;

use fawkes::runtime::TransportConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::support::TestEndpoint;

/// A WebSocket connection upgraded by hand, to send frames a byte at a time.
async fn raw_socket(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = "GET /socket/websocket?user=ann&vsn=2.0.0 HTTP/1.1\r\nhost: x\r\n\
                   connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
                   sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("write");
    // Up to the end of the response head, not a byte further.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.expect("response head"));
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&u16::try_from(n).expect("short").to_be_bytes());
        }
    }
    let mask = [7, 1, 4, 2];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The next server frame: opcode and payload.
async fn server_frame(reader: &mut OwnedReadHalf) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await.expect("a frame");
    let len = match head[1] & 0x7F {
        126 => u64::from(reader.read_u16().await.expect("length")),
        127 => reader.read_u64().await.expect("length"),
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).expect("length")];
    reader.read_exact(&mut payload).await.expect("payload");
    (head[0] & 0x0F, payload)
}

/// The code and reason of the server's close frame, within 5 s (other frames are skipped).
async fn close_frame(reader: &mut OwnedReadHalf) -> (u16, String) {
    let read = async {
        loop {
            let (opcode, payload) = server_frame(reader).await;
            if opcode == 0x8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("closed within 5 s")
}

fn with_message_timeout() -> TransportConfig {
    // The idle timeout (60 s) alone would not close these connections during the test.
    TransportConfig {
        message_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_message_trickled_a_byte_at_a_time_is_closed_with_1008() {
    let t = TestEndpoint::start_with(with_message_timeout()).await;
    let (mut reader, mut writer) = raw_socket(t.addr).await.into_split();
    let whole = frame(true, 0x1, &[b' '; 100]);
    writer.write_all(&whole[..10]).await.expect("write");
    // One more byte every 200 ms: the message would take 18 s to arrive.
    let trickle = tokio::spawn(async move {
        for byte in &whole[10..] {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
    });
    assert_eq!(
        close_frame(&mut reader).await,
        (1008, "message too slow".to_owned())
    );
    trickle.abort();
}

#[tokio::test]
async fn pings_between_the_fragments_of_a_message_do_not_keep_it_alive() {
    let t = TestEndpoint::start_with(with_message_timeout()).await;
    let (mut reader, mut writer) = raw_socket(t.addr).await.into_split();
    // The first fragment of a text message, then only pings (each a whole message, which the
    // idle timeout counts).
    writer
        .write_all(&frame(false, 0x1, br#"[null,"1","#))
        .await
        .expect("write");
    let pings = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(&frame(true, 0x9, b"k")).await.is_err() {
                break;
            }
        }
    });
    assert_eq!(
        close_frame(&mut reader).await,
        (1008, "message too slow".to_owned())
    );
    pings.abort();
}

#[tokio::test]
async fn pings_alone_and_a_message_that_arrives_in_time_are_fine() {
    let t = TestEndpoint::start_with(with_message_timeout()).await;
    let (mut reader, mut writer) = raw_socket(t.addr).await.into_split();
    // Pings for longer than the message timeout: each is a whole message.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .write_all(&frame(true, 0x9, b"k"))
            .await
            .expect("ping");
    }
    // A heartbeat in two parts, well within the timeout.
    let heartbeat = frame(true, 0x1, br#"[null,"hb","phoenix","heartbeat",{}]"#);
    writer.write_all(&heartbeat[..12]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.write_all(&heartbeat[12..]).await.expect("write");
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match server_frame(&mut reader).await {
                (0x1, text) => break String::from_utf8(text).expect("UTF-8"),
                (0x8, close) => panic!("closed: {close:?}"),
                _ => {} // pongs
            }
        }
    })
    .await
    .expect("a reply in time");
    assert!(
        reply.contains(r#""hb""#) && reply.contains("phx_reply"),
        "{reply}"
    );
}

/// Everything the server sends on a fresh connection after `request`, until it closes.
async fn answer_to(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("answered and closed in time");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_request_head_over_64_kib_is_refused_with_431() {
    let t = TestEndpoint::start().await;
    let big = "a".repeat(100 * 1024);
    let refused = answer_to(
        t.addr,
        format!("GET /nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {big}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 431 "), "{refused:?}");
    // A large head under the limit is served.
    let fine = "a".repeat(32 * 1024);
    let served = answer_to(
        t.addr,
        format!("GET /nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {fine}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(served.starts_with("HTTP/1.1 404 "), "{served:?}");
}
