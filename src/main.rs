//! The `wapi` binary: configuration from the environment, then the bridge
//! until SIGINT or SIGTERM.
//!
//! `wapi --sandbox` (a build with the `sandbox` feature) also runs the
//! wa-sim simulator in-process and points every session at it.

use std::process::ExitCode;

use tracing::warn;
use wapi::config::{Config, WHATSAPP_URL};

#[tokio::main]
async fn main() -> ExitCode {
    wapi::telemetry::init();
    let sandbox = std::env::args().skip(1).any(|a| a == "--sandbox");
    let mut cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wapi: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // Kept alive for the life of the process.
    let _sim = match sandbox::prepare(sandbox, &mut cfg).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("wapi: {e}");
            return ExitCode::from(2);
        }
    };
    let _sentry = wapi::telemetry::init_sentry(cfg.sentry_dsn.as_ref().map(|d| d.0.as_str()));
    match wapi::serve(cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wapi: cannot start: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "sandbox")]
mod sandbox {
    use super::*;

    pub async fn prepare(
        start_sim: bool,
        cfg: &mut Config,
    ) -> Result<Option<wa_sim::SimHandle>, String> {
        warn!(
            "SANDBOX BUILD: WhatsApp's certificate chain is NOT verified. \
             Use this build only against wa-sim, never against WhatsApp."
        );
        if !start_sim {
            return Ok(None);
        }
        if cfg.whatsapp_url != WHATSAPP_URL {
            tracing::info!(
                url = cfg.whatsapp_url,
                "sandbox: using the external simulator"
            );
            return Ok(None);
        }
        let sim = wa_sim::Simulator::start(([127, 0, 0, 1], 0).into())
            .await
            .map_err(|e| format!("cannot start the simulator: {e}"))?;
        cfg.whatsapp_url = sim.ws_url();
        cfg.whatsapp_version_url = sim.sw_js_url();
        // Media goes through the simulator's HTTPS host: trust its
        // certificate (this build only).
        cfg.media.sandbox_media_ca = Some(sim.media_ca_pem());
        println!("wa-sim (sandbox) WebSocket: {}", sim.ws_url());
        println!("wa-sim (sandbox) admin API: {}", sim.admin_url());
        println!(
            "Scan a QR code with: curl -XPOST {}/scan -H 'content-type: application/json' \
             -d '{{\"qr\": \"<code>\", \"phone\": \"15550001111\"}}'",
            sim.admin_url()
        );
        Ok(Some(sim))
    }
}

#[cfg(not(feature = "sandbox"))]
mod sandbox {
    use super::*;

    pub async fn prepare(start_sim: bool, cfg: &mut Config) -> Result<Option<()>, String> {
        if start_sim {
            return Err("--sandbox needs a build with the sandbox feature: \
                 cargo run --release --features sandbox -- --sandbox"
                .into());
        }
        if cfg.whatsapp_url != WHATSAPP_URL {
            warn!(
                url = cfg.whatsapp_url,
                "WAPI_WHATSAPP_URL is not WhatsApp: this build verifies WhatsApp's certificate \
                 chain, so a simulator will fail the handshake (build with --features sandbox)"
            );
        }
        Ok(None)
    }
}
