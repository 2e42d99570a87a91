//! LongPoll sessions under the same caps as WebSockets: the endpoint's connection caps (per
//! client address and per node: a session holds a slot for its life) and the per-id cap.

use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{HttpLimits, TransportConfig};
use serde_json::json;

use super::longpoll::{Conn, config, request};
use super::support::{TestEndpoint, eventually, eventually_async};

/// With three slots: the test's own connection and two sessions fill them; a third session
/// is refused with 503 (`{"status":500}`: phoenix.js retries on its backoff) until one of the
/// sessions ends.
async fn two_sessions_fill_the_cap(t: &TestEndpoint) {
    let mut conn = Conn::open(t).await;
    for user in ["u1", "u2"] {
        let (http, opened) = conn
            .send("GET", &format!("user={user}&vsn=2.0.0"), &[], None)
            .await;
        assert_eq!((http, &opened["status"]), (200, &json!(410)), "{opened}");
    }
    assert_eq!(t.runtime.stats().connections, 2);
    let (http, refused) = conn.send("GET", "user=u3&vsn=2.0.0", &[], None).await;
    assert_eq!((http, refused), (503, json!({"status": 500})));
    assert_eq!(t.runtime.stats().connections, 2, "no third session");

    // A session that ends gives its slot back.
    t.runtime.pubsub().disconnect("test_socket:u1");
    assert!(eventually(|| t.runtime.stats().connections == 1).await);
    let (http, opened) = conn.send("GET", "user=u3&vsn=2.0.0", &[], None).await;
    assert_eq!((http, &opened["status"]), (200, &json!(410)), "{opened}");
}

#[tokio::test]
async fn sessions_count_in_the_per_address_cap() {
    let limits = HttpLimits {
        max_connections_per_ip: Some(3),
        ..HttpLimits::default()
    };
    two_sessions_fill_the_cap(&TestEndpoint::start_limited(config(), limits).await).await;
}

#[tokio::test]
async fn sessions_count_in_the_node_cap() {
    let limits = HttpLimits {
        max_connections: Some(3),
        ..HttpLimits::default()
    };
    two_sessions_fill_the_cap(&TestEndpoint::start_limited(config(), limits).await).await;
}

#[tokio::test]
async fn the_per_id_cap_counts_sessions_as_it_counts_websockets() {
    let t = TestEndpoint::start_with(TransportConfig {
        max_sockets_per_id: 1,
        ..config()
    })
    .await;
    let ws = t.client("ida").await;
    let (http, refused) = request(&t, "GET", "user=ida&vsn=2.0.0", None).await;
    assert_eq!(
        (http, refused),
        (429, json!({"status": 403})),
        "429 as a WebSocket gets; 403 in the body, which phoenix.js backs off from"
    );
    drop(ws);
    // The WebSocket's place comes back once its connection has ended.
    let opened = eventually_async(|| async {
        let (_, opened) = request(&t, "GET", "user=ida&vsn=2.0.0", None).await;
        opened["status"] == 410
    })
    .await;
    assert!(opened, "a session takes the place");
    assert_eq!(
        WsClient::upgrade_status(&t.url("user=ida&vsn=2.0.0"), &[]).await,
        429,
        "the session holds the id's one place"
    );
}

/// Sessions of at most one per user, under a node cap of `cap` connections.
async fn capped(cap: usize) -> TestEndpoint {
    let limits = HttpLimits {
        max_connections: Some(cap),
        ..HttpLimits::default()
    };
    let config = TransportConfig {
        max_sockets_per_id: 1,
        ..config()
    };
    TestEndpoint::start_limited(config, limits).await
}

#[tokio::test]
async fn a_refused_session_gives_its_slot_back() {
    // Three slots: the test's connection, and two for sessions.
    let t = capped(3).await;
    let mut conn = Conn::open(&t).await;
    let mut get = async |query: &str| conn.send("GET", query, &[], None).await;
    assert_eq!(
        get("vsn=2.0.0").await,
        (200, json!({"status": 403})),
        "refused connect"
    );
    assert_eq!(get("user=ida&vsn=2.0.0").await.1["status"], 410);
    assert_eq!(
        get("user=ida&vsn=2.0.0").await,
        (429, json!({"status": 403})),
        "per id"
    );
    assert_eq!(
        get("user=bo&vsn=2.0.0").await.1["status"],
        410,
        "the slots came back"
    );
    assert_eq!(
        get("user=cy&vsn=2.0.0").await,
        (503, json!({"status": 500}))
    );
}

#[tokio::test]
async fn an_idle_session_gives_back_its_slot_and_its_place_for_the_id() {
    // Two slots: the test's connection and one session.
    let t = capped(2).await;
    let mut conn = Conn::open(&t).await;
    let (_, opened) = conn.send("GET", "user=ida&vsn=2.0.0", &[], None).await;
    assert_eq!(opened["status"], 410);
    // No poll: the session ends after 1.5 windows.
    assert!(eventually(|| t.runtime.stats().connections == 0).await);
    let (_, opened) = conn.send("GET", "user=ida&vsn=2.0.0", &[], None).await;
    assert_eq!(
        opened["status"], 410,
        "a new session for the same id: {opened}"
    );
}
