//! `abuse`: a legitimate client's service while three hostile clients attack the server.
//!
//! The legitimate client (source 127.0.0.2) keeps one socket and joins and leaves a room every
//! `PROBE_EVERY`, timing each join reply, and asks `GET /health` on a fresh TCP connection as
//! often, timing the answer. It runs alone for a baseline, then beside three attackers:
//! - *huge topics* (127.0.0.3): one socket after another joining topics of `topic_bytes` bytes
//!   as fast as the server takes them;
//! - *half-open* (127.0.0.4): holds `half_open` TCP connections that send part of an upgrade
//!   request and then one more header byte every 2 s, reopening any the server closes or
//!   refuses after `--half-open-retry-ms`;
//! - *socket loop* (127.0.0.5): opens sockets with one token in a loop and keeps them.
//!
//! Reports the legitimate client's join and `/health` latency in both phases and its failures,
//! what each attacker got, and the server's RSS before, at the end of the attack and after it.
//! The verdict ([`verdict`]) covers both sides, each check printed: the legitimate client saw
//! no failure, no join of a topic over `--max-topic-bytes` was accepted, the socket loop opened
//! at most `--max-sockets-per-id` sockets, and (with `--server-pid`) the server's RSS grew by
//! at most `--max-rss-growth-mib` during the attack. The bounds default to the server's
//! defaults; an unfixed server, whose legitimate client saw no failure either, fails the rest.

mod verdict;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::Target;
use crate::client::{self, parse};
use crate::stats::{self, mib, percentile};

/// How often the legitimate client probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// How long one probe may take before it counts as a failure.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// What the attackers do.
pub(crate) struct Attack {
    /// Seconds of legitimate traffic alone.
    pub(crate) baseline: Duration,
    /// Seconds of attack.
    pub(crate) duration: Duration,
    /// Bytes of each huge topic.
    pub(crate) topic_bytes: usize,
    /// Half-open connections to hold.
    pub(crate) half_open: usize,
    /// How long the half-open attacker waits before reopening a connection the server closed.
    pub(crate) half_open_retry: Duration,
    /// Most sockets the socket loop keeps open.
    pub(crate) socket_loop_max: usize,
    /// The bounds the verdict holds the attackers to.
    pub(crate) bounds: verdict::Bounds,
}

pub(crate) use verdict::Bounds;

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Latencies and failures of one kind of probe, per phase (0 baseline, 1 attack).
#[derive(Default)]
struct Probes {
    latencies: [Vec<Duration>; 2],
    failures: [u64; 2],
}

impl Probes {
    fn record(&mut self, phase: usize, outcome: Option<Duration>) {
        match outcome {
            Some(latency) => self.latencies[phase].push(latency),
            None => self.failures[phase] += 1,
        }
    }

    fn line(&mut self, phase: usize) -> String {
        let l = &mut self.latencies[phase];
        l.sort();
        format!(
            "n {:>4}  p50 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}  failures {}",
            l.len(),
            percentile(l, 50.0),
            percentile(l, 99.0),
            l.last().copied().unwrap_or_default(),
            self.failures[phase]
        )
    }
}

/// Counters the attackers keep.
#[derive(Default)]
struct Seen {
    huge_joins_sent: AtomicU64,
    huge_joins_accepted: AtomicU64,
    huge_sockets: AtomicU64,
    huge_closes: Mutex<BTreeMap<u16, u64>>,
    half_open_now: AtomicUsize,
    half_open_peak: AtomicUsize,
    half_open_closed: AtomicU64,
    half_open_refused: AtomicU64,
    loop_opened: AtomicU64,
    loop_refused: Mutex<BTreeMap<String, u64>>,
}

