//! Direct writes. A connection served by the runtime's own endpoint keeps its TCP stream
//! shared ([`SharedTcp`]); once it is a WebSocket, a frame for it can be written straight to
//! that stream by whoever sends it (a topic actor fanning out a broadcast, the socket actor
//! replying) when nothing is ahead of it: its outbound queue is empty and its writer holds
//! nothing. No task is woken and no copy is made per subscriber: a broadcast is framed once
//! ([`Framed`], header included: server frames are not masked, so every subscriber gets the
//! same bytes). Otherwise the frame is queued, and the connection's task writes it as before.
//!
//! Frames stay whole on the wire: every write to the stream (direct, or the connection's own
//! through [`super::outbound::DirectWrites`]) happens under the queue's lock, and a write the
//! kernel took only part of leaves its rest as the queue's `partial`, which goes out before
//! any other byte.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Largest message sent as one prebuilt frame; larger ones are fragmented by the connection
/// (see `connection::MAX_FRAME_OUT`, the same bound).
pub(super) const MAX_FRAMED: usize = 8 * 1024;

/// A TCP stream shared between the endpoint's HTTP connection, which reads and writes it as
/// usual, and the direct writes of the WebSocket it may become.
#[derive(Debug, Clone)]
pub(crate) struct SharedTcp(Arc<TcpStream>);

/// The request extension through which an upgrade finds its connection's stream (set by the
/// runtime's endpoint on every request; absent under another server).
#[derive(Debug, Clone)]
pub(crate) struct DirectTcp(pub(crate) Arc<TcpStream>);

