//! The `rooms` context: the rules of room messages, shared by the `room:*` channel and the REST
//! API. Room messages are not stored (conversations, with history, are the `chat` context's).

use serde_json::{Value, json};

use crate::accounts::{FieldErrors, NUL_MESSAGE};

/// Longest message body, in characters, after trimming.
pub const MAX_BODY_CHARS: usize = 4000;

/// The event a room message is broadcast as.
pub const MESSAGE_EVENT: &str = "message:new";

/// The topic of room `name`.
pub fn topic(name: &str) -> String {
    format!("room:{name}")
}

/// The topic of room `name` if it is within `max_topic_bytes` (the runtime's
/// `socket.max_topic_bytes`: a REST post to a longer topic could reach nobody), else the problem
/// on `name`.
pub fn checked_topic(name: &str, max_topic_bytes: usize) -> Result<String, FieldErrors> {
    let topic = topic(name);
    if topic.len() > max_topic_bytes {
        let max = max_topic_bytes.saturating_sub(topic.len() - name.len());
        return Err(FieldErrors::single(
            "name",
            format!("should be at most {max} byte(s) in UTF-8"),
        ));
    }
    Ok(topic)
}

/// Validates a `{"body": text}` payload: a string of 1..=4000 characters after trimming,
/// without U+0000 (conversation messages follow this rule, and PostgreSQL cannot store it).
/// Returns the trimmed body.
pub fn validate_message(payload: &Value) -> Result<String, FieldErrors> {
    match payload.get("body") {
        None | Some(Value::Null) => Err(FieldErrors::single("body", "can't be blank")),
        Some(Value::String(body)) => {
            let body = body.trim();
            match body.chars().count() {
                0 => Err(FieldErrors::single("body", "can't be blank")),
                _ if body.contains('\0') => Err(FieldErrors::single("body", NUL_MESSAGE)),
                n if n > MAX_BODY_CHARS => Err(FieldErrors::single(
                    "body",
                    format!("should be at most {MAX_BODY_CHARS} character(s)"),
                )),
                _ => Ok(body.to_owned()),
            }
        }
        Some(_) => Err(FieldErrors::single("body", "is invalid")),
    }
}

/// The broadcast payload of a message from `user_id`.
pub fn message_payload(user_id: i64, body: &str) -> Value {
    json!({ "user_id": user_id, "body": body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_topics_are_bounded_in_bytes() {
        assert_eq!(checked_topic("lobby", 255), Ok("room:lobby".to_owned()));
        assert_eq!(
            checked_topic(&"é".repeat(125), 255).map(|t| t.len()),
            Ok(255)
        );
        let errors = checked_topic(&"x".repeat(251), 255).expect_err("too long");
        assert_eq!(
            errors.get("name"),
            Some(&["should be at most 250 byte(s) in UTF-8".to_owned()][..])
        );
    }

    #[test]
    fn bodies_are_trimmed_and_bounded() {
        assert_eq!(
            validate_message(&json!({"body": "  hi  "})),
            Ok("hi".to_owned())
        );
        assert_eq!(
            validate_message(&json!({"body": "ü".repeat(4000)})).map(|b| b.chars().count()),
            Ok(4000)
        );
        for (bad, message) in [
            (json!({}), "can't be blank"),
            (json!({"body": "   "}), "can't be blank"),
            (json!({"body": 5}), "is invalid"),
            (json!({"body": "a\u{0}b"}), NUL_MESSAGE),
            (
                json!({"body": "x".repeat(4001)}),
                "should be at most 4000 character(s)",
            ),
        ] {
            let errors = validate_message(&bad).expect_err("invalid");
            assert_eq!(errors.get("body"), Some(&[message.to_owned()][..]), "{bad}");
        }
    }
}
