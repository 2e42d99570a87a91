//! The graceful drain (`Runtime::drain`): sockets closed with 1012 in batches spread over the
//! interval, each after the reply it was making, new sockets refused meanwhile, and presence
//! leaves seen by the sockets drained later.

use std::time::Duration;

use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{DrainConfig, Drained};
use serde_json::json;
use tokio::time::Instant;

use crate::support::TestEndpoint;

#[tokio::test]
async fn sockets_close_with_1012_in_batches_spread_over_the_interval() {
    const SOCKETS: usize = 40;
    const BATCH: usize = 10;
    const INTERVAL: Duration = Duration::from_millis(300);
    let endpoint = TestEndpoint::start().await;
    let mut clients = Vec::new();
    for i in 0..SOCKETS {
        let mut client = endpoint.client(&format!("u{i}")).await;
        client.join("lab:drain", json!({})).await;
        clients.push(client);
    }
    assert_eq!(endpoint.runtime.connection_count(), SOCKETS);

    let closes: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let (code, _) = client.closed().await;
                (Instant::now(), code)
            })
        })
        .collect();
    let drained = endpoint
        .runtime
        .drain(DrainConfig {
            batch_size: BATCH,
            interval: INTERVAL,
            timeout: Duration::from_secs(10),
        })
        .await;
    assert_eq!(
        drained,
        Drained {
            sockets: SOCKETS,
            batches: SOCKETS / BATCH,
            cut: 0,
            in_time: true,
        }
    );

    let mut times = Vec::new();
    for close in closes {
        let (at, code) = close.await.expect("client task");
        assert_eq!(code, 1012, "drained sockets are told to come back");
        times.push(at);
    }
    times.sort();
    // The server counted its batches of at most BATCH above; seen from the clients, the
    // closes spread over the intervals between them (loosely: a loaded machine may delay one
    // batch's closes towards the next one's).
    let spread = times[SOCKETS - 1] - times[0];
    assert!(
        spread >= 2 * INTERVAL,
        "first and last close {spread:?} apart"
    );
}

#[tokio::test]
async fn a_timeout_too_large_to_add_drains_as_if_it_had_none() {
    let endpoint = TestEndpoint::start().await;
    let mut client = endpoint.client("ada").await;
    client.join("lab:drain", json!({})).await;
    let drained = endpoint
        .runtime
        .drain(DrainConfig {
            timeout: Duration::MAX,
            ..DrainConfig::default()
        })
        .await;
    assert_eq!((drained.sockets, drained.in_time), (1, true));
    assert_eq!(client.closed().await.0, 1012);
}

#[tokio::test]
async fn a_reply_in_progress_is_sent_before_the_close_and_new_sockets_are_refused() {
    let endpoint = TestEndpoint::start().await;
    let mut client = endpoint.client("ada").await;
    let (join_ref, _) = client.join("lab:slow", json!({})).await;
    let slow = client
        .push(&join_ref, "lab:slow", "slow", json!({"ms": 300}))
        .await;
    client.event("lab:slow", "started").await;

    let runtime = endpoint.runtime.clone();
    let drain = tokio::spawn(async move {
        runtime
            .drain(DrainConfig {
                timeout: Duration::from_secs(10),
                ..DrainConfig::default()
            })
            .await
    });
    assert!(
        crate::support::eventually(|| endpoint.runtime.is_draining()).await,
        "draining"
    );
    assert_eq!(
        WsClient::upgrade_status(&endpoint.url("user=late&vsn=2.0.0"), &[]).await,
        503,
        "a draining node takes no new socket"
    );

    let reply = client.reply(&slow).await;
    assert_eq!(reply.payload["status"], "ok");
    assert_eq!(reply.payload["response"], json!({"slow": "done"}));
    assert_eq!(client.closed().await.0, 1012);
    let drained = drain.await.expect("drain task");
    assert!(drained.in_time, "{drained:?}");
    assert_eq!(drained.sockets, 1);
}

#[tokio::test]
async fn a_socket_drained_later_sees_the_presence_leave_of_one_drained_before() {
    let endpoint = TestEndpoint::start().await;
    // Oldest first: ada's socket is drained one interval before bob's.
    let mut ada = endpoint.client("ada").await;
    ada.join("presence:room", json!({})).await;
    ada.event("presence:room", "presence_state").await;
    let mut bob = endpoint.client("bob").await;
    bob.join("presence:room", json!({})).await;
    bob.expect("ada in bob's presence_state", |f| {
        f.event == "presence_state" && f.payload.get("ada").is_some()
    })
    .await;

    let runtime = endpoint.runtime.clone();
    let drain = tokio::spawn(async move {
        runtime
            .drain(DrainConfig {
                batch_size: 1,
                interval: Duration::from_millis(500),
                timeout: Duration::from_secs(10),
            })
            .await
    });
    assert_eq!(ada.closed().await.0, 1012);
    bob.expect("ada's leave", |f| {
        f.event == "presence_diff" && f.payload["leaves"].get("ada").is_some()
    })
    .await;
    assert_eq!(bob.closed().await.0, 1012);
    let drained = drain.await.expect("drain task");
    assert_eq!((drained.sockets, drained.batches), (2, 2));
}