impl SharedTcp {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self(Arc::new(stream))
    }

    /// The extension to put on this connection's requests.
    pub(crate) fn extension(&self) -> DirectTcp {
        DirectTcp(self.0.clone())
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shut = socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match shut {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

/// A text or binary message as one final, unmasked frame, header included, when it is at
/// most [`MAX_FRAMED`] bytes.
#[derive(Debug, Clone)]
pub(crate) struct Framed {
    message: Message,
    wire: Option<Bytes>,
}

impl Framed {
    /// Frames `message` (one copy of its payload) if it is a text or binary message of at most
    /// [`MAX_FRAMED`] bytes.
    pub(crate) fn new(message: Message) -> Self {
        let wire = frame_bytes(&message);
        Self { message, wire }
    }

    /// The message, which the queue holds when it cannot take the frame's bytes.
    pub(crate) fn message(&self) -> &Message {
        &self.message
    }

    /// The frame's bytes, if it was framed.
    pub(crate) fn wire(&self) -> Option<&Bytes> {
        self.wire.as_ref()
    }
}

/// `message`'s bytes on the wire, or `None` if it is not a data message or over [`MAX_FRAMED`].
fn frame_bytes(message: &Message) -> Option<Bytes> {
    let (data, payload): (Data, &[u8]) = match message {
        Message::Text(text) => (Data::Text, text.as_bytes()),
        Message::Binary(bytes) => (Data::Binary, bytes),
        _ => return None,
    };
    if payload.len() > MAX_FRAMED {
        return None;
    }
    let header = FrameHeader {
        opcode: OpCode::Data(data),
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut wire = Vec::with_capacity(header.len(len) + payload.len());
    header.format(len, &mut wire).ok()?;
    wire.extend_from_slice(payload);
    Some(Bytes::from(wire))
}

/// The payload of a frame made by [`Framed::new`], as a message again.
pub(super) fn unframe(wire: &Bytes) -> Option<Message> {
    let mut cursor = io::Cursor::new(wire.as_ref());
    let (header, len) = FrameHeader::parse(&mut cursor).ok()??;
    let start = usize::try_from(cursor.position()).ok()?;
    let payload = wire.slice(start..start + usize::try_from(len).ok()?);
    match header.opcode {
        OpCode::Data(Data::Text) => Some(Message::Text(payload.try_into().ok()?)),
        OpCode::Data(Data::Binary) => Some(Message::Binary(payload)),
        _ => None,
    }
}

/// What [`write_now`] did.
#[derive(Debug)]
pub(super) enum Now {
    /// The unfinished frame (if any) and all of the bytes are written.
    All,
    /// The unfinished frame is written, and this many of the bytes (the rest must go next).
    Started(usize),
    /// Nothing of the bytes was written: the stream is not writable (or an unfinished frame
    /// is still not through).
    Nothing,
    /// The stream failed.
    Failed(io::Error),
}

/// Writes `partial` (the rest of a frame begun earlier, which must go first), then `bytes`,
/// as far as the stream takes them now. Called under the queue's lock only.
pub(super) fn write_now(tcp: &TcpStream, partial: &mut Option<Bytes>, bytes: &[u8]) -> Now {
    if let Some(rest) = partial.as_mut() {
        match tcp.try_write(rest) {
            Ok(n) if n == rest.len() => *partial = None,
            Ok(0) => return Now::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                let _ = rest.split_to(n);
                return Now::Nothing;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Now::Nothing,
            Err(e) => return Now::Failed(e),
        }
    }
    if bytes.is_empty() {
        return Now::All;
    }
    match tcp.try_write(bytes) {
        Ok(n) if n == bytes.len() => Now::All,
        Ok(0) => Now::Failed(io::ErrorKind::WriteZero.into()),
        Ok(n) => Now::Started(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Now::Nothing,
        Err(e) => Now::Failed(e),
    }
}

/// Like [`write_now`] for several buffers (one `writev`); the rest of a partial write is
/// copied into one buffer.
pub(super) fn write_now_vectored(
    tcp: &TcpStream,
    partial: &mut Option<Bytes>,
    bufs: &[io::IoSlice<'_>],
) -> Now {
    match write_now(tcp, partial, &[]) {
        Now::All => {}
        other => return other,
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total == 0 {
        return Now::All;
    }
    match tcp.try_write_vectored(bufs) {
        Ok(n) if n == total => Now::All,
        Ok(0) => Now::Failed(io::ErrorKind::WriteZero.into()),
        Ok(n) => Now::Started(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Now::Nothing,
        Err(e) => Now::Failed(e),
    }
}

/// The bytes of `bufs` from `skip` on, in one buffer.
pub(super) fn rest_of(bufs: &[io::IoSlice<'_>], mut skip: usize) -> Bytes {
    let mut rest = BytesMut::new();
    for buf in bufs {
        if skip >= buf.len() {
            skip -= buf.len();
            continue;
        }
        rest.extend_from_slice(&buf[skip..]);
        skip = 0;
    }
    rest.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_message_is_its_frame_on_the_wire_and_back() {
        let framed = Framed::new(Message::Text("hello".into()));
        let wire = framed.wire().expect("framed");
        assert_eq!(&wire[..], b"\x81\x05hello");
        assert_eq!(unframe(wire), Some(Message::Text("hello".into())));

        let long = "x".repeat(300);
        let framed = Framed::new(Message::Text(long.clone().into()));
        let wire = framed.wire().expect("framed");
        assert_eq!(&wire[..4], &[0x81, 126, 1, 44]);
        assert_eq!(unframe(wire), Some(Message::Text(long.into())));

        let framed = Framed::new(Message::Binary(vec![1, 2, 3].into()));
        assert_eq!(&framed.wire().expect("framed")[..], &[0x82, 3, 1, 2, 3]);

        let big = Framed::new(Message::Text("x".repeat(MAX_FRAMED + 1).into()));
        assert!(big.wire().is_none(), "fragmented by the connection instead");
        assert!(Framed::new(Message::Ping(Bytes::new())).wire().is_none());
    }

    #[test]
    fn the_rest_of_a_vectored_write_skips_what_was_written() {
        let (a, b) = (b"abc".as_slice(), b"defg".as_slice());
        let bufs = [io::IoSlice::new(a), io::IoSlice::new(b)];
        assert_eq!(&rest_of(&bufs, 0)[..], b"abcdefg");
        assert_eq!(&rest_of(&bufs, 2)[..], b"cdefg");
        assert_eq!(&rest_of(&bufs, 3)[..], b"defg");
        assert_eq!(&rest_of(&bufs, 5)[..], b"fg");
    }
}
