//! The app's channels.

pub mod chat;
pub mod conversation;
pub mod room;

use serde_json::json;

use crate::runtime::Reply;

/// The error reply for invalid input: `{"reason": "invalid", "errors": {field: [...]}}`.
fn invalid(errors: impl serde::Serialize) -> Reply {
    Reply::error_with(json!({ "reason": "invalid", "errors": errors }))
}
