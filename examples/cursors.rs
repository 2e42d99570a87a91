//! Cursor sharing: everyone on a board sees who is there and where the others point.
//!
//! What it shows, in one file:
//! - a `Socket` that authenticates a `name` parameter (and an optional admin key);
//! - a `board:*` channel with presence (`presence_state` after the join, `presence_diff` on
//!   joins and leaves, phoenix.js's `Presence` understands both), and `cursor:move` relayed to
//!   the others with `broadcast_from` (the mover does not get its own moves back);
//! - `admin:*`, a topic refused to non-admins, whose `announce` reaches the lobby board;
//! - a ticker broadcasting from outside any channel (how many are on the lobby board, each
//!   second);
//! - tests of all of it with the `testing` helpers (`cargo test -p fawkes-runtime --example
//!   cursors`).
//!
//! Run it:
//!
//! ```sh
//! cargo run -p fawkes-runtime --example cursors     # ws://127.0.0.1:4002/socket/websocket
//! ```
//!
//! Then, with the official client (`npm install phoenix ws`, Node 20):
//!
//! ```js
//! const { Socket, Presence } = require("phoenix");
//! const socket = new Socket("ws://127.0.0.1:4002/socket", { transport: require("ws"), params: { name: "ada" } });
//! socket.connect();
//! const board = socket.channel("board:lobby", {});
//! const presence = new Presence(board);
//! presence.onSync(() => console.log("online:", presence.list((name) => name).join(", ")));
//! board.on("cursor:move", ({ name, x, y }) => console.log(name, "at", x, y));
//! board.on("tick", ({ online }) => console.log(online, "on the lobby board"));
//! board.join().receive("ok", () => board.push("cursor:move", { x: 10, y: 20 }));
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fawkes_runtime::{
    Channel, ChannelContext, ChannelError, ConnectError, ConnectInfo, Continue, HandleIn,
    JoinOutcome, Params, Payload, PubSub, Reply, Runtime, RuntimeConfig, Socket, SocketMount,
};
use serde::Deserialize;
use serde_json::json;

/// The admin key. A real app would check a signed token instead.
const ADMIN_KEY: &str = "let-me-in";

/// The board the ticker reports on.
const LOBBY: &str = "board:lobby";

/// Who is connected.
#[derive(Debug, Clone)]
struct User {
    name: String,
    admin: bool,
}

/// `?name=ada` (1 to 32 characters) connects; `&admin_key=…` makes an admin.
struct CursorSocket;

impl Socket for CursorSocket {
    type Assigns = User;

    async fn connect(&self, params: &Params, _info: &ConnectInfo) -> Result<User, ConnectError> {
        let name = params.get("name").map(str::trim).unwrap_or_default();
        if name.is_empty() || name.chars().count() > 32 {
            return Err(ConnectError::forbidden());
        }
        Ok(User {
            name: name.to_owned(),
            admin: params.get("admin_key") == Some(ADMIN_KEY),
        })
    }

    /// Every socket of one name shares an id: `pubsub.disconnect("user:ada")` closes them all.
    fn id(&self, user: &User) -> Option<String> {
        Some(format!("user:{}", user.name))
    }
}

/// A cursor position, as the client pushes it.
#[derive(Debug, Deserialize)]
struct Move {
    x: f64,
    y: f64,
}

/// `board:*`: presence and cursors.
struct BoardChannel;

/// What a board join sends itself.
enum BoardInfo {
    /// Track the user and push `presence_state`, once the join reply is out.
    AfterJoin,
}

impl Channel for BoardChannel {
    type Assigns = User;
    type State = ();
    type Info = BoardInfo;

