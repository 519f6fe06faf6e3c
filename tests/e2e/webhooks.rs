//! Webhook delivery: retries, dead letters and replay, signatures, order
//! across an outage.

use serde_json::json;

use crate::support::*;

const CONTACT: &str = "15550002222";

fn header<'a>(d: &'a Delivery, name: &str) -> &'a str {
    d.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Every delivery carries the headers and a valid signature of its raw body.
fn assert_signed(d: &Delivery) {
    assert_eq!(header(d, "x-wapi-event-id"), d.body["id"].as_str().unwrap());
    assert_eq!(header(d, "x-wapi-event"), d.body["event"].as_str().unwrap());
    assert!(header(d, "x-wapi-timestamp").parse::<u64>().is_ok());
    let want = format!("sha256={}", wapi::webhook::signature("test-secret", &d.raw));
    assert_eq!(
        header(d, "x-wapi-signature"),
        want,
        "signature of {}",
        d.body["id"]
    );
}

async fn linked(
    phone: &str,
    session: &str,
) -> (wa_sim::SimHandle, Receiver, tempfile::TempDir, Bridge) {
    let sim = sim().await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    bridge
        .link(&sim, session, &format!("{}{session}", hook.url), phone)
        .await;
    (sim, hook, dir, bridge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_after_5xx_and_dead_after_4xx_then_replayed() {
    let (sim, hook, _dir, bridge) = linked("15550008881", "w1").await;
    // Let the status events so far drain, so the script below meets the
    // messages of this test and nothing else.
    bridge.drained("w1").await;
    hook.script.lock().unwrap().extend([500, 500]);
    let id = sim
        .contact_send(CONTACT, "15550008881", "third time lucky", None)
        .await
        .unwrap();
    let d = eventually(DEADLINE, "delivered after two 500s", || async {
        hook.deliveries()
            .into_iter()
            .find(|d| d.body["payload"]["id"] == id)
    })
    .await;
    assert_eq!(header(&d, "x-wapi-attempt"), "3");
    assert_signed(&d);

    bridge.drained("w1").await;
    hook.script.lock().unwrap().push(400);
    let id2 = sim
        .contact_send(CONTACT, "15550008881", "rejected", None)
        .await
        .unwrap();
    let dead = eventually(DEADLINE, "a dead letter", || async {
        let v = bridge.json("/v1/sessions/w1/webhooks/dead").await;
        let list = v["dead"].as_array()?.clone();
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["last_status"], 400);
    assert_eq!(dead[0]["body"]["payload"]["id"], id2);
    let stats = bridge.json("/v1/sessions/w1/webhooks").await;
    assert_eq!(stats["dead"], 1);
    assert!(stats["delivered"].as_u64().unwrap() >= 2);

    let event_id = dead[0]["id"].as_str().unwrap();
    let r = bridge
        .post(
            &format!("/v1/sessions/w1/webhooks/dead/{event_id}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    eventually(DEADLINE, "the replayed event", || async {
        hook.deliveries()
            .into_iter()
            .find(|d| d.body["payload"]["id"] == id2)
    })
    .await;
    let stats = bridge.json("/v1/sessions/w1/webhooks").await;
    assert_eq!(stats["dead"], 0);
    let r = bridge
        .post("/v1/sessions/w1/webhooks/dead/evt_nope/replay", json!({}))
        .await;
    assert_eq!(r.status(), 404);

    // The same story in the metrics.
    let text = bridge.get("/metrics").await.text().await.unwrap();
    let m = parse_metrics(&text);
    assert!(metric(&m, r#"wapi_webhook_deliveries_total{outcome="retried"}"#) >= 2.0);
    assert!(metric(&m, r#"wapi_webhook_deliveries_total{outcome="dead"}"#) >= 1.0);
    assert!(metric(&m, r#"wapi_webhook_deliveries_total{outcome="delivered"}"#) >= 3.0);
    assert!(metric(&m, "wapi_messages_received_total") >= 2.0);
    assert_eq!(metric(&m, r#"wapi_sessions{status="WORKING"}"#), 1.0);
    assert_eq!(metric(&m, "wapi_webhook_queue_depth"), 0.0);
    assert!(metric(&m, "wapi_webhook_delivery_seconds_count") >= 3.0);
    assert!(
        m.iter()
            .any(|(n, _)| n.starts_with("wapi_webhook_delivery_seconds_bucket"))
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_receiver_loses_nothing_and_keeps_order() {
    let (sim, hook, _dir, bridge) = linked("15550008882", "w2").await;
    hook.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut sent = Vec::new();
    for i in 0..200 {
        sent.push(
            sim.contact_send(CONTACT, "15550008882", &format!("m{i}"), None)
                .await
                .unwrap(),
        );
    }
    // All 200 are committed while the receiver is down.
    eventually(DEADLINE, "200 pending", || async {
        let s = bridge.json("/v1/sessions/w2/webhooks").await;
        (s["pending"].as_u64() >= Some(200)).then_some(())
    })
    .await;
    hook.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let got = eventually(
        std::time::Duration::from_secs(15),
        "all 200 delivered",
        || async {
            let got: Vec<String> = hook
                .of("w2", "message")
                .iter()
                .map(|b| b["payload"]["id"].as_str().unwrap_or_default().to_string())
                .collect();
            (got.len() >= 200).then_some(got)
        },
    )
    .await;
    assert_eq!(got, sent, "exactly once, in the order sent");
    for d in hook.deliveries() {
        assert_signed(&d);
    }
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_text_reports_sent_delivered_and_read() {
    let (sim, hook, _dir, bridge) = linked("15550008883", "w3").await;
    let r = bridge
        .post(
            "/v1/sessions/w3/messages",
            json!({"to": CONTACT, "text": "status please"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    let status_of = |status: &'static str| {
        let hook = hook.clone();
        let id = id.clone();
        move || {
            let hook = hook.clone();
            let id = id.clone();
            async move {
                hook.of("w3", "message.status").into_iter().find(|e| {
                    e["payload"]["status"] == status
                        && e["payload"]["ids"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|i| *i == id))
                })
            }
        }
    };
    let sent = eventually(DEADLINE, "sent", status_of("sent")).await;
    assert_eq!(
        sent["payload"]["recipient"],
        format!("{CONTACT}@s.whatsapp.net")
    );
    assert!(sent["payload"]["timestamp"].as_i64().unwrap() > 1_600_000_000);
    eventually(DEADLINE, "delivered", status_of("delivered")).await;
    let r = reqwest::Client::new()
        .post(format!("{}/contacts/{CONTACT}/read", sim.admin_url()))
        .json(&json!({"id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let read = eventually(DEADLINE, "read", status_of("read")).await;
    assert_eq!(
        read["payload"]["recipient"],
        format!("{CONTACT}@s.whatsapp.net")
    );
    for d in hook.deliveries() {
        assert_signed(&d);
    }
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_2000_over_20_sessions_arrives_once_in_order() {
    let sim = std::sync::Arc::new(sim().await);
    let hook = Receiver::start().await;
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(
        &sim,
        dir.path(),
        &StoreKind::Redis(redis.url.clone()),
    ))
    .await;
    let sessions: Vec<(String, String)> = (0..20)
        .map(|i| (format!("b{i:02}"), format!("155500090{i:02}")))
        .collect();
    for (name, phone) in &sessions {
        bridge
            .link(&sim, name, &format!("{}{name}", hook.url), phone)
            .await;
    }
    // Every session's contact sends its 100 at once with the others.
    let mut senders = Vec::new();
    for (name, phone) in sessions.clone() {
        let sim = sim.clone();
        senders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..100 {
                ids.push(
                    sim.contact_send(CONTACT, &phone, &format!("{name}-{i}"), None)
                        .await
                        .unwrap(),
                );
            }
            (name, ids)
        }));
    }
    let mut sent = Vec::new();
    for s in senders {
        sent.push(within(std::time::Duration::from_secs(60), s).await.unwrap());
    }
    eventually(
        std::time::Duration::from_secs(60),
        "2000 delivered",
        || async {
            let n = hook
                .deliveries()
                .iter()
                .filter(|d| d.body["event"] == "message")
                .count();
            (n >= 2000).then_some(())
        },
    )
    .await;
    for (name, ids) in sent {
        let got: Vec<String> = hook
            .of(&name, "message")
            .iter()
            .map(|b| b["payload"]["id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(got, ids, "{name}: each once, in order");
    }
    bridge.stop().await;
}
