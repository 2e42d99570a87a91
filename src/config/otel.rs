//! The `[otel]` section: OpenTelemetry traces, exported over OTLP/HTTP when `endpoint` is set.

use serde::{Deserialize, Serialize};

use super::validate::InvalidSetting;

/// The `[otel]` section. Traces are off unless `endpoint` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OtelConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://collector:4318` (`/v1/traces` is
    /// appended); unset: no traces are exported (the default).
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Milliseconds between two exports of the spans batched meanwhile.
    pub batch_delay_ms: u64,
    /// Seconds one export may take before it is abandoned.
    pub export_timeout_secs: u64,
    /// The share of traces recorded, from 0 (none) to 1 (all), for the traces this node
    /// starts; a request carrying a `traceparent` follows its caller's sampling decision.
    pub sample_ratio: f64,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            service_name: "fawkes".to_owned(),
            batch_delay_ms: 5_000,
            export_timeout_secs: 10,
            sample_ratio: 1.0,
        }
    }
}

/// Why the `[otel]` settings cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidOtel {
    /// `endpoint` is not an `http://` or `https://` URL.
    #[error(
        "invalid configuration: otel.endpoint = {0:?} is not an http:// or https:// URL with \
         a host (OTLP over HTTP, e.g. http://collector:4318); environment FAWKES_OTEL__ENDPOINT"
    )]
    Endpoint(String),
    /// `sample_ratio` is not between 0 and 1.
    #[error(
        "invalid configuration: otel.sample_ratio = {0} is not between 0 and 1; environment \
         FAWKES_OTEL__SAMPLE_RATIO"
    )]
    SampleRatio(f64),
    /// `service_name` is empty.
    #[error(
        "invalid configuration: otel.service_name is empty; environment FAWKES_OTEL__SERVICE_NAME"
    )]
    ServiceName,
}

impl OtelConfig {
    /// The URL spans are posted to: `endpoint` with `/v1/traces` appended; `None` when traces
    /// are off.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?.trim_end_matches('/');
        Some(format!("{endpoint}/v1/traces"))
    }

    /// Checks the settings that only matter when traces are on (see
    /// [`super::Config::validate`] for the zeros).
    pub fn check(&self) -> Result<(), InvalidOtel> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(());
        };
        let has_host = endpoint
            .parse::<http::Uri>()
            .ok()
            .filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")))
            .and_then(|uri| uri.host().map(|h| !h.is_empty()))
            .unwrap_or(false);
        if !has_host {
            return Err(InvalidOtel::Endpoint(endpoint.clone()));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(InvalidOtel::SampleRatio(self.sample_ratio));
        }
        if self.service_name.trim().is_empty() {
            return Err(InvalidOtel::ServiceName);
        }
        Ok(())
    }

    /// The first useless zero among these settings, when traces are on (also reported by
    /// [`super::Config::validate`]).
    pub fn zero(&self) -> Option<InvalidSetting> {
        self.endpoint.as_ref()?;
        if self.batch_delay_ms == 0 {
            return Some(InvalidSetting::zero(
                "otel.batch_delay_ms",
                "leaves the exporter no time to gather a batch",
            ));
        }
        if self.export_timeout_secs == 0 {
            return Some(InvalidSetting::zero(
                "otel.export_timeout_secs",
                "abandons every export as it starts",
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(endpoint: &str) -> OtelConfig {
        OtelConfig {
            endpoint: Some(endpoint.to_owned()),
            ..OtelConfig::default()
        }
    }

    #[test]
    fn off_by_default_and_then_nothing_is_checked() {
        let config = OtelConfig {
            batch_delay_ms: 0,
            sample_ratio: 7.0,
            ..OtelConfig::default()
        };
        assert_eq!(config.traces_url(), None);
        assert_eq!(config.check(), Ok(()));
        assert!(config.zero().is_none());
    }

    #[test]
    fn the_traces_path_is_appended_to_the_endpoint() {
        assert_eq!(
            on("http://collector:4318/").traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(on("http://127.0.0.1:4318").check(), Ok(()));
        assert_eq!(on("https://otlp.example.com").check(), Ok(()));
    }

    #[test]
    fn unusable_settings_are_named() {
        for endpoint in ["collector:4318", "https:///v1", "http://", "ftp://x"] {
            let error = on(endpoint).check().expect_err(endpoint);
            assert_eq!(error, InvalidOtel::Endpoint(endpoint.to_owned()));
            assert!(error.to_string().contains("FAWKES_OTEL__ENDPOINT"));
        }
        let mut config = on("http://c:4318");
        config.sample_ratio = 1.5;
        assert_eq!(config.check(), Err(InvalidOtel::SampleRatio(1.5)));
        config.sample_ratio = 0.0;
        config.service_name = " ".to_owned();
        assert_eq!(config.check(), Err(InvalidOtel::ServiceName));
        let mut config = on("http://c:4318");
        config.batch_delay_ms = 0;
        let zero = config.zero().expect("zero delay");
        assert_eq!(zero.setting, "otel.batch_delay_ms");
        assert_eq!(zero.variable, "FAWKES_OTEL__BATCH_DELAY_MS");
        config.batch_delay_ms = 1;
        config.export_timeout_secs = 0;
        assert_eq!(
            config.zero().map(|z| z.setting),
            Some("otel.export_timeout_secs")
        );
    }
}
