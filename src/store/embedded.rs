//! The embedded store: one redb file, durable on every commit.
//!
//! redb allows one write transaction at a time, so every check-then-write
//! below (dedupe, seq allocation) is atomic without further locking. Its calls
//! block on disk I/O and fsync, so they run on tokio's blocking pool.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::{
    DEDUPE_WINDOW_SECS, MessageRecord, OutboxCounts, OutboxEvent, SessionRecord, Store, StoreError,
    TokenRecord, from_json, is_retrying, task_failed, to_json, unix_now_secs,
};

/// name -> SessionRecord json.
const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
/// session NUL seq(big-endian u64) -> OutboxEvent json. Big-endian seq makes
/// a range scan over one session's prefix come out in delivery order.
const OUTBOX: TableDefinition<&[u8], &str> = TableDefinition::new("outbox");
/// session NUL id -> seq of the pending event, to find it by id.
const OUTBOX_INDEX: TableDefinition<&str, u64> = TableDefinition::new("outbox_index");
/// session NUL id -> unix seconds when first pushed (forwarded ids).
const SEEN: TableDefinition<&str, u64> = TableDefinition::new("seen");
/// session -> last seq handed out.
const SEQ: TableDefinition<&str, u64> = TableDefinition::new("seq");
/// Dead letters, keyed like `OUTBOX` by the seq they had when killed.
const DEAD: TableDefinition<&[u8], &str> = TableDefinition::new("dead");
/// session NUL id -> seq of the dead letter, to find it by id.
const DEAD_INDEX: TableDefinition<&str, u64> = TableDefinition::new("dead_index");
/// session -> events delivered (removed from pending).
const DELIVERED: TableDefinition<&str, u64> = TableDefinition::new("delivered");

/// session NUL message id -> (unix seconds remembered, MessageRecord json).
const MESSAGES: TableDefinition<&str, (u64, &str)> = TableDefinition::new("messages");

/// sha256(secret) hex -> TokenRecord json.
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");

/// Expired seen ids are dropped at most this often (and on open), so the
/// table stays bounded on a bridge that runs for months.
const PRUNE_INTERVAL_SECS: u64 = 24 * 60 * 60;

pub struct EmbeddedStore {
    db: Arc<Database>,
    /// Unix seconds of the last pruning of `SEEN`.
    last_prune: Arc<AtomicU64>,
    /// The hot writes (a message in, a delivery done) go through one writer
    /// thread that commits everything queued in one transaction: one fsync
    /// for many events instead of one each. A caller hears back only after
    /// the commit. A push (an event taken) is durable before its caller hears
    /// back; a removal (an event delivered) or a remembered message is
    /// committed in memory and becomes durable with the next durable commit
    /// (the next push, half a second of quiet, or [`Store::flush`] at
    /// shutdown), which spares most commits their page flush. A crash can
    /// only make an event delivered in that last moment be posted again, with
    /// the same event id (delivery is at least once).
    group: std::sync::mpsc::Sender<Grouped>,
}

mod group;
use group::{Grouped, group_writer};

