//! The Redis store, for deployments that run several bridges or want the
//! state outside the container.
//!
//! Keys (all prefixed `wapi:`):
//! - `wapi:sessions`: hash name -> SessionRecord json
//! - `wapi:outbox:<s>`: sorted set, score = seq, member = event id
//! - `wapi:event:<s>`: hash event id -> OutboxEvent json
//! - `wapi:seq:<s>`: INCR counter handing out seqs
//! - `wapi:seen:<s>:<id>`: forwarded id, `SET NX EX` 30 days
//! - `wapi:outbox-sessions`: set of sessions with pending events
//! - `wapi:dead:<s>`: sorted set of dead letters, score = the seq they had
//! - `wapi:dead-event:<s>`: hash dead event id -> OutboxEvent json
//! - `wapi:delivered:<s>`: INCR counter of delivered events
//! - `wapi:token:<sha256>`: an issued credential (TokenRecord json)
//!
//! Writes that must be conditional (append only if the id is new, update only
//! if still pending, forget the session once its outbox is empty) are small
//! Lua scripts: MULTI/EXEC cannot branch on a result, and running the NX check
//! as a separate command first would lose the event, while marking it seen,
//! if the connection dropped between the two. Unconditional multi-key writes
//! use MULTI/EXEC.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, Script, cmd, pipe};

use super::{
    DEDUPE_WINDOW_SECS, MessageRecord, OutboxCounts, OutboxEvent, SessionRecord, Store, StoreError,
    TokenRecord, from_json, is_retrying, to_json, unix_now_secs,
};

const SESSIONS_KEY: &str = "wapi:sessions";
const OUTBOX_SESSIONS_KEY: &str = "wapi:outbox-sessions";

/// Bounds on a single attempt, so a dead Redis surfaces as `Unavailable`
/// instead of a hung webhook worker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// KEYS: seen, seq, outbox, events, outbox-sessions, dead.
/// ARGV: now, ttl, id, event json, session.
/// Returns the new seq, or 0 for a duplicate. A pending id counts as seen even
/// after its seen key expired: ZADD would otherwise move it in the order. So
/// does a dead one: it comes back only through a replay.
const PUSH_LUA: &str = r"
if redis.call('ZSCORE', KEYS[3], ARGV[3]) then return 0 end
if redis.call('ZSCORE', KEYS[6], ARGV[3]) then return 0 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], seq, ARGV[3])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('SADD', KEYS[5], ARGV[5])
return seq
";

/// KEYS: outbox, events. ARGV: id, event json.
const UPDATE_LUA: &str = r"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 0
";

/// KEYS: outbox, events, outbox-sessions, delivered. ARGV: id, session.
const REMOVE_LUA: &str = r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('INCR', KEYS[4])
end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
end
return 0
";

/// KEYS: outbox, events, outbox-sessions, dead, dead-events.
/// ARGV: id, event json, session. The dead letter keeps its pending seq.
const KILL_LUA: &str = r"
local seq = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seq then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[4], seq, ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[3])
end
return 1
";

/// KEYS: dead, dead-events, seq, outbox, events, outbox-sessions.
/// ARGV: session, then (id, json as read, json to store) per dead letter, in
/// replay order. A letter whose stored json changed since it was read (or
/// that is gone) is skipped, so a concurrent replay or kill is never undone.
/// Returns how many moved.
const REPLAY_LUA: &str = r"
local moved = 0
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) and redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    local seq = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[4], seq, id)
    redis.call('HSET', KEYS[5], id, ARGV[i + 2])
    redis.call('SADD', KEYS[6], ARGV[1])
    moved = moved + 1
  end
end
return moved
";

/// Dead letters replayed per script call, to keep each call's argument list
/// (and the time it blocks the server) bounded.
const REPLAY_BATCH: usize = 256;

