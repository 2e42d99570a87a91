//! `echo`: C connections each push an event and wait for its reply, in a closed loop, for a
//! while. Reports round trips per second, latency percentiles, and server CPU per round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::Target;
use crate::client::{self, parse};
use crate::stats;

pub(crate) async fn run(
    target: &Target,
    connections: usize,
    topic: &str,
    event: &str,
    duration: Duration,
) -> Result<(), String> {
    let tokens = target.tokens()?;
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    // Connect and join everyone first, then measure only the loop.
    let mut clients = Vec::new();
    for i in 0..connections {
        let (mut sink, mut stream) = client::connect(
            target.server,
            &target.path,
            &tokens[i % tokens.len()],
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
                        if f.payload["status"] != "ok" {
                            return Err(format!("join {topic}: {}", f.payload));
                        }
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err("connection closed while joining".into()),
            }
        }
        clients.push((sink, stream));
    }
    println!("echo: {connections} connections pushing {event} on {topic} for {duration:?}");
    let before = target.server_pid.and_then(stats::sample);
    let own_before = stats::own();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (mut sink, mut stream) in clients {
        let (errors, latencies) = (errors.clone(), latencies.clone());
        let event = event.to_owned();
        let topic = topic.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let payload = json!({"n": 1, "body": "hello, fawkes"});
            let mut r = 1u64;
            while Instant::now() < deadline {
                r += 1;
                let msg_ref = r.to_string();
                let sent = Instant::now();
                if client::send(
                    &mut sink,
                    json!("1"),
                    &msg_ref,
                    &topic,
                    &event,
                    payload.clone(),
                )
                .await
                .is_err()
                {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                loop {
                    match stream.next().await {
                        Some(Ok(Message::Text(t))) => {
                            if let Some(f) = parse(t.as_str())
                                && f.event == "phx_reply"
                                && f.msg_ref == msg_ref.as_str()
                            {
                                if f.payload["status"] != "ok" {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                                mine.push(sent.elapsed());
                                break;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
            if let Ok(mut all) = latencies.lock() {
                all.extend(mine);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let after = target.server_pid.and_then(stats::sample);
    let own_after = stats::own();
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort();
    let trips = latencies.len() as f64;
    println!(
        "round trips:         {} in {:.2}s ({:.0}/s); errors {}",
        latencies.len(),
        elapsed.as_secs_f64(),
        trips / elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed)
    );
    stats::print_latency(&latencies);
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "server CPU:          {:.2}s = {:.1} µs per round trip",
            a.cpu - b.cpu,
            (a.cpu - b.cpu) * 1e6 / trips.max(1.0)
        );
    }
    if let (Some(b), Some(a)) = (own_before, own_after) {
        println!("load generator CPU:  {:.2}s", a.cpu - b.cpu);
    }
    Ok(())
}
