//! Everything the bridge keeps besides the WhatsApp session files: the
//! session registry, the webhook outbox and the ids of forwarded messages.
//! One trait, two implementations that pass the same tests: an embedded
//! durable store under the files root, and Redis.
//!
//! Session names and event ids are used inside keys: they must not contain
//! NUL (embedded keys use it as the separator) and, for Redis, a session name
//! should not contain `:` (keys are `wapi:<kind>:<session>[:<id>]`).

pub mod embedded;
pub mod redis;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use self::embedded::EmbeddedStore;
pub use self::redis::RedisStore;

/// How long a pushed event id keeps later pushes of the same id out: WAPI's
/// "forwarded message ids" are remembered for 30 days.
pub const DEDUPE_WINDOW_SECS: u64 = 30 * 24 * 60 * 60;

/// File name of the embedded database under the files root.
pub const EMBEDDED_FILE_NAME: &str = "wapi.redb";

/// A registered session as kept in the registry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    pub name: String,
    /// Stored flat (`webhook_url`, `webhook_format`, ...), so records
    /// written before there were formats read as native and all events.
    #[serde(flatten)]
    pub webhook: crate::webhook::Subscription,
    /// false when stopped on purpose: not started again on boot.
    pub desired_running: bool,
    /// Unix seconds.
    pub created_at: u64,
    pub jid: Option<String>,
    pub push_name: Option<String>,
    /// Random, new for each creation: keys made for a session are void
    /// for a later session of the same name.
    #[serde(default)]
    pub epoch: u64,
}

/// One webhook event waiting in a session's outbox (or, once given up on,
/// in its dead letters).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OutboxEvent {
    /// Event id, e.g. "evt_..." (unique per session).
    pub id: String,
    pub session: String,
    /// Assigned by the store on push: increasing per session, defines the
    /// delivery order. Whatever the caller sets is ignored.
    pub seq: u64,
    pub body: serde_json::Value,
    pub attempts: u32,
    pub next_attempt_at_ms: u64,
    pub last_error: Option<String>,
    /// HTTP status of the last attempt; None for network errors (and before
    /// the first attempt).
    #[serde(default)]
    pub last_status: Option<u16>,
    /// A media message's file still to download before the event is posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Box<crate::media::MediaJob>>,
}

/// A credential the bridge issued, kept under the SHA-256 of its secret
/// (the secret itself is never stored).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// `None` for a login token (admin); the session a session key is for.
    pub session: Option<String>,
    /// The session's `epoch` when the key was made: a session deleted and
    /// created again under the same name does not inherit old keys.
    #[serde(default)]
    pub session_epoch: Option<u64>,
    /// Unix seconds; `None` never expires (session keys).
    pub expires_at: Option<u64>,
}

/// What the bridge remembers of a message, sent or received, so that a
/// caller can reply to it, react to it, edit or delete it, or read the votes
/// of a poll, by its id alone.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MessageRecord {
    pub id: String,
    /// The chat JID: the other party of a direct chat, or the group.
    pub chat: String,
    /// Who wrote it (our own JID for messages we sent).
    pub sender: String,
    pub from_me: bool,
    /// text, image, poll... as in the API.
    pub kind: String,
    /// The text or caption, shown in the quote of a reply to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Unix seconds when it was remembered.
    pub at: u64,
    /// For a poll we created: what it takes to read the votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollRecord>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PollRecord {
    pub question: String,
    pub options: Vec<String>,
    /// base64 of the poll's message secret (votes are encrypted with it).
    pub secret: String,
}

/// What a session's outbox holds, for status pages and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    /// All pending events.
    pub pending: u64,
    /// Pending events that failed at least once (attempts > 0).
    pub retrying: u64,
    /// Dead letters.
    pub dead: u64,
    /// Events delivered (removed from pending) since the session's outbox
    /// was created.
    pub delivered: u64,
}

