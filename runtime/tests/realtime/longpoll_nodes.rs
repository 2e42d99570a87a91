//! LongPoll sessions and the processes behind them: a newer poll answers the older one, a
//! crashed socket actor answers 410 (as Phoenix's gone session does), and a token is good
//! only on the node that issued it (another node of a cluster answers 410 and opens a session only for a GET without one).

use std::sync::Arc;
use std::time::Duration;

use fawkes_runtime::testing::faults::{self, Supervised};
use fawkes_runtime::{Adapter, MemoryBus, RuntimeConfig, TransportConfig};
use serde_json::json;

use super::longpoll::{config, frames, join, open, request};
use super::support::TestEndpoint;

#[tokio::test]
async fn a_newer_poll_answers_the_older_one_at_once() {
    // A window far longer than the test's 10 s request timeout.
    let t = TestEndpoint::start_with(TransportConfig {
        longpoll_window: Duration::from_secs(30),
        ..config()
    })
    .await;
    let token = open(&t, "ned").await;
    let poll = || {
        let (t_addr, query) = (t.addr, format!("token={token}"));
        tokio::spawn(async move {
            let mut conn = super::longpoll::Conn::connect(t_addr).await;
            conn.send("GET", &query, &[], None).await
        })
    };
    let (mut a, mut b) = (poll(), poll());
    // Whichever came first is answered 204 as soon as the other comes.
    let (older, newer) = tokio::select! {
        older = &mut a => (older, b),
        older = &mut b => (older, a),
    };
    let (_, older) = older.expect("a poll");
    assert_eq!(older["status"], 204, "{older}");
    let frame = json!(["1", "1", "lab:ned", "phx_join", {}]).to_string();
    let (_, posted) = request(&t, "POST", &format!("token={token}"), Some(frame)).await;
    assert_eq!(posted, json!({"status": 200}));
    let (_, newer) = newer.await.expect("a poll");
    assert_eq!(
        newer["status"], 200,
        "the newer poll gets the reply: {newer}"
    );
    assert_eq!(frames(&newer)[0][3], "phx_reply");
}

#[tokio::test]
async fn a_crashed_socket_actor_ends_its_session_with_410() {
    let t = TestEndpoint::start_with(config()).await;
    let token = open(&t, "hal").await;
    assert_eq!(join(&t, &token, "lab:hal", json!({})).await, "ok");
    let query = format!("token={token}");
    let pending = tokio::spawn({
        let (addr, query) = (t.addr, query.clone());
        async move {
            let mut conn = super::longpoll::Conn::connect(addr).await;
            conn.send("GET", &query, &[], None).await
        }
    });
    assert!(faults::fail_supervisor(&t.runtime, Supervised::Sockets).await);
    // The poll in progress, or the next one, learns the session is gone: phoenix.js then
    // opens a new session and rejoins (Phoenix answers a dead session's token with 410 too).
    let (_, first) = pending.await.expect("the pending poll");
    if first["status"] != 410 {
        assert_eq!(first["status"], 204, "{first}");
        let (_, next) = request(&t, "GET", &query, None).await;
        assert_eq!(next, json!({"status": 410}));
    }
    let (_, posted) = request(&t, "POST", &query, Some("[]".into())).await;
    assert_eq!(posted, json!({"status": 410}));
}

#[tokio::test]
async fn another_node_of_the_cluster_answers_a_token_with_410() {
    let bus = MemoryBus::new();
    let node = |name: &str| RuntimeConfig {
        adapter: Some(Arc::new(bus.adapter(name)) as Arc<dyn Adapter>),
        transport: config(),
        ..RuntimeConfig::default()
    };
    let a = TestEndpoint::start_with(node("a")).await;
    let b = TestEndpoint::start_with(node("b")).await;
    let token = open(&a, "ivy").await;
    let query = format!("token={token}");
    let (_, posted) = request(&b, "POST", &query, Some("[]".into())).await;
    assert_eq!(posted, json!({"status": 410}), "a POST to the other node");
    let (_, polled) = request(&b, "GET", &format!("user=ivy&vsn=2.0.0&{query}"), None).await;
    assert_eq!(
        polled,
        json!({"status": 410}),
        "a poll there opens no session: phoenix.js drops the token and reconnects"
    );
    assert_eq!(b.runtime.stats().connections, 0);
    let (_, opened) = request(&b, "GET", "user=ivy&vsn=2.0.0", None).await;
    assert_eq!(
        opened["status"], 410,
        "its next GET, without a token: {opened}"
    );
    assert_ne!(opened["token"], token.as_str());
    assert_eq!(b.runtime.stats().connections, 1);
    let heartbeat = json!([null, "1", "phoenix", "heartbeat", {}]).to_string();
    let (_, posted) = request(&a, "POST", &query, Some(heartbeat)).await;
    assert_eq!(
        posted,
        json!({"status": 200}),
        "the session lives on its own node"
    );
}
