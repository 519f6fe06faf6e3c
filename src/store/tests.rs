//! One suite, run against both stores so they keep the same behaviour, plus a
//! few tests of what only one of them has (a file to reopen, a server to lose).
//!
//! The Redis tests start their own throwaway `redis-server` on a free port and
//! never touch a shared instance. They fail, rather than skip, when
//! `redis-server` is not installed.

use std::any::Any;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::webhook::{EventKind, Format, Subscription};

/// A store under test plus whatever must outlive it (temp dir, server).
struct Harness {
    store: Arc<dyn Store>,
    _guard: Box<dyn Any + Send>,
}

async fn embedded_harness() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(None, dir.path()).await.expect("open embedded store");
    Harness {
        store,
        _guard: Box::new(dir),
    }
}

async fn redis_harness() -> Harness {
    let server = RedisServer::start().await;
    // The bare host:port form, as operators write it.
    let store = RedisStore::connect(&server.addr())
        .await
        .expect("connect to the test redis-server");
    Harness {
        store: Arc::new(store),
        _guard: Box::new(server),
    }
}

fn session(name: &str) -> SessionRecord {
    SessionRecord {
        name: name.to_owned(),
        webhook: Subscription {
            url: Some(format!("https://hooks.example/{name}")),
            format: Format::Cloud,
            secret: Some(format!("secret-{name}")),
            events: Some(vec![EventKind::Message, EventKind::MessageStatus]),
            ..Default::default()
        },
        desired_running: true,
        created_at: 1_700_000_000,
        jid: None,
        push_name: None,
        epoch: 42,
    }
}

fn event(session: &str, id: &str) -> OutboxEvent {
    OutboxEvent {
        id: id.to_owned(),
        session: session.to_owned(),
        // Ignored: the store assigns it.
        seq: 999,
        body: json!({ "event": "message", "id": id, "ts": 1_700_000_000_123_u64 }),
        attempts: 0,
        next_attempt_at_ms: 0,
        last_error: None,
        last_status: None,
        media: None,
    }
}

fn ids(events: &[OutboxEvent]) -> Vec<&str> {
    events.iter().map(|ev| ev.id.as_str()).collect()
}

async fn push_all(store: &dyn Store, session: &str, event_ids: &[&str]) {
    for id in event_ids {
        assert!(
            store.outbox_push(event(session, id)).await.unwrap(),
            "push {id}"
        );
    }
}

async fn check_sessions_crud(store: Arc<dyn Store>) {
    assert!(store.list_sessions().await.unwrap().is_empty());
    store.put_session(&session("bob")).await.unwrap();
    store.put_session(&session("alice")).await.unwrap();
    assert_eq!(
        store.get_session("alice").await.unwrap(),
        Some(session("alice"))
    );
    assert_eq!(store.get_session("carol").await.unwrap(), None);
    assert_eq!(
        store.list_sessions().await.unwrap(),
        vec![session("alice"), session("bob")]
    );

    let updated = SessionRecord {
        desired_running: false,
        jid: Some("15550001111@s.whatsapp.net".into()),
        push_name: Some("Alice".into()),
        webhook: Subscription::default(),
        ..session("alice")
    };
    store.put_session(&updated).await.unwrap();
    assert_eq!(store.get_session("alice").await.unwrap(), Some(updated));

    store.delete_session("alice").await.unwrap();
    assert_eq!(store.get_session("alice").await.unwrap(), None);
    assert_eq!(store.list_sessions().await.unwrap(), vec![session("bob")]);
    store.delete_session("nobody").await.unwrap();
}

