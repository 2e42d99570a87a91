//! The official phoenix.js client (npm `phoenix`, pinned) against the runtime.

#[path = "../../../tests/js/node.rs"]
mod node;

use crate::support::TestEndpoint;

#[tokio::test]
async fn phoenix_js_interop() {
    let t = TestEndpoint::start().await;
    let url = format!("ws://{}/socket", t.addr);
    let output = node::run_interop(&["fixture", &url]).await;
    for scenario in [
        "ok connect with an auth token, join, push and get the reply",
        "ok receive a broadcast from another client",
        "ok heartbeats are answered",
        "ok leave closes the channel",
        "ok a second Channel object for a joined topic replaces the first",
        "ok an unauthorized join is refused",
        "ok phx_error is recovered by rejoining",
        "ok binary payloads round-trip as ArrayBuffers",
        "ok vsn 1.0.0 with object frames",
    ] {
        assert!(
            output.contains(scenario),
            "missing `{scenario}` in:\n{output}"
        );
    }
}
