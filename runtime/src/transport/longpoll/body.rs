//! A LongPoll POST body: its bound, and its lines as the frames a WebSocket would carry.

use base64::Engine as _;
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use super::MAX_BATCH;
use crate::protocol::Vsn;
use crate::transport::TransportConfig;

/// The smallest POST body bound, whatever `max_frame_bytes` is.
const MIN_BODY_LIMIT: usize = 1024 * 1024;

/// The largest POST body accepted: `max(2 × max_frame_bytes, 1 MiB)`. A batch of small
/// messages fits easily (phoenix.js sends at most 100 per POST), and so does one frame of
/// `max_frame_bytes`, even base64-encoded. The body is read as it streams in and refused
/// (413) as soon as it goes over.
pub(super) fn body_limit(config: &TransportConfig) -> usize {
    config.max_frame_bytes.saturating_mul(2).max(MIN_BODY_LIMIT)
}

/// Why a POST body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadBody {
    /// A line (or a whole non-ndjson body) over `max_frame_bytes`.
    TooBig,
    /// More than [`MAX_BATCH`] lines.
    TooManyLines,
    /// Not UTF-8, or a line that is neither JSON text for the session's `vsn` nor base64.
    Malformed,
}

/// The frames of a POST body: ndjson lines (JSON text, `[…]` or, with `vsn` 1.x, `{…}`;
/// otherwise base64 of a binary frame), or the whole body as one text frame. Each frame is
/// at most `max_frame_bytes` (a binary one once decoded).
pub(super) fn lines(
    body: &Bytes,
    ndjson: bool,
    vsn: Vsn,
    max_frame_bytes: usize,
) -> Result<Vec<Message>, BadBody> {
    let text = std::str::from_utf8(body).map_err(|_| BadBody::Malformed)?;
    if !ndjson {
        if text.len() > max_frame_bytes {
            return Err(BadBody::TooBig);
        }
        return Ok(vec![Message::Text(text.into())]);
    }
    // Base64 of `max_frame_bytes` bytes, padding included.
    let max_base64 = max_frame_bytes.div_ceil(3).saturating_mul(4);
    let mut frames = Vec::new();
    for line in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
        if frames.len() == MAX_BATCH {
            return Err(BadBody::TooManyLines);
        }
        let json = line.starts_with('[') || (vsn == Vsn::V1 && line.starts_with('{'));
        frames.push(if json {
            if line.len() > max_frame_bytes {
                return Err(BadBody::TooBig);
            }
            Message::Text(line.into())
        } else {
            if line.len() > max_base64 {
                return Err(BadBody::TooBig);
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(line)
                .map_err(|_| BadBody::Malformed)?;
            if bytes.len() > max_frame_bytes {
                return Err(BadBody::TooBig);
            }
            Message::Binary(bytes.into())
        });
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Bytes {
        Bytes::from(text.to_owned())
    }

    #[test]
    fn lines_are_json_text_or_base64_within_the_frame_limit() {
        let v2 = r#"["1","1","t","e",{}]"#;
        let binary = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2]);
        let got = lines(&body(&format!("{v2}\n{binary}\n")), true, Vsn::V2, 64).expect("ok");
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Message::Text(t) if t.as_str() == v2));
        assert!(matches!(&got[1], Message::Binary(b) if b.as_ref() == [0, 1, 2]));

        let v1 = r#"{"topic":"t","event":"e","payload":{},"ref":"1"}"#;
        assert!(matches!(
            lines(&body(v1), true, Vsn::V1, 64).expect("V1").as_slice(),
            [Message::Text(_)]
        ));
        assert_eq!(
            lines(&body(v1), true, Vsn::V2, 64).err(),
            Some(BadBody::Malformed),
            "an object is not a V2 frame (nor base64)"
        );

        assert_eq!(
            lines(&body(&"[".repeat(65)), true, Vsn::V2, 64).err(),
            Some(BadBody::TooBig)
        );
        let big = base64::engine::general_purpose::STANDARD.encode([7u8; 65]);
        assert_eq!(
            lines(&body(&big), true, Vsn::V2, 64).err(),
            Some(BadBody::TooBig)
        );
        let fits = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        assert!(lines(&body(&fits), true, Vsn::V2, 64).is_ok());
        assert_eq!(
            lines(&body(&"x".repeat(65)), false, Vsn::V2, 64).err(),
            Some(BadBody::TooBig)
        );

        let hundred = vec![v2; MAX_BATCH].join("\n");
        assert_eq!(
            lines(&body(&hundred), true, Vsn::V2, 64).map(|l| l.len()),
            Ok(100)
        );
        let over = vec![v2; MAX_BATCH + 1].join("\n");
        assert_eq!(
            lines(&body(&over), true, Vsn::V2, 64).err(),
            Some(BadBody::TooManyLines)
        );
    }

    #[test]
    fn the_body_bound_is_twice_the_frame_limit_and_at_least_a_mebibyte() {
        let with = |max_frame_bytes| TransportConfig {
            max_frame_bytes,
            ..TransportConfig::default()
        };
        assert_eq!(body_limit(&with(1024)), 1024 * 1024);
        assert_eq!(body_limit(&with(4 * 1024 * 1024)), 8 * 1024 * 1024);
        assert_eq!(body_limit(&with(usize::MAX)), usize::MAX);
    }
}
