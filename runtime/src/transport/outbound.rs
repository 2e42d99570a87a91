//! A connection's bounded outbound queue, and the writes that skip it: a frame for a
//! connection whose queue is empty and whose writer is idle is written to its TCP stream at once
//! by whoever sends it (see [`super::wire`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::wire::{self, Framed, Now};
use super::{CloseReason, Control};

/// A connection's bounded outbound queue: at most `capacity` frames and `max_bytes` bytes
/// (counted inside the queue's lock, from lengths the frames already know: no allocation).
/// It allocates only while frames wait (an idle connection's queue costs nothing), and gives
/// the memory back once drained.
#[derive(Debug)]
struct Queue {
    state: std::sync::Mutex<QueueState>,
    ready: tokio::sync::Notify,
    capacity: usize,
    max_bytes: usize,
    /// Whether the connection takes direct writes (its stream is `QueueState::tcp`).
    direct: bool,
}

#[derive(Debug, Default)]
struct QueueState {
    frames: std::collections::VecDeque<OutFrame>,
    /// The total length of `frames`.
    bytes: usize,
    receiver_gone: bool,
    /// The writer holds frames it took off the queue and has not written out yet, or it stopped
    /// writing (the connection is closing): nothing may be written directly past them.
    writing: bool,
    /// The unwritten end of a frame begun on the stream: it goes before any other byte.
    partial: Option<Bytes>,
    /// The connection's TCP stream while frames may be written to it directly (let go when
    /// the connection ends, so that a subscription still held does not keep it open).
    tcp: Option<Arc<TcpStream>>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a frame of `len` bytes fits after `frames` frames of `bytes` bytes. Over either
    /// bound is a slow consumer, but an empty queue takes any one frame: a client that keeps
    /// up must be able to receive a frame larger than the budget.
    fn fits(&self, frames: usize, bytes: usize, len: usize) -> bool {
        let over_bytes = bytes > 0 && bytes.saturating_add(len) > self.max_bytes;
        frames < self.capacity && !over_bytes
    }
}

/// A look at a connection's outbound queue from outside (the metrics' fullest queue), which
/// does not keep it alive.
#[derive(Debug, Clone)]
pub(crate) struct QueueProbe(std::sync::Weak<Queue>);

impl QueueProbe {
    /// The frames waiting in the queue now (0 once the connection is gone).
    pub(crate) fn frames(&self) -> usize {
        self.0
            .upgrade()
            .map_or(0, |queue| queue.lock().frames.len())
    }
}

/// Frames kept in a drained queue's buffer; beyond this it is released. (Releasing it all
/// saved 224 bytes per idle connection but cost an allocation per reply: about 1 µs more CPU
/// per echo round trip with the boxed write batch, BENCHMARKS.md issue 14.)
const KEEP_QUEUE_CAPACITY: usize = 8;

/// The sending side of a connection's outbound queue. A full queue marks the client as a slow
/// consumer and closes the connection; nothing waits on a slow client.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    queue: Arc<Queue>,
    control: Arc<Control>,
}

/// The receiving side (the connection's writer).
#[derive(Debug)]
pub(crate) struct OutboundReceiver {
    queue: Arc<Queue>,
}

impl OutboundReceiver {
    /// The next frame, waiting for one. With direct writes, the writer holds it from now until
    /// it calls [`Self::written`]; [`OutFrame::Flush`] asks it to finish a frame a direct
    /// write began.
    pub(crate) async fn recv(&self) -> OutFrame {
        loop {
            // `notify_one` leaves a permit when nobody waits, so a send between the check and
            // the wait is not missed.
            let ready = self.queue.ready.notified();
            {
                let mut state = self.queue.lock();
                if let Some(frame) = pop(&mut state) {
                    return frame;
                }
                if state.partial.is_some() && !state.writing {
                    state.writing = true;
                    return OutFrame::Flush;
                }
            }
            ready.await;
        }
    }

    /// The next frame, if one waits.
    pub(crate) fn try_recv(&self) -> Option<OutFrame> {
        pop(&mut self.queue.lock())
    }

    /// The writer wrote out (and flushed) every frame it took: if none waits, frames may be
    /// written directly again.
    pub(crate) fn written(&self) {
        let mut state = self.queue.lock();
        if state.frames.is_empty() && state.partial.is_none() {
            state.writing = false;
        }
    }

    /// The connection is closing: from now on every frame is queued (and written, if at all,
    /// by the closing writer).
    pub(crate) fn stop_direct(&self) {
        self.queue.lock().writing = true;
    }