async fn check_outbox_order(store: Arc<dyn Store>) {
    push_all(&*store, "s1", &["e1", "e2"]).await;
    push_all(&*store, "s2", &["x1"]).await;
    push_all(&*store, "s1", &["e3"]).await;

    let pending = store.outbox_pending("s1", 10).await.unwrap();
    assert_eq!(ids(&pending), ["e1", "e2", "e3"]);
    assert!(
        pending.windows(2).all(|w| w[0].seq < w[1].seq),
        "{pending:?}"
    );
    assert!(pending.iter().all(|ev| ev.seq != 999 && ev.session == "s1"));
    assert_eq!(pending[1].body, event("s1", "e2").body);

    assert_eq!(
        ids(&store.outbox_pending("s1", 2).await.unwrap()),
        ["e1", "e2"]
    );
    assert!(store.outbox_pending("s1", 0).await.unwrap().is_empty());
    assert_eq!(ids(&store.outbox_pending("s2", 10).await.unwrap()), ["x1"]);
    assert!(store.outbox_pending("s3", 10).await.unwrap().is_empty());
}

async fn check_dedupe(store: Arc<dyn Store>) {
    assert!(store.outbox_push(event("s1", "e1")).await.unwrap());
    let mut again = event("s1", "e1");
    again.body = json!({ "different": true });
    assert!(!store.outbox_push(again).await.unwrap());
    let pending = store.outbox_pending("s1", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].body, event("s1", "e1").body);

    // Delivered ids stay remembered: a redelivery must not be forwarded twice.
    store.outbox_remove("s1", "e1").await.unwrap();
    assert!(!store.outbox_push(event("s1", "e1")).await.unwrap());
    assert!(store.outbox_pending("s1", 10).await.unwrap().is_empty());

    // Ids are per session.
    assert!(store.outbox_push(event("s2", "e1")).await.unwrap());
}

async fn check_concurrent_dedupe(store: Arc<dyn Store>) {
    let pushes = (0..10).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.outbox_push(event("s1", "same")).await.unwrap() })
    });
    let mut appended = 0;
    for push in pushes.collect::<Vec<_>>() {
        appended += usize::from(push.await.unwrap());
    }
    assert_eq!(appended, 1);
    assert_eq!(store.outbox_pending("s1", 10).await.unwrap().len(), 1);
}

async fn check_concurrent_seqs(store: Arc<dyn Store>) {
    let pushes = (0..10).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.outbox_push(event("s1", &format!("e{i}"))).await })
    });
    for push in pushes.collect::<Vec<_>>() {
        assert!(push.await.unwrap().unwrap());
    }
    let pending = store.outbox_pending("s1", 100).await.unwrap();
    assert_eq!(pending.len(), 10);
    assert!(
        pending.windows(2).all(|w| w[0].seq < w[1].seq),
        "{pending:?}"
    );
}

async fn check_update(store: Arc<dyn Store>) {
    push_all(&*store, "s1", &["e1", "e2"]).await;
    let mut first = store.outbox_pending("s1", 1).await.unwrap().remove(0);
    let seq = first.seq;
    first.attempts = 3;
    first.next_attempt_at_ms = 1_700_000_060_000;
    first.last_error = Some("HTTP 500".into());
    first.seq = seq + 100; // must not reorder the outbox
    store.outbox_update(&first).await.unwrap();

    let pending = store.outbox_pending("s1", 10).await.unwrap();
    assert_eq!(ids(&pending), ["e1", "e2"]);
    assert_eq!(pending[0], OutboxEvent { seq, ..first });

    // An update racing with delivery must not bring the event back.
    let second = pending[1].clone();
    store.outbox_remove("s1", "e2").await.unwrap();
    store.outbox_update(&second).await.unwrap();
    assert_eq!(ids(&store.outbox_pending("s1", 10).await.unwrap()), ["e1"]);
}

