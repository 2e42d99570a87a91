//! The app under failures and races: client messages pipelined behind a join, and the
//! session registry failing under live sockets.

use fawkes::testing::{WsClient, faults};
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
        let (join_ref, status_ref, leave_ref) =
            (format!("j{round}"), format!("s{round}"), format!("l{round}"));
        c.send_batch(vec![
            WsClient::frame(json!(join_ref), json!(join_ref), "room:x", "phx_join", json!({})),
            WsClient::frame(
                json!(join_ref),
                json!(status_ref),
                "room:x",
                "status:set",
                json!({"status": format!("busy {round}")}),
            ),
            WsClient::frame(json!(join_ref), json!(leave_ref), "room:x", "phx_leave", json!({})),
        ])
        .await;
        assert_eq!(c.reply(&join_ref).await.status(), Some("ok"), "round {round}");
        let status = c.reply(&status_ref).await;
        assert_eq!(status.status(), Some("ok"), "round {round}: {status:?}");
        assert_eq!(c.reply(&leave_ref).await.status(), Some("ok"), "round {round}");
        assert!(
            c.unmatched().iter().all(|f| f.event != "phx_error"),
            "round {round}: the channel crashed: {:?}",
            c.unmatched()
        );
    }
}