impl EmbeddedStore {
    /// Opens (creating if needed) the database file at `path`. Blocking:
    /// call it from a blocking context, as `store::open` does.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path)?;
        let now = unix_now_secs();
        write(&db, |txn| {
            // Read transactions fail on tables that do not exist yet: create
            // them all up front.
            txn.open_table(SESSIONS)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(OUTBOX_INDEX)?;
            txn.open_table(SEQ)?;
            txn.open_table(DEAD)?;
            txn.open_table(DEAD_INDEX)?;
            txn.open_table(DELIVERED)?;
            txn.open_table(TOKENS)?;
            txn.open_table(MESSAGES)?;
            prune_seen(txn, now)
        })?;
        let db = Arc::new(db);
        let (group, queue) = std::sync::mpsc::channel();
        let writer_db = Arc::clone(&db);
        std::thread::Builder::new()
            .name("wapi-store-writer".into())
            .spawn(move || group_writer(writer_db, queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            db,
            last_prune: Arc::new(AtomicU64::new(now)),
            group,
        })
    }

    /// Queues a write for the group-commit writer and waits for its commit.
    async fn grouped<T>(
        &self,
        op: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, StoreError>>) -> Grouped,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.group
            .send(op(reply))
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?
    }

    /// Runs `f` with the database on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(task_failed)?
    }

    /// `outbox_push` with an explicit clock, so tests can step past the
    /// dedupe window.
    pub(super) async fn push_at(&self, ev: OutboxEvent, now: u64) -> Result<bool, StoreError> {
        let prune =
            now.saturating_sub(self.last_prune.load(Ordering::Relaxed)) >= PRUNE_INTERVAL_SECS;
        let appended = self
            .grouped(|reply| Grouped::Push {
                ev,
                now,
                prune,
                reply,
            })
            .await?;
        if prune {
            self.last_prune.store(now, Ordering::Relaxed);
        }
        Ok(appended)
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn token_put(&self, hash: &str, rec: &TokenRecord) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        let json = to_json(rec)?;
        self.run(move |db| {
            write(db, |txn| {
                txn.open_table(TOKENS)?
                    .insert(hash.as_str(), json.as_str())?;
                Ok(())
            })
        })
        .await
    }

    async fn token_get(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash.to_owned();
        self.run(move |db| {
            read(db, |txn| {
                let table = txn.open_table(TOKENS)?;
                let json = table.get(hash.as_str())?;
                json.map(|j| from_json("token", j.value())).transpose()
            })
        })
        .await
    }

    async fn message_put(&self, session: &str, rec: &MessageRecord) -> Result<(), StoreError> {
        let (key, json) = (id_key(session, &rec.id), to_json(rec)?);
        self.grouped(|reply| Grouped::Remember {
            key,
            at: rec.at,
            json,
            reply,
        })
        .await
    }

    async fn message_get(
        &self,
        session: &str,
        id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let key = id_key(session, id);
        let now = unix_now_secs();
        self.run(move |db| {
            read(db, |txn| {
                let table = txn.open_table(MESSAGES)?;
                let Some(v) = table.get(key.as_str())? else {
                    return Ok(None);
                };
                let (at, json) = v.value();
                if !within_window(at, now) {
                    return Ok(None);
                }
                from_json("message", json).map(Some)
            })
        })
        .await
    }

    async fn token_delete(&self, hash: &str) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.run(move |db| {
            write(db, |txn| {
                txn.open_table(TOKENS)?.remove(hash.as_str())?;
                Ok(())
            })
        })
        .await
    }

    async fn put_session(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        let name = rec.name.clone();
        let json = to_json(rec)?;
        self.run(move |db| {
            write(db, |txn| {
                txn.open_table(SESSIONS)?
                    .insert(name.as_str(), json.as_str())?;
                Ok(())
            })
        })
        .await
    }

    async fn get_session(&self, name: &str) -> Result<Option<SessionRecord>, StoreError> {
        let name = name.to_owned();
        self.run(move |db| {
            read(db, |txn| {
                let table = txn.open_table(SESSIONS)?;
                let json = table.get(name.as_str())?;
                json.map(|json| from_json("session", json.value()))
                    .transpose()
            })
        })
        .await
    }

    async fn list_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.run(|db| {
            read(db, |txn| {
                // Keys iterate in byte order, which is the order by name.
                let table = txn.open_table(SESSIONS)?;
                table
                    .iter()?
                    .map(|entry| from_json("session", entry?.1.value()))
                    .collect()
            })
        })
        .await
    }

    async fn delete_session(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.run(move |db| {
            write(db, |txn| {
                txn.open_table(SESSIONS)?.remove(name.as_str())?;
                let (lo, hi) = outbox_range(&name);
                txn.open_table(OUTBOX)?
                    .retain_in(lo.as_slice()..hi.as_slice(), |_, _| false)?;
                let (lo, hi) = id_range(&name);
                txn.open_table(OUTBOX_INDEX)?
                    .retain_in(lo.as_str()..hi.as_str(), |_, _| false)?;
                txn.open_table(SEQ)?.remove(name.as_str())?;
                let (lo, hi) = outbox_range(&name);
                txn.open_table(DEAD)?
                    .retain_in(lo.as_slice()..hi.as_slice(), |_, _| false)?;
                let (lo, hi) = id_range(&name);
                txn.open_table(DEAD_INDEX)?
                    .retain_in(lo.as_str()..hi.as_str(), |_, _| false)?;
                txn.open_table(DELIVERED)?.remove(name.as_str())?;
                let (lo, hi) = id_range(&name);
                txn.open_table(MESSAGES)?
                    .retain_in(lo.as_str()..hi.as_str(), |_, _| false)?;
                Ok(())
            })
        })
        .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.grouped(|reply| Grouped::Flush { reply }).await
    }

    async fn outbox_push(&self, ev: OutboxEvent) -> Result<bool, StoreError> {
        self.push_at(ev, unix_now_secs()).await
    }

    async fn outbox_pending(
        &self,
        session: &str,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let (lo, hi) = outbox_range(session);
        self.run(move |db| {
            read(db, |txn| {
                let table = txn.open_table(OUTBOX)?;
                table
                    .range(lo.as_slice()..hi.as_slice())?
                    .take(limit)
                    .map(|entry| from_json("outbox event", entry?.1.value()))
                    .collect()
            })
        })
        .await
    }

    async fn outbox_update(&self, ev: &OutboxEvent) -> Result<(), StoreError> {
        let mut ev = ev.clone();
        self.run(move |db| {
            write(db, |txn| {
                let key = id_key(&ev.session, &ev.id);
                let Some(seq) = txn
                    .open_table(OUTBOX_INDEX)?
                    .get(key.as_str())?
                    .map(|seq| seq.value())
                else {
                    return Ok(());
                };
                // The stored seq is authoritative: the caller cannot move the
                // event in the delivery order.
                ev.seq = seq;
                let json = to_json(&ev)?;
                txn.open_table(OUTBOX)?
                    .insert(outbox_key(&ev.session, seq).as_slice(), json.as_str())?;
                Ok(())
            })
        })
        .await
    }

    async fn outbox_remove(&self, session: &str, id: &str) -> Result<(), StoreError> {
        self.grouped(|reply| Grouped::Remove {
            session: session.to_owned(),
            id: id.to_owned(),
            reply,
        })
        .await
    }

    async fn outbox_kill(&self, ev: &OutboxEvent) -> Result<(), StoreError> {
        let mut ev = ev.clone();
        self.run(move |db| {
            write(db, |txn| {
                let key = id_key(&ev.session, &ev.id);
                let Some(seq) = txn
                    .open_table(OUTBOX_INDEX)?
                    .remove(key.as_str())?
                    .map(|seq| seq.value())
                else {
                    return Ok(());
                };
                let at = outbox_key(&ev.session, seq);
                txn.open_table(OUTBOX)?.remove(at.as_slice())?;
                ev.seq = seq;
                let json = to_json(&ev)?;
                txn.open_table(DEAD)?.insert(at.as_slice(), json.as_str())?;
                txn.open_table(DEAD_INDEX)?.insert(key.as_str(), seq)?;
                Ok(())
            })
        })
        .await
    }

    async fn dead_list(&self, session: &str) -> Result<Vec<OutboxEvent>, StoreError> {
        let (lo, hi) = outbox_range(session);
        self.run(move |db| {
            read(db, |txn| {
                let table = txn.open_table(DEAD)?;
                table
                    .range(lo.as_slice()..hi.as_slice())?
                    .map(|entry| from_json("dead letter", entry?.1.value()))
                    .collect()
            })
        })
        .await
    }

    async fn dead_replay(&self, session: &str, id: Option<&str>) -> Result<usize, StoreError> {
        let session = session.to_owned();
        let id = id.map(str::to_owned);
        self.run(move |db| write(db, |txn| replay(txn, &session, id.as_deref())))
            .await
    }

    async fn outbox_counts(&self, session: &str) -> Result<OutboxCounts, StoreError> {
        let session = session.to_owned();
        self.run(move |db| {
            read(db, |txn| {
                let (lo, hi) = outbox_range(&session);
                let mut counts = OutboxCounts::default();
                for entry in txn
                    .open_table(OUTBOX)?
                    .range(lo.as_slice()..hi.as_slice())?
                {
                    counts.pending += 1;
                    counts.retrying += u64::from(is_retrying(entry?.1.value())?);
                }
                counts.dead = txn
                    .open_table(DEAD)?
                    .range(lo.as_slice()..hi.as_slice())?
                    .count() as u64;
                counts.delivered = txn
                    .open_table(DELIVERED)?
                    .get(session.as_str())?
                    .map_or(0, |n| n.value());
                Ok(counts)
            })
        })
        .await
    }

    async fn outbox_sessions(&self) -> Result<Vec<String>, StoreError> {
        self.run(|db| read(db, sessions_with_events)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|db| read(db, |_| Ok(()))).await
    }
}