/// A media event keeps its download job until the download is recorded.
async fn check_media_job(store: Arc<dyn Store>) {
    let job = crate::media::MediaJob {
        media: crate::whatsapp::MediaRef {
            kind: "image".into(),
            direct_path: "/v/t62/abc".into(),
            media_key: "00".repeat(32),
            file_sha256: "11".repeat(32),
            file_enc_sha256: "22".repeat(32),
            file_length: 1234,
            message_id: "3EB0".into(),
            chat: "15550002222@s.whatsapp.net".into(),
            ..Default::default()
        },
        attempts: 1,
        waiting_since_ms: None,
    };
    let ev = OutboxEvent {
        media: Some(Box::new(job.clone())),
        ..event("s1", "m1")
    };
    assert!(store.outbox_push(ev).await.unwrap());
    let mut stored = store.outbox_pending("s1", 1).await.unwrap().remove(0);
    assert_eq!(stored.media, Some(Box::new(job)));
    stored.media = None;
    stored.body["payload"] = json!({"media": {"id": "med_x"}});
    store.outbox_update(&stored).await.unwrap();
    let after = store.outbox_pending("s1", 1).await.unwrap().remove(0);
    assert_eq!(after.media, None);
    assert_eq!(after.body["payload"]["media"]["id"], "med_x");
}

async fn check_remove(store: Arc<dyn Store>) {
    push_all(&*store, "s1", &["a", "b", "c"]).await;
    store.outbox_remove("s1", "b").await.unwrap();
    assert_eq!(
        ids(&store.outbox_pending("s1", 10).await.unwrap()),
        ["a", "c"]
    );
    store.outbox_remove("s1", "b").await.unwrap();
    store.outbox_remove("nobody", "a").await.unwrap();
    assert_eq!(
        ids(&store.outbox_pending("s1", 10).await.unwrap()),
        ["a", "c"]
    );
}

async fn check_outbox_sessions(store: Arc<dyn Store>) {
    assert!(store.outbox_sessions().await.unwrap().is_empty());
    push_all(&*store, "beta", &["b1", "b2"]).await;
    push_all(&*store, "alpha", &["a1"]).await;
    assert_eq!(store.outbox_sessions().await.unwrap(), ["alpha", "beta"]);
    store.outbox_remove("alpha", "a1").await.unwrap();
    store.outbox_remove("beta", "b1").await.unwrap();
    assert_eq!(store.outbox_sessions().await.unwrap(), ["beta"]);
}

async fn check_delete_session_drops_outbox(store: Arc<dyn Store>) {
    store.put_session(&session("s1")).await.unwrap();
    store.put_session(&session("s2")).await.unwrap();
    push_all(&*store, "s1", &["e1", "e2"]).await;
    push_all(&*store, "s2", &["x1"]).await;

    store.delete_session("s1").await.unwrap();
    assert_eq!(store.get_session("s1").await.unwrap(), None);
    assert!(store.outbox_pending("s1", 10).await.unwrap().is_empty());
    assert_eq!(store.outbox_sessions().await.unwrap(), ["s2"]);
    assert_eq!(ids(&store.outbox_pending("s2", 10).await.unwrap()), ["x1"]);

    // A session created again under the same name starts a fresh outbox.
    push_all(&*store, "s1", &["e3"]).await;
    assert_eq!(ids(&store.outbox_pending("s1", 10).await.unwrap()), ["e3"]);
}

/// The pending event `id` of `session` after `attempts` failed attempts.
async fn failed(store: &dyn Store, session: &str, id: &str, attempts: u32) -> OutboxEvent {
    let mut ev = store
        .outbox_pending(session, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|ev| ev.id == id)
        .unwrap_or_else(|| panic!("{id} pending"));
    ev.attempts = attempts;
    ev.next_attempt_at_ms = 1_700_000_000_000 + u64::from(attempts);
    ev.last_error = Some(format!("HTTP 503 on attempt {attempts}"));
    ev.last_status = Some(503);
    ev
}

fn counts(pending: u64, retrying: u64, dead: u64, delivered: u64) -> OutboxCounts {
    OutboxCounts {
        pending,
        retrying,
        dead,
        delivered,
    }
}

