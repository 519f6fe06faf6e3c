//! Webhook events: written to the session's outbox in the store, then
//! posted to the session's webhook URL by one delivery worker per session,
//! in order, retried with backoff until the receiver takes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::store::{OutboxEvent, Store, StoreError};

mod cloud;
mod format;
mod subscription;

pub use self::cloud::number as number_of;
pub use self::subscription::{EventKind, Format, MediaInline, Subscription, SubscriptionChange};

/// How deliveries are made and retried.
#[derive(Clone, Debug)]
pub struct Settings {
    /// wapi's `WAPI_GETTING_MESSAGES_WEBHOOK`: a session without its own URL
    /// posts to this plus its name.
    pub default_base: Option<String>,
    /// Time allowed for one POST (`WAPI_WEBHOOK_TIMEOUT_SECS`).
    pub timeout: Duration,
    /// Attempts before an event goes to the dead letters (`WAPI_WEBHOOK_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Longest wait between two attempts (`WAPI_WEBHOOK_MAX_BACKOFF_SECS`).
    pub max_backoff: Duration,
    /// Signs every POST (`WAPI_WEBHOOK_SECRET`).
    pub secret: Option<String>,
    /// `WAPI_ENV=dev`: do not verify receivers' certificates.
    pub insecure_receivers: bool,
}

/// The event id of a message: stable for (session, chat, sender, message
/// id), because a stanza id is unique only within a chat and sender, and a
/// redelivered message must map to the same event.
pub fn message_event_id(session: &str, chat: &str, sender: &str, id: &str) -> String {
    let mut h = Sha256::new();
    for part in [session, chat, sender, id] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format!("evt_{}", &hex::encode(h.finalize())[..32])
}

