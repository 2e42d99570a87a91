//! The official phoenix.js client over LongPoll (npm `phoenix`, pinned) against the runtime,
//! beside phoenix.js WebSocket clients: `tests/js/longpoll.mjs`, mode `fixture`.

// `interop.rs` includes it too; only `run_script` is used here.
#[allow(clippy::duplicate_mod, dead_code)]
#[path = "../../../tests/js/node.rs"]
mod node;

use std::time::Duration;

use fawkes_runtime::TransportConfig;

use crate::support::TestEndpoint;

#[tokio::test]
async fn phoenix_js_over_longpoll() {
    let t = TestEndpoint::start_with(TransportConfig {
        longpoll: true,
        // Short, so that the scenarios see sessions end without waiting long.
        longpoll_window: Duration::from_secs(1),
        ..TransportConfig::default()
    })
    .await;
    let url = format!("ws://{}/socket", t.addr);
    let output = node::run_script("longpoll.mjs", &["fixture", &url]).await;
    for scenario in [
        "ok LongPoll connects with an auth token, joins, pushes and gets the reply",
        "ok a burst of 150 pushes goes out in batches of at most 100 and every reply comes back in order",
        "ok a channel crash over LongPoll is recovered by rejoining",
        "ok broadcasts go both ways between LongPoll and WebSocket clients in one room",
        "ok 250 broadcasts reach the LongPoll client in order, once each",
        "ok LongPoll and WebSocket clients see each other join and leave in presence",
        "ok binary pushes from LongPoll travel as base64 lines and arrive as bytes",
        "ok a killed LongPoll client's session ends and the WebSocket client sees it leave",
        "ok a stalled client's session ends; the 410 after the stall makes it rejoin on a new session",
        "ok longPollFallbackMs falls back to LongPoll when a proxy refuses the WebSocket upgrade",
    ] {
        assert!(
            output.contains(scenario),
            "missing `{scenario}` in:\n{output}"
        );
    }
    // The clients are gone without a word (LongPoll has no close): every session ends once
    // its window passes without a poll, and its socket with it.
    assert!(
        crate::support::eventually(|| t.runtime.stats().connections == 0).await,
        "sessions left: {}",
        t.runtime.stats().connections
    );
}
