//! Named sessions: the manager that owns them and the task that runs each.
//!
//! Each session has exactly one task, and only that task changes the
//! session's state; everyone else sends it a [`Command`] and reads the
//! published [`SessionView`].

mod inbox;
mod task;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::store::{MessageRecord, SessionRecord, Store, StoreError};
use crate::webhook::{Subscription, SubscriptionChange, Webhooks};
use crate::whatsapp::{ActionOutcome, ChatAction, Extras, Outgoing, Sent};

pub use task::Command;

/// The states of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Starting,
    ScanQrCode,
    Working,
    Reconnecting,
    Stopped,
    LoggedOut,
    Failed,
}

/// The current QR code of a session waiting to be linked.
#[derive(Clone, Debug)]
pub struct QrCode {
    pub code: String,
    pub png: Arc<Vec<u8>>,
    pub expires_at: u64,
}

/// What everyone may read about a session; written only by its task.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub name: String,
    pub status: Status,
    pub reason: Option<String>,
    pub jid: Option<String>,
    pub push_name: Option<String>,
    pub webhook: Subscription,
    pub created_at: u64,
    /// See [`SessionRecord::epoch`].
    pub epoch: u64,
    pub qr: Option<QrCode>,
    pub connected_since: Option<u64>,
    pub reconnects: u64,
}

/// Session names become file names: keep them to a safe alphabet.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session {0} not found")]
    NotFound(String),
    #[error("session {0} already exists")]
    Exists(String),
    #[error("session {name} is {status:?}, not WORKING")]
    NotWorking { name: String, status: Status },
    #[error("{0}")]
    BadRequest(String),
    #[error("the session's task has stopped")]
    Gone,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("whatsapp: {0}")]
    WhatsApp(String),
    #[error("session {0} is already linked")]
    AlreadyLinked(String),
    /// The session is doing something that this request would undo.
    #[error("{0}")]
    Busy(String),
    /// No message of this id is remembered (never seen, or older than 30 days).
    #[error("message {0} not found")]
    UnknownMessage(String),
    /// WhatsApp answered with an error code (401 not an admin, 403 not a
    /// member, 404 unknown, 409 conflict, 410 gone...).
    #[error("WhatsApp refused: {code} {text}")]
    Refused { code: u16, text: String },
}

struct Entry {
    commands: mpsc::UnboundedSender<Command>,
    view: Arc<RwLock<SessionView>>,
    task: tokio::task::JoinHandle<()>,
}

