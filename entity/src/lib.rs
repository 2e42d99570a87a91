//! Fawkes database entities.
//!
//! Data only: one module per table and a [`prelude`]. Queries live in the server's contexts
//! (`fawkes::accounts`, …), never here.

pub mod conversation;
pub mod mail;
pub mod message;
pub mod prelude;
pub mod token_revocation;
pub mod user;