pub(crate) async fn run(target: &Target, attack: Attack) -> Result<(), String> {
    if !target.server.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", target.server));
    }
    let tokens = target.tokens()?;
    if tokens.len() < 3 {
        return Err("abuse needs at least three tokens (three users)".into());
    }
    println!(
        "abuse: {:?} of legitimate traffic alone, then {:?} beside: joins of {}-byte topics, \
         {} half-open connections, a socket loop (up to {} sockets on one token)",
        attack.baseline,
        attack.duration,
        attack.topic_bytes,
        attack.half_open,
        attack.socket_loop_max
    );
    let before = target.server_pid.and_then(stats::sample);
    let phase = Arc::new(AtomicUsize::new(0));
    let stop_probes = Arc::new(AtomicBool::new(false));
    let joins = Arc::new(Mutex::new(Probes::default()));
    let health = Arc::new(Mutex::new(Probes::default()));
    let probes = [
        tokio::spawn(probe_joins(
            target.clone(),
            tokens[0].clone(),
            phase.clone(),
            stop_probes.clone(),
            joins.clone(),
        )),
        tokio::spawn(probe_health(
            target.server,
            phase.clone(),
            stop_probes.clone(),
            health.clone(),
        )),
    ];
    tokio::time::sleep(attack.baseline).await;

    phase.store(1, Ordering::Relaxed);
    let seen = Arc::new(Seen::default());
    let stop_attack = Arc::new(AtomicBool::new(false));
    let mut attackers = vec![
        tokio::spawn(huge_topics(
            target.clone(),
            tokens[1].clone(),
            attack.topic_bytes,
            stop_attack.clone(),
            seen.clone(),
        )),
        tokio::spawn(socket_loop(
            target.clone(),
            tokens[2].clone(),
            attack.socket_loop_max,
            stop_attack.clone(),
            seen.clone(),
        )),
    ];
    for _ in 0..attack.half_open {
        attackers.push(tokio::spawn(half_open(
            target.server,
            attack.half_open_retry,
            stop_attack.clone(),
            seen.clone(),
        )));
    }
    let mut peak_rss = 0;
    let attack_started = Instant::now();
    while attack_started.elapsed() < attack.duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(sample) = target.server_pid.and_then(stats::sample) {
            peak_rss = peak_rss.max(sample.rss);
        }
    }
    let during = target.server_pid.and_then(stats::sample);
    stop_probes.store(true, Ordering::Relaxed);
    for probe in probes {
        let _ = probe.await;
    }
    stop_attack.store(true, Ordering::Relaxed);
    for attacker in attackers {
        let _ = tokio::time::timeout(Duration::from_secs(10), attacker).await;
    }
    // Let the server notice the closes and give memory back before reading it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = target.server_pid.and_then(stats::sample);

    let (mut joins, mut health) = (
        std::mem::take(&mut *joins.lock().map_err(|e| e.to_string())?),
        std::mem::take(&mut *health.lock().map_err(|e| e.to_string())?),
    );
    println!("legit join (baseline):      {}", joins.line(0));
    println!("legit join (under attack):  {}", joins.line(1));
    println!("legit /health (baseline):   {}", health.line(0));
    println!("legit /health (attack):     {}", health.line(1));
    println!(
        "huge topics:   {} joins sent on {} sockets, {} accepted; server closes {:?}",
        seen.huge_joins_sent.load(Ordering::Relaxed),
        seen.huge_sockets.load(Ordering::Relaxed),
        seen.huge_joins_accepted.load(Ordering::Relaxed),
        seen.huge_closes
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    );
    println!(
        "half-open:     at most {} open at once, {} closed by the server, {} refused at connect",
        seen.half_open_peak.load(Ordering::Relaxed),
        seen.half_open_closed.load(Ordering::Relaxed),
        seen.half_open_refused.load(Ordering::Relaxed)
    );
    println!(
        "socket loop:   {} sockets opened, refusals {:?}",
        seen.loop_opened.load(Ordering::Relaxed),
        seen.loop_refused
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    );
    if let (Some(b), Some(d), Some(a)) = (before, during, after) {
        println!(
            "server:        RSS {} before, {} at most during, {} at the end of the attack, {} after; CPU {:.2}s",
            mib(b.rss),
            mib(peak_rss.max(d.rss)),
            mib(d.rss),
            mib(a.rss),
            a.cpu - b.cpu
        );
    }
    let observed = verdict::Observed {
        legit_failures: joins.failures[0]
            + joins.failures[1]
            + health.failures[0]
            + health.failures[1],
        legit_answered_under_attack: !joins.latencies[1].is_empty()
            && !health.latencies[1].is_empty(),
        topic_bytes: attack.topic_bytes,
        huge_joins_sent: seen.huge_joins_sent.load(Ordering::Relaxed),
        huge_joins_accepted: seen.huge_joins_accepted.load(Ordering::Relaxed),
        sockets_on_one_token: seen.loop_opened.load(Ordering::Relaxed),
        rss_growth: match (before, during) {
            (Some(b), Some(d)) => Some(peak_rss.max(d.rss).saturating_sub(b.rss)),
            _ => None,
        },
    };
    let checks = verdict::checks(&observed, &attack.bounds);
    for check in &checks {
        println!("{}", check.line());
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.passed == Some(false))
        .map(|c| c.what.as_str())
        .collect();
    if failed.is_empty() {
        println!("result: PASS (every check held)");
        Ok(())
    } else {
        println!("result: FAIL ({} of {} checks)", failed.len(), checks.len());
        Err(format!("failed: {}", failed.join("; ")))
    }
}

