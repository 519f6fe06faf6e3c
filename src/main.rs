//! The `wapi` binary: configuration from the environment, then the bridge
//! until SIGINT or SIGTERM.

use std::process::ExitCode;

use wapi::App;
use wapi::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    wapi::telemetry::init();
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wapi: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let app = match App::start(cfg).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wapi: cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    app.shutdown().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
