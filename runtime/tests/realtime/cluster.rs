//! Several runtimes as one cluster over a `MemoryBus`: presence on every node, direct pushes
//! counted across nodes, a node cut off (dropped after the node timeout, resynchronised when
//! linked again), a node restarted under its name (no ghosts), a presence shard restarted.

use std::sync::Arc;
use std::time::Duration;

use fawkes_runtime::testing::{WsClient, faults};
use fawkes_runtime::{Adapter, ClusterConfig, MemoryBus, Runtime, RuntimeConfig};
use serde_json::{Value, json};

use crate::support::{TestEndpoint, eventually_async};

const TOPIC: &str = "cluster:presence";

fn node(bus: &Arc<MemoryBus>, name: &str, timeout: Duration) -> RuntimeConfig {
    RuntimeConfig {
        adapter: Some(Arc::new(bus.adapter(name)) as Arc<dyn Adapter>),
        cluster: ClusterConfig {
            heartbeat: Duration::from_millis(50),
            node_timeout: timeout,
            push_timeout: Duration::from_secs(2),
        },
        ..Default::default()
    }
}

async fn start(bus: &Arc<MemoryBus>, name: &str, timeout: Duration) -> Runtime {
    Runtime::start(node(bus, name, timeout))
        .await
        .expect("runtime")
}

/// The keys `runtime` lists on [`TOPIC`], sorted.
async fn keys(runtime: &Runtime) -> Vec<String> {
    let list = runtime.presence().list(TOPIC).await;
    let mut keys: Vec<String> = list
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys
}

async fn lists(runtime: &Runtime, wanted: &[&str]) -> bool {
    let runtime = runtime.clone();
    let wanted: Vec<String> = wanted.iter().map(|s| (*s).to_owned()).collect();
    eventually_async(|| {
        let (runtime, wanted) = (runtime.clone(), wanted.clone());
        async move { keys(&runtime).await == wanted }
    })
    .await
}

async fn members(runtime: &Runtime, n: usize) -> bool {
    let runtime = runtime.clone();
    eventually_async(|| {
        let runtime = runtime.clone();
        async move { runtime.pubsub().cluster_stats().members.len() == n }
    })
    .await
}

