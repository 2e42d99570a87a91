//! The realtime runtime over real WebSockets: routing rules, failure isolation, transport
//! limits, broadcasts, and the shipped test helpers.

mod adapter;
mod axum_app;
mod broadcast;
mod budgets;
mod channel_case;
mod churn;
mod cluster;
mod direct;
mod drain;
mod endings;
mod front_door;
mod half_sent;
mod helpers;
mod interop;
mod isolation;
mod joins;
mod limits;
mod longpoll;
mod longpoll_caps;
mod longpoll_endings;
mod longpoll_js;
mod longpoll_nodes;
mod longpoll_posts;
mod presence;
mod raw;
mod registry;
mod routing;
mod supervision;
mod support;
mod transport;