    async fn join(
        &self,
        _topic: &str,
        _payload: Payload,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<()>, ChannelError> {
        // Handled right after the join, before any other message of this socket.
        ctx.handle().send(BoardInfo::AfterJoin);
        Ok(JoinOutcome::ok(()))
    }

    async fn handle_info(
        &self,
        message: BoardInfo,
        _state: &mut (),
        ctx: &mut ChannelContext<Self>,
    ) -> Result<Continue, ChannelError> {
        match message {
            BoardInfo::AfterJoin => {
                let name = ctx.assigns().name.clone();
                ctx.track(&name, json!({ "online_at": unix_seconds() }))
                    .await?;
                ctx.push_presence_state().await;
            }
        }
        Ok(Continue::Continue)
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _state: &mut (),
        ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        Ok(HandleIn::Reply(match event {
            "cursor:move" => match payload.decode::<Move>() {
                Ok(Move { x, y }) if x.is_finite() && y.is_finite() => {
                    let name = &ctx.assigns().name;
                    // To everyone on the board but this socket.
                    ctx.broadcast_from("cursor:move", json!({ "name": name, "x": x, "y": y }));
                    Reply::ok()
                }
                _ => Reply::error("invalid move"),
            },
            _ => Reply::error("unknown event"),
        }))
    }
}

/// `admin:*`: admins only; `announce` `{"text"}` reaches the lobby board.
struct AdminChannel;

impl Channel for AdminChannel {
    type Assigns = User;
    type State = ();
    type Info = ();

    async fn join(
        &self,
        _topic: &str,
        _payload: Payload,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<()>, ChannelError> {
        if ctx.assigns().admin {
            Ok(JoinOutcome::ok(()))
        } else {
            Ok(JoinOutcome::refuse("unauthorized"))
        }
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _state: &mut (),
        ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        #[derive(Deserialize)]
        struct Announce {
            text: String,
        }
        Ok(HandleIn::Reply(
            match (event, payload.decode::<Announce>()) {
                ("announce", Ok(Announce { text })) if !text.trim().is_empty() => {
                    let from = &ctx.assigns().name;
                    ctx.pubsub().broadcast(
                        LOBBY,
                        "announcement",
                        json!({ "from": from, "text": text }),
                    );
                    Reply::ok()
                }
                ("announce", _) => Reply::error("invalid announcement"),
                _ => Reply::error("unknown event"),
            },
        ))
    }
}

/// The socket and its channels, mounted on their topic patterns.
fn mount() -> SocketMount<CursorSocket> {
    SocketMount::new(CursorSocket)
        .channel("board:*", BoardChannel)
        .channel("admin:*", AdminChannel)
}

/// Broadcasts `tick` `{"online"}` (how many names are on the lobby board) every `every`, from
/// outside any channel, until the runtime stops.
async fn ticker(runtime: Runtime, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = runtime.stopped() => return,
        }
        let online = runtime
            .presence()
            .list(LOBBY)
            .await
            .as_object()
            .map_or(0, |names| names.len());
        tick(runtime.pubsub(), online);
    }
}