async fn check_kill_moves_to_dead(store: Arc<dyn Store>) {
    push_all(&*store, "s1", &["e1", "e2", "e3"]).await;
    let seq = store.outbox_pending("s1", 10).await.unwrap()[1].seq;
    let mut killed = failed(&*store, "s1", "e2", 8).await;
    killed.last_status = None; // a network error
    killed.last_error = Some("connection refused".into());
    killed.seq = seq + 100; // ignored: the stored seq is kept
    store.outbox_kill(&killed).await.unwrap();

    assert_eq!(
        ids(&store.outbox_pending("s1", 10).await.unwrap()),
        ["e1", "e3"]
    );
    let dead = store.dead_list("s1").await.unwrap();
    assert_eq!(
        dead,
        [OutboxEvent {
            seq,
            ..killed.clone()
        }]
    );
    assert_eq!(dead[0].body, event("s1", "e2").body);

    // Not pending (any more, or ever): no-ops.
    store.outbox_kill(&killed).await.unwrap();
    store.outbox_kill(&event("s1", "nope")).await.unwrap();
    assert_eq!(store.dead_list("s1").await.unwrap().len(), 1);
    assert!(store.dead_list("s2").await.unwrap().is_empty());

    // An update or remove arriving late does not touch the dead letter.
    store
        .outbox_update(&failed(&*store, "s1", "e1", 1).await)
        .await
        .unwrap();
    let mut late = killed.clone();
    late.attempts = 99;
    store.outbox_update(&late).await.unwrap();
    store.outbox_remove("s1", "e2").await.unwrap();
    assert_eq!(store.dead_list("s1").await.unwrap()[0].attempts, 8);
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(2, 1, 1, 0));

    // The last pending event killed: the session drops out of the worker list.
    push_all(&*store, "s2", &["x1"]).await;
    store
        .outbox_kill(&failed(&*store, "s2", "x1", 1).await)
        .await
        .unwrap();
    assert_eq!(store.outbox_sessions().await.unwrap(), ["s1"]);
}

async fn check_dead_list_order(store: Arc<dyn Store>) {
    push_all(&*store, "s1", &["a", "b", "c", "d"]).await;
    // Killed out of order: listed by the seq they had.
    for id in ["c", "a", "d"] {
        store
            .outbox_kill(&failed(&*store, "s1", id, 5).await)
            .await
            .unwrap();
    }
    let dead = store.dead_list("s1").await.unwrap();
    assert_eq!(ids(&dead), ["a", "c", "d"]);
    assert!(dead.windows(2).all(|w| w[0].seq < w[1].seq), "{dead:?}");
    assert!(dead.iter().all(|ev| ev.session == "s1" && ev.attempts == 5));
    assert_eq!(ids(&store.outbox_pending("s1", 10).await.unwrap()), ["b"]);
}

async fn check_replay_one(store: Arc<dyn Store>) {
    push_all(&*store, "s1", &["e1", "e2", "e3"]).await;
    let killed = failed(&*store, "s1", "e1", 7).await;
    store.outbox_kill(&killed).await.unwrap();
    store
        .outbox_kill(&failed(&*store, "s1", "e2", 7).await)
        .await
        .unwrap();
    push_all(&*store, "s1", &["e4"]).await;
    let max_seq = store.outbox_pending("s1", 10).await.unwrap()[1].seq;

    assert_eq!(store.dead_replay("s1", Some("e1")).await.unwrap(), 1);
    let pending = store.outbox_pending("s1", 10).await.unwrap();
    assert_eq!(ids(&pending), ["e3", "e4", "e1"]);
    let replayed = &pending[2];
    assert!(replayed.seq > max_seq, "{pending:?}");
    assert_eq!(replayed.attempts, 0);
    assert_eq!(replayed.next_attempt_at_ms, 0);
    assert_eq!(replayed.last_error, killed.last_error);
    assert_eq!(replayed.last_status, Some(503));
    assert_eq!(replayed.body, killed.body);
    assert_eq!(ids(&store.dead_list("s1").await.unwrap()), ["e2"]);

    // Replayed again: it is pending, not dead.
    assert_eq!(store.dead_replay("s1", Some("e1")).await.unwrap(), 0);
    // A replayed event can be delivered, or killed and replayed again.
    store
        .outbox_kill(&failed(&*store, "s1", "e1", 2).await)
        .await
        .unwrap();
    assert_eq!(store.dead_replay("s1", Some("e1")).await.unwrap(), 1);
    assert_eq!(
        ids(&store.outbox_pending("s1", 10).await.unwrap()),
        ["e3", "e4", "e1"]
    );
    store.outbox_remove("s1", "e1").await.unwrap();
    assert_eq!(
        ids(&store.outbox_pending("s1", 10).await.unwrap()),
        ["e3", "e4"]
    );
}

