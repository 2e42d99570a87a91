//! The transport's settings, and their form in a configuration file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::origin::CheckOrigin;

/// Transport settings.
///
/// Deserializes (serde) from the settings a configuration file names, every one optional
/// (missing ones keep their default): durations in seconds, whole or decimal, under the names
/// below (`idle_timeout_secs`, …), and the origin check as `check_origin` (`"off"`, `"conn"`:
/// same host as the request, or `"list"`) with `allowed_origins` (patterns, see
/// [`super::OriginPattern`]). Serializes back to the same form.
///
/// ```
/// use std::time::Duration;
/// use fawkes_runtime::{CheckOrigin, TransportConfig};
///
/// let config: TransportConfig = serde_json::from_value(serde_json::json!({
///     "idle_timeout_secs": 90,
///     "close_grace_secs": 0.5,
///     "check_origin": "list",
///     "allowed_origins": ["https://app.example.com"],
/// }))?;
/// assert_eq!(config.idle_timeout, Duration::from_secs(90));
/// assert_eq!(config.close_grace, Duration::from_millis(500));
/// assert!(matches!(config.check_origin, CheckOrigin::List(_)));
/// assert_eq!(config.max_channels, TransportConfig::default().max_channels);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportConfig {
    /// Which `Origin` headers are accepted (settings `check_origin` and `allowed_origins`).
    #[serde(flatten, with = "origin_settings")]
    pub check_origin: CheckOrigin,
    /// Largest accepted frame (and message), in bytes; larger → close 1009. Over LongPoll,
    /// the largest POSTed line (a binary one once decoded; larger → `{"status":413}` and the
    /// session ends), and a POST body is at most `max(2 × max_frame_bytes, 1 MiB)`, refused
    /// (413) as soon as it streams in over that.
    pub max_frame_bytes: usize,
    /// Close after this long without any frame from the client (phoenix.js heartbeats every
    /// 30 s). Setting `idle_timeout_secs`.
    #[serde(rename = "idle_timeout_secs", with = "crate::units::secs")]
    pub idle_timeout: Duration,
    /// Frames queued for a client before it counts as a slow consumer and is disconnected
    /// (direct pushes held for a join reply count too).
    pub outbound_queue: usize,
    /// Bytes queued for a client (the frames' lengths, shared broadcast bytes included)
    /// before it counts as a slow consumer and is disconnected. A frame is always taken into
    /// an empty queue, however large.
    pub outbound_queue_bytes: usize,
    /// How long one write to a client may take before it counts as a slow consumer. Setting
    /// `write_timeout_secs`.
    #[serde(rename = "write_timeout_secs", with = "crate::units::secs")]
    pub write_timeout: Duration,
    /// Channels one socket may join at once.
    pub max_channels: usize,
    /// Read buffer per connection, in bytes (tungstenite's default is 128 KiB). Allocated when
    /// the WebSocket is created and kept for the connection's life (idle or not), so it counts
    /// per idle connection. Each read takes at most this many bytes: a client frame of a few
    /// hundred bytes (phoenix.js' pushes, heartbeats) takes one read, as with a larger buffer,
    /// except when it straddles the end of the buffer's free room (1 to 5 extra reads per 100
    /// frames of 100–300 bytes at 1024; 0.5 to 2 at 2048); a larger frame takes one read per
    /// this many bytes, and the buffer grows to hold it (and does not shrink back).
    pub read_buffer_bytes: usize,
    /// After a connection ends (and its close handshake, at most 2 s more), how long its
    /// channels get to finish before the socket actor is killed (a callback that never
    /// returns); its state's `Drop` still removes its subscriptions and presences, but
    /// `terminate` does not run. Zero kills it at once. Setting `close_grace_secs`.
    #[serde(rename = "close_grace_secs", with = "crate::units::secs")]
    pub close_grace: Duration,
    /// Longest topic name a client may send, in bytes; longer → close 1003 (`topic too long`).
    /// Event names and `ref`/`join_ref` are limited to [`MAX_EVENT_BYTES`] and
    /// [`MAX_REF_BYTES`].
    pub max_topic_bytes: usize,
    /// Live sockets per socket id ([`crate::Socket::id`]), LongPoll sessions included; beyond
    /// it the upgrade is refused with HTTP 429 (a LongPoll session: HTTP 429 with
    /// `{"status":403}`). 0: no limit. Sockets without an id are not limited.
    pub max_sockets_per_id: usize,
    /// Messages per second one connection may send, sustained (every WebSocket message
    /// counts, heartbeats included). Over it the connection stops reading until the rate
    /// allows (TCP pushes back on the client): nothing is lost, the client only slows down.
    /// A LongPoll session's POSTed lines count the same; a POST whose lines the rate holds
    /// back past one poll window answers `{"status":408}` (the rest of its lines dropped).
    /// 0: no limit.
    pub max_messages_per_second: u32,
    /// Messages one connection may send at once above `max_messages_per_second` (a
    /// reconnecting client rejoins all its channels together).
    pub max_messages_burst: u32,
    /// A message whose first byte arrived must be complete within this, or the connection is
    /// closed with 1008 (`message too slow`). The clock starts with the message's first byte
    /// (also when a read holds the end of one message and the start of the next), and restarts
    /// when the server stopped reading for the socket actor to catch up. It does not restart
    /// for the message rate (the client's own pace: pings sent over the rate between fragments
    /// do not keep a message alive). Zero: no limit (the idle timeout still applies). Setting
    /// `message_timeout_secs`.
    #[serde(rename = "message_timeout_secs", with = "crate::units::secs")]
    pub message_timeout: Duration,
    /// Serves the LongPoll transport at `<socket path>/longpoll` beside the WebSocket (off by
    /// default, as in Phoenix: less surface; when off, that path answers 404). A session
    /// holds the same outbound queue and socket actor as a WebSocket connection, and, behind
    /// an [`crate::Endpoint`], a slot of its `max_connections` and `max_connections_per_ip`
    /// for its life (beyond: HTTP 503, `{"status":500}`). Its client's requests take
    /// connection slots too: a phoenix.js LongPoll client holds up to three (its session's,
    /// its poll's connection, its POST's). Sessions served by a [`crate::SocketService`] are
    /// under no connection cap (only `max_sockets_per_id`).
    pub longpoll: bool,
    /// How long a LongPoll poll waits for messages before answering 204, and a POST for its
    /// body and its lines' turn before answering 408; a session without a poll for 1.5
    /// windows ends. Keep it under phoenix.js' 20 s request timeout (the application refuses
    /// more than an hour). Setting `longpoll_window_secs`.
    #[serde(rename = "longpoll_window_secs", with = "crate::units::secs")]
    pub longpoll_window: Duration,
}

