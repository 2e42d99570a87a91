//! The runtime's adapter conformance suite, over a real redis-server.

mod common;

use std::sync::Arc;

use fawkes_redis::testing::RedisServer;
use fawkes_redis::{RedisAdapter, RedisConfig};
use fawkes_runtime::Adapter;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_adapter_keeps_the_adapter_contract() {
    let redis = RedisServer::start();
    let url = redis.url();
    fawkes_runtime::testing::adapter_conformance(|name| {
        let adapter = Arc::new(
            RedisAdapter::new(RedisConfig::new(&url, name)).expect("a valid configuration"),
        );
        // The suite publishes right after starting its nodes, and frames published before
        // the link is up are dropped by design: each node links first. (The suite's maker is
        // not async; the adapter's tasks run on the other worker meanwhile.)
        let linked = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(adapter.connected(common::LINK_WITHIN))
        });
        assert!(
            linked,
            "{name} did not link to Redis: {:?}",
            adapter.stats()
        );
        adapter as Arc<dyn Adapter>
    })
    .await;
}
