//! Helpers shared by the adapter's tests: linked nodes, and polling with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use fawkes_redis::{RedisAdapter, RedisConfig};
use fawkes_runtime::Adapter as _;
use fawkes_runtime::testing::{InboundProbe, inbound_probe};

/// How long a node has to link to Redis, or to relink after it returns. The design target is
/// under 5 s (backoff capped at 1 s); the tests allow 10 s so a slow machine does not fail them.
pub const LINK_WITHIN: Duration = Duration::from_secs(10);

/// A node named `name` on the Redis server at `url`, started on an inbound probe and linked.
pub async fn node(url: &str, name: &str) -> (Arc<RedisAdapter>, InboundProbe) {
    let adapter =
        Arc::new(RedisAdapter::new(RedisConfig::new(url, name)).expect("a valid configuration"));
    let (inbound, probe) = inbound_probe(1 << 17);
    adapter.start(inbound);
    assert!(
        adapter.connected(LINK_WITHIN).await,
        "{name} did not link to Redis at {url} within {LINK_WITHIN:?}: {:?}",
        adapter.stats()
    );
    (adapter, probe)
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