async fn check_replay_all(store: Arc<dyn Store>) {
    push_all(&*store, "s1", &["a", "b", "c", "d"]).await;
    for id in ["c", "a"] {
        store
            .outbox_kill(&failed(&*store, "s1", id, 4).await)
            .await
            .unwrap();
    }
    push_all(&*store, "s2", &["x"]).await;
    store
        .outbox_kill(&failed(&*store, "s2", "x", 4).await)
        .await
        .unwrap();
    let max_seq = store.outbox_pending("s1", 10).await.unwrap()[1].seq;

    assert_eq!(store.dead_replay("s1", None).await.unwrap(), 2);
    let pending = store.outbox_pending("s1", 10).await.unwrap();
    assert_eq!(ids(&pending), ["b", "d", "a", "c"]);
    assert!(pending[2].seq > max_seq && pending[3].seq > pending[2].seq);
    assert!(
        pending
            .iter()
            .all(|ev| ev.attempts == 0 && ev.next_attempt_at_ms == 0)
    );
    assert_eq!(pending[2].last_status, Some(503));
    assert!(store.dead_list("s1").await.unwrap().is_empty());
    // Other sessions keep theirs.
    assert_eq!(ids(&store.dead_list("s2").await.unwrap()), ["x"]);
    assert_eq!(store.dead_replay("s1", None).await.unwrap(), 0);

    // Replay brings a session back into the worker list.
    assert_eq!(store.outbox_sessions().await.unwrap(), ["s1"]);
    assert_eq!(store.dead_replay("s2", None).await.unwrap(), 1);
    assert_eq!(store.outbox_sessions().await.unwrap(), ["s1", "s2"]);
}

async fn check_replay_unknown(store: Arc<dyn Store>) {
    assert_eq!(store.dead_replay("s1", Some("nope")).await.unwrap(), 0);
    assert_eq!(store.dead_replay("s1", None).await.unwrap(), 0);
    push_all(&*store, "s1", &["e1"]).await;
    store
        .outbox_kill(&failed(&*store, "s1", "e1", 1).await)
        .await
        .unwrap();
    assert_eq!(store.dead_replay("s1", Some("e2")).await.unwrap(), 0);
    assert_eq!(store.dead_replay("s2", Some("e1")).await.unwrap(), 0);
    assert_eq!(ids(&store.dead_list("s1").await.unwrap()), ["e1"]);
    assert!(store.outbox_pending("s1", 10).await.unwrap().is_empty());
}

async fn check_counts(store: Arc<dyn Store>) {
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(0, 0, 0, 0));
    push_all(&*store, "s1", &["a", "b", "c", "d"]).await;
    push_all(&*store, "s2", &["x"]).await;
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(4, 0, 0, 0));

    store
        .outbox_update(&failed(&*store, "s1", "a", 1).await)
        .await
        .unwrap();
    store
        .outbox_update(&failed(&*store, "s1", "b", 2).await)
        .await
        .unwrap();
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(4, 2, 0, 0));

    store.outbox_remove("s1", "a").await.unwrap(); // delivered on a retry
    store.outbox_remove("s1", "c").await.unwrap();
    store.outbox_remove("s1", "c").await.unwrap(); // not pending: not counted
    store.outbox_remove("s1", "zzz").await.unwrap();
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(2, 1, 0, 2));

    store
        .outbox_kill(&failed(&*store, "s1", "b", 9).await)
        .await
        .unwrap();
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(1, 0, 1, 2));
    store.outbox_remove("s1", "b").await.unwrap(); // dead: not delivered
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(1, 0, 1, 2));

    store.dead_replay("s1", None).await.unwrap();
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(2, 0, 0, 2));
    store.outbox_remove("s1", "b").await.unwrap();
    store.outbox_remove("s1", "d").await.unwrap();
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(0, 0, 0, 4));

    // Per session.
    assert_eq!(store.outbox_counts("s2").await.unwrap(), counts(1, 0, 0, 0));
    assert_eq!(store.outbox_counts("s3").await.unwrap(), counts(0, 0, 0, 0));
}

