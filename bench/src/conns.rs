//! `conns`: N connections, each joins one of K topics, then all hold (heartbeating) for a
//! while. Reports the connect+join rate, join latency percentiles, failures, and the server's
//! RSS before and after → bytes per idle joined connection.
//!
//! Several `conns` processes can hold their connections at the same time (one per node of a
//! cluster, say, since one process cannot open more than its file limit): each given the same
//! `--barrier DIR` and `--parties N` waits, once its own joins are answered, until N processes
//! have got there, and only then starts its hold; after the hold each reports how many of its
//! connections are still open.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::Target;
use crate::client::{self, parse};
use crate::stats::{self, mib, percentile};

pub(crate) async fn run(
    target: &Target,
    n: usize,
    topics: usize,
    prefix: &str,
    concurrency: usize,
    hold: Duration,
    barrier: Option<(&Path, usize)>,
) -> Result<(), String> {
    let tokens = Arc::new(target.tokens()?);
    let server_before = target.server_pid.and_then(stats::sample);
    let (joined, failed, closed, alive) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    println!("conns: {n} connections over {topics} topics ({concurrency} at a time)");
    let started = Instant::now();
    for i in 0..n {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (target, tokens, joined, failed, closed, alive, latencies) = (
            target.clone(),
            tokens.clone(),
            joined.clone(),
            failed.clone(),
            closed.clone(),
            alive.clone(),
            latencies.clone(),
        );
        let mut stop = stop_rx.clone();
        let topic = format!("{prefix}{}", i % topics.max(1));
        tokio::spawn(async move {
            let mut permit = Some(permit);
            let token = &tokens[i % tokens.len()];
            let Ok((mut sink, mut stream)) = client::connect(
                target.server,
                &target.path,
                token,
                client::source(i, target.sources),
            )
            .await
            else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let sent = Instant::now();
            let _ = client::send(&mut sink, json!("1"), "1", &topic, "phx_join", json!({})).await;
            let mut heartbeat = client::Heartbeat::start().await;
            let mut is_alive = false;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    () = heartbeat.due() => heartbeat.send(&mut sink).await,
                    message = stream.next() => {
                        let Some(Ok(message)) = message else {
                            closed.fetch_add(1, Ordering::Relaxed);
                            if permit.is_some() {
                                // Closed before the join was answered: a failure.
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            if is_alive {
                                alive.fetch_sub(1, Ordering::Relaxed);
                            }
                            break;
                        };
                        if permit.is_some()
                            && let Message::Text(text) = message
                            && let Some(frame) = parse(text.as_str())
                            && frame.event == "phx_reply"
                            && frame.msg_ref == "1"
                        {
                            if let Ok(mut l) = latencies.lock() {
                                l.push(sent.elapsed());
                            }
                            is_alive = frame.payload["status"] == "ok";
                            let counter = if is_alive { &joined } else { &failed };
                            counter.fetch_add(1, Ordering::Relaxed);
                            if is_alive {
                                alive.fetch_add(1, Ordering::Relaxed);
                            }
                            permit = None;
                        }
                    }
                }
            }
        });
    }
    while joined.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_phase = started.elapsed();
    if let Some((dir, parties)) = barrier {
        let waited = Instant::now();
        wait_for_parties(dir, parties).await?;
        println!(
            "barrier:             {parties} processes joined ({:.2}s waited for the others)",
            waited.elapsed().as_secs_f64()
        );
    }
    // Let the server settle (allocator, queues) before reading its memory.
    tokio::time::sleep(hold).await;
    let server_after = target.server_pid.and_then(stats::sample);
    // Joined connections the server has not closed since.
    let alive = alive.load(Ordering::Relaxed);
    println!(
        "alive after hold:    {alive} of {n} on {} (held {hold:?})",
        target.server
    );
    let _ = stop_tx.send(true);
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort();
    let (ok, bad) = (
        joined.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "joined:              {ok} of {n} in {:.2}s ({:.0} connect+join/s); failures {bad}; closed by server {}",
        join_phase.as_secs_f64(),
        n as f64 / join_phase.as_secs_f64(),
        closed.load(Ordering::Relaxed)
    );
    println!(
        "join latency:        p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default()
    );
    if let (Some(before), Some(after)) = (server_before, server_after) {
        println!(
            "server:              RSS {} -> {} ({} bytes per joined connection), CPU {:.2}s",
            mib(before.rss),
            mib(after.rss),
            after.rss.saturating_sub(before.rss) / ok.max(1) as u64,
            after.cpu - before.cpu
        );
    }
    if ok == n && alive == n {
        Ok(())
    } else {
        Err(format!(
            "{bad} connections failed, {} closed",
            closed.load(Ordering::Relaxed)
        ))
    }
}

/// Marks this process as done joining in `dir` and waits until `parties` processes have.
async fn wait_for_parties(dir: &Path, parties: usize) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mark = dir.join(format!("joined-{}", std::process::id()));
    std::fs::write(&mark, b"").map_err(|e| format!("{}: {e}", mark.display()))?;
    loop {
        let there = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("joined-"))
            .count();
        if there >= parties {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