/// Appends `ev` unless its id is pending or was seen within the window.
fn push(txn: &WriteTransaction, mut ev: OutboxEvent, now: u64) -> Result<bool, StoreError> {
    let key = id_key(&ev.session, &ev.id);
    // An id still pending counts as seen even past the window: appending it
    // again would leave the older copy unreachable by id.
    if txn.open_table(OUTBOX_INDEX)?.get(key.as_str())?.is_some() {
        return Ok(false);
    }
    // So does a dead one: it can only come back through `dead_replay`.
    if txn.open_table(DEAD_INDEX)?.get(key.as_str())?.is_some() {
        return Ok(false);
    }
    let mut seen = txn.open_table(SEEN)?;
    let pushed_at = seen.get(key.as_str())?.map(|at| at.value());
    if pushed_at.is_some_and(|at| within_window(at, now)) {
        return Ok(false);
    }
    seen.insert(key.as_str(), now)?;

    ev.seq = next_seq(txn, &ev.session)?;
    let json = to_json(&ev)?;
    txn.open_table(OUTBOX)?
        .insert(outbox_key(&ev.session, ev.seq).as_slice(), json.as_str())?;
    txn.open_table(OUTBOX_INDEX)?.insert(key.as_str(), ev.seq)?;
    Ok(true)
}