    /// The connection's writes, sharing the stream with direct writes (`None` without them).
    pub(crate) fn direct_writes(&self) -> Option<DirectWrites> {
        let tcp = self.queue.lock().tcp.clone()?;
        Some(DirectWrites {
            queue: self.queue.clone(),
            tcp,
        })
    }
}

/// Takes the next frame off the queue; the writer holds it until [`OutboundReceiver::written`].
fn pop(state: &mut QueueState) -> Option<OutFrame> {
    let frame = state.frames.pop_front()?;
    state.bytes = state.bytes.saturating_sub(frame.len());
    if state.frames.is_empty() && state.frames.capacity() > KEEP_QUEUE_CAPACITY {
        state.frames.shrink_to(KEEP_QUEUE_CAPACITY);
    }
    state.writing = true;
    Some(frame)
}

/// The connection's own writes to a stream that takes direct writes too: each write is taken
/// whole, under the queue's lock (what the kernel does not take at once becomes the queue's
/// `partial`, written before anything else), so frames never interleave.
#[derive(Debug)]
pub(crate) struct DirectWrites {
    queue: Arc<Queue>,
    tcp: Arc<TcpStream>,
}

impl DirectWrites {
    /// Writes `bufs` whole (their rest kept as `partial`), or waits for the stream.
    pub(crate) fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total = bufs.iter().map(|b| b.len()).sum();
        loop {
            {
                let mut state = self.queue.lock();
                match wire::write_now_vectored(&self.tcp, &mut state.partial, bufs) {
                    Now::All => return Poll::Ready(Ok(total)),
                    Now::Started(n) => {
                        state.partial = Some(wire::rest_of(bufs, n));
                        return Poll::Ready(Ok(total));
                    }
                    Now::Nothing => {}
                    Now::Failed(e) => return Poll::Ready(Err(e)),
                }
            }
            ready!(self.tcp.poll_write_ready(cx))?;
        }
    }

    /// Writes what is left of a frame begun earlier.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_vectored(cx, &[]).map_ok(|_| ())
    }
}

/// The connection's I/O under the WebSocket: reads from the upgraded connection; writes to it,
/// or, with direct writes, to its stream through [`DirectWrites`].
#[derive(Debug)]
pub(crate) struct ConnectionIo<T> {
    io: T,
    direct: Option<DirectWrites>,
}