/// A new random event id (for events that are not messages).
pub fn new_event_id() -> String {
    format!("evt_{}", hex::encode(rand::random::<[u8; 16]>()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

/// A handle that does not keep the webhooks (and so the store) alive: for
/// holders that may outlive the bridge, like a client's durability hook
/// still winding down after shutdown.
#[derive(Clone)]
pub struct WeakWebhooks(std::sync::Weak<Inner>);

impl WeakWebhooks {
    pub fn upgrade(&self) -> Option<Webhooks> {
        self.0.upgrade().map(|inner| Webhooks { inner })
    }
}

struct Inner {
    store: Arc<dyn Store>,
    /// Downloads the files of media events before they are posted.
    media: Arc<crate::media::Media>,
    metrics: Arc<crate::telemetry::Metrics>,
    http: reqwest::Client,
    settings: Settings,
    workers: Mutex<HashMap<String, Worker>>,
    /// Set by `shutdown`: no new events, no new workers.
    closed: std::sync::atomic::AtomicBool,
    /// Each session's webhook settings as last seen, so that delivery does
    /// not depend on reading the registry back (Redis may have lost it).
    subscriptions: Mutex<HashMap<String, Subscription>>,
    /// The live view of every event (`GET /v1/events`): taken away at
    /// shutdown, which ends every stream.
    live: Mutex<Option<tokio::sync::broadcast::Sender<Arc<Value>>>>,
}

/// Events a live reader may fall behind by before it is dropped.
const LIVE_BUFFER: usize = 1024;

struct Worker {
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Settings,
        metrics: Arc<crate::telemetry::Metrics>,
        media: Arc<crate::media::Media>,
    ) -> Self {
        // One client for every session: keep-alive connections per receiver.
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            // WAPI_ENV=dev (wapi's meaning): receivers with self-signed
            // certificates are accepted.
            .danger_accept_invalid_certs(settings.insecure_receivers)
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                store,
                media,
                metrics,
                http,
                settings,
                workers: Mutex::new(HashMap::new()),
                closed: std::sync::atomic::AtomicBool::new(false),
                subscriptions: Mutex::new(HashMap::new()),
                live: Mutex::new(Some(tokio::sync::broadcast::channel(LIVE_BUFFER).0)),
            }),
        }
    }

    pub fn metrics(&self) -> &Arc<crate::telemetry::Metrics> {
        &self.inner.metrics
    }

    pub fn media(&self) -> &Arc<crate::media::Media> {
        &self.inner.media
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// A live view of every event from now on, in the native envelope; not
    /// durable (a reader that falls behind by more than 1,024 events gets
    /// `Lagged`). `None` once the bridge is shutting down.
    pub fn live(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<Value>>> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|tx| tx.subscribe())
    }

    /// Ends every live view (their streams finish, so the HTTP server's
    /// graceful shutdown is not held up by them).
    pub fn close_live(&self) {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// A copy of an event for the live view, only when someone is watching
    /// (so that events cost nothing more when nobody is).
    fn watched(&self, body: &Value) -> Option<Arc<Value>> {
        let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        live.as_ref()
            .filter(|tx| tx.receiver_count() > 0)
            .map(|_| Arc::new(body.clone()))
    }

    fn publish(&self, copy: Option<Arc<Value>>) {
        let Some(copy) = copy else { return };
        if let Some(tx) = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send(copy);
        }
    }

    /// Shutting down: no new events are taken.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn downgrade(&self) -> WeakWebhooks {
        WeakWebhooks(Arc::downgrade(&self.inner))
    }

    /// The session's own URL, else wapi's default base plus its name.
    fn resolve_url(&self, session: &str, own: Option<&str>) -> Option<String> {
        own.map(str::to_string).or_else(|| {
            self.inner
                .settings
                .default_base
                .as_ref()
                .map(|base| format!("{base}{session}"))
        })
    }

    /// The Cloud API's verification handshake, as Meta makes it when a
    /// callback URL or verify token is set: `GET <url>?hub.mode=subscribe
    /// &hub.verify_token=<token>&hub.challenge=<random>`, which the receiver
    /// must answer with 200 and the challenge as the body. `Err` says why
    /// the URL is refused.
    pub async fn verify(&self, session: &str, sub: &Subscription) -> Result<(), String> {
        let (Format::Cloud, Some(token)) = (sub.format, sub.verify_token.as_deref()) else {
            return Ok(());
        };
        let Some(url) = self.resolve_url(session, sub.url.as_deref()) else {
            return Ok(());
        };
        let challenge = rand::random::<u64>().to_string();
        let res = self
            .inner
            .http
            .get(&url)
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token),
                ("hub.challenge", challenge.as_str()),
            ])
            .timeout(self.inner.settings.timeout)
            .send()
            .await
            .map_err(|e| format!("the verification request to {url} failed: {e}"))?;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "{url} answered the verification request (hub.mode=subscribe) with {status}, not 200 and the hub.challenge"
            ));
        }
        if body.trim() != challenge {
            let shown: String = body.chars().take(64).collect();
            return Err(format!(
                "{url} did not echo hub.challenge {challenge} (it answered {shown:?}): check the verify token"
            ));
        }
        Ok(())
    }

    /// Commits an event to the session's outbox and wakes its worker.
    /// `id` (for messages) makes a repeated event a no-op. An event the
    /// session does not subscribe to, or for a session with no webhook URL
    /// at all, is not kept. `account` is the linked number the event came
    /// to (the Cloud format names it).
    // Each argument is a different part of the event; a struct for them
    // would only move the list.
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue(
        &self,
        session: &str,
        sub: &Subscription,
        account: Option<&str>,
        event: EventKind,
        id: Option<String>,
        payload: Value,
        media: Option<crate::media::MediaJob>,
    ) -> Result<(), StoreError> {
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the bridge is shutting down".into(),
            ));
        }
        self.set_subscription(session, sub);
        let id = id.unwrap_or_else(new_event_id);
        let body = json!({
            "id": id,
            "event": event.as_str(),
            "session": session,
            "account": account,
            "timestamp": now_ms(),
            "payload": payload,
        });
        // The live view has every event, whatever the webhook takes.
        if self.resolve_url(session, sub.url.as_deref()).is_none() {
            debug!(session, ?event, "no webhook URL: event not queued");
            self.publish(self.watched(&body));
            return Ok(());
        }
        if !sub.wants(event) {
            debug!(session, ?event, "not subscribed: event not queued");
            self.publish(self.watched(&body));
            return Ok(());
        }
        let copy = self.watched(&body);
        let ev = OutboxEvent {
            id: id.clone(),
            session: session.to_string(),
            seq: 0,
            body,
            attempts: 0,
            next_attempt_at_ms: 0,
            last_error: None,
            last_status: None,
            media: media.map(Box::new),
        };
        if self.inner.store.outbox_push(ev).await? {
            self.wake(session);
            self.publish(copy);
        } else {
            debug!(session, id, "duplicate event skipped");
        }
        Ok(())
    }

    /// Starts workers for every session with pending events (after a restart).
    pub async fn resume(&self) {
        match self.inner.store.outbox_sessions().await {
            Ok(sessions) => sessions.iter().for_each(|s| self.wake(s)),
            Err(e) => warn!("cannot list pending webhook events: {e}"),
        }
    }

    /// Records a session's webhook settings and wakes its worker, which may
    /// have been waiting for a URL.
    pub fn set_subscription(&self, session: &str, sub: &Subscription) {
        let changed = {
            let mut subs = self
                .inner
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            subs.insert(session.to_string(), sub.clone()).as_ref() != Some(sub)
        };
        if changed && let Some(w) = self.workers().get(session) {
            w.notify.notify_one();
        }
    }

    /// Where and how to deliver a session's events now.
    async fn target(&self, session: &str) -> Option<(String, Subscription)> {
        let known = self
            .inner
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session)
            .cloned();
        let sub = match known {
            Some(sub) => sub,
            None => match self.inner.store.get_session(session).await {
                Ok(Some(rec)) => rec.webhook,
                _ => Subscription::default(),
            },
        };
        let url = self.resolve_url(session, sub.url.as_deref())?;
        Some((url, sub))
    }

    /// Stops a session's worker (the session is gone).
    pub fn forget(&self, session: &str) {
        let worker = self.workers().remove(session);
        if let Some(w) = worker {
            w.task.abort();
        }
    }

    /// Stops every worker and waits for them. Pending events stay in the
    /// store, with their attempt counts, for the next start.
    pub async fn shutdown(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let workers: Vec<Worker> = self.workers().drain().map(|(_, w)| w).collect();
        for w in workers {
            w.task.abort();
            let _ = w.task.await;
        }
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.inner.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes (or starts) a session's delivery worker.
    pub fn kick(&self, session: &str) {
        self.wake(session);
    }

    fn wake(&self, session: &str) {
        let mut workers = self.workers();
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Some(w) = workers.get(session) {
            w.notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        let task = tokio::spawn(deliver_loop(
            self.clone(),
            session.to_string(),
            notify.clone(),
        ));
        workers.insert(session.to_string(), Worker { notify, task });
    }

    fn alive(&self, session: &str, notify: &Arc<Notify>) -> bool {
        self.workers()
            .get(session)
            .is_some_and(|w| Arc::ptr_eq(&w.notify, notify))
    }
}

/// Delivers a session's events one at a time, oldest first: an event is not
/// posted before the earlier ones are delivered or dead.
async fn deliver_loop(hooks: Webhooks, session: String, notify: Arc<Notify>) {
    let store = hooks.inner.store.clone();
    let settings = hooks.inner.settings.clone();
    // Reported once per outage, not once per retry.
    let mut store_down = false;
    while hooks.alive(&session, &notify) {
        let woken = notify.notified();
        let pending = match store.outbox_pending(&session, 32).await {
            Ok(p) => {
                store_down = false;
                p
            }
            Err(e) => {
                warn!(session, "cannot read the outbox: {e}");
                if !std::mem::replace(&mut store_down, true) {
                    crate::telemetry::report(
                        Some(&session),
                        "store unreachable: cannot read the outbox",
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if pending.is_empty() {
            woken.await;
            continue;
        }
        let Some((url, sub)) = hooks.target(&session).await else {
            // No URL any more: wait for a change rather than spin.
            woken.await;
            continue;
        };
        for mut ev in pending {
            let wait = ev.next_attempt_at_ms.saturating_sub(now_ms());
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            if ev.media.is_some() {
                // The file first: the event is posted once it is stored
                // (or has finally failed), and the ones after it wait.
                let resolution = hooks.inner.media.resolve(&session, &mut ev).await;
                if let Err(e) = store.outbox_update(&ev).await {
                    warn!(session, "cannot record the download of {}: {e}", ev.id);
                }
                if let crate::media::Resolution::Later(after) = resolution {
                    tokio::time::sleep(after).await;
                    break;
                }
            }
            let outcome = post(
                &hooks.inner.http,
                &hooks.inner.media,
                &settings,
                &url,
                &sub,
                &ev,
            )
            .await;
            match outcome {
                Outcome::Delivered => {
                    let m = &hooks.inner.metrics;
                    m.deliveries.with_label_values(&["delivered"]).inc();
                    if let Some(at) = ev.body["timestamp"].as_u64() {
                        m.delivery_latency
                            .observe(now_ms().saturating_sub(at) as f64 / 1000.0);
                    }
                    if let Err(e) = store.outbox_remove(&session, &ev.id).await {
                        warn!(session, "cannot mark {} delivered: {e}", ev.id);
                    }
                    continue;
                }
                Outcome::Retry {
                    status,
                    error,
                    after,
                } => {
                    hooks
                        .inner
                        .metrics
                        .deliveries
                        .with_label_values(&["retried"])
                        .inc();
                    ev.attempts += 1;
                    ev.last_status = status;
                    ev.last_error = Some(error);
                    if ev.attempts >= settings.max_attempts {
                        kill(&*store, &session, &ev).await;
                        continue;
                    }
                    let backoff =
                        after.unwrap_or_else(|| full_jitter(ev.attempts, settings.max_backoff));
                    ev.next_attempt_at_ms = now_ms() + backoff.as_millis() as u64;
                    warn!(
                        session,
                        id = ev.id,
                        attempts = ev.attempts,
                        ?backoff,
                        "webhook delivery failed: {}",
                        ev.last_error.as_deref().unwrap_or_default()
                    );
                    if let Err(e) = store.outbox_update(&ev).await {
                        warn!(session, "cannot record the failed attempt: {e}");
                    }
                    // Keep order: nothing after a failed event goes first.
                    break;
                }
                Outcome::Dead { status, error } => {
                    hooks
                        .inner
                        .metrics
                        .deliveries
                        .with_label_values(&["dead"])
                        .inc();
                    ev.attempts += 1;
                    ev.last_status = Some(status);
                    ev.last_error = Some(error);
                    kill(&*store, &session, &ev).await;
                }
            }
        }
    }
}

async fn kill(store: &dyn Store, session: &str, ev: &OutboxEvent) {
    crate::telemetry::report(
        Some(session),
        &format!(
            "webhook event {} moved to the dead letters after {} attempt(s) (status {:?})",
            ev.id, ev.attempts, ev.last_status
        ),
    );
    warn!(
        session,
        id = ev.id,
        attempts = ev.attempts,
        status = ev.last_status,
        "webhook event moved to the dead letters: {}",
        ev.last_error.as_deref().unwrap_or_default()
    );
    if let Err(e) = store.outbox_kill(ev).await {
        warn!(session, "cannot move {} to the dead letters: {e}", ev.id);
    }
}

/// Exponential backoff with full jitter: a random wait up to
/// `min(cap, 500 ms * 2^attempts)`.
fn full_jitter(attempts: u32, cap: Duration) -> Duration {
    let ceiling = Duration::from_millis(500u64.saturating_mul(1u64 << attempts.min(20))).min(cap);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(if ms == 0 {
        0
    } else {
        rand::random_range(0..=ms)
    })
}

enum Outcome {
    Delivered,
    Retry {
        status: Option<u16>,
        error: String,
        after: Option<Duration>,
    },
    Dead {
        status: u16,
        error: String,
    },
}

/// HMAC-SHA256 of the raw body, hex.
pub fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    // HMAC accepts a key of any length, so this cannot fail.
    let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The event with its stored file inline (`payload.media.base64`), for
/// sessions that ask for it; `None` when there is no stored file.
async fn inline_media(media: &crate::media::Media, body: &Value) -> Option<Value> {
    let id = body["payload"]["media"]["id"].as_str()?;
    let bytes = match media.store.read_all(id).await {
        Ok(b) => b,
        Err(e) => {
            warn!(media = id, "cannot inline the file: {e}");
            return None;
        }
    };
    use base64::Engine as _;
    let mut body = body.clone();
    body["payload"]["media"]["base64"] = base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into();
    Some(body)
}

async fn post(
    http: &reqwest::Client,
    media: &crate::media::Media,
    settings: &Settings,
    url: &str,
    sub: &Subscription,
    ev: &OutboxEvent,
) -> Outcome {
    let kind = ev.body["event"].as_str().unwrap_or_default().to_string();
    let inlined;
    let body = if sub.media_inline == MediaInline::Base64 {
        inlined = inline_media(media, &ev.body).await;
        inlined.as_ref().unwrap_or(&ev.body)
    } else {
        &ev.body
    };
    let Some(rendered) = format::render(sub.format, body) else {
        // Queued before the session changed to a format without this kind
        // of event: nothing to post.
        debug!(id = ev.id, kind, "no body in this format: skipped");
        return Outcome::Delivered;
    };
    let body = match serde_json::to_vec(&rendered) {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Dead {
                status: 0,
                error: format!("cannot encode the event: {e}"),
            };
        }
    };
    let mut req = http
        .post(url)
        .timeout(settings.timeout)
        .header("content-type", "application/json")
        .header("X-Wapi-Event-Id", &ev.id)
        .header("X-Wapi-Event", kind)
        .header("X-Wapi-Timestamp", (now_ms() / 1000).to_string())
        .header("X-Wapi-Attempt", (ev.attempts + 1).to_string());
    if let Some(secret) = sub.secret.as_ref().or(settings.secret.as_ref()) {
        let signed = format!("sha256={}", signature(secret, &body));
        if sub.format == Format::Cloud {
            // What Cloud API receivers check (with their app secret).
            req = req.header("X-Hub-Signature-256", &signed);
        }
        req = req.header("X-Wapi-Signature", signed);
    }
    let resp = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                status: None,
                error: e.to_string(),
                after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Outcome::Delivered;
    }
    let error = format!("HTTP {status}");
    match status {
        408 | 425 | 429 | 500..=599 => {
            let after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(settings.max_backoff));
            Outcome::Retry {
                status: Some(status),
                error,
                after,
            }
        }
        _ => Outcome::Dead { status, error },
    }
}
