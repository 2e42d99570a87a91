//! The shared conformance suite for PubSub adapters.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::frame::DEADLINE;
use crate::Runtime;
use crate::protocol::Payload;

/// Checks that a PubSub adapter keeps the contract of [`crate::Adapter`]: runs two
/// nodes (runtimes) with adapters made by `make(node_name)` and panics on the first violation.
/// Every adapter — in-memory now, Redis later — must pass it.
pub async fn adapter_conformance(make: impl Fn(&str) -> Arc<dyn crate::Adapter>) {
    use crate::{RuntimeConfig, Subscription};

    async fn next(sub: &mut Subscription, what: &str) -> (String, Payload) {
        match tokio::time::timeout(DEADLINE, sub.recv()).await {
            Ok(Some(b)) => (b.event.clone(), b.payload.clone()),
            _ => panic!("adapter conformance: expected {what} within {DEADLINE:?}"),
        }
    }
    let node = |name: &str| RuntimeConfig {
        adapter: Some(make(name)),
        ..Default::default()
    };
    let a = Runtime::start(node("node-a")).await.expect("node a");
    let b = Runtime::start(node("node-b")).await.expect("node b");
    let (pa, pb) = (a.pubsub().clone(), b.pubsub().clone());
    assert_eq!(
        pa.node_name(),
        "node-a",
        "1. a node is named by its adapter"
    );
    assert_ne!(pa.node_name(), pb.node_name());

    let mut on_a = pa.subscribe("conformance:1").await;
    let mut on_b = pb.subscribe("conformance:1").await;
    let mut elsewhere = pb.subscribe("conformance:2").await;

    pa.broadcast("conformance:1", "hello", json!({"n": 1}));
    assert_eq!(
        next(&mut on_b, "the broadcast on the other node").await,
        ("hello".into(), Payload::Json(json!({"n": 1})))
    );
    assert_eq!(
        next(&mut on_a, "the broadcast on its own node").await.0,
        "hello"
    );
    pa.broadcast("conformance:1", "sentinel", json!({}));
    assert_eq!(
        next(&mut on_a, "the sentinel").await.0,
        "sentinel",
        "3. no node receives its own broadcast twice"
    );
    assert_eq!(next(&mut on_b, "the sentinel").await.0, "sentinel");

    pa.local_broadcast("conformance:1", "local", json!({}));
    pa.broadcast("conformance:1", "after-local", json!({}));
    assert_eq!(
        next(&mut on_b, "the next broadcast").await.0,
        "after-local",
        "local_broadcast stays on its node"
    );
    assert_eq!(next(&mut on_a, "the local broadcast").await.0, "local");
    assert_eq!(next(&mut on_a, "the next broadcast").await.0, "after-local");

    for i in 0..200 {
        pa.broadcast("conformance:1", "seq", json!({"i": i}));
    }
    for i in 0..200 {
        let (event, payload) = next(&mut on_b, "an ordered broadcast").await;
        assert_eq!(
            (event.as_str(), payload),
            ("seq", Payload::Json(json!({"i": i}))),
            "4. per-topic order"
        );
        next(&mut on_a, "an ordered broadcast").await;
    }

    pa.broadcast_from(on_a.id(), "conformance:1", "not-for-a", json!({}));
    pa.broadcast("conformance:1", "for-all", json!({}));
    assert_eq!(
        next(&mut on_b, "broadcast_from on the other node").await.0,
        "not-for-a"
    );
    assert_eq!(
        next(&mut on_a, "the next broadcast").await.0,
        "for-all",
        "broadcast_from skips only its sender"
    );
    next(&mut on_b, "for-all").await;

    let bytes = Payload::Binary(vec![0u8, 1, 254, 255].into());
    pb.broadcast("conformance:1", "blob", bytes.clone());
    assert_eq!(
        next(&mut on_a, "a binary payload").await,
        ("blob".into(), bytes),
        "binary payloads cross intact"
    );
    next(&mut on_b, "a binary payload").await;

    pb.broadcast("conformance:2", "other-topic", json!({}));
    assert_eq!(
        next(&mut elsewhere, "the other topic").await.0,
        "other-topic"
    );
    pa.broadcast("conformance:1", "last", json!({}));
    assert_eq!(
        next(&mut on_b, "last").await.0,
        "last",
        "topics are independent"
    );

    presence_across(&a, &b).await;

    // 5. A node that shuts down says so: the other drops its presences at once.
    let mut watch = pb.subscribe("conformance:presence").await;
    a.shutdown(Duration::from_secs(1)).await;
    let left = next_diff(&mut watch, |d| d["leaves"].get("ann").is_some()).await;
    assert!(left["joins"].get("ann").is_none(), "{left}");
    assert!(
        b.presence()
            .list("conformance:presence")
            .await
            .get("ann")
            .is_none(),
        "the departed node's presences are gone"
    );
    b.shutdown(Duration::from_secs(1)).await;
}

