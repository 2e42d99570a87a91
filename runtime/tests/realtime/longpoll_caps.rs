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
