//! A test socket and channel served by a real endpoint on port 0.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fawkes_runtime::testing::WsClient;
use fawkes_runtime::{
    Channel, ChannelContext, ChannelError, ConnectError, ConnectInfo, Continue, HandleIn,
    JoinOutcome, Params, Payload, Reply, Runtime, Socket, SocketMount, StopReason, TransportConfig,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Accepts `?user=NAME`; `?refuse=401` refuses with that status; `?hold=1` holds the connect
/// check until the test releases it (see [`ConnectHold`]); `?session=S` adds the disconnect
/// topic `test_session:S` (the assigns are then `NAME@S`; the socket id stays
/// `test_socket:NAME`).
#[derive(Default)]
pub struct TestSocket {
    pub hold: ConnectHold,
}

/// Lets a test act while a connect check is in progress.
#[derive(Default, Clone)]
pub struct ConnectHold {
    /// Notified when a held connect check has started.
    pub arrived: Arc<tokio::sync::Notify>,
    /// Notify to let it finish.
    pub release: Arc<tokio::sync::Notify>,
}

impl Socket for TestSocket {
    type Assigns = String;

    async fn connect(&self, params: &Params, info: &ConnectInfo) -> Result<String, ConnectError> {
        if params.get("hold").is_some() {
            self.hold.arrived.notify_one();
            self.hold.release.notified().await;
        }
        if let Some(status) = params.get("refuse").and_then(|s| s.parse().ok()) {
            return Err(ConnectError::with_status(
                http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::FORBIDDEN),
            ));
        }
        if let Some(token) = &info.auth_token {
            return Ok(format!("token:{token}"));
        }
        let user = params.get("user").ok_or_else(ConnectError::forbidden)?;
        Ok(match params.get("session") {
            Some(session) => format!("{user}@{session}"),
            None => user.to_owned(),
        })
    }

    fn id(&self, user: &String) -> Option<String> {
        let name = user.split_once('@').map_or(user.as_str(), |(name, _)| name);
        Some(format!("test_socket:{name}"))
    }

    fn disconnect_topics(&self, user: &String) -> Vec<String> {
        user.split_once('@')
            .map(|(_, session)| format!("test_session:{session}"))
            .into_iter()
            .collect()
    }
}

/// Messages for `Lab::handle_info`.
pub enum LabInfo {
    Push(Value),
    Crash,
    Stop,
}

/// What `terminate` saw: (topic, reason).
pub type Terminations = Arc<Mutex<Vec<(String, StopReason)>>>;

/// Handles kept by the `remember` event, for tests to send through later.
pub type Handles = Arc<Mutex<Vec<fawkes_runtime::ChannelHandle<LabInfo>>>>;

/// A channel that does whatever the test asks.
pub struct Lab {
    pub terminated: Terminations,
    pub handles: Handles,
}

/// A channel whose `handle_in` panics before it even builds its future.
pub struct SyncPanic;

impl Channel for SyncPanic {
    type Assigns = String;
    type State = ();
    type Info = ();

    async fn join(
        &self,
        _: &str,
        _: Payload,
        _: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<()>, ChannelError> {
        Ok(JoinOutcome::ok(()))
    }

    #[allow(clippy::manual_async_fn)]
    fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _: &mut (),
        _: &mut ChannelContext<Self>,
    ) -> impl Future<Output = Result<HandleIn, ChannelError>> + Send {
        assert!(event != "sync_panic", "panicked outside the future");
        async move { Ok(HandleIn::Reply(Reply::ok_with(payload))) }
    }
}

impl Channel for Lab {
    type Assigns = String;
    type State = u64;
    type Info = LabInfo;

    fn intercepts(&self) -> &[&str] {
        &["intercepted"]
    }