/// One socket joining and leaving a room every [`PROBE_EVERY`], timing each join reply. A
/// closed socket is reconnected (and the failure counted).
async fn probe_joins(
    target: Target,
    token: String,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    probes: Arc<Mutex<Probes>>,
) {
    let record = |outcome| {
        if let Ok(mut p) = probes.lock() {
            p.record(phase.load(Ordering::Relaxed), outcome);
        }
    };
    let mut next_ref = 0u64;
    'connect: while !stop.load(Ordering::Relaxed) {
        let Ok(Ok((mut sink, mut stream))) = tokio::time::timeout(
            PROBE_LIMIT,
            client::connect(target.server, &target.path, &token, addr(2)),
        )
        .await
        else {
            record(None);
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            next_ref += 1;
            let (join_ref, topic) = (next_ref.to_string(), format!("room:probe-{next_ref}"));
            let sent = Instant::now();
            let join = client::send(
                &mut sink,
                json!(join_ref),
                &join_ref,
                &topic,
                "phx_join",
                json!({}),
            );
            if join.await.is_err() {
                record(None);
                continue 'connect;
            }
            let replied = tokio::time::timeout(PROBE_LIMIT, async {
                while let Some(Ok(message)) = stream.next().await {
                    if let Message::Text(text) = message
                        && let Some(frame) = parse(text.as_str())
                        && frame.event == "phx_reply"
                        && frame.msg_ref == join_ref.as_str()
                    {
                        return frame.payload["status"] == "ok";
                    }
                }
                false
            })
            .await;
            if replied != Ok(true) {
                record(None);
                continue 'connect;
            }
            record(Some(sent.elapsed()));
            next_ref += 1;
            let leave_ref = next_ref.to_string();
            let leave = client::send(
                &mut sink,
                json!(join_ref),
                &leave_ref,
                &topic,
                "phx_leave",
                json!({}),
            );
            if leave.await.is_err() {
                continue 'connect;
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
}

/// `GET /health` on a fresh connection every [`PROBE_EVERY`], timing the whole exchange.
async fn probe_health(
    server: SocketAddr,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    probes: Arc<Mutex<Probes>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let answered = tokio::time::timeout(PROBE_LIMIT, async {
            let mut stream = connect_from(server, addr(2)).await?;
            stream
                .write_all(b"GET /health HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.ok()?;
            response.starts_with(b"HTTP/1.1 200").then_some(())
        })
        .await;
        let outcome = matches!(answered, Ok(Some(()))).then(|| sent.elapsed());
        if let Ok(mut p) = probes.lock() {
            p.record(phase.load(Ordering::Relaxed), outcome);
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

async fn connect_from(server: SocketAddr, from: IpAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(from, 0)).ok()?;
    socket.connect(server).await.ok()
}

/// Sockets, one after another, each joining up to 100 topics of `bytes` bytes.
async fn huge_topics(
    target: Target,
    token: String,
    bytes: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) {
    let filler = "x".repeat(bytes.saturating_sub(16));
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut sink, mut stream)) =
            client::connect(target.server, &target.path, &token, addr(3)).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        seen.huge_sockets.fetch_add(1, Ordering::Relaxed);
        let reader_seen = seen.clone();
        // Count accepted joins and the close code while the writer floods.
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => {
                        if let Some(frame) = parse(text.as_str())
                            && frame.event == "phx_reply"
                            && frame.payload["status"] == "ok"
                        {
                            reader_seen
                                .huge_joins_accepted
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Message::Close(frame) => {
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        if let Ok(mut closes) = reader_seen.huge_closes.lock() {
                            *closes.entry(code).or_default() += 1;
                        }
                        return;
                    }
                    _ => {}
                }
            }
            if let Ok(mut closes) = reader_seen.huge_closes.lock() {
                *closes.entry(1006).or_default() += 1;
            }
        });
        for k in 0..100u32 {
            if stop.load(Ordering::Relaxed) || reader.is_finished() {
                break;
            }
            let topic = format!("room:{k:08}{filler}");
            let r = k.to_string();
            if client::send(&mut sink, json!(r), &r, &topic, "phx_join", json!({}))
                .await
                .is_err()
            {
                break;
            }
            seen.huge_joins_sent.fetch_add(1, Ordering::Relaxed);
        }
        drop(sink);
        let mut reader = reader;
        if tokio::time::timeout(Duration::from_secs(5), &mut reader)
            .await
            .is_err()
        {
            // The server kept the socket: drop it (the next one starts over).
            reader.abort();
        }
    }
}

