//! What one connection may make the server hold or do: its outbound queue is bounded in bytes,
//! its frames in flight to a busy socket actor are bounded in bytes, and its messages per
//! second are limited by reading it more slowly, without losing anything.

use std::sync::Arc;
use std::time::Duration;

use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{
    Channel, ChannelContext, ChannelError, ConnectError, ConnectInfo, HandleIn, JoinOutcome,
    Params, Payload, Reply, Runtime, Socket, SocketMount, TransportConfig,
};
use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::support::{TestEndpoint, eventually};

/// Anyone may connect.
struct Anyone;

impl Socket for Anyone {
    type Assigns = ();

    async fn connect(&self, _: &Params, _: &ConnectInfo) -> Result<(), ConnectError> {
        Ok(())
    }
}

/// `wait` blocks the socket until the test adds a permit to `gate`; `echo` replies with its
/// payload.
struct Gated {
    gate: Arc<Semaphore>,
}

impl Channel for Gated {
    type Assigns = ();
    type State = ();
    type Info = ();

    async fn join(
        &self,
        _: &str,
        _: Payload,
        _: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<()>, ChannelError> {
        Ok(JoinOutcome::ok(()))
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _: &mut (),
        _: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        if event == "wait" {
            let permit = self.gate.acquire().await.map_err(|e| e.to_string())?;
            permit.forget();
        }
        Ok(HandleIn::Reply(Reply::ok_with(payload)))
    }
}

/// An endpoint serving [`Gated`] on `gated:*`.
struct GatedEndpoint {
    runtime: Runtime,
    addr: std::net::SocketAddr,
    gate: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl GatedEndpoint {
    /// `send_buffer`: the kernel send buffer of every accepted socket (default: autotuned).
    async fn start(config: TransportConfig, send_buffer: Option<u32>) -> Self {
        let runtime = Runtime::start(config).await.expect("runtime");
        let gate = Arc::new(Semaphore::new(0));
        let mount = SocketMount::new(Anyone).channel("gated:*", Gated { gate: gate.clone() });
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(bytes) = send_buffer {
            // Accepted sockets inherit it.
            socket.set_send_buffer_size(bytes).expect("SO_SNDBUF");
        }
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(64).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        tokio::spawn(
            runtime
                .endpoint()
                .socket("/socket", mount)
                .expect("valid patterns")
                .serve(
                    listener,
                    shutdown.clone().cancelled_owned(),
                    Duration::from_secs(1),
                ),
        );
        Self {
            runtime,
            addr,
            gate,
            shutdown,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/socket/websocket?vsn=2.0.0", self.addr)
    }
}

impl Drop for GatedEndpoint {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A raw client with a small receive buffer that will not read (the kernel must not absorb
/// what the server sends on its behalf).
async fn non_reader(url: &str, addr: std::net::SocketAddr) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(32 * 1024).expect("SO_RCVBUF");
    let stream = socket.connect(addr).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("upgrade");
    ws
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn send(ws: &mut Ws, frame: serde_json::Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
}

#[tokio::test]
async fn a_client_pushing_large_pings_without_reading_is_cut_off_at_the_byte_budget() {
    // Frames alone (1,024) and a write timeout longer than the test would let the queue hold
    // every reply.
    let t = GatedEndpoint::start(
        TransportConfig {
            outbound_queue_bytes: 512 * 1024,
            write_timeout: Duration::from_secs(300),
            ..Default::default()
        },
        Some(16 * 1024),
    )
    .await;
    let mut ws = non_reader(&t.url(), t.addr).await;
    send(&mut ws, json!(["1", "1", "gated:a", "phx_join", {}])).await;
    // The socket actor is kept busy while three 300 KiB pings arrive (a fourth is more than
    // the inbound window takes: the connection stops reading, so all three are in flight),
    // then answers them at once: the first reply fills the socket buffers (the client does
    // not read) and the next two wait in the queue, 600 KiB, over the 512 KiB budget.
    send(&mut ws, json!(["1", "2", "gated:a", "wait", {}])).await;
    let blob = "p".repeat(300 * 1024);
    for i in 0..4 {
        send(
            &mut ws,
            json!(["1", format!("p{i}"), "gated:a", "echo", {"blob": blob}]),
        )
        .await;
    }
    assert!(eventually(|| t.runtime.stats().inbound_window_full >= 1).await);
    t.gate.add_permits(1);
    assert!(
        eventually(|| t.runtime.stats().slow_consumer_disconnects == 1).await,
        "cut off as a slow consumer once its queue held the budget: {:?}",
        t.runtime.stats()
    );
    assert!(eventually(|| t.runtime.connection_count() == 0).await);
    // Everyone else is fine.
    let mut other = WsClient::connect(&t.url()).await.expect("connect");
    let h = other.heartbeat().await;
    other.reply(&h).await;
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_large_broadcasts_is_cut_off_at_the_byte_budget() {
    let t = TestEndpoint::start_with(TransportConfig {
        outbound_queue_bytes: 1024 * 1024,
        write_timeout: Duration::from_secs(300),
        ..Default::default()
    })
    .await;
    let mut ws = non_reader(&t.url("user=slow&vsn=2.0.0"), t.addr).await;
    send(&mut ws, json!(["1", "1", "lab:wide", "phx_join", {}])).await;
    let mut fast = t.client("fast").await;
    fast.join("lab:wide", json!({})).await;
    assert!(eventually(|| t.runtime.connection_count() == 2).await);
    // The same bytes are queued for both subscribers; each pins all of them. 40 broadcasts of
    // 256 KiB are far fewer frames than the queue takes, but more bytes than the socket
    // buffers and the 1 MiB budget hold.
    let blob = "b".repeat(256 * 1024);
    for i in 0..40 {
        t.runtime
            .pubsub()
            .broadcast("lab:wide", "wide", json!({"i": i, "blob": blob}));
        let frame = fast.event("lab:wide", "wide").await;
        assert_eq!(frame.payload["i"], i, "the reader gets everything");
    }
    assert!(
        eventually(|| t.runtime.stats().slow_consumer_disconnects == 1).await,
        "the subscriber that does not read was cut off: {:?}",
        t.runtime.stats()
    );
    assert!(eventually(|| t.runtime.connection_count() == 1).await);
    drop(ws);
}

#[tokio::test]
async fn a_subscriber_cut_off_as_a_slow_consumer_reads_its_backlog_then_1013() {
    let t = TestEndpoint::start_buffered(
        TransportConfig {
            outbound_queue: 8,
            ..Default::default()
        },
        fawkes_runtime::HttpLimits::default(),
        Some(8192),
    )
    .await;
    // Small socket buffers: a few frames fill them while the client does not read.
    let mut slow = WsClient::connect_with_receive_buffer(&t.url("user=slow&vsn=2.0.0"), 4096)
        .await
        .expect("connect");
    slow.join("lab:burst", json!({})).await;
    // A burst of 4 KB broadcasts the client does not read as they come: on this one thread,
    // the topic actor handles them before the client runs. The first are written straight to
    // the socket until its buffers are full, the next wait in the queue, and the ninth
    // waiting overflows it.
    let blob = "b".repeat(4000);
    let sent = 100;
    for i in 0..sent {
        t.runtime
            .pubsub()
            .broadcast("lab:burst", "burst", json!({"i": i, "blob": blob}));
    }
    // Now it reads (within the 200 ms a cut-off client gets): what the socket and the queue
    // held before the cut, in order, then the code.
    let (code, reason) = slow.closed().await;
    assert_eq!((code, reason.as_str()), (1013, "slow consumer"));
    let backlog: Vec<Value> = slow
        .unmatched()
        .iter()
        .filter(|frame| frame.event == "burst")
        .map(|frame| frame.payload["i"].clone())
        .collect();
    let expected: Vec<Value> = (0..backlog.len()).map(|i| json!(i)).collect();
    assert_eq!(backlog, expected, "a prefix of the burst, in order");
    // What the socket's buffers took, then the 8 the queue held at the cut: never the whole
    // burst.
    assert!(
        (8..sent).contains(&backlog.len()),
        "the socket's share and the 8 queued frames: {}",
        backlog.len()
    );
    assert_eq!(t.runtime.stats().slow_consumer_disconnects, 1);
}

#[tokio::test]
async fn frames_in_flight_to_a_busy_socket_are_bounded_in_bytes_and_none_is_lost() {
    let t = GatedEndpoint::start(TransportConfig::default(), None).await;
    let mut c = WsClient::connect(&t.url()).await.expect("connect");
    let (j, _) = c.join("gated:a", json!({})).await;
    let w = c.push(&j, "gated:a", "wait", json!({})).await;
    // The socket is busy with `wait`. Four frames of 400 KiB are far fewer than 32 frames,
    // but more than the window's 1 MiB: the connection stops reading at the third.
    let blob = "y".repeat(400 * 1024);
    let mut refs = Vec::new();
    for i in 0..4 {
        refs.push(
            c.push(&j, "gated:a", "echo", json!({"i": i, "blob": blob}))
                .await,
        );
    }
    assert!(
        eventually(|| t.runtime.stats().inbound_window_full >= 1).await,
        "the connection stopped reading: {:?}",
        t.runtime.stats()
    );
    t.gate.add_permits(1);
    assert_eq!(c.reply(&w).await.status(), Some("ok"));
    for (i, r) in refs.iter().enumerate() {
        let reply = c.reply(r).await;
        assert_eq!(reply.response()["i"], i, "in order, none lost");
        assert_eq!(
            reply.response()["blob"].as_str().map(str::len),
            Some(blob.len())
        );
    }
}

#[tokio::test]
async fn a_client_over_its_message_rate_is_read_more_slowly_and_loses_nothing() {
    let t = TestEndpoint::start_with(TransportConfig {
        max_messages_per_second: 50,
        max_messages_burst: 5,
        ..Default::default()
    })
    .await;
    let mut c = t.client("ann").await;
    let (j, _) = c.join("lab:rate", json!({})).await;
    assert_eq!(
        t.runtime.stats().rate_limited,
        0,
        "the join was within the burst"
    );
    // Pipelined, far over the burst: pushes and heartbeats.
    let mut pushes = Vec::new();
    let mut heartbeats = Vec::new();
    for i in 0..40 {
        if i % 4 == 0 {
            heartbeats.push(c.heartbeat().await);
        } else {
            pushes.push((i, c.push(&j, "lab:rate", "echo", json!({"i": i})).await));
        }
    }
    for (i, r) in pushes {
        assert_eq!(c.reply(&r).await.response()["i"], i, "every push answered");
    }
    for h in heartbeats {
        assert_eq!(
            c.reply(&h).await.status(),
            Some("ok"),
            "every heartbeat answered"
        );
    }
    let throttled = t.runtime.stats().rate_limited;
    assert!(throttled > 0, "the server held the client back");

    // Heartbeats alone count too.
    let heartbeats: Vec<String> = {
        let mut refs = Vec::new();
        for _ in 0..20 {
            refs.push(c.heartbeat().await);
        }
        refs
    };
    for h in heartbeats {
        c.reply(&h).await;
    }
    assert!(t.runtime.stats().rate_limited > throttled);
    // A connection over its rate is slowed down, not closed.
    assert_eq!(t.runtime.connection_count(), 1);
    assert_eq!(t.runtime.stats().slow_consumer_disconnects, 0);
}
