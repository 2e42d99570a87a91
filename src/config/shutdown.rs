//! The `[shutdown]` section: how a node drains on SIGTERM (or SIGINT).
//!
//! The drain closes WebSockets in batches with code 1012 so that their clients reconnect to
//! other nodes gradually (Phoenix's socket drainer). The defaults close 5,000 sockets a
//! second, Phoenix's rate (10,000 every 2 s), in steps ten times smaller, so that the nodes
//! taking the reconnects never get ten thousand at the same instant; a node with up to about
//! 140,000 sockets is drained within the 30 s deadline (see README, "Draining a node").

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a node shuts down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShutdownConfig {
    /// Deadline of the whole shutdown, in seconds: in-flight HTTP requests and the socket
    /// drain; what is still open then is closed at once (pending mail gets what is left, at
    /// least a second); 0: no drain, everything closed at once. Replaces
    /// `http.shutdown_timeout_secs` (still read when this is unset, with a warning).
    pub timeout_secs: u64,
    /// WebSockets closed at once, per batch.
    pub drain_batch_size: usize,
    /// Milliseconds between two batches; 0: every batch at once.
    pub drain_interval_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        let drain = crate::runtime::DrainConfig::default();
        Self {
            timeout_secs: drain.timeout.as_secs(),
            drain_batch_size: drain.batch_size,
            drain_interval_ms: drain.interval.as_millis() as u64,
        }
    }
}

impl ShutdownConfig {
    /// The deadline of the whole shutdown.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The runtime's drain settings.
    pub fn drain(&self) -> crate::runtime::DrainConfig {
        crate::runtime::DrainConfig {
            batch_size: self.drain_batch_size,
            interval: Duration::from_millis(self.drain_interval_ms),
            timeout: self.timeout(),
        }
    }
}

impl super::Config {
    /// Logs (once, at start) the deprecated settings in use.
    pub fn warn_deprecated(&self) {
        if let Some(secs) = self.http.shutdown_timeout_secs {
            tracing::warn!(
                http_shutdown_timeout_secs = secs,
                shutdown_timeout_secs = self.shutdown.timeout_secs,
                "http.shutdown_timeout_secs is deprecated: set shutdown.timeout_secs \
                 (FAWKES_SHUTDOWN__TIMEOUT_SECS) instead; it is used only when that is unset"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_runtimes() {
        let config = ShutdownConfig::default();
        assert_eq!(
            (
                config.timeout_secs,
                config.drain_batch_size,
                config.drain_interval_ms
            ),
            (30, 1_000, 200)
        );
        assert_eq!(config.drain(), crate::runtime::DrainConfig::default());
    }
}
