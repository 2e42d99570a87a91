//! The app's channels.

pub mod conversation;
pub mod room;
