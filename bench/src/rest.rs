//! `rest`: C keep-alive HTTP/1.1 connections send `GET PATH` (with a bearer token) in a closed
//! loop for a while. Reports requests per second, statuses, latency percentiles, and server
//! CPU per request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Target;
use crate::stats;

pub(crate) async fn run(
    target: &Target,
    path: &str,
    connections: usize,
    duration: Duration,
) -> Result<(), String> {
    if !target.server.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", target.server));
    }
    let tokens = target.tokens()?;
    let results = Arc::new(Mutex::new((Vec::new(), BTreeMap::<u16, u64>::new())));
    let before = target.server_pid.and_then(stats::sample);
    let own_before = stats::own();
    println!("rest: {connections} connections sending GET {path} for {duration:?}");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (server, token, results) = (
            target.server,
            tokens[c % tokens.len()].clone(),
            results.clone(),
        );
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let Ok(stream) = TcpStream::connect(server).await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, connection)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return;
            };
            tokio::spawn(connection);
            let (mut latencies, mut statuses) = (Vec::new(), BTreeMap::<u16, u64>::new());
            while started.elapsed() < duration {
                let request = http::Request::get(path.as_str())
                    .header("host", "bench")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Empty::<Bytes>::new());
                let Ok(request) = request else { break };
                let sent = Instant::now();
                let Ok(response) = sender.send_request(request).await else {
                    break;
                };
                let status = response.status().as_u16();
                if response.into_body().collect().await.is_err() {
                    break;
                }
                latencies.push(sent.elapsed());
                *statuses.entry(status).or_default() += 1;
            }
            if let Ok(mut all) = results.lock() {
                all.0.extend(latencies);
                for (s, n) in statuses {
                    *all.1.entry(s).or_default() += n;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let after = target.server_pid.and_then(stats::sample);
    let own_after = stats::own();
    let (mut latencies, statuses) = results.lock().map(|r| r.clone()).unwrap_or_default();
    latencies.sort();
    let n = latencies.len() as f64;
    println!(
        "requests:            {} in {:.2}s ({:.0}/s); statuses {statuses:?}",
        latencies.len(),
        elapsed.as_secs_f64(),
        n / elapsed.as_secs_f64()
    );
    stats::print_latency(&latencies);
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "server CPU:          {:.2}s = {:.1} µs per request",
            a.cpu - b.cpu,
            (a.cpu - b.cpu) * 1e6 / n.max(1.0)
        );
    }
    if let (Some(b), Some(a)) = (own_before, own_after) {
        println!("load generator CPU:  {:.2}s", a.cpu - b.cpu);
    }
    Ok(())
}