    async fn join(
        &self,
        topic: &str,
        payload: Payload,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<u64>, ChannelError> {
        let p = payload.as_json().cloned().unwrap_or_default();
        // Messages to itself first: handled right after the join (dropped if it fails).
        for message in p["self_send"].as_array().into_iter().flatten() {
            ctx.handle().send(LabInfo::Push(message.clone()));
        }
        if let Some(meta) = p.get("track").filter(|meta| meta.is_object()) {
            // Tracks its user with this meta before deciding (refusing or crashing included).
            ctx.track(ctx.assigns(), meta.clone()).await?;
        }
        if p["track_and_hang"] == true {
            // Tracks its user, then never returns: the socket actor is killed after
            // `close_grace` once the connection is gone.
            ctx.track(ctx.assigns(), json!({})).await?;
            std::future::pending::<()>().await;
        }
        if p["panic"] == true {
            panic!("join exploded");
        }
        if p["err"] == true {
            return Err("join failed".into());
        }
        if p["refuse"] == true {
            return Ok(JoinOutcome::refuse("unauthorized"));
        }
        if p["push_on_join"] == true {
            ctx.push("welcome", json!({"user": ctx.assigns()}));
        }
        Ok(JoinOutcome::ok_with(0, json!({"joined": topic})))
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        count: &mut u64,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        Ok(match event {
            "echo" => HandleIn::Reply(Reply::ok_with(payload)),
            "panic" => panic!("handle_in exploded"),
            "fail" => return Err("handle_in failed".into()),
            "count" => {
                *count += 1;
                HandleIn::Reply(Reply::ok_with(json!({"count": *count})))
            }
            "broadcast" => {
                ctx.broadcast("shout", payload);
                HandleIn::Reply(Reply::ok())
            }
            "broadcast_from" => {
                ctx.broadcast_from("shout", payload);
                HandleIn::Reply(Reply::ok())
            }
            "intercept" => {
                ctx.broadcast("intercepted", payload);
                HandleIn::Reply(Reply::ok())
            }
            "push" => {
                ctx.push("pushed", payload);
                HandleIn::Reply(Reply::ok())
            }
            "noreply" => HandleIn::NoReply,
            "hang" => std::future::pending().await,
            // In progress for `ms` milliseconds, told with a `started` push.
            "slow" => {
                ctx.push("started", json!({}));
                let ms = payload
                    .as_json()
                    .and_then(|p| p["ms"].as_u64())
                    .unwrap_or(100);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                HandleIn::Reply(Reply::ok_with(json!({"slow": "done"})))
            }
            "remember" => {
                if let Ok(mut handles) = self.handles.lock() {
                    handles.push(ctx.handle());
                }
                HandleIn::Reply(Reply::ok())
            }
            "custom" => HandleIn::Reply(Reply {
                status: "maybe".into(),
                response: payload,
            }),
            "stop" => HandleIn::Stop(StopReason::Normal, Some(Reply::ok())),
            "stop_error" => HandleIn::Stop(StopReason::Error("asked to fail".into()), None),
            "info" => {
                ctx.handle().send(LabInfo::Push(
                    payload.as_json().cloned().unwrap_or_default(),
                ));
                HandleIn::Reply(Reply::ok())
            }
            "info_crash" => {
                ctx.handle().send(LabInfo::Crash);
                HandleIn::NoReply
            }
            "info_stop" => {
                ctx.handle().send(LabInfo::Stop);
                HandleIn::NoReply
            }
            _ => HandleIn::Reply(Reply::error("unhandled event")),
        })
    }

    async fn handle_info(
        &self,
        message: LabInfo,
        _count: &mut u64,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<Continue, ChannelError> {
        match message {
            LabInfo::Push(payload) => {
                ctx.push("info", payload);
                Ok(Continue::Continue)
            }
            LabInfo::Crash => Err("handle_info failed".into()),
            LabInfo::Stop => Ok(Continue::Stop(StopReason::Shutdown("done".into()))),
        }
    }

    async fn handle_out(
        &self,
        event: &str,
        payload: Payload,
        _count: &mut u64,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<Continue, ChannelError> {
        let mut payload = payload.as_json().cloned().unwrap_or_default();
        if payload["crash_out"] == true {
            return Err("handle_out failed".into());
        }
        payload["seen_by"] = json!(ctx.assigns());
        ctx.push(event, payload);
        Ok(Continue::Continue)
    }

    async fn terminate(
        &self,
        reason: &StopReason,
        _count: &mut u64,
        ctx: &mut ChannelContext<Self>,
    ) {
        if let Ok(mut log) = self.terminated.lock() {
            log.push((ctx.topic().to_owned(), reason.clone()));
        }
    }
}

/// Tracks the user on its topic after the join (meta: the join payload) and pushes
/// `presence_state`; `update` replaces the meta, `untrack` stops tracking, `panic` crashes.
pub struct PresenceLab;

pub enum PresenceInfo {
    AfterJoin(Value),
}

impl Channel for PresenceLab {
    type Assigns = String;
    type State = ();
    type Info = PresenceInfo;

    async fn join(
        &self,
        _: &str,
        payload: Payload,
        ctx: &mut ChannelContext<Self>,
    ) -> Result<JoinOutcome<()>, ChannelError> {
        ctx.handle().send(PresenceInfo::AfterJoin(
            payload.as_json().cloned().unwrap_or_default(),
        ));
        Ok(JoinOutcome::ok(()))
    }

    async fn handle_info(
        &self,
        message: PresenceInfo,
        _: &mut (),
        ctx: &mut ChannelContext<Self>,
    ) -> Result<Continue, ChannelError> {
        let PresenceInfo::AfterJoin(meta) = message;
        let user = ctx.assigns().clone();
        ctx.track(&user, meta).await?;
        ctx.push_presence_state().await;
        Ok(Continue::Continue)
    }

    async fn handle_in(
        &self,
        event: &str,
        payload: Payload,
        _: &mut (),
        ctx: &mut ChannelContext<Self>,
    ) -> Result<HandleIn, ChannelError> {
        let user = ctx.assigns().clone();
        Ok(match event {
            "update" => {
                let phx_ref = ctx
                    .update_presence(&user, payload.as_json().cloned().unwrap_or_default())
                    .await?;
                HandleIn::Reply(Reply::ok_with(json!({"phx_ref": phx_ref})))
            }
            "untrack" => {
                ctx.untrack(&user);
                HandleIn::Reply(Reply::ok())
            }
            "track_again" => match ctx.track(&user, json!({})).await {
                Ok(_) => HandleIn::Reply(Reply::ok()),
                Err(e) => HandleIn::Reply(Reply::error(&e.to_string())),
            },
            "panic" => panic!("presence channel exploded"),
            _ => HandleIn::Reply(Reply::error("unhandled event")),
        })
    }
}

/// A running endpoint with the test socket at `/socket`.
pub struct TestEndpoint {
    pub runtime: Runtime,
    pub addr: std::net::SocketAddr,
    pub terminated: Terminations,
    pub handles: Handles,
    pub hold: ConnectHold,
    shutdown: CancellationToken,
}

impl TestEndpoint {
    pub async fn start() -> Self {
        Self::start_with(TransportConfig::default()).await
    }

    pub async fn start_with(config: impl Into<fawkes_runtime::RuntimeConfig>) -> Self {
        Self::start_limited(config, fawkes_runtime::HttpLimits::default()).await
    }

    /// Like [`TestEndpoint::start_with`], with these HTTP connection limits.
    pub async fn start_limited(
        config: impl Into<fawkes_runtime::RuntimeConfig>,
        limits: fawkes_runtime::HttpLimits,
    ) -> Self {
        Self::start_buffered(config, limits, None).await
    }

    /// Like [`TestEndpoint::start_limited`]; `send_buffer` sets the kernel send buffer of every
    /// accepted socket (default: autotuned, up to megabytes), so that a client that does not
    /// read fills it after a few frames.
    pub async fn start_buffered(
        config: impl Into<fawkes_runtime::RuntimeConfig>,
        limits: fawkes_runtime::HttpLimits,
        send_buffer: Option<u32>,
    ) -> Self {
        let runtime = Runtime::start(config).await.expect("runtime");
        let terminated = Terminations::default();
        let handles = Handles::default();
        let lab = || Lab {
            terminated: terminated.clone(),
            handles: handles.clone(),
        };
        let hold = ConnectHold::default();
        let mount = SocketMount::new(TestSocket { hold: hold.clone() })
            .channel("lab:*", lab())
            .channel("other:exact", lab())
            .channel("sync:*", SyncPanic)
            .channel("presence:*", PresenceLab);
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(bytes) = send_buffer {
            // Accepted sockets inherit it.
            socket.set_send_buffer_size(bytes).expect("SO_SNDBUF");
        }
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(1024).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        tokio::spawn(
            runtime
                .endpoint()
                .socket("/socket", mount)
                .expect("valid patterns")
                .limits(limits)
                .serve(
                    listener,
                    shutdown.clone().cancelled_owned(),
                    Duration::from_secs(1),
                ),
        );
        Self {
            runtime,
            addr,
            terminated,
            handles,
            hold,
            shutdown,
        }
    }

    /// `ws://…/socket/websocket?{query}`.
    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/socket/websocket?{query}", self.addr)
    }

    /// A V2 client for `user`.
    pub async fn client(&self, user: &str) -> WsClient {
        WsClient::connect(&self.url(&format!("user={user}&vsn=2.0.0")))
            .await
            .expect("connect")
    }

    pub fn terminations(&self) -> Vec<(String, StopReason)> {
        self.terminated
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

impl Drop for TestEndpoint {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls an async `check` every 10 ms until it holds, for up to 5 s.
pub async fn eventually_async<F: Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check().await
}

/// Polls `check` every 10 ms until it holds, for up to 5 s.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    eventually_async(|| std::future::ready(check())).await
}
