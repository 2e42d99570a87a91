//! Fawkes inside an axum app: the socket is one route of an axum `Router`, beside a JSON API,
//! served by axum on one port and shut down gracefully on Ctrl-C.
//!
//! Run it:
//!
//! ```sh
//! cargo run -p fawkes-runtime --example axum            # listens on 127.0.0.1:4002
//! cargo run -p fawkes-runtime --example axum -- 127.0.0.1:5000
//! curl http://127.0.0.1:4002/api/stats                  # {"connections":0,...}
//! ```
//!
//! Then, with the official client (`npm install phoenix ws`, Node 20):
//!
//! ```js
//! const { Socket } = require("phoenix");
//! const socket = new Socket("ws://127.0.0.1:4002/socket", { transport: require("ws"), params: { name: "ada" } });
//! socket.connect();
//! const room = socket.channel("room:lobby", {});
//! room.on("shout", (msg) => console.log("shout", msg));
//! room.join().receive("ok", (reply) => {
//!   console.log("joined from", reply.peer);
//!   room.push("shout", { text: "hello" });
//! });
//! ```
//!
//! The runtime's own front door ([`Endpoint::serve`](fawkes_runtime::Endpoint::serve)) is not
//! used here, so its connection caps and header timeouts do not apply: the connections are
//! axum's (hyper's), under whatever limits the app gives its server.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use fawkes_runtime::{
    Channel, ChannelContext, ChannelError, ConnectError, ConnectInfo, HandleIn, InvalidPattern,
    JoinOutcome, Params, Payload, Reply, Runtime, Socket, SocketMount, TransportConfig,
};
use serde_json::{Value, json};

/// Anyone with a `name` may connect; the name is the connection's assigns and its socket id.
pub(crate) struct Visitor;

/// A connected visitor: their name, and the address they connected from.
pub(crate) struct Guest {
    name: String,
    peer: SocketAddr,
}

impl Socket for Visitor {
    type Assigns = Guest;

    async fn connect(&self, params: &Params, info: &ConnectInfo) -> Result<Guest, ConnectError> {
        match params.get("name") {
            Some(name) if !name.is_empty() => Ok(Guest {
                name: name.to_owned(),
                peer: info.peer,
            }),
            _ => Err(ConnectError::forbidden()),
        }
    }

    fn id(&self, guest: &Guest) -> Option<String> {
        Some(format!("visitor:{}", guest.name))
    }
}

/// `room:*`: `ping` is answered with its payload, `shout` goes to everyone in the room.
pub(crate) struct Room;

impl Channel for Room {
    type Assigns = Guest;
    type State = ();
    type Info = ();

    async fn join(
        &self,
        _topic: &str,
        _payload: Payload,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<()>, ChannelError> {
        let peer = ctx.assigns().peer.to_string();
        Ok(JoinOutcome::ok_with((), json!({ "peer": peer })))
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _state: &mut (),
        ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        match event {
            "ping" => Ok(HandleIn::Reply(Reply::ok_with(payload))),
            "shout" => {
                let text = payload.as_json().map(|p| p["text"].clone());
                let from = ctx.assigns().name.clone();
                ctx.broadcast("shout", json!({ "from": from, "text": text }));
                Ok(HandleIn::Reply(Reply::ok()))
            }
            _ => Ok(HandleIn::Reply(Reply::error("unknown event"))),
        }
    }
}

/// `GET /api/stats`: the runtime's counters.
async fn stats(State(runtime): State<Runtime>) -> Json<Value> {
    let stats = runtime.stats();
    Json(json!({
        "connections": stats.connections,
        "connections_total": stats.connections_total,
    }))
}

/// The app: a JSON API and the Fawkes socket (phoenix.js connects to `/socket`, that is
/// `/socket/websocket`).
pub(crate) fn router(runtime: &Runtime) -> Result<Router, InvalidPattern> {
    let socket = runtime
        .socket_service(SocketMount::new(Visitor).channel("room:*", Room))?
        // axum puts the client address here (`into_make_service_with_connect_info`).
        .peer_addr_from(|ext: &http::Extensions| {
            ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|info| info.0)
        });
    Ok(Router::new()
        .route("/api/stats", get(stats))
        .route_service("/socket/websocket", socket)
        .with_state(runtime.clone()))
}

/// Serves `router` on `listener` until `shutdown` resolves and the HTTP requests in flight
/// have finished (WebSockets are the runtime's: [`Runtime::shutdown`] closes them).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4002".to_owned());
    let runtime = Runtime::start(TransportConfig::default()).await?;
    let router = router(&runtime)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    #[allow(clippy::print_stdout)]
    {
        let addr = listener.local_addr()?;
        println!("http://{addr}/api/stats and ws://{addr}/socket/websocket (Ctrl-C to stop)");
    }
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, router, ctrl_c).await?;
    // Clients are told to reconnect (close code 1012) while the runtime stops.
    runtime.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
