//! Raw HTTP and WebSocket over TCP, for tests that need bytes a real client would not send (or
//! would not send that way): requests written by hand, responses read as text, frames built
//! and parsed by hand.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long every read here waits for the server at most.
const WAIT: Duration = Duration::from_secs(5);

/// An upgrade request for `path` (a valid WebSocket handshake, no origin).
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Writes `request` on `stream` (kept open) and returns the response, head and body (as long
/// as its `content-length` says), within 5 s.
///
/// # Panics
/// If the server closes or is silent before a whole response.
pub async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
            assert!(n > 0, "closed before a whole response: {text}");
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a response in time")
}

/// `GET path` on `stream` (kept alive); the response head and body.
pub async fn get(stream: &mut TcpStream, path: &str) -> String {
    exchange(
        stream,
        format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await
}

/// The response to an upgrade request for `path` on a fresh connection (a refusal: status
/// line, headers and body).
pub async fn upgrade_response(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    exchange(&mut stream, upgrade_request(path).as_bytes()).await
}

/// Reads until the server closes `stream` (end of file or reset) and returns what it sent;
/// `None` if it is still open after `limit`.
pub async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
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
    tokio::time::timeout(limit, read).await.ok()?;
    Some(out)
}

/// Everything the server sends on a fresh connection after `request`, until it closes (within
/// 5 s).
pub async fn answer_to(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let answer = read_until_closed(&mut stream, WAIT)
        .await
        .expect("answered and closed in time");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A WebSocket connection to the test socket at `/socket/websocket?{query}`, upgraded by hand
/// (to send frames a byte at a time, or cut anywhere), read up to the end of the 101's head and
/// not a byte further.
pub async fn websocket(addr: SocketAddr, query: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = upgrade_request(&format!("/socket/websocket?{query}"));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.expect("response head"));
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A masked client frame: FIN, opcode, payload.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
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

/// A whole text frame holding `text`.
pub fn text_frame(text: &str) -> Vec<u8> {
    frame(true, 0x1, text.as_bytes())
}

/// The next server frame: opcode and payload.
pub async fn server_frame(reader: &mut (impl AsyncRead + Unpin)) -> (u8, Vec<u8>) {
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
pub async fn close_frame(reader: &mut (impl AsyncRead + Unpin)) -> (u16, String) {
    let read = async {
        loop {
            let (opcode, payload) = server_frame(reader).await;
            if opcode == 0x8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("closed within 5 s")
}

/// The next text frame from the server within 5 s, skipping pongs.
///
/// # Panics
/// On a close frame.
pub async fn next_text(reader: &mut (impl AsyncRead + Unpin)) -> String {
    let read = async {
        loop {
            match server_frame(reader).await {
                (0x1, text) => break String::from_utf8(text).expect("UTF-8"),
                (0x8, close) => panic!("closed: {close:?}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a text frame in time")
}