async fn check_dedupe_dead_ids(store: Arc<dyn Store>) {
    push_all(&*store, "s1", &["e1", "e2"]).await;
    store
        .outbox_kill(&failed(&*store, "s1", "e1", 3).await)
        .await
        .unwrap();
    assert!(!store.outbox_push(event("s1", "e1")).await.unwrap());
    assert_eq!(ids(&store.outbox_pending("s1", 10).await.unwrap()), ["e2"]);
    assert_eq!(store.dead_list("s1").await.unwrap()[0].attempts, 3);

    // Replayed, then delivered: still seen.
    store.dead_replay("s1", Some("e1")).await.unwrap();
    assert!(!store.outbox_push(event("s1", "e1")).await.unwrap());
    store.outbox_remove("s1", "e1").await.unwrap();
    assert!(!store.outbox_push(event("s1", "e1")).await.unwrap());
    assert_eq!(ids(&store.outbox_pending("s1", 10).await.unwrap()), ["e2"]);
}

async fn check_delete_session_drops_dead_letters(store: Arc<dyn Store>) {
    store.put_session(&session("s1")).await.unwrap();
    push_all(&*store, "s1", &["e1", "e2", "e3"]).await;
    push_all(&*store, "s2", &["x1"]).await;
    store
        .outbox_kill(&failed(&*store, "s1", "e1", 3).await)
        .await
        .unwrap();
    store
        .outbox_kill(&failed(&*store, "s2", "x1", 3).await)
        .await
        .unwrap();
    store.outbox_remove("s1", "e2").await.unwrap();
    store.outbox_remove("s1", "e3").await.unwrap();
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(0, 0, 1, 2));

    store.delete_session("s1").await.unwrap();
    assert!(store.dead_list("s1").await.unwrap().is_empty());
    assert_eq!(store.dead_replay("s1", None).await.unwrap(), 0);
    assert_eq!(store.outbox_counts("s1").await.unwrap(), counts(0, 0, 0, 0));
    assert!(store.outbox_pending("s1", 10).await.unwrap().is_empty());
    assert!(store.outbox_sessions().await.unwrap().is_empty());
    assert_eq!(ids(&store.dead_list("s2").await.unwrap()), ["x1"]);
}

