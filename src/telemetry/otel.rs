//! OpenTelemetry traces: the OTLP/HTTP exporter `otel.endpoint` names, the filter of what is
//! exported, and the W3C `traceparent` of incoming requests.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::Metadata;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::DynFilterFn;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{Config, InvalidOtel, InvalidSetting};

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An `[otel]` setting is unusable.
    #[error(transparent)]
    Invalid(#[from] InvalidOtel),
    /// An `[otel]` setting is a useless zero.
    #[error(transparent)]
    Zero(#[from] InvalidSetting),
    /// The exporter could not be built.
    #[error("cannot set up the OTLP exporter for otel.endpoint: {0}")]
    Exporter(String),
}

/// The tracer provider for `config.otel`, or `None` when `otel.endpoint` is unset. Must run
/// inside the tokio runtime, which carries the exports.
pub(super) fn provider(config: &Config) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let otel = &config.otel;
    let Some(url) = otel.traces_url() else {
        return Ok(None);
    };
    otel.check()?;
    if let Some(zero) = otel.zero() {
        return Err(zero.into());
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let timeout = Duration::from_secs(otel.export_timeout_secs);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = OnRuntime {
        client: opentelemetry_http::hyper::HyperClient::new(connector, timeout, None),
        runtime,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(timeout)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(otel.batch_delay_ms))
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let resource = Resource::builder()
        .with_service_name(otel.service_name.clone())
        .with_attributes([
            KeyValue::new("service.instance.id", config.node_name()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(otel.sample_ratio)));
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .with_sampler(sampler)
            .build(),
    ))
}

/// The layer exporting spans through `provider`, behind its own filter (see [`exported`]).
pub(super) fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let tracer = provider.tracer("fawkes");
    let filter = DynFilterFn::new(exported::<S>)
        .with_callsite_filter(|meta| {
            if !exported_callsite(meta) {
                tracing::subscriber::Interest::never()
            } else if is_query(meta) {
                tracing::subscriber::Interest::sometimes()
            } else {
                tracing::subscriber::Interest::always()
            }
        })
        .with_max_level_hint(LevelFilter::DEBUG);
    tracing_subscriber::Layer::with_filter(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false),
        filter,
    )
}

/// The spans of Fawkes's crates down to DEBUG (the runtime's connects, joins and `handle_in`)
/// and sea-orm's statement spans; events of WARN and above, as events of their span, but
/// not OpenTelemetry's own (a failed export is logged, never exported).
fn exported_callsite(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    if !meta.is_span() {
        return *meta.level() <= tracing::Level::WARN && !target.starts_with("opentelemetry");
    }
    (target.starts_with("fawkes") || is_query(meta)) && *meta.level() <= tracing::Level::DEBUG
}

fn is_query(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("sea_orm") && meta.name().starts_with("sea_orm.")
}

/// [`exported_callsite`], and a statement only inside an exported span (a request, a join):
/// migrations and periodic maintenance do not each make a trace.
fn exported<S>(meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    exported_callsite(meta) && (!is_query(meta) || cx.lookup_current().is_some())
}

/// Makes the span of an incoming request a child of the caller's span when the request
/// carries a valid W3C `traceparent` (and `tracestate`).
pub(super) fn adopt_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The hyper client, each request of which runs on the server's tokio runtime: the batch
/// processor exports from a thread of its own, outside any runtime.
#[derive(Debug)]
struct OnRuntime {
    client: opentelemetry_http::hyper::HyperClient<Https>,
    runtime: tokio::runtime::Handle,
}

/// `http://` and `https://` (rustls, the Mozilla roots of `webpki-roots`).
type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self
            .runtime
            .spawn(async move { client.send_bytes(request).await });
        sent.await.map_err(|e| Box::new(e) as HttpError)?
    }
}
