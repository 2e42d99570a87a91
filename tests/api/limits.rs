//! The app's front door under load from one place: connections per client address and per
//! node, sockets per user, and a process out of file descriptors.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use fawkes::testing::WsClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::TestServer;
use crate::support::process::{Process, fawkes};

/// A TCP connection to `server` from the loopback address `from` (127.0.0.x).
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let from: IpAddr = from.parse().expect("address");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind the source address");
    socket.connect(server).await.expect("connect")
}

/// What the server sends on `stream` until it closes it (end of file or reset), within 10 s.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("closed in time");
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /health` from `from`; the whole response.
async fn health_from(from: &str, server: SocketAddr) -> String {
    let mut stream = connect_from(from, server).await;
    let _ = stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    read_until_closed(&mut stream).await
}

/// Asserts that a connection from `from` is refused: a 503 with a JSON body, then closed.
async fn assert_refused(from: &str, server: SocketAddr) {
    let mut stream = connect_from(from, server).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    let body = crate::support::raw_json_body(&answer);
    assert_eq!(body["errors"]["detail"], "too many connections", "{answer}");
}

/// Polls `/health` from `from` until it answers 200 (within 10 s).
async fn health_comes_back(from: &str, server: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = health_from(from, server).await;
        if answer.starts_with("HTTP/1.1 200") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/health never answered: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let t = TestServer::start_with(|c| c.http.max_connections_per_ip = 3).await;
    let server = t.server().local_addr();
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from("127.0.0.1", server).await);
    }
    assert_refused("127.0.0.1", server).await;
    let answer = health_from("127.0.0.2", server).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle.pop());
    health_comes_back("127.0.0.1", server).await;
}

#[tokio::test]
async fn the_node_caps_its_connections() {
    let t = TestServer::start_with(|c| {
        c.http.max_connections = 3;
        c.http.max_connections_per_ip = 0;
    })
    .await;
    let server = t.server().local_addr();
    let mut idle = Vec::new();
    for from in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        idle.push(connect_from(from, server).await);
    }
    assert_refused("127.0.0.4", server).await;
    drop(idle.pop());
    health_comes_back("127.0.0.4", server).await;
}

#[tokio::test]
async fn one_token_opens_at_most_32_sockets_by_default() {
    let t = TestServer::start().await;
    let (_, token) = t.user("many@example.com").await;
    let (_, other) = t.user("other@example.com").await;
    let mut open = Vec::new();
    for _ in 0..32 {
        open.push(t.socket(&token).await);
    }
    let url = format!(
        "{}/socket/websocket?token={token}&vsn=2.0.0",
        t.url.replace("http://", "ws://")
    );
    assert_eq!(WsClient::upgrade_status(&url, &[]).await, 429);
    let mut raw = TcpStream::connect(t.server().local_addr())
        .await
        .expect("connect");
    let request = format!(
        "GET /socket/websocket?token={token}&vsn=2.0.0 HTTP/1.1\r\nhost: x\r\n\
         connection: upgrade, close\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    raw.write_all(request.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut raw).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert_eq!(
        crate::support::raw_json_body(&answer)["errors"]["detail"],
        "too many sockets open with this socket id"
    );
    // Another user is not affected.
    let mut c = t.socket(&other).await;
    let h = c.heartbeat().await;
    c.reply(&h).await;
}

/// `fawkes` run by `sh` under an open-file limit of `nofile` (soft and hard).
fn fawkes_with_nofile(dir: &std::path::Path, nofile: u32) -> Command {
    fawkes_after(dir, &format!("ulimit -n {nofile}"))
}

/// `fawkes` run by `sh` after the shell command `setup` (e.g. `ulimit`s).
fn fawkes_after(dir: &std::path::Path, setup: &str) -> Command {
    let plain = fawkes(dir);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{setup} && exec \"$0\" \"$@\""))
        .arg(plain.get_program())
        .current_dir(dir);
    for (key, value) in plain.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
}

#[test]
fn a_process_out_of_file_descriptors_warns_once_an_interval_and_recovers() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = fawkes_with_nofile(dir.path(), 64);
    command
        .args(["--bind", "127.0.0.1:0", "--log", "info"])
        .env("FAWKES_DATABASE_POOL_SIZE", "2")
        // Above the open-file limit, so that accept runs out of descriptors.
        .env("FAWKES_HTTP__MAX_CONNECTIONS", "1000")
        .env("FAWKES_HTTP__MAX_CONNECTIONS_PER_IP", "0");
    let mut process = Process::serve(command);
    let addr = process.addr().to_owned();

    let flood: Vec<std::net::TcpStream> = (0..120)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect (the backlog takes it)"))
        .collect();
    let accept_failed = |line: &String| line.contains("accept failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process.log.iter().any(accept_failed) {
        assert!(
            Instant::now() < deadline,
            "accept never ran out of descriptors: {:#?}",
            process.log
        );
        process.next_line(Duration::from_millis(100));
    }
    // Watch the log for a while with the process still out of descriptors: a warning per
    // failed attempt would be dozens.
    let window = Instant::now() + Duration::from_secs(2);
    while Instant::now() < window {
        process.next_line(Duration::from_millis(100));
    }
    let warnings = process.log.iter().filter(|l| accept_failed(l)).count();
    assert!(
        warnings <= 2,
        "{warnings} accept warnings in about 2 s: {:#?}",
        process.log
    );

    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        if response.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/health never answered again: {response:?}; {:#?}",
            process.log
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn by_default_the_cap_keeps_accept_from_running_out_of_descriptors() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = fawkes_with_nofile(dir.path(), 64);
    command
        .args(["--bind", "127.0.0.1:0", "--log", "info"])
        .env("FAWKES_DATABASE_POOL_SIZE", "2")
        .env("FAWKES_HTTP__MAX_CONNECTIONS_PER_IP", "0");
    let mut process = Process::serve(command);
    let addr = process.addr().to_owned();
    let flood: Vec<std::net::TcpStream> = (0..120)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    // Past the cap (derived from the limit of 64), connections are answered 503 at once.
    let mut refused = std::net::TcpStream::connect(&addr).expect("connect");
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = refused.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    while process.next_line(Duration::from_millis(200)).is_some() {}
    assert!(
        process
            .log
            .iter()
            .any(|l| l.contains("connection limit reached")),
        "{:#?}",
        process.log
    );
    assert!(
        !process.log.iter().any(|l| l.contains("accept failed")),
        "{:#?}",
        process.log
    );
    drop(flood);
}

#[test]
fn the_binary_raises_its_open_file_soft_limit_to_the_hard_limit_before_deriving_the_cap() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = fawkes_after(dir.path(), "ulimit -Sn 256 && ulimit -Hn 4096");
    command
        .args(["--bind", "127.0.0.1:0", "--log", "info"])
        .env("FAWKES_DATABASE_POOL_SIZE", "2");
    let mut process = Process::serve(command);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process.log.iter().any(|l| l.contains("connection limits")) {
        assert!(Instant::now() < deadline, "{:#?}", process.log);
        process.next_line(Duration::from_millis(100));
    }
    // Derived from the raised limit: 4,096 less the reserve (64 + 3 per pooled connection),
    // not from 256.
    let limits = process
        .log
        .iter()
        .find(|l| l.contains("connection limits"))
        .expect("found above");
    assert!(limits.contains("max_connections=4026"), "{limits}");
    let raised = process
        .log
        .iter()
        .find(|l| l.contains("open-file limit"))
        .unwrap_or_else(|| panic!("the limits are logged: {:#?}", process.log));
    assert!(
        raised.contains("soft=4096") && raised.contains("hard=4096") && raised.contains("was=256"),
        "{raised}"
    );
    // The server works.
    let mut stream = std::net::TcpStream::connect(process.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
}
