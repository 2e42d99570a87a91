//! Micro-benchmark of PubSub fan-out: one broadcast delivered to N in-process subscribers,
//! through the topic actor (`cargo bench --bench fanout`). The WebSocket path adds one encode
//! per serializer and a write per subscriber; `fawkes-bench fanout` measures that end to end.

// criterion_group!/criterion_main! generate undocumented functions.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fawkes_runtime::{Runtime, TransportConfig};
use serde_json::json;

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("broadcast to N subscribers");
    for n in [1usize, 100, 1000] {
        let (runtime, mut subs) = rt.block_on(async {
            let runtime = Runtime::start(TransportConfig::default())
                .await
                .expect("runtime");
            let mut subs = Vec::new();
            for _ in 0..n {
                subs.push(runtime.pubsub().subscribe("bench:topic").await);
            }
            (runtime, subs)
        });
        let pubsub = runtime.pubsub().clone();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    pubsub.broadcast("bench:topic", "message:new", json!({"body": "hello"}));
                    for sub in subs.iter_mut() {
                        let _ = sub.recv().await;
                    }
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
