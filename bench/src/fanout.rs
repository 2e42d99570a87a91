//! `fanout`: S subscribers on one topic; P publishers push `message:new` at R messages per
//! second each for a while; the topic broadcasts each to every subscriber. Every payload's
//! `body` starts with its send time (so it survives channels that rebuild the payload, like
//! the app's rooms, which broadcast `{"user_id", "body"}`), so subscribers measure delivery
//! latency. Reports deliveries per second, delivered versus expected, latency percentiles, and
//! server CPU per 100k deliveries.
//!
//! With `--servers` the subscribers are spread round-robin over the nodes of a cluster (or
//! over the first `--subscriber-nodes` of them), the publishers are on `--publish-node`, and
//! every figure is also given per node (the subscriber's node), with Redis's CPU per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::Target;
use crate::client::{self, Sink, Stream, parse};
use crate::nodes::{Cluster, Nodes, latency_line};
use crate::stats;

/// Where the publishers and subscribers go.
pub(crate) struct Placement {
    /// Subscribers go round-robin to the first this many nodes (0: all).
    pub(crate) subscriber_nodes: usize,
    /// The node (index, 0 first) the publishers are on.
    pub(crate) publish_node: usize,
}

async fn joined(
    target: &Target,
    server: std::net::SocketAddr,
    token: &str,
    i: usize,
    topic: &str,
) -> Result<(Sink, Stream), String> {
    let (mut sink, mut stream) = client::connect(
        server,
        &target.path,
        token,
        client::source(i, target.sources),
    )
    .await?;
    client::send(&mut sink, json!("1"), "1", topic, "phx_join", json!({})).await?;
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                if let Some(f) = parse(t.as_str())
                    && f.msg_ref == "1"
                {
                    return if f.payload["status"] == "ok" {
                        Ok((sink, stream))
                    } else {
                        Err(format!("join: {}", f.payload))
                    };
                }
            }
            Some(Ok(_)) => {}
            _ => return Err("closed while joining".into()),
        }
    }
}

