//! `presence-storm`: N connections, each a distinct user, join one room as fast as possible.
//!
//! Every connection joins right after connecting; its join latency is the time from sending
//! `phx_join` to the reply. Sampled connections keep a presence view the way phoenix.js does
//! (`presence_state`, then `presence_diff`s applied by `phx_ref`). The run passes when every
//! join succeeded, no channel crashed, every sampled view holds exactly N users, and a fresh
//! client joining afterwards is told exactly N users are present.
//!
//! With `--servers` (the nodes of a cluster) connection `i` joins through node `i % k`, the
//! sampled clients cover every node, and a fresh client joins on *each* node afterwards, again
//! and again until its `presence_state` holds all N users (or a deadline): how long each node
//! took to converge is reported, with every node's join latency, CPU and memory.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::Target;
use crate::client::{self, parse};
use crate::nodes::{Cluster, Nodes, latency_line, print_servers};
use crate::stats::{self, mib};

/// A presence view as phoenix.js keeps it: key → the `phx_ref`s of its metas; diffs that
/// arrive before the join's `presence_state` wait for it (`pending`).
#[derive(Default)]
struct View {
    keys: HashMap<String, HashSet<String>>,
    synced: bool,
    pending: Vec<Value>,
    /// `presence_diff` frames received.
    diffs: usize,
}

impl View {
    fn len(&self) -> usize {
        self.keys.len()
    }
}

#[derive(Default)]
struct Counters {
    joined: AtomicUsize,
    join_errors: AtomicUsize,
    connect_errors: AtomicUsize,
    crashed: AtomicUsize,
    closed: AtomicUsize,
}

fn refs(metas: &Value) -> impl Iterator<Item = String> + '_ {
    metas["metas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["phx_ref"].as_str().map(str::to_owned))
}

fn apply_state(view: &mut View, state: &Value) {
    view.keys.clear();
    for (key, metas) in state.as_object().into_iter().flatten() {
        view.keys.insert(key.clone(), refs(metas).collect());
    }
    view.synced = true;
    for diff in std::mem::take(&mut view.pending) {
        apply_diff(view, &diff);
    }
}

fn apply_diff(view: &mut View, diff: &Value) {
    if !view.synced {
        view.pending.push(diff.clone());
        return;
    }
    for (key, metas) in diff["joins"].as_object().into_iter().flatten() {
        view.keys
            .entry(key.clone())
            .or_default()
            .extend(refs(metas));
    }
    for (key, metas) in diff["leaves"].as_object().into_iter().flatten() {
        if let Some(set) = view.keys.get_mut(key) {
            for r in refs(metas) {
                set.remove(&r);
            }
            if set.is_empty() {
                view.keys.remove(key);
            }
        }
    }
}

