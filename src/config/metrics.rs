//! The `[metrics]` section: whether this node records Prometheus metrics and where it serves
//! them (`GET /metrics`).
//!
//! - `dev` and `test`: recorded, and served on the main listener (and on `bind` if set).
//! - `prod`: served only on `bind`, a separate address meant for the internal network, never
//!   on the public port; with no `bind` nothing is recorded at all (no recorder is installed).
//! - `enabled = false`: nothing recorded or served, whatever the environment.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Environment;

/// Prometheus metrics settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Whether metrics are recorded and served at all.
    pub enabled: bool,
    /// A separate address serving only `GET /metrics` (e.g. `10.0.0.5:9100`); unset: none.
    pub bind: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: None,
        }
    }
}

impl MetricsConfig {
    /// Whether `/metrics` is served on the main (public) listener in `env`: in `dev` and
    /// `test` only.
    pub fn on_main_listener(&self, env: Environment) -> bool {
        self.enabled && env != Environment::Prod
    }

    /// The separate metrics listener's address, if one is to be bound.
    pub fn listener(&self) -> Option<SocketAddr> {
        self.bind.filter(|_| self.enabled)
    }

    /// Whether metrics are recorded in `env`: when they are served somewhere.
    pub fn recorded(&self, env: Environment) -> bool {
        self.on_main_listener(env) || self.listener().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prod_serves_metrics_only_on_a_bind_address_and_records_nothing_without_one() {
        let mut config = MetricsConfig::default();
        assert!(!config.on_main_listener(Environment::Prod));
        assert!(!config.recorded(Environment::Prod));
        assert!(config.on_main_listener(Environment::Dev));
        assert!(config.on_main_listener(Environment::Test));
        config.bind = Some("127.0.0.1:9100".parse().expect("addr"));
        assert!(config.recorded(Environment::Prod));
        assert!(!config.on_main_listener(Environment::Prod));
        config.enabled = false;
        for env in [Environment::Dev, Environment::Test, Environment::Prod] {
            assert!(!config.recorded(env));
            assert!(!config.on_main_listener(env));
        }
        assert_eq!(config.listener(), None);
    }
}
