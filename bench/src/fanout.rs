//! `fanout`: S subscribers on one topic; P publishers push `message:new` at R messages per
//! second each for a while; the topic broadcasts each to every subscriber. Every payload
//! carries its send time, so subscribers measure delivery latency. Reports deliveries per
//! second, delivered versus expected, latency percentiles, and server CPU per 100k deliveries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::Target;
use crate::client::{self, Sink, Stream, parse};
use crate::stats;

async fn joined(
    target: &Target,
    token: &str,
    i: usize,
    topic: &str,
) -> Result<(Sink, Stream), String> {
    let (mut sink, mut stream) = client::connect(
        target.server,
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

/// The `"t"` of a `message:new` broadcast frame, without parsing the whole frame.
fn send_time(frame: &str) -> Option<u64> {
    if !frame.starts_with("[null,null,") || !frame.contains("\"message:new\"") {
        return None;
    }
    let rest = &frame[frame.find("\"t\":")? + 4..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    target: &Target,
    subscribers: usize,
    publishers: usize,
    rate: f64,
    topic: &str,
    duration: Duration,
) -> Result<(), String> {
    let tokens = target.tokens()?;
    let base = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = Vec::new();
    for i in 0..subscribers {
        let (_sink, mut stream) = joined(target, &tokens[i % tokens.len()], i, topic).await?;
        let (latencies, delivered) = (latencies.clone(), delivered.clone());
        let mut stop = stop_rx.clone();
        readers.push(tokio::spawn(async move {
            let _keep = _sink;
            let mut mine = Vec::new();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    message = stream.next() => {
                        let Some(Ok(Message::Text(t))) = message else {
                            if message.is_none() { break; }
                            continue;
                        };
                        // Read only the send time: the generator must stay cheaper than the server.
                        if let Some(sent) = send_time(t.as_str()) {
                            let now = base.elapsed().as_micros() as u64;
                            mine.push(Duration::from_micros(now.saturating_sub(sent)));
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            if let Ok(mut all) = latencies.lock() {
                all.extend(mine);
            }
        }));
    }
    let mut pubs = Vec::new();
    for p in 0..publishers {
        let i = subscribers + p;
        pubs.push(joined(target, &tokens[i % tokens.len()], i, topic).await?);
    }
    println!(
        "fanout: {subscribers} subscribers, {publishers} publishers × {rate} msg/s on {topic} for {duration:?}"
    );
    let sent = Arc::new(AtomicU64::new(0));
    let before = target.server_pid.and_then(stats::sample);
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
                let payload = json!({"t": t, "pub": p, "seq": r, "body": "fan-out payload of a typical chat message"});
                if client::send(&mut sink, Value::from("1"), &r.to_string(), &topic, "message:new", payload).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            drain.abort();
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let publishing = started.elapsed();
    // Let deliveries finish: until the count stops rising (at most 10 s).
    let expected = sent.load(Ordering::Relaxed) * subscribers as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = target.server_pid.and_then(stats::sample);
    let own_after = stats::own();
    let _ = stop_tx.send(true);
    for reader in readers {
        let _ = reader.await;
    }
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort();
    let got = delivered.load(Ordering::Relaxed);
    println!(
        "messages sent:       {} in {:.2}s; deliveries {got} of {expected} expected ({:.0}/s)",
        sent.load(Ordering::Relaxed),
        publishing.as_secs_f64(),
        got as f64 / publishing.as_secs_f64()
    );
    stats::print_latency(&latencies);
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "server CPU:          {:.2}s = {:.3} s per 100k deliveries",
            a.cpu - b.cpu,
            (a.cpu - b.cpu) * 100_000.0 / (got.max(1) as f64)
        );
    }
    if let (Some(b), Some(a)) = (own_before, own_after) {
        println!("load generator CPU:  {:.2}s", a.cpu - b.cpu);
    }
    if got == expected {
        Ok(())
    } else {
        Err(format!("{} deliveries lost", expected - got))
    }
}
