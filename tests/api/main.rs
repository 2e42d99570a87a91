//! Integration tests over real HTTP against a server on port 0, each with a fresh database.
//!
//! `cargo test` runs them on SQLite; with `TEST_DATABASE_URL=postgres://…` the same tests run
//! on PostgreSQL, each in a database of its own.

mod browser;
mod chat;
mod chat_channel;
mod cli;
mod cluster;
mod conversation_channel;
mod conversations;
mod credentials;
mod drain;
mod durability;
mod errors;
mod interop;
mod lifecycle;
mod limits;
mod longpoll;
mod mail;
mod metrics;
mod migrations;
mod openapi;
mod rate_limits;
mod resilience;
mod rooms;
mod sessions;
mod site;
mod socket_tokens;
mod sockets;
mod support;
mod traces;
mod users;
