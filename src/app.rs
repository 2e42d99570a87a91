//! Wiring and lifecycle: build every part from a [`Config`], serve, shut down in order.
//!
//! [`Server::start`] resolves the secret key, opens the database and runs pending
//! migrations, builds the contexts, starts the realtime runtime, binds the listener and starts
//! serving the REST API and the app socket (`/socket/websocket`) on it, and `/metrics` on a
//! listener of its own when `metrics.bind` is set. [`Server::shutdown`] drains the node: stops
//! accepting and marks `/ready` draining at once, finishes in-flight requests while it closes
//! the WebSockets in batches (`[shutdown]`), waits for mail in flight, and closes the
//! database. Tests start a server on port 0 exactly as the binary does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, AccountsError, Revoked};
use crate::config::{
    AdapterKind, Config, Environment, InvalidSetting, SecretKey, SecretKeyError, SecretKeySource,
};
use crate::mailer::{Mailer, MailerError};
use crate::metrics::Metrics;
use crate::runtime::{
    Adapter, DrainConfig, Drained, InvalidPattern, PubSub, Runtime, SocketRegistry,
};
use crate::web::{
    self,
    rate_limit::{LoginLimiter, RegisterLimiter, RequestLimiter},
    user_socket::{token_topic, user_socket_id},
};

/// How often expired revocations are pruned (a database query; the rate limiters are pruned
/// every [`web::rate_limit::PRUNE_EVERY`]).
const PRUNE_REVOCATIONS_EVERY: Duration = Duration::from_secs(600);

