//! Configuration: read once, here, into typed structs.
//!
//! Precedence, lowest first: built-in defaults < `fawkes.toml` (or `--config FILE`) <
//! environment (`DATABASE_URL`, then `FAWKES_*`, nested keys joined with `__`, e.g.
//! `FAWKES_HTTP__BODY_LIMIT_BYTES`) < command-line flags. This is the only module that reads
//! the process environment.

mod cli;
mod metrics;
mod otel;
mod pubsub;
mod secret;
mod shutdown;
mod signed;
mod validate;
mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use cli::{Cli, Command, MigrateAction};
pub use metrics::MetricsConfig;
pub use otel::{InvalidOtel, OtelConfig};
pub use pubsub::{AdapterKind, PubSubConfig};
pub use secret::{Purpose, SecretKey, SecretKeyError, SecretKeySource, generate_secret_key};
pub use shutdown::ShutdownConfig;
pub use signed::{SignError, VerifyError};
pub use validate::{InvalidSetting, MAX_LONGPOLL_WINDOW_SECS, MIN_OUTBOUND_QUEUE_BYTES};
pub use web::WebConfig;

/// The deployment environment, which picks safe defaults and start-up checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Local development: a token key is generated if none is set, `/dev/mailbox` is served
    /// (to loopback clients only).
    Dev,
    /// Automated tests: like `dev` without the dev-only routes.
    Test,
    /// Production: a token key is required.
    Prod,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of a Fawkes server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `dev`, `test` or `prod`.
    pub env: Environment,
    /// Address the HTTP (and later WebSocket) listener binds.
    pub bind: SocketAddr,
    /// `sqlite://PATH` (embedded, created if missing) or `postgres://…`.
    pub database_url: String,
    /// Maximum pooled database connections.
    pub database_pool_size: u32,
    /// Token key as a PASERK `k4.local.…` string (`fawkes gen-secret` makes one).
    pub secret_key: Option<String>,
    /// Where a development key is kept when `secret_key` is unset.
    pub secret_key_file: PathBuf,
    /// Lifetime of an access token, in seconds.
    pub token_ttl_secs: u64,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    pub log: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// HTTP front end settings.
    pub http: HttpConfig,
    /// Login rate limits.
    pub rate_limit: RateLimitConfig,
    /// Outgoing mail.
    pub mail: MailConfig,
    /// WebSocket transport.
    pub socket: SocketConfig,
    /// Presence (`window_ms`, `shards`), read straight into the runtime's settings.
    pub presence: crate::runtime::PresenceConfig,
    /// How this node reaches the other nodes of a cluster.
    pub pubsub: PubSubConfig,
    /// This node's name, unique in the cluster; unset: the host name and the process id.
    pub node_name: Option<String>,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: MetricsConfig,
    /// How the node drains on SIGTERM.
    pub shutdown: ShutdownConfig,
    /// OpenTelemetry traces (off unless `otel.endpoint` is set).
    pub otel: OtelConfig,
    /// The browser client served at `/` in `dev`.
    pub web: WebConfig,
}

/// WebSocket settings (the `[socket]` section): the runtime's transport settings, read
/// straight into [`crate::runtime::TransportConfig`] (`check_origin`, `allowed_origins`,
/// `max_frame_bytes`, `idle_timeout_secs`, `outbound_queue`, `outbound_queue_bytes`,
/// `write_timeout_secs`, `max_channels`, `read_buffer_bytes`, `close_grace_secs`,
/// `max_topic_bytes`, `max_sockets_per_id`, `max_messages_per_second`, `max_messages_burst`,
/// `message_timeout_secs`; see its fields), and the socket token lifetime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SocketConfig {
    /// The runtime's transport settings, as they are.
    #[serde(flatten)]
    pub transport: crate::runtime::TransportConfig,
    /// Seconds a socket token (`POST /api/v1/socket_tokens`) can be used to connect.
    pub token_ttl_secs: u64,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self {
            transport: crate::runtime::TransportConfig::default(),
            token_ttl_secs: 60,
        }
    }
}

