//! Unit tests of the cluster's direct-push bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::pubsub::MemoryBus;

fn cluster(bus: &Arc<MemoryBus>, name: &str) -> Arc<Cluster> {
    Cluster::new(Arc::new(bus.adapter(name)), ClusterConfig::default())
}

#[tokio::test]
async fn a_push_whose_caller_gives_up_leaves_no_pending_entry() {
    let bus = MemoryBus::new();
    let a = cluster(&bus, "a");
    // b is a member that never answers (its frames are not handled).
    let _b = cluster(&bus, "b");
    a.heard("b", 1);
    let payload = Payload::Json(json!({}));
    for _ in 0..10 {
        let pushing = a.push("user:1", "room:1", "e", &payload);
        // The caller goes away (a REST request cancelled, a socket actor killed).
        assert!(
            tokio::time::timeout(Duration::from_millis(5), pushing)
                .await
                .is_err()
        );
    }
    assert_eq!(a.pushes().len(), 0, "every abandoned push's entry is gone");
}

#[tokio::test]
async fn an_answer_to_a_previous_life_s_push_is_not_counted() {
    let bus = MemoryBus::new();
    let a = cluster(&bus, "a");
    let _b = cluster(&bus, "b");
    a.heard("b", 1);
    let id = a.next_push.load(Ordering::Relaxed);
    let pushing = {
        let a = a.clone();
        tokio::spawn(async move {
            a.push("user:1", "room:1", "e", &Payload::Json(json!({})))
                .await
        })
    };
    // Wait until the push is pending.
    while a.pushes().is_empty() {
        tokio::task::yield_now().await;
    }
    // An ack for the same id from this node's previous life, then the real one.
    a.acked("b", a.inc().wrapping_add(1), id, 5);
    a.acked("b", a.inc(), id, 2);
    assert_eq!(pushing.await.expect("push"), 2);
}

#[tokio::test]
async fn whole_states_are_asked_for_one_member_at_a_time() {
    use crate::pubsub::Adapter as _;
    let bus = MemoryBus::new();
    let a = cluster(&bus, "a");
    let mut probes = Vec::new();
    for name in ["b", "c"] {
        let (inbound, probe) = crate::testing::inbound_probe(16);
        bus.adapter(name).start(inbound);
        a.heard(name, 1);
        probes.push(probe);
    }
    let asked = |probes: &mut Vec<crate::testing::InboundProbe>| -> Vec<usize> {
        (0..probes.len())
            .filter(|&i| {
                std::iter::from_fn(|| probes[i].try_recv()).any(|frame| {
                    matches!(
                        wire::Frame::decode(&frame),
                        Ok(wire::Frame::Control(Control::Sync { .. }))
                    )
                })
            })
            .collect()
    };
    a.pull_all();
    a.pull_all();
    assert_eq!(asked(&mut probes), Vec::<usize>::new(), "queued, not sent");
    a.pull_next();
    let first = asked(&mut probes);
    assert_eq!(first.len(), 1, "one member per heartbeat: {first:?}");
    a.pull_next();
    let second = asked(&mut probes);
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "then the other");
    a.pull_next();
    assert_eq!(
        asked(&mut probes),
        Vec::<usize>::new(),
        "each once, however often queued"
    );
}
