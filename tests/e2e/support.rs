//! Test support: the simulator, a private redis-server, a webhook receiver,
//! the bridge itself, and bounded waits.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use wa_sim::{SimHandle, Simulator};
use wapi::App;
use wapi::config::Config;

pub const DEADLINE: Duration = Duration::from_secs(5);

pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}"))
}

/// Polls `f` every 20 ms until it returns `Some`, failing after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn sim() -> SimHandle {
    Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("start wa-sim")
}

/// A free port, never the same one twice in this test run (two Redis
/// servers racing for one port would share data).
fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A redis-server of the test's own, on a free port, killed on drop.
pub struct Redis {
    child: Child,
    pub url: String,
    pub port: u16,
}

impl Redis {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Kills the server (its data is gone: it keeps nothing on disk).
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }

    pub async fn start_on(port: u16) -> Self {
        Self::spawn(port, &["--appendonly", "no"]).await
    }

    /// A server that keeps its data in `dir` (append-only file, fsync on
    /// every write), so that a restart on the same port and dir loses nothing.
    pub async fn start_persistent(dir: &Path) -> Self {
        Self::start_persistent_on(free_port(), dir).await
    }

    pub async fn start_persistent_on(port: u16, dir: &Path) -> Self {
        let dir = dir.display().to_string();
        Self::spawn(
            port,
            &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                &dir,
            ],
        )
        .await
    }

    async fn spawn(port: u16, extra: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): install it, e.g. `apt-get install redis-server`"
                )
            });
        let url = format!("redis://127.0.0.1:{port}");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        eventually(
            DEADLINE,
            "redis-server accepting connections",
            || async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
        )
        .await;
        Self { child, url, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3-compatible server of the test's own (s3s-fs: objects as files in
/// a temporary folder), with one bucket and a key pair, on a free port;
/// stopped on drop.
pub struct S3 {
    pub endpoint: String,
    pub bucket: String,
    pub dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl S3 {
    pub const KEY_ID: &str = "test-key-id";
    pub const SECRET: &str = "test-secret-access-key";

    pub async fn start() -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let dir = tempfile::tempdir().unwrap();
        let bucket = "wapi-media".to_string();
        std::fs::create_dir(dir.path().join(&bucket)).unwrap();
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs root");
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(
            Self::KEY_ID,
            Self::SECRET,
        ));
        let service = b.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(conn);
            }
        });
        Self {
            endpoint,
            bucket,
            dir,
            task,
        }
    }

    pub fn settings(&self) -> wapi::media::S3Settings {
        wapi::media::S3Settings {
            bucket: self.bucket.clone(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some(Self::KEY_ID.into()),
            secret_access_key: Some(wapi::config::Secret(Self::SECRET.into())),
            prefix: Some("node-a".into()),
        }
    }

    /// The names of the objects in the bucket (under the prefix).
    pub fn objects(&self) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(self.dir.path().join(&self.bucket).join("node-a"))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One delivery as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub path: String,
    pub body: Value,
    pub raw: Vec<u8>,
    pub headers: axum::http::HeaderMap,
}

/// A webhook receiver that records every POST it accepts. It can be told
/// to answer with given statuses first, or to be down (503) for a while.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Delivery>>>,
    /// Status codes to answer with, in order, before answering 200.
    pub script: Arc<Mutex<Vec<u16>>>,
    pub down: Arc<std::sync::atomic::AtomicBool>,
    /// Whether it answers the Cloud API's verification GET by echoing
    /// `hub.challenge` (as a receiver whose verify token matches does).
    pub echo: Arc<std::sync::atomic::AtomicBool>,
    /// The query strings of the verification GETs it was sent.
    pub verifications: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

#[derive(Clone)]
struct RecvState {
    seen: Arc<Mutex<Vec<Delivery>>>,
    script: Arc<Mutex<Vec<u16>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
    echo: Arc<std::sync::atomic::AtomicBool>,
    verifications: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = RecvState {
            seen: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(Mutex::new(Vec::new())),
            down: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            echo: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            verifications: Arc::new(Mutex::new(Vec::new())),
        };
        let app = axum::Router::new()
            .route("/{*path}", post(receive).get(verify))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hook/"),
            seen: state.seen,
            script: state.script,
            down: state.down,
            echo: state.echo,
            verifications: state.verifications,
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }

    /// Bodies of the events of one kind for one session path.
    pub fn of(&self, path_suffix: &str, event: &str) -> Vec<Value> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.path.ends_with(path_suffix) && d.body["event"] == event)
            .map(|d| d.body)
            .collect()
    }
}