/// The one field `outbox_counts` needs, so counting does not decode bodies.
#[derive(Deserialize)]
struct AttemptsOnly {
    #[serde(default)]
    attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or failed an operation; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record cannot be decoded; retrying will not help.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Makes every write so far durable (the embedded store commits some in
    /// memory first); called at shutdown.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn put_session(&self, rec: &SessionRecord) -> Result<(), StoreError>;
    async fn get_session(&self, name: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// All sessions, sorted by name.
    async fn list_sessions(&self) -> Result<Vec<SessionRecord>, StoreError>;
    /// Removes the session, its outbox, its dead letters, its delivered
    /// counter and the messages it remembers. The ids it already forwarded stay
    /// remembered until their dedupe window ends.
    async fn delete_session(&self, name: &str) -> Result<(), StoreError>;
    /// Appends an event unless an event with the same id was ever pushed for
    /// this session within the dedupe window (30 days, WAPI's "forwarded
    /// message ids") or is still pending or dead. Returns Ok(true) if appended,
    /// Ok(false) if it was a duplicate. Atomic: two concurrent pushes of the
    /// same id append once.
    async fn outbox_push(&self, ev: OutboxEvent) -> Result<bool, StoreError>;
    /// The oldest pending events of a session in seq order (at most `limit`).
    async fn outbox_pending(
        &self,
        session: &str,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError>;
    /// Replaces a pending event (attempts, next_attempt_at_ms, last_error)
    /// keyed by (session, id). Does nothing if the event is no longer pending,
    /// so a late update cannot bring a delivered event back.
    async fn outbox_update(&self, ev: &OutboxEvent) -> Result<(), StoreError>;
    /// Removes a delivered event (nothing if it is not pending) and counts it
    /// as delivered.
    async fn outbox_remove(&self, session: &str, id: &str) -> Result<(), StoreError>;
    /// Moves a pending event (by session+id) to the session's dead letters,
    /// storing `ev` as given (attempts, last_error, last_status) but keeping
    /// the stored seq. No-op if it is not pending. The id stays seen: pushing
    /// it again is a duplicate.
    async fn outbox_kill(&self, ev: &OutboxEvent) -> Result<(), StoreError>;
    /// The session's dead letters, oldest first (by the seq they had).
    async fn dead_list(&self, session: &str) -> Result<Vec<OutboxEvent>, StoreError>;
    /// Moves dead letters back to the END of the pending queue with a new
    /// seq, attempts reset to 0 and next_attempt_at_ms = 0 (last_error and
    /// last_status kept). `id: None` replays all of them, oldest first.
    /// Returns how many moved (0 if the id is not dead).
    async fn dead_replay(&self, session: &str, id: Option<&str>) -> Result<usize, StoreError>;
    /// Counts for the session: pending, retrying (pending with attempts > 0),
    /// dead, and delivered (successful `outbox_remove`s of pending events).
    async fn outbox_counts(&self, session: &str) -> Result<OutboxCounts, StoreError>;
    /// Sessions that have pending events (for the delivery worker at
    /// start-up), sorted by name.
    async fn outbox_sessions(&self) -> Result<Vec<String>, StoreError>;
    /// Keeps an issued credential under the hash of its secret.
    async fn token_put(&self, hash: &str, rec: &TokenRecord) -> Result<(), StoreError>;
    async fn token_get(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Revokes a credential (nothing if unknown).
    async fn token_delete(&self, hash: &str) -> Result<(), StoreError>;
    /// Remembers a message for [`Self::message_get`] for the dedupe window
    /// (30 days); a record under the same session and id is replaced.
    async fn message_put(&self, session: &str, rec: &MessageRecord) -> Result<(), StoreError>;
    /// A remembered message, if it is younger than the dedupe window.
    async fn message_get(
        &self,
        session: &str,
        id: &str,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// Cheap health check.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the store the configuration asks for: Redis when a URL is given
/// (a blank one counts as none, as an empty environment variable would),
/// else the embedded database `<files_root>/wapi.redb`.
pub async fn open(
    redis_url: Option<&str>,
    files_root: &Path,
) -> Result<Arc<dyn Store>, StoreError> {
    match redis_url.map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) => Ok(Arc::new(RedisStore::connect(url).await?)),
        None => {
            let path = files_root.join(EMBEDDED_FILE_NAME);
            // A bridge restarted in the same process (tests, embedding) may
            // find the file still locked for a moment: the blocking store
            // calls of the stopped one hold the database until they finish.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let p = path.clone();
                // Opening may repair the file after a crash: keep it off the
                // async workers like every other redb call.
                let opened = tokio::task::spawn_blocking(move || EmbeddedStore::open(&p))
                    .await
                    .map_err(task_failed)?;
                match opened {
                    Ok(store) => return Ok(Arc::new(store)),
                    Err(e)
                        if e.to_string().contains("already open")
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Current unix time in seconds; a clock before 1970 reads as 0 rather than
/// failing a write.
fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    // Serializing our own plain structs cannot really fail; report it as
    // corrupt data rather than panicking if it ever does.
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Whether a stored event json has attempts > 0.
fn is_retrying(json: &str) -> Result<bool, StoreError> {
    Ok(from_json::<AttemptsOnly>("outbox event", json)?.attempts > 0)
}

fn task_failed(e: tokio::task::JoinError) -> StoreError {
    StoreError::Unavailable(format!("store task failed: {e}"))
}