/// Longest event name a client may send, in bytes; longer → close 1003 (`event too long`).
pub const MAX_EVENT_BYTES: usize = 64;

/// Longest `ref` or `join_ref` a client may send, in bytes of JSON text (a string's quotes
/// count); longer → close 1003 (`ref too long`, `join_ref too long`).
pub const MAX_REF_BYTES: usize = 64;

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            check_origin: CheckOrigin::SameHost,
            max_frame_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            outbound_queue: 1024,
            outbound_queue_bytes: 4 * 1024 * 1024,
            write_timeout: Duration::from_secs(10),
            max_channels: 100,
            read_buffer_bytes: 1024,
            close_grace: Duration::from_secs(5),
            max_topic_bytes: 255,
            max_sockets_per_id: 32,
            max_messages_per_second: 200,
            max_messages_burst: 500,
            message_timeout: Duration::from_secs(30),
            longpoll: false,
            longpoll_window: Duration::from_secs(10),
        }
    }
}

/// [`CheckOrigin`] as two settings: `check_origin` (`off`, `conn`, `list`) and
/// `allowed_origins` (read with `list`; written empty otherwise).
mod origin_settings {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::super::origin::{CheckOrigin, OriginPattern};

    #[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Check {
        Off,
        #[default]
        Conn,
        List,
    }

    #[derive(Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Settings {
        check_origin: Check,
        allowed_origins: Vec<String>,
    }

    pub(super) fn serialize<S: Serializer>(check: &CheckOrigin, s: S) -> Result<S::Ok, S::Error> {
        let (check_origin, allowed_origins) = match check {
            CheckOrigin::Off => (Check::Off, Vec::new()),
            CheckOrigin::SameHost => (Check::Conn, Vec::new()),
            CheckOrigin::List(patterns) => (
                Check::List,
                patterns.iter().map(|p| p.to_string()).collect(),
            ),
        };
        Settings {
            check_origin,
            allowed_origins,
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CheckOrigin, D::Error> {
        let settings = Settings::deserialize(d)?;
        Ok(match settings.check_origin {
            Check::Off => CheckOrigin::Off,
            Check::Conn => CheckOrigin::SameHost,
            Check::List => CheckOrigin::List(
                settings
                    .allowed_origins
                    .iter()
                    .map(|o| OriginPattern::parse(o))
                    .collect::<Result<_, _>>()
                    .map_err(D::Error::custom)?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::transport::OriginPattern;

    #[test]
    fn the_defaults_write_every_setting_under_its_name_and_read_back() {
        let written = serde_json::to_value(TransportConfig::default()).expect("writes");
        let mut names: Vec<&str> = written
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "allowed_origins",
                "check_origin",
                "close_grace_secs",
                "idle_timeout_secs",
                "longpoll",
                "longpoll_window_secs",
                "max_channels",
                "max_frame_bytes",
                "max_messages_burst",
                "max_messages_per_second",
                "max_sockets_per_id",
                "max_topic_bytes",
                "message_timeout_secs",
                "outbound_queue",
                "outbound_queue_bytes",
                "read_buffer_bytes",
                "write_timeout_secs",
            ]
        );
        assert_eq!(written["check_origin"], "conn");
        assert_eq!(written["idle_timeout_secs"], 60);
        let read: TransportConfig = serde_json::from_value(written.clone()).expect("reads");
        assert_eq!(serde_json::to_value(read).expect("writes"), written);
        let empty: TransportConfig = serde_json::from_value(json!({})).expect("all optional");
        assert_eq!(serde_json::to_value(empty).expect("writes"), written);
    }

    #[test]
    fn origin_settings_read_into_the_check_and_a_bad_pattern_is_refused() {
        let read = |v: Value| serde_json::from_value::<TransportConfig>(v).map(|c| c.check_origin);
        assert_eq!(
            read(json!({"check_origin": "off"})).ok(),
            Some(CheckOrigin::Off)
        );
        assert_eq!(
            read(json!({"check_origin": "list", "allowed_origins": ["//*.example.com"]})).ok(),
            Some(CheckOrigin::List(vec![
                OriginPattern::parse("//*.example.com").expect("pattern")
            ]))
        );
        let error = read(json!({"check_origin": "list", "allowed_origins": ["example.com"]}))
            .expect_err("no host");
        assert!(
            error.to_string().contains("invalid origin pattern"),
            "{error}"
        );
        assert!(read(json!({"check_origin": "sometimes"})).is_err());
        let listed = TransportConfig {
            check_origin: read(
                json!({"check_origin": "list", "allowed_origins": ["https://a.io"]}),
            )
            .expect("list"),
            ..TransportConfig::default()
        };
        let written = serde_json::to_value(listed).expect("writes");
        assert_eq!(written["allowed_origins"], json!(["https://a.io"]));
    }
}