/// The Cloud API's verification handshake: the challenge back, or (told
/// not to echo) a 403 as for a wrong verify token.
async fn verify(
    State(st): State<RecvState>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    st.verifications.lock().unwrap().push(q.clone());
    let echo = st.echo.load(std::sync::atomic::Ordering::SeqCst);
    match (q.get("hub.mode").map(String::as_str), echo) {
        (Some("subscribe"), true) => (
            StatusCode::OK,
            q.get("hub.challenge").cloned().unwrap_or_default(),
        ),
        _ => (StatusCode::FORBIDDEN, "verify token mismatch".into()),
    }
}

async fn receive(
    State(st): State<RecvState>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    raw: axum::body::Bytes,
) -> StatusCode {
    if st.down.load(std::sync::atomic::Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let code = {
        let mut s = st.script.lock().unwrap();
        if s.is_empty() { 200 } else { s.remove(0) }
    };
    if code == 200 {
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        st.seen.lock().unwrap().push(Delivery {
            path,
            body,
            raw: raw.to_vec(),
            headers,
        });
    }
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

/// Which store the bridge uses.
#[derive(Clone)]
pub enum StoreKind {
    Embedded,
    Redis(String),
}

pub fn config(sim: &SimHandle, root: &Path, store: &StoreKind) -> Config {
    let mut cfg = Config::from_lookup(|_| None).expect("default config");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.files_root = root.to_path_buf();
    cfg.whatsapp_url = sim.ws_url();
    cfg.whatsapp_version_url = sim.sw_js_url();
    cfg.qr_console = false;
    cfg.checkout_every = Duration::from_secs(1);
    cfg.webhook.max_backoff = Duration::from_millis(500);
    cfg.webhook.secret = Some("test-secret".into());
    // Media through the simulator's HTTPS host (trusted by this sandbox
    // build only), and URLs the tests serve on loopback.
    cfg.media.sandbox_media_ca = Some(sim.media_ca_pem());
    cfg.media.allow_private_urls = true;
    cfg.redis_url = match store {
        StoreKind::Embedded => None,
        StoreKind::Redis(url) => Some(url.clone()),
    };
    cfg
}

/// The bridge under test (in this process), with an HTTP client pointed at
/// it.
pub struct Bridge {
    pub app: App,
    pub api: Api,
    pub root: PathBuf,
}

impl std::ops::Deref for Bridge {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Bridge {
    pub async fn start(cfg: Config) -> Self {
        // Logs show only when a test fails (written through the test harness).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("WAPI_LOG")
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_test_writer()
            .try_init();
        let root = cfg.files_root.clone();
        let app = App::start(cfg).await.expect("start the bridge");
        let api = Api::new(&format!("http://{}", app.addr()));
        Self { app, api, root }
    }

    pub async fn stop(self) {
        within(Duration::from_secs(15), self.app.shutdown()).await;
    }
}

/// An HTTP client of a bridge's API (in this process or a child).
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .patch(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// Waits until the session reports `status`.
    pub async fn wait_status(&self, session: &str, status: &str) -> Value {
        let path = format!("/get-session-info/{session}/");
        eventually(DEADLINE, &format!("{session} {status}"), || {
            let path = path.clone();
            async move {
                let v = self.json(&path).await;
                (v["status"] == status).then_some(v)
            }
        })
        .await
    }

    /// Registers a session, decodes its QR PNG, scans it with the phone of
    /// `phone` and waits for WORKING.
    pub async fn link(&self, sim: &SimHandle, session: &str, webhook: &str, phone: &str) {
        self.link_with(
            sim,
            serde_json::json!({"session_id": session, "webhook_url": webhook}),
            phone,
        )
        .await
    }

    /// `link` with a register body of the caller's (formats, secrets...).
    pub async fn link_with(&self, sim: &SimHandle, register: Value, phone: &str) {
        let session = register["session_id"].as_str().unwrap().to_string();
        let r = self.post("/register-session/", register).await;
        assert_eq!(r.status(), 200, "register {session}");
        let png = eventually(DEADLINE, "a QR image", || async {
            let r = self.get(&format!("/get-qr-code/{session}/")).await;
            if r.status() == 200 {
                Some(r.bytes().await.unwrap().to_vec())
            } else {
                None
            }
        })
        .await;
        let qr = decode_qr(&png);
        sim.scan(&qr, phone, "Acme").await.expect("scan");
        self.wait_status(&session, "WORKING").await;
    }

    /// Waits until a session's outbox is empty.
    pub async fn drained(&self, session: &str) {
        let path = format!("/v1/sessions/{session}/webhooks");
        eventually(DEADLINE, "an empty outbox", || {
            let path = path.clone();
            async move {
                let s = self.json(&path).await;
                (s["pending"] == 0).then_some(())
            }
        })
        .await;
    }
}

/// With the admin key `admin`: creates the (unstarted) sessions `names`
/// and returns a session key for the first.
pub async fn sessions_and_key(bridge: &Bridge, admin: &str, names: &[&str]) -> String {
    for name in names {
        let r = bridge
            .http
            .post(format!("{}/v1/sessions", bridge.base))
            .header("x-api-key", admin)
            .json(&serde_json::json!({"name": name, "start": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create {name}");
    }
    let key: Value = bridge
        .http
        .post(format!("{}/v1/sessions/{}/keys", bridge.base, names[0]))
        .header("x-api-key", admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    key["key"].as_str().unwrap().to_string()
}

/// Reads the QR string back out of a PNG, as a phone's camera would.
pub fn decode_qr(png: &[u8]) -> String {
    let img = image::load_from_memory(png).expect("a PNG").to_luma8();
    let (w, h) = img.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
            img.get_pixel(x as u32, y as u32)[0]
        });
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("a readable QR code").1
}

/// A free port for a child bridge to listen on.
pub fn port() -> u16 {
    free_port()
}

/// The `wapi` binary as a child process (killed on drop).
pub struct ChildBridge {
    pub child: Child,
    pub api: Api,
}

impl std::ops::Deref for ChildBridge {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl ChildBridge {
    /// A `wapi` command with a clean environment (no .env of the developer).
    pub fn command() -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wapi"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WAPI_QR_CONSOLE", "false")
            .stdout(Stdio::null());
        c
    }

    /// Starts the binary on `port` with the given settings and waits until
    /// it answers.
    pub async fn start(port: u16, env: &[(&str, String)]) -> Self {
        let mut c = Self::command();
        c.env("WAPI_INTERNAL_HOST", format!("127.0.0.1:{port}"))
            .stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().expect("spawn wapi");
        let api = Api::new(&format!("http://127.0.0.1:{port}"));
        eventually(Duration::from_secs(10), "the bridge answering", || async {
            let r = api.http.get(format!("{}/v1/health", api.base)).send().await;
            r.ok().filter(|r| r.status() == 200).map(|_| ())
        })
        .await;
        Self { child, api }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildBridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The message of an error body: wapi's `{"error"}` or the `/v1`
/// envelope's `errors[0].details`.
pub fn error_text(v: &Value) -> Option<&str> {
    v["error"]
        .as_str()
        .or_else(|| v["errors"][0]["details"].as_str())
}

/// Prometheus text: every sample as (name with labels, value).
pub fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("NAME VALUE");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

pub fn metric(samples: &[(String, f64)], name: &str) -> f64 {
    samples
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// Acts on a device through the simulator's admin API, as its phone or
/// WhatsApp would: `disconnect`, `logout`, `stream-error`, `stall`.
pub async fn device_admin(sim: &SimHandle, phone: &str, action: &str) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/devices/{phone}%3A1%40s.whatsapp.net/{action}",
            sim.admin_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{action} {phone}");
}

// --- the simulator's admin API and the receiver's events ---

pub async fn admin_post(sim: &wa_sim::SimHandle, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", sim.admin_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A contact sends a message through the simulator; returns its id.
pub async fn contact_sends(sim: &wa_sim::SimHandle, from: &str, body: Value) -> String {
    let r = admin_post(sim, &format!("/contacts/{from}/messages"), body).await;
    assert_eq!(r.status(), 200, "contact send");
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn inbox(sim: &wa_sim::SimHandle, phone: &str) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/contacts/{phone}/messages", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["messages"].as_array().cloned().unwrap_or_default()
}

/// The message event of a message id, once the receiver has it.
pub async fn event_of(rx: &Receiver, id: &str, limit: Duration) -> Value {
    eventually(limit, &format!("the event of {id}"), || async {
        rx.deliveries()
            .into_iter()
            .map(|d| d.body)
            .find(|b| b["event"] == "message" && b["payload"]["id"] == id)
    })
    .await
}
