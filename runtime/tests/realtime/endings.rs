//! Every way a join ends (leave, stop, crash, replaced, refused, socket gone) untracks its
//! presences: the socket actor ends joins in one place.

use fawkes_runtime::testing::WsClient;
use serde_json::{Value, json};

use crate::support::{TestEndpoint, eventually_async};

/// The keys present on `topic`, with their metas' `n`.
async fn present(t: &TestEndpoint, topic: &str) -> Vec<(String, Vec<Value>)> {
    let list = t.runtime.presence().list(topic).await;
    let mut keys: Vec<(String, Vec<Value>)> = list
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, entry)| {
            let ns = entry["metas"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|meta| meta["n"].clone())
                .collect();
            (key.clone(), ns)
        })
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys
}

/// Joins `topic` as `witness`, tracked, and waits until the list shows it: every presence
/// change made on the topic before has been applied by then (one shard per topic, in order).
async fn settle(t: &TestEndpoint, topic: &str) -> WsClient {
    let mut witness = t.client("witness").await;
    witness.join(topic, json!({"track": {"n": 0}})).await;
    assert!(
        eventually_async(|| async {
            present(t, topic)
                .await
                .iter()
                .any(|(key, _)| key == "witness")
        })
        .await,
        "the witness shows up on {topic}"
    );
    witness
}

fn only_witness() -> Vec<(String, Vec<Value>)> {
    vec![("witness".to_owned(), vec![json!(0)])]
}

#[tokio::test]
async fn a_join_that_ends_by_leave_stop_or_crash_untracks_its_presence() {
    let t = TestEndpoint::start().await;
    let mut ann = t.client("ann").await;
    // (event pushed, frame that answers it)
    let cases = [
        ("phx_leave", "phx_reply"),
        ("stop", "phx_close"),
        ("stop_error", "phx_error"),
        ("panic", "phx_error"),
        ("fail", "phx_error"),
        ("info_crash", "phx_error"),
        ("info_stop", "phx_close"),
    ];
    for (event, answer) in cases {
        let topic = format!("lab:end_{event}");
        let (j, _) = ann.join(&topic, json!({"track": {"n": 1}})).await;
        assert!(
            eventually_async(|| async { !present(&t, &topic).await.is_empty() }).await,
            "tracked on {topic}"
        );
        ann.push(&j, &topic, event, json!({})).await;
        ann.event(&topic, answer).await;
        let _witness = settle(&t, &topic).await;
        assert_eq!(present(&t, &topic).await, only_witness(), "after {event}");
    }
}

#[tokio::test]
async fn a_join_refused_or_crashed_after_tracking_leaves_no_presence() {
    let t = TestEndpoint::start().await;
    let mut ann = t.client("ann").await;
    for how in ["refuse", "err", "panic"] {
        let topic = format!("lab:refused_{how}");
        let (_, reply) = ann
            .join(&topic, json!({"track": {"n": 1}, how: true}))
            .await;
        assert_eq!(reply.payload["status"], "error", "{how}: {reply:?}");
        let _witness = settle(&t, &topic).await;
        assert_eq!(present(&t, &topic).await, only_witness(), "after {how}");
    }
}

#[tokio::test]
async fn a_join_replaced_by_a_rejoin_of_its_topic_untracks_its_presence() {
    let t = TestEndpoint::start().await;
    let mut ann = t.client("ann").await;
    let topic = "lab:replaced";
    ann.join(topic, json!({"track": {"n": 1}})).await;
    let (_, reply) = ann.join(topic, json!({"track": {"n": 2}})).await;
    assert_eq!(reply.payload["status"], "ok");
    ann.event(topic, "phx_close").await;
    let _witness = settle(&t, topic).await;
    assert_eq!(
        present(&t, topic).await,
        vec![
            ("ann".to_owned(), vec![json!(2)]),
            ("witness".to_owned(), vec![json!(0)]),
        ],
        "only the new join's meta is left"
    );
    let terminated = t.terminations();
    assert!(
        terminated
            .iter()
            .any(|(t, reason)| t == topic && *reason == fawkes_runtime::StopReason::DuplicateJoin),
        "the replaced join's terminate ran: {terminated:?}"
    );
}

#[tokio::test]
async fn a_join_whose_socket_closes_untracks_its_presence() {
    let t = TestEndpoint::start().await;
    let mut ann = t.client("ann").await;
    let topic = "lab:closed";
    ann.join(topic, json!({"track": {"n": 1}})).await;
    let witness = settle(&t, topic).await;
    drop(ann);
    assert!(
        eventually_async(|| async { present(&t, topic).await == only_witness() }).await,
        "ann's presence went with her socket: {:?}",
        present(&t, topic).await
    );
    drop(witness);
}
