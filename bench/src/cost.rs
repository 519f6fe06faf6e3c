//! `wapi-bench cost`: the instructions the bridge executes per forwarded
//! message, counted by callgrind. Unlike a time, the count does not depend on
//! the machine's speed or on what else runs on it, so it serves as a
//! regression guard (`bench/tests/cost.rs` against `bench/cost-baseline.json`)
//! and, with `--keep DIR`, as the profile behind BENCHMARKS.md's breakdown
//! (`callgrind_annotate DIR/callgrind.out.1`).
//!
//! The bridge runs under `valgrind --tool=callgrind`; it links the sessions
//! and forwards one warm-up message each (the Signal session set-up,
//! first-message work), then the counters are zeroed, a burst of messages
//! is forwarded (until the receiver has every one) and dumped on its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use wa_sim::Simulator;

use crate::child::pid;
use crate::receiver::Receiver;
use crate::run::{
    Api, figure, free_port, inbound_burst, me_under, round, spawn_bridge_with, started,
};

pub struct CostParams {
    pub sessions: usize,
    pub messages: usize,
    /// Where to keep the profile; a temporary directory otherwise.
    pub keep: Option<PathBuf>,
}

impl CostParams {
    pub fn from_args(args: &[String]) -> anyhow::Result<Self> {
        let mut p = Self {
            sessions: 2,
            messages: 200,
            keep: None,
        };
        let mut o = crate::params::Options::new(args);
        while let Some(flag) = o.flag() {
            match flag {
                "--sessions" => p.sessions = o.value(flag)?,
                "--messages" => p.messages = o.value(flag)?,
                "--keep" => p.keep = Some(o.value(flag)?),
                other => bail!("unknown option {other:?}"),
            }
        }
        if p.sessions == 0 || p.messages < p.sessions {
            bail!("--sessions above 0 and --messages at least as many");
        }
        Ok(p)
    }
}

/// Zeroes or dumps the running bridge's counters.
fn control(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .context("callgrind_control (Debian's valgrind package) must be installed")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The instruction total of a callgrind output file.
fn total_instructions(file: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no totals in {}", file.display()))
}

pub async fn run(p: CostParams) -> anyhow::Result<()> {
    let began = Instant::now();
    let sim = Arc::new(Simulator::start("127.0.0.1:0".parse()?).await?);
    let hook = Receiver::start().await?;
    let tmp = tempfile::tempdir()?;
    let out_dir = p.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&out_dir)?;
    let profile = out_dir.join("callgrind.out");
    let wrapper = format!(
        "valgrind --tool=callgrind --callgrind-out-file={}",
        profile.display()
    );
    let port = free_port()?;
    let mut bridge = spawn_bridge_with(
        &sim,
        &tmp.path().join("bridge"),
        port,
        None,
        me_under("serve", Some(&wrapper))?,
    )?;
    let api = Api::new(port);
    started(&api).await?;
    let bridge_pid = pid(&bridge)?;
    api.link_range(&sim, &hook.url, 0..p.sessions).await?;
    // Warm-up: every session's first message (session set-up) is not what
    // a busy bridge mostly does.
    inbound_burst(&sim, &hook, bridge_pid, 0..p.sessions, 1).await?;
    let per = p.messages / p.sessions;
    let messages = per * p.sessions;
    // Counters from zero, the burst, then its own dump
    // (`callgrind.out.1`; the file without a number is the rest).
    control(bridge_pid, &["--zero"])?;
    inbound_burst(&sim, &hook, bridge_pid, 0..p.sessions, per).await?;
    control(bridge_pid, &["--dump=burst"])?;
    let burst = PathBuf::from(format!("{}.1", profile.display()));
    std::process::Command::new("kill")
        .args(["-TERM", &bridge_pid.to_string()])
        .status()?;
    tokio::time::timeout(Duration::from_secs(180), bridge.wait())
        .await
        .context("the bridge did not exit within 180 s of SIGTERM")??;
    let total = total_instructions(&burst)?;
    figure(
        "cost",
        json!({
            "sessions": p.sessions,
            "messages": messages,
            "instructions": total,
            "instructions_per_msg": round(total as f64 / messages as f64, 0),
            "profile": p.keep.as_ref().map(|_| burst.display().to_string()),
            "seconds": round(began.elapsed().as_secs_f64(), 1),
        }),
    );
    Ok(())
}
