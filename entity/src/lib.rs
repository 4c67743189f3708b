//! sea-orm entities, one file per table. JSON columns are stored as text so the schema is the
//! same on SQLite and PostgreSQL.
pub mod app_databases;
pub mod app_messages;
pub mod app_versions;
pub mod apps;
pub mod deployment_logs;
pub mod deployments;
pub mod health_checks;
pub mod jobs;
pub mod run_events;
pub mod runs;
pub mod usage_counters;
pub mod user_limits;
pub mod webhook_deliveries;
pub mod webhooks;
