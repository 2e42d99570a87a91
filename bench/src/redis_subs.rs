//! `redis-subs`: what per-topic subscription would cost Redis. One connection, as a node's
//! subscriber would be, sends `SUBSCRIBE t` then `UNSUBSCRIBE t` for N distinct topics (what a
//! node does when a topic gets its first local subscriber and loses its last), `--pipeline`
//! pairs per round trip, optionally while already holding `--held` other subscriptions.
//! Reports pairs per second and, with `--redis-pid`, Redis's CPU per pair. No Fawkes server is
//! involved; the commands are written in RESP by hand (no Redis client library).

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::stats;

/// Appends `command topic` in RESP.
fn push_command(buf: &mut Vec<u8>, command: &str, topic: &str) {
    buf.extend_from_slice(
        format!(
            "*2\r\n${}\r\n{command}\r\n${}\r\n{topic}\r\n",
            command.len(),
            topic.len()
        )
        .as_bytes(),
    );
}

/// Each answer to (UN)SUBSCRIBE of one channel is `*3`, `$9`, `subscribe`, `$len`, the
/// channel, `:count`: six lines.
const LINES_PER_ANSWER: usize = 6;

/// Sends `buf` and reads `answers` answers.
async fn exchange(stream: &mut TcpStream, buf: &[u8], answers: usize) -> Result<(), String> {
    stream.write_all(buf).await.map_err(|e| e.to_string())?;
    let mut lines = 0;
    let mut read = vec![0u8; 64 * 1024];
    let mut first = true;
    while lines < answers * LINES_PER_ANSWER {
        let got = stream.read(&mut read).await.map_err(|e| e.to_string())?;
        if got == 0 {
            return Err("redis closed the connection".into());
        }
        if first && read[0] != b'*' {
            return Err(format!(
                "redis answered {:?}",
                String::from_utf8_lossy(&read[..got])
            ));
        }
        first = false;
        lines += read[..got].iter().filter(|&&b| b == b'\n').count();
    }
    Ok(())
}

pub(crate) async fn run(
    redis: SocketAddr,
    pairs: usize,
    pipeline: usize,
    held: usize,
    redis_pid: Option<u32>,
) -> Result<(), String> {
    if !redis.ip().is_loopback() {
        return Err(format!("{redis} is not a loopback address"));
    }
    let mut stream = TcpStream::connect(redis)
        .await
        .map_err(|e| format!("connect {redis}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let pipeline = pipeline.max(1);
    // Subscriptions held throughout, as a node with that many topics would.
    for chunk in (0..held).collect::<Vec<_>>().chunks(1000) {
        let mut buf = Vec::new();
        for i in chunk {
            push_command(&mut buf, "SUBSCRIBE", &format!("bench:held:{i}"));
        }
        exchange(&mut stream, &buf, chunk.len()).await?;
    }
    let cpu = || redis_pid.and_then(|pid| stats::cpu_seconds(&format!("/proc/{pid}/stat")));
    println!(
        "redis-subs: {pairs} SUBSCRIBE+UNSUBSCRIBE pairs of distinct topics, {pipeline} per round trip, {held} held"
    );
    let before = cpu();
    let started = Instant::now();
    let mut done = 0;
    let mut buf = Vec::new();
    while done < pairs {
        let batch = pipeline.min(pairs - done);
        buf.clear();
        for i in done..done + batch {
            let topic = format!("bench:topic:{i}");
            push_command(&mut buf, "SUBSCRIBE", &topic);
            push_command(&mut buf, "UNSUBSCRIBE", &topic);
        }
        exchange(&mut stream, &buf, 2 * batch).await?;
        done += batch;
    }
    let elapsed = started.elapsed();
    let after = cpu();
    println!(
        "pairs:               {done} in {:.2}s ({:.0} pairs/s)",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "redis-server CPU:    {:.2}s = {:.2} µs per SUBSCRIBE+UNSUBSCRIBE pair",
            a - b,
            (a - b) * 1e6 / done.max(1) as f64
        );
    }
    Ok(())
}