/// The send time (µs) at the start of the `body` of a `message:new` broadcast frame, without
/// parsing the whole frame.
fn send_time(frame: &str) -> Option<u64> {
    if !frame.starts_with("[null,null,") || !frame.contains("\"message:new\"") {
        return None;
    }
    let rest = &frame[frame.find("\"body\":\"")? + 8..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Subscribers joining at once.
const JOIN_CONCURRENCY: usize = 64;

/// A subscriber's reader: counts the `message:new` broadcasts it gets (and their latency) in
/// its node's tally, heartbeats as phoenix.js does, and stops when told to or when the server
/// closes the connection (counted in `closed`).
async fn read(
    mut sink: Sink,
    mut stream: Stream,
    tallies: Arc<Vec<NodeTally>>,
    node: usize,
    base: Instant,
    closed: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut mine = Vec::new();
    let tally = &tallies[node];
    let mut heartbeat = client::Heartbeat::start().await;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = heartbeat.due() => heartbeat.send(&mut sink).await,
            message = stream.next() => {
                let Some(Ok(message)) = message else {
                    closed.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                let Message::Text(t) = message else { continue };
                // Read only the send time: the generator must stay cheaper than the server.
                if let Some(sent) = send_time(t.as_str()) {
                    let now = base.elapsed().as_micros() as u64;
                    mine.push(Duration::from_micros(now.saturating_sub(sent)));
                    tally.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    if let Ok(mut all) = tally.latencies.lock() {
        all.extend(mine);
    }
}

/// Per node: deliveries and their latencies.
struct NodeTally {
    delivered: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    target: &Target,
    nodes: &Nodes,
    placement: &Placement,
    subscribers: usize,
    publishers: usize,
    rate: f64,
    topic: &str,
    duration: Duration,
) -> Result<(), String> {
    let cluster = &Cluster::resolve(target, nodes)?;
    let tokens = target.tokens()?;
    let k = cluster.len();
    let sub_nodes = match placement.subscriber_nodes {
        0 => k,
        n => n.min(k),
    };
    if placement.publish_node >= k {
        return Err(format!(
            "--publish-node {} of {k} node(s)",
            placement.publish_node
        ));
    }
    let base = Instant::now();
    let tallies: Arc<Vec<NodeTally>> = Arc::new(
        (0..k)
            .map(|_| NodeTally {
                delivered: AtomicU64::new(0),
                latencies: Mutex::new(Vec::new()),
            })
            .collect(),
    );
    let mut per_node = vec![0usize; k];
    for i in 0..subscribers {
        per_node[i % sub_nodes] += 1;
    }
    let closed = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Subscribers join JOIN_CONCURRENCY at a time; each then reads (and heartbeats) until told
    // to stop.
    let tokens_ref = &tokens;
    let joins = futures_util::stream::iter(0..subscribers)
        .map(|i| {
            let node = i % sub_nodes;
            let server = cluster.servers[node];
            async move {
                joined(target, server, &tokens_ref[i % tokens_ref.len()], i, topic)
                    .await
                    .map(|conn| (node, conn))
            }
        })
        .buffer_unordered(JOIN_CONCURRENCY);
    tokio::pin!(joins);
    let mut readers = Vec::new();
    while let Some(conn) = joins.next().await {
        let (node, (sink, stream)) = conn?;
        readers.push(tokio::spawn(read(
            sink,
            stream,
            tallies.clone(),
            node,
            base,
            closed.clone(),
            stop_rx.clone(),
        )));
    }
    let mut pubs = Vec::new();
    let pub_server = cluster.servers[placement.publish_node];
    for p in 0..publishers {
        let i = subscribers + p;
        pubs.push(joined(target, pub_server, &tokens[i % tokens.len()], i, topic).await?);
    }
    if k > 1 {
        // The joins' presence traffic (replicated to every node) is not part of the fan-out.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "fanout: {subscribers} subscribers, {publishers} publishers × {rate} msg/s on {topic} for {duration:?}"
    );
    if k > 1 {
        println!(
            "nodes:               {k}; subscribers per node {per_node:?}; publishers on node {}",
            placement.publish_node + 1
        );
    }
    let sent = Arc::new(AtomicU64::new(0));
    let before = cluster.sample();
    let own_before = stats::own();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, (mut sink, mut stream)) in pubs.into_iter().enumerate() {
        let sent = sent.clone();
        let topic = topic.to_owned();
        tasks.push(tokio::spawn(async move {
            // Publishers read their own socket too (replies, their own copy of each broadcast).
            let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
            let mut r = 1u64;
            let end = started + duration;
            while Instant::now() < end {
                tick.tick().await;
                r += 1;
                let t = base.elapsed().as_micros() as u64;
                let payload = json!({"pub": p, "seq": r, "body": format!("{t} fan-out payload of a typical chat message")});
                if client::send(&mut sink, Value::from("1"), &r.to_string(), &topic, "message:new", payload).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            // Stay connected until the deliveries are counted: a socket closed right after its
            // last push may take that push's channel down before it is handled.
            (sink, drain)
        }));
    }
    let mut publishers_open = Vec::new();
    for task in tasks {
        if let Ok(open) = task.await {
            publishers_open.push(open);
        }
    }
    let publishing = started.elapsed();
    let messages = sent.load(Ordering::Relaxed);
    // Let deliveries finish: until every one arrived (at most 10 s).
    let expected = messages * subscribers as u64;
    let delivered = || -> u64 {
        tallies
            .iter()
            .map(|t| t.delivered.load(Ordering::Relaxed))
            .sum()
    };
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while delivered() < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = cluster.sample();
    let own_after = stats::own();
    let dropped = closed.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for (sink, drain) in publishers_open {
        drain.abort();
        drop(sink);
    }
    for reader in readers {
        let _ = reader.await;
    }
    let got = delivered();
    println!(
        "messages sent:       {messages} in {:.2}s; deliveries {got} of {expected} expected ({:.0}/s)",
        publishing.as_secs_f64(),
        got as f64 / publishing.as_secs_f64()
    );
    println!("subscribers closed:  {dropped} (by the server, before the end)");
    let mut all = Vec::new();
    for tally in tallies.iter() {
        all.extend(
            tally
                .latencies
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default(),
        );
    }
    all.sort();
    stats::print_latency(&all);
    let total_cpu: Option<f64> = (0..k).map(|n| before.node_cpu(&after, n)).sum();
    if let Some(cpu) = total_cpu {
        println!(
            "server CPU:          {cpu:.2}s = {:.3} s per 100k deliveries",
            cpu * 100_000.0 / (got.max(1) as f64)
        );
    }
    if k > 1 {
        for (node, tally) in tallies.iter().enumerate() {
            let mut latencies = tally
                .latencies
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            latencies.sort();
            let got = tally.delivered.load(Ordering::Relaxed);
            let want = messages * per_node[node] as u64;
            print!(
                "node {}:              deliveries {got} of {want}; latency {}",
                node + 1,
                latency_line(&latencies)
            );
            match before.node_cpu(&after, node) {
                Some(cpu) if got > 0 => println!(
                    "; CPU {cpu:.2}s = {:.3} s per 100k deliveries, {:.1} µs per message",
                    cpu * 100_000.0 / got as f64,
                    cpu * 1e6 / messages.max(1) as f64
                ),
                Some(cpu) => println!(
                    "; CPU {cpu:.2}s = {:.1} µs per message",
                    cpu * 1e6 / messages.max(1) as f64
                ),
                None => println!(),
            }
        }
    }
    if let Some(cpu) = before.redis_cpu(&after) {
        println!(
            "redis-server CPU:    {cpu:.2}s = {:.1} µs per message",
            cpu * 1e6 / messages.max(1) as f64
        );
    }
    if let (Some(b), Some(a)) = (own_before, own_after) {
        println!("load generator CPU:  {:.2}s", a.cpu - b.cpu);
    }
    if got == expected {
        Ok(())
    } else {
        Err(format!("{} deliveries lost", expected.saturating_sub(got)))
    }
}
