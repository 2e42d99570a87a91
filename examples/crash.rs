//! A channel that panics while its socket lives on.
//!
//! Run it: `cargo run -p fawkes-runtime --example crash`. It starts a server on an ephemeral port, connects a
//! WebSocket client, joins two channels, makes one of them panic, and shows that the client
//! gets `phx_error` for that join only while the other channel keeps answering. It exits by
//! itself.

use std::time::Duration;

use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{
    Channel, ChannelContext, ChannelError, ConnectError, ConnectInfo, HandleIn, JoinOutcome,
    Params, Payload, Reply, Runtime, Socket, SocketMount, TransportConfig,
};
use serde_json::json;

struct OpenSocket;

impl Socket for OpenSocket {
    type Assigns = ();

    async fn connect(&self, _params: &Params, _info: &ConnectInfo) -> Result<(), ConnectError> {
        Ok(())
    }
}

/// Panics on `explode`, echoes anything else.
struct Fragile;

impl Channel for Fragile {
    type Assigns = ();
    type State = ();
    type Info = ();

    async fn join(
        &self,
        _topic: &str,
        _payload: Payload,
        _ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<()>, ChannelError> {
        Ok(JoinOutcome::ok(()))
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _state: &mut (),
        _ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        if event == "explode" {
            panic!("the channel blew up on purpose");
        }
        Ok(HandleIn::Reply(Reply::ok_with(payload)))
    }
}

#[allow(clippy::print_stdout)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::start(TransportConfig::default()).await?;
    let mount = SocketMount::new(OpenSocket).channel("room:*", Fragile);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let endpoint = runtime.endpoint().socket("/socket", mount)?;
    let serving = tokio::spawn(endpoint.serve(
        listener,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));

    let mut client = WsClient::connect(&format!("ws://{addr}/socket/websocket?vsn=2.0.0"))
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let (doomed, _) = client.join("room:doomed", json!({})).await;
    let (steady, _) = client.join("room:steady", json!({})).await;
    println!("joined room:doomed ({doomed}) and room:steady ({steady})");

    client
        .push(&doomed, "room:doomed", "explode", json!({}))
        .await;
    let error = client.event("room:doomed", "phx_error").await;
    println!(
        "room:doomed -> phx_error {} (join_ref {})",
        error.payload, error.join_ref
    );

    let r = client
        .push(&steady, "room:steady", "hello", json!({"still": "alive"}))
        .await;
    let reply = client.reply(&r).await;
    println!(
        "room:steady -> {} {}",
        reply.payload["status"], reply.payload["response"]
    );

    let (rejoined, reply) = client.join("room:doomed", json!({})).await;
    println!(
        "rejoined room:doomed ({rejoined}): {}",
        reply.payload["status"]
    );

    let _ = stop.send(());
    runtime.shutdown(Duration::from_secs(1)).await;
    serving.await?;
    Ok(())
}
