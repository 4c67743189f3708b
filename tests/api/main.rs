//! Black-box API tests over real HTTP. Each test runs on SQLite and, when
//! AGENTGATE_TEST_DATABASE_URL is set, on a fresh PostgreSQL database.
mod helpers;

mod fake_agent;
mod fake_github;
mod fake_koyeb;
mod fake_neon;
mod openapi_check;
mod s3_server;

mod app_build_client;
mod app_url;
mod apps;
mod auth;
mod builder;
mod client_shapes;
mod cluster;
mod cluster_processes;
mod deploy;
mod deployment_logs;
mod ecr;
mod files;
mod git;
mod git_dev;
mod git_http;
mod github_answers;
mod hardening;
mod hardening_connections;
mod koyeb;
mod koyeb_description;
mod limits;
mod openapi;
mod preview_roots;
mod process;
mod provision;
mod real_peers;
mod relay;
mod resume;
mod telemetry;
mod upstream_logs;
mod versions;
mod webhooks;