/// One connection that sends part of an upgrade request, then a header byte every 2 s; reopened
/// whenever the server closes it.
async fn half_open(server: SocketAddr, retry: Duration, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    while !stop.load(Ordering::Relaxed) {
        let Some(mut stream) = connect_from(server, addr(4)).await else {
            seen.half_open_refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let now = seen.half_open_now.fetch_add(1, Ordering::Relaxed) + 1;
        seen.half_open_peak.fetch_max(now, Ordering::Relaxed);
        let head = b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nhost: bench\r\nx-slow: ";
        let mut open = stream.write_all(head).await.is_ok();
        let mut buf = [0u8; 256];
        while open && !stop.load(Ordering::Relaxed) {
            tokio::select! {
                read = stream.read(&mut buf) => open = matches!(read, Ok(n) if n > 0),
                () = tokio::time::sleep(Duration::from_secs(2)) => {
                    open = stream.write_all(b"a").await.is_ok();
                }
            }
        }
        seen.half_open_now.fetch_sub(1, Ordering::Relaxed);
        if !stop.load(Ordering::Relaxed) {
            // Refused or closed: try again after `retry` (a second by default, as a client that
            // wants to hold connections would; much less is a connection flood).
            seen.half_open_closed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(retry).await;
        }
    }
}

/// Opens sockets with one token in a loop and keeps them (up to `max`).
async fn socket_loop(
    target: Target,
    token: String,
    max: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) {
    let mut kept = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if kept.len() >= max {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        match client::connect(target.server, &target.path, &token, addr(5)).await {
            Ok(socket) => {
                seen.loop_opened.fetch_add(1, Ordering::Relaxed);
                kept.push(socket);
            }
            Err(e) => {
                // "upgrade: HTTP error: 429 Too Many Requests" → the status.
                let why = e
                    .split_whitespace()
                    .find(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()))
                    .unwrap_or("other")
                    .to_owned();
                if let Ok(mut refused) = seen.loop_refused.lock() {
                    *refused.entry(why).or_default() += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
