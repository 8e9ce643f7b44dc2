//! The `herald` binary: `herald agent` runs a node; every other subcommand is the admin client.

use std::process::ExitCode;

use clap::Parser;
use herald_node::agent::{self, Exit, Listeners};
use herald_node::config::NodeConfig;

#[derive(clap::Parser)]
#[command(name = "herald", version, about = "Herald presence and IM router")]
struct Cli {
    #[command(flatten)]
    global: herald_node::cli::GlobalOpts,
    #[command(subcommand)]
    command: Top,
}

#[derive(clap::Subcommand)]
enum Top {
    /// Run a Herald node.
    Agent(Box<herald_node::config::AgentArgs>),
    #[command(flatten)]
    Admin(herald_node::cli::AdminCommand),
}

/// mimalloc rather than glibc malloc: a fan-out or chat burst frees thousands of small stanza
/// buffers at once, and glibc paid for them again in `malloc_consolidate` (9 % of the server's
/// CPU in a 1,000-watcher fan-out). Measured side by side, idle memory included, in
/// bench/README, section "2026-12-06, afternoon".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Top::Agent(args) => run_agent(*args),
        Top::Admin(cmd) => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start a runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(herald_node::cli::run(&cli.global, cmd)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_agent(args: herald_node::config::AgentArgs) -> ExitCode {
    let cfg = match NodeConfig::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = herald_node::telemetry::init(cfg.log_format, &cfg.log_level) {
        eprintln!("error: cannot set up logging: {e}");
        return ExitCode::from(2);
    }
    let listeners = match Listeners::bind(&cfg) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot bind listeners");
            return ExitCode::FAILURE;
        }
    };
    let system = actix_rt::System::new();
    match system.block_on(agent::run(cfg, listeners, shutdown_signal())) {
        Ok(Exit::Shutdown) | Ok(Exit::Removed) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "herald node failed");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the node");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