/// Everything a request handler can reach.
pub struct App {
    /// The configuration the server started with.
    pub config: Config,
    /// The database pool (contexts use it; handlers only for readiness).
    pub db: DatabaseConnection,
    /// The accounts context.
    pub accounts: Accounts,
    /// The chat context.
    pub chat: crate::chat::Chat,
    /// The mailer.
    pub mailer: Mailer,
    /// Login rate limits.
    pub login_limiter: LoginLimiter,
    /// Registration rate limits.
    pub register_limiter: RegisterLimiter,
    /// REST request rate limits per client address.
    pub request_limiter: RequestLimiter,
    /// The server key: app code signs and verifies data with [`SecretKey::sign`] and
    /// [`SecretKey::verify`] (as with `Phoenix.Token`).
    pub key: SecretKey,
    /// The realtime PubSub (broadcasts, socket disconnects).
    pub pubsub: PubSub,
    /// The socket registry (live sockets by user, for direct delivery).
    pub registry: SocketRegistry,
    /// The realtime runtime (its health is part of `/health` and `/ready`).
    pub runtime: Runtime,
    /// Prometheus metrics, when this server records them (see [`crate::metrics`]).
    pub metrics: Option<Metrics>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting the server cannot work with.
    #[error(transparent)]
    Config(#[from] InvalidSetting),
    /// No usable secret key.
    #[error(transparent)]
    SecretKey(#[from] SecretKeyError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// The mailer settings are wrong.
    #[error(transparent)]
    Mailer(#[from] MailerError),
    /// The accounts context could not start.
    #[error("accounts: {0}")]
    Accounts(#[from] AccountsError),
    /// A channel of the app socket is mounted on an invalid topic pattern.
    #[error("app socket: {0}")]
    Channels(#[from] InvalidPattern),
    /// The realtime runtime could not start.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::StartError),
    /// The cluster adapter's settings are wrong (e.g. `pubsub.redis_url`).
    #[error("pubsub: {0}")]
    Cluster(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    app: Arc<App>,
    runtime: Runtime,
    shutdown: CancellationToken,
    endpoint: JoinHandle<bool>,
    drain: JoinHandle<(Drained, Instant)>,
    maintenance: JoinHandle<()>,
    /// Stops the metrics listener when the server is done (dropped, or at the end of
    /// [`Server::wait`]): it keeps serving scrapes through the drain.
    _metrics_stop: tokio_util::sync::DropGuard,
}

impl Server {
    /// Starts a server for `config` (bind to port 0 for an ephemeral port).
    pub async fn start(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        config.warn_deprecated();
        let (key, source) = SecretKey::resolve(&config)?;
        match &source {
            SecretKeySource::Configured => {}
            SecretKeySource::Generated(path) => tracing::warn!(
                file = %path.display(),
                "no secret_key configured: generated a development key and saved it; set FAWKES_SECRET_KEY in production"
            ),
            SecretKeySource::File(path) => tracing::warn!(
                file = %path.display(),
                "no secret_key configured: using the development key file; set FAWKES_SECRET_KEY in production"
            ),
        }
        if config.env == Environment::Dev && !config.bind.ip().is_loopback() {
            tracing::error!(
                bind = %config.bind,
                "DANGER: env = dev on a non-loopback address: development settings are not meant \
                 to face a network; /dev/* routes are answered to loopback clients only, but use \
                 --env prod for anything others can reach"
            );
        }
        crate::db::migrate(&config.database_url).await?;
        let db = crate::db::connect(&config.database_url, config.database_pool_size).await?;
        let mailer = Mailer::new(&config.mail, db.clone(), key.clone())?;
        let accounts = Accounts::new(db.clone(), key.clone(), config.token_ttl(), mailer.clone())
            .await?
            .with_socket_token_ttl(config.socket_token_ttl());
        let clustered = config.pubsub.adapter != AdapterKind::Memory;
        if clustered && config.is_sqlite() {
            tracing::warn!(
                "pubsub.adapter = redis over SQLite: SQLite is one node's embedded database, so \
                 this node cannot share its accounts and history with other nodes; use \
                 PostgreSQL (database_url = postgres://…) for a cluster"
            );
        }
        // Before the runtime: it registers its metric handles as it starts.
        let metrics = Metrics::install(&config, &config.node_name());
        let mut runtime_config = config.runtime();
        runtime_config.adapter = cluster_adapter(&config)?;
        let runtime = Runtime::start(runtime_config).await?;
        tracing::info!(
            node = runtime.pubsub().node_name(),
            adapter = ?config.pubsub.adapter,
            "realtime runtime started"
        );
        let listener = listen(config.bind).map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let metrics_listener = metrics_listener(&config, metrics.is_some()).await?;
        let app = Arc::new(App {
            login_limiter: LoginLimiter::new(&config.rate_limit),
            register_limiter: RegisterLimiter::new(&config.rate_limit),
            request_limiter: RequestLimiter::new(&config.rate_limit),
            key,
            pubsub: runtime.pubsub().clone(),
            registry: runtime.registry().clone(),
            runtime: runtime.clone(),
            chat: crate::chat::Chat::new(db.clone()),
            config,
            db,
            accounts,
            mailer,
            metrics,
        });
        let shutdown = CancellationToken::new();
        let metrics_stop = CancellationToken::new();
        let metrics_addr = match metrics_listener {
            Some((listener, addr)) => {
                tracing::info!(
                    "metrics served at http://{addr}{}",
                    crate::metrics::METRICS_PATH
                );
                tokio::spawn(crate::metrics::listener::serve(
                    listener,
                    app.clone(),
                    metrics_stop.clone(),
                ));
                Some(addr)
            }
            None => None,
        };
        if clustered {
            // Another node's revocation closes this node's sockets of the revoked tokens.
            let registry = app.registry.clone();
            let on_revoked: crate::accounts::OnRevoked = Arc::new(move |revoked| match revoked {
                Revoked::Token { jti } => registry.disconnect(&token_topic(jti)),
                Revoked::User {
                    user_id,
                    spared: None,
                } => {
                    registry.disconnect(&user_socket_id(*user_id));
                }
                Revoked::User {
                    user_id,
                    spared: Some(jti),
                } => registry.disconnect_except(&user_socket_id(*user_id), &token_topic(jti)),
            });
            app.accounts
                .join_cluster(app.pubsub.clone(), on_revoked, shutdown.clone());
        }
        let grace = app.config.shutdown.timeout();
        let endpoint = runtime
            .endpoint()
            .socket(
                "/socket",
                web::user_socket::mount(
                    app.accounts.clone(),
                    app.chat.clone(),
                    app.registry.clone(),
                ),
            )?
            .fallback(web::service(app.clone()))
            .limits(app.config.http.limits(app.config.database_pool_size));
        let endpoint =
            tokio::spawn(endpoint.serve(listener, shutdown.clone().cancelled_owned(), grace));
        let drain = tokio::spawn(drain_on(
            shutdown.clone(),
            runtime.clone(),
            app.config.shutdown.drain(),
        ));
        let maintenance = tokio::spawn(maintain(app.clone(), shutdown.clone()));
        Ok(Self {
            addr,
            metrics_addr,
            app,
            runtime,
            shutdown,
            endpoint,
            drain,
            maintenance,
            _metrics_stop: metrics_stop.drop_guard(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of the separate metrics listener (`metrics.bind`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared application state.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// A token that, when cancelled, starts a graceful shutdown. To have `/ready` answer
    /// draining before the listener closes, call `runtime().start_draining()` first, as
    /// [`Server::shutdown`] and the binary's signal handler do.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Shuts down gracefully: stop accepting, drain requests and sockets, flush mail, close
    /// the database (see [`Server::wait`]).
    pub async fn shutdown(self) {
        // `/ready` says draining before anything closes.
        self.runtime.start_draining();
        self.shutdown.cancel();
        self.wait().await;
    }

    /// The realtime runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Waits for a shutdown triggered through [`Server::shutdown_token`] to complete.
    ///
    /// From the signal on (whether or not this is awaited yet), the listener accepts nothing
    /// more and `/ready` answers 503 (draining); then, together and within
    /// `shutdown.timeout_secs`: the HTTP requests in flight finish, and the WebSockets close
    /// in batches with 1012 ([`Runtime::drain`]: each after the replies it was making,
    /// presence leaves included, then the goodbye to the other nodes). What is still open at
    /// the deadline is closed at once. Then mail in flight gets what is left of the deadline
    /// (at least [`MAIL_FLUSH_MIN`]), and the pool closes.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        let (http_drained, drained) =
            tokio::join!(async { self.endpoint.await.unwrap_or(false) }, self.drain);
        let (sockets, deadline) = match drained {
            Ok((sockets, started)) => (
                sockets,
                // A timeout too large to add ("wait forever") is as good as none.
                started
                    .checked_add(self.app.config.shutdown.timeout())
                    .unwrap_or(started + FOREVER),
            ),
            Err(e) => {
                tracing::error!(error = %e, "the drain task failed");
                (Drained::default(), Instant::now())
            }
        };
        let _ = self.maintenance.await;
        let left = deadline.saturating_duration_since(Instant::now());
        let mail_flushed = self.app.mailer.shutdown(left.max(MAIL_FLUSH_MIN)).await;
        if let Err(e) = self.app.db.close_by_ref().await {
            tracing::warn!(error = %e, "closing the database failed");
        }
        tracing::info!(
            http_drained,
            sockets_drained = sockets.sockets,
            batches = sockets.batches,
            sockets_cut = sockets.cut,
            sockets_in_time = sockets.in_time,
            mail_flushed,
            "shutdown complete"
        );
    }
}

/// From the shutdown signal on: marks the node draining (`/ready` 503, new sockets refused)
/// at once, then drains the sockets while the endpoint drains HTTP (together: a client slow
/// to send a request body must not hold every WebSocket open until the deadline, to be
/// closed all at once). Returns what the drain did and when it began.
async fn drain_on(
    signal: CancellationToken,
    runtime: Runtime,
    config: DrainConfig,
) -> (Drained, Instant) {
    signal.cancelled().await;
    let started = Instant::now();
    runtime.start_draining();
    (runtime.drain(config).await, started)
}

/// A deadline past any real shutdown (about 30 years), for a timeout too large to add.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// The least time mail in flight gets at shutdown, even past `shutdown.timeout_secs`.
pub const MAIL_FLUSH_MIN: Duration = Duration::from_secs(1);

/// The adapter `pubsub.adapter` names, for `node_name`; `None` for a single node.
fn cluster_adapter(config: &Config) -> Result<Option<Arc<dyn Adapter>>, StartError> {
    match config.pubsub.adapter {
        AdapterKind::Memory => Ok(None),
        AdapterKind::Redis => {
            let mut redis =
                fawkes_redis::RedisConfig::new(&config.pubsub.redis_url, config.node_name());
            redis.prefix = config.pubsub.redis_prefix.clone();
            let adapter = fawkes_redis::RedisAdapter::new(redis)
                .map_err(|e| StartError::Cluster(e.to_string()))?;
            Ok(Some(Arc::new(adapter)))
        }
    }
}

/// The separate metrics listener and its bound address, when `metrics.bind` is set and this
/// server records metrics.
async fn metrics_listener(
    config: &Config,
    recorded: bool,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    let Some(addr) = config.metrics.listener().filter(|_| recorded) else {
        return Ok(None);
    };
    let bind_error = |source| StartError::Bind { addr, source };
    let listener = crate::metrics::listener::bind(addr)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok(Some((listener, bound)))
}

/// Connections the kernel may hold for `accept` (it caps this at `net.core.somaxconn`). Tokio's
/// `TcpListener::bind` asks for 1,024, which a burst of connections (a reconnect storm, or a
/// client refused by the connection caps and retrying at once) can fill; the kernel then drops
/// new SYNs and every client behind them waits a second for its retransmission.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn maintain(app: Arc<App>, shutdown: CancellationToken) {
    let mut limiters = tokio::time::interval(web::rate_limit::PRUNE_EVERY);
    let mut revocations = tokio::time::interval(PRUNE_REVOCATIONS_EVERY);
    let mut others = tokio::time::interval(crate::accounts::REFRESH_EVERY);
    let mut upkeep = tokio::time::interval(crate::metrics::UPKEEP_EVERY);
    for every in [&mut limiters, &mut revocations, &mut others, &mut upkeep] {
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let clustered = app.config.pubsub.adapter != AdapterKind::Memory;
    loop {
        tokio::select! {
            _ = others.tick(), if clustered => {
                if let Err(e) = app.accounts.refresh_revocations().await {
                    tracing::warn!(error = %e, "reading other nodes' revocations failed");
                }
            }
            _ = upkeep.tick(), if app.metrics.is_some() => {
                if let Some(metrics) = &app.metrics {
                    metrics.upkeep();
                }
            }
            _ = limiters.tick() => {
                app.login_limiter.prune();
                app.register_limiter.prune();
                app.request_limiter.prune();
            }
            _ = revocations.tick() => match app.accounts.prune_revocations().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "pruned expired revocations"),
                Err(e) => tracing::warn!(error = %e, "pruning revocations failed"),
            },
            () = shutdown.cancelled() => return,
        }
    }
}
