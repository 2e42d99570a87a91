//! The deadline of a message in progress. The idle timeout counts whole messages, and control
//! frames may come between the fragments of a data message: without a deadline a client could
//! keep a partial message of up to `max_frame_bytes` forever, trickling bytes or fragments
//! with pings between them. [`Watched`] wraps the upgraded I/O, follows the WebSocket frame
//! headers in the bytes it reads ([`FrameTracker`]), and fails the read with
//! [`SlowMessage`] once a message started more than the deadline ago while the connection
//! still waits for its rest.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The error a [`Watched`] read fails with when a message took too long.
#[derive(Debug, thiserror::Error)]
#[error("a message took longer than its deadline to arrive")]
pub(super) struct SlowMessage;

impl SlowMessage {
    /// Whether `e` is this error.
    pub(super) fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<SlowMessage>())
    }
}

/// The upgraded connection, with the deadline of the message in progress.
#[derive(Debug)]
pub(super) struct Watched<T> {
    io: T,
    /// `None`: no deadline (nothing is tracked).
    limit: Option<Duration>,
    frames: FrameTracker,
    /// When the message in progress started arriving (the first of its bytes was read).
    started: Option<Instant>,
    /// Wakes the connection at the deadline; made only while a message spans reads.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> Watched<T> {
    /// `io` with a deadline of `limit` per message (zero: none).
    pub(super) fn new(io: T, limit: Duration) -> Self {
        Self {
            io,
            limit: (!limit.is_zero()).then_some(limit),
            frames: FrameTracker::default(),
            started: None,
            timer: None,
        }
    }

    /// The connection stopped reading for a while because the server fell behind (the
    /// socket actor catching up, not the client's own pace): a message in progress gets its
    /// whole deadline again from now.
    pub(super) fn resumed(&mut self) {
        if self.started.is_some() {
            self.started = Some(Instant::now());
        }
    }

    /// No deadline from now on (the connection is closing).
    pub(super) fn disarm(&mut self) {
        self.limit = None;
        self.started = None;
        self.timer = None;
    }

    /// Follows `bytes`, just read (`now` tells the time, asked only when needed).
    fn track(&mut self, bytes: &[u8], now: impl FnOnce() -> Instant) {
        if self.limit.is_none() || bytes.is_empty() {
            return;
        }
        let finished = self.frames.feed(bytes);
        if self.frames.at_rest() {
            self.started = None;
            self.timer = None;
        } else if finished || self.started.is_none() {
            // Mid-message: the one in progress started in these bytes if an earlier one
            // ended in them (a read may hold the end of one message and the start of the next).
            self.started = Some(now());
        }
    }

    /// Whether the message in progress is past its deadline (`now` tells the time, asked
    /// only when a message is in progress).
    fn expired(&self, now: impl FnOnce() -> Instant) -> bool {
        match (self.started, self.limit) {
            (Some(started), Some(limit)) => now() >= started + limit,
            _ => false,
        }
    }

    /// While waiting for the client: whether the message in progress is past its deadline
    /// (if not, the timer is set to wake the task then).
    fn overdue(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(started), Some(limit)) = (self.started, self.limit) else {
            return false;
        };
        let deadline = started + limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.track(&buf.filled()[before..], Instant::now);
                // Checked on reads that bring bytes too, not only while waiting for them: a
                // client sending control frames faster than the server reads them would
                // otherwise never leave the connection waiting.
                if this.expired(Instant::now) {
                    this.disarm();
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, SlowMessage)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.overdue(cx) => {
                this.disarm();
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, SlowMessage)))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Follows the frames of a client's byte stream (RFC 6455 §5.2 headers only; tungstenite
/// validates everything else) to tell whether it is between messages: not inside a frame, and
/// not between the fragments of a data message.
#[derive(Debug, Default, Clone)]
pub(super) struct FrameTracker {
    /// The header of the frame being read, as far as it came.
    head: [u8; 14],
    /// Bytes of `head` read; its full length once the payload is being read.
    have: u8,
    /// Payload bytes of the current frame still to come.
    left: u64,
    in_payload: bool,
    /// A data message's first fragment arrived and its final one has not.
    fragmented: bool,
}

impl FrameTracker {
    /// Whether the stream is between messages.
    pub(super) fn at_rest(&self) -> bool {
        self.have == 0 && !self.in_payload && !self.fragmented
    }

