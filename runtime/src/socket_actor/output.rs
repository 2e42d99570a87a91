//! How a socket actor writes to its client: replies (with a fallback when one cannot be
//! encoded) and pushes (large pre-encoded payloads shared between clients as fragments).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::SocketState;
use crate::channel::Reply;
use crate::protocol::{self, Payload, Ref};
use crate::transport::encoded_to_message;

/// Pre-encoded payloads at least this large are shared between clients, not copied.
const SHARE_ABOVE_BYTES: usize = 16 * 1024;

/// Shared JSON text as the bytes of a WebSocket fragment.
struct SharedText(Arc<RawValue>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.get().as_bytes()
    }
}

impl<A: Send + Sync + 'static> SocketState<A> {
    pub(super) fn send(&self, encoded: protocol::Encoded) {
        self.out.send(encoded_to_message(encoded));
    }

    pub(super) fn reply(&self, join_ref: &Ref, msg_ref: &Ref, topic: &str, reply: &Reply) {
        if let Some(frame) = self.reply_frame(join_ref, msg_ref, topic, reply) {
            self.out.send(frame);
        }
    }

    /// A reply as a frame (an error reply if `reply` cannot be encoded).
    pub(super) fn reply_frame(
        &self,
        join_ref: &Ref,
        msg_ref: &Ref,
        topic: &str,
        reply: &Reply,
    ) -> Option<Message> {
        match protocol::encode_reply(
            self.vsn,
            join_ref,
            msg_ref,
            topic,
            &reply.status,
            &reply.response,
        ) {
            Ok(encoded) => Some(encoded_to_message(encoded)),
            Err(e) => {
                tracing::warn!(%topic, error = %e, "reply not encodable; answering an error");
                let fallback = Reply::error("reply not encodable");
                protocol::encode_reply(
                    self.vsn,
                    join_ref,
                    msg_ref,
                    topic,
                    &fallback.status,
                    &fallback.response,
                )
                .ok()
                .map(encoded_to_message)
            }
        }
    }

    pub(super) fn push_all(&self, join_ref: &Ref, topic: &str, pushes: Vec<(String, Payload)>) {
        for (event, payload) in pushes {
            // A large pre-encoded payload (a presence list) goes out as fragments around the
            // shared bytes: no per-client copy waits in the queue.
            if let Payload::Encoded(raw) = &payload
                && raw.get().len() >= SHARE_ABOVE_BYTES
            {
                let (prefix, suffix) =
                    protocol::push_frame_parts(self.vsn, join_ref, topic, &event);
                let shared = Bytes::from_owner(SharedText(raw.clone()));
                self.out.send_fragments(vec![
                    Message::Frame(Frame::message(prefix, OpCode::Data(Data::Text), false)),
                    Message::Frame(Frame::message(shared, OpCode::Data(Data::Continue), false)),
                    Message::Frame(Frame::message(suffix, OpCode::Data(Data::Continue), true)),
                ]);
                continue;
            }
            match protocol::encode_push(self.vsn, join_ref, topic, &event, &payload) {
                Ok(encoded) => self.send(encoded),
                Err(e) => tracing::warn!(%topic, %event, error = %e, "push not encodable; dropped"),
            }
        }
    }
}