async fn check_ping(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

async fn check_tokens(store: Arc<dyn Store>) {
    let login = TokenRecord {
        session: None,
        session_epoch: None,
        expires_at: Some(unix_now_secs() + 60),
    };
    let key = TokenRecord {
        session: Some("s1".into()),
        session_epoch: Some(7),
        expires_at: None,
    };
    store.token_put("h1", &login).await.unwrap();
    store.token_put("h2", &key).await.unwrap();
    assert_eq!(store.token_get("h1").await.unwrap(), Some(login));
    assert_eq!(store.token_get("h2").await.unwrap(), Some(key));
    store.token_delete("h1").await.unwrap();
    assert_eq!(store.token_get("h1").await.unwrap(), None);
    assert_eq!(store.token_get("nope").await.unwrap(), None);
    store.token_delete("nope").await.unwrap();
}

async fn check_messages(store: Arc<dyn Store>) {
    let poll = MessageRecord {
        id: "3EB0POLL".into(),
        chat: "15550001111@s.whatsapp.net".into(),
        sender: "15550002222@s.whatsapp.net".into(),
        from_me: true,
        kind: "poll".into(),
        text: Some("Lunch?".into()),
        at: unix_now_secs(),
        poll: Some(PollRecord {
            question: "Lunch?".into(),
            options: vec!["yes".into(), "no".into()],
            secret: "c2VjcmV0".into(),
        }),
    };
    let theirs = MessageRecord {
        id: "ABCD".into(),
        from_me: false,
        kind: "text".into(),
        poll: None,
        ..poll.clone()
    };
    store.message_put("s1", &poll).await.unwrap();
    store.message_put("s1", &theirs).await.unwrap();
    store.message_put("s2", &theirs).await.unwrap();
    assert_eq!(
        store.message_get("s1", "3EB0POLL").await.unwrap(),
        Some(poll)
    );
    assert_eq!(
        store.message_get("s1", "ABCD").await.unwrap(),
        Some(theirs.clone())
    );
    assert_eq!(store.message_get("s1", "nope").await.unwrap(), None);
    assert_eq!(store.message_get("s3", "ABCD").await.unwrap(), None);
    let old = MessageRecord {
        id: "OLD".into(),
        at: unix_now_secs() - DEDUPE_WINDOW_SECS - 1,
        ..theirs.clone()
    };
    store.message_put("s1", &old).await.unwrap();
    assert_eq!(
        store.message_get("s1", "OLD").await.unwrap(),
        None,
        "past the window"
    );
    // Deleting a session forgets its messages, not another session's.
    store.put_session(&session("s1")).await.unwrap();
    store.delete_session("s1").await.unwrap();
    assert_eq!(store.message_get("s1", "ABCD").await.unwrap(), None);
    assert_eq!(store.message_get("s2", "ABCD").await.unwrap(), Some(theirs));
}

/// Instantiates every `check_*` above as a test against one backend.
macro_rules! suite {
    ($backend:ident, $harness:ident) => {
        mod $backend {
            use super::*;

            suite!(@tests $harness:
                check_sessions_crud,
                check_outbox_order,
                check_dedupe,
                check_concurrent_dedupe,
                check_concurrent_seqs,
                check_update,
                check_media_job,
                check_remove,
                check_outbox_sessions,
                check_delete_session_drops_outbox,
                check_kill_moves_to_dead,
                check_dead_list_order,
                check_replay_one,
                check_replay_all,
                check_replay_unknown,
                check_counts,
                check_dedupe_dead_ids,
                check_delete_session_drops_dead_letters,
                check_ping,
                check_tokens,
                check_messages,
            );
        }
    };
    (@tests $harness:ident: $($check:ident,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let harness = $harness().await;
            super::$check(Arc::clone(&harness.store)).await;
        }
    )*};
}

suite!(embedded, embedded_harness);
suite!(redis, redis_harness);

// ---- embedded only ----

#[tokio::test]
async fn embedded_reopen_keeps_sessions_outbox_and_seen_ids() {
    let dir = tempfile::tempdir().unwrap();
    let last_seq = {
        let store = open(None, dir.path()).await.unwrap();
        store.put_session(&session("s1")).await.unwrap();
        push_all(&*store, "s1", &["e1", "e2", "e3"]).await;
        store.outbox_remove("s1", "e1").await.unwrap();
        let mut second = store.outbox_pending("s1", 1).await.unwrap().remove(0);
        second.attempts = 2;
        store.outbox_update(&second).await.unwrap();
        store.outbox_pending("s1", 10).await.unwrap()[1].seq
    };

    let path = dir.path().join(EMBEDDED_FILE_NAME);
    assert!(path.is_file());
    let store = open(None, dir.path()).await.unwrap();
    assert_eq!(store.get_session("s1").await.unwrap(), Some(session("s1")));
    let pending = store.outbox_pending("s1", 10).await.unwrap();
    assert_eq!(ids(&pending), ["e2", "e3"]);
    assert_eq!(pending[0].attempts, 2);
    assert!(!store.outbox_push(event("s1", "e1")).await.unwrap());
    assert_eq!(store.outbox_sessions().await.unwrap(), ["s1"]);

    push_all(&*store, "s1", &["e4"]).await;
    let pending = store.outbox_pending("s1", 10).await.unwrap();
    assert!(pending[2].seq > last_seq, "seqs continue after a reopen");
}