#[tokio::test]
async fn a_node_cut_off_leaves_after_the_timeout_and_comes_back_resynchronised() {
    let bus = MemoryBus::new();
    let a = start(&bus, "a", Duration::from_millis(400)).await;
    let b = start(&bus, "b", Duration::from_millis(400)).await;
    assert!(
        members(&a, 1).await && members(&b, 1).await,
        "each hears the other"
    );
    let ann = a.pubsub().subscribe(TOPIC).await;
    let bob = b.pubsub().subscribe(TOPIC).await;
    let mut watch = b.pubsub().subscribe(TOPIC).await;
    a.presence()
        .track(TOPIC, ann.id(), "ann", json!({}))
        .await
        .expect("track");
    b.presence()
        .track(TOPIC, bob.id(), "bob", json!({}))
        .await
        .expect("track");
    assert!(lists(&b, &["ann", "bob"]).await, "{:?}", keys(&b).await);

    // Cut off (as a node whose link to Redis is gone, or that was killed): after the node
    // timeout the other node drops its presences, announced as leaves.
    bus.set_linked("a", false);
    assert!(lists(&b, &["bob"]).await, "{:?}", keys(&b).await);
    let mut saw_leave = false;
    while let Ok(Some(broadcast)) = tokio::time::timeout(Duration::from_secs(2), watch.recv()).await
    {
        let diff: Value = broadcast.payload.decode().unwrap_or_default();
        if diff["leaves"].get("ann").is_some() {
            saw_leave = true;
            break;
        }
    }
    assert!(saw_leave, "ann's leave was announced");
    assert!(lists(&a, &["ann"]).await, "a keeps its own");
    // Changes while cut off are not lost for good: the link's return resends the state.
    let carl = a.pubsub().subscribe(TOPIC).await;
    a.presence()
        .track(TOPIC, carl.id(), "carl", json!({}))
        .await
        .expect("track");
    a.presence().untrack(TOPIC, ann.id(), "ann");

    bus.set_linked("a", true);
    assert!(lists(&b, &["bob", "carl"]).await, "{:?}", keys(&b).await);
    assert!(lists(&a, &["bob", "carl"]).await, "{:?}", keys(&a).await);
    drop((ann, bob, carl));
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn changes_lost_in_a_short_outage_are_resent_when_the_link_returns() {
    let bus = MemoryBus::new();
    // A node timeout far longer than the outage: nobody is dropped, yet nothing is missed.
    let a = start(&bus, "a", Duration::from_secs(60)).await;
    let b = start(&bus, "b", Duration::from_secs(60)).await;
    let ann = a.pubsub().subscribe(TOPIC).await;
    a.presence()
        .track(TOPIC, ann.id(), "ann", json!({}))
        .await
        .expect("track");
    assert!(lists(&b, &["ann"]).await);

    bus.set_linked("b", false);
    let dan = a.pubsub().subscribe(TOPIC).await;
    a.presence()
        .track(TOPIC, dan.id(), "dan", json!({}))
        .await
        .expect("track");
    a.presence().untrack(TOPIC, ann.id(), "ann");
    assert!(lists(&a, &["dan"]).await);
    bus.set_linked("b", true);
    assert!(lists(&b, &["dan"]).await, "{:?}", keys(&b).await);
    drop((ann, dan));
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_node_restarted_under_its_name_leaves_no_ghosts() {
    let bus = MemoryBus::new();
    let long = Duration::from_secs(60);
    let a = start(&bus, "a", long).await;
    let b = start(&bus, "b", long).await;
    let ann = a.pubsub().subscribe(TOPIC).await;
    a.presence()
        .track(TOPIC, ann.id(), "ann", json!({"life": 1}))
        .await
        .expect("track");
    assert!(lists(&b, &["ann"]).await);

    // Killed without a goodbye, and started again under the same name long before the node
    // timeout: the new life replaces the old one at once.
    bus.set_linked("a", false);
    let again = start(&bus, "a", long).await;
    let eve = again.pubsub().subscribe(TOPIC).await;
    again
        .presence()
        .track(TOPIC, eve.id(), "eve", json!({"life": 2}))
        .await
        .expect("track");
    assert!(lists(&b, &["eve"]).await, "{:?}", keys(&b).await);
    assert!(lists(&again, &["eve"]).await, "{:?}", keys(&again).await);
    drop((ann, eve));
    again.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
    drop(a);
}

#[tokio::test]
async fn a_restarted_presence_shard_resends_and_forgets_on_the_other_nodes() {
    let bus = MemoryBus::new();
    let long = Duration::from_secs(60);
    let a = start(&bus, "a", long).await;
    let b = start(&bus, "b", long).await;
    let ann = a.pubsub().subscribe(TOPIC).await;
    let bob = b.pubsub().subscribe(TOPIC).await;
    a.presence()
        .track(TOPIC, ann.id(), "ann", json!({}))
        .await
        .expect("track");
    b.presence()
        .track(TOPIC, bob.id(), "bob", json!({}))
        .await
        .expect("track");
    assert!(lists(&a, &["ann", "bob"]).await && lists(&b, &["ann", "bob"]).await);

    // a's shard of the topic fails: its presences (ann's) are lost there, and b forgets
    // them too; b's (bob's) come back to a's new shard. (Channel joins would rejoin and
    // track again; these bare subscriptions do not.)
    assert!(faults::fail_presence_shard_of(&a, TOPIC).await);
    assert!(lists(&b, &["bob"]).await, "{:?}", keys(&b).await);
    assert!(lists(&a, &["bob"]).await, "{:?}", keys(&a).await);
    drop((ann, bob));
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn direct_pushes_reach_every_node_and_are_counted_across_them() {
    let bus = MemoryBus::new();
    let a = TestEndpoint::start_with(node(&bus, "a", Duration::from_millis(400))).await;
    let b = TestEndpoint::start_with(node(&bus, "b", Duration::from_millis(400))).await;
    assert!(members(&a.runtime, 1).await && members(&b.runtime, 1).await);
    let mut phone: WsClient = a.client("ann").await;
    let mut laptop: WsClient = b.client("ann").await;
    phone.join("lab:inbox", json!({})).await;
    laptop.join("lab:inbox", json!({})).await;
    let reached = a
        .runtime
        .registry()
        .push("test_socket:ann", "lab:inbox", "note", json!({"n": 1}))
        .await;
    assert_eq!(reached, 2, "both devices, on both nodes, counted");
    assert_eq!(
        phone.event("lab:inbox", "note").await.payload,
        json!({"n": 1})
    );
    assert_eq!(
        laptop.event("lab:inbox", "note").await.payload,
        json!({"n": 1})
    );

    // A node that does not answer is not counted (after the push timeout).
    bus.set_linked("b", false);
    let reached = a
        .runtime
        .registry()
        .push("test_socket:ann", "lab:inbox", "note", json!({"n": 2}))
        .await;
    assert_eq!(reached, 1, "only the node that answered");
    bus.set_linked("b", true);

    // A disconnect sparing another name is carried out on every node.
    a.runtime
        .pubsub()
        .disconnect_except("test_socket:ann", "test_socket:nobody");
    laptop.closed().await;
    phone.closed().await;
}

fn with_window(mut config: RuntimeConfig, window: Duration) -> RuntimeConfig {
    config.presence.window = window;
    config
}

#[tokio::test]
async fn a_join_sent_in_a_whole_state_and_left_in_the_same_window_leaves_there_too() {
    // A long window, so that the join, the whole state sent to a new node, and the leave all
    // fall in one window of the node that tracked it.
    let bus = MemoryBus::new();
    let long = Duration::from_secs(60);
    let window = Duration::from_secs(2);
    let a = Runtime::start(with_window(node(&bus, "a", long), window))
        .await
        .expect("a");
    let xavier = a.pubsub().subscribe(TOPIC).await;
    a.presence()
        .track(TOPIC, xavier.id(), "xavier", json!({}))
        .await
        .expect("track");
    let c = Runtime::start(with_window(node(&bus, "c", long), window))
        .await
        .expect("c");
    assert!(
        lists(&c, &["xavier"]).await,
        "the new node got the whole state"
    );
    a.presence().untrack(TOPIC, xavier.id(), "xavier");
    assert!(lists(&c, &[]).await, "no ghost: {:?}", keys(&c).await);
    drop(xavier);
    a.shutdown(Duration::from_secs(1)).await;
    c.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn frames_lost_on_the_way_out_are_repaired_by_a_resend() {
    let bus = MemoryBus::new();
    let long = Duration::from_secs(60);
    let a = start(&bus, "a", long).await;
    let b = start(&bus, "b", long).await;
    assert!(members(&a, 1).await && members(&b, 1).await);
    let ann = a.pubsub().subscribe(TOPIC).await;
    a.presence()
        .track(TOPIC, ann.id(), "ann", json!({}))
        .await
        .expect("track");
    assert!(lists(&b, &["ann"]).await);
    // The leave is lost on the way out, the link staying up (a full send queue).
    bus.lose_next("a", 1);
    a.presence().untrack(TOPIC, ann.id(), "ann");
    assert!(lists(&a, &[]).await);
    assert!(
        lists(&b, &[]).await,
        "the resend repaired the lost leave: {:?}",
        keys(&b).await
    );
    drop(ann);
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_shard_always_gets_the_other_nodes_presences_back() {
    let bus = MemoryBus::new();
    let long = Duration::from_secs(60);
    // Room for every restart below (the default gives up after 3 within 5 s).
    let mut config = node(&bus, "a", long);
    config.supervision.max_restarts = 100;
    let a = Runtime::start(config).await.expect("a");
    let b = start(&bus, "b", long).await;
    let bob = b.pubsub().subscribe(TOPIC).await;
    b.presence()
        .track(TOPIC, bob.id(), "bob", json!({}))
        .await
        .expect("track");
    assert!(lists(&a, &["bob"]).await);
    for round in 0..50 {
        assert!(faults::fail_presence_shard_of(&a, TOPIC).await);
        assert!(
            lists(&a, &["bob"]).await,
            "round {round}: {:?}",
            keys(&a).await
        );
    }
    drop(bob);
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}