/// Owns every session of this bridge process.
pub struct Manager {
    cfg: Arc<Config>,
    store: Arc<dyn Store>,
    webhooks: Webhooks,
    sessions: Mutex<HashMap<String, Entry>>,
    versions: Arc<crate::whatsapp::Versions>,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Manager {
    pub fn new(
        cfg: Arc<Config>,
        store: Arc<dyn Store>,
        webhooks: Webhooks,
        versions: Arc<crate::whatsapp::Versions>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            store,
            webhooks,
            sessions: Mutex::new(HashMap::new()),
            versions,
        })
    }

    /// The WhatsApp Web version sessions announce.
    pub fn versions(&self) -> &Arc<crate::whatsapp::Versions> {
        &self.versions
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every registered session that was not stopped on purpose.
    pub async fn restore(self: &Arc<Self>) -> Result<usize, SessionError> {
        let records = self.store.list_sessions().await?;
        let mut started = 0;
        for rec in records {
            let run = rec.desired_running;
            self.spawn(rec, run);
            if run {
                started += 1;
            }
        }
        Ok(started)
    }

    fn spawn(self: &Arc<Self>, rec: SessionRecord, run: bool) -> Arc<RwLock<SessionView>> {
        let view = Arc::new(RwLock::new(SessionView {
            name: rec.name.clone(),
            // What the task is about to do, so that a reply sent right
            // after registering does not say STOPPED.
            status: if run {
                Status::Starting
            } else {
                Status::Stopped
            },
            reason: None,
            jid: rec.jid.clone(),
            push_name: rec.push_name.clone(),
            webhook: rec.webhook.clone(),
            created_at: rec.created_at,
            epoch: rec.epoch,
            qr: None,
            connected_since: None,
            reconnects: 0,
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(task::run(
            task::Ctx {
                cfg: self.cfg.clone(),
                store: self.store.clone(),
                webhooks: self.webhooks.clone(),
                view: view.clone(),
                versions: self.versions.clone(),
            },
            rec.clone(),
            rx,
        ));
        if run {
            let _ = tx.send(Command::Start);
        }
        self.lock().insert(
            rec.name,
            Entry {
                commands: tx,
                view: view.clone(),
                task,
            },
        );
        view
    }

    /// Creates a session (409 if it exists).
    pub async fn create(
        self: &Arc<Self>,
        name: &str,
        webhook: SubscriptionChange,
        start: bool,
    ) -> Result<SessionView, SessionError> {
        if !valid_name(name) {
            return Err(SessionError::BadRequest(
                "name: must match ^[A-Za-z0-9_-]{1,64}$".into(),
            ));
        }
        if self.lock().contains_key(name) || self.store.get_session(name).await?.is_some() {
            return Err(SessionError::Exists(name.to_string()));
        }
        let mut sub = Subscription::default();
        sub.apply(webhook);
        let rec = SessionRecord {
            name: name.to_string(),
            webhook: sub,
            desired_running: start,
            created_at: now_secs(),
            jid: None,
            push_name: None,
            epoch: rand::random(),
        };
        self.store.put_session(&rec).await?;
        let view = self.spawn(rec, start);
        let v = read(&view);
        Ok(v)
    }

    /// wapi's register: creates the session if needed, starts it if it is
    /// not running, and returns it. Webhook settings given for an existing
    /// session replace those named; the others stay.
    pub async fn register(
        self: &Arc<Self>,
        name: &str,
        webhook: SubscriptionChange,
    ) -> Result<SessionView, SessionError> {
        match self.create(name, webhook.clone(), true).await {
            Ok(v) => Ok(v),
            Err(SessionError::Exists(_)) => {
                if !webhook.is_empty() {
                    self.command(name, |reply| Command::SetWebhook(webhook, reply))
                        .await??;
                }
                let v = self.view(name)?;
                if matches!(
                    v.status,
                    Status::Stopped | Status::Failed | Status::LoggedOut
                ) {
                    self.send(name, Command::Start)?;
                }
                self.view(name)
            }
            Err(e) => Err(e),
        }
    }

    pub fn view(&self, name: &str) -> Result<SessionView, SessionError> {
        self.lock()
            .get(name)
            .map(|e| read(&e.view))
            .ok_or_else(|| SessionError::NotFound(name.to_string()))
    }

    pub fn list(&self) -> Vec<SessionView> {
        let mut v: Vec<SessionView> = self.lock().values().map(|e| read(&e.view)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn send(&self, name: &str, cmd: Command) -> Result<(), SessionError> {
        let tx = self
            .lock()
            .get(name)
            .map(|e| e.commands.clone())
            .ok_or_else(|| SessionError::NotFound(name.to_string()))?;
        tx.send(cmd).map_err(|_| SessionError::Gone)
    }

    /// Sends a command that answers, and waits for the answer.
    pub async fn command<T>(
        &self,
        name: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.send(name, make(tx))?;
        rx.await.map_err(|_| SessionError::Gone)
    }

    /// Sends any kind through a WORKING session.
    pub async fn send_message(
        &self,
        name: &str,
        to: &str,
        out: Outgoing,
        extras: Extras,
    ) -> Result<Sent, SessionError> {
        self.command(name, |reply| Command::Send {
            to: to.to_string(),
            out: Box::new(out),
            extras,
            reply,
        })
        .await?
    }

    /// Sends a text through a WORKING session.
    pub async fn send_text(&self, name: &str, to: &str, text: &str) -> Result<Sent, SessionError> {
        self.send_message(
            name,
            to,
            Outgoing::Text(text.to_string()),
            Extras::default(),
        )
        .await
    }

    /// Replaces the text of a message the session sent in `chat`.
    pub async fn edit(
        &self,
        name: &str,
        chat: &str,
        id: &str,
        text: &str,
    ) -> Result<(), SessionError> {
        self.command(name, |reply| Command::Edit {
            chat: chat.to_string(),
            id: id.to_string(),
            text: text.to_string(),
            reply,
        })
        .await?
    }

    /// Deletes a message the session sent in `chat`, for everyone.
    pub async fn revoke(&self, name: &str, chat: &str, id: &str) -> Result<(), SessionError> {
        self.command(name, |reply| Command::Revoke {
            chat: chat.to_string(),
            id: id.to_string(),
            reply,
        })
        .await?
    }

    /// A chat action or lookup through a WORKING session.
    pub async fn act(&self, name: &str, action: ChatAction) -> Result<ActionOutcome, SessionError> {
        self.command(name, |reply| Command::Act { action, reply })
            .await?
    }

    /// A group operation through a WORKING session.
    pub async fn group(
        &self,
        name: &str,
        op: crate::whatsapp::GroupOp,
    ) -> Result<serde_json::Value, SessionError> {
        self.command(name, |reply| Command::Group { op, reply })
            .await?
    }

    /// Marks read every unread incoming message of `chat` up to `id`.
    pub async fn read_up_to(
        &self,
        name: &str,
        chat: &str,
        id: &str,
    ) -> Result<usize, SessionError> {
        self.command(name, |reply| Command::ReadUpTo {
            chat: chat.to_string(),
            id: id.to_string(),
            reply,
        })
        .await?
    }

    /// A message this session sent or received, remembered by its id.
    pub async fn remembered(&self, name: &str, id: &str) -> Result<MessageRecord, SessionError> {
        self.store
            .message_get(name, id)
            .await?
            .ok_or_else(|| SessionError::UnknownMessage(id.to_string()))
    }

    /// Deletes a session: logs out if linked, stops, deletes its files and
    /// its registry entry.
    pub async fn delete(&self, name: &str) -> Result<(), SessionError> {
        self.command(name, Command::Delete).await??;
        let entry = self.lock().remove(name);
        if let Some(e) = entry {
            let _ = e.task.await;
        }
        self.store.delete_session(name).await?;
        Ok(())
    }

    pub fn metrics(&self) -> &Arc<crate::telemetry::Metrics> {
        self.webhooks.metrics()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    pub fn media(&self) -> &Arc<crate::media::Media> {
        self.webhooks.media()
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// Outbox figures of a session: pending, retrying, dead, delivered, and
    /// the last delivery error.
    pub async fn webhook_stats(&self, name: &str) -> Result<serde_json::Value, SessionError> {
        let counts = self.store.outbox_counts(name).await?;
        let pending = self.store.outbox_pending(name, 1).await?;
        let last_error = match pending.first().and_then(|e| e.last_error.clone()) {
            Some(e) => Some(e),
            None => self
                .store
                .dead_list(name)
                .await?
                .last()
                .and_then(|e| e.last_error.clone()),
        };
        Ok(serde_json::json!({
            "pending": counts.pending,
            "retrying": counts.retrying,
            "dead": counts.dead,
            "delivered": counts.delivered,
            "last_error": last_error,
        }))
    }

    /// Puts dead letters (one, or all) back in the queue and wakes delivery.
    pub async fn replay(&self, name: &str, id: Option<&str>) -> Result<usize, SessionError> {
        let moved = self.store.dead_replay(name, id).await?;
        if moved > 0 {
            self.webhooks.kick(name);
        }
        Ok(moved)
    }

    /// Asks every session to check its connection (the periodic checkout).
    pub fn check_all(&self) {
        for e in self.lock().values() {
            let _ = e.commands.send(Command::Check);
        }
    }

    /// Stops every session, flushing each client's state, and waits.
    pub async fn shutdown(&self) {
        let entries: Vec<Entry> = self.lock().drain().map(|(_, e)| e).collect();
        for e in &entries {
            let _ = e.commands.send(Command::Shutdown);
        }
        for e in entries {
            let _ = e.task.await;
        }
    }
}

fn read(view: &RwLock<SessionView>) -> SessionView {
    view.read().unwrap_or_else(|p| p.into_inner()).clone()
}
