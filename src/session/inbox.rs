//! A session's inbox: where whatsapp-rust's durability hook commits incoming
//! messages (to the outbox, remembered for later replies) before WhatsApp is
//! acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tracing::warn;

use super::task::account_of;
use super::{SessionView, now_secs};
use crate::store::MessageRecord;
use crate::webhook::{EventKind, WeakWebhooks, message_event_id};
use crate::whatsapp::{Change, Inbox, IncomingMessage};

/// Incoming messages not marked read yet, per chat, oldest first: what
/// "read up to this id" covers. In memory (a restart starts it afresh) and
/// bounded per chat.
pub(super) type Unread =
    Arc<std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<String>>>>;

const MAX_UNREAD_PER_CHAT: usize = 1000;

/// How long an incoming batch waits for an unreachable store before it is
/// given back to WhatsApp unacknowledged. A store restart takes a second or
/// two; waiting here keeps messages flowing in order without a reconnect.
const STORE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Commits a session's incoming messages to its webhook outbox; WhatsApp is
/// acknowledged only after the store has them.
pub(super) struct SessionInbox {
    pub(super) webhooks: WeakWebhooks,
    pub(super) view: Arc<RwLock<SessionView>>,
    /// Set when a batch was given back unacknowledged: WhatsApp redelivers
    /// it only on a new connection, which the checkout then makes.
    pub(super) gave_back: Arc<AtomicBool>,
    pub(super) unread: Unread,
}

impl SessionInbox {
    fn count_failure(&self) {
        if let Some(w) = self.webhooks.upgrade() {
            w.metrics().commit_failures.inc();
        }
    }

    async fn commit_once(&self, messages: &[IncomingMessage]) -> Result<(), CommitError> {
        let (name, sub, account) = {
            let v = self.view.read().unwrap_or_else(|p| p.into_inner());
            (v.name.clone(), v.webhook.clone(), account_of(&v.jid))
        };
        // A bridge that is shutting down stores nothing: WhatsApp keeps the
        // messages and delivers them again on the next start.
        let webhooks = self.webhooks.upgrade().ok_or(CommitError::Closing)?;
        if webhooks.is_closed() {
            return Err(CommitError::Closing);
        }
        let download = webhooks.media().settings.download;
        let mut committed = 0;
        for m in messages {
            // What a later reply, reaction or edit by id needs; our own
            // messages sent from the phone are remembered too.
            if m.change == Change::Message
                && !matches!(m.kind, "reaction" | "poll_vote" | "unknown")
            {
                let rec = MessageRecord {
                    id: m.id.clone(),
                    chat: m.chat.clone(),
                    sender: m.from.clone(),
                    from_me: m.from_me,
                    kind: m.kind.to_string(),
                    text: m.text.clone().or_else(|| m.caption.clone()),
                    at: now_secs(),
                    poll: None,
                };
                webhooks
                    .store()
                    .message_put(&name, &rec)
                    .await
                    .map_err(CommitError::Store)?;
            }
            if m.from_me {
                continue;
            }
            if m.change == Change::Message && !matches!(m.kind, "reaction" | "poll_vote") {
                let mut unread = self.unread.lock().unwrap_or_else(|p| p.into_inner());
                let chat = unread.entry(m.chat.clone()).or_default();
                if !chat.contains(&m.id) {
                    if chat.len() >= MAX_UNREAD_PER_CHAT {
                        chat.pop_front();
                    }
                    chat.push_back(m.id.clone());
                }
            }
            committed += 1;
            let stanza = m.edit_id.as_deref().unwrap_or(&m.id);
            let id = message_event_id(&name, &m.chat, &m.from, stanza);
            let event = match m.change {
                Change::Message => EventKind::Message,
                Change::Edited => EventKind::MessageEdited,
                Change::Revoked => EventKind::MessageRevoked,
            };
            let payload = serde_json::to_value(m).map_err(|e| CommitError::Other(e.to_string()))?;
            let media = m
                .media_ref
                .clone()
                .filter(|_| download && m.change == Change::Message)
                .map(|media| crate::media::MediaJob {
                    media,
                    attempts: 0,
                    waiting_since_ms: None,
                });
            webhooks
                .enqueue(
                    &name,
                    &sub,
                    account.as_deref(),
                    event,
                    Some(id),
                    payload,
                    media,
                )
                .await
                .map_err(CommitError::Store)?;
        }
        webhooks.metrics().messages_received.inc_by(committed);
        Ok(())
    }
}

enum CommitError {
    Closing,
    Store(crate::store::StoreError),
    Other(String),
}

#[async_trait::async_trait]
impl Inbox for SessionInbox {
    async fn remembered(&self, id: &str) -> Option<MessageRecord> {
        let webhooks = self.webhooks.upgrade()?;
        let name = self.view.read().map(|v| v.name.clone()).ok()?;
        webhooks.store().message_get(&name, id).await.ok().flatten()
    }

    async fn commit(&self, messages: Vec<IncomingMessage>) -> Result<(), String> {
        // Enqueueing is idempotent (event ids), so a retry after a partial
        // commit only adds what is missing.
        let deadline = tokio::time::Instant::now() + STORE_PATIENCE;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let err = match self.commit_once(&messages).await {
                Ok(()) => return Ok(()),
                Err(CommitError::Closing) => return Err("the bridge is shutting down".into()),
                Err(CommitError::Other(e)) => e,
                Err(CommitError::Store(e @ crate::store::StoreError::Corrupt(_))) => {
                    self.count_failure();
                    e.to_string()
                }
                Err(CommitError::Store(e)) if tokio::time::Instant::now() < deadline => {
                    self.count_failure();
                    warn!(
                        "cannot commit {} incoming message(s), retrying: {e}",
                        messages.len()
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(1));
                    continue;
                }
                Err(CommitError::Store(e)) => {
                    self.count_failure();
                    e.to_string()
                }
            };
            self.gave_back.store(true, Ordering::SeqCst);
            let name = self.view.read().map(|v| v.name.clone()).unwrap_or_default();
            crate::telemetry::report(
                Some(&name),
                "store unreachable: incoming messages handed back to WhatsApp",
            );
            return Err(err);
        }
    }
}