/// The sampled connections: `sample` of them spread evenly over the `n`, moved to cover every
/// node (connection `i` is on node `i % nodes`).
fn sampled(n: usize, sample: usize, nodes: usize) -> Vec<usize> {
    let mut picked: Vec<usize> = (0..sample)
        .map(|s| {
            let i = s * n / sample;
            let i = i - i % nodes + s % nodes;
            i.min(n - 1)
        })
        .collect();
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// What a fresh client joining on one node was told.
struct Fresh {
    /// Users in the last `presence_state` it got.
    keys: Option<usize>,
    /// When it first got all `n` users.
    converged: Option<Instant>,
    attempts: usize,
}

/// Joins `topic` on `server` as user 0 (another device) until its `presence_state` holds `n`
/// users, leaving and trying again with a growing pause (each try is a presence join and leave
/// that reaches every member), until `deadline`.
async fn fresh_client(
    target: &Target,
    server: SocketAddr,
    token: &str,
    source: usize,
    topic: &str,
    n: usize,
    deadline: Instant,
) -> Fresh {
    let mut fresh = Fresh {
        keys: None,
        converged: None,
        attempts: 0,
    };
    let mut pause = Duration::from_millis(200);
    while Instant::now() < deadline {
        fresh.attempts += 1;
        if let Ok((mut sink, mut stream)) = client::connect(
            server,
            &target.path,
            token,
            client::source(source, target.sources),
        )
        .await
        {
            let _ = client::send(&mut sink, json!("1"), "1", topic, "phx_join", json!({})).await;
            let wait = tokio::time::Instant::from_std(
                deadline.min(Instant::now() + Duration::from_secs(30)),
            );
            while let Ok(Some(Ok(Message::Text(text)))) =
                tokio::time::timeout_at(wait, stream.next()).await
            {
                if let Some(frame) = parse(text.as_str())
                    && frame.event == "presence_state"
                {
                    fresh.keys = frame.payload.as_object().map(|o| o.len());
                    break;
                }
            }
        }
        if fresh.keys == Some(n) {
            fresh.converged = Some(Instant::now());
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    fresh
}

pub(crate) async fn run(
    target: &Target,
    nodes: &Nodes,
    n: usize,
    topic: &str,
    concurrency: usize,
    sample: usize,
) -> Result<(), String> {
    let cluster = &Cluster::resolve(target, nodes)?;
    let tokens = Arc::new(target.tokens()?);
    if tokens.len() < n {
        return Err(format!(
            "{} tokens for {n} connections (seed more users)",
            tokens.len()
        ));
    }
    let k = cluster.len();
    let server_before = cluster.sample();
    let own_before = stats::own();
    let counters = Arc::new(Counters::default());
    // Join latencies, per node.
    let latencies: Arc<Vec<Mutex<Vec<Duration>>>> =
        Arc::new((0..k).map(|_| Mutex::new(Vec::new())).collect());
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let picked = sampled(n, sample.clamp(1, n), k);
    let views: Arc<Vec<Mutex<View>>> = Arc::new(
        (0..picked.len())
            .map(|_| Mutex::new(View::default()))
            .collect(),
    );
    let sample_slot: HashMap<usize, usize> = picked
        .iter()
        .copied()
        .enumerate()
        .map(|(slot, i)| (i, slot))
        .collect();

    println!(
        "presence-storm: {n} connections joining {topic} ({concurrency} at a time, {} source addresses, {k} node(s))",
        target.sources
    );
    let started = Instant::now();
    for i in 0..n {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (target, tokens, counters, latencies, views) = (
            target.clone(),
            tokens.clone(),
            counters.clone(),
            latencies.clone(),
            views.clone(),
        );
        let mut stop = stop_rx.clone();
        let topic = topic.to_owned();
        let slot = sample_slot.get(&i).copied();
        let (node, server) = (cluster.node_of(i), cluster.server_of(i));
        tokio::spawn(async move {
            let mut permit = Some(permit);
            let Ok((mut sink, mut stream)) = client::connect(
                server,
                &target.path,
                &tokens[i],
                client::source(i, target.sources),
            )
            .await
            else {
                counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let sent = Instant::now();
            if client::send(&mut sink, json!("1"), "1", &topic, "phx_join", json!({}))
                .await
                .is_err()
            {
                counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut heartbeat = client::Heartbeat::start().await;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    () = heartbeat.due() => heartbeat.send(&mut sink).await,
                    message = stream.next() => {
                        let Some(Ok(message)) = message else {
                            counters.closed.fetch_add(1, Ordering::Relaxed);
                            break;
                        };
                        let Message::Text(text) = message else { continue };
                        let text = text.as_str();
                        if permit.is_some() || slot.is_some() || text.contains("\"phx_error\"") {
                            let Some(frame) = parse(text) else { continue };
                            match frame.event.as_str() {
                                "phx_reply" if permit.is_some() && frame.msg_ref == "1" && frame.topic == topic => {
                                    let ok = frame.payload["status"] == "ok";
                                    if ok && let Ok(mut l) = latencies[node].lock() {
                                        l.push(sent.elapsed());
                                    }
                                    let counter = if ok { &counters.joined } else { &counters.join_errors };
                                    counter.fetch_add(1, Ordering::Relaxed);
                                    permit = None;
                                }
                                "phx_error" if frame.topic == topic => {
                                    counters.crashed.fetch_add(1, Ordering::Relaxed);
                                }
                                "presence_state" => {
                                    if let Some(Ok(mut view)) = slot.map(|s| views[s].lock()) {
                                        apply_state(&mut view, &frame.payload);
                                    }
                                }
                                "presence_diff" => {
                                    if let Some(Ok(mut view)) = slot.map(|s| views[s].lock()) {
                                        view.diffs += 1;
                                        apply_diff(&mut view, &frame.payload);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            drop(permit);
        });
    }

    // All joins answered (or failed)?
    let answered = || {
        counters.joined.load(Ordering::Relaxed)
            + counters.join_errors.load(Ordering::Relaxed)
            + counters.connect_errors.load(Ordering::Relaxed)
    };
    while answered() < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_phase = started.elapsed();
    let joins_done = Instant::now();
    // Sampled views converge? (Per node: when every sampled view there holds all N.)
    let settle_deadline = Instant::now() + Duration::from_secs(120);
    let sizes = || {
        views
            .iter()
            .map(|v| v.lock().map(|v| v.len()).unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let mut node_settled: Vec<Option<Duration>> = vec![None; k];
    loop {
        let now = sizes();
        for (node, settled) in node_settled.iter_mut().enumerate() {
            let all_there = picked
                .iter()
                .zip(&now)
                .filter(|(i, _)| cluster.node_of(**i) == node)
                .all(|(_, &s)| s == n);
            if settled.is_none() && all_there {
                *settled = Some(joins_done.elapsed());
            }
        }
        if node_settled.iter().all(Option::is_some) || Instant::now() >= settle_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = started.elapsed();
    let view_sizes = sizes();
    let view_diffs: Vec<usize> = views
        .iter()
        .map(|v| v.lock().map(|v| v.diffs).unwrap_or(0))
        .collect();
    let server_after = cluster.sample();

    // A fresh client on each node (user 0 again, on another device) must be told exactly N
    // users; polled until a deadline, since other nodes' joins arrive asynchronously.
    let fresh_deadline = Instant::now() + Duration::from_secs(60);
    let mut fresh_tasks = Vec::new();
    for node in 0..k {
        let (target, tokens, topic, server) = (
            target.clone(),
            tokens.clone(),
            topic.to_owned(),
            cluster.servers[node],
        );
        fresh_tasks.push(tokio::spawn(async move {
            fresh_client(
                &target,
                server,
                &tokens[0],
                n + node,
                &topic,
                n,
                fresh_deadline,
            )
            .await
        }));
    }
    let mut fresh = Vec::new();
    for task in fresh_tasks {
        fresh.push(task.await.map_err(|e| e.to_string())?);
    }
    let _ = stop_tx.send(true);

    let (joined, join_errors, connect_errors, crashed, closed) = (
        counters.joined.load(Ordering::Relaxed),
        counters.join_errors.load(Ordering::Relaxed),
        counters.connect_errors.load(Ordering::Relaxed),
        counters.crashed.load(Ordering::Relaxed),
        counters.closed.load(Ordering::Relaxed),
    );
    let own_after = stats::own();
    println!(
        "joins answered:      {} of {n} in {:.2}s ({:.0} joins/s)",
        joined + join_errors,
        join_phase.as_secs_f64(),
        n as f64 / join_phase.as_secs_f64()
    );
    println!("join errors:         {join_errors} (connect failures {connect_errors})");
    println!("crashed channels:    {crashed}; connections closed by the server: {closed}");
    let per_node: Vec<Vec<Duration>> = latencies
        .iter()
        .map(|l| {
            let mut l = l.lock().map(|l| l.clone()).unwrap_or_default();
            l.sort();
            l
        })
        .collect();
    let mut all: Vec<Duration> = per_node.iter().flatten().copied().collect();
    all.sort();
    println!("join latency:        {}", latency_line(&all));
    println!(
        "presence settled:    {:.2}s after the start; sampled views {view_sizes:?}",
        settled.as_secs_f64()
    );
    println!("presence_diff frames received per sampled client: {view_diffs:?}");
    let secs =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()));
    if k > 1 {
        for node in 0..k {
            println!(
                "node {}:              joined {}; join latency {}; sampled views full {} after the last join reply; fresh client {:?} keys, all {} after the last join reply ({} tries)",
                node + 1,
                per_node[node].len(),
                latency_line(&per_node[node]),
                secs(node_settled[node]),
                fresh[node].keys,
                secs(fresh[node].converged.map(|t| t - joins_done)),
                fresh[node].attempts
            );
        }
        let counts: Vec<usize> = (0..k)
            .map(|node| (0..n).filter(|i| cluster.node_of(*i) == node).count())
            .collect();
        print_servers(cluster, &server_before, &server_after, &counts);
    } else {
        println!("fresh client state:  {:?} keys", fresh[0].keys);
        if let (Some(before), Some(after)) = (server_before.node(0), server_after.node(0)) {
            println!(
                "server:              RSS {} -> {} (peak {}; {} per connection), CPU {:.2}s",
                mib(before.rss),
                mib(after.rss),
                mib(after.peak_rss),
                (after.rss.saturating_sub(before.rss)) / n.max(1) as u64,
                after.cpu - before.cpu
            );
        }
    }
    if let (Some(before), Some(after)) = (own_before, own_after) {
        println!("load generator:      CPU {:.2}s", after.cpu - before.cpu);
    }
    let passed = joined == n
        && crashed == 0
        && closed == 0
        && view_sizes.iter().all(|&s| s == n)
        && fresh.iter().all(|f| f.keys == Some(n));
    println!(
        "result:              {}",
        if passed { "PASS" } else { "FAIL" }
    );
    if passed {
        Ok(())
    } else {
        Err("the storm did not pass".into())
    }
}