/// Waits for a `presence_diff` on `sub` that `wanted` accepts.
async fn next_diff(
    sub: &mut crate::Subscription,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, sub.recv()).await {
            Ok(Some(b)) if b.event == crate::presence_events::DIFF => {
                let diff = b.payload.decode::<serde_json::Value>().unwrap_or_default();
                if wanted(&diff) {
                    return diff;
                }
            }
            Ok(Some(_)) => {}
            _ => panic!("adapter conformance: expected a presence_diff within {DEADLINE:?}"),
        }
    }
}

/// Waits until `runtime`'s list of `topic` satisfies `wanted`.
async fn list_until(
    runtime: &Runtime,
    topic: &str,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let list = runtime.presence().list(topic).await;
        if wanted(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "adapter conformance: {what} within {DEADLINE:?}; the list is {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Presence on two nodes: each lists both, diffs cross, updates and leaves too.
async fn presence_across(a: &Runtime, b: &Runtime) {
    let topic = "conformance:presence";
    let mut on_b = b.pubsub().subscribe(topic).await;
    let ann = a.pubsub().subscribe(topic).await;
    let bob = b.pubsub().subscribe(topic).await;
    a.presence()
        .track(topic, ann.id(), "ann", json!({"device": "phone"}))
        .await
        .expect("track on a");
    b.presence()
        .track(topic, bob.id(), "bob", json!({"device": "laptop"}))
        .await
        .expect("track on b");
    let joined = next_diff(&mut on_b, |d| d["joins"].get("ann").is_some()).await;
    assert_eq!(
        joined["joins"]["ann"]["metas"][0]["device"], "phone",
        "6. a node's presence reaches the other's subscribers as a presence_diff"
    );
    for node in [a, b] {
        list_until(node, topic, "both presences on each node", |l| {
            l.get("ann").is_some() && l.get("bob").is_some()
        })
        .await;
    }
    // A second device of the same key, on the other node: two metas.
    let ann2 = b.pubsub().subscribe(topic).await;
    b.presence()
        .track(topic, ann2.id(), "ann", json!({"device": "tablet"}))
        .await
        .expect("second device");
    let list = list_until(a, topic, "both of ann's devices", |l| {
        l["ann"]["metas"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await;
    let refs: Vec<&str> = list["ann"]["metas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["phx_ref"].as_str())
        .collect();
    assert!(
        refs.len() == 2 && refs[0] != refs[1],
        "distinct phx_refs: {list}"
    );
    a.presence()
        .update(
            topic,
            ann.id(),
            "ann",
            json!({"device": "phone", "status": "away"}),
        )
        .await
        .expect("update");
    list_until(b, topic, "the update", |l| {
        l["ann"]["metas"]
            .as_array()
            .is_some_and(|m| m.len() == 2 && m.iter().any(|m| m["status"] == "away"))
    })
    .await;
    b.presence().untrack(topic, ann2.id(), "ann");
    list_until(a, topic, "the untrack", |l| {
        l["ann"]["metas"].as_array().is_some_and(|m| m.len() == 1)
    })
    .await;
    // Kept alive until here: dropping a subscription does not untrack (channels do).
    drop((ann, bob, ann2));
}

/// The receiving end of an [`crate::Inbound`] made by [`inbound_probe`]: what an adapter
/// under test delivered, and the state it reported.
pub struct InboundProbe {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    shared: Arc<crate::pubsub::InboundShared>,
}

impl InboundProbe {
    /// The next frame delivered, waiting up to [`DEADLINE`]; `None` if none came.
    pub async fn recv(&mut self) -> Option<bytes::Bytes> {
        let frame = tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .ok()
            .flatten()?;
        self.shared.taken(frame.len());
        Some(frame)
    }

    /// The next frame if one is already waiting.
    pub fn try_recv(&mut self) -> Option<bytes::Bytes> {
        let frame = self.rx.try_recv().ok()?;
        self.shared.taken(frame.len());
        Some(frame)
    }

    /// Frames the adapter reported lost on the way out ([`crate::Inbound::lost`]).
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The state the adapter last reported.
    pub fn state(&self) -> crate::AdapterState {
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frames the adapter handed over in all, and those dropped because the queue was full.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (
            self.shared.received.load(Ordering::Relaxed),
            self.shared.dropped.load(Ordering::Relaxed),
        )
    }
}

/// An [`crate::Inbound`] with room for `capacity` frames, for testing an adapter without a
/// runtime: pass it to [`crate::Adapter::start`] and read what arrives from the probe.
pub fn inbound_probe(capacity: usize) -> (crate::Inbound, InboundProbe) {
    let (inbound, rx, shared) = crate::Inbound::new(capacity);
    (inbound, InboundProbe { rx, shared })
}
