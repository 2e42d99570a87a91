//! Logging (tracing-subscriber) and, when `otel.endpoint` is set, OpenTelemetry traces, for
//! the binary.
//!
//! The log filter (`log`) belongs to the log output alone; the trace exporter has its own
//! (the spans of Fawkes's crates down to DEBUG, sea-orm's statements). With traces off the
//! runtime's DEBUG spans (connect, join, `handle_in`) are disabled at their callsites under
//! the default `info` filter, and nothing is built or sent.

mod otel;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

use crate::config::{Config, LogFormat};
pub use otel::TelemetryError;

/// Set once traces are exported, read by the HTTP request span.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (`otel.endpoint` set, and [`init`] installed the exporter).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// What [`init`] installed; [`Telemetry::shutdown`] exports the spans still batched.
#[must_use = "shut it down at exit, or the last spans are lost"]
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// How long the last export may take (`otel.export_timeout_secs`).
    flush_timeout: std::time::Duration,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still batched (waiting up to `otel.export_timeout_secs`) and stops
    /// the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        EXPORTING.store(false, Ordering::Relaxed);
        // The batch processor's thread posts through the runtime: wait for it off the runtime.
        let timeout = self.flush_timeout;
        match tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "traces: the last export failed"),
            Err(e) => tracing::warn!(error = %e, "traces: the exporter did not stop"),
        }
    }
}

/// Installs the global subscriber: logs for `config.log` / `config.log_format` (a filter that
/// does not parse falls back to `info` with a warning) and, when `traces` is true and
/// `otel.endpoint` is set, the trace exporter. Must run inside the tokio runtime.
pub fn init(config: &Config, traces: bool) -> Result<Telemetry, TelemetryError> {
    let provider = if traces {
        otel::provider(config)?
    } else {
        None
    };
    let (logs, bad_filter) = log_layer(config);
    let exporter = provider.as_ref().map(otel::layer);
    tracing_subscriber::registry()
        .with(logs)
        .with(exporter)
        .init();
    if let Some(e) = bad_filter {
        tracing::warn!(filter = %config.log, error = %e, "invalid log filter; using \"info\"");
    }
    if let Some(url) = config.otel.traces_url().filter(|_| provider.is_some()) {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(
            %url,
            service = %config.otel.service_name,
            "traces: exporting spans over OTLP/HTTP"
        );
    }
    Ok(Telemetry {
        provider,
        flush_timeout: std::time::Duration::from_secs(config.otel.export_timeout_secs),
    })
}

/// The log output with its filter, and why `config.log` was refused if it was.
fn log_layer(
    config: &Config,
) -> (
    Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>,
    Option<tracing_subscriber::filter::ParseError>,
) {
    let (filter, bad_filter) = match EnvFilter::try_new(&config.log) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    // Quiet the libraries that narrate every statement or migration.
    let filter = ["sqlx=warn", "sea_orm=warn", "sea_orm_migration=warn"]
        .into_iter()
        .filter(|d| !config.log.contains(d.split('=').next().unwrap_or_default()))
        .filter_map(|d| d.parse().ok())
        .fold(filter, EnvFilter::add_directive);
    // Colour only for a terminal; redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi);
    let layer = match config.log_format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer.json().with_filter(filter).boxed(),
    };
    (layer, bad_filter)
}

/// Adds the OpenTelemetry view of an HTTP request's span, when spans are exported: the
/// caller's `traceparent` as its parent, and the semantic-convention attributes
/// (`http.request.method`, `http.route`, `url.path`; `otel.name` is "METHOD ROUTE").
/// The span declares `otel.name` and `otel.kind` empty.
pub fn http_request<B>(span: &tracing::Span, request: &http::Request<B>, route: &str) {
    if !exporting() {
        return;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    otel::adopt_remote_parent(span, request.headers());
    let method = request.method().as_str().to_owned();
    span.record("otel.name", format!("{method} {route}"));
    span.record("otel.kind", "server");
    span.set_attribute("http.request.method", method);
    span.set_attribute("http.route", route.to_owned());
    span.set_attribute("url.path", request.uri().path().to_owned());
}

/// Adds the response status to an HTTP request's span, when spans are exported (a 5xx marks
/// the span as an error, as the semantic conventions say for servers).
pub fn http_response(span: &tracing::Span, status: http::StatusCode) {
    if !exporting() {
        return;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_status(opentelemetry::trace::Status::error(status.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_traces_off_the_runtime_spans_are_disabled_under_the_default_filter() {
        let config = Config::default();
        let (logs, bad) = log_layer(&config);
        assert!(bad.is_none());
        let subscriber = tracing_subscriber::registry()
            .with(logs)
            .with(None::<tracing_subscriber::layer::Identity>);
        tracing::subscriber::with_default(subscriber, || {
            let join = tracing::debug_span!(target: "fawkes_runtime::socket_actor", "join");
            assert!(join.is_disabled());
            let request = tracing::info_span!(target: "fawkes::web", "request");
            assert!(!request.is_disabled());
        });
        assert!(!exporting());
    }
}
