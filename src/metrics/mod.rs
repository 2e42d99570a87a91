//! Prometheus metrics: the recorder, the app's own metrics, and the scrape (`GET /metrics`).
//!
//! Metrics are recorded through the `metrics` facade (the runtime records its own the same
//! way) into one process-wide Prometheus recorder, installed at most once per process by the
//! first server that wants metrics ([`Metrics::install`]; see
//! [`MetricsConfig`](crate::config::MetricsConfig) for when). Without a recorder every
//! recording is a no-op, and the app does not even add its HTTP layer. A scrape sets the
//! gauges that are read rather than kept up to date (database pool, process, the runtime's
//! sizes) and renders the text format; the maintenance task runs the recorder's upkeep every
//! [`UPKEEP_EVERY`], so that histograms nobody scrapes do not grow.
//!
//! Every label is of low cardinality: route templates, methods, status classes, outcomes and
//! limiter names, never a path, topic, user or address. The names are listed, with their
//! meanings, in the README ("Operating Fawkes").

pub mod http;
pub mod listener;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::{DatabaseBackend, DatabaseConnection};

use crate::app::App;
use crate::config::Config;

/// The path a scrape asks for.
pub const METRICS_PATH: &str = "/metrics";

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often the maintenance task runs the recorder's upkeep.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Upper bounds of the buckets of every duration histogram, in seconds (0.5 ms to 10 s).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counter: HTTP requests answered, by `route`, `method` and `status_class`.
pub const HTTP_REQUESTS: &str = "fawkes_http_requests_total";
/// Histogram: time to answer an HTTP request (to its response head), same labels.
pub const HTTP_REQUEST_DURATION: &str = "fawkes_http_request_duration_seconds";
/// Counter: login attempts by `outcome` (ok, invalid, rate_limited, locked, error).
pub const LOGIN_ATTEMPTS: &str = "fawkes_login_attempts_total";
/// Counter: requests refused by a rate limiter, by `limiter`.
pub const RATE_LIMITED: &str = "fawkes_rate_limited_total";
/// Gauge: pooled database connections by `state` (in_use, idle).
pub const DB_POOL_CONNECTIONS: &str = "fawkes_db_pool_connections";
/// Gauge: the database pool's maximum size.
pub const DB_POOL_MAX_CONNECTIONS: &str = "fawkes_db_pool_max_connections";
/// Gauge: 1, labelled with the `version` and this `node`'s name.
pub const BUILD_INFO: &str = "fawkes_build_info";

/// Outcomes of a login attempt (`POST /api/v1/sessions` with an e-mail and a password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Logged in.
    Ok,
    /// Wrong e-mail or password.
    Invalid,
    /// Refused by a login rate limit before the password was checked.
    RateLimited,
    /// Refused because the e-mail is locked (its across-addresses limit ran out).
    Locked,
    /// The server failed (database, token).
    Error,
}

impl LoginOutcome {
    fn label(self) -> &'static str {
        match self {
            LoginOutcome::Ok => "ok",
            LoginOutcome::Invalid => "invalid",
            LoginOutcome::RateLimited => "rate_limited",
            LoginOutcome::Locked => "locked",
            LoginOutcome::Error => "error",
        }
    }
}

/// Counts one login attempt.
pub fn login_attempt(outcome: LoginOutcome) {
    metrics::counter!(LOGIN_ATTEMPTS, "outcome" => outcome.label()).increment(1);
}

/// Counts one request refused by `limiter` (`requests`, `login`, `registration`,
/// `registration_node`).
pub fn rate_limited(limiter: &'static str) {
    metrics::counter!(RATE_LIMITED, "limiter" => limiter).increment(1);
}

/// The process-wide recorder's handle: `None` until a server installs it, and `Some(None)`
/// if another recorder was installed first (metrics then stay off in this process).
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// A server's access to the recorder: what it serves, and where.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    on_main_listener: bool,
    process: std::sync::Arc<metrics_process::Collector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("on_main_listener", &self.on_main_listener)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of a server with `config` and this `node` name: `None` when it serves none
    /// (see [`MetricsConfig`](crate::config::MetricsConfig)), else the process-wide recorder,
    /// installed now if this is the first server to want it.
    pub fn install(config: &Config, node: &str) -> Option<Self> {
        if !config.metrics.recorded(config.env) {
            return None;
        }
        let handle = RECORDER.get_or_init(install_recorder).clone()?;
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "node" => node.to_owned())
            .set(1.0);
        Some(Self {
            handle,
            on_main_listener: config.metrics.on_main_listener(config.env),
            process: std::sync::Arc::new(metrics_process::Collector::default()),
        })
    }

    /// Whether `/metrics` is also served on the main listener (`dev` and `test`).
    pub fn on_main_listener(&self) -> bool {
        self.on_main_listener
    }

    /// Runs the recorder's upkeep (drains histogram samples into their buckets).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Sets the gauges read at scrape time and renders every metric in the text format.
    pub fn render(&self, app: &App) -> String {
        record_runtime_gauges(&app.runtime);
        record_db_pool(&app.db, app.config.database_pool_size.max(1));
        self.process.collect();
        self.handle.render()
    }
}

/// The runtime's gauges (connections, joined channels, topics, presence, queues, cluster).
fn record_runtime_gauges(runtime: &crate::runtime::Runtime) {
    runtime.record_gauges();
}

/// The database pool's connections in use and idle, and its maximum.
fn record_db_pool(db: &DatabaseConnection, max: u32) {
    let (size, idle) = match db.get_database_backend() {
        DatabaseBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DatabaseBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => return,
    };
    let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(size - idle));
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    metrics::gauge!(DB_POOL_MAX_CONNECTIONS).set(f64::from(max));
}

/// Builds the Prometheus recorder, installs it globally and describes the app's metrics;
/// `None` (with a warning) if the process already has another recorder.
fn install_recorder() -> Option<PrometheusHandle> {
    // Every histogram (all of them durations) gets these buckets: none is a summary.
    let builder = PrometheusBuilder::new().set_buckets(&DURATION_BUCKETS);
    let handle = match builder.and_then(PrometheusBuilder::install_recorder) {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!(error = %e, "metrics are off: the Prometheus recorder could not be installed");
            return None;
        }
    };
    describe();
    metrics_process::Collector::default().describe();
    Some(handle)
}

/// The `# HELP` lines of the app's metrics.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status class"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, to its response head"
    );
    describe_counter!(LOGIN_ATTEMPTS, "Login attempts by outcome");
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limiter");
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Pooled database connections by state (in_use, idle), at the scrape"
    );
    describe_gauge!(DB_POOL_MAX_CONNECTIONS, "The database pool's maximum size");
    describe_gauge!(BUILD_INFO, "1, labelled with the version and the node name");
}
