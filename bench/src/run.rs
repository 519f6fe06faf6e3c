//! The full run: every figure, one JSON line each.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::Semaphore;
use wa_sim::{SimHandle, Simulator};

pub(crate) use crate::child::me_under;
use crate::child::{cpu_time, me, pid, rss, terminate};
use crate::params::Params;
use crate::receiver::Receiver;

const LINK_CONCURRENCY: usize = 20;
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

fn extend(v: &mut Value, more: &Value) {
    if let (Some(o), Some(f)) = (v.as_object_mut(), more.as_object()) {
        o.extend(f.clone());
    }
}

pub(crate) fn figure(name: &str, fields: Value) {
    let mut v = json!({"bench": "wapi", "figure": name});
    extend(&mut v, &fields);
    println!("{v}");
}

pub(crate) fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn session_name(i: usize) -> String {
    format!("s{i:05}")
}

pub(crate) fn session_phone(i: usize) -> String {
    format!("1777{i:07}")
}

/// The contact that writes to session `i`.
pub(crate) fn contact_phone(i: usize) -> String {
    format!("1888{i:07}")
}

/// The p-th percentile (0..=100) of sorted durations, in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    round(sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0, 2)
}

/// An HTTP client of the bridge under test.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl Api {
    pub(crate) fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    async fn json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await?
            .json()
            .await?)
    }

    async fn working(&self) -> u64 {
        match self.json("/v1/health").await {
            Ok(v) => v["sessions"]["WORKING"].as_u64().unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Waits until `f` holds, polling every 50 ms, at most `limit`.
    pub(crate) async fn until<F, Fut>(
        &self,
        limit: Duration,
        what: &str,
        mut f: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        while !f().await {
            if Instant::now() > deadline {
                bail!("{what}: not within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Creates, links (QR scanned by the simulator) and waits for a session.
    async fn link(&self, sim: &SimHandle, hook: &str, i: usize) -> anyhow::Result<()> {
        let name = session_name(i);
        let r = self
            .http
            .post(format!("{}/v1/sessions", self.base))
            .json(&json!({"name": name, "webhook_url": format!("{hook}{name}")}))
            .send()
            .await?;
        if r.status() != 201 {
            bail!("create {name}: {} {}", r.status(), r.text().await?);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let code = loop {
            let r = self
                .http
                .get(format!("{}/v1/sessions/{name}/qr", self.base))
                .header("accept", "application/json")
                .send()
                .await?;
            if r.status() == 200 {
                let v: Value = r.json().await?;
                break v["code"].as_str().context("qr code")?.to_string();
            }
            if Instant::now() > deadline {
                bail!("{name}: no QR code within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        sim.scan(&code, &session_phone(i), "Bench").await?;
        let path = format!("/v1/sessions/{name}");
        self.until(
            Duration::from_secs(60),
            &format!("{name} WORKING"),
            || async {
                self.json(&path)
                    .await
                    .is_ok_and(|v| v["status"] == "WORKING")
            },
        )
        .await
    }

    pub(crate) async fn link_range(
        &self,
        sim: &Arc<SimHandle>,
        hook: &str,
        range: std::ops::Range<usize>,
    ) -> anyhow::Result<()> {
        let sem = Arc::new(Semaphore::new(LINK_CONCURRENCY));
        let mut tasks = Vec::new();
        for i in range {
            let (api, sim, hook, sem) = (self.clone(), sim.clone(), hook.to_string(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await?;
                api.link(&sim, &hook, i).await
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    }
}

/// A bridge child process on the given files root (and Redis, if any).
fn spawn_bridge(
    sim: &SimHandle,
    root: &std::path::Path,
    port: u16,
    redis: Option<&str>,
) -> anyhow::Result<Child> {
    spawn_bridge_with(sim, root, port, redis, me("serve")?)
}

/// [`spawn_bridge`] with a command of the caller's (the bridge under a
/// profiler).
pub(crate) fn spawn_bridge_with(
    sim: &SimHandle,
    root: &std::path::Path,
    port: u16,
    redis: Option<&str>,
    mut c: tokio::process::Command,
) -> anyhow::Result<Child> {
    // The simulator's media host has a certificate of its own, which this
    // sandbox build trusts when told.
    let ca = root.with_extension("media-ca.pem");
    std::fs::write(&ca, sim.media_ca_pem())?;
    c.env_clear()
        .env("WAPI_SANDBOX_MEDIA_CA", &ca)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH", root)
        .env("WAPI_INTERNAL_HOST", format!("127.0.0.1:{port}"))
        .env("WAPI_WHATSAPP_URL", sim.ws_url())
        .env("WAPI_WHATSAPP_VERSION_URL", sim.sw_js_url())
        .env("WAPI_QR_CONSOLE", "false")
        .env("WAPI_LOG", "error")
        // The benchmark is one client hammering a few endpoints: the
        // per-credential limit (50/s) would measure itself.
        .env("WAPI_RATE_LIMIT_RPS", "1000000")
        .env("WAPI_RATE_LIMIT_BURST", "1000000")
        .stdout(Stdio::null());
    if let Some(url) = redis {
        c.env("WAPI_REDIS_HOST", url);
    }
    Ok(c.spawn()?)
}

pub(crate) async fn started(api: &Api) -> anyhow::Result<()> {
    api.until(Duration::from_secs(120), "the bridge answering", || async {
        api.json("/v1/health").await.is_ok()
    })
    .await
}

pub async fn all(p: Params) -> anyhow::Result<()> {
    let began = Instant::now();
    let settle = if p.most() <= 50 {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    };
    let sim = Arc::new(Simulator::start("127.0.0.1:0".parse()?).await?);
    let hook = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    figure(
        "machine",
        json!({
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "params": format!("{p:?}"),
        }),
    );

    // 1. Memory of the bridge at each step.
    let port = free_port()?;
    let root = dir.path().join("bridge");
    let mut bridge = spawn_bridge(&sim, &root, port, None)?;
    let api = Api::new(port);
    started(&api).await?;
    tokio::time::sleep(settle).await;
    let bridge_pid = pid(&bridge)?;
    let rss0 = rss(bridge_pid)?;
    let mut bridge_rss = Vec::new();
    let mut linked = 0;
    for &n in &p.steps {
        let t = Instant::now();
        api.link_range(&sim, &hook.url, linked..n).await?;
        let link_secs = t.elapsed().as_secs_f64();
        linked = n;
        tokio::time::sleep(settle).await;
        let r = rss(bridge_pid)?;
        bridge_rss.push((n, r));
        figure(
            "bridge_rss",
            json!({"sessions": n, "rss_mib": round(r as f64 / MIB, 1),
                   "rss0_mib": round(rss0 as f64 / MIB, 1),
                   "linked_in_s": round(link_secs, 2)}),
        );
    }

    // 5. Idle CPU with every session connected.
    let c0 = cpu_time(bridge_pid)?;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(p.idle_secs)).await;
    let used = cpu_time(bridge_pid)? - c0;
    figure(
        "idle_cpu",
        json!({"sessions": linked, "seconds": p.idle_secs,
               "percent_of_one_core": round(used.as_secs_f64() / t.elapsed().as_secs_f64() * 100.0, 2)}),
    );

    // 3. Inbound: a burst, then latency at a fixed load, then the
    // receiver's own ceiling.
    let busy = p.busy_sessions;
    let per = (p.inbound / busy).max(1);
    let (rate, cpu) = inbound_burst(&sim, &hook, bridge_pid, 0..busy, per).await?;
    let mut fig = json!({"store": "embedded", "messages": busy * per, "sessions": busy,
                         "msg_per_s": round(rate, 0)});
    extend(&mut fig, &cpu);
    figure("inbound_throughput", fig);
    let lat = latency(&sim, &hook, busy, p.rate, p.rate_secs).await?;
    figure("inbound_latency", lat);
    let ceiling = ceiling(&hook, busy * per, busy).await?;
    figure(
        "receiver_ceiling",
        json!({"posts": busy * per, "concurrency": busy, "posts_per_s": round(ceiling, 0),
               "bridge_over_ceiling": round(rate / ceiling, 3)}),
    );

    // 4. Outbound through the API to the contacts' inboxes.
    figure("outbound", outbound(&api, &sim, busy, p.outbound).await?);

    // 6. Media: a large document out (first, so that its peak is measured
    // from the connected sessions' steady RSS), then images in.
    tokio::time::sleep(settle).await;
    figure(
        "media_send_document",
        crate::media::send_document(&api, &sim, bridge_pid, p.document_bytes).await?,
    );
    tokio::time::sleep(settle).await;
    let mut fig = crate::media::inbound(
        &sim,
        &hook,
        bridge_pid,
        busy,
        p.images_per_session,
        p.image_bytes,
    )
    .await?;
    extend(&mut fig, &json!({"connected_sessions": linked}));
    figure("media_inbound", fig);

    // 7. A group: one message to many members' inboxes.
    figure(
        "group_fan_out",
        crate::groups::group(&api, &sim, p.group_members).await?,
    );

    // 2. Restore: a clean stop, then from process start to all WORKING.
    terminate(&mut bridge).await?;
    let t = Instant::now();
    let mut bridge = spawn_bridge(&sim, &root, port, None)?;
    api.until(
        Duration::from_secs(300),
        "every session WORKING again",
        || async { api.working().await >= linked as u64 },
    )
    .await?;
    figure(
        "restore",
        json!({"sessions": linked, "seconds_to_all_working": round(t.elapsed().as_secs_f64(), 2)}),
    );
    terminate(&mut bridge).await?;

    // The same inbound burst with Redis as the store, if there is one.
    match redis_inbound(&sim, &hook, dir.path(), busy, per).await {
        Ok((rate, cpu)) => {
            let mut fig = json!({"store": "redis", "messages": busy * per, "sessions": busy,
                   "msg_per_s": round(rate, 0), "bridge_over_ceiling": round(rate / ceiling, 3)});
            extend(&mut fig, &cpu);
            figure("inbound_throughput", fig);
        }
        Err(e) => figure(
            "inbound_throughput",
            json!({"store": "redis", "skipped": e.to_string()}),
        ),
    }

    // 1b. The same steps with bare clients, and the ratio.
    let bare = bare_rss(&sim, dir.path(), &p.steps, settle).await?;
    for ((n, b), (_, (b0, bn))) in bridge_rss.iter().zip(bare.iter().enumerate()) {
        let bridge_per = (*b as f64 - rss0 as f64) / *n as f64;
        let bare_per = (*bn as f64 - *b0 as f64) / *n as f64;
        figure(
            "rss_per_session",
            json!({"sessions": n,
                   "bridge_mib": round(bridge_per / MIB, 3),
                   "bare_client_mib": round(bare_per / MIB, 3),
                   "bridge_over_bare": round(bridge_per / bare_per, 2)}),
        );
    }
    figure(
        "run",
        json!({"seconds": round(began.elapsed().as_secs_f64(), 1)}),
    );
    Ok(())
}

/// Sessions of the Redis-backed bridge are numbered from here.
const REDIS_OFFSET: usize = 100_000;

/// `per` messages to each of the `sessions`, all at once;
/// returns messages per second from the first send to the last arrival.
/// Also says where the CPU went: the bridge's cores, and this process's
/// (the contacts' encryption, the simulator, the receiver).
pub(crate) async fn inbound_burst(
    sim: &Arc<SimHandle>,
    hook: &Receiver,
    bridge_pid: u32,
    sessions: std::ops::Range<usize>,
    per: usize,
) -> anyhow::Result<(f64, Value)> {
    let before = hook.messages();
    let total = (sessions.len() * per) as u64;
    let (bridge0, own0) = (cpu_time(bridge_pid)?, cpu_time(std::process::id())?);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in sessions {
        let sim = sim.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..per {
                sim.contact_send(&contact_phone(i), &session_phone(i), &format!("m{k}"), None)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while hook.messages() - before < total {
        if Instant::now() > deadline {
            bail!(
                "inbound: {} of {total} forwarded within 600 s",
                hook.messages() - before
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let bridge = (cpu_time(bridge_pid)? - bridge0).as_secs_f64();
    let own = (cpu_time(std::process::id())? - own0).as_secs_f64();
    let cpu = json!({
        "bridge_cpu_cores": round(bridge / secs, 2),
        "bridge_cpu_us_per_msg": round(bridge * 1e6 / total as f64, 0),
        "bench_process_cpu_cores": round(own / secs, 2),
    });
    Ok((total as f64 / secs, cpu))
}

/// Messages offered at a fixed rate over `sessions`; latency from the
/// contact's send to the receiver's arrival.
async fn latency(
    sim: &Arc<SimHandle>,
    hook: &Receiver,
    sessions: usize,
    rate: usize,
    secs: u64,
) -> anyhow::Result<Value> {
    let total = rate * secs as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = Vec::with_capacity(total);
    let t = Instant::now();
    for k in 0..total {
        tick.tick().await;
        let i = k % sessions;
        let at = Instant::now();
        let id = sim
            .contact_send(&contact_phone(i), &session_phone(i), &format!("l{k}"), None)
            .await?;
        sent.push((id, at));
    }
    let offered = total as f64 / t.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lat = Vec::with_capacity(total);
    for (id, at) in &sent {
        loop {
            if let Some(arrived) = hook.arrival(id) {
                lat.push(arrived.saturating_duration_since(*at));
                break;
            }
            if Instant::now() > deadline {
                bail!("latency: message {id} not forwarded within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    lat.sort();
    Ok(json!({
        "messages": total, "offered_msg_per_s": round(offered, 0),
        "p50_ms": pct(&lat, 50.0), "p99_ms": pct(&lat, 99.0),
        "max_ms": pct(&lat, 100.0),
    }))
}

/// What the receiver takes from a plain HTTP client posting a real message
/// body, with as many posting in parallel as the bridge has busy sessions.
async fn ceiling(hook: &Receiver, posts: usize, concurrency: usize) -> anyhow::Result<f64> {
    let body = hook
        .seen
        .sample
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .context("no message body seen")?;
    let http = reqwest::Client::new();
    let per = (posts / concurrency).max(1);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (http, body) = (http.clone(), body.clone());
        let url = format!("{}ceiling{w}", hook.url);
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("ceiling: HTTP {}", r.status());
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((per * concurrency) as f64 / t.elapsed().as_secs_f64())
}

/// Sends through the API: requests per second and their latency, and how
/// soon every message reached the contacts' inboxes.
async fn outbound(
    api: &Api,
    sim: &Arc<SimHandle>,
    sessions: usize,
    total: usize,
) -> anyhow::Result<Value> {
    let per = (total / sessions).max(1);
    let inbox_before: usize = (0..sessions)
        .map(|i| sim.inbox(&contact_phone(i)).len())
        .sum();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for k in 0..per {
                let at = Instant::now();
                let r = api
                    .http
                    .post(format!(
                        "{}/v1/sessions/{}/messages",
                        api.base,
                        session_name(i)
                    ))
                    .json(&json!({"to": contact_phone(i), "text": format!("o{k}")}))
                    .send()
                    .await?;
                if r.status() != 201 {
                    bail!("send: HTTP {} {}", r.status(), r.text().await?);
                }
                lat.push(at.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await??);
    }
    let accepted = (sessions * per) as f64 / t.elapsed().as_secs_f64();
    let want = inbox_before + sessions * per;
    api.until(
        Duration::from_secs(120),
        "sent messages in the inboxes",
        || async {
            (0..sessions)
                .map(|i| sim.inbox(&contact_phone(i)).len())
                .sum::<usize>()
                >= want
        },
    )
    .await?;
    let delivered = (sessions * per) as f64 / t.elapsed().as_secs_f64();
    lat.sort();
    Ok(json!({
        "messages": sessions * per, "sessions": sessions,
        "requests_per_s": round(accepted, 0), "p50_ms": pct(&lat, 50.0),
        "p99_ms": pct(&lat, 99.0), "in_inbox_per_s": round(delivered, 0),
    }))
}

/// The inbound burst again, on a bridge whose store is a fresh Redis (with
/// the append-only file on, as a deployment that relies on it would run),
/// with sessions of its own.
async fn redis_inbound(
    sim: &Arc<SimHandle>,
    hook: &Receiver,
    dir: &std::path::Path,
    sessions: usize,
    per: usize,
) -> anyhow::Result<(f64, Value)> {
    let redis_port = free_port()?;
    let data = dir.join("redis");
    std::fs::create_dir_all(&data)?;
    let mut redis = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--dir"])
        .arg(&data)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("redis-server")?;
    let port = free_port()?;
    let root = dir.join("bridge-redis");
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let mut bridge = spawn_bridge(sim, &root, port, Some(&redis_url))?;
    let api = Api::new(port);
    started(&api).await?;
    let range = REDIS_OFFSET..REDIS_OFFSET + sessions;
    api.link_range(sim, &hook.url, range.clone()).await?;
    let rate = inbound_burst(sim, hook, pid(&bridge)?, range, per).await;
    terminate(&mut bridge).await?;
    let _ = redis.kill().await;
    rate
}

/// Bare clients at each step: (RSS before any, RSS at the step).
async fn bare_rss(
    sim: &SimHandle,
    dir: &std::path::Path,
    steps: &[usize],
    settle: Duration,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let bare_dir = dir.join("bare");
    std::fs::create_dir_all(&bare_dir)?;
    let mut c = me("bare")?;
    let mut child = c
        .env("BENCH_WS", sim.ws_url())
        .env("BENCH_ADMIN", sim.admin_url())
        .env("BENCH_DIR", &bare_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let bare_pid = pid(&child)?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    tokio::time::sleep(settle).await;
    let rss0 = rss(bare_pid)?;
    let mut out = Vec::new();
    let mut linked = 0;
    for &n in steps {
        stdin
            .write_all(format!("link {}\n", n - linked).as_bytes())
            .await?;
        stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(600), lines.next_line())
            .await
            .context("bare clients linking")??
            .context("the bare child exited")?;
        if line.trim() != format!("linked {n}") {
            bail!("bare: {line}");
        }
        linked = n;
        tokio::time::sleep(settle).await;
        out.push((rss0, rss(bare_pid)?));
    }
    drop(stdin);
    let _ = child.kill().await;
    Ok(out)
}
