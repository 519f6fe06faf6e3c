//! wapi-bench: what a session costs and how fast messages go through the
//! bridge, measured on this machine against wa-sim.
//!
//! ```text
//! cargo run --release -p wapi-bench -- all            # the full run (a few minutes)
//! cargo run --release -p wapi-bench -- all --quick    # a small one (seconds)
//! cargo run --release -p wapi-bench -- cost           # instructions per message (callgrind)
//! ```
//!
//! Prints one JSON line per figure. The bridge and the bare clients run as
//! child processes of this one (`serve` and `bare` are those children), so
//! their memory and CPU are measured apart from the simulator and the
//! webhook receiver, which run here. Figures that compare (bridge / bare,
//! bridge / receiver ceiling) come from the same run, so they hold on a
//! noisy machine better than absolute times.

mod bare;
mod child;
mod cost;
mod groups;
mod media;
mod params;
mod receiver;
mod run;

use anyhow::bail;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // Children, started by `all`.
        Some("serve") => serve().await,
        Some("bare") => bare::serve().await,
        Some("cost") => {
            let params = cost::CostParams::from_args(args.get(1..).unwrap_or_default())?;
            cost::run(params).await
        }
        Some("all") | None => {
            let params = params::Params::from_args(args.get(1..).unwrap_or_default())?;
            run::all(params).await
        }
        Some(other) => bail!(
            "unknown command {other:?}; usage: wapi-bench all [--quick] | cost [--sessions N] [--messages M] [--keep DIR]"
        ),
    }
}

/// The bridge, configured from the environment like the `wapi` binary.
async fn serve() -> anyhow::Result<()> {
    let cfg = wapi::config::Config::from_env()?;
    wapi::serve(cfg).await
}
