//! Test harness: a simulator per test and real whatsapp-rust clients.

#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wa_sim::{SimHandle, Simulator};
use whatsapp_rust::TokioRuntime;
use whatsapp_rust::bot::Provided;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust_ureq_http_client::UreqHttpClient;

/// Tests run in parallel threads of one binary. The 200-client test takes
/// both cores for seconds, which would push the tight deadlines of the
/// others over: it runs alone (write lock), the others together (read lock).
static LOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub async fn light() -> tokio::sync::RwLockReadGuard<'static, ()> {
    LOAD.read().await
}

pub async fn heavy() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    LOAD.write().await
}

pub async fn sim() -> SimHandle {
    Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("start simulator")
}

/// Runs a future with a deadline; `Err` names the timeout.
pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("timed out after {limit:?}"))
}

/// Polls a condition every 20 ms until it holds or the deadline passes.
pub async fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    within(limit, async {
        loop {
            if let Some(v) = f() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// An admin API call (`path` under `/admin`); returns the status and the
/// JSON answer (`null` when there is none).
pub async fn admin(
    sim: &SimHandle,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", sim.admin_url());
    let req = match method {
        "GET" => http.get(url),
        _ => http.post(url).json(&body),
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// A contact sends a message through the admin API; returns its id.
pub async fn contact_sends(sim: &SimHandle, contact: &str, body: serde_json::Value) -> String {
    let (status, json) = admin(sim, "POST", &format!("/contacts/{contact}/messages"), body).await;
    assert_eq!(status, 200, "{json}");
    json["id"].as_str().expect("an id").to_string()
}

/// A contact's inbox as the admin API gives it.
pub async fn inbox_json(sim: &SimHandle, contact: &str) -> Vec<serde_json::Value> {
    let (status, json) = admin(
        sim,
        "GET",
        &format!("/contacts/{contact}/messages"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{json}");
    json["messages"].as_array().cloned().unwrap_or_default()
}

/// `GET /admin{path}` and the array under `key` in the answer.
pub async fn admin_list(sim: &SimHandle, path: &str, key: &str) -> Vec<serde_json::Value> {
    let (status, json) = admin(sim, "GET", path, serde_json::Value::Null).await;
    assert_eq!(status, 200, "GET {path}: {json}");
    json[key]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("GET {path}: no {key:?} array in {json}"))
}

/// The user JID of a phone number.
pub fn jid(phone: &str) -> Jid {
    format!("{phone}@s.whatsapp.net").parse().unwrap()
}

type FullBuilder = BotBuilder<Provided, Provided, Provided, Provided>;

/// A real client with its event stream.
pub struct Client {
    pub client: Arc<whatsapp_rust::Client>,
    handle: Option<BotHandle>,
    events: whatsapp_rust::async_channel::Receiver<Arc<Event>>,
}

impl Client {
    pub async fn start(sim: &SimHandle, db: &Path) -> Self {
        Self::start_with(sim, db, |b| b).await
    }

    pub async fn start_with(
        sim: &SimHandle,
        db: &Path,
        f: impl FnOnce(FullBuilder) -> FullBuilder,
    ) -> Self {
        let store = SqliteStore::new(db.to_str().unwrap())
            .await
            .expect("sqlite");
        let (handler, events) = ChannelEventHandler::new();
        let builder = Bot::builder()
            .with_backend(store)
            .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(sim.ws_url()))
            .with_runtime(TokioRuntime)
            .with_version((2, 3000, 0))
            .skip_history_sync();
        let bot = f(builder).build().await.expect("build bot");
        let client = bot.client();
        // Subscribed before the bot runs, so no event is missed.
        client.subscribe_handler(handler).detach();
        let handle = bot.spawn();
        Self {
            client,
            handle: Some(handle),
            events,
        }
    }

    /// The next event matching `pred`; events before it are dropped.
    pub async fn wait(&mut self, mut pred: impl FnMut(&Event) -> bool) -> Arc<Event> {
        loop {
            let e = self.events.recv().await.expect("event stream closed");
            if pred(&e) {
                return e;
            }
        }
    }

    /// Waits (at most 2 s) for the next event matching `pred` and returns
    /// what `pred` made of it; events before it are dropped. Panics naming
    /// `what` on timeout.
    pub async fn expect<T>(&mut self, what: &str, mut pred: impl FnMut(&Event) -> Option<T>) -> T {
        within(Duration::from_secs(2), async {
            loop {
                let e = self.events.recv().await.expect("event stream closed");
                if let Some(v) = pred(&e) {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Waits (at most 2 s) for the message `id`; events before it are
    /// dropped.
    pub async fn received(&mut self, id: &str) -> InboundMessage {
        let e = within(
            Duration::from_secs(2),
            self.wait(|e| e.messages().any(|m| m.info.id == id)),
        )
        .await
        .unwrap_or_else(|e| panic!("message {id}: {e}"));
        e.messages().find(|m| m.info.id == id).unwrap().clone()
    }

    /// Waits (at most 5 s) for the next QR code.
    pub async fn next_qr(&mut self) -> String {
        let e = within(
            Duration::from_secs(5),
            self.wait(|e| matches!(e, Event::PairingQrCode(_))),
        )
        .await
        .expect("a QR code");
        match &*e {
            Event::PairingQrCode(q) => q.code.clone(),
            _ => unreachable!(),
        }
    }

    /// Starts a client that links by pair code for `phone`; returns it with
    /// the code it shows (within 5 s).
    pub async fn start_pair_code(sim: &SimHandle, db: &Path, phone: &str) -> (Self, String) {
        let options = whatsapp_rust::pair_code::PairCodeOptions {
            phone_number: phone.into(),
            ..Default::default()
        };
        let mut c = Self::start_with(sim, db, |b| b.with_pair_code(options)).await;
        let e = within(
            Duration::from_secs(5),
            c.wait(|e| matches!(e, Event::PairingCode(_))),
        )
        .await
        .expect("a pair code");
        let Event::PairingCode(p) = &*e else {
            unreachable!()
        };
        let code = p.code.clone();
        (c, code)
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = within(Duration::from_secs(5), h.shutdown()).await;
        }
    }
}

/// Starts a client, links it to `phone` and waits for `Connected`.
pub async fn link_new(sim: &SimHandle, db: &Path, phone: &str, name: &str) -> Client {
    link_new_with(sim, db, phone, name, |b| b).await
}

/// [`link_new`] with a client that can upload and download media.
pub async fn link_media(sim: &SimHandle, db: &Path, phone: &str, name: &str) -> Client {
    let http = media_http_client(sim);
    link_new_with(sim, db, phone, name, |b| b.with_http_client(http)).await
}

/// whatsapp-rust's own HTTP client over a ureq agent whose only trusted
/// root is the simulator's media certificate: media works, certificate
/// verification stays on.
pub fn media_http_client(sim: &SimHandle) -> UreqHttpClient {
    let pem = sim.media_ca_pem();
    let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).expect("media certificate");
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
    UreqHttpClient::with_agent(agent)
}

async fn link_new_with(
    sim: &SimHandle,
    db: &Path,
    phone: &str,
    name: &str,
    f: impl FnOnce(FullBuilder) -> FullBuilder,
) -> Client {
    let mut c = Client::start_with(sim, db, f).await;
    let qr = c.next_qr().await;
    sim.scan(&qr, phone, name).await.expect("scan");
    within(
        Duration::from_secs(2),
        c.wait(|e| matches!(e, Event::Connected(_))),
    )
    .await
    .expect("Connected within 2 s of the scan");
    c
}