    /// Follows `bytes`, the next ones of the stream. Returns whether a message ended in them
    /// (the final frame of a data message, or a control frame outside a fragmented one).
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut finished = false;
        while !bytes.is_empty() {
            if self.in_payload {
                let n = usize::try_from(self.left).map_or(bytes.len(), |l| l.min(bytes.len()));
                self.left -= n as u64;
                bytes = &bytes[n..];
                if self.left == 0 {
                    finished |= self.frame_done();
                }
                continue;
            }
            self.head[usize::from(self.have)] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have >= 2 && self.have == self.header_len() {
                self.left = self.payload_len();
                self.in_payload = true;
                if self.left == 0 {
                    finished |= self.frame_done();
                }
            }
        }
        finished
    }

    /// The header's length, known from its second byte on: 2, a 2- or 8-byte extended
    /// length, and a 4-byte mask key when masked.
    fn header_len(&self) -> u8 {
        let extended = match self.head[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn payload_len(&self) -> u64 {
        match self.head[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.head[2..10]);
                u64::from_be_bytes(bytes)
            }
            n => u64::from(n),
        }
    }

    /// The current frame is complete. Returns whether it ended a message.
    fn frame_done(&mut self) -> bool {
        let fin = self.head[0] & 0x80 != 0;
        let control = self.head[0] & 0x08 != 0;
        self.have = 0;
        self.in_payload = false;
        if control {
            // Control frames may come between fragments and change nothing; outside a
            // fragmented message each is a whole message.
            !self.fragmented
        } else {
            self.fragmented = !fin;
            fin
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame: FIN, opcode, payload.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [1, 2, 3, 4];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Feeds `stream` in chunks of `chunk` bytes; returns whether it was at rest after each.
    fn rest_after_each(stream: &[u8], chunk: usize) -> Vec<bool> {
        let mut tracker = FrameTracker::default();
        stream
            .chunks(chunk)
            .map(|c| {
                tracker.feed(c);
                tracker.at_rest()
            })
            .collect()
    }

    #[test]
    fn whole_frames_of_every_length_form_leave_it_at_rest() {
        for len in [0, 1, 125, 126, 65_535, 65_536, 200_000] {
            let payload = vec![b'x'; len];
            let mut stream = frame(true, 0x1, &payload);
            stream.extend(frame(true, 0x2, &payload));
            stream.extend(frame(true, 0x9, b"ping"));
            let mut tracker = FrameTracker::default();
            tracker.feed(&stream);
            assert!(tracker.at_rest(), "{len}");
            // Byte by byte, it is at rest exactly at the frame boundaries.
            let rest = rest_after_each(&stream, 1);
            let first = frame(true, 0x1, &payload).len();
            assert!(rest[first - 1], "{len}: after the first frame");
            assert!(!rest[first - 2], "{len}: inside the first frame");
            assert!(rest[stream.len() - 1]);
        }
    }

    #[test]
    fn a_fragmented_message_is_in_progress_until_its_final_fragment_even_across_pings() {
        let mut tracker = FrameTracker::default();
        assert!(!tracker.feed(&frame(false, 0x1, b"hel")));
        assert!(!tracker.at_rest(), "first fragment");
        assert!(
            !tracker.feed(&frame(true, 0x9, b"")),
            "a ping between fragments ends no message"
        );
        assert!(!tracker.at_rest(), "a ping between fragments");
        assert!(!tracker.feed(&frame(false, 0x0, b"lo")));
        assert!(!tracker.feed(&frame(true, 0xA, b"pong")));
        assert!(!tracker.at_rest());
        assert!(tracker.feed(&frame(true, 0x0, b"!")), "final fragment");
        assert!(tracker.at_rest(), "final fragment");
        // A ping on its own is a whole message.
        assert!(tracker.feed(&frame(true, 0x9, b"hi")));
        assert!(tracker.at_rest());
    }

    #[test]
    fn a_read_that_ends_one_message_and_starts_the_next_restarts_the_clock() {
        // The reviewer's case: 100-byte whole messages back to back, read in 101-byte chunks
        // every 25 ms. Every read completes a message, so none is ever older than one read,
        // though the stream is at rest only once every 100 reads.
        let message = frame(true, 0x1, &[b'm'; 94]);
        assert_eq!(message.len(), 100);
        let stream: Vec<u8> = message.iter().copied().cycle().take(100 * 130).collect();
        let limit = Duration::from_secs(1);
        let mut watched = Watched::new((), limit);
        let t0 = Instant::now();
        for (i, chunk) in stream.chunks(101).take(120).enumerate() {
            let now = t0 + Duration::from_millis(25 * i as u64);
            watched.track(chunk, || now);
            let age = watched.started.map(|started| now - started);
            assert!(
                age.is_none_or(|age| age < limit),
                "read {i}: the message in progress is {age:?} old"
            );
        }
        // A message still arriving keeps its start: the clock does not restart on bytes alone.
        let mut watched = Watched::new((), limit);
        watched.track(&message[..10], || t0);
        watched.track(&message[10..50], || t0 + limit);
        assert_eq!(watched.started, Some(t0));
        watched.track(&message[50..], || t0 + limit);
        assert_eq!(watched.started, None, "at rest");
    }

    #[test]
    fn a_partial_header_or_payload_is_in_progress() {
        let whole = frame(true, 0x1, &[b'y'; 300]);
        for cut in 1..whole.len() {
            let mut tracker = FrameTracker::default();
            tracker.feed(&whole[..cut]);
            assert!(!tracker.at_rest(), "cut at {cut}");
            tracker.feed(&whole[cut..]);
            assert!(tracker.at_rest(), "completed after a cut at {cut}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut tracker = FrameTracker::default();
        let mut seed = 7u32;
        for _ in 0..100_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            tracker.feed(&[(seed >> 16) as u8]);
        }
        let mut huge = FrameTracker::default();
        huge.feed(&[
            0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
        ]);
        huge.feed(&[0u8; 4096]);
        assert!(!huge.at_rest());
    }
}
