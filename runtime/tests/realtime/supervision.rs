//! Supervision: each kind of runtime actor is made to fail on purpose under live traffic, and
//! service resumes; too many failures make a supervisor give up, visibly.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fawkes_runtime::testing::faults::{self, Supervised};
use fawkes_runtime::testing::{Frame, WsClient};
use fawkes_runtime::{Health, RuntimeConfig, SupervisionConfig};
use serde_json::json;

use crate::support::{TestEndpoint, eventually, eventually_async};

/// Broadcasts `tick`s to `topic` until dropped: traffic while actors fail.
struct Ticker(Arc<AtomicBool>);

impl Ticker {
    fn start(t: &TestEndpoint, topic: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (pubsub, running) = (t.runtime.pubsub().clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !running.load(Ordering::Relaxed) {
                pubsub.broadcast(topic, "tick", json!({ "n": n }));
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Self(stop)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The presence keys a client sees after applying `presence_state` and `presence_diff`s in
/// order (the last state resets the view), for frames of `join_ref` on `topic`.
fn presence_view(frames: &[Frame], topic: &str, join_ref: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for f in frames.iter().filter(|f| f.topic == topic) {
        match f.event.as_str() {
            "presence_state" if f.join_ref == json!(join_ref) => {
                keys = f
                    .payload
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
            }
            "presence_diff" => {
                for key in f.payload["joins"]
                    .as_object()
                    .into_iter()
                    .flat_map(|o| o.keys())
                {
                    keys.insert(key.clone());
                }
                for key in f.payload["leaves"]
                    .as_object()
                    .into_iter()
                    .flat_map(|o| o.keys())
                {
                    keys.remove(key);
                }
            }
            _ => {}
        }
    }
    keys
}

/// Reads frames until `done` holds for everything read so far (within the deadline).
async fn read_until(c: &mut WsClient, seen: &mut Vec<Frame>, done: impl Fn(&[Frame]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done(seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.try_expect(left, &|_| true).await {
            Some(frame) => seen.push(frame),
            None => panic!("condition not reached; frames: {seen:?}"),
        }
    }
}

#[tokio::test]
async fn a_failed_registry_is_restarted_with_every_live_socket() {
    let t = TestEndpoint::start().await;
    let sessions = t.runtime.registry().clone();
    let mut phone = t.client("ann").await;
    let mut laptop = t.client("ann").await;
    let mut carol = t.client("carol").await;
    let (phone_join, _) = phone.join("lab:inbox", json!({})).await;
    let (laptop_join, _) = laptop.join("lab:inbox", json!({})).await;
    assert!(eventually_async(|| async { sessions.count("test_socket:ann").await == 2 }).await);

    // Live traffic: pushes to ann keep going while the registry fails.
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (sessions, stop) = (sessions.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                sessions
                    .push("test_socket:ann", "lab:inbox", "note", json!({}))
                    .await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    // Carol is disconnected while the registry is down: her socket still closes.
    let restarted = faults::fail_registry(&t.runtime);
    sessions.disconnect("test_socket:carol");
    assert!(restarted.await, "the registry was restarted");
    assert_eq!(carol.closed().await, (1001, "disconnected".to_owned()));
    stop.store(true, Ordering::Relaxed);
    pusher.await.expect("pusher");

    // Both of ann's sockets were re-registered: direct pushes reach both joins again.
    assert_eq!(sessions.count("test_socket:ann").await, 2);
    let reached = sessions
        .push("test_socket:ann", "lab:inbox", "after", json!({"n": 1}))
        .await;
    assert_eq!(reached, 2);
    assert_eq!(
        phone.event("lab:inbox", "after").await.join_ref,
        json!(phone_join)
    );
    assert_eq!(
        laptop.event("lab:inbox", "after").await.join_ref,
        json!(laptop_join)
    );
    // A socket that connects now registers with the new registry, and disconnects work.
    let mut tablet = t.client("ann").await;
    assert!(eventually_async(|| async { sessions.count("test_socket:ann").await == 3 }).await);
    sessions.disconnect("test_socket:ann");
    for c in [&mut phone, &mut laptop, &mut tablet] {
        assert_eq!(c.closed().await, (1001, "disconnected".to_owned()));
    }
    assert!(eventually_async(|| async { sessions.name_count().await == 0 }).await);
    assert_eq!(t.runtime.health(), Health::Up);
}

#[tokio::test]
async fn a_disconnect_remembered_before_a_registry_failure_still_closes_a_late_socket() {
    let t = TestEndpoint::start().await;
    let url = t.url("user=ann&vsn=2.0.0&hold=1");
    let connecting = tokio::spawn(async move { WsClient::connect(&url).await });
    t.hold.arrived.notified().await;
    // Logged out during the connect check, then the registry fails before the socket is up.
    t.runtime.registry().disconnect("test_socket:ann");
    assert!(faults::fail_registry(&t.runtime).await);
    t.hold.release.notify_one();
    let mut late = connecting.await.expect("task").expect("connect");
    assert_eq!(late.closed().await, (1001, "disconnected".to_owned()));
}

#[tokio::test]
async fn after_a_presence_shard_fails_its_joins_rejoin_and_presence_lists_converge() {
    let t = TestEndpoint::start().await;
    let topic = "presence:hall";
    let mut ann = t.client("ann").await;
    let mut bob = t.client("bob").await;
    let mut frames = (Vec::new(), Vec::new());
    let (ann_join, _) = ann.join(topic, json!({"device": "a"})).await;
    read_until(&mut ann, &mut frames.0, |f| {
        presence_view(f, topic, &ann_join).contains("ann")
    })
    .await;
    let (bob_join, _) = bob.join(topic, json!({"device": "b"})).await;
    read_until(&mut bob, &mut frames.1, |f| {
        presence_view(f, topic, &bob_join).len() == 2
    })
    .await;
    let _ticker = Ticker::start(&t, topic);

    assert!(faults::fail_presence_shard_of(&t.runtime, topic).await);
    // Their presences died with the shard: both joins end with phx_error (phoenix.js rejoins).
    for c in [&mut ann, &mut bob] {
        let error = c.event(topic, "phx_error").await;
        assert_eq!(error.payload, json!({"reason": "channel_crash"}));
    }
    frames = (Vec::new(), Vec::new());
    let (ann_join, _) = ann.join(topic, json!({"device": "a"})).await;
    let (bob_join, _) = bob.join(topic, json!({"device": "b"})).await;
    let both: BTreeSet<String> = ["ann".to_owned(), "bob".to_owned()].into();
    read_until(&mut ann, &mut frames.0, |f| {
        presence_view(f, topic, &ann_join) == both
    })
    .await;
    read_until(&mut bob, &mut frames.1, |f| {
        presence_view(f, topic, &bob_join) == both
    })
    .await;
    let listed: BTreeSet<String> = t
        .runtime
        .presence()
        .list(topic)
        .await
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(listed, both);
    // And the ticks flow again on the rejoined topic.
    ann.event(topic, "tick").await;
    bob.event(topic, "tick").await;
}

#[tokio::test]
async fn after_a_topic_actor_fails_its_members_get_phx_error_and_hear_broadcasts_after_rejoining() {
    let t = TestEndpoint::start().await;
    let topic = "lab:busy";
    let mut a = t.client("ann").await;
    let mut b = t.client("bob").await;
    a.join(topic, json!({})).await;
    b.join(topic, json!({})).await;
    let mut outside = t.runtime.pubsub().subscribe(topic).await;
    let _ticker = Ticker::start(&t, topic);
    a.event(topic, "tick").await;

    assert!(faults::fail_topic(&t.runtime, topic).await);
    for c in [&mut a, &mut b] {
        c.event(topic, "phx_error").await;
    }
    // A PubSub subscription ends too (no silent loss): subscribe again.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while outside.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the subscription ended");

    let (ja, _) = a.join(topic, json!({})).await;
    let (jb, _) = b.join(topic, json!({})).await;
    a.event(topic, "tick").await;
    b.event(topic, "tick").await;
    let r = a.push(&ja, topic, "broadcast", json!({"hi": 1})).await;
    assert_eq!(a.reply(&r).await.status(), Some("ok"));
    assert_eq!(b.event(topic, "shout").await.payload, json!({"hi": 1}));
    let r = b.push(&jb, topic, "echo", json!({})).await;
    assert_eq!(b.reply(&r).await.status(), Some("ok"));
}

#[tokio::test]
async fn a_failed_topics_supervisor_ends_every_topic_and_comes_back() {
    let t = TestEndpoint::start().await;
    let mut a = t.client("ann").await;
    a.join("lab:one", json!({})).await;
    a.join("lab:two", json!({})).await;
    let _ticker = Ticker::start(&t, "lab:one");
    assert!(faults::fail_supervisor(&t.runtime, Supervised::Topics).await);
    a.event("lab:one", "phx_error").await;
    a.event("lab:two", "phx_error").await;
    a.join("lab:one", json!({})).await;
    a.event("lab:one", "tick").await;
    assert_eq!(t.runtime.health(), Health::Up);
}

#[tokio::test]
async fn a_failed_sockets_supervisor_closes_every_connection_and_accepts_new_ones() {
    let t = TestEndpoint::start().await;
    let mut a = t.client("ann").await;
    a.join("lab:one", json!({})).await;
    assert!(faults::fail_supervisor(&t.runtime, Supervised::Sockets).await);
    assert_eq!(
        a.closed().await.0,
        1011,
        "closed as an internal error: clients reconnect"
    );
    let mut again = t.client("ann").await;
    let (j, _) = again.join("lab:one", json!({})).await;
    let r = again.push(&j, "lab:one", "echo", json!({"ok": true})).await;
    assert_eq!(again.reply(&r).await.status(), Some("ok"));
}

#[tokio::test]
async fn a_failed_presence_supervisor_restarts_every_shard() {
    let t = TestEndpoint::start().await;
    let topic = "presence:lobby";
    let mut a = t.client("ann").await;
    a.join(topic, json!({})).await;
    a.event(topic, "presence_state").await;
    assert!(faults::fail_supervisor(&t.runtime, Supervised::Presence).await);
    a.event(topic, "phx_error").await;
    a.join(topic, json!({})).await;
    let state = a.event(topic, "presence_state").await;
    assert!(
        state.payload.get("ann").is_some(),
        "tracked again: {state:?}"
    );
}

/// With at most 2 restarts per minute: a third shard failure makes the presence supervisor
/// give up (the root restarts it, and presence works again); then the registry failing until
/// the root has restarted too often makes the runtime down.
#[tokio::test]
async fn too_many_restarts_make_the_supervisor_give_up_and_that_is_visible() {
    let t = TestEndpoint::start_with(RuntimeConfig {
        supervision: SupervisionConfig {
            max_restarts: 2,
            within: Duration::from_secs(60),
        },
        ..Default::default()
    })
    .await;
    let topic = "presence:lobby";
    let mut a = t.client("ann").await;
    for _ in 0..3 {
        assert!(faults::fail_presence_shard_of(&t.runtime, topic).await);
    }
    let stats = t.runtime.supervision_stats();
    assert_eq!(
        stats.gave_up, 1,
        "the presence supervisor gave up once: {stats:?}"
    );
    assert_eq!(t.runtime.health(), Health::Up, "the root restarted it");
    a.join(topic, json!({})).await;
    let state = a.event(topic, "presence_state").await;
    assert!(
        state.payload.get("ann").is_some(),
        "presence works again: {state:?}"
    );

    // The root has restarted once; two more restarts are allowed, the third is one too many.
    assert!(faults::fail_registry(&t.runtime).await);
    assert!(
        !faults::fail_registry(&t.runtime).await,
        "the root gave up instead"
    );
    assert!(eventually(|| !t.runtime.health().is_up()).await);
    let Health::Down { reason } = t.runtime.health() else {
        panic!("down, not {:?}", t.runtime.health());
    };
    assert!(reason.contains("runtime"), "{reason}");
    assert_eq!(t.runtime.supervision_stats().gave_up, 2);
    // Everything stopped with the root: the connection is closed.
    assert_eq!(a.closed().await.0, 1011);
}

#[tokio::test]
async fn a_shut_down_runtime_reports_stopped_not_down() {
    let t = TestEndpoint::start().await;
    assert!(t.runtime.health().is_up());
    t.runtime.shutdown(Duration::from_secs(1)).await;
    assert_eq!(t.runtime.health(), Health::Stopped);
}