fn tick(pubsub: &PubSub, online: usize) {
    pubsub.broadcast(LOBBY, "tick", json!({ "online": online }));
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4002".to_owned());
    let runtime = Runtime::start(RuntimeConfig::default()).await?;
    tokio::spawn(ticker(runtime.clone(), Duration::from_secs(1)));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "cursors on ws://{}/socket/websocket (Ctrl-C to stop)",
            listener.local_addr()?
        );
    }
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    runtime
        .endpoint()
        .socket("/socket", mount())?
        .serve(listener, ctrl_c, Duration::from_secs(5))
        .await;
    runtime.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use fawkes_runtime::testing::ChannelCase;
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_name_is_required_to_connect() {
        let case = ChannelCase::start(mount()).await;
        assert!(case.connect(&[]).await.is_err());
        assert!(case.connect(&[("name", "  ")]).await.is_err());
        let ada = case
            .connect(&[("name", "ada")])
            .await
            .expect("ada connects");
        assert_eq!(ada.id(), Some("user:ada"));
    }

    #[tokio::test]
    async fn a_cursor_move_reaches_the_others_and_not_the_mover() {
        let case = ChannelCase::start(mount()).await;
        let mut ada = case.socket_with_assigns(user("ada", false)).await;
        let mut bob = case.socket_with_assigns(user("bob", false)).await;
        ada.subscribe_and_join(LOBBY, json!({}))
            .await
            .expect("ada joins");
        bob.join(LOBBY, json!({})).await.expect("bob joins");

        let moved = ada
            .push(LOBBY, "cursor:move", json!({ "x": 10, "y": 20.5 }))
            .await;
        ada.assert_reply(&moved, "ok", json!({})).await;
        let expected = json!({ "name": "ada", "x": 10.0, "y": 20.5 });
        bob.assert_push("cursor:move", expected.clone()).await;
        case.assert_broadcast("cursor:move", expected).await;
        // `broadcast` instead of `broadcast_from` would fail here.
        ada.refute_push("cursor:move", json!({})).await;
    }

    #[tokio::test]
    async fn a_bad_move_is_answered_with_an_error_and_reaches_nobody() {
        let case = ChannelCase::start(mount()).await;
        let mut ada = case.socket_with_assigns(user("ada", false)).await;
        ada.subscribe_and_join(LOBBY, json!({}))
            .await
            .expect("ada joins");
        for bad in [
            json!({ "x": "left", "y": 1 }),
            json!({ "x": 1 }),
            json!("up"),
        ] {
            let moved = ada.push(LOBBY, "cursor:move", bad).await;
            ada.assert_reply(&moved, "error", json!({ "reason": "invalid move" }))
                .await;
        }
        case.refute_broadcast("cursor:move", json!({})).await;
    }

    #[tokio::test]
    async fn joining_shows_who_is_on_the_board() {
        let case = ChannelCase::start(mount()).await;
        case.subscribe(LOBBY).await;
        let mut ada = case.socket_with_assigns(user("ada", false)).await;
        ada.join(LOBBY, json!({})).await.expect("ada joins");
        // The list pushed after a join may miss the changes of the current coalescing window
        // (`presence.window`): those follow as a diff, as phoenix.js's `Presence` expects.
        ada.assert_push("presence_state", json!({})).await;
        case.assert_broadcast("presence_diff", json!({ "joins": { "ada": {} } }))
            .await;

        let mut bob = case.socket_with_assigns(user("bob", false)).await;
        bob.join(LOBBY, json!({})).await.expect("bob joins");
        bob.assert_push("presence_state", json!({ "ada": { "metas": [{}] } }))
            .await;
        ada.assert_push("presence_diff", json!({ "joins": { "bob": {} } }))
            .await;

        bob.close().await;
        ada.assert_push("presence_diff", json!({ "leaves": { "bob": {} } }))
            .await;
    }

    #[tokio::test]
    async fn only_admins_join_admin_topics_and_announcements_reach_the_lobby() {
        let case = ChannelCase::start(mount()).await;
        let mut bob = case
            .connect(&[("name", "bob")])
            .await
            .expect("bob connects");
        let refused = bob
            .join("admin:console", json!({}))
            .await
            .expect_err("bob is no admin");
        assert_eq!(refused.response, json!({ "reason": "unauthorized" }));

        let mut ada = case
            .connect(&[("name", "ada"), ("admin_key", ADMIN_KEY)])
            .await
            .expect("ada connects");
        ada.join("admin:console", json!({}))
            .await
            .expect("ada is an admin");
        bob.join(LOBBY, json!({}))
            .await
            .expect("bob joins the lobby");
        let announced = ada
            .push("admin:console", "announce", json!({ "text": "tea time" }))
            .await;
        ada.assert_reply(&announced, "ok", json!({})).await;
        bob.assert_push("announcement", json!({ "from": "ada", "text": "tea time" }))
            .await;
    }

    #[tokio::test]
    async fn the_ticker_counts_who_is_on_the_lobby_board() {
        let case = ChannelCase::start(mount()).await;
        let mut ada = case.socket_with_assigns(user("ada", false)).await;
        case.subscribe(LOBBY).await;
        ada.join(LOBBY, json!({})).await.expect("ada joins");
        case.assert_broadcast("presence_diff", json!({ "joins": { "ada": {} } }))
            .await;
        tokio::spawn(ticker(case.runtime().clone(), Duration::from_millis(20)));
        case.assert_broadcast("tick", json!({ "online": 1 })).await;
    }

    fn user(name: &str, admin: bool) -> User {
        User {
            name: name.to_owned(),
            admin,
        }
    }
}
