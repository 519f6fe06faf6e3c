//! Chat actions (read receipts, typing, presence), lookups (number checks,
//! profiles), the events about contacts (calls, typing, number changes,
//! messages that could not be decrypted), and status events kept through a
//! store outage.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const ME: &str = "15550009001";
const CONTACT: &str = "15550009002";

async fn admin_get(sim: &wa_sim::SimHandle, path: &str) -> Value {
    reqwest::get(format!("{}{path}", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn ok(r: reqwest::Response) -> Value {
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{v}");
    v
}

/// The first event of a kind on a session path.
async fn first(rx: &Receiver, session: &str, kind: &str) -> Value {
    eventually(Duration::from_secs(10), kind, || async {
        rx.of(session, kind).into_iter().next()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_typing_and_presence_reach_whatsapp() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    bridge.link(&sim, "c1", &format!("{}c1", rx.url), ME).await;
    let a = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "one"})).await;
    let b = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "two"})).await;
    event_of(&rx, &b, Duration::from_secs(10)).await;

    let v = ok(bridge
        .post(
            &format!("/v1/sessions/c1/chats/{CONTACT}/read"),
            json!({"ids": [a, b]}),
        )
        .await)
    .await;
    assert_eq!(v["read"], 2);
    let receipts = eventually(Duration::from_secs(10), "read receipts", || async {
        let r = admin_get(&sim, &format!("/contacts/{CONTACT}/receipts")).await;
        let list = r["receipts"].as_array().cloned().unwrap_or_default();
        let read: Vec<Value> = list.into_iter().filter(|r| r["type"] == "read").collect();
        (read.len() >= 2).then_some(read)
    })
    .await;
    for id in [&a, &b] {
        assert!(
            receipts.iter().any(|r| r["id"] == id.as_str()),
            "{receipts:?}"
        );
    }

    // All up to an id: the two later messages, not the ones read above.
    let c = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "three"})).await;
    let d = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "four"})).await;
    event_of(&rx, &d, Duration::from_secs(10)).await;
    let v = ok(bridge
        .post(
            &format!("/v1/sessions/c1/chats/{CONTACT}/read"),
            json!({"up_to": d}),
        )
        .await)
    .await;
    assert_eq!(v["read"], 2, "{v}");
    eventually(Duration::from_secs(10), "read up to", || async {
        let r = admin_get(&sim, &format!("/contacts/{CONTACT}/receipts")).await;
        let list = r["receipts"].as_array().cloned().unwrap_or_default();
        [&c, &d]
            .iter()
            .all(|id| {
                list.iter()
                    .any(|r| r["id"] == id.as_str() && r["type"] == "read")
            })
            .then_some(())
    })
    .await;
    let r = bridge
        .post(
            &format!("/v1/sessions/c1/chats/{CONTACT}/read"),
            json!({"up_to": d}),
        )
        .await;
    assert_eq!(r.status(), 404, "nothing unread up to it any more");

    for state in ["composing", "recording", "paused"] {
        ok(bridge
            .post(
                &format!("/v1/sessions/c1/chats/{CONTACT}/presence"),
                json!({"state": state}),
            )
            .await)
        .await;
    }
    eventually(Duration::from_secs(10), "chat states", || async {
        let r = admin_get(&sim, &format!("/contacts/{CONTACT}/chatstates")).await;
        let states: Vec<String> = r["chatstates"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["state"].as_str().map(str::to_string))
            .collect();
        (states == ["composing", "recording", "paused"]).then_some(())
    })
    .await;

    ok(bridge
        .post("/v1/sessions/c1/presence", json!({"state": "available"}))
        .await)
    .await;
    eventually(Duration::from_secs(10), "own presence", || async {
        let r = admin_get(&sim, &format!("/accounts/{ME}/presence")).await;
        (r["state"] == "available").then_some(())
    })
    .await;

    // Bad input names the field.
    for (path, body, field) in [
        (
            format!("/v1/sessions/c1/chats/{CONTACT}/read"),
            json!({"ids": []}),
            "ids",
        ),
        (
            format!("/v1/sessions/c1/chats/{CONTACT}/read"),
            json!({"ids": ["a b"]}),
            "ids[0]",
        ),
        (
            "/v1/sessions/c1/chats/not%20a%20chat/read".to_string(),
            json!({"ids": ["X"]}),
            "chat",
        ),
        (
            format!("/v1/sessions/c1/chats/{CONTACT}/presence"),
            json!({"state": "dancing"}),
            "state",
        ),
        (
            "/v1/sessions/c1/presence".to_string(),
            json!({"state": "away"}),
            "state",
        ),
    ] {
        let r = bridge.post(&path, body.clone()).await;
        assert_eq!(r.status(), 400, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        assert!(
            error_text(&v)
                .unwrap_or_default()
                .starts_with(&format!("{field}:")),
            "{v}"
        );
    }
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_checks_and_contact_profiles() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    bridge.link(&sim, "c2", &format!("{}c2", rx.url), ME).await;
    let other = "15550009003";
    bridge
        .link(&sim, "c3", &format!("{}c3", rx.url), other)
        .await;
    let absent = "15550009999";
    let r = admin_post(
        &sim,
        &format!("/contacts/{absent}/profile"),
        json!({"on_whatsapp": false}),
    )
    .await;
    assert!(r.status().is_success());
    let r = admin_post(
        &sim,
        &format!("/contacts/{CONTACT}/profile"),
        json!({"status": "Available for orders", "picture": true}),
    )
    .await;
    assert!(r.status().is_success());

    let v = ok(bridge
        .post(
            "/v1/sessions/c2/contacts/check",
            json!({"phones": [format!("+{other}"), CONTACT, absent]}),
        )
        .await)
    .await;
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{v}");
    assert_eq!(results[0]["phone"], other);
    assert_eq!(results[0]["exists"], true, "a linked account: {v}");
    assert_eq!(results[0]["jid"], format!("{other}@s.whatsapp.net"));
    assert_eq!(results[1]["exists"], true, "a contact: {v}");
    assert!(
        results[1]["lid"]
            .as_str()
            .is_some_and(|l| l.ends_with("@lid")),
        "its LID: {v}"
    );
    assert_eq!(results[2]["exists"], false, "an absent number: {v}");
    assert!(results[2]["jid"].is_null());

    let p = ok(bridge
        .get(&format!("/v1/sessions/c2/contacts/{CONTACT}"))
        .await)
    .await;
    assert_eq!(p["status"], "Available for orders", "{p}");
    assert!(
        p["picture_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "{p}"
    );
    let p = ok(bridge
        .get(&format!("/v1/sessions/c2/contacts/{other}"))
        .await)
    .await;
    assert!(p["picture_url"].is_null(), "{p}");

    let many: Vec<String> = (0..301).map(|i| format!("1555{i:07}")).collect();
    for (body, field) in [
        (json!({"phones": []}), "phones"),
        (json!({"phones": ["call me"]}), "phones[0]"),
        (json!({"phones": many}), "phones"),
    ] {
        let r = bridge.post("/v1/sessions/c2/contacts/check", body).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert!(
            error_text(&v)
                .unwrap_or_default()
                .starts_with(&format!("{field}:")),
            "{v}"
        );
    }
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_typing_number_changes_and_undecryptable_messages_are_posted() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.reject_calls = true;
    let bridge = Bridge::start(cfg).await;
    bridge
        .link_with(
            &sim,
            json!({"session_id": "c4", "webhook_url": format!("{}c4", rx.url),
                   "webhook_events": ["message", "call", "presence", "contact.number_changed",
                                      "message.undecryptable"]}),
            ME,
        )
        .await;

    let r = admin_post(
        &sim,
        &format!("/contacts/{CONTACT}/call"),
        json!({"to": ME}),
    )
    .await;
    assert!(r.status().is_success());
    let call_id = r.json::<Value>().await.unwrap()["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    let call = first(&rx, "c4", "call").await;
    assert_eq!(call["payload"]["id"], call_id.as_str(), "{call}");
    assert_eq!(call["payload"]["from"], format!("{CONTACT}@s.whatsapp.net"));
    assert_eq!(call["payload"]["rejected"], true, "WAPI_REJECT_CALLS");
    eventually(Duration::from_secs(10), "the call rejected", || async {
        let r = admin_get(&sim, &format!("/contacts/{CONTACT}/calls")).await;
        r["calls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["call_id"] == call_id.as_str()).cloned())
            .filter(|c| c["state"] == "rejected")
    })
    .await;

    let r = admin_post(
        &sim,
        &format!("/contacts/{CONTACT}/chatstate"),
        json!({"to": ME, "state": "composing"}),
    )
    .await;
    assert!(r.status().is_success());
    let p = first(&rx, "c4", "presence").await;
    assert_eq!(p["payload"]["state"], "composing", "{p}");
    assert_eq!(p["payload"]["from"], format!("{CONTACT}@s.whatsapp.net"));
    // Online and last seen, once subscribed to.
    let r = bridge
        .post(
            &format!("/v1/sessions/c4/contacts/{CONTACT}/subscribe"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = admin_post(
        &sim,
        &format!("/contacts/{CONTACT}/presence"),
        json!({"to": ME, "state": "unavailable", "last_seen": 1_763_700_000}),
    )
    .await;
    assert!(r.status().is_success());
    let seen = eventually(Duration::from_secs(10), "last seen", || async {
        rx.of("c4", "presence")
            .into_iter()
            .find(|e| e["payload"]["state"] == "unavailable")
    })
    .await;
    assert_eq!(seen["payload"]["last_seen"], 1_763_700_000, "{seen}");

    let bad = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "text": "garbled", "undecryptable": true}),
    )
    .await;
    let u = first(&rx, "c4", "message.undecryptable").await;
    assert_eq!(u["payload"]["id"], bad.as_str(), "{u}");
    assert_eq!(u["payload"]["from"], format!("{CONTACT}@s.whatsapp.net"));

    let r = admin_post(
        &sim,
        &format!("/contacts/{CONTACT}/change-number"),
        json!({"to": ME, "new_phone": "15550009777"}),
    )
    .await;
    assert!(r.status().is_success());
    let n = first(&rx, "c4", "contact.number_changed").await;
    assert_eq!(
        n["payload"]["old"],
        format!("{CONTACT}@s.whatsapp.net"),
        "{n}"
    );
    assert_eq!(n["payload"]["new"], "15550009777@s.whatsapp.net");
    bridge.stop().await;
}

/// `message.status` events raised while Redis is down are kept and posted
/// once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_events_raised_during_a_store_outage_are_posted_after_it() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let data = tempfile::tempdir().unwrap();
    let redis = Redis::start_persistent(data.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(
        &sim,
        dir.path(),
        &StoreKind::Redis(redis.url.clone()),
    ))
    .await;
    bridge.link(&sim, "c5", &format!("{}c5", rx.url), ME).await;

    let port = redis.kill();
    let r = bridge
        .post(
            "/v1/sessions/c5/messages",
            json!({"to": CONTACT, "text": "sent in the dark"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The contact has it (and has sent its delivery receipt) while the
    // store is still down.
    eventually(Duration::from_secs(10), "the message delivered", || async {
        inbox(&sim, CONTACT)
            .await
            .into_iter()
            .find(|m| m["id"] == id.as_str())
    })
    .await;

    let _redis = Redis::start_persistent_on(port, data.path()).await;
    for status in ["sent", "delivered"] {
        eventually(Duration::from_secs(15), status, || async {
            rx.of("c5", "message.status").into_iter().find(|e| {
                e["payload"]["status"] == status
                    && e["payload"]["ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|i| i == id.as_str()))
            })
        })
        .await;
    }
    bridge.stop().await;
}
