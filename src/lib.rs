//! Fawkes: a Phoenix-Channels-compatible realtime server, and a library to embed it.
//!
//! The crate is laid out by layer (see `ARCHITECTURE.md`):
//! - contexts, the only code that touches the database: [`accounts`], [`mailer`];
//! - the web front end: [`web`] (endpoint, router, controllers, error mapping);
//! - the ground they stand on: [`config`], [`db`], and [`app`], which wires everything and
//!   runs the server until shutdown.

pub mod accounts;
pub mod app;
pub mod chat;
pub mod config;
pub mod db;
pub mod mailer;
pub mod metrics;
pub mod rooms;
pub mod telemetry;
pub mod web;

/// The realtime runtime (the `fawkes-runtime` crate), re-exported.
pub use fawkes_runtime as runtime;
/// The runtime's test helpers (feature `testing`), re-exported.
#[cfg(feature = "testing")]
pub use fawkes_runtime::testing;