/// Moves the dead letter `id` (all of them, oldest first, for None) to the
/// end of the pending queue.
fn replay(txn: &WriteTransaction, session: &str, id: Option<&str>) -> Result<usize, StoreError> {
    let seqs: Vec<u64> = {
        let index = txn.open_table(DEAD_INDEX)?;
        match id {
            Some(id) => index
                .get(id_key(session, id).as_str())?
                .map(|seq| seq.value())
                .into_iter()
                .collect(),
            None => {
                // Keys of the dead table come out in seq order.
                let (lo, hi) = outbox_range(session);
                let dead = txn.open_table(DEAD)?;
                dead.range(lo.as_slice()..hi.as_slice())?
                    .map(|entry| {
                        let (key, _) = entry?;
                        seq_of(key.value())
                    })
                    .collect::<Result<_, StoreError>>()?
            }
        }
    };
    for &seq in &seqs {
        let json = txn
            .open_table(DEAD)?
            .remove(outbox_key(session, seq).as_slice())?
            .map(|json| json.value().to_owned())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "dead index of {session:?} points at a missing seq {seq}"
                ))
            })?;
        let mut ev: OutboxEvent = from_json("dead letter", &json)?;
        let key = id_key(session, &ev.id);
        txn.open_table(DEAD_INDEX)?.remove(key.as_str())?;
        ev.seq = next_seq(txn, session)?;
        ev.attempts = 0;
        ev.next_attempt_at_ms = 0;
        let json = to_json(&ev)?;
        txn.open_table(OUTBOX)?
            .insert(outbox_key(session, ev.seq).as_slice(), json.as_str())?;
        txn.open_table(OUTBOX_INDEX)?.insert(key.as_str(), ev.seq)?;
    }
    Ok(seqs.len())
}

fn next_seq(txn: &WriteTransaction, session: &str) -> Result<u64, StoreError> {
    let mut table = txn.open_table(SEQ)?;
    let last = table.get(session)?.map_or(0, |seq| seq.value());
    let seq = last + 1;
    table.insert(session, seq)?;
    Ok(seq)
}