/// HTTP front end settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes (larger → 413).
    pub body_limit_bytes: usize,
    /// Longest a request may take, in seconds (longer → 408).
    pub request_timeout_secs: u64,
    /// Origins allowed by CORS; `["*"]` allows any, `[]` disables CORS headers.
    pub cors_origins: Vec<String>,
    /// Deprecated: `shutdown.timeout_secs`, which it sets when that is not set itself
    /// ([`Config::load`]; the server warns at start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Seconds a new connection has to send a complete request head before it is closed.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay idle between requests before it is closed.
    pub keep_alive_timeout_secs: u64,
    /// Open connections (WebSockets included); 0: the open-file soft limit less a reserve
    /// for the database and files.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64); 0: no limit.
    pub max_connections_per_ip: usize,
}

impl HttpConfig {
    /// The endpoint's connection limits; `database_pool_size` sizes the reserve of file
    /// descriptors kept out of a derived `max_connections`.
    pub fn limits(&self, database_pool_size: u32) -> crate::runtime::HttpLimits {
        let positive = |n: usize| (n > 0).then_some(n);
        crate::runtime::HttpLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            keep_alive_timeout: std::time::Duration::from_secs(self.keep_alive_timeout_secs),
            max_connections: positive(self.max_connections),
            max_connections_per_ip: positive(self.max_connections_per_ip),
            // SQLite holds three files per pooled connection (database, WAL, shared memory).
            reserved_fds: 64 + 3 * database_pool_size as usize,
        }
    }
}

/// Rate limits, per minute, each a burst of that size refilling evenly; 0 turns one off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Login attempts per client address per minute.
    pub login_per_ip_per_minute: u32,
    /// Login attempts per e-mail address from one client address per minute (also password
    /// checks of `PATCH /api/v1/users/{id}`).
    pub login_per_email_per_minute: u32,
    /// Login attempts per e-mail address from all client addresses together per minute; when
    /// exhausted the e-mail is locked for a minute, doubling on each lockout up to an hour.
    /// Keep it well above `login_per_email_per_minute`, so one address cannot reach it.
    pub login_per_email_all_addresses_per_minute: u32,
    /// Registrations per client address per minute.
    pub register_per_ip_per_minute: u32,
    /// Registrations per minute on the whole node (every address together), so that many
    /// addresses (an IPv6 /48 is 65,536 keys) cannot register, and mail, without bound. Only
    /// requests with a valid body count (invalid ones cannot use it up for everyone).
    pub register_per_minute: u32,
    /// REST requests per client address per second (`/health` and `/ready` excepted), a
    /// steady rate above which requests get 429; 0: no limit.
    pub requests_per_ip_per_second: u32,
    /// REST requests one client address may make at once above that rate.
    pub requests_burst_per_ip: u32,
}

/// Which mail transport delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MailTransportKind {
    /// Keep mail in the database only (see `GET /dev/mailbox` in dev).
    Outbox,
    /// Send through an SMTP relay.
    Smtp,
}

/// TLS mode for SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a local relay or a test server).
    None,
    /// STARTTLS upgrade (usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// Outgoing mail settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MailConfig {
    /// `outbox` (default) or `smtp`.
    pub transport: MailTransportKind,
    /// The `From:` mailbox, e.g. `Fawkes <no-reply@localhost>`.
    pub from: String,
    /// SMTP relay host.
    pub smtp_host: String,
    /// SMTP relay port.
    pub smtp_port: u16,
    /// SMTP TLS mode.
    pub smtp_tls: SmtpTls,
    /// SMTP user name, if the relay wants one.
    pub smtp_username: Option<String>,
    /// SMTP password, if the relay wants one.
    pub smtp_password: Option<String>,
    /// Longest one SMTP delivery may take, in seconds.
    pub smtp_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            env: Environment::Dev,
            bind: SocketAddr::from(([127, 0, 0, 1], 4000)),
            database_url: "sqlite://fawkes.db".to_owned(),
            database_pool_size: 10,
            secret_key: None,
            secret_key_file: PathBuf::from(".fawkes-secret"),
            token_ttl_secs: 24 * 60 * 60,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            http: HttpConfig::default(),
            rate_limit: RateLimitConfig::default(),
            mail: MailConfig::default(),
            socket: SocketConfig::default(),
            presence: crate::runtime::PresenceConfig::default(),
            pubsub: PubSubConfig::default(),
            node_name: None,
            metrics: MetricsConfig::default(),
            shutdown: ShutdownConfig::default(),
            otel: OtelConfig::default(),
            web: WebConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 30,
            cors_origins: vec!["*".to_owned()],
            shutdown_timeout_secs: None,
            header_read_timeout_secs: 10,
            keep_alive_timeout_secs: 75,
            max_connections: 0,
            max_connections_per_ip: 256,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login_per_ip_per_minute: 30,
            login_per_email_per_minute: 10,
            login_per_email_all_addresses_per_minute: 100,
            register_per_ip_per_minute: 20,
            register_per_minute: 120,
            requests_per_ip_per_second: 100,
            requests_burst_per_ip: 200,
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransportKind::Outbox,
            from: "Fawkes <no-reply@localhost>".to_owned(),
            smtp_host: "localhost".to_owned(),
            smtp_port: 587,
            smtp_tls: SmtpTls::Starttls,
            smtp_username: None,
            smtp_password: None,
            smtp_timeout_secs: 10,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source held a value of the wrong shape.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// The configuration file named with `--config` does not exist.
    #[error("configuration file {0} not found")]
    MissingFile(PathBuf),
}

