//! `churn`: W workers loop connect → join → leave → close for a while. Reports cycles per
//! second, server CPU per cycle, and the server's RSS before and after (a leak shows as growth
//! that does not come back).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::Target;
use crate::client::{self, Stream, parse};
use crate::stats::{self, mib};

/// Waits for the reply to `msg_ref` (or any close); `Ok(status)`.
async fn reply(stream: &mut Stream, msg_ref: &str) -> Result<String, String> {
    while let Some(message) = stream.next().await {
        if let Ok(Message::Text(text)) = message
            && let Some(frame) = parse(text.as_str())
            && frame.event == "phx_reply"
            && frame.msg_ref == msg_ref
        {
            return Ok(frame.payload["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned());
        }
    }
    Err("closed".into())
}

async fn cycle(target: &Target, token: &str, i: usize, topic: &str) -> Result<(), String> {
    let (mut sink, mut stream) = client::connect(
        target.server,
        &target.path,
        token,
        client::source(i, target.sources),
    )
    .await?;
    client::send(&mut sink, json!("1"), "1", topic, "phx_join", json!({})).await?;
    if reply(&mut stream, "1").await? != "ok" {
        return Err("join refused".into());
    }
    client::send(&mut sink, json!("1"), "2", topic, "phx_leave", json!({})).await?;
    reply(&mut stream, "2").await?;
    sink.close().await.map_err(|e| e.to_string())?;
    // Read until the server closes too.
    while let Some(Ok(_)) = stream.next().await {}
    Ok(())
}

pub(crate) async fn run(
    target: &Target,
    workers: usize,
    topic: &str,
    duration: Duration,
) -> Result<(), String> {
    let tokens = Arc::new(target.tokens()?);
    let (cycles, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let before = target.server_pid.and_then(stats::sample);
    println!(
        "churn: {workers} workers cycling connect/join/leave/close on {topic} for {duration:?}"
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (target, tokens, cycles, errors) = (
            target.clone(),
            tokens.clone(),
            cycles.clone(),
            errors.clone(),
        );
        let topic = topic.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut n = w;
            while started.elapsed() < duration {
                match cycle(&target, &tokens[n % tokens.len()], n, &topic).await {
                    Ok(()) => cycles.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                n += workers;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    // Closed connections finish in the background; give the server a moment to let go.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = target.server_pid.and_then(stats::sample);
    let done = cycles.load(Ordering::Relaxed);
    println!(
        "cycles:              {done} in {:.2}s ({:.0}/s); errors {}; connect retries {}",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed),
        client::CONNECT_RETRIES.load(Ordering::Relaxed)
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "server:              CPU {:.2}s = {:.1} µs per cycle; RSS {} -> {} ({:+.1}%)",
            a.cpu - b.cpu,
            (a.cpu - b.cpu) * 1e6 / done.max(1) as f64,
            mib(b.rss),
            mib(a.rss),
            (a.rss as f64 - b.rss as f64) * 100.0 / b.rss.max(1) as f64
        );
    }
    Ok(())
}
