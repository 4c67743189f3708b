//! The upstream agent: wire protocol, SSE parsing and the HTTP client. The built-in demo agent
//! is the `demo-agent` crate.
pub mod client;
mod json_fields;
pub mod protocol;
pub mod sse;

pub use client::{AgentClient, AgentClientConfig, AgentStream, UpstreamError};
