//! The runtime's metrics, scraped from a Prometheus recorder after real traffic on a real
//! endpoint. Its own test binary: the recorder is global to the process, and this one test
//! function is the only code recording into it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{
    Adapter, Channel, ChannelContext, ChannelError, ClusterConfig, ConnectError, ConnectInfo,
    HandleIn, HttpLimits, JoinOutcome, MemoryBus, Params, Payload, Reply, Runtime, RuntimeConfig,
    Socket, SocketMount, StopReason, TransportConfig,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Accepts `?user=NAME` (socket id `user:NAME`); refuses without.
struct Users;

impl Socket for Users {
    type Assigns = String;

    async fn connect(&self, params: &Params, _: &ConnectInfo) -> Result<String, ConnectError> {
        params
            .get("user")
            .map(str::to_owned)
            .ok_or_else(ConnectError::forbidden)
    }

    fn id(&self, user: &String) -> Option<String> {
        Some(format!("user:{user}"))
    }
}

/// Joins unless asked to refuse (`{"refuse": true}`) or panic (`{"panic": true}`); tracks its
/// user with `{"track": true}`; `{"panic_on_leave": true}` makes its `terminate` panic.
/// `echo` replies, `boom` fails.
struct Room;

impl Channel for Room {
    type Assigns = String;
    /// Whether `terminate` panics.
    type State = bool;
    type Info = ();

    async fn join(
        &self,
        _: &str,
        payload: Payload,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<bool>, ChannelError> {
        let p = payload.as_json().cloned().unwrap_or_default();
        assert!(p["panic"] != true, "join exploded");
        if p["refuse"] == true {
            return Ok(JoinOutcome::Refused(json!({ "reason": "no" })));
        }
        if p["track"] == true {
            let user = ctx.assigns().clone();
            ctx.track(&user, json!({})).await?;
        }
        Ok(JoinOutcome::ok(p["panic_on_leave"] == true))
    }

    async fn terminate(&self, _: &StopReason, panics: &mut bool, _: &mut ChannelContext<Self>) {
        assert!(!*panics, "terminate exploded");
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _: &mut bool,
        _: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        match event {
            "boom" => Err("boom".into()),
            _ => Ok(HandleIn::Reply(Reply::ok_with(payload))),
        }
    }
}

/// One series of a scrape: its name and labels.
type Series = (String, BTreeMap<String, String>);

/// Parses the Prometheus text format into series → value.
fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut all = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once('=').expect("label=value");
                        (key.to_owned(), value.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        all.insert((name, labels), value.parse().expect("a number"));
    }
    all
}

/// A scrape, as an application serving `/metrics` renders it.
struct Scrape {
    handle: PrometheusHandle,
    runtime: Runtime,
}

impl Scrape {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.runtime.record_gauges();
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(&self.handle.render())
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Waits (with a deadline) until `name{labels}` is `expected`.
    async fn wait_for(&self, name: &str, labels: &[(&str, &str)], expected: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.value(name, labels);
            if value == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}{labels:?} is {value}, expected {expected}\n{}",
                self.handle.render()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn serve(runtime: &Runtime, limits: HttpLimits, stop: &CancellationToken) -> String {
    // Small kernel send buffers (accepted sockets inherit them): a client that does not read
    // fills them after a few frames.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_send_buffer_size(8192).expect("SO_SNDBUF");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let listener = socket.listen(64).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mount = SocketMount::new(Users).channel("room:*", Room);
    tokio::spawn(
        runtime
            .endpoint()
            .socket("/socket", mount)
            .expect("valid patterns")
            .limits(limits)
            .serve(
                listener,
                stop.clone().cancelled_owned(),
                Duration::from_secs(1),
            ),
    );
    format!("ws://{addr}/socket/websocket?vsn=2.0.0")
}

const ROOM: &[(&str, &str)] = &[("pattern", "room:*")];

/// The connection metrics of WebSockets, and of LongPoll sessions.
const WS: &[(&str, &str)] = &[("transport", "websocket")];
const LP: &[(&str, &str)] = &[("transport", "longpoll")];

/// A LongPoll request to the endpoint at `url` (as [`serve`] returns it): the JSON body.
async fn longpoll(url: &str, method: &str, query: &str, body: Option<&str>) -> serde_json::Value {
    use http_body_util::BodyExt as _;
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("an address");
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(format!("/socket/longpoll?{query}"))
        .header("host", addr)
        .header("content-type", "application/x-ndjson")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.unwrap_or_default().to_owned(),
        )))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("JSON")
}

