//! Schema migrations. The same migrations run on SQLite and PostgreSQL 15, so they use only
//! portable column types (ids are UUID strings, JSON is stored as text).
pub use sea_orm_migration::prelude::*;

mod m20261121_000001_foundation;
mod m20261121_000002_app_versions;
mod m20261121_000003_deployments;
mod m20261121_000004_git;
mod m20261121_000005_app_databases;
mod m20261202_000006_run_runners;
mod m20261202_000007_version_repositories;
mod m20261205_000020_run_outcomes;
mod m20261205_000030_app_listing;
mod m20261205_000040_health_checks;
mod m20261206_000050_job_queue;
mod m20261207_000060_gateways;
mod m20261208_000070_webhooks;
mod m20261209_000080_job_traces;
mod m20261210_000090_deployment_logs;
mod m20261211_000100_log_rows;
mod m20261212_000110_inline_log_rows;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_foundation::Migration),
            Box::new(m20261121_000002_app_versions::Migration),
            Box::new(m20261121_000003_deployments::Migration),
            Box::new(m20261121_000004_git::Migration),
            Box::new(m20261121_000005_app_databases::Migration),
            Box::new(m20261202_000006_run_runners::Migration),
            Box::new(m20261202_000007_version_repositories::Migration),
            Box::new(m20261205_000020_run_outcomes::Migration),
            Box::new(m20261205_000030_app_listing::Migration),
            Box::new(m20261205_000040_health_checks::Migration),
            Box::new(m20261206_000050_job_queue::Migration),
            Box::new(m20261207_000060_gateways::Migration),
            Box::new(m20261208_000070_webhooks::Migration),
            Box::new(m20261209_000080_job_traces::Migration),
            Box::new(m20261210_000090_deployment_logs::Migration),
            Box::new(m20261211_000100_log_rows::Migration),
            Box::new(m20261212_000110_inline_log_rows::Migration),
        ]
    }
}
