//! Child processes of the benchmark and what /proc says about them.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// This same binary, to run one of its child roles. `BENCH_WRAP_SERVE`
/// (e.g. `valgrind --tool=callgrind`) runs the bridge under a profiler.
pub fn me(role: &str) -> anyhow::Result<Command> {
    let wrapper = std::env::var("BENCH_WRAP_SERVE")
        .ok()
        .filter(|w| role == "serve" && !w.trim().is_empty());
    me_under(role, wrapper.as_deref())
}

/// [`me`] under a command of the caller's (`valgrind --tool=callgrind`).
pub fn me_under(role: &str, wrapper: Option<&str>) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("the benchmark's own path")?;
    let mut c = match wrapper {
        Some(w) => {
            let mut words = w.split_whitespace();
            let mut c = Command::new(words.next().unwrap_or_default());
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    c.arg(role).kill_on_drop(true).stderr(Stdio::null());
    Ok(c)
}

/// Resident memory of a process, bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

/// Starts a new peak: the kernel's high-water mark of the process's
/// resident memory (`VmHWM`) is reset to its current RSS.
pub fn reset_peak(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .context("resetting the peak RSS (/proc/<pid>/clear_refs)")
}

/// The highest resident memory since the last [`reset_peak`], bytes.
pub fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .with_context(|| format!("{field} in /proc/<pid>/status"))
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may itself hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`; 100 on
/// Linux on every common architecture).
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

pub fn pid(child: &Child) -> anyhow::Result<u32> {
    child.id().context("the child has exited")
}

/// SIGTERM, then wait (bounded) for the exit.
pub async fn terminate(child: &mut Child) -> anyhow::Result<()> {
    let pid = pid(child)?;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .context("the child did not exit within 30 s of SIGTERM")??;
    Ok(())
}
