//! The Cloud API drop-in, played by a Cloud API client with raw HTTP: the
//! Graph routes (`/v22.0/{phone_number_id}/messages`, `/media`, media
//! objects, the phone number), their errors, and the current Cloud webhooks
//! (business-scoped ids, statuses, the verification handshake).

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::media::{b64, bytes, file_server, sha_hex};
use crate::support::*;

const ME: &str = "15550006001";
const CONTACT: &str = "15550006002";
const KEY: &str = "cloud-api-key-0123456789";
const APP_SECRET: &str = "cloud-app-secret";
const VERIFY: &str = "my-verify-token";
const WAIT: Duration = Duration::from_secs(10);

/// A Cloud API client: bearer token, JSON in and out.
struct Graph {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Graph {
    fn new(base: &str, token: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.bearer_auth(&self.token).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// A message send that must succeed; checks the reference's response
    /// shape and returns the message id.
    async fn message(&self, path: &str, body: Value) -> (String, Value) {
        let (s, v) = self.post(path, body.clone()).await;
        assert_eq!(s, 200, "send {body}: {v}");
        assert_eq!(v["messaging_product"], "whatsapp", "{v}");
        assert_eq!(v["contacts"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["messages"].as_array().map(Vec::len), Some(1), "{v}");
        let id = v["messages"][0]["id"].as_str().expect("an id").to_string();
        (id, v["contacts"][0].clone())
    }
}

/// A Graph error: status, code, and the details naming `field`.
fn graph_error(status: u16, v: &Value, want_status: u16, code: u64, field: &str) {
    assert_eq!(status, want_status, "{v}");
    let e = &v["error"];
    assert_eq!(e["code"], code, "{v}");
    assert_eq!(e["type"], "OAuthException", "{v}");
    assert_eq!(
        e["message"].as_str().unwrap_or_default().split(')').next(),
        Some(format!("(#{code}").as_str()),
        "{v}"
    );
    assert_eq!(e["error_data"]["messaging_product"], "whatsapp", "{v}");
    assert!(
        e["error_data"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains(field),
        "details should name {field}: {v}"
    );
    assert!(e["fbtrace_id"].is_string(), "{v}");
}

/// The bridge with an API key, its API client carrying it, and a session
/// `cl1` linked as ME, posting Cloud webhooks signed with APP_SECRET after
/// the verification handshake.
async fn start() -> (
    wa_sim::SimHandle,
    Receiver,
    tempfile::TempDir,
    Bridge,
    Graph,
) {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.auth.api_keys = vec![wapi::config::Secret(KEY.into())];
    let mut bridge = Bridge::start(cfg).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("a header"),
    );
    bridge.api.http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    bridge
        .link_with(
            &sim,
            json!({
                "session_id": "cl1",
                "webhook_url": format!("{}cl1", rx.url),
                "webhook_format": "cloud",
                "webhook_secret": APP_SECRET,
                "webhook_verify_token": VERIFY,
            }),
            ME,
        )
        .await;
    let graph = Graph::new(&bridge.base, KEY);
    (sim, rx, dir, bridge, graph)
}

/// The contact's inbox entry of a message id.
async fn received(sim: &wa_sim::SimHandle, contact: &str, id: &str) -> Value {
    eventually(WAIT, &format!("{id} at {contact}"), || async {
        inbox(sim, contact)
            .await
            .into_iter()
            .find(|m| m["id"] == id)
    })
    .await
}

/// The `value` of the Cloud webhook whose first message or status has
/// `id` (and, for statuses, `status`).
async fn cloud_value(
    rx: &Receiver,
    key: &str,
    id: &str,
    status: Option<&str>,
) -> (Delivery, Value) {
    eventually(WAIT, &format!("the webhook of {key} {id}"), || async {
        rx.deliveries().into_iter().find_map(|d| {
            let v = d.body["entry"][0]["changes"][0]["value"].clone();
            let first = &v[key][0];
            let matches = first["id"] == id && status.is_none_or(|s| first["status"] == s);
            matches.then_some((d, v))
        })
    })
    .await
}

/// What the simulator recorded of the contact: `receipts` or `chatstates`.
async fn recorded(sim: &wa_sim::SimHandle, what: &str) -> Vec<Value> {
    let r: Value = reqwest::get(format!("{}/contacts/{CONTACT}/{what}", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r[what].as_array().cloned().unwrap_or_default()
}

/// The business-scoped id the bridge gives the contact in `cl1`.
async fn contact_bsuid(sim: &wa_sim::SimHandle, phone: &str) -> String {
    let profile: Value = reqwest::get(format!("{}/contacts/{phone}/profile", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lid = profile["lid"]
        .as_str()
        .expect("a LID")
        .split('@')
        .next()
        .unwrap()
        .to_string();
    let id = wapi::bsuid::of("cl1", Some(&lid), Some(phone), ME).expect("a BSUID");
    assert!(
        id.len() == 23 && id.starts_with("US.1") && id[3..].bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_api_client_sends_every_type_reads_and_manages_media() {
    let (sim, rx, _dir, bridge, graph) = start().await;
    // The handshake was made with the session's verify token.
    let v = rx.verifications.lock().unwrap().clone();
    assert!(
        v.iter().any(
            |q| q.get("hub.verify_token").map(String::as_str) == Some(VERIFY)
                && q.get("hub.mode").map(String::as_str) == Some("subscribe")
        ),
        "{v:?}"
    );
    let m = "/v22.0/cl1/messages";

    // Text, to a number written as a person would.
    let (text, c) = graph
        .message(
            m,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": "+1 555 000 6002", "type": "text",
                   "text": {"preview_url": false, "body": "hello from the cloud"}}),
        )
        .await;
    assert_eq!(c, json!({"input": "+1 555 000 6002", "wa_id": CONTACT}));
    assert_eq!(
        received(&sim, CONTACT, &text).await["text"],
        "hello from the cloud"
    );

    // Another version string works the same.
    let (other, _) = graph
        .message(
            "/v19.0/cl1/messages",
            json!({"messaging_product": "whatsapp", "to": CONTACT, "text": {"body": "v19"}}),
        )
        .await;
    received(&sim, CONTACT, &other).await;

    // Media: uploaded, described, downloaded with the token, sent by id.
    let image = bytes(7, 20_000);
    let form = reqwest::multipart::Form::new()
        .text("messaging_product", "whatsapp")
        .text("type", "image/png")
        .part(
            "file",
            reqwest::multipart::Part::bytes(image.clone()).file_name("a.png"),
        );
    let (s, up) = graph
        .send(
            graph
                .http
                .post(format!("{}/v22.0/cl1/media", graph.base))
                .multipart(form),
        )
        .await;
    assert_eq!(s, 200, "{up}");
    let media_id = up["id"].as_str().expect("an id").to_string();
    assert_eq!(up.as_object().unwrap().len(), 1, "only the id: {up}");
    let (s, obj) = graph.get(&format!("/v22.0/{media_id}")).await;
    assert_eq!(s, 200, "{obj}");
    assert_eq!(obj["messaging_product"], "whatsapp");
    assert_eq!(obj["id"], media_id.as_str());
    assert_eq!(obj["mime_type"], "image/png");
    assert_eq!(obj["sha256"], sha_hex(&image));
    assert_eq!(obj["file_size"], image.len() as u64);
    let url = obj["url"].as_str().unwrap();
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(r.status(), 401, "the URL needs the token");
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), image);
    let (by_id, _) = graph
        .message(
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "image",
                   "image": {"id": media_id, "caption": "by id"}}),
        )
        .await;
    let e = received(&sim, CONTACT, &by_id).await;
    assert_eq!(e["type"], "image", "{e}");
    assert_eq!(e["caption"], "by id", "{e}");
    assert_eq!(e["sha256"], sha_hex(&image), "{e}");

    // Every other media type by link.
    let files: Vec<Vec<u8>> = (0..4).map(|i| bytes(40 + i, 12_000)).collect();
    let server = file_server(files.clone()).await;
    let cases = [
        ("video", json!({"caption": "a video"}), "video"),
        ("audio", json!({"voice": true}), "voice"),
        (
            "document",
            json!({"caption": "the receipt", "filename": "receipt.pdf"}),
            "document",
        ),
        ("sticker", json!({}), "sticker"),
    ];
    for (i, (kind, extra, seen_as)) in cases.into_iter().enumerate() {
        let mut obj = extra.clone();
        obj["link"] = json!(format!("{server}/f/{i}"));
        let (id, _) = graph
            .message(
                m,
                json!({"messaging_product": "whatsapp", "to": CONTACT, "type": kind, kind: obj}),
            )
            .await;
        let e = received(&sim, CONTACT, &id).await;
        assert_eq!(e["type"], seen_as, "{e}");
        assert_eq!(e["sha256"], sha_hex(&files[i]), "{e}");
        if let Some(c) = extra.get("caption") {
            assert_eq!(&e["caption"], c, "{e}");
        }
        if kind == "document" {
            assert_eq!(e["file_name"], "receipt.pdf", "{e}");
        }
    }

    // Location (coordinates as strings, as old Cloud examples send them)
    // and contacts.
    let (loc, _) = graph
        .message(
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "location",
                   "location": {"latitude": "52.52", "longitude": 13.405, "name": "Office",
                                "address": "Main St 1"}}),
        )
        .await;
    let e = received(&sim, CONTACT, &loc).await;
    assert_eq!(e["latitude"], 52.52, "{e}");
    assert_eq!(e["name"], "Office", "{e}");
    let (card, _) = graph
        .message(
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "contacts",
                   "contacts": [{"name": {"formatted_name": "Ana Diaz", "first_name": "Ana"},
                                 "phones": [{"phone": "+1 555 000 1234", "type": "CELL"}],
                                 "emails": [{"email": "ana@example.com"}]}]}),
        )
        .await;
    let e = received(&sim, CONTACT, &card).await;
    assert_eq!(e["contacts"][0]["name"], "Ana Diaz", "{e}");

    // The contact writes; the client reacts to it, replies to it, and marks
    // it read with typing, each by the message id alone.
    let theirs = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "is it shipped?"})).await;
    cloud_value(&rx, "messages", &theirs, None).await;
    let (reaction, _) = graph
        .message(
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "reaction",
                   "reaction": {"message_id": theirs, "emoji": "👍"}}),
        )
        .await;
    let e = received(&sim, CONTACT, &reaction).await;
    assert_eq!(e["type"], "reaction", "{e}");
    assert_eq!(e["message_id"], theirs.as_str(), "{e}");
    let (reply, _) = graph
        .message(
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "context": {"message_id": theirs},
                   "type": "text", "text": {"body": "yes, today"}}),
        )
        .await;
    assert_eq!(
        received(&sim, CONTACT, &reply).await["reply_to"],
        theirs.as_str()
    );
    let (s, v) = graph
        .post(
            m,
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": theirs,
                   "typing_indicator": {"type": "text"}}),
        )
        .await;
    assert_eq!((s, v.clone()), (200, json!({"success": true})), "{v}");
    eventually(WAIT, "the read receipt", || async {
        recorded(&sim, "receipts")
            .await
            .into_iter()
            .find(|r| r["id"] == theirs.as_str() && r["type"] == "read")
    })
    .await;
    eventually(WAIT, "typing", || async {
        recorded(&sim, "chatstates")
            .await
            .into_iter()
            .find(|c| c["state"] == "composing")
    })
    .await;

    // The phone number, and the media deleted.
    let (s, p) = graph.get("/v22.0/cl1").await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["id"], "cl1");
    assert_eq!(p["display_phone_number"], ME);
    assert_eq!(p["verified_name"], "Acme");
    assert_eq!(p["status"], "CONNECTED");
    assert!(p["quality_rating"].is_string() && p["throughput"]["level"].is_string());
    let (s, p) = graph.get("/v22.0/cl1?fields=display_phone_number").await;
    assert_eq!(s, 200);
    assert_eq!(p, json!({"id": "cl1", "display_phone_number": ME}));
    let (s, v) = graph.delete(&format!("/v22.0/{media_id}")).await;
    assert_eq!((s, v), (200, json!({"success": true})));
    let (s, v) = graph.get(&format!("/v22.0/{media_id}")).await;
    graph_error(s, &v, 404, 100, &media_id);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_webhooks_carry_business_scoped_ids_field_by_field() {
    let (sim, rx, _dir, bridge, graph) = start().await;
    let bsuid = contact_bsuid(&sim, CONTACT).await;
    let m = "/v22.0/cl1/messages";

    // A text: the contact with both ids, the message with both.
    let text = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "text": "hi there", "push_name": "Carol"}),
    )
    .await;
    let (d, v) = cloud_value(&rx, "messages", &text, None).await;
    assert_eq!(d.body["object"], "whatsapp_business_account");
    assert_eq!(d.body["entry"][0]["id"], "cl1");
    assert_eq!(d.body["entry"][0]["changes"][0]["field"], "messages");
    assert_eq!(v["messaging_product"], "whatsapp");
    assert_eq!(
        v["metadata"],
        json!({"display_phone_number": ME, "phone_number_id": "cl1"})
    );
    assert_eq!(
        v["contacts"],
        json!([{"profile": {"name": "Carol"}, "wa_id": CONTACT, "user_id": bsuid}])
    );
    let msg = &v["messages"][0];
    assert_eq!(msg["from"], CONTACT);
    assert_eq!(msg["from_user_id"], bsuid.as_str());
    assert_eq!(msg["type"], "text");
    assert_eq!(msg["text"], json!({"body": "hi there"}));
    assert!(msg["timestamp"].as_str().unwrap().parse::<i64>().unwrap() > 1_600_000_000);

    // Every kind, field by field.
    let image = bytes(3, 5_000);
    let img = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "image", "base64": b64(&image), "mimetype": "image/png",
               "caption": "look"}),
    )
    .await;
    let (_, v) = cloud_value(&rx, "messages", &img, None).await;
    let o = &v["messages"][0]["image"];
    assert_eq!(v["messages"][0]["type"], "image");
    assert_eq!(o["caption"], "look");
    assert_eq!(o["mime_type"], "image/png");
    use base64::Engine as _;
    assert_eq!(
        o["sha256"],
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&image))
    );
    // Its id works on the media route, and its URL downloads the file.
    let (s, obj) = graph
        .get(&format!("/v22.0/{}", o["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, 200, "{obj}");
    let got = reqwest::Client::new()
        .get(obj["url"].as_str().unwrap())
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.to_vec(), image);

    let kinds = [
        (
            json!({"type": "voice", "base64": b64(&bytes(4, 3_000)), "mimetype": "audio/ogg; codecs=opus"}),
            "audio",
            json!({"voice": true, "mime_type": "audio/ogg; codecs=opus"}),
        ),
        (
            json!({"type": "audio", "base64": b64(&bytes(8, 3_000)), "mimetype": "audio/mpeg"}),
            "audio",
            json!({"voice": false, "mime_type": "audio/mpeg"}),
        ),
        (
            json!({"type": "video", "base64": b64(&bytes(9, 3_000)), "mimetype": "video/mp4",
                   "caption": "clip"}),
            "video",
            json!({"caption": "clip", "mime_type": "video/mp4"}),
        ),
        (
            json!({"type": "document", "base64": b64(&bytes(5, 3_000)), "file_name": "inv.pdf",
                   "mimetype": "application/pdf", "caption": "invoice"}),
            "document",
            json!({"filename": "inv.pdf", "caption": "invoice", "mime_type": "application/pdf"}),
        ),
        (
            json!({"type": "sticker", "base64": b64(&bytes(6, 3_000)), "mimetype": "image/webp"}),
            "sticker",
            json!({"animated": false, "mime_type": "image/webp"}),
        ),
        (
            json!({"type": "location", "latitude": -33.86, "longitude": 151.21, "name": "Opera"}),
            "location",
            json!({"latitude": -33.86, "longitude": 151.21, "name": "Opera"}),
        ),
    ];
    for (body, kind, fields) in kinds {
        let mut body = body;
        body["to"] = json!(ME);
        let id = contact_sends(&sim, CONTACT, body).await;
        let (_, v) = cloud_value(&rx, "messages", &id, None).await;
        let msg = &v["messages"][0];
        assert_eq!(msg["type"], kind, "{msg}");
        for (k, want) in fields.as_object().unwrap() {
            assert_eq!(&msg[kind][k], want, "{kind}.{k}: {msg}");
        }
        if kind != "location" {
            let id = msg[kind]["id"].as_str().unwrap_or_default();
            assert!(id.starts_with("med_"), "{msg}");
            assert!(
                msg[kind]["sha256"].is_string() && msg[kind]["url"].is_string(),
                "{msg}"
            );
        }
        assert_eq!(msg["from_user_id"], bsuid.as_str(), "{msg}");
    }
    let cards = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "contacts", "contacts": [{"name": "Ana", "phones": ["+15550001234"]}]}),
    )
    .await;
    let (_, v) = cloud_value(&rx, "messages", &cards, None).await;
    let c = &v["messages"][0]["contacts"][0];
    assert_eq!(c["name"]["formatted_name"], "Ana", "{c}");
    assert_eq!(c["phones"][0]["phone"], "+15550001234", "{c}");
    assert_eq!(c["phones"][0]["wa_id"], "15550001234", "{c}");

    // Ours, then the contact's reaction and reply to it.
    let (ours, _) = graph
        .message(
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "text": {"body": "shipped"}}),
        )
        .await;
    received(&sim, CONTACT, &ours).await;
    let react = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "reaction", "message_id": ours, "emoji": "❤️"}),
    )
    .await;
    let (_, v) = cloud_value(&rx, "messages", &react, None).await;
    assert_eq!(
        v["messages"][0]["reaction"],
        json!({"message_id": ours, "emoji": "❤️"})
    );
    let reply = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "text": "thanks", "reply_to": ours}),
    )
    .await;
    let (_, v) = cloud_value(&rx, "messages", &reply, None).await;
    assert_eq!(v["messages"][0]["context"], json!({"from": ME, "id": ours}));

    // Edits and deletes as the Cloud API posts them for app numbers; a
    // poll as unsupported, with its error.
    let edit = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "edit", "message_id": reply, "text": "thanks a lot"}),
    )
    .await;
    let (_, v) = cloud_value(&rx, "messages", &edit, None).await;
    let msg = &v["messages"][0];
    assert_eq!(msg["type"], "edit", "{msg}");
    assert_eq!(msg["edit"]["original_message_id"], reply.as_str());
    assert_eq!(msg["edit"]["message"]["text"]["body"], "thanks a lot");
    let revoke = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "revoke", "message_id": reply}),
    )
    .await;
    let (_, v) = cloud_value(&rx, "messages", &revoke, None).await;
    assert_eq!(v["messages"][0]["type"], "revoke");
    assert_eq!(
        v["messages"][0]["revoke"]["original_message_id"],
        reply.as_str()
    );
    let poll = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "poll", "question": "When?", "options": ["am", "pm"]}),
    )
    .await;
    let (_, v) = cloud_value(&rx, "messages", &poll, None).await;
    let msg = &v["messages"][0];
    assert_eq!(msg["type"], "unsupported", "{msg}");
    assert_eq!(msg["unsupported"]["type"], "poll_creation");
    assert_eq!(msg["errors"][0]["code"], 131051);
    assert!(msg["errors"][0]["error_data"]["details"].is_string());
    let garbled = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "text": "x", "undecryptable": true}),
    )
    .await;
    let (_, v) = cloud_value(&rx, "messages", &garbled, None).await;
    assert_eq!(v["messages"][0]["type"], "unsupported");
    assert_eq!(v["messages"][0]["errors"][0]["code"], 131060);

    // Statuses: sent, delivered and read carry the contact's ids.
    for status in ["sent", "delivered"] {
        let (_, v) = cloud_value(&rx, "statuses", &ours, Some(status)).await;
        let s = &v["statuses"][0];
        assert_eq!(s["recipient_id"], CONTACT, "{s}");
        assert_eq!(s["recipient_user_id"], bsuid.as_str(), "{s}");
        assert!(s["timestamp"].as_str().unwrap().parse::<i64>().is_ok());
        assert_eq!(v["contacts"], json!([{"wa_id": CONTACT, "user_id": bsuid}]));
        assert!(s.get("errors").is_none());
    }
    let r = admin_post(
        &sim,
        &format!("/contacts/{CONTACT}/read"),
        json!({"id": ours}),
    )
    .await;
    assert!(r.status().is_success());
    let (_, v) = cloud_value(&rx, "statuses", &ours, Some("read")).await;
    assert_eq!(v["statuses"][0]["recipient_user_id"], bsuid.as_str());

    // A business-scoped id is a recipient too.
    let (to_bsuid, c) = graph
        .message(
            m,
            json!({"messaging_product": "whatsapp", "recipient": bsuid, "type": "text",
                   "text": {"body": "by user id"}}),
        )
        .await;
    assert_eq!(c, json!({"input": bsuid, "user_id": bsuid}));
    assert_eq!(
        received(&sim, CONTACT, &to_bsuid).await["text"],
        "by user id"
    );

    // Failed: WhatsApp refuses a number; the status has errors and no
    // contacts or business-scoped id.
    let refused = "15550006009";
    let r = admin_post(
        &sim,
        &format!("/contacts/{refused}/profile"),
        json!({"refuse_with": "463"}),
    )
    .await;
    assert!(r.status().is_success());
    let (lost, _) = graph
        .message(
            m,
            json!({"messaging_product": "whatsapp", "to": refused, "text": {"body": "?"}}),
        )
        .await;
    let (_, v) = cloud_value(&rx, "statuses", &lost, Some("failed")).await;
    let s = &v["statuses"][0];
    assert_eq!(s["recipient_id"], refused, "{s}");
    assert!(s.get("recipient_user_id").is_none(), "{s}");
    assert!(v.get("contacts").is_none(), "{v}");
    assert_eq!(s["errors"][0]["code"], 131026, "{s}");
    assert!(s["errors"][0]["title"].is_string() && s["errors"][0]["message"].is_string());
    assert!(
        s["errors"][0]["error_data"]["details"]
            .as_str()
            .unwrap()
            .contains("463"),
        "{s}"
    );

    // A number change is a system message.
    let r = admin_post(
        &sim,
        &format!("/contacts/{CONTACT}/change-number"),
        json!({"to": ME, "new_phone": "15550006077"}),
    )
    .await;
    assert!(r.status().is_success());
    let sys = eventually(WAIT, "the system message", || async {
        rx.deliveries().into_iter().find_map(|d| {
            let m = d.body["entry"][0]["changes"][0]["value"]["messages"][0].clone();
            (m["type"] == "system").then_some(m)
        })
    })
    .await;
    assert_eq!(sys["system"]["type"], "user_changed_number", "{sys}");
    assert_eq!(sys["system"]["wa_id"], "15550006077", "{sys}");
    assert_eq!(sys["from"], CONTACT, "{sys}");

    // Every delivery is signed with the app secret; none is a session
    // event or one of our own messages.
    assert!(rx.deliveries().len() > 15);
    for d in rx.deliveries() {
        let sig = d
            .headers
            .get("x-hub-signature-256")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            sig,
            format!("sha256={}", wapi::webhook::signature(APP_SECRET, &d.raw))
        );
        assert_eq!(d.body["object"], "whatsapp_business_account", "{}", d.body);
    }
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_errors_name_the_field_and_the_handshake_refuses_a_silent_receiver() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.auth.api_keys = vec![wapi::config::Secret(KEY.into())];
    cfg.media.allow_private_urls = false;
    let bridge = Bridge::start(cfg).await;
    let graph = Graph::new(&bridge.base, KEY);

    // The handshake: a receiver that does not echo is refused, naming the
    // URL; one that does is taken.
    rx.echo.store(false, std::sync::atomic::Ordering::SeqCst);
    let register = json!({"name": "e1", "start": true, "webhook_url": format!("{}e1", rx.url),
                          "webhook_format": "cloud", "webhook_verify_token": VERIFY});
    let (s, v) = graph.post("/v1/sessions", register.clone()).await;
    assert_eq!(s, 400, "{v}");
    let why = v["errors"][0]["details"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("webhook_url:") && why.contains("hub.challenge"),
        "{v}"
    );
    let (s, _) = graph.get("/v1/sessions/e1").await;
    assert_eq!(s, 404, "nothing was created");
    rx.echo.store(true, std::sync::atomic::Ordering::SeqCst);
    let (s, v) = graph.post("/v1/sessions", register).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["webhook_verify_token_set"], true);
    // Changing the URL to a silent one is refused and changes nothing.
    rx.echo.store(false, std::sync::atomic::Ordering::SeqCst);
    let (s, v) = graph
        .send(
            graph
                .http
                .patch(format!("{}/v1/sessions/e1", graph.base))
                .json(&json!({"webhook_url": format!("{}other", rx.url)})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (_, v) = graph.get("/v1/sessions/e1").await;
    assert_eq!(v["webhook_url"], format!("{}e1", rx.url));
    let queries = rx.verifications.lock().unwrap().clone();
    assert!(queries.len() >= 3, "{queries:?}");
    assert!(
        queries
            .iter()
            .all(|q| q["hub.verify_token"] == VERIFY && q["hub.mode"] == "subscribe")
    );

    // Tokens: none, or a wrong one, is 190.
    let m = "/v22.0/e1/messages";
    let text = json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "text", "text": {"body": "x"}});
    let (s, v) = Graph::new(&bridge.base, "wrong-token-0123456789")
        .post(m, text.clone())
        .await;
    graph_error(s, &v, 401, 190, "");
    let r = reqwest::Client::new()
        .post(format!("{}{m}", bridge.base))
        .json(&text)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 190, "{v}");

    // Bad input: each a Graph error naming the field; never a 500.
    let cases = [
        ("/v22.0/nosuch/messages", text.clone(), 404, 100, "nosuch"),
        (
            m,
            json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}),
            400,
            100,
            "to",
        ),
        (
            m,
            json!({"to": CONTACT, "text": {"body": "x"}}),
            400,
            100,
            "messaging_product",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "carousel"}),
            400,
            100,
            "type",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "template",
                   "template": {"name": "hello_world", "language": {"code": "en_US"}}}),
            400,
            131051,
            "template",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "interactive",
                   "interactive": {"type": "button"}}),
            400,
            131051,
            "interactive",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "image",
                   "image": {"link": "http://169.254.169.254/latest/a.png"}}),
            400,
            131053,
            "image.link",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "image",
                   "image": {"link": "http://127.0.0.1:1/a.png"}}),
            400,
            131053,
            "image.link",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "image",
                   "image": {"caption": "no file"}}),
            400,
            131053,
            "image.id, image.link",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "text"}),
            400,
            100,
            "text",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": "not a number", "text": {"body": "x"}}),
            400,
            100,
            "to",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "recipient": "US.12345678901234567890",
                   "text": {"body": "x"}}),
            400,
            100,
            "recipient",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "colour": "red"}),
            400,
            100,
            "colour",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "location",
                   "location": {"latitude": "north", "longitude": 1}}),
            400,
            100,
            "location.latitude",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "status": "read"}),
            400,
            100,
            "message_id",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "3EB0AAAA"}),
            404,
            100,
            "message_id",
        ),
        (
            m,
            json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "reaction",
                   "reaction": {"message_id": "3EB0BBBB", "emoji": "👍"}}),
            404,
            100,
            "reaction.message_id",
        ),
        // Well formed, but the session is not linked.
        (m, text.clone(), 409, 133010, "e1"),
        ("/v1.0/e1/messages", text.clone(), 409, 133010, "e1"),
    ];
    for (path, body, status, code, field) in cases {
        let (s, v) = graph.post(path, body.clone()).await;
        assert!(s < 500, "{body}: {v}");
        graph_error(s, &v, status, code, field);
    }
    let (s, v) = graph
        .get("/v22.0/med_00000000000000000000000000000000")
        .await;
    graph_error(s, &v, 404, 100, "med_0000");
    let (s, v) = graph.get("/v22.0/e1/nothing-here").await;
    assert!(s == 404 || s == 405, "{v}");
    assert!(v["error"]["code"].is_u64(), "{v}");
    let form = reqwest::multipart::Form::new()
        .text("messaging_product", "whatsapp")
        .text("colour", "red");
    let (s, v) = graph
        .send(
            graph
                .http
                .post(format!("{}/v22.0/e1/media", graph.base))
                .multipart(form),
        )
        .await;
    graph_error(s, &v, 400, 131053, "colour");
    bridge.stop().await;

    // The rate limit is 130429 with Retry-After.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.rate_limit.per_second = 1;
    cfg.rate_limit.burst = 1;
    let bridge = Bridge::start(cfg).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v22.0/nosuch", bridge.base);
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 404);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    graph_error(429, &v, 429, 130429, "rate limit");
    bridge.stop().await;
}
