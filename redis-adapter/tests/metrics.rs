//! The adapter's metrics, scraped from a Prometheus recorder across a Redis outage. Its own
//! test binary: the recorder is global to the process.

mod common;

use common::{LINK_WITHIN, eventually, frame, node};
use fawkes_redis::testing::RedisServer;
use fawkes_runtime::{Adapter as _, AdapterState};
use metrics_exporter_prometheus::PrometheusBuilder;

/// The value of the unlabelled series `name` in a Prometheus text scrape (0 when absent).
fn value(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
        .next()
        .unwrap_or(0.0)
}

#[tokio::test]
async fn an_outage_counts_one_reconnect_and_the_frames_it_dropped() {
    // Installed before the adapter is built: it registers its counters then.
    let recorder = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary");
    let mut redis = RedisServer::start();
    let (a, _on_a) = node(&redis.url(), "node-a").await;
    assert_eq!(
        value(&recorder.render(), "fawkes_redis_reconnects_total"),
        0.0
    );

    redis.stop();
    eventually(LINK_WITHIN, "the link is reported down", || {
        a.stats().state == AdapterState::Disconnected
    })
    .await;
    for _ in 0..10 {
        a.publish(frame("lost"));
    }
    eventually(LINK_WITHIN, "the outage's frames are dropped", || {
        a.stats().dropped >= 10
    })
    .await;

    redis.start_again();
    eventually(LINK_WITHIN, "the link is restored", || {
        a.stats().state == AdapterState::Connected
    })
    .await;
    let scrape = recorder.render();
    assert_eq!(
        value(&scrape, "fawkes_redis_reconnects_total"),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        value(&scrape, "fawkes_redis_frames_dropped_total"),
        a.stats().dropped as f64,
        "{scrape}"
    );
}
