//! `wa-sim --listen 127.0.0.1:7777`: a WhatsApp server simulator for
//! development and tests without a phone.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "A protocol-level WhatsApp Web simulator")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7777")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WA_SIM_LOG")
                .unwrap_or_else(|_| "wa_sim=info".into()),
        )
        .init();
    let args = Args::parse();
    let sim = wa_sim::Simulator::start(args.listen).await?;
    println!("wa-sim WebSocket: {}", sim.ws_url());
    println!("wa-sim admin API: {}", sim.admin_url());
    println!(
        "wa-sim media CDN: https://{} (certificate: {}/media/certificate)",
        sim.media_host(),
        sim.admin_url()
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
