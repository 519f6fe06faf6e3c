//! The bridge's main path: register, link by QR, forward, send, restart,
//! unlink, several sessions, bad input.

use serde_json::json;

use crate::support::*;

const PHONE: &str = "15550001111";
const CONTACT: &str = "15550002222";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_path_with_the_embedded_store() {
    main_path(StoreKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_path_with_redis() {
    let redis = Redis::start().await;
    main_path(StoreKind::Redis(redis.url.clone())).await;
}

async fn main_path(store: StoreKind) {
    let sim = sim().await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &store)).await;

    // Register, scan the PNG, WORKING; the QR image goes once linked.
    bridge
        .link(&sim, "s1", &format!("{}s1", hook.url), PHONE)
        .await;
    assert!(dir.path().join("sessions/s1.db").exists());
    assert!(!dir.path().join("qr-codes/s1.png").exists());
    assert_eq!(bridge.get("/get-qr-code/s1/").await.status(), 404);
    let info = bridge.json("/get-session-info/s1/").await;
    assert_eq!(info["jid"], format!("{PHONE}:1@s.whatsapp.net"));
    let conn = bridge.json("/get-active-connection-info/s1").await;
    assert_eq!(conn["connected"], true);

    // A contact's message reaches the webhook with the native fields.
    let id = sim
        .contact_send(CONTACT, PHONE, "hello", Some("Alice"))
        .await
        .unwrap();
    let ev = eventually(DEADLINE, "message webhook", || async {
        hook.of("s1", "message")
            .into_iter()
            .find(|e| e["payload"]["id"] == id)
    })
    .await;
    assert!(ev["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(ev["session"], "s1");
    assert!(ev["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    let p = &ev["payload"];
    assert_eq!(p["chat"], format!("{CONTACT}@s.whatsapp.net"));
    assert_eq!(p["from"], format!("{CONTACT}@s.whatsapp.net"));
    assert!(p.get("from_lid").is_some());
    assert_eq!(p["push_name"], "Alice");
    assert_eq!(p["from_me"], false);
    assert_eq!(p["is_group"], false);
    assert_eq!(p["type"], "text");
    assert_eq!(p["text"], "hello");
    assert!(p["timestamp"].as_i64().unwrap() > 1_600_000_000);
    // And session.status events came before it.
    assert!(!hook.of("s1", "session.status").is_empty());

    // wapi's send-message reaches the contact's inbox.
    let r = bridge
        .post(
            "/send-message/",
            json!({"chat_id": format!("{CONTACT}@s.whatsapp.net"), "text": "hi Alice", "session_name": "s1"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let sent: serde_json::Value = r.json().await.unwrap();
    let mid = sent["message_id"].as_str().unwrap().to_string();
    let inbox = eventually(DEADLINE, "contact inbox", || async {
        let i = sim.inbox(CONTACT);
        i.iter().any(|m| m.id == mid).then_some(i)
    })
    .await;
    assert!(inbox.iter().any(|m| m.text == "hi Alice"));

    // Stop the bridge; a message arrives meanwhile; start again on the same
    // files: WORKING with no QR, and the message is forwarded.
    bridge.stop().await;
    let id2 = sim
        .contact_send(CONTACT, PHONE, "while down", Some("Alice"))
        .await
        .unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &store)).await;
    bridge.wait_status("s1", "WORKING").await;
    assert_eq!(bridge.get("/get-qr-code/s1/").await.status(), 404);
    eventually(DEADLINE, "message sent while down", || async {
        hook.of("s1", "message")
            .into_iter()
            .find(|e| e["payload"]["id"] == id2)
    })
    .await;

    // The phone unlinks the device: LOGGED_OUT, files gone, entry kept.
    let jid = format!("{PHONE}%3A1%40s.whatsapp.net");
    let r = reqwest::Client::new()
        .post(format!("{}/devices/{jid}/logout", sim.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    bridge.wait_status("s1", "LOGGED_OUT").await;
    eventually(DEADLINE, "session file removed", || async {
        (!dir.path().join("sessions/s1.db").exists()).then_some(())
    })
    .await;
    let v = bridge.json("/v1/sessions/s1").await;
    assert_eq!(v["status"], "LOGGED_OUT");
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_each_get_only_their_own_messages() {
    let sim = sim().await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    bridge
        .link(&sim, "a", &format!("{}a", hook.url), "15550003331")
        .await;
    bridge
        .link(&sim, "b", &format!("{}b", hook.url), "15550003332")
        .await;
    let to_a = sim
        .contact_send(CONTACT, "15550003331", "for a", None)
        .await
        .unwrap();
    let to_b = sim
        .contact_send(CONTACT, "15550003332", "for b", None)
        .await
        .unwrap();
    eventually(DEADLINE, "both delivered", || async {
        (hook.of("/a", "message").len() == 1 && hook.of("/b", "message").len() == 1).then_some(())
    })
    .await;
    assert_eq!(hook.of("/a", "message")[0]["payload"]["id"], to_a);
    assert_eq!(hook.of("/a", "message")[0]["session"], "a");
    assert_eq!(hook.of("/b", "message")[0]["payload"]["id"], to_b);
    assert_eq!(hook.of("/b", "message")[0]["session"], "b");

    // The resource API sends too, by phone number.
    let r = bridge
        .post(
            "/v1/sessions/b/messages",
            json!({"to": CONTACT, "text": "from b"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["to"], format!("{CONTACT}@s.whatsapp.net"));
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    let r = bridge
        .post("/v1/sessions", json!({"name": "idle", "start": false}))
        .await;
    assert_eq!(r.status(), 201);
    let cases: Vec<(&str, &str, serde_json::Value, u16)> = vec![
        (
            "POST",
            "/register-session/",
            json!({"session_id": "../etc"}),
            400,
        ),
        (
            "POST",
            "/register-session/",
            json!({"session_id": "x".repeat(65)}),
            400,
        ),
        (
            "POST",
            "/register-session",
            json!({"webhook_url": "http://x"}),
            400,
        ),
        (
            "POST",
            "/register-session/",
            json!({"session_id": "ok", "webhook_url": "ftp://x"}),
            400,
        ),
        (
            "POST",
            "/send-message/",
            json!({"chat_id": "1@s.whatsapp.net", "text": "x", "session_name": "nope"}),
            404,
        ),
        (
            "POST",
            "/send-message/",
            json!({"chat_id": "1@s.whatsapp.net", "session_name": "idle"}),
            400,
        ),
        (
            "POST",
            "/send-message/",
            json!({"chat_id": "15550002222", "text": "x", "session_name": "idle"}),
            409,
        ),
        ("GET", "/get-qr-code/nope/", json!(null), 404),
        ("GET", "/get-session-info/bad%20name/", json!(null), 400),
        ("POST", "/v1/sessions", json!({"name": "idle"}), 409),
        ("POST", "/v1/sessions", json!({"name": 5}), 400),
        (
            "POST",
            "/v1/sessions/idle/messages",
            json!({"to": "15550002222", "text": "x"}),
            409,
        ),
        (
            "POST",
            "/v1/sessions/idle/messages",
            json!({"to": "", "text": "x"}),
            400,
        ),
        (
            "POST",
            "/v1/sessions/idle/pair-code",
            json!({"phone": "12"}),
            400,
        ),
        ("GET", "/v1/sessions/nope", json!(null), 404),
        ("GET", "/v1/sessions/idle/qr", json!(null), 404),
    ];
    for (method, path, body, want) in cases {
        let r = if method == "GET" {
            bridge.get(path).await
        } else {
            bridge.post(path, body.clone()).await
        };
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, want, "{method} {path} {body}: {text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert!(
            error_text(&json).is_some(),
            "{path}: no error message: {text}"
        );
    }
    // Malformed JSON.
    let r = bridge
        .http
        .post(format!("{}/v1/sessions", bridge.base))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_linking_and_the_session_lifecycle() {
    let sim = sim().await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    let r = bridge
        .post(
            "/v1/sessions",
            json!({"name": "pc", "webhook_url": format!("{}pc", hook.url)}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = bridge
        .post("/v1/sessions/pc/pair-code", json!({"phone": "15550007777"}))
        .await;
    assert_eq!(r.status(), 200);
    let code: serde_json::Value = r.json().await.unwrap();
    let code = code["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 8);
    let linked = sim
        .enter_pair_code("15550007777", &code, "Paired")
        .await
        .expect("enter code");
    assert_eq!(linked.jid, "15550007777:1@s.whatsapp.net");
    bridge.wait_status("pc", "WORKING").await;

    // A dropped connection: the client reconnects and the session is WORKING again.
    let r = reqwest::Client::new()
        .post(format!(
            "{}/devices/15550007777%3A1%40s.whatsapp.net/disconnect",
            sim.admin_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(DEADLINE, "a reconnect counted", || async {
        let v = bridge.json("/get-active-connection-info/pc/").await;
        (v["connected"] == true && v["reconnects"].as_u64() >= Some(1)).then_some(())
    })
    .await;

    // Stop, start, restart.
    let r = bridge.post("/v1/sessions/pc/stop", json!({})).await;
    assert_eq!(r.status(), 200);
    bridge.wait_status("pc", "STOPPED").await;
    let r = bridge.post("/v1/sessions/pc/start", json!({})).await;
    assert_eq!(r.status(), 200);
    bridge.wait_status("pc", "WORKING").await;
    let r = bridge.post("/v1/sessions/pc/restart", json!({})).await;
    assert_eq!(r.status(), 200);
    bridge.wait_status("pc", "WORKING").await;

    // Delete: logged out at WhatsApp, files and entry gone.
    let r = bridge
        .http
        .delete(format!("{}/v1/sessions/pc", bridge.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(bridge.get("/v1/sessions/pc").await.status(), 404);
    assert!(!dir.path().join("sessions/pc.db").exists());
    eventually(DEADLINE, "device unlinked at the server", || async {
        let d: serde_json::Value = reqwest::get(format!("{}/devices", sim.admin_url()))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        d["devices"].as_array()?.is_empty().then_some(())
    })
    .await;
    bridge.stop().await;
}
