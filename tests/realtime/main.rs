//! The realtime runtime over real WebSockets: routing rules, failure isolation, transport
//! limits, broadcasts, and the shipped test helpers.

mod adapter;
mod broadcast;
mod churn;
mod helpers;
mod interop;
mod isolation;
mod presence;
mod routing;
mod sessions;
mod supervision;
mod support;
mod transport;
