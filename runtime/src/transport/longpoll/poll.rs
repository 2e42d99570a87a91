//! A session's polls: one at a time takes from the outbound queue, and a newer poll cuts
//! an older one short (Phoenix hands the messages to the newest poll).

use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use tokio::sync::{Mutex, watch};
use tokio_tungstenite::tungstenite::Message;

use super::super::{Control, OutFrame, OutboundReceiver};

/// The receiving side of a session's outbound queue, as its polls take from it.
pub(super) struct Polls {
    /// One poll at a time takes from the queue.
    rx: Mutex<OutboundReceiver>,
    /// The number of the latest poll: an older poll still waiting answers at once.
    latest: watch::Sender<u64>,
}

/// What a poll took: the messages, and whether a newer poll cut it short.
#[derive(Debug, Default)]
pub(super) struct Polled {
    pub(super) messages: Vec<String>,
    pub(super) superseded: bool,
}

impl Polled {
    fn superseded() -> Self {
        Self {
            messages: Vec::new(),
            superseded: true,
        }
    }
}

impl Polls {
    pub(super) fn new(rx: OutboundReceiver) -> Self {
        Self {
            rx: Mutex::new(rx),
            latest: watch::Sender::new(0),
        }
    }

    /// Waits up to `window` for a message, then takes everything queued (the queue's bounds
    /// bound it; Phoenix too answers with its whole buffer). Empty: nothing came, or the
    /// session ended (`control`), or a newer poll came: that one cuts this one short at once,
    /// and this one takes nothing more, since its answer may go to a connection nobody reads
    /// any longer (what the newer poll replaced).
    pub(super) async fn take(&self, control: &Control, window: Duration) -> Polled {
        let mut mine = 0;
        self.latest.send_modify(|latest| {
            *latest += 1;
            mine = *latest;
        });
        let mut latest = self.latest.subscribe();
        let superseded = async move {
            let _ = latest.wait_for(|latest| *latest != mine).await;
        };
        tokio::pin!(superseded);
        // Replaced first: a poll that is both replaced and able to take gives way.
        let rx = tokio::select! {
            biased;
            () = &mut superseded => return Polled::superseded(),
            rx = self.rx.lock() => rx,
        };
        if *self.latest.borrow() != mine {
            return Polled::superseded();
        }
        let mut messages = Vec::new();
        if let Some(first) = rx.try_recv() {
            push_frame(&mut messages, first);
        } else if control.reason().is_none() {
            tokio::select! {
                biased;
                () = &mut superseded => return Polled::superseded(),
                frame = rx.recv() => push_frame(&mut messages, frame),
                () = control.closed() => {}
                () = tokio::time::sleep(window) => {}
            }
        }
        while let Some(frame) = rx.try_recv() {
            push_frame(&mut messages, frame);
        }
        Polled {
            messages,
            superseded: false,
        }
    }
}

/// Appends the message(s) of one queued frame as strings: text as is, the fragments of one
/// message joined, binary as base64.
fn push_frame(messages: &mut Vec<String>, frame: OutFrame) {
    let joined = matches!(frame, OutFrame::Fragments(_));
    let mut buffer = BytesMut::new();
    for message in frame.into_messages() {
        let (bytes, binary): (Bytes, bool) = match message {
            Message::Text(text) => (Bytes::from(text), false),
            Message::Binary(bytes) => (bytes, true),
            Message::Frame(frame) => (frame.into_payload(), false),
            _ => continue,
        };
        if joined {
            buffer.extend_from_slice(&bytes);
        } else if binary {
            messages.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
        } else {
            messages.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    if joined {
        messages.push(String::from_utf8_lossy(&buffer).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future as _;
    use std::sync::Arc;
    use std::task::Poll;

    use super::*;
    use crate::transport::Outbound;

    const LONG: Duration = Duration::from_secs(30);

    fn text(n: usize) -> Message {
        Message::Text(n.to_string().into())
    }

    #[tokio::test]
    async fn a_replaced_poll_takes_nothing_even_when_a_frame_is_ready() {
        let (out, rx, control) = Outbound::new(16, 1 << 20);
        let polls = Arc::new(Polls::new(rx));
        let older = tokio::spawn({
            let (polls, control) = (polls.clone(), control.clone());
            async move { polls.take(&control, LONG).await }
        });
        // The older poll waits (this test's runtime has one thread: it runs when this
        // task yields, until it waits).
        while *polls.latest.borrow() == 0 {
            tokio::task::yield_now().await;
        }
        // Before the older poll runs again: a frame comes, and a newer poll.
        assert_eq!(out.send(text(1)), crate::transport::Sent::Queued);
        let newer = polls.take(&control, LONG);
        tokio::pin!(newer);
        std::future::poll_fn(|cx| {
            assert!(
                newer.as_mut().poll(cx).is_pending(),
                "the older one holds the queue"
            );
            Poll::Ready(())
        })
        .await;
        let older = older.await.expect("the older poll");
        assert!(older.superseded);
        assert!(older.messages.is_empty(), "{:?}", older.messages);
        let newer = newer.await;
        assert_eq!(newer.messages, ["1"]);
    }

    #[tokio::test]
    async fn a_poll_takes_everything_queued() {
        let (out, rx, control) = Outbound::new(1024, 1 << 20);
        let polls = Polls::new(rx);
        for n in 0..250 {
            assert_eq!(out.send(text(n)), crate::transport::Sent::Queued);
        }
        let polled = polls.take(&control, LONG).await;
        let expected: Vec<String> = (0..250).map(|n| n.to_string()).collect();
        assert_eq!(polled.messages, expected);
    }
}