/// The default configuration file, read when present.
pub const DEFAULT_CONFIG_FILE: &str = "fawkes.toml";

impl Config {
    /// Loads defaults < config file < environment < the flags in `cli`.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.clone())),
            Some(path) => path.clone(),
            None => PathBuf::from(DEFAULT_CONFIG_FILE),
        };
        let figment = Self::figment(&file).merge(Serialized::defaults(cli.overrides()));
        let timeout_set = Self::sources(&file).contains("shutdown.timeout_secs");
        let mut config: Self = figment.extract().map_err(|e| {
            // `socket` flattens the runtime's settings into its section, which hides the key
            // at fault from the error; the section read alone names it.
            let precise = figment
                .extract_inner::<crate::runtime::TransportConfig>("socket")
                .err()
                .map(|mut e| {
                    // figment appends the section to the key (`max_channels.socket`).
                    if e.path.last().is_some_and(|p| p == "socket") {
                        e.path.pop();
                        e.path.insert(0, "socket".to_owned());
                    }
                    e
                });
            ConfigError::Invalid(Box::new(precise.unwrap_or(e)))
        })?;
        if let Some(secs) = config.http.shutdown_timeout_secs
            && !timeout_set
        {
            config.shutdown.timeout_secs = secs;
        }
        Ok(config)
    }

    fn figment(file: &Path) -> Figment {
        Figment::from(Serialized::defaults(Config::default())).merge(Self::sources(file))
    }

    /// The sources a user sets keys in (no defaults, no flags).
    fn sources(file: &Path) -> Figment {
        Figment::new()
            .merge(Toml::file(file))
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database_url".into()),
            )
            .merge(Env::prefixed("FAWKES_").split("__"))
    }

    /// The configuration as JSON with secrets replaced by `"[redacted]"`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        let redact = |v: &mut serde_json::Value| {
            if !v.is_null() {
                *v = serde_json::Value::from("[redacted]");
            }
        };
        if let Some(v) = value.get_mut("secret_key") {
            redact(v);
        }
        if let Some(v) = value.pointer_mut("/mail/smtp_password") {
            redact(v);
        }
        if let Some(v) = value.get_mut("database_url") {
            *v = redact_url_password(&self.database_url).into();
        }
        if let Some(v) = value.pointer_mut("/pubsub/redis_url") {
            *v = redact_url_password(&self.pubsub.redis_url).into();
        }
        value
    }

    /// Whether the database is SQLite (as opposed to PostgreSQL).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The token lifetime as a [`std::time::Duration`].
    pub fn token_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.token_ttl_secs)
    }

    /// The socket token lifetime as a [`std::time::Duration`].
    pub fn socket_token_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.socket.token_ttl_secs)
    }

    /// The runtime's configuration: the `socket` and `presence` sections as read, the
    /// cluster timings of `pubsub`, default supervision; no adapter (a single node) — the
    /// server links the `pubsub.adapter` itself.
    pub fn runtime(&self) -> crate::runtime::RuntimeConfig {
        crate::runtime::RuntimeConfig {
            transport: self.socket.transport.clone(),
            presence: self.presence.clone(),
            cluster: self.pubsub.cluster.clone(),
            ..Default::default()
        }
    }

    /// This node's name: `node_name`, or the host name and the process id.
    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(pubsub::default_node_name)
    }
}

/// `scheme://user:password@host/…` with the password replaced.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:[redacted]@{host}")
        }
        _ => url.to_owned(),
    }
}