#[tokio::test]
async fn a_socket_stuck_in_a_callback_is_cut_at_the_deadline() {
    let endpoint = TestEndpoint::start().await;
    let mut client = endpoint.client("ada").await;
    let (join_ref, _) = client.join("lab:stuck", json!({})).await;
    client.push(&join_ref, "lab:stuck", "hang", json!({})).await;
    // The hang is in progress once a later frame is held behind it: a heartbeat is answered
    // by the connection itself, so wait for it to prove the frame before it was read.
    let heartbeat = client.heartbeat().await;
    client.reply(&heartbeat).await;

    let drained = endpoint
        .runtime
        .drain(DrainConfig {
            timeout: Duration::from_millis(500),
            ..DrainConfig::default()
        })
        .await;
    assert!(!drained.in_time, "{drained:?}");
    assert_eq!(drained.cut, 1);
    assert_eq!(client.closed().await.0, 1012);
}

/// The keys `runtime` lists on `topic`, sorted.
async fn keys(runtime: &fawkes_runtime::Runtime, topic: &str) -> Vec<String> {
    let list = runtime.presence().list(topic).await;
    let mut keys: Vec<String> = list
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn other_nodes_see_each_drained_sockets_leave_before_the_goodbye() {
    use std::sync::Arc;

    use fawkes_runtime::{Adapter, ClusterConfig, MemoryBus, Runtime, RuntimeConfig};

    let bus = MemoryBus::new();
    let node = |name: &str| RuntimeConfig {
        adapter: Some(Arc::new(bus.adapter(name)) as Arc<dyn Adapter>),
        cluster: ClusterConfig {
            heartbeat: Duration::from_millis(50),
            node_timeout: Duration::from_secs(5),
            push_timeout: Duration::from_secs(2),
        },
        ..Default::default()
    };
    let a = TestEndpoint::start_with(node("a")).await;
    let b = Runtime::start(node("b")).await.expect("runtime");
    let mut ada = a.client("ada").await;
    ada.join("presence:room", json!({})).await;
    ada.event("presence:room", "presence_state").await;
    let mut bob = a.client("bob").await;
    bob.join("presence:room", json!({})).await;
    bob.event("presence:room", "presence_state").await;
    let listed = |wanted: &'static [&'static str]| {
        let b = b.clone();
        crate::support::eventually_async(move || {
            let b = b.clone();
            async move { keys(&b, "presence:room").await == wanted }
        })
    };
    assert!(listed(&["ada", "bob"]).await, "b lists a's sockets");

    let runtime = a.runtime.clone();
    let drain = tokio::spawn(async move {
        runtime
            .drain(DrainConfig {
                batch_size: 1,
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(10),
            })
            .await
    });
    assert_eq!(ada.closed().await.0, 1012);
    // Between the batches: ada's leave has reached b, while bob (not drained yet) is still
    // listed there; the goodbye comes only after the drain.
    assert!(
        listed(&["bob"]).await,
        "{:?}",
        keys(&b, "presence:room").await
    );
    assert_eq!(bob.closed().await.0, 1012);
    assert!(drain.await.expect("drain task").in_time);
    assert!(listed(&[]).await, "{:?}", keys(&b, "presence:room").await);
    b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_drain_reaching_a_write_in_progress_finishes_it_then_closes() {
    use fawkes_runtime::TransportConfig;
    const MESSAGES: usize = 300;
    // Room for everything queued: this test is about the drain, not a slow consumer's cut.
    let endpoint = TestEndpoint::start_with(TransportConfig {
        outbound_queue: 100_000,
        outbound_queue_bytes: 256 * 1024 * 1024,
        write_timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .await;
    let mut reader = endpoint.client("slow").await;
    reader.join("lab:flood", json!({})).await;
    // 64 KiB each, sent in fragments: about 19 MiB that a client not reading yet cannot take,
    // so the connection is in the middle of a write when the drain closes it.
    let blob = "x".repeat(64 * 1024);
    for i in 0..MESSAGES {
        endpoint
            .runtime
            .pubsub()
            .broadcast("lab:flood", "flood", json!({"i": i, "blob": blob}));
    }
    // The topic actor handled every broadcast (queued them all for the reader) once it has
    // answered a join that came after them.
    let mut other = endpoint.client("other").await;
    other.join("lab:flood", json!({})).await;

    let runtime = endpoint.runtime.clone();
    let drain = tokio::spawn(async move {
        runtime
            .drain(DrainConfig {
                timeout: Duration::from_secs(30),
                ..DrainConfig::default()
            })
            .await
    });
    assert!(
        crate::support::eventually(|| endpoint.runtime.is_draining()).await,
        "draining"
    );
    for i in 0..MESSAGES {
        let frame = reader.event("lab:flood", "flood").await;
        assert_eq!(frame.payload["i"], i, "every queued message, in order");
    }
    assert_eq!(reader.closed().await.0, 1012);
    assert_eq!(other.closed().await.0, 1012);
    assert!(drain.await.expect("drain task").in_time);
}
