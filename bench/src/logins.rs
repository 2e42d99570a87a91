//! `logins`: `POST /api/v1/sessions` at a steady rate as the seeded users (`fawkes seed`'s
//! `{prefix}-{i}@bench.invalid`), to load the server with argon2 verifications while another
//! scenario measures. Raise the server's login rate limits first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Target;
use crate::stats;

pub(crate) async fn run(
    target: &Target,
    rate: f64,
    users: usize,
    prefix: &str,
    password: &str,
    duration: Duration,
) -> Result<(), String> {
    if !target.server.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", target.server));
    }
    println!("logins: {rate}/s for {duration:?}");
    let before = target.server_pid.and_then(stats::sample);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    let (results_tx, mut results_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut i = 0usize;
    while started.elapsed() < duration {
        tick.tick().await;
        let body = serde_json::json!({"email": format!("{prefix}-{}@bench.invalid", i % users.max(1)), "password": password}).to_string();
        i += 1;
        let (server, tx) = (target.server, results_tx.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = async {
                let stream = TcpStream::connect(server)
                    .await
                    .map_err(|e| e.to_string())?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                let request = http::Request::post("/api/v1/sessions")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| e.to_string())?;
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let _ = response.into_body().collect().await;
                Ok::<u16, String>(status)
            }
            .await;
            let _ = tx.send((outcome.unwrap_or(0), sent.elapsed()));
        });
    }
    drop(results_tx);
    let (mut latencies, mut statuses) = (Vec::new(), BTreeMap::<u16, u64>::new());
    while let Some((status, latency)) = results_rx.recv().await {
        *statuses.entry(status).or_default() += 1;
        latencies.push(latency);
    }
    latencies.sort();
    let after = target.server_pid.and_then(stats::sample);
    println!(
        "logins:              {} in {:.2}s; statuses {statuses:?}",
        latencies.len(),
        started.elapsed().as_secs_f64()
    );
    stats::print_latency(&latencies);
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "server CPU:          {:.2}s = {:.1} ms per login",
            a.cpu - b.cpu,
            (a.cpu - b.cpu) * 1e3 / latencies.len().max(1) as f64
        );
    }
    Ok(())
}
