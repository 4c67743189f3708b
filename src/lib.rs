//! agentgate: the gateway between people who build apps by chatting with an AI agent and
//! everything that turns the agent's output into a running app.
pub mod agent;
pub mod apps;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod limits;
pub mod runs;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use startup::Application;

/// The built-in demo agent's router, mounted at `/demo-agent`.
pub fn demo_agent_router(bearer_token: Option<String>) -> axum::Router {
    let _ = bearer_token;
    axum::Router::new()
}
