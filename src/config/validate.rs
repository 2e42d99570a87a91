//! Start-up checks of settings whose zero would make the server useless: a socket token that
//! expires as it is issued, a timeout every request runs into, a limit nothing fits under; of
//! `socket.outbound_queue_bytes`, which must be at least [`MIN_OUTBOUND_QUEUE_BYTES`]; and of
//! `socket.longpoll_window_secs`, which must be at most [`MAX_LONGPOLL_WINDOW_SECS`].
//!
//! Zeros that mean something ("no limit", "off", "one diff per change") are documented with
//! their settings and accepted; so are the ones the server rounds up to one
//! (`database_pool_size`, `presence.shards`).

use super::{Config, MailTransportKind};

/// The smallest `socket.outbound_queue_bytes` accepted. The budget counts every frame waiting
/// for a client (only a frame arriving at an empty queue is taken whatever its size), so below
/// a few dozen ordinary messages a client on a normal link is cut off as a slow consumer (1013)
/// by a join's reply and its presence list, or a short burst of broadcasts.
pub const MIN_OUTBOUND_QUEUE_BYTES: usize = 64 * 1024;

/// The largest `socket.longpoll_window_secs` accepted: an hour. A poll waits a window, a
/// session ends 1.5 windows after its last poll; phoenix.js gives up on a request after 20 s,
/// so anything near this is already useless, and far larger durations overflow.
pub const MAX_LONGPOLL_WINDOW_SECS: u64 = 3600;

/// A setting the server cannot work with, named as in `fawkes.toml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid configuration: {setting} = {value} {consequence}; set it to {bound} {limit} \
     (fawkes.toml `{setting}`, environment {variable})"
)]
pub struct InvalidSetting {
    /// The setting's key in `fawkes.toml` (e.g. `socket.token_ttl_secs`).
    pub setting: &'static str,
    /// The value refused.
    pub value: u64,
    /// What the value would do.
    pub consequence: &'static str,
    /// `"at least"` or `"at most"`: which side of `limit` is accepted.
    pub bound: &'static str,
    /// The smallest (or largest) value accepted.
    pub limit: u64,
    /// The environment variable that sets it.
    pub variable: String,
}

impl InvalidSetting {
    pub(super) fn zero(setting: &'static str, consequence: &'static str) -> Self {
        Self::below(setting, 0, 1, consequence)
    }

    fn below(setting: &'static str, value: u64, minimum: u64, consequence: &'static str) -> Self {
        Self {
            setting,
            value,
            consequence,
            bound: "at least",
            limit: minimum,
            variable: format!("FAWKES_{}", setting.replace('.', "__").to_uppercase()),
        }
    }

    fn above(setting: &'static str, value: u64, maximum: u64, consequence: &'static str) -> Self {
        Self {
            bound: "at most",
            ..Self::below(setting, value, maximum, consequence)
        }
    }
}