impl<T> ConnectionIo<T> {
    pub(crate) fn new(io: T, direct: Option<DirectWrites>) -> Self {
        Self { io, direct }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ConnectionIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnectionIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &self.direct {
            Some(direct) => direct.poll_write_vectored(cx, &[io::IoSlice::new(buf)]),
            None => Pin::new(&mut self.io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &self.direct {
            Some(direct) => direct.poll_write_vectored(cx, bufs),
            None => Pin::new(&mut self.io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.direct.is_some() || self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.direct {
            Some(direct) => direct.poll_flush(cx),
            None => Pin::new(&mut self.io).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(direct) = &self.direct {
            ready!(direct.poll_flush(cx))?;
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.receiver_gone = true;
        state.frames = Default::default();
        state.bytes = 0;
        state.partial = None;
        state.tcp = None;
    }
}

/// One slot of the outbound queue: a message, or the fragments of one message, or a batch of
/// whole messages (never interleaved with other frames).
#[derive(Debug)]
pub(crate) enum OutFrame {
    One(Message),
    /// The frames of one message.
    Fragments(Vec<Message>),
    /// Whole messages, in order.
    Batch(Vec<Message>),
    /// One message already framed (header and payload, see [`Framed`]): written as it is.
    /// Only a connection with direct writes gets these.
    Wire(Bytes),
    /// Nothing to take: finish the frame a direct write began (the queue's `partial`).
    Flush,
}

impl OutFrame {
    /// The messages to write, in order.
    pub(crate) fn into_messages(self) -> Vec<Message> {
        match self {
            OutFrame::One(message) => vec![message],
            OutFrame::Fragments(messages) | OutFrame::Batch(messages) => messages,
            OutFrame::Wire(wire) => wire::unframe(&wire).into_iter().collect(),
            OutFrame::Flush => Vec::new(),
        }
    }

    /// The bytes it holds (payloads; a broadcast's bytes count in full, though subscribers
    /// share them: they are what this client keeps alive).
    fn len(&self) -> usize {
        match self {
            OutFrame::One(message) => message.len(),
            OutFrame::Fragments(messages) | OutFrame::Batch(messages) => {
                messages.iter().map(Message::len).sum()
            }
            OutFrame::Wire(wire) => wire.len(),
            OutFrame::Flush => 0,
        }
    }
}

/// What happened to a frame given to [`Outbound::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    Queued,
    /// The queue was full: the connection is being closed.
    Overflow,
    /// The connection is gone.
    Gone,
}

impl Outbound {
    /// A queue of at most `capacity` frames and `max_bytes` bytes (both at least 1).
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> (Self, OutboundReceiver, Arc<Control>) {
        Self::with_tcp(capacity, max_bytes, None)
    }

    /// [`Self::new`], for a connection whose stream `tcp` takes direct writes.
    pub(crate) fn with_tcp(
        capacity: usize,
        max_bytes: usize,
        tcp: Option<Arc<TcpStream>>,
    ) -> (Self, OutboundReceiver, Arc<Control>) {
        let queue = Arc::new(Queue {
            direct: tcp.is_some(),
            state: std::sync::Mutex::new(QueueState {
                tcp,
                ..QueueState::default()
            }),
            ready: tokio::sync::Notify::new(),
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
        });
        let control = Arc::new(Control::default());
        let outbound = Self {
            queue: queue.clone(),
            control: control.clone(),
        };
        (outbound, OutboundReceiver { queue }, control)
    }

    /// Queues one message for the connection's writer (replies and pushes: the socket actor
    /// that sends them does not write to the stream itself, which measured slower for a
    /// request and its reply than waking the writer).
    pub(crate) fn send(&self, frame: Message) -> Sent {
        self.enqueue(OutFrame::One(frame))
    }

    /// Sends a message framed once for many connections (a broadcast): written at once when
    /// nothing is ahead of it and the stream takes direct writes, queued otherwise.
    pub(crate) fn send_framed(&self, framed: &Framed) -> Sent {
        let (true, Some(bytes)) = (self.queue.direct, framed.wire()) else {
            return self.enqueue(OutFrame::One(framed.message().clone()));
        };
        let mut state = self.queue.lock();
        if state.receiver_gone {
            return Sent::Gone;
        }
        // A connection being closed gets nothing directly (its writer has the last word).
        if state.frames.is_empty() && !state.writing && self.control.reason().is_none() {
            let QueueState { tcp, partial, .. } = &mut *state;
            let tcp = tcp.as_deref().expect("a live direct queue has its stream");
            match wire::write_now(tcp, partial, bytes) {
                Now::All => return Sent::Queued,
                Now::Started(n) => {
                    // The writer finishes it (an `OutFrame::Flush`).
                    state.partial = Some(bytes.slice(n..));
                    drop(state);
                    self.queue.ready.notify_one();
                    return Sent::Queued;
                }
                // Queued: the writer waits for the stream (and sees a failure itself).
                Now::Nothing | Now::Failed(_) => {}
            }
        }
        self.enqueue_locked(state, OutFrame::Wire(bytes.clone()))
    }

    /// A probe of this queue's depth.
    pub(crate) fn probe(&self) -> QueueProbe {
        QueueProbe(Arc::downgrade(&self.queue))
    }

    /// Queues several whole messages to be written back to back, in one write when they fit.
    pub(crate) fn send_batch(&self, messages: Vec<Message>) -> Sent {
        self.enqueue(OutFrame::Batch(messages))
    }

    /// Queues the fragments of one message; they are written back to back.
    pub(crate) fn send_fragments(&self, fragments: Vec<Message>) -> Sent {
        self.enqueue(OutFrame::Fragments(fragments))
    }

    fn enqueue(&self, frame: OutFrame) -> Sent {
        self.enqueue_locked(self.queue.lock(), frame)
    }

    fn enqueue_locked(
        &self,
        mut state: std::sync::MutexGuard<'_, QueueState>,
        frame: OutFrame,
    ) -> Sent {
        let len = frame.len();
        if state.receiver_gone {
            return Sent::Gone;
        }
        // Cut off: nothing more is queued, even if the writer made room since (the client
        // gets a prefix of what was sent, never one with a hole).
        if self.control.reason() == Some(&CloseReason::SlowConsumer) {
            return Sent::Overflow;
        }
        if !self.queue.fits(state.frames.len(), state.bytes, len) {
            drop(state);
            self.overflow("outbound queue full");
            return Sent::Overflow;
        }
        state.frames.push_back(frame);
        state.bytes += len;
        drop(state);
        self.queue.ready.notify_one();
        Sent::Queued
    }

    /// Whether one more frame of `len` bytes fits in this connection's budget with `frames`
    /// frames of `bytes` bytes held for it outside its queue (pushes waiting for a join
    /// reply): they count against the budget with what is queued. If not, the connection is
    /// closed as a slow consumer.
    pub(crate) fn within_budget(&self, frames: usize, bytes: usize, len: usize) -> bool {
        let fits = {
            let state = self.queue.lock();
            let queued = (state.frames.len(), state.bytes);
            self.queue
                .fits(queued.0 + frames, queued.1.saturating_add(bytes), len)
        };
        if !fits {
            self.overflow("pushes held for a join reply over the outbound budget");
        }
        fits
    }

    fn overflow(&self, what: &str) {
        if self.control.reason().is_none() {
            tracing::warn!("slow consumer: {what}; disconnecting");
        }
        self.control.close(CloseReason::SlowConsumer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback connection whose server side takes direct writes: its send buffer and the
    /// client's receive buffer are small, so a few frames fill them.
    async fn small_pair() -> (Arc<TcpStream>, TcpStream) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_send_buffer_size(8192).expect("SO_SNDBUF");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(1).expect("listen");
        let client = tokio::net::TcpSocket::new_v4().expect("socket");
        client.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(client.connect(addr), listener.accept());
        (
            Arc::new(accepted.expect("accept").0),
            client.expect("connect"),
        )
    }

    /// Frame `n`: a 1,000-byte text message starting with its number.
    fn numbered(n: usize) -> Framed {
        Framed::new(Message::Text(format!("{n:>1000}").into()))
    }

    /// The numbers of the whole frames in `bytes`, in order (a frame cut short ends it).
    fn numbers(bytes: &[u8]) -> Vec<usize> {
        let mut cursor = std::io::Cursor::new(bytes);
        let mut found = Vec::new();
        while (cursor.position() as usize) < bytes.len() {
            let Some((_, len)) =
                tokio_tungstenite::tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
                    .expect("a header")
            else {
                break;
            };
            let start = cursor.position() as usize;
            let end = start + len as usize;
            if end > bytes.len() {
                break;
            }
            let text = std::str::from_utf8(&bytes[start..end]).expect("text");
            found.push(text.trim().parse().expect("a number"));
            cursor.set_position(end as u64);
        }
        found
    }

    #[tokio::test]
    async fn the_rest_of_a_frame_cut_short_goes_out_before_anything_else() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (tcp, mut client) = small_pair().await;
        let (out, rx, _control) = Outbound::with_tcp(1024, 1 << 20, Some(tcp));
        // What a direct write leaves when the kernel takes only the first 10 bytes of a frame.
        let first = numbered(1);
        let wire = first.wire().expect("framed").clone();
        {
            let mut state = rx.queue.lock();
            let written = wire.slice(..10);
            let tcp = state.tcp.clone().expect("stream");
            assert_eq!(tcp.try_write(&written).expect("write"), 10);
            state.partial = Some(wire.slice(10..));
        }
        // The next direct write finishes it first, then writes its own frame.
        assert_eq!(out.send_framed(&numbered(2)), Sent::Queued);
        assert!(rx.queue.lock().partial.is_none() && rx.queue.lock().frames.is_empty());
        let mut io = ConnectionIo::new(tokio::io::empty(), rx.direct_writes());
        // A rest left with nothing queued behind it: `recv` gives `Flush`.
        {
            let mut state = rx.queue.lock();
            let third = numbered(3).wire().expect("framed").clone();
            let tcp = state.tcp.clone().expect("stream");
            assert_eq!(tcp.try_write(&third[..5]).expect("write"), 5);
            state.partial = Some(third.slice(5..));
        }
        assert!(matches!(rx.recv().await, OutFrame::Flush));
        assert!(
            rx.queue.lock().writing,
            "the writer holds the stream until it is done"
        );
        assert_eq!(out.send_framed(&numbered(4)), Sent::Queued);
        assert_eq!(
            rx.queue.lock().frames.len(),
            1,
            "queued while the writer finishes"
        );
        io.flush().await.expect("flush");
        let Some(OutFrame::Wire(fourth)) = rx.try_recv() else {
            panic!("the fourth frame")
        };
        io.write_all(&fourth).await.expect("write");
        io.flush().await.expect("flush");
        rx.written();
        let mut received = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while numbers(&received).len() < 4 {
            let n = client.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early");
            received.extend_from_slice(&buf[..n]);
        }
        assert_eq!(numbers(&received), vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_frame_never_overtakes_one_queued_before_it_and_frames_stay_whole() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (tcp, mut client) = small_pair().await;
        let (out, rx, control) = Outbound::with_tcp(1024, 1 << 20, Some(tcp.clone()));
        // Written directly until the socket is full (the last may be in part) and one queues.
        let mut next = 0;
        while rx.queue.lock().frames.is_empty() {
            assert_eq!(out.send_framed(&numbered(next)), Sent::Queued);
            next += 1;
            assert!(next < 1000, "the socket never filled");
        }
        let direct = next - 1;
        // The client reads some: the socket has room again, but a frame still waits.
        let mut received = vec![0u8; 16 * 1024];
        let n = client.read(&mut received).await.expect("read");
        received.truncate(n);
        tcp.writable().await.expect("writable");
        assert_eq!(out.send_framed(&numbered(next)), Sent::Queued);
        next += 1;
        assert_eq!(rx.queue.lock().frames.len(), 2, "queued behind the first");
        // The writer writes the queue through the same stream.
        let mut io = ConnectionIo::new(tokio::io::empty(), rx.direct_writes());
        while let Some(frame) = rx.try_recv() {
            match frame {
                OutFrame::Wire(bytes) => io.write_all(&bytes).await.expect("write"),
                other => panic!("expected a framed message, got {other:?}"),
            }
        }
        io.flush().await.expect("flush");
        rx.written();
        // Direct again, after the queue.
        assert_eq!(out.send_framed(&numbered(next)), Sent::Queued);
        next += 1;
        assert!(rx.queue.lock().frames.is_empty() && !rx.queue.lock().writing);
        let mut rest = vec![0u8; 1 << 20];
        while numbers(&received).len() < next {
            let n = client.read(&mut rest).await.expect("read");
            assert!(n > 0, "closed early");
            received.extend_from_slice(&rest[..n]);
        }
        assert_eq!(numbers(&received), (0..next).collect::<Vec<_>>());
        assert!(direct > 0, "some were written directly");
        assert!(control.reason().is_none());
    }

    fn text(len: usize) -> Message {
        Message::Text("x".repeat(len).into())
    }

    #[test]
    fn the_queue_holds_at_most_its_bytes_and_counts_what_leaves() {
        let (out, rx, control) = Outbound::new(1024, 1000);
        assert_eq!(out.send(text(400)), Sent::Queued);
        assert_eq!(
            out.send_batch(vec![text(300), text(200)]),
            Sent::Queued,
            "900 bytes"
        );
        assert_eq!(rx.queue.lock().bytes, 900);
        // 900 + 400 would be over: taken out as a frame leaves, the room comes back.
        assert!(rx.try_recv().is_some());
        assert_eq!(rx.queue.lock().bytes, 500);
        assert_eq!(out.send_fragments(vec![text(250), text(250)]), Sent::Queued);
        assert_eq!(rx.queue.lock().bytes, 1000, "right at the budget");
        assert!(control.reason().is_none());
        assert_eq!(out.send(text(1)), Sent::Overflow, "one byte over");
        assert_eq!(control.reason(), Some(&CloseReason::SlowConsumer));
        while rx.try_recv().is_some() {}
        assert_eq!(rx.queue.lock().bytes, 0);
    }

    #[test]
    fn frames_held_outside_the_queue_count_against_its_budget() {
        let (out, _rx, control) = Outbound::new(4, 1000);
        assert_eq!(out.send(text(300)), Sent::Queued);
        assert!(out.within_budget(0, 0, 300), "300 queued + 300");
        assert!(out.within_budget(1, 300, 400), "right at the byte budget");
        assert!(
            out.within_budget(2, 2, 2),
            "three frames with the queued one"
        );
        assert!(control.reason().is_none());
        assert!(!out.within_budget(3, 3, 1), "one frame over");
        assert_eq!(control.reason(), Some(&CloseReason::SlowConsumer));
        let (out, _rx, control) = Outbound::new(4, 1000);
        assert!(
            out.within_budget(0, 0, 5000),
            "nothing waits: any one frame"
        );
        assert!(!out.within_budget(1, 5000, 1), "one byte over");
        assert!(control.reason().is_some());
    }

    #[test]
    fn an_empty_queue_takes_one_frame_larger_than_its_budget() {
        let (out, rx, control) = Outbound::new(1024, 1000);
        assert_eq!(out.send(text(5000)), Sent::Queued);
        assert_eq!(out.send(text(1)), Sent::Overflow);
        assert!(control.reason().is_some());
        drop(rx);
        assert_eq!(out.send(text(1)), Sent::Gone);

        // Frames count too.
        let (out, _rx, _) = Outbound::new(2, usize::MAX);
        assert_eq!(out.send(text(1)), Sent::Queued);
        assert_eq!(out.send(text(1)), Sent::Queued);
        assert_eq!(out.send(text(1)), Sent::Overflow);
    }
}
