//! The upstream agent: wire protocol, SSE parsing, the HTTP client, and the built-in demo agent.
pub mod client;
pub mod demo;
pub mod protocol;
pub mod sse;

pub use client::{AgentClient, AgentClientConfig, AgentStream, UpstreamError};