impl Config {
    /// Refuses a zero where it makes no sense, an outbound budget under
    /// [`MIN_OUTBOUND_QUEUE_BYTES`] and a LongPoll window over [`MAX_LONGPOLL_WINDOW_SECS`]
    /// (see the module docs); the first one found is reported.
    /// [`crate::app::Server::start`] calls it before anything starts.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let smtp = self.mail.transport == MailTransportKind::Smtp;
        let zeros: [(&'static str, bool, &'static str); 16] = [
            (
                "token_ttl_secs",
                self.token_ttl_secs == 0,
                "makes every access token expire as it is issued",
            ),
            (
                "shutdown.drain_batch_size",
                self.shutdown.drain_batch_size == 0,
                "closes no socket in a drain's batch, leaving every one to the deadline",
            ),
            (
                "socket.token_ttl_secs",
                self.socket.token_ttl_secs == 0,
                "makes every socket token expire as it is issued",
            ),
            (
                "http.body_limit_bytes",
                self.http.body_limit_bytes == 0,
                "refuses every request body (413), logins included",
            ),
            (
                "http.request_timeout_secs",
                self.http.request_timeout_secs == 0,
                "times every request out (408)",
            ),
            (
                "http.header_read_timeout_secs",
                self.http.header_read_timeout_secs == 0,
                "closes every connection before its first request",
            ),
            (
                "socket.max_frame_bytes",
                self.socket.transport.max_frame_bytes == 0,
                "refuses every WebSocket frame (1009)",
            ),
            (
                "socket.max_topic_bytes",
                self.socket.transport.max_topic_bytes == 0,
                "refuses every topic (1003)",
            ),
            (
                "socket.max_channels",
                self.socket.transport.max_channels == 0,
                "refuses every join",
            ),
            (
                "socket.idle_timeout_secs",
                self.socket.transport.idle_timeout.is_zero(),
                "closes every socket as idle at once",
            ),
            (
                "socket.longpoll_window_secs",
                self.socket.transport.longpoll && self.socket.transport.longpoll_window.is_zero(),
                "ends every LongPoll session before its first poll",
            ),
            (
                "socket.write_timeout_secs",
                self.socket.transport.write_timeout.is_zero(),
                "times every write to a client out",
            ),
            (
                "socket.read_buffer_bytes",
                self.socket.transport.read_buffer_bytes == 0,
                "leaves sockets no buffer to read into",
            ),
            (
                "mail.smtp_timeout_secs",
                smtp && self.mail.smtp_timeout_secs == 0,
                "times every SMTP delivery out",
            ),
            (
                "pubsub.heartbeat_ms",
                self.pubsub.cluster.heartbeat.is_zero(),
                "leaves nodes no interval to tell each other they are alive",
            ),
            (
                "pubsub.push_timeout_ms",
                self.pubsub.cluster.push_timeout.is_zero(),
                "counts no other node's sockets in a direct push",
            ),
        ];
        if let Some((setting, _, consequence)) = zeros.into_iter().find(|(_, zero, _)| *zero) {
            return Err(InvalidSetting::zero(setting, consequence));
        }
        if let Some(invalid) = self.otel.zero() {
            return Err(invalid);
        }
        if self.socket.transport.outbound_queue_bytes < MIN_OUTBOUND_QUEUE_BYTES {
            return Err(InvalidSetting::below(
                "socket.outbound_queue_bytes",
                self.socket.transport.outbound_queue_bytes as u64,
                MIN_OUTBOUND_QUEUE_BYTES as u64,
                "cuts off sockets as slow consumers (1013) for a few queued messages",
            ));
        }
        let window = self.socket.transport.longpoll_window;
        if window > std::time::Duration::from_secs(MAX_LONGPOLL_WINDOW_SECS) {
            return Err(InvalidSetting::above(
                "socket.longpoll_window_secs",
                window.as_secs(),
                MAX_LONGPOLL_WINDOW_SECS,
                "holds LongPoll polls far past phoenix.js' 20 s request timeout",
            ));
        }
        let heartbeat = self.pubsub.cluster.heartbeat.as_millis() as u64;
        let node_timeout = self.pubsub.cluster.node_timeout.as_millis() as u64;
        if node_timeout < 2 * heartbeat {
            return Err(InvalidSetting::below(
                "pubsub.node_timeout_ms",
                node_timeout,
                2 * heartbeat,
                "drops live nodes between two heartbeats (at least twice pubsub.heartbeat_ms)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A setting and how to make it zero.
    type Case = (&'static str, fn(&mut Config));

    #[test]
    fn the_defaults_are_valid_and_each_useless_zero_is_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let cases: [Case; 16] = [
            ("token_ttl_secs", |c| c.token_ttl_secs = 0),
            ("shutdown.drain_batch_size", |c| {
                c.shutdown.drain_batch_size = 0
            }),
            ("pubsub.heartbeat_ms", |c| {
                c.pubsub.cluster.heartbeat = Duration::ZERO;
            }),
            ("pubsub.push_timeout_ms", |c| {
                c.pubsub.cluster.push_timeout = Duration::ZERO;
            }),
            ("socket.token_ttl_secs", |c| c.socket.token_ttl_secs = 0),
            ("http.body_limit_bytes", |c| c.http.body_limit_bytes = 0),
            ("http.request_timeout_secs", |c| {
                c.http.request_timeout_secs = 0
            }),
            ("http.header_read_timeout_secs", |c| {
                c.http.header_read_timeout_secs = 0
            }),
            ("socket.max_frame_bytes", |c| {
                c.socket.transport.max_frame_bytes = 0
            }),
            ("socket.max_topic_bytes", |c| {
                c.socket.transport.max_topic_bytes = 0
            }),
            ("socket.max_channels", |c| {
                c.socket.transport.max_channels = 0
            }),
            ("socket.idle_timeout_secs", |c| {
                c.socket.transport.idle_timeout = Duration::ZERO
            }),
            ("socket.longpoll_window_secs", |c| {
                c.socket.transport.longpoll = true;
                c.socket.transport.longpoll_window = Duration::ZERO
            }),
            ("socket.write_timeout_secs", |c| {
                c.socket.transport.write_timeout = Duration::ZERO
            }),
            ("socket.read_buffer_bytes", |c| {
                c.socket.transport.read_buffer_bytes = 0
            }),
            ("mail.smtp_timeout_secs", |c| {
                c.mail.transport = MailTransportKind::Smtp;
                c.mail.smtp_timeout_secs = 0;
            }),
        ];
        for (setting, make_zero) in cases {
            let mut config = Config::default();
            make_zero(&mut config);
            let error = config.validate().expect_err(setting);
            assert_eq!(error.setting, setting);
            let text = error.to_string();
            assert!(text.contains(&format!("{setting} = 0")), "{text}");
        }
        let error = {
            let mut config = Config::default();
            config.socket.token_ttl_secs = 0;
            config.validate().expect_err("zero")
        };
        assert_eq!(error.variable, "FAWKES_SOCKET__TOKEN_TTL_SECS");
    }

    #[test]
    fn an_outbound_budget_under_the_floor_is_refused() {
        for bytes in [0, 1, 4096, MIN_OUTBOUND_QUEUE_BYTES - 1] {
            let mut config = Config::default();
            config.socket.transport.outbound_queue_bytes = bytes;
            let error = config.validate().expect_err("under the floor");
            assert_eq!(error.setting, "socket.outbound_queue_bytes");
            assert_eq!(error.variable, "FAWKES_SOCKET__OUTBOUND_QUEUE_BYTES");
            let text = error.to_string();
            assert!(
                text.contains(&format!("socket.outbound_queue_bytes = {bytes} "))
                    && text.contains("at least 65536"),
                "{text}"
            );
        }
        let mut config = Config::default();
        config.socket.transport.outbound_queue_bytes = MIN_OUTBOUND_QUEUE_BYTES;
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn a_longpoll_window_over_an_hour_is_refused() {
        for window in [
            Duration::from_secs(MAX_LONGPOLL_WINDOW_SECS + 1),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            for longpoll in [true, false] {
                let mut config = Config::default();
                config.socket.transport.longpoll = longpoll;
                config.socket.transport.longpoll_window = window;
                let error = config.validate().expect_err("over an hour");
                assert_eq!(error.setting, "socket.longpoll_window_secs");
                assert_eq!(error.variable, "FAWKES_SOCKET__LONGPOLL_WINDOW_SECS");
                let text = error.to_string();
                assert!(
                    text.contains(&format!(
                        "socket.longpoll_window_secs = {} ",
                        window.as_secs()
                    )) && text.contains("set it to at most 3600"),
                    "{text}"
                );
            }
        }
        let mut config = Config::default();
        config.socket.transport.longpoll = true;
        config.socket.transport.longpoll_window = Duration::from_secs(MAX_LONGPOLL_WINDOW_SECS);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn meaningful_zeros_are_accepted() {
        let mut config = Config::default();
        config.rate_limit.login_per_ip_per_minute = 0;
        config.rate_limit.register_per_minute = 0;
        config.rate_limit.requests_per_ip_per_second = 0;
        config.http.max_connections = 0;
        config.http.max_connections_per_ip = 0;
        config.shutdown.timeout_secs = 0; // close every socket at once
        config.shutdown.drain_interval_ms = 0; // every batch at once
        config.socket.transport.max_sockets_per_id = 0;
        config.socket.transport.max_messages_per_second = 0;
        config.socket.transport.message_timeout = Duration::ZERO;
        config.socket.transport.close_grace = Duration::ZERO; // kill at once
        config.presence.window = Duration::ZERO;
        config.presence.shards = 0; // rounded up to one
        config.mail.smtp_timeout_secs = 0; // the outbox never times out
        config.database_pool_size = 0; // rounded up to one
        assert_eq!(config.validate(), Ok(()));
    }
}
