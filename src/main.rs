//! The `agentgate` command: parse the CLI, load config, start telemetry, run.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use agentgate::auth::Authenticator;
use agentgate::config::{CliOverrides, Config};
use agentgate::{secrets, telemetry, Application};

#[derive(Parser)]
#[command(
    name = "agentgate",
    version,
    about = "Gateway for AI app-building agents"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone, Default)]
struct CommonArgs {
    /// A TOML config file layered over the embedded defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where SQLite, local files and generated secrets live.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve {
        /// Address to bind, e.g. 127.0.0.1:0.
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// Serve only the API; run deployment workers elsewhere (`agentgate worker`).
        #[arg(long)]
        no_worker: bool,
    },
    /// Run only the deployment workers and upload retries.
    Worker,
    /// Print a dev bearer token (HS256 mode only).
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        privileged: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Serve only the built-in demo agent.
    DemoAgent {
        #[arg(long, default_value_t = 8001)]
        port: u16,
        /// Require this bearer token from callers.
        #[arg(long, env = "DEMO_AGENT_TOKEN")]
        token: Option<String>,
    },
}

fn main() -> ExitCode {
    agentgate::server::malloc_arenas::limit();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `with_workers`: the command runs deploy workers, so their settings must be complete too.
fn load(
    common: &CommonArgs,
    bind: Option<std::net::SocketAddr>,
    with_workers: bool,
) -> anyhow::Result<Config> {
    let overrides = CliOverrides {
        bind,
        data_dir: common.data_dir.clone(),
    };
    Ok(Config::load(
        common.config.as_deref(),
        &overrides,
        with_workers,
    )?)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let default = Command::Serve {
        bind: None,
        no_worker: false,
    };
    match cli.command.unwrap_or(default) {
        Command::Serve { bind, no_worker } => {
            serve(load(&cli.common, bind, !no_worker)?, !no_worker).await
        }
        Command::Worker => {
            let config = load(&cli.common, None, true)?;
            let telemetry = telemetry::init(&config.log, &config.telemetry)?;
            println!("agentgate worker running");
            let result = agentgate::startup::run_workers(config, shutdown_signal()).await;
            telemetry.shutdown().await;
            result
        }
        Command::Token { user, privileged } => {
            let config = load(&cli.common, None, false)?;
            let secret = secrets::hs256_secret(&config.auth.hs256_secret, &config.server.data_dir)?;
            let auth = Authenticator::new(&config.auth, &secret, reqwest::Client::new());
            let token = auth
                .mint_dev_token(&user, privileged)
                .ok_or_else(|| anyhow::anyhow!("auth.mode must be hs256 to mint tokens"))?;
            println!("{token}");
            Ok(())
        }
        Command::Migrate => {
            let config = load(&cli.common, None, false)?;
            telemetry::init_logs(&config.log);
            std::fs::create_dir_all(&config.server.data_dir)?;
            agentgate::db::connect(&config.database_url(), 1).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::DemoAgent { port, token } => {
            let config = load(&cli.common, None, false)?;
            telemetry::init_logs(&config.log);
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            println!("demo agent listening on http://{}", listener.local_addr()?);
            demo_agent::serve(listener, token, shutdown_signal()).await?;
            Ok(())
        }
    }
}

async fn serve(config: Config, with_workers: bool) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&config.log, &config.telemetry)?;
    let result = serve_app(config, with_workers).await;
    // The last run's spans are still buffered: send them before the process exits.
    telemetry.shutdown().await;
    result
}

async fn serve_app(config: Config, with_workers: bool) -> anyhow::Result<()> {
    let app = Application::build_with(config, with_workers).await?;
    let address = app.address();
    println!("agentgate listening on http://{address}");
    // Stdout ends up in logs: print a token only where dev sign-in would give one anyway
    // (on, and reachable from this machine alone), and only a short-lived one.
    let config = &app.state().config;
    let local_dev = config.server.dev_login
        && address.ip().is_loopback()
        && config.auth.mode == agentgate::config::AuthMode::Hs256;
    if local_dev {
        if let Some(token) = app.state().auth.mint_printed_dev_token() {
            let user = agentgate::auth::LOCAL_DEV_USER;
            let minutes = agentgate::auth::PRINTED_DEV_TOKEN_TTL.as_secs() / 60;
            println!("dev token (user \"{user}\"): {token}");
            println!(
                "it expires in {minutes} minutes; `agentgate token --user NAME` mints another"
            );
            println!("try: curl -H \"Authorization: Bearer $TOKEN\" http://{address}/apps");
        }
    }
    app.run_until_stopped(shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
