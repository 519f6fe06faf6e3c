//! Webhook formats (native, cloud, wapi), per-session secrets and event
//! filters, and the incoming kinds beyond text (replies, media, location).

use serde_json::{Value, json};
use wa_sim::proto as wa;

use crate::support::*;

const CONTACT: &str = "15550003333";

fn header<'a>(d: &'a Delivery, name: &str) -> &'a str {
    d.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn signed_with(secret: &str, d: &Delivery) -> String {
    format!("sha256={}", wapi::webhook::signature(secret, &d.raw))
}

/// Deliveries for a session path of one event kind (from the header, which
/// every format carries).
fn of(hook: &Receiver, session: &str, event: &str) -> Vec<Delivery> {
    hook.deliveries()
        .into_iter()
        .filter(|d| d.path.ends_with(session) && header(d, "x-wapi-event") == event)
        .collect()
}

/// A reply that quotes `quoted` (sent by `quoted_from`).
fn reply(text: &str, quoted: &str, quoted_from: &str) -> wa::Message {
    wa::Message {
        extended_text_message: buffa::MessageField::some(wa::message::ExtendedTextMessage {
            text: Some(text.into()),
            context_info: buffa::MessageField::some(wa::ContextInfo {
                stanza_id: Some(quoted.into()),
                participant: Some(quoted_from.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_format_matches_the_cloud_api_and_is_signed_with_the_session_secret() {
    let sim = sim().await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    let phone = "15550007771";
    bridge
        .link_with(
            &sim,
            json!({
                "session_id": "c1",
                "webhook_url": format!("{}c1", hook.url),
                "webhook_format": "cloud",
                "webhook_secret": "cloud-app-secret",
            }),
            phone,
        )
        .await;

    // A reply from a contact.
    let id = sim
        .contact_send_message(
            CONTACT,
            phone,
            &reply(
                "yes, that one",
                "QUOTED1",
                &format!("{phone}@s.whatsapp.net"),
            ),
            Some("Carol"),
        )
        .await
        .unwrap();
    let d = eventually(DEADLINE, "the cloud message", || async {
        of(&hook, "c1", "message").into_iter().next()
    })
    .await;
    let b = &d.body;
    assert_eq!(b["object"], "whatsapp_business_account");
    let entry = &b["entry"][0];
    assert_eq!(entry["id"], "c1");
    let change = &entry["changes"][0];
    assert_eq!(change["field"], "messages");
    let v = &change["value"];
    assert_eq!(v["messaging_product"], "whatsapp");
    assert_eq!(
        v["metadata"],
        json!({"display_phone_number": phone, "phone_number_id": "c1"})
    );
    let c = &v["contacts"][0];
    assert_eq!(c["profile"], json!({"name": "Carol"}));
    assert_eq!(c["wa_id"], CONTACT);
    // The business-scoped id (its derivation is checked in cloud.rs).
    assert!(c["user_id"].as_str().unwrap().starts_with("US.1"), "{c}");
    let m = &v["messages"][0];
    assert_eq!(m["from"], CONTACT);
    assert_eq!(m["id"], id.as_str());
    let ts: i64 = m["timestamp"].as_str().expect("a string").parse().unwrap();
    assert!(ts > 1_600_000_000);
    assert_eq!(m["type"], "text");
    assert_eq!(m["text"], json!({"body": "yes, that one"}));
    assert_eq!(m["context"], json!({"from": phone, "id": "QUOTED1"}));
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    // Signed both ways, with the session's own secret.
    let want = signed_with("cloud-app-secret", &d);
    assert_eq!(header(&d, "x-hub-signature-256"), want);
    assert_eq!(header(&d, "x-wapi-signature"), want);

    // A text sent through the bridge: sent, delivered, then read.
    let r = bridge
        .post(
            "/v1/sessions/c1/messages",
            json!({"to": CONTACT, "text": "thanks"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let out: Value = r.json().await.unwrap();
    let out_id = out["id"].as_str().unwrap().to_string();
    let status = |want: &'static str| {
        let hook = hook.clone();
        let out_id = out_id.clone();
        move || {
            let hook = hook.clone();
            let out_id = out_id.clone();
            async move {
                of(&hook, "c1", "message.status").into_iter().find_map(|d| {
                    let s = d.body["entry"][0]["changes"][0]["value"]["statuses"][0].clone();
                    (s["id"] == out_id.as_str() && s["status"] == want).then_some((d, s))
                })
            }
        }
    };
    let (_, sent) = eventually(DEADLINE, "sent", status("sent")).await;
    assert_eq!(sent["recipient_id"], CONTACT);
    assert!(sent["timestamp"].as_str().unwrap().parse::<i64>().is_ok());
    eventually(DEADLINE, "delivered", status("delivered")).await;
    let r = reqwest::Client::new()
        .post(format!("{}/contacts/{CONTACT}/read", sim.admin_url()))
        .json(&json!({"id": out_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (d, read) = eventually(DEADLINE, "read", status("read")).await;
    assert_eq!(read["recipient_id"], CONTACT);
    assert_eq!(
        d.body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"],
        "c1"
    );

    // Every delivery verifies; the Cloud format has no session.status.
    for d in hook.deliveries() {
        assert_eq!(
            header(&d, "x-hub-signature-256"),
            signed_with("cloud-app-secret", &d)
        );
        assert_ne!(header(&d, "x-wapi-event"), "session.status");
    }
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_kinds_filters_and_the_wapi_format() {
    let sim = sim().await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    let phone = "15550007772";
    bridge
        .link_with(
            &sim,
            json!({
                "session_id": "k1",
                "webhook_url": format!("{}k1", hook.url),
                "webhook_events": ["message"],
            }),
            phone,
        )
        .await;

    let image = wa::Message {
        image_message: buffa::MessageField::some(wa::message::ImageMessage {
            caption: Some("the cat".into()),
            mimetype: Some("image/jpeg".into()),
            file_length: Some(12345),
            file_sha256: Some(vec![7; 32]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let doc = wa::Message {
        document_message: buffa::MessageField::some(wa::message::DocumentMessage {
            mimetype: Some("application/pdf".into()),
            file_name: Some("invoice.pdf".into()),
            file_length: Some(999),
            ..Default::default()
        }),
        ..Default::default()
    };
    let voice = wa::Message {
        audio_message: buffa::MessageField::some(wa::message::AudioMessage {
            mimetype: Some("audio/ogg; codecs=opus".into()),
            ptt: Some(true),
            seconds: Some(4),
            ..Default::default()
        }),
        ..Default::default()
    };
    let place = wa::Message {
        location_message: buffa::MessageField::some(wa::message::LocationMessage {
            degrees_latitude: Some(52.5),
            degrees_longitude: Some(13.4),
            name: Some("Office".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for m in [&image, &doc, &voice, &place, &reply("ok", "Q2", CONTACT)] {
        ids.push(
            sim.contact_send_message(CONTACT, phone, m, None)
                .await
                .unwrap(),
        );
    }
    let got = eventually(DEADLINE, "five messages", || async {
        let got = hook.of("k1", "message");
        (got.len() >= 5).then_some(got)
    })
    .await;
    let p: Vec<&Value> = got.iter().map(|b| &b["payload"]).collect();
    assert_eq!(
        p.iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(p[0]["type"], "image");
    assert_eq!(p[0]["caption"], "the cat");
    assert_eq!(p[0]["media"]["mimetype"], "image/jpeg");
    assert_eq!(p[0]["media"]["file_size"], 12345);
    assert!(p[0]["media"]["sha256"].is_string());
    assert_eq!(p[1]["type"], "document");
    assert_eq!(p[1]["media"]["file_name"], "invoice.pdf");
    assert_eq!(p[2]["type"], "voice");
    assert_eq!(p[2]["media"]["seconds"], 4);
    assert_eq!(p[3]["type"], "location");
    assert_eq!(p[3]["location"]["latitude"], 52.5);
    assert_eq!(p[3]["location"]["name"], "Office");
    assert_eq!(p[4]["type"], "text");
    assert_eq!(p[4]["reply_to"], "Q2");
    assert_eq!(p[4]["is_group"], false);
    assert_eq!(got[0]["account"], format!("{phone}@s.whatsapp.net"));
    // The filter: only messages, no session.status (there were several).
    assert!(
        hook.deliveries()
            .iter()
            .all(|d| header(d, "x-wapi-event") == "message")
    );

    // Switched to wapi's body by PATCH; the URL and filter stay.
    let r = bridge
        .patch("/v1/sessions/k1", json!({"webhook_format": "wapi"}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["webhook_format"], "wapi");
    assert_eq!(v["webhook_events"], json!(["message"]));
    assert_eq!(v["webhook_url"], format!("{}k1", hook.url));
    let id = sim
        .contact_send(CONTACT, phone, "old school", Some("Dan"))
        .await
        .unwrap();
    let d = eventually(DEADLINE, "the wapi body", || async {
        hook.deliveries()
            .into_iter()
            .find(|d| d.body["Info"]["Id"] == id.as_str())
    })
    .await;
    let info = &d.body["Info"];
    assert_eq!(info["RemoteJid"], format!("{CONTACT}@s.whatsapp.net"));
    assert_eq!(info["SenderJid"], format!("{CONTACT}@s.whatsapp.net"));
    assert_eq!(info["FromMe"], false);
    assert_eq!(info["PushName"], "Dan");
    assert!(info["Timestamp"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(d.body["Text"], "old school");
    // The global secret signs sessions without their own.
    assert_eq!(
        header(&d, "x-wapi-signature"),
        signed_with("test-secret", &d)
    );

    // Bad settings name their field.
    for (body, field) in [
        (json!({"webhook_format": "xml"}), "webhook_format"),
        (
            json!({"webhook_events": ["message", "typing"]}),
            "webhook_events",
        ),
        (json!({"webhook_url": "ftp://x"}), "webhook_url"),
    ] {
        let r = bridge.patch("/v1/sessions/k1", body).await;
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert!(error_text(&e).unwrap().contains(field), "{e}");
    }
    bridge.stop().await;
}
