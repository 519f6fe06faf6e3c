//! `GET /v1/events` read as a plain client: the events of a linked session,
//! in order, as they happen; filters and the scope of session keys.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const ME: &str = "15550008801";
const CONTACT: &str = "15550008802";

/// Server-Sent Events read off a response: (event, id, data as JSON).
struct SseReader {
    body: reqwest::Response,
    buf: String,
}

impl SseReader {
    fn new(r: reqwest::Response) -> Self {
        Self {
            body: r,
            buf: String::new(),
        }
    }

    /// The next event (comments, the keep-alives, skipped).
    async fn next(&mut self) -> (String, String, Value) {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue;
                }
                return (
                    event,
                    id,
                    serde_json::from_str(&data).unwrap_or(Value::Null),
                );
            }
            let chunk = within(Duration::from_secs(10), self.body.chunk())
                .await
                .expect("a chunk")
                .expect("the stream is open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_a_sessions_events_in_order() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    let r = bridge.get("/v1/events?session=ev1").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut ev1 = SseReader::new(r);
    let mut all = SseReader::new(bridge.get("/v1/events").await);
    bridge
        .link(&sim, "ev1", &format!("{}ev1", rx.url), ME)
        .await;

    // The session's states as it links, then messages in order.
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("WORKING") {
        let (event, id, data) = ev1.next().await;
        assert_eq!(event, "session.status", "{data}");
        assert_eq!(data["id"], id.as_str());
        assert_eq!(data["session"], "ev1");
        states.push(data["payload"]["status"].as_str().unwrap().to_string());
    }
    assert!(states.contains(&"SCAN_QR_CODE".to_string()), "{states:?}");
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(contact_sends(&sim, CONTACT, json!({"to": ME, "text": format!("m{i}")})).await);
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        let (event, _, data) = ev1.next().await;
        if event == "message" {
            assert_eq!(data["payload"]["from"], format!("{CONTACT}@s.whatsapp.net"));
            got.push(data["payload"]["id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(got, sent, "in order");
    // The unfiltered stream had them too, after the session's states.
    let mut seen = 0;
    while seen < 5 {
        let (event, _, data) = all.next().await;
        if event == "message" && data["session"] == "ev1" {
            assert_eq!(data["payload"]["id"], sent[seen].as_str());
            seen += 1;
        }
    }

    // Health has the queue and what became of the posts.
    bridge.drained("ev1").await;
    let h = bridge.json("/v1/health").await;
    assert_eq!(h["queued"], 0, "{h}");
    assert!(h["deliveries"]["delivered"].as_u64().unwrap() >= 5, "{h}");
    assert_eq!(h["deliveries"]["dead"], 0, "{h}");
    assert_eq!(h["sessions"]["WORKING"], 1, "{h}");

    // An event the webhook does not take is still on the stream.
    let r = bridge
        .patch(
            "/v1/sessions/ev1",
            json!({"webhook_events": ["session.status"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let late = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "late"})).await;
    loop {
        let (event, _, data) = ev1.next().await;
        if event == "message" {
            assert_eq!(data["payload"]["id"], late.as_str());
            break;
        }
    }
    assert!(
        rx.of("ev1", "message")
            .iter()
            .all(|e| e["payload"]["id"] != late.as_str())
    );

    // Bad filters are 400s naming the field.
    let r = bridge.get("/v1/events?session=no%20such").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["errors"][0]["details"]
            .as_str()
            .unwrap()
            .starts_with("session:"),
        "{v}"
    );
    // Shutting down ends the streams (the shutdown is not held up).
    within(Duration::from_secs(15), bridge.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_key_streams_only_its_own_session() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.auth.api_keys = vec![wapi::config::Secret("events-admin-key-0123".into())];
    let bridge = Bridge::start(cfg).await;
    let admin = |r: reqwest::RequestBuilder| r.header("x-api-key", "events-admin-key-0123");
    let key = sessions_and_key(&bridge, "events-admin-key-0123", &["k1", "k2"]).await;
    let get = |path: &str| {
        bridge
            .http
            .get(format!("{}{path}", bridge.base))
            .header("x-api-key", key.clone())
            .send()
    };
    assert_eq!(get("/v1/events?session=k2").await.unwrap().status(), 403);
    let r = get("/v1/events").await.unwrap();
    assert_eq!(r.status(), 200);
    let mut mine = SseReader::new(r);
    // k2 starts, then k1: the key's stream shows only k1's events.
    for n in ["k2", "k1"] {
        let r = admin(
            bridge
                .http
                .post(format!("{}/v1/sessions/{n}/start", bridge.base)),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (event, _, data) = mine.next().await;
    assert_eq!(event, "session.status");
    assert_eq!(data["session"], "k1", "{data}");
    bridge.stop().await;
}

/// With WhatsApp unreachable, a session says why within the connection
/// timeout: its status's reason (API and events alike), and the QR route's
/// 404 says why there is no QR code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_cannot_reach_whatsapp_says_why() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    // Nothing listens there.
    cfg.whatsapp_url = format!("ws://127.0.0.1:{}/ws/chat", port());
    cfg.connection_timeout = Duration::from_secs(2);
    let bridge = Bridge::start(cfg).await;
    let mut stream = SseReader::new(bridge.get("/v1/events?session=u1").await);
    let r = bridge
        .post("/register-session/", json!({"session_id": "u1"}))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "STARTING", "{v}");
    let r = bridge.get("/get-qr-code/u1/").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("connecting to WhatsApp"),
        "{v}"
    );
    let info = eventually(Duration::from_secs(10), "a reason", || async {
        let v = bridge.json("/get-session-info/u1/").await;
        v["reason"].is_string().then_some(v)
    })
    .await;
    assert_eq!(info["status"], "STARTING", "{info}");
    let reason = info["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("cannot reach WhatsApp"), "{reason}");
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    let r = bridge.get("/v1/sessions/u1/qr").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["errors"][0]["details"]
            .as_str()
            .unwrap()
            .contains(&reason),
        "{v}"
    );
    // The same reason on the event stream.
    loop {
        let (event, _, data) = stream.next().await;
        if event == "session.status" && data["payload"]["reason"] == reason.as_str() {
            break;
        }
    }
    bridge.stop().await;
}

/// The device's logins as wa-sim counted them.
async fn logins(sim: &wa_sim::SimHandle, phone: &str) -> u64 {
    let v: Value = reqwest::get(format!("{}/devices", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["phone"] == phone)
        .and_then(|d| d["logins"].as_u64())
        .expect("the device")
}

/// Another client takes the device over (WhatsApp's `conflict`): the
/// session is FAILED `replaced` and the checkout does not fight back; a
/// start resumes it without a scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_session_fails_and_does_not_fight_back() {
    const PHONE: &str = "15550008811";
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Checkouts every second (the test config) and a client rebuilt after
    // a second without a connection: a loop would show at once.
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.connection_timeout = Duration::from_secs(1);
    let bridge = Bridge::start(cfg).await;
    bridge
        .link(&sim, "r1", &format!("{}r1", rx.url), PHONE)
        .await;
    let before = logins(&sim, PHONE).await;
    let r = admin_post(
        &sim,
        &format!("/devices/{PHONE}%3A1%40s.whatsapp.net/stream-error"),
        json!({"code": "409"}),
    )
    .await;
    assert!(r.status().is_success());
    let v = bridge.wait_status("r1", "FAILED").await;
    assert_eq!(v["reason"], "replaced", "{v}");
    // Over several checkouts nothing logs in again.
    let window = tokio::time::Instant::now() + Duration::from_millis(3500);
    while tokio::time::Instant::now() < window {
        let v = bridge.json("/get-session-info/r1/").await;
        assert_eq!(v["status"], "FAILED", "{v}");
        assert_eq!(logins(&sim, PHONE).await, before, "no reconnection");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = bridge.post("/v1/sessions/r1/start", json!({})).await;
    assert_eq!(r.status(), 200);
    bridge.wait_status("r1", "WORKING").await;
    assert_eq!(logins(&sim, PHONE).await, before + 1);
    bridge.stop().await;
}

async fn sim_version(sim: &wa_sim::SimHandle) -> Value {
    reqwest::get(format!("{}/version", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// WhatsApp raises its minimum version while sessions are linked: they are
/// refused as outdated, the bridge fetches the new version once (not once
/// per session), and every session is WORKING again with no rescan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outdated_sessions_learn_the_new_version_once_and_come_back() {
    const P1: &str = "15550008821";
    const P2: &str = "15550008822";
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    // Learned at start, from the service worker.
    let h = eventually(Duration::from_secs(10), "the version fetched", || async {
        let h = bridge.json("/v1/health").await;
        (h["whatsapp_version"]["source"] == "fetched").then_some(h)
    })
    .await;
    assert_eq!(h["whatsapp_version"]["version"], "2.3000.1030000000", "{h}");
    assert_eq!(h["whatsapp_version"]["pinned"], false);
    bridge.link(&sim, "v1", &format!("{}v1", rx.url), P1).await;
    bridge.link(&sim, "v2", &format!("{}v2", rx.url), P2).await;
    let fetched = sim_version(&sim).await["sw_js_fetches"].as_u64().unwrap();

    let r = admin_post(
        &sim,
        "/version",
        json!({"current_revision": 1_031_000_000u64, "min_revision": 1_031_000_000u64}),
    )
    .await;
    assert!(r.status().is_success());
    for p in [P1, P2] {
        device_admin(&sim, p, "disconnect").await;
    }
    // Both refused, then back with the new version, still linked.
    for (s, p) in [("v1", P1), ("v2", P2)] {
        eventually(Duration::from_secs(10), "client_outdated", || async {
            rx.of(s, "session.status")
                .into_iter()
                .find(|e| e["payload"]["reason"] == "client_outdated")
        })
        .await;
        eventually(
            Duration::from_secs(10),
            "logged in with the new version",
            || async {
                let v: Value = reqwest::get(format!("{}/devices", sim.admin_url()))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                v["devices"].as_array()?.iter().find(|d| {
                    d["phone"] == p && d["connected"] == true && d["version"] == "2.3000.1031000000"
                })?;
                Some(())
            },
        )
        .await;
        bridge.wait_status(s, "WORKING").await;
    }
    assert_eq!(
        sim_version(&sim).await["sw_js_fetches"].as_u64().unwrap(),
        fetched + 1,
        "one fetch for both sessions"
    );
    let h = bridge.json("/v1/health").await;
    assert_eq!(h["whatsapp_version"]["version"], "2.3000.1031000000", "{h}");
    // Still the same devices: messages flow without a rescan.
    let id = contact_sends(&sim, CONTACT, json!({"to": P1, "text": "still there?"})).await;
    event_of(&rx, &id, Duration::from_secs(10)).await;
    bridge.stop().await;

    // A pinned version is announced as pinned and kept.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.whatsapp_version = Some((2, 3000, 1_031_000_001));
    let bridge = Bridge::start(cfg).await;
    let h = bridge.json("/v1/health").await;
    assert_eq!(
        h["whatsapp_version"],
        json!({"version": "2.3000.1031000001", "source": "pinned", "pinned": true})
    );
    bridge.stop().await;
}
