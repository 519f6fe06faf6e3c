//! The embedded store's group-commit writer: one thread that takes every
//! hot write queued (an event pushed, an event delivered, a message
//! remembered), applies them in one transaction and commits once, durable
//! when any of them must be.

use super::*;

/// A write that the group-commit writer batches.
pub(super) enum Grouped {
    Push {
        ev: OutboxEvent,
        now: u64,
        prune: bool,
        reply: tokio::sync::oneshot::Sender<Result<bool, StoreError>>,
    },
    Remove {
        session: String,
        id: String,
        reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
    /// A message remembered (every message in and out writes one, so it
    /// rides in the same commits as the outbox).
    Remember {
        key: String,
        at: u64,
        json: String,
        reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
    /// Nothing to write: makes what is committed in memory durable.
    Flush {
        reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
}

/// With nothing queued for this long, the writer makes its in-memory
/// commits durable.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

/// Writes a batch at most this large in one transaction.
const GROUP_MAX: usize = 512;

impl Grouped {
    /// Applies the write; the result is sent only after the commit.
    fn apply(&self, txn: &WriteTransaction) -> Result<Done, StoreError> {
        match self {
            Grouped::Push { ev, now, prune, .. } => {
                if *prune {
                    prune_seen(txn, *now)?;
                }
                push(txn, ev.clone(), *now).map(Done::Pushed)
            }
            Grouped::Remove { session, id, .. } => remove(txn, session, id).map(|()| Done::Removed),
            Grouped::Remember { key, at, json, .. } => {
                txn.open_table(MESSAGES)?
                    .insert(key.as_str(), (*at, json.as_str()))?;
                Ok(Done::Removed)
            }
            Grouped::Flush { .. } => Ok(Done::Removed),
        }
    }

    /// Whether the caller may hear back only once the write is on disk.
    fn durable(&self) -> bool {
        matches!(self, Grouped::Push { .. } | Grouped::Flush { .. })
    }

    fn reply(self, result: Result<Done, StoreError>) {
        match self {
            Grouped::Push { reply, .. } => {
                let _ = reply.send(result.map(|d| matches!(d, Done::Pushed(true))));
            }
            Grouped::Remove { reply, .. }
            | Grouped::Remember { reply, .. }
            | Grouped::Flush { reply } => {
                let _ = reply.send(result.map(|_| ()));
            }
        }
    }
}

enum Done {
    Pushed(bool),
    Removed,
}

/// The writer thread: takes what is queued, applies it in one transaction,
/// commits, then answers each caller. If one write fails, the transaction is
/// dropped and each write is retried in a transaction of its own, so one bad
/// record cannot fail its neighbours.
pub(super) fn group_writer(db: Arc<Database>, queue: std::sync::mpsc::Receiver<Grouped>) {
    use std::sync::mpsc::RecvTimeoutError;
    // Whether something is committed in memory only.
    let mut in_memory = false;
    loop {
        let first = match queue.recv_timeout(IDLE_FLUSH) {
            Ok(op) => op,
            Err(RecvTimeoutError::Timeout) => {
                if in_memory {
                    match write_as(&db, true, |_| Ok(())) {
                        Ok(()) => in_memory = false,
                        Err(e) => {
                            tracing::warn!("cannot make the store's last writes durable: {e}")
                        }
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(Grouped::durable);
        let together = write_as(&db, durable, |txn| {
            batch
                .iter()
                .map(|op| op.apply(txn))
                .collect::<Result<Vec<Done>, StoreError>>()
        });
        match together {
            Ok(results) => {
                in_memory = !durable;
                for (op, r) in batch.into_iter().zip(results) {
                    op.reply(Ok(r));
                }
            }
            Err(_) => {
                for op in batch {
                    let durable = op.durable();
                    let r = write_as(&db, durable, |txn| op.apply(txn));
                    if r.is_ok() {
                        in_memory = !durable;
                    }
                    op.reply(r);
                }
            }
        }
    }
    if in_memory && let Err(e) = write_as(&db, true, |_| Ok(())) {
        tracing::warn!("cannot make the store's last writes durable: {e}");
    }
}