pub struct RedisStore {
    /// Multiplexed and reconnecting; cloned per call because commands need
    /// `&mut`, and clones share the one connection.
    conn: ConnectionManager,
    push: Script,
    update: Script,
    remove: Script,
    kill: Script,
    replay: Script,
}

impl RedisStore {
    /// Connects to `url` (`redis://…`, `rediss://…`, or bare `host:port`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(MAX_RECONNECT_DELAY);
        Self::connect_with(url, config).await
    }

    pub(super) async fn connect_with(
        url: &str,
        config: ConnectionManagerConfig,
    ) -> Result<Self, StoreError> {
        let url = with_scheme(url);
        let client = Client::open(url.as_str())
            .map_err(|e| StoreError::Unavailable(format!("invalid redis url {url:?}: {e}")))?;
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            push: Script::new(PUSH_LUA),
            update: Script::new(UPDATE_LUA),
            remove: Script::new(REMOVE_LUA),
            kill: Script::new(KILL_LUA),
            replay: Script::new(REPLAY_LUA),
        })
    }
}

impl RedisStore {
    /// The session's dead letters, oldest first, each with its json exactly
    /// as stored (for the compare-and-move in `REPLAY_LUA`).
    async fn dead_letters(&self, session: &str) -> Result<Vec<(OutboxEvent, String)>, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<(String, f64)> = cmd("ZRANGE")
            .arg(dead_key(session))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let jsons: Vec<Option<String>> = cmd("HMGET")
            .arg(dead_events_key(session))
            .arg(ids.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await?;
        // A missing body means it was replayed between the two reads.
        ids.iter()
            .zip(jsons)
            .filter_map(|((_, score), json)| Some((*score, json?)))
            .map(|(score, json)| {
                let mut ev: OutboxEvent = from_json("dead letter", &json)?;
                ev.seq = score as u64;
                Ok((ev, json))
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn put_session(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        cmd("HSET")
            .arg(SESSIONS_KEY)
            .arg(&rec.name)
            .arg(to_json(rec)?)
            .exec_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn get_session(&self, name: &str) -> Result<Option<SessionRecord>, StoreError> {
        let json: Option<String> = cmd("HGET")
            .arg(SESSIONS_KEY)
            .arg(name)
            .query_async(&mut self.conn.clone())
            .await?;
        json.map(|json| from_json("session", &json)).transpose()
    }

    async fn list_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let all: Vec<String> = cmd("HVALS")
            .arg(SESSIONS_KEY)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut sessions = all
            .iter()
            .map(|json| from_json::<SessionRecord>("session", json))
            .collect::<Result<Vec<_>, _>>()?;
        sessions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(sessions)
    }

    async fn delete_session(&self, name: &str) -> Result<(), StoreError> {
        pipe()
            .atomic()
            .cmd("HDEL")
            .arg(SESSIONS_KEY)
            .arg(name)
            .ignore()
            .cmd("DEL")
            .arg(outbox_key(name))
            .arg(events_key(name))
            .arg(seq_key(name))
            .arg(dead_key(name))
            .arg(dead_events_key(name))
            .arg(delivered_key(name))
            .ignore()
            .cmd("SREM")
            .arg(OUTBOX_SESSIONS_KEY)
            .arg(name)
            .ignore()
            .exec_async(&mut self.conn.clone())
            .await?;
        // Remembered messages, found by their prefix (they would expire
        // anyway; a new session of the same name must not act on them).
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(message_key(name, "*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn.clone())
                .await?;
            if !keys.is_empty() {
                cmd("DEL")
                    .arg(&keys)
                    .exec_async(&mut self.conn.clone())
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn outbox_push(&self, mut ev: OutboxEvent) -> Result<bool, StoreError> {
        // The seq is handed out inside the script; the sorted set's score is
        // the authoritative copy, read back by `outbox_pending`.
        ev.seq = 0;
        let seq: u64 = self
            .push
            .key(seen_key(&ev.session, &ev.id))
            .key(seq_key(&ev.session))
            .key(outbox_key(&ev.session))
            .key(events_key(&ev.session))
            .key(OUTBOX_SESSIONS_KEY)
            .key(dead_key(&ev.session))
            .arg(unix_now_secs())
            .arg(DEDUPE_WINDOW_SECS)
            .arg(&ev.id)
            .arg(to_json(&ev)?)
            .arg(&ev.session)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(seq != 0)
    }

    async fn outbox_pending(
        &self,
        session: &str,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let Some(stop) = limit.checked_sub(1) else {
            return Ok(Vec::new());
        };
        let mut conn = self.conn.clone();
        let ids: Vec<(String, f64)> = cmd("ZRANGE")
            .arg(outbox_key(session))
            .arg(0)
            .arg(stop)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let jsons: Vec<Option<String>> = cmd("HMGET")
            .arg(events_key(session))
            .arg(ids.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await?;
        // A missing body means the event was removed between the two reads:
        // it is delivered, so skip it.
        ids.iter()
            .zip(jsons)
            .filter_map(|((_, score), json)| Some((*score, json?)))
            .map(|(score, json)| {
                let mut ev: OutboxEvent = from_json("outbox event", &json)?;
                // Scores are integers below 2^53, so this is exact.
                ev.seq = score as u64;
                Ok(ev)
            })
            .collect()
    }

    async fn outbox_update(&self, ev: &OutboxEvent) -> Result<(), StoreError> {
        let () = self
            .update
            .key(outbox_key(&ev.session))
            .key(events_key(&ev.session))
            .arg(&ev.id)
            .arg(to_json(ev)?)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn outbox_remove(&self, session: &str, id: &str) -> Result<(), StoreError> {
        let () = self
            .remove
            .key(outbox_key(session))
            .key(events_key(session))
            .key(OUTBOX_SESSIONS_KEY)
            .key(delivered_key(session))
            .arg(id)
            .arg(session)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn outbox_kill(&self, ev: &OutboxEvent) -> Result<(), StoreError> {
        let _killed: u64 = self
            .kill
            .key(outbox_key(&ev.session))
            .key(events_key(&ev.session))
            .key(OUTBOX_SESSIONS_KEY)
            .key(dead_key(&ev.session))
            .key(dead_events_key(&ev.session))
            .arg(&ev.id)
            .arg(to_json(ev)?)
            .arg(&ev.session)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn dead_list(&self, session: &str) -> Result<Vec<OutboxEvent>, StoreError> {
        Ok(self
            .dead_letters(session)
            .await?
            .into_iter()
            .map(|(ev, _)| ev)
            .collect())
    }

    async fn dead_replay(&self, session: &str, id: Option<&str>) -> Result<usize, StoreError> {
        let mut letters = self.dead_letters(session).await?;
        if let Some(id) = id {
            letters.retain(|(ev, _)| ev.id == id);
        }
        let mut moved = 0;
        for batch in letters.chunks(REPLAY_BATCH) {
            let mut invocation = self.replay.prepare_invoke();
            invocation
                .key(dead_key(session))
                .key(dead_events_key(session))
                .key(seq_key(session))
                .key(outbox_key(session))
                .key(events_key(session))
                .key(OUTBOX_SESSIONS_KEY)
                .arg(session);
            for (ev, stored) in batch {
                let replayed = OutboxEvent {
                    seq: 0,
                    attempts: 0,
                    next_attempt_at_ms: 0,
                    ..ev.clone()
                };
                invocation.arg(&ev.id).arg(stored).arg(to_json(&replayed)?);
            }
            let n: usize = invocation.invoke_async(&mut self.conn.clone()).await?;
            moved += n;
        }
        Ok(moved)
    }

    async fn outbox_counts(&self, session: &str) -> Result<OutboxCounts, StoreError> {
        // One MULTI, so the counts are a consistent snapshot.
        let (pending, events, dead, delivered): (u64, Vec<String>, u64, Option<u64>) = pipe()
            .atomic()
            .cmd("ZCARD")
            .arg(outbox_key(session))
            .cmd("HVALS")
            .arg(events_key(session))
            .cmd("ZCARD")
            .arg(dead_key(session))
            .cmd("GET")
            .arg(delivered_key(session))
            .query_async(&mut self.conn.clone())
            .await?;
        let mut retrying = 0;
        for json in &events {
            retrying += u64::from(is_retrying(json)?);
        }
        Ok(OutboxCounts {
            pending,
            retrying,
            dead,
            delivered: delivered.unwrap_or(0),
        })
    }

    async fn outbox_sessions(&self) -> Result<Vec<String>, StoreError> {
        let mut sessions: Vec<String> = cmd("SMEMBERS")
            .arg(OUTBOX_SESSIONS_KEY)
            .query_async(&mut self.conn.clone())
            .await?;
        sessions.sort();
        Ok(sessions)
    }

    async fn token_put(&self, hash: &str, rec: &TokenRecord) -> Result<(), StoreError> {
        let mut c = cmd("SET");
        c.arg(token_key(hash)).arg(to_json(rec)?);
        if let Some(at) = rec.expires_at {
            // Redis forgets it a day after it expires; until then the bridge
            // itself refuses it (by its own clock).
            let ttl = at.saturating_sub(unix_now_secs()) + 24 * 60 * 60;
            c.arg("EX").arg(ttl);
        }
        c.exec_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn token_get(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let json: Option<String> = cmd("GET")
            .arg(token_key(hash))
            .query_async(&mut self.conn.clone())
            .await?;
        json.map(|json| from_json("token", &json)).transpose()
    }

    async fn message_put(&self, session: &str, rec: &MessageRecord) -> Result<(), StoreError> {
        // Forgotten a window after it was remembered, as the embedded store.
        let age = unix_now_secs().saturating_sub(rec.at);
        let ttl = DEDUPE_WINDOW_SECS.saturating_sub(age);
        if ttl == 0 {
            return Ok(());
        }
        cmd("SET")
            .arg(message_key(session, &rec.id))
            .arg(to_json(rec)?)
            .arg("EX")
            .arg(ttl)
            .exec_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn message_get(
        &self,
        session: &str,
        id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let json: Option<String> = cmd("GET")
            .arg(message_key(session, id))
            .query_async(&mut self.conn.clone())
            .await?;
        json.map(|json| from_json("message", &json)).transpose()
    }

    async fn token_delete(&self, hash: &str) -> Result<(), StoreError> {
        cmd("DEL")
            .arg(token_key(hash))
            .exec_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        cmd("PING").exec_async(&mut self.conn.clone()).await?;
        Ok(())
    }
}

fn message_key(session: &str, id: &str) -> String {
    format!("wapi:msg:{session}:{id}")
}

fn token_key(hash: &str) -> String {
    format!("wapi:token:{hash}")
}

/// Accepts the `host:port` form operators tend to write.
fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("redis://{url}")
    }
}

fn outbox_key(session: &str) -> String {
    format!("wapi:outbox:{session}")
}

fn events_key(session: &str) -> String {
    format!("wapi:event:{session}")
}

fn seq_key(session: &str) -> String {
    format!("wapi:seq:{session}")
}

fn dead_key(session: &str) -> String {
    format!("wapi:dead:{session}")
}

fn dead_events_key(session: &str) -> String {
    format!("wapi:dead-event:{session}")
}

fn delivered_key(session: &str) -> String {
    format!("wapi:delivered:{session}")
}

fn seen_key(session: &str, id: &str) -> String {
    format!("wapi:seen:{session}:{id}")
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        match e.kind() {
            // The server answered, but not with what we stored.
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
                StoreError::Corrupt(format!("redis: {e}"))
            }
            _ => StoreError::Unavailable(format!("redis: {e}")),
        }
    }
}
