//! The smallest Fawkes server: one socket, one channel that echoes.
//!
//! Run it:
//!
//! ```sh
//! cargo run -p fawkes-runtime --example echo            # listens on 127.0.0.1:4001
//! cargo run -p fawkes-runtime --example echo -- 127.0.0.1:5000
//! cargo run -p fawkes-runtime --example echo -- 127.0.0.1:5000 --max-messages-per-second 0
//! cargo run -p fawkes-runtime --example echo -- --prometheus   # metrics recorded (benchmarks)
//! cargo run -p fawkes-runtime --example echo -- --longpoll     # LongPoll too, at /socket/longpoll
//! ```
//!
//! `--prometheus` installs a Prometheus recorder before the runtime starts and renders a scrape
//! every 5 seconds (discarded): what a server exporting the runtime's metrics pays, for the
//! benchmarks to compare with and without.
//!
//! `--longpoll` also serves phoenix.js' LongPoll transport (`TransportConfig::longpoll`, off by
//! default) at `/socket/longpoll`, beside the WebSocket: connect with `transport: LongPoll`
//! (`bench/longpoll-cost.mjs` measures what it costs against the WebSocket).
//!
//! Then, with the official client (`npm install phoenix ws`, Node 20):
//!
//! ```js
//! const { Socket } = require("phoenix");
//! const socket = new Socket("ws://127.0.0.1:4001/socket", { transport: require("ws"), params: { name: "ada" } });
//! socket.connect();
//! const channel = socket.channel("echo:lobby", {});
//! channel.join().receive("ok", () =>
//!   channel.push("shout", { hello: "world" }).receive("ok", (reply) => console.log(reply)));
//! ```

use std::time::Duration;

use fawkes_runtime::{
    Channel, ChannelContext, ChannelError, ConnectError, ConnectInfo, HandleIn, JoinOutcome,
    Params, Payload, Reply, Runtime, Socket, SocketMount, TransportConfig,
};

/// Anyone may connect; `name` names the connection (the benchmarks connect with `token`).
struct EchoSocket;

impl Socket for EchoSocket {
    type Assigns = String;

    async fn connect(&self, params: &Params, _info: &ConnectInfo) -> Result<String, ConnectError> {
        Ok(params.get("name").unwrap_or("anonymous").to_owned())
    }
}

/// Replies to every event with its payload; broadcasts `message:new` to the topic.
struct EchoChannel;

impl Channel for EchoChannel {
    type Assigns = String;
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
        ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        if event == "message:new" {
            // Fan-out: everyone on the topic gets it; the sender gets `ok`.
            ctx.broadcast(event, payload);
            return Ok(HandleIn::Reply(Reply::ok()));
        }
        Ok(HandleIn::Reply(Reply::ok_with(payload)))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:4001".to_owned();
    let mut config = TransportConfig::default();
    let mut prometheus = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--prometheus" {
            prometheus = true;
        } else if arg == "--longpoll" {
            config.longpoll = true;
        } else if arg == "--max-messages-per-second" {
            config.max_messages_per_second = args
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or("--max-messages-per-second takes a number (0: no limit)")?;
        } else {
            addr = arg;
        }
    }
    // Before `Runtime::start`: the runtime registers its metrics there.
    let recorder = prometheus.then(install_recorder).transpose()?;
    let runtime = Runtime::start(config).await?;
    if let Some(handle) = recorder {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                runtime.record_gauges();
                handle.run_upkeep();
                std::hint::black_box(handle.render());
            }
        });
    }
    let mount = SocketMount::new(EchoSocket).channel("echo:*", EchoChannel);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "echo server on ws://{}/socket/websocket (Ctrl-C to stop)",
            listener.local_addr()?
        );
    }
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    runtime
        .endpoint()
        .socket("/socket", mount)?
        .serve(listener, ctrl_c, Duration::from_secs(5))
        .await;
    runtime.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Installs a Prometheus recorder with histogram buckets (as a server exporting the runtime's
/// metrics would), returning its handle.
fn install_recorder()
-> Result<metrics_exporter_prometheus::PrometheusHandle, Box<dyn std::error::Error>> {
    let buckets = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5,
    ];
    Ok(metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&buckets)?
        .install_recorder()?)
}