#[tokio::test]
async fn embedded_seen_ids_expire_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join(EMBEDDED_FILE_NAME);
    let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&path))
        .await
        .unwrap()
        .unwrap();
    let t0 = unix_now_secs();
    let day = 24 * 60 * 60;

    assert!(store.push_at(event("s1", "e1"), t0).await.unwrap());
    store.outbox_remove("s1", "e1").await.unwrap();
    assert!(
        !store
            .push_at(event("s1", "e1"), t0 + 29 * day)
            .await
            .unwrap()
    );
    assert!(
        store
            .push_at(event("s1", "e1"), t0 + 30 * day)
            .await
            .unwrap()
    );

    // Still pending past the window: a duplicate all the same.
    assert!(
        !store
            .push_at(event("s1", "e1"), t0 + 61 * day)
            .await
            .unwrap()
    );
    assert_eq!(store.outbox_pending("s1", 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn open_treats_a_blank_redis_url_as_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(Some("  "), dir.path()).await.unwrap();
    store.ping().await.unwrap();
    assert!(dir.path().join(EMBEDDED_FILE_NAME).is_file());
}

// ---- redis only ----

#[tokio::test]
async fn redis_accepts_full_urls_through_open() {
    let server = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://{}", server.addr());
    let store = open(Some(&url), dir.path()).await.unwrap();
    store.put_session(&session("s1")).await.unwrap();
    assert_eq!(store.get_session("s1").await.unwrap(), Some(session("s1")));
    assert!(!dir.path().join(EMBEDDED_FILE_NAME).exists());
}

#[tokio::test]
async fn redis_unreachable_is_unavailable() {
    let port = free_port();
    let config = ::redis::aio::ConnectionManagerConfig::new().set_number_of_retries(0);
    let result = RedisStore::connect_with(&format!("127.0.0.1:{port}"), config).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn redis_lost_server_is_unavailable_not_a_hang() {
    let server = RedisServer::start().await;
    let store = RedisStore::connect(&server.addr()).await.unwrap();
    store.ping().await.unwrap();
    drop(server);
    let result = tokio::time::timeout(Duration::from_secs(30), store.ping())
        .await
        .expect("ping gave up within the bound");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

// ---- a private redis-server per test ----

struct RedisServer {
    child: Child,
    port: u16,
    /// Working directory, so nothing the server writes lands in the repo.
    _dir: tempfile::TempDir,
}

impl RedisServer {
    const READY_TIMEOUT: Duration = Duration::from_secs(5);

    async fn start() -> Self {
        // Re-raise a start-up panic as is, so its message (e.g. "install
        // redis-server") heads the test failure.
        match tokio::task::spawn_blocking(Self::start_blocking).await {
            Ok(server) => server,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("redis-server start-up task: {e}"),
        }
    }

    /// Retries a few ports: another process may grab the free port between
    /// our probe and the server's bind.
    fn start_blocking() -> Self {
        let mut last_failure = String::new();
        for _ in 0..3 {
            match Self::try_start(free_port()) {
                Ok(server) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("could not start redis-server: {last_failure}");
    }

    fn try_start(port: u16) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "redis-server is not on PATH; the Redis store tests need it: \
                         install it with `apt-get install redis-server`"
                    );
                }
                panic!("cannot run redis-server: {e}");
            });
        // From here on, Drop kills the child whatever happens.
        let mut server = Self {
            child,
            port,
            _dir: dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Self::READY_TIMEOUT;
        loop {
            if answers_ping(self.port) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status} (port {})", self.port));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no PING answer on port {} within {:?}",
                    self.port,
                    Self::READY_TIMEOUT
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free right now and never handed out before in this process. The
/// OS may offer a port again once its probe listener closes; two tests given
/// the same port would share one redis-server (the second server fails to
/// bind, and the first one answers its PING), mixing their keys.
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free local port");
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let mut reply = [0_u8; 7];
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .is_ok()
        && conn.write_all(b"PING\r\n").is_ok()
        && conn.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
