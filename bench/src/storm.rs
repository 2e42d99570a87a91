//! `presence-storm`: N connections, each a distinct user, join one room as fast as possible.
//!
//! Every connection joins right after connecting; its join latency is the time from sending
//! `phx_join` to the reply. Sampled connections keep a presence view the way phoenix.js does
//! (`presence_state`, then `presence_diff`s applied by `phx_ref`). The run passes when every
//! join succeeded, no channel crashed, every sampled view holds exactly N users, and a fresh
//! client joining afterwards is told exactly N users are present.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::Target;
use crate::client::{self, parse};
use crate::stats::{self, mib, percentile};

/// A presence view as phoenix.js keeps it: key → the `phx_ref`s of its metas; diffs that
/// arrive before the join's `presence_state` wait for it (`pending`).
#[derive(Default)]
struct View {
    keys: HashMap<String, HashSet<String>>,
    synced: bool,
    pending: Vec<Value>,
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

pub(crate) async fn run(
    target: &Target,
    n: usize,
    topic: &str,
    concurrency: usize,
    sample: usize,
) -> Result<(), String> {
    let tokens = Arc::new(target.tokens()?);
    if tokens.len() < n {
        return Err(format!(
            "{} tokens for {n} connections (seed more users)",
            tokens.len()
        ));
    }
    let server_before = target.server_pid.and_then(stats::sample);
    let own_before = stats::own();
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let sample = sample.clamp(1, n);
    let sampled: HashSet<usize> = (0..sample).map(|i| i * n / sample).collect();
    let views: Arc<Vec<Mutex<View>>> =
        Arc::new((0..sample).map(|_| Mutex::new(View::default())).collect());
    let sample_slot: HashMap<usize, usize> = sampled
        .iter()
        .copied()
        .enumerate()
        .map(|(slot, i)| (i, slot))
        .collect();

    println!(
        "presence-storm: {n} connections joining {topic} ({concurrency} at a time, {} source addresses)",
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
        tokio::spawn(async move {
            let mut permit = Some(permit);
            let Ok((mut sink, mut stream)) = client::connect(
                target.server,
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
            let mut heartbeat = tokio::time::interval(Duration::from_secs(25));
            heartbeat.tick().await;
            let mut next_ref = 1u64;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = heartbeat.tick() => {
                        next_ref += 1;
                        let _ = client::send(&mut sink, Value::Null, &next_ref.to_string(), "phoenix", "heartbeat", json!({})).await;
                    }
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
                                    if let Ok(mut l) = latencies.lock() {
                                        l.push(sent.elapsed());
                                    }
                                    let ok = frame.payload["status"] == "ok";
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
    // Sampled views converge?
    let settle_deadline = Instant::now() + Duration::from_secs(120);
    let sizes = || {
        views
            .iter()
            .map(|v| v.lock().map(|v| v.len()).unwrap_or(0))
            .collect::<Vec<_>>()
    };
    while sizes().iter().any(|&s| s != n) && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = started.elapsed();
    let view_sizes = sizes();
    let server_after = target.server_pid.and_then(stats::sample);

    // A fresh client (user 0 again, on another device) must be told exactly N users.
    let fresh_keys = match client::connect(
        target.server,
        &target.path,
        &tokens[0],
        client::source(n, target.sources),
    )
    .await
    {
        Ok((mut sink, mut stream)) => {
            let _ = client::send(&mut sink, json!("1"), "1", topic, "phx_join", json!({})).await;
            let mut keys = None;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while let Ok(Some(Ok(Message::Text(text)))) =
                tokio::time::timeout_at(deadline, stream.next()).await
            {
                if let Some(frame) = parse(text.as_str())
                    && frame.event == "presence_state"
                {
                    keys = frame.payload.as_object().map(|o| o.len());
                    break;
                }
            }
            keys
        }
        Err(_) => None,
    };
    let _ = stop_tx.send(true);

    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort();
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
    println!(
        "join latency:        p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "presence settled:    {:.2}s after the start; sampled views {view_sizes:?}",
        settled.as_secs_f64()
    );
    println!("fresh client state:  {fresh_keys:?} keys");
    if let (Some(before), Some(after)) = (server_before, server_after) {
        println!(
            "server:              RSS {} -> {} (peak {}; {} per connection), CPU {:.2}s",
            mib(before.rss),
            mib(after.rss),
            mib(after.peak_rss),
            (after.rss.saturating_sub(before.rss)) / n.max(1) as u64,
            after.cpu - before.cpu
        );
    }
    if let (Some(before), Some(after)) = (own_before, own_after) {
        println!("load generator:      CPU {:.2}s", after.cpu - before.cpu);
    }
    let passed = joined == n
        && crashed == 0
        && closed == 0
        && view_sizes.iter().all(|&s| s == n)
        && fresh_keys == Some(n);
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