fn outcome(outcome: &'static str) -> [(&'static str, &'static str); 2] {
    [("pattern", "room:*"), ("outcome", outcome)]
}

#[tokio::test]
async fn real_traffic_moves_the_runtime_metrics() {
    // Installed before the runtime starts: its handles are registered then.
    let handle = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 1.0])
        .expect("buckets")
        .install_recorder()
        .expect("the only recorder of this test binary");
    let runtime = Runtime::start(TransportConfig {
        outbound_queue: 8,
        max_sockets_per_id: 1,
        ..Default::default()
    })
    .await
    .expect("runtime");
    let stop = CancellationToken::new();
    let url = serve(&runtime, HttpLimits::default(), &stop).await;
    let m = Scrape {
        handle,
        runtime: runtime.clone(),
    };

    // The front door: one accepted, and one refusal of each kind the upgrade makes.
    let mut ada = WsClient::connect(&format!("{url}&user=ada"))
        .await
        .expect("ada connects");
    m.wait_for("fawkes_connections_accepted_total", WS, 1.0)
        .await;
    assert_eq!(WsClient::upgrade_status(&url, &[]).await, 403);
    m.wait_for(
        "fawkes_connections_refused_total",
        &[("reason", "forbidden")],
        1.0,
    )
    .await;
    let evil = [("Origin", "https://evil.example")];
    assert_eq!(
        WsClient::upgrade_status(&format!("{url}&user=eve"), &evil).await,
        403
    );
    m.wait_for(
        "fawkes_connections_refused_total",
        &[("reason", "origin")],
        1.0,
    )
    .await;
    let bad_vsn = url.replace("vsn=2.0.0", "vsn=9.0.0") + "&user=eve";
    assert_eq!(WsClient::upgrade_status(&bad_vsn, &[]).await, 403);
    m.wait_for(
        "fawkes_connections_refused_total",
        &[("reason", "bad_request")],
        1.0,
    )
    .await;
    assert_eq!(
        WsClient::upgrade_status(&format!("{url}&user=ada"), &[]).await,
        429,
        "one socket per id"
    );
    m.wait_for(
        "fawkes_connections_refused_total",
        &[("reason", "socket_id_cap")],
        1.0,
    )
    .await;
    assert_eq!(m.value("fawkes_connections_accepted_total", WS), 1.0);

    // Caps of another endpoint of the same runtime: the node's (a connection holds its only
    // slot), then the address's.
    let capped = serve(
        &runtime,
        HttpLimits {
            max_connections: Some(1),
            ..Default::default()
        },
        &stop,
    )
    .await;
    let host = capped
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("host")
        .to_owned();
    let holder = tokio::net::TcpStream::connect(&host).await.expect("holder");
    assert_eq!(WsClient::upgrade_status(&capped, &[]).await, 503);
    m.wait_for(
        "fawkes_connections_refused_total",
        &[("reason", "node_cap")],
        1.0,
    )
    .await;
    drop(holder);
    let per_address = serve(
        &runtime,
        HttpLimits {
            max_connections_per_ip: Some(0),
            ..Default::default()
        },
        &stop,
    )
    .await;
    assert_eq!(WsClient::upgrade_status(&per_address, &[]).await, 503);
    m.wait_for(
        "fawkes_connections_refused_total",
        &[("reason", "address_cap")],
        1.0,
    )
    .await;

    // Joins by outcome, their latency, and the live joins of the pattern.
    let (ada_join, reply) = ada.join("room:a", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));
    m.wait_for("fawkes_joins_total", &outcome("ok"), 1.0).await;
    m.wait_for("fawkes_join_duration_seconds_count", ROOM, 1.0)
        .await;
    m.wait_for("fawkes_joined_channels", ROOM, 1.0).await;
    let (_, reply) = ada.join("room:no", json!({ "refuse": true })).await;
    assert_eq!(reply.status(), Some("error"));
    m.wait_for("fawkes_joins_total", &outcome("error"), 1.0)
        .await;
    let (_, reply) = ada.join("room:bang", json!({ "panic": true })).await;
    assert_eq!(reply.status(), Some("error"));
    m.wait_for("fawkes_joins_total", &outcome("crash"), 1.0)
        .await;
    m.wait_for("fawkes_channel_crashes_total", ROOM, 1.0).await;
    m.wait_for("fawkes_join_duration_seconds_count", ROOM, 3.0)
        .await;
    assert_eq!(m.value("fawkes_joined_channels", ROOM), 1.0);

    // Client events and `handle_in`; a failing one crashes the join.
    let echo = ada.push(&ada_join, "room:a", "echo", json!({})).await;
    assert_eq!(ada.reply(&echo).await.status(), Some("ok"));
    m.wait_for("fawkes_client_events_total", ROOM, 1.0).await;
    m.wait_for("fawkes_handle_in_duration_seconds_count", ROOM, 1.0)
        .await;
    ada.push(&ada_join, "room:a", "boom", json!({})).await;
    ada.event("room:a", "phx_error").await;
    m.wait_for("fawkes_client_events_total", ROOM, 2.0).await;
    m.wait_for("fawkes_channel_crashes_total", ROOM, 2.0).await;
    m.wait_for("fawkes_joined_channels", ROOM, 0.0).await;
    let (t_join, _) = ada.join("room:t", json!({ "panic_on_leave": true })).await;
    let leave = ada.push(&t_join, "room:t", "phx_leave", json!({})).await;
    assert_eq!(ada.reply(&leave).await.status(), Some("ok"));
    m.wait_for("fawkes_channel_crashes_total", ROOM, 3.0).await;
    m.wait_for("fawkes_joined_channels", ROOM, 0.0).await;

    // A broadcast to two subscribers: one broadcast, two deliveries.
    let mut bob = WsClient::connect(&format!("{url}&user=bob"))
        .await
        .expect("bob connects");
    ada.join("room:b", json!({})).await;
    bob.join("room:b", json!({})).await;
    m.wait_for("fawkes_joined_channels", ROOM, 2.0).await;
    runtime.pubsub().broadcast("room:b", "news", json!({}));
    ada.event("room:b", "news").await;
    bob.event("room:b", "news").await;
    m.wait_for("fawkes_broadcasts_total", &[("origin", "local")], 1.0)
        .await;
    m.wait_for("fawkes_deliveries_total", &[], 2.0).await;
    assert_eq!(m.value("fawkes_deliveries_dropped_total", &[]), 0.0);

    // State counts, read at scrape time.
    m.wait_for("fawkes_connections", WS, 2.0).await;
    m.wait_for("fawkes_topics", &[], 1.0).await;
    m.wait_for("fawkes_registry_sockets", &[], 2.0).await;
    m.wait_for("fawkes_outbound_queue_max_frames", &[], 0.0)
        .await;
    assert_eq!(m.value("fawkes_supervisor_restarts_total", &[]), 0.0);
    assert_eq!(
        m.value("fawkes_cluster_members", &[]),
        0.0,
        "no cluster series without an adapter"
    );
    assert!(!m.handle.render().contains("fawkes_cluster_"));

    // A subscriber that does not read while a burst comes: cut off with 1013, frames dropped.
    // (Frames go straight to its socket until the buffers are full; then they queue.)
    let mut carol = WsClient::connect_with_receive_buffer(&format!("{url}&user=carol"), 4096)
        .await
        .expect("carol connects");
    carol.join("room:burst", json!({})).await;
    let blob = "b".repeat(4000);
    for i in 0..50 {
        runtime
            .pubsub()
            .broadcast("room:burst", "burst", json!({ "i": i, "blob": blob }));
    }
    assert_eq!(carol.closed().await.0, 1013);
    m.wait_for("fawkes_slow_consumer_disconnects_total", WS, 1.0)
        .await;
    m.wait_for("fawkes_close_codes_total", &[("code", "1013"), WS[0]], 1.0)
        .await;
    assert!(m.value("fawkes_deliveries_dropped_total", &[]) >= 1.0);
    assert!(m.value("fawkes_deliveries_total", &[]) >= 2.0 + 8.0);
    m.wait_for("fawkes_broadcasts_total", &[("origin", "local")], 51.0)
        .await;

    // Presence entries (their diffs are broadcasts too: counted from here on).
    let (p_join, _) = ada.join("room:p", json!({ "track": true })).await;
    m.wait_for("fawkes_presence_entries", &[], 1.0).await;
    let leave = ada.push(&p_join, "room:p", "phx_leave", json!({})).await;
    assert_eq!(ada.reply(&leave).await.status(), Some("ok"));
    m.wait_for("fawkes_presence_entries", &[], 0.0).await;

    // A malformed frame: closed with 1003.
    bob.send(Message::Text("not json".into())).await;
    assert_eq!(bob.closed().await.0, 1003);
    m.wait_for("fawkes_close_codes_total", &[("code", "1003"), WS[0]], 1.0)
        .await;
    m.wait_for("fawkes_connections", WS, 1.0).await;
    assert_eq!(m.value("fawkes_connections_accepted_total", WS), 3.0);

    stop.cancel();
    runtime.shutdown(Duration::from_secs(1)).await;

    // Two nodes over an in-process bus: the cluster's series, and a broadcast from the other
    // node counted as remote.
    let bus = MemoryBus::new();
    let node = |name: &str| RuntimeConfig {
        adapter: Some(Arc::new(bus.adapter(name)) as Arc<dyn Adapter>),
        cluster: ClusterConfig {
            heartbeat: Duration::from_millis(50),
            node_timeout: Duration::from_secs(5),
            push_timeout: Duration::from_secs(2),
        },
        ..Default::default()
    };
    let one = Runtime::start(node("one")).await.expect("node one");
    let two = Runtime::start(node("two")).await.expect("node two");
    let m = Scrape {
        handle: m.handle,
        runtime: one.clone(),
    };
    m.wait_for("fawkes_cluster_members", &[], 1.0).await;
    m.wait_for("fawkes_cluster_link_up", &[], 1.0).await;
    let _subscription = one.pubsub().subscribe("room:x").await;
    two.pubsub().broadcast("room:x", "hi", json!({}));
    m.wait_for("fawkes_broadcasts_total", &[("origin", "remote")], 1.0)
        .await;
    assert!(m.value("fawkes_cluster_frames_in_total", &[]) >= 1.0);
    assert!(m.value("fawkes_cluster_frames_out_total", &[]) >= 1.0);
    assert_eq!(m.value("fawkes_cluster_frames_lost_total", &[]), 0.0);
    bus.set_linked("one", false);
    m.wait_for("fawkes_cluster_link_up", &[], 0.0).await;
    two.shutdown(Duration::from_secs(1)).await;
    one.shutdown(Duration::from_secs(1)).await;

    // LongPoll: no `longpoll` series until a session opens; then its own series.
    assert!(!m.handle.render().contains(r#"transport="longpoll""#));
    let lp = Runtime::start(TransportConfig {
        longpoll: true,
        ..Default::default()
    })
    .await
    .expect("runtime");
    let stop = CancellationToken::new();
    let url = serve(&lp, HttpLimits::default(), &stop).await;
    let m = Scrape {
        handle: m.handle,
        runtime: lp.clone(),
    };
    let opened = longpoll(&url, "GET", "user=lee&vsn=2.0.0", None).await;
    assert_eq!(opened["status"], 410, "{opened}");
    let token = opened["token"].as_str().expect("a token");
    m.wait_for("fawkes_connections_accepted_total", LP, 1.0)
        .await;
    m.wait_for("fawkes_connections", LP, 1.0).await;
    assert_eq!(m.value("fawkes_connections", WS), 0.0);
    // Replies queued for a session and not yet polled count in the fullest queue, as a
    // connection's do.
    let beats = (1..=3)
        .map(|i| format!(r#"[null,"{i}","phoenix","heartbeat",{{}}]"#))
        .collect::<Vec<_>>()
        .join("\n");
    let posted = longpoll(&url, "POST", &format!("token={token}"), Some(&beats)).await;
    assert_eq!(posted, json!({"status": 200}));
    m.wait_for("fawkes_outbound_queue_max_frames", &[], 3.0)
        .await;
    // A malformed line ends the session, as 1003 closes a WebSocket.
    let posted = longpoll(&url, "POST", &format!("token={token}"), Some("not json")).await;
    assert_eq!(posted, json!({"status": 400}));
    m.wait_for("fawkes_close_codes_total", &[("code", "1003"), LP[0]], 1.0)
        .await;
    m.wait_for("fawkes_connections", LP, 0.0).await;
    stop.cancel();
    lp.shutdown(Duration::from_secs(1)).await;
}
