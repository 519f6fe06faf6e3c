//! How big a run is.

use anyhow::{Context, bail};

#[derive(Clone, Debug)]
pub struct Params {
    /// Session counts at which memory is measured; the last one is also the
    /// restore and idle-CPU count.
    pub steps: Vec<usize>,
    /// Sessions that receive the inbound burst and send the outbound one.
    pub busy_sessions: usize,
    /// Messages in the inbound burst.
    pub inbound: usize,
    /// Offered load for the latency figure, messages per second.
    pub rate: usize,
    /// How long the fixed load is offered.
    pub rate_secs: u64,
    /// Send requests in the outbound figure.
    pub outbound: usize,
    /// How long idle CPU is measured.
    pub idle_secs: u64,
    /// Images each busy session receives in the media phase.
    pub images_per_session: usize,
    /// Bytes of each of those images.
    pub image_bytes: usize,
    /// Bytes of the document sent through the API.
    pub document_bytes: usize,
    /// Contacts in the group one session sends to.
    pub group_members: usize,
}

impl Params {
    pub fn full() -> Self {
        Self {
            steps: vec![100, 500, 1000],
            busy_sessions: 100,
            inbound: 20_000,
            rate: 1000,
            rate_secs: 10,
            outbound: 2000,
            idle_secs: 60,
            images_per_session: 3,
            image_bytes: 1 << 20,
            document_bytes: 64 << 20,
            group_members: 100,
        }
    }

    /// Small enough for a test: every phase runs, in seconds.
    pub fn quick() -> Self {
        Self {
            steps: vec![5, 10, 20],
            busy_sessions: 20,
            inbound: 500,
            rate: 200,
            rate_secs: 1,
            outbound: 100,
            idle_secs: 2,
            images_per_session: 1,
            image_bytes: 1 << 20,
            document_bytes: 4 << 20,
            group_members: 10,
        }
    }

    pub fn from_args(args: &[String]) -> anyhow::Result<Self> {
        let mut p = Self::full();
        let mut o = Options::new(args);
        while let Some(flag) = o.flag() {
            match flag {
                "--quick" => p = Self::quick(),
                "--sessions" => {
                    p.steps = o
                        .value::<String>(flag)?
                        .split(',')
                        .map(|s| s.trim().parse::<usize>().context("--sessions: numbers"))
                        .collect::<anyhow::Result<_>>()?;
                }
                "--messages" => p.inbound = o.value(flag)?,
                "--idle-secs" => p.idle_secs = o.value(flag)?,
                "--group-members" => p.group_members = o.value(flag)?,
                other => bail!("unknown option {other:?}"),
            }
        }
        let most = p.steps.iter().copied().max().unwrap_or(0);
        if most == 0 || p.steps.windows(2).any(|w| w[0] >= w[1]) {
            bail!("--sessions: increasing counts above 0, e.g. 100,500,1000");
        }
        p.busy_sessions = p.busy_sessions.min(most);
        Ok(p)
    }

    pub fn most(&self) -> usize {
        self.steps.last().copied().unwrap_or(0)
    }
}

/// `--flag value` options, read one flag at a time (shared by `all` and
/// `cost`).
pub struct Options<'a> {
    it: std::slice::Iter<'a, String>,
}

impl<'a> Options<'a> {
    pub fn new(args: &'a [String]) -> Self {
        Self { it: args.iter() }
    }

    pub fn flag(&mut self) -> Option<&'a str> {
        self.it.next().map(String::as_str)
    }

    /// The value after `flag`, parsed.
    pub fn value<T: std::str::FromStr>(&mut self, flag: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self
            .it
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        raw.parse()
            .map_err(|e| anyhow::anyhow!("{flag}: {raw:?}: {e}"))
    }
}
