//! The app's channels.

pub mod chat;
pub mod conversation;
pub mod room;
