//! agentgate: the gateway between people who build apps by chatting with an AI agent and
//! everything that turns the agent's output into a running app.
// Production code says what it expects of a value instead of panicking on it; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod agent;
pub mod apps;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod db;
pub mod deploy;
pub mod error;
pub mod files;
pub mod git;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod notices;
pub mod pipeline;
pub mod provision;
pub mod runs;
pub mod secrets;
pub mod server;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod webhooks;
pub mod wiring;
pub mod workspace;

#[cfg(test)]
mod layering;

pub use startup::Application;

/// The User-Agent of agentgate's calls to other services' APIs (GitHub and Koyeb ask for one
/// that names the application).
pub const USER_AGENT: &str = concat!("agentgate/", env!("CARGO_PKG_VERSION"));
