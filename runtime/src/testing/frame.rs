//! Decoded server frames, shared by the test clients.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long any expectation waits.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A server frame, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// `join_ref` (JSON; `null` for broadcasts).
    pub join_ref: Value,
    /// `ref` (JSON; `null` for pushes and broadcasts).
    pub msg_ref: Value,
    /// Topic.
    pub topic: String,
    /// Event (`phx_reply` for replies, also for binary replies).
    pub event: String,
    /// JSON payload (`{"status","response"}` for replies; for binary frames, `null`).
    pub payload: Value,
    /// The raw payload of a binary frame (for a binary reply, the response bytes).
    pub binary: Option<Vec<u8>>,
}

impl Frame {
    /// A reply's status.
    pub fn status(&self) -> Option<&str> {
        self.payload["status"].as_str()
    }

    /// A reply's response.
    pub fn response(&self) -> &Value {
        &self.payload["response"]
    }

    /// The payload of a push or broadcast: a binary payload as a JSON array of its bytes.
    pub(crate) fn payload_value(&self) -> Value {
        match &self.binary {
            Some(bytes) => bytes_value(bytes),
            None => self.payload.clone(),
        }
    }

    /// The response of a reply: a binary response as a JSON array of its bytes.
    pub(crate) fn response_value(&self) -> Value {
        match &self.binary {
            Some(bytes) => bytes_value(bytes),
            None => self.response().clone(),
        }
    }

    /// One line for failure messages.
    pub(crate) fn summary(&self) -> String {
        if self.event == "phx_reply" {
            format!(
                "reply {:?} to ref {} on {:?}: {}",
                self.status().unwrap_or_default(),
                self.msg_ref,
                self.topic,
                self.response_value()
            )
        } else {
            format!(
                "{:?} on {:?}: {}",
                self.event,
                self.topic,
                self.payload_value()
            )
        }
    }

    /// Decodes a V2 text or binary frame (or a V1 object frame).
    pub fn decode(message: &Message) -> Option<Frame> {
        match message {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(text.as_str()).ok()?;
                if let Some(array) = v.as_array() {
                    Some(Frame {
                        join_ref: array.first()?.clone(),
                        msg_ref: array.get(1)?.clone(),
                        topic: array.get(2)?.as_str()?.to_owned(),
                        event: array.get(3)?.as_str()?.to_owned(),
                        payload: array.get(4)?.clone(),
                        binary: None,
                    })
                } else {
                    Some(Frame {
                        join_ref: Value::Null,
                        msg_ref: v["ref"].clone(),
                        topic: v["topic"].as_str()?.to_owned(),
                        event: v["event"].as_str()?.to_owned(),
                        payload: v["payload"].clone(),
                        binary: None,
                    })
                }
            }
            Message::Binary(bytes) => decode_binary(bytes),
            _ => None,
        }
    }
}

fn bytes_value(bytes: &[u8]) -> Value {
    Value::Array(bytes.iter().map(|&b| Value::from(b)).collect())
}

/// `frames` for a failure message, under the heading `what`.
pub(crate) fn listing<'a>(what: &str, frames: impl IntoIterator<Item = &'a Frame>) -> String {
    let lines: Vec<String> = frames
        .into_iter()
        .map(|f| format!("\n    {}", f.summary()))
        .collect();
    if lines.is_empty() {
        format!("; {what}: none")
    } else {
        format!("; {what}:{}", lines.concat())
    }
}

fn decode_binary(bytes: &[u8]) -> Option<Frame> {
    let kind = *bytes.first()?;
    let header = match kind {
        0 => 3,
        1 => 4,
        2 => 2,
        _ => return None,
    };
    let lens: Vec<usize> = bytes
        .get(1..=header)?
        .iter()
        .map(|&b| usize::from(b))
        .collect();
    let mut at = 1 + header;
    let mut fields = Vec::new();
    for len in lens {
        fields.push(String::from_utf8(bytes.get(at..at + len)?.to_vec()).ok()?);
        at += len;
    }
    let text = |s: &String| {
        if s.is_empty() {
            Value::Null
        } else {
            Value::from(s.as_str())
        }
    };
    let rest = bytes.get(at..)?.to_vec();
    Some(match kind {
        0 => Frame {
            join_ref: text(&fields[0]),
            msg_ref: Value::Null,
            topic: fields[1].clone(),
            event: fields[2].clone(),
            payload: Value::Null,
            binary: Some(rest),
        },
        1 => Frame {
            join_ref: text(&fields[0]),
            msg_ref: text(&fields[1]),
            topic: fields[2].clone(),
            event: "phx_reply".to_owned(),
            payload: json!({ "status": fields[3] }),
            binary: Some(rest),
        },
        _ => Frame {
            join_ref: Value::Null,
            msg_ref: Value::Null,
            topic: fields[0].clone(),
            event: fields[1].clone(),
            payload: Value::Null,
            binary: Some(rest),
        },
    })
}

/// Frames received but not yet asserted on.
#[derive(Default)]
pub(crate) struct Inbox(pub(crate) VecDeque<Frame>);

impl Inbox {
    pub(crate) fn take(&mut self, matches: &impl Fn(&Frame) -> bool) -> Option<Frame> {
        let at = self.0.iter().position(matches)?;
        self.0.remove(at)
    }
}