fn within_window(pushed_at: u64, now: u64) -> bool {
    now.saturating_sub(pushed_at) < DEDUPE_WINDOW_SECS
}

/// Removes a delivered event (if still pending) and counts it.
fn remove(txn: &WriteTransaction, session: &str, id: &str) -> Result<(), StoreError> {
    let seq = txn
        .open_table(OUTBOX_INDEX)?
        .remove(id_key(session, id).as_str())?
        .map(|seq| seq.value());
    if let Some(seq) = seq {
        txn.open_table(OUTBOX)?
            .remove(outbox_key(session, seq).as_slice())?;
        let mut delivered = txn.open_table(DELIVERED)?;
        let count = delivered.get(session)?.map_or(0, |n| n.value());
        delivered.insert(session, count + 1)?;
    }
    Ok(())
}

fn prune_seen(txn: &WriteTransaction, now: u64) -> Result<(), StoreError> {
    txn.open_table(SEEN)?
        .retain(|_, pushed_at| within_window(pushed_at, now))?;
    txn.open_table(MESSAGES)?
        .retain(|_, (at, _)| within_window(at, now))?;
    Ok(())
}

/// Distinct sessions in `OUTBOX`, found by jumping past each session's
/// prefix rather than reading every event.
fn sessions_with_events(txn: &ReadTransaction) -> Result<Vec<String>, StoreError> {
    let table = txn.open_table(OUTBOX)?;
    let mut sessions = Vec::new();
    let mut from = Vec::new();
    loop {
        let Some(entry) = table.range(from.as_slice()..)?.next() else {
            return Ok(sessions);
        };
        let (key, _) = entry?;
        let session = session_of(key.value())?;
        // Everything of this session sorts below `session` + 0x01.
        from = session.as_bytes().to_vec();
        from.push(1);
        sessions.push(session);
    }
}

fn session_of(outbox_key: &[u8]) -> Result<String, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("outbox key {outbox_key:?}"));
    let end = outbox_key
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(corrupt)?;
    let session = std::str::from_utf8(&outbox_key[..end]).map_err(|_| corrupt())?;
    Ok(session.to_owned())
}

fn seq_of(outbox_key: &[u8]) -> Result<u64, StoreError> {
    outbox_key
        .len()
        .checked_sub(8)
        .and_then(|at| outbox_key[at..].try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("outbox key {outbox_key:?}")))
}

fn outbox_key(session: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(session.len() + 9);
    key.extend_from_slice(session.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// [session NUL, session 0x01): exactly the outbox keys of `session`.
fn outbox_range(session: &str) -> (Vec<u8>, Vec<u8>) {
    let mut lo = session.as_bytes().to_vec();
    let mut hi = lo.clone();
    lo.push(0);
    hi.push(1);
    (lo, hi)
}

fn id_key(session: &str, id: &str) -> String {
    format!("{session}\0{id}")
}

/// [session NUL, session 0x01): exactly the id keys of `session`.
fn id_range(session: &str) -> (String, String) {
    (format!("{session}\0"), format!("{session}\u{1}"))
}

/// Runs `f` in a write transaction and commits it; an error drops the
/// transaction, which aborts it.
fn write<T>(
    db: &Database,
    f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    write_as(db, true, f)
}

/// A write transaction, durable when the commit returns or (`durable`
/// false) in memory until the next durable one.
fn write_as<T>(
    db: &Database,
    durable: bool,
    f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut txn = db.begin_write()?;
    if !durable {
        txn.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Unavailable(format!("set durability: {e}")))?;
    }
    let out = f(&txn)?;
    txn.commit()?;
    Ok(out)
}

fn read<T>(
    db: &Database,
    f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let txn = db.begin_read()?;
    f(&txn)
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Corrupted(msg) => StoreError::Corrupt(format!("database file: {msg}")),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// redb has one error type per kind of call; they all widen to `redb::Error`.
macro_rules! via_redb_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                redb::Error::from(e).into()
            }
        }
    )*};
}

via_redb_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
