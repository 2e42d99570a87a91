//! Helpers shared by the adapter's tests: linked nodes, polling with a deadline, what was
//! logged, and Redis's side of things.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fawkes_redis::{RedisAdapter, RedisConfig};
use fawkes_runtime::Adapter as _;
use fawkes_runtime::testing::{InboundProbe, inbound_probe};

/// How long a node has to link to Redis, or to relink after it returns. The design target is
/// under 5 s (backoff capped at 1 s); the tests allow 10 s so a slow machine does not fail them.
pub const LINK_WITHIN: Duration = Duration::from_secs(10);

/// A node named `name` on the Redis server at `url`, started on an inbound probe and linked.
pub async fn node(url: &str, name: &str) -> (Arc<RedisAdapter>, InboundProbe) {
    node_with(RedisConfig::new(url, name)).await
}

/// A node made from `config`, started on an inbound probe and linked.
pub async fn node_with(config: RedisConfig) -> (Arc<RedisAdapter>, InboundProbe) {
    let what = format!("{config:?}");
    let adapter = Arc::new(RedisAdapter::new(config).expect("a valid configuration"));
    let (inbound, probe) = inbound_probe(1 << 17);
    adapter.start(inbound);
    assert!(
        adapter.connected(LINK_WITHIN).await,
        "{what} did not link to Redis within {LINK_WITHIN:?}: {:?}",
        adapter.stats()
    );
    (adapter, probe)
}

/// A plain connection to the test server, for the test's own commands.
pub fn admin(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("the server's URL")
        .get_connection()
        .expect("a connection to the test server")
}

/// Connections the server accepted so far (`INFO stats`).
pub fn connections_accepted(admin: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(admin)
        .expect("INFO stats");
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total_connections_received in {info}"))
}

/// Everything logged, as text (see [`Log::install`]).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Captures what the test binary logs at info level and above, from now on; once per
    /// binary (it becomes the global subscriber).
    pub fn install() -> Self {
        static LOG: std::sync::OnceLock<Log> = std::sync::OnceLock::new();
        LOG.get_or_init(|| {
            let log = Log::default();
            let writer = log.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            log
        })
        .clone()
    }

    /// Lines mentioning `text` logged for `node`.
    pub fn count(&self, node: &str, text: &str) -> usize {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains(text) && line.contains(&format!("node={node}")))
            .count()
    }
}

/// Polls `check` until it holds, panicking with `what` after `within`.
pub async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A frame with a text body.
pub fn frame(text: impl Into<String>) -> bytes::Bytes {
    bytes::Bytes::from(text.into())
}

/// The next frame the probe gets, as text; panics with `what` if none comes.
pub async fn next(probe: &mut InboundProbe, what: &str) -> String {
    let frame = probe
        .recv()
        .await
        .unwrap_or_else(|| panic!("expected {what}"));
    String::from_utf8(frame.to_vec()).expect("a text frame")
}
