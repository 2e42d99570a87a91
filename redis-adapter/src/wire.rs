//! The form of one Redis message: a small header naming the sending node, then the frame.
//!
//! ```text
//! 0xFA | name length (u16, big endian) | node name (UTF-8) | frame (the rest)
//! ```
//!
//! The leading byte marks the version of this form; a message that does not start with it, is
//! shorter than its header says, or names no node, is not one of ours and is dropped. The
//! frame itself is never looked at.

use std::io::Write as _;

use redis::{RedisWrite, ToRedisArgs};

/// The first byte of every message (this form's version).
const MAGIC: u8 = 0xFA;

/// The header for messages sent by `node`: `None` if the name is empty or too long to fit.
pub(crate) fn header(node: &str) -> Option<Vec<u8>> {
    let len = u16::try_from(node.len()).ok().filter(|&n| n > 0)?;
    let mut header = Vec::with_capacity(3 + node.len());
    header.push(MAGIC);
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(node.as_bytes());
    Some(header)
}

/// A message as a single Redis argument: the header and the frame written straight into the
/// command's buffer, without joining them first.
pub(crate) struct Message<'a> {
    pub(crate) header: &'a [u8],
    pub(crate) frame: &'a [u8],
}

impl ToRedisArgs for Message<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        let mut arg = out.writer_for_next_arg();
        // Writes into the command's in-memory buffer, which cannot fail.
        let _ = arg.write_all(self.header);
        let _ = arg.write_all(self.frame);
    }
}

/// Why a message is not one of ours.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// It does not start with [`MAGIC`].
    Version,
    /// It ends inside its header.
    Truncated,
    /// The sender's name is empty.
    NoSender,
}

/// The sending node's name (as bytes) and the frame of a message.
pub(crate) fn decode(message: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let (&first, rest) = message.split_first().ok_or(Malformed::Truncated)?;
    if first != MAGIC {
        return Err(Malformed::Version);
    }
    let (len, rest) = rest.split_first_chunk::<2>().ok_or(Malformed::Truncated)?;
    let len = usize::from(u16::from_be_bytes(*len));
    if len == 0 {
        return Err(Malformed::NoSender);
    }
    if rest.len() < len {
        return Err(Malformed::Truncated);
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(node: &str, frame: &[u8]) -> Vec<u8> {
        let header = header(node).expect("a valid name");
        let args = Message {
            header: &header,
            frame,
        }
        .to_redis_args();
        assert_eq!(args.len(), 1, "one argument");
        args.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn a_message_round_trips_and_the_frame_is_untouched() {
        for frame in [&b""[..], b"{\"v\":1}", &[0xFA, 0, 0, 255]] {
            let message = encode("node-ü", frame);
            assert_eq!(decode(&message), Ok(("node-ü".as_bytes(), frame)));
        }
    }

    #[test]
    fn names_that_do_not_fit_have_no_header() {
        assert!(header("").is_none());
        assert!(header(&"n".repeat(65_536)).is_none());
        assert!(header(&"n".repeat(65_535)).is_some());
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert_eq!(decode(b""), Err(Malformed::Truncated));
        assert_eq!(decode(b"{\"v\":1}"), Err(Malformed::Version));
        assert_eq!(decode(&[MAGIC, 0]), Err(Malformed::Truncated));
        assert_eq!(decode(&[MAGIC, 0, 0, b'x']), Err(Malformed::NoSender));
        assert_eq!(
            decode(&[MAGIC, 0, 5, b'a', b'b']),
            Err(Malformed::Truncated)
        );
        assert_eq!(decode(&[MAGIC, 0, 1, b'a']), Ok((&b"a"[..], &b""[..])));
    }
}
