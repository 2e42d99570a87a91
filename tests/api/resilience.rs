//! The app under failures and races: client messages pipelined behind a join, and the
//! session registry failing under live sockets, and health checks once the runtime is down.

use fawkes::testing::{WsClient, faults};
use std::time::Duration;

use serde_json::json;

use crate::support::TestServer;

/// `room:*`'s join tracks the user from a message it sends itself; a `status:set` the client
/// sent right behind its `phx_join` (in the same write) must find the presence tracked.
#[tokio::test]
async fn status_set_pipelined_behind_its_join_always_finds_the_presence() {
    let t = TestServer::start().await;
    let (_, token) = t.user("pipeline@example.com").await;
    let mut c = t.socket(&token).await;
    for round in 0..60 {
        let (join_ref, status_ref, leave_ref) = (
            format!("j{round}"),
            format!("s{round}"),
            format!("l{round}"),
        );
        c.send_batch(vec![
            WsClient::frame(
                json!(join_ref),
                json!(join_ref),
                "room:x",
                "phx_join",
                json!({}),
            ),
            WsClient::frame(
                json!(join_ref),
                json!(status_ref),
                "room:x",
                "status:set",
                json!({"status": format!("busy {round}")}),
            ),
            WsClient::frame(
                json!(join_ref),
                json!(leave_ref),
                "room:x",
                "phx_leave",
                json!({}),
            ),
        ])
        .await;
        assert_eq!(
            c.reply(&join_ref).await.status(),
            Some("ok"),
            "round {round}"
        );
        let status = c.reply(&status_ref).await;
        assert_eq!(status.status(), Some("ok"), "round {round}: {status:?}");
        assert_eq!(
            c.reply(&leave_ref).await.status(),
            Some("ok"),
            "round {round}"
        );
        assert!(
            c.unmatched().iter().all(|f| f.event != "phx_error"),
            "round {round}: the channel crashed: {:?}",
            c.unmatched()
        );
    }
}

/// The session registry fails while messages are being delivered to a user's sockets: it is
/// restarted with both sockets, direct delivery reaches them again, and logging out still
/// closes exactly the socket opened with that token.
#[tokio::test]
async fn logout_closes_a_socket_after_the_session_registry_failed() {
    let t = TestServer::start().await;
    let (ann_id, password) = t.register("ann.registry@example.com").await;
    let phone = t.login("ann.registry@example.com", &password).await;
    let laptop = t.login("ann.registry@example.com", &password).await;
    let (_, bob) = t.user("bob.registry@example.com").await;
    let conversation = t.conversation(&bob, ann_id).await;
    let mut on_phone = t.socket(&phone).await;
    let mut on_laptop = t.socket(&laptop).await;
    on_phone.join("room:chat", json!({})).await;
    on_laptop.join("room:chat", json!({})).await;
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let post = |n: usize| {
        t.post(
            &path,
            Some(&bob),
            json!({"content": format!("message {n}")}),
        )
    };

    // Live traffic: bob keeps writing while the registry fails.
    let server = t.server();
    let (sent, restarted) = tokio::join!(
        async {
            let mut delivered = Vec::new();
            for n in 0..20 {
                let resp = post(n).await;
                assert_eq!(resp.status, 201, "{}", resp.text);
                delivered.push(resp.body["meta"]["delivered"].as_u64());
            }
            delivered
        },
        faults::fail_registry(server.runtime())
    );
    assert!(restarted, "the registry was restarted");
    assert_eq!(sent.len(), 20);
    // After the restart both sockets are registered again.
    let resp = post(20).await;
    assert_eq!(resp.body["meta"]["delivered"], json!(2), "{}", resp.text);
    for c in [&mut on_phone, &mut on_laptop] {
        c.expect("message 20", |f| {
            f.event == "receive_msg" && f.payload["message"]["content"] == json!("message 20")
        })
        .await;
    }

    assert_eq!(
        t.call("DELETE", "/api/v1/sessions", Some(&phone), None)
            .await
            .status,
        204
    );
    assert_eq!(on_phone.closed().await, (1001, "disconnected".to_owned()));
    let h = on_laptop.heartbeat().await;
    on_laptop.reply(&h).await;
}

/// When the runtime's root supervisor gives up (its children failed more often than its
/// restart intensity allows), liveness and readiness say so: the process must be restarted.
#[tokio::test]
async fn health_and_readiness_fail_once_the_runtime_is_down() {
    let t = TestServer::start().await;
    assert_eq!(t.get("/health", None).await.status, 200);
    assert_eq!(t.get("/ready", None).await.status, 200);
    let runtime = t.server().runtime();
    let mut failures = 0;
    while faults::fail_registry(runtime).await {
        failures += 1;
        assert!(failures < 20, "the root never gave up");
    }
    assert!(
        crate::support::eventually(Duration::from_secs(5), || async {
            (!runtime.health().is_up()).then_some(())
        })
        .await
        .is_some()
    );
    for path in ["/health", "/ready"] {
        t.get(path, None).await.assert_json_error(503);
    }
}
