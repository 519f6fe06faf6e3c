//! Message kinds beyond text and media, both ways: locations, contact
//! cards, replies with mentions, reactions, polls and their votes, edits and
//! deletes, each acting on a message given by its id alone.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const ME: &str = "15550008001";
const CONTACT: &str = "15550008002";

/// The contact's inbox entry of a message id, once it is there.
async fn received(sim: &wa_sim::SimHandle, id: &str) -> Value {
    eventually(
        Duration::from_secs(10),
        &format!("{id} in the inbox"),
        || async {
            inbox(sim, CONTACT)
                .await
                .into_iter()
                .find(|m| m["id"] == id || (m["message_id"] == id && m["type"] != "reaction"))
        },
    )
    .await
}

/// The first event of a kind whose payload id is `id`.
async fn event(rx: &Receiver, kind: &str, id: &str) -> Value {
    eventually(Duration::from_secs(10), &format!("{kind} {id}"), || async {
        rx.deliveries()
            .into_iter()
            .map(|d| d.body)
            .find(|b| b["event"] == kind && b["payload"]["id"] == id)
    })
    .await
}

async fn sends(bridge: &Bridge, body: Value) -> String {
    let r = bridge.post("/v1/sessions/k1/messages", body.clone()).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "send {body}: {v}");
    v["id"].as_str().unwrap().to_string()
}

async fn start() -> (wa_sim::SimHandle, Receiver, tempfile::TempDir, Bridge) {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    bridge.link(&sim, "k1", &format!("{}k1", rx.url), ME).await;
    (sim, rx, dir, bridge)
}

/// Every kind sent through the API reaches the contact with its fields;
/// a reply, a reaction, an edit and a delete name their message by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_goes_out_and_acts_on_a_message_by_id() {
    let (sim, rx, _dir, bridge) = start().await;
    // A message of the contact's, to answer and react to.
    let theirs = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "where are you?"})).await;
    event_of(&rx, &theirs, Duration::from_secs(10)).await;

    let loc = sends(
        &bridge,
        json!({"to": CONTACT, "type": "location", "latitude": 52.52, "longitude": 13.405,
               "name": "Office", "address": "Main St 1"}),
    )
    .await;
    let e = received(&sim, &loc).await;
    assert_eq!(e["type"], "location", "{e}");
    assert_eq!(e["latitude"], 52.52);
    assert_eq!(e["longitude"], 13.405);
    assert_eq!(e["name"], "Office");
    assert_eq!(e["address"], "Main St 1");

    let one = sends(
        &bridge,
        json!({"to": CONTACT, "type": "contacts",
               "contacts": [{"name": "Ana", "phones": ["+1 555 000 1234"]}]}),
    )
    .await;
    let e = received(&sim, &one).await;
    assert_eq!(e["type"], "contacts", "{e}");
    assert_eq!(e["contacts"][0]["name"], "Ana");
    assert!(
        e["contacts"][0]["phones"][0]
            .as_str()
            .unwrap()
            .contains("15550001234"),
        "{e}"
    );
    let two = sends(
        &bridge,
        json!({"to": CONTACT, "type": "contacts", "contacts": [
            {"name": "Ana", "phones": ["15550001234"]},
            {"name": "Bo", "phones": ["15550005678", "15550009999"]}]}),
    )
    .await;
    let e = received(&sim, &two).await;
    assert_eq!(e["contacts"].as_array().unwrap().len(), 2, "{e}");
    assert_eq!(e["contacts"][1]["name"], "Bo");

    // A reply to the contact's message, mentioning the contact.
    let reply = sends(
        &bridge,
        json!({"to": CONTACT, "text": "here, @15550008002", "reply_to": theirs,
               "mentions": [CONTACT]}),
    )
    .await;
    let e = received(&sim, &reply).await;
    assert_eq!(e["type"], "text", "{e}");
    assert_eq!(e["reply_to"], theirs.as_str(), "{e}");
    assert_eq!(e["mentions"][0], format!("{CONTACT}@s.whatsapp.net"), "{e}");

    // A reaction, given only the message id.
    let reaction = sends(
        &bridge,
        json!({"to": CONTACT, "type": "reaction", "message_id": theirs, "emoji": "👍"}),
    )
    .await;
    let e = eventually(Duration::from_secs(10), "the reaction", || async {
        inbox(&sim, CONTACT)
            .await
            .into_iter()
            .find(|m| m["id"] == reaction.as_str())
    })
    .await;
    assert_eq!(e["type"], "reaction", "{e}");
    assert_eq!(e["message_id"], theirs.as_str());
    assert_eq!(e["emoji"], "👍");

    let poll = sends(
        &bridge,
        json!({"to": CONTACT, "type": "poll", "question": "Lunch?",
               "options": ["pizza", "sushi", "salad"]}),
    )
    .await;
    let e = received(&sim, &poll).await;
    assert_eq!(e["type"], "poll", "{e}");
    assert_eq!(e["question"], "Lunch?");
    assert_eq!(e["options"], json!(["pizza", "sushi", "salad"]));

    // Our own text, edited, then deleted, by its id.
    let typo = sends(&bridge, json!({"to": CONTACT, "text": "see you at 5pn"})).await;
    received(&sim, &typo).await;
    let r = bridge
        .api
        .patch(
            &format!("/v1/sessions/k1/messages/{typo}"),
            json!({"text": "see you at 5pm"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let edit = eventually(Duration::from_secs(10), "the edit", || async {
        inbox(&sim, CONTACT)
            .await
            .into_iter()
            .find(|m| m["type"] == "edit" && m["message_id"] == typo.as_str())
    })
    .await;
    assert_eq!(edit["text"], "see you at 5pm", "{edit}");
    let r = bridge
        .api
        .delete(&format!("/v1/sessions/k1/messages/{typo}"))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    eventually(Duration::from_secs(10), "the delete", || async {
        inbox(&sim, CONTACT)
            .await
            .into_iter()
            .find(|m| m["type"] == "revoke" && m["message_id"] == typo.as_str())
    })
    .await;
    bridge.stop().await;
}

/// Every kind a contact sends reaches the webhook with its fields; edits
/// and deletes come as their own events naming the message; a vote on a
/// poll the session sent comes back as the options chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_comes_in_with_its_fields() {
    let (sim, rx, _dir, bridge) = start().await;
    let ours = sends(
        &bridge,
        json!({"to": CONTACT, "text": "your order shipped"}),
    )
    .await;
    received(&sim, &ours).await;

    let loc = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "location", "latitude": -33.86, "longitude": 151.21,
               "name": "Opera"}),
    )
    .await;
    let p = &event_of(&rx, &loc, Duration::from_secs(10)).await["payload"];
    assert_eq!(p["type"], "location", "{p}");
    assert_eq!(p["location"]["latitude"], -33.86);
    assert_eq!(p["location"]["name"], "Opera");

    let cards = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "contacts", "contacts": [
            {"name": "Ana", "phones": ["+15550001234"]}, {"name": "Bo", "phones": ["+15550005678"]}]}),
    )
    .await;
    let p = &event_of(&rx, &cards, Duration::from_secs(10)).await["payload"];
    assert_eq!(p["type"], "contacts", "{p}");
    assert_eq!(p["contacts"][1]["name"], "Bo");
    assert_eq!(p["contacts"][1]["phones"][0], "+15550005678");

    let reaction = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "reaction", "message_id": ours, "emoji": "❤️"}),
    )
    .await;
    let p = &event_of(&rx, &reaction, Duration::from_secs(10)).await["payload"];
    assert_eq!(p["type"], "reaction", "{p}");
    assert_eq!(p["reaction"]["message_id"], ours.as_str());
    assert_eq!(p["reaction"]["emoji"], "❤️");

    let reply = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "text": "thanks!", "reply_to": ours}),
    )
    .await;
    let p = &event_of(&rx, &reply, Duration::from_secs(10)).await["payload"];
    assert_eq!(p["reply_to"], ours.as_str(), "{p}");
    // The session answers the contact's reply by its id.
    let answer = sends(
        &bridge,
        json!({"to": CONTACT, "text": "welcome", "reply_to": reply}),
    )
    .await;
    assert_eq!(received(&sim, &answer).await["reply_to"], reply.as_str());

    let edit = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "edit", "message_id": reply, "text": "thanks a lot!"}),
    )
    .await;
    let p = &event(&rx, "message.edited", &reply).await["payload"];
    assert_eq!(p["text"], "thanks a lot!", "{p}");
    assert_eq!(p["edit_id"], edit.as_str(), "{p}");
    contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "revoke", "message_id": reply}),
    )
    .await;
    let p = &event(&rx, "message.revoked", &reply).await["payload"];
    assert_eq!(p["type"], "revoke", "{p}");

    let poll = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "poll", "question": "Deliver when?", "options": ["am", "pm"]}),
    )
    .await;
    let p = &event_of(&rx, &poll, Duration::from_secs(10)).await["payload"];
    assert_eq!(p["type"], "poll", "{p}");
    assert_eq!(p["poll"]["question"], "Deliver when?");
    assert_eq!(p["poll"]["options"], json!(["am", "pm"]));

    // A poll of the session's, voted on by the contact.
    let ours_poll = sends(
        &bridge,
        json!({"to": CONTACT, "type": "poll", "question": "Rate us", "options": ["good", "bad"]}),
    )
    .await;
    received(&sim, &ours_poll).await;
    let vote = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "poll_vote", "message_id": ours_poll, "options": ["good"]}),
    )
    .await;
    let p = &event_of(&rx, &vote, Duration::from_secs(10)).await["payload"];
    assert_eq!(p["type"], "poll_vote", "{p}");
    assert_eq!(p["vote"]["message_id"], ours_poll.as_str(), "{p}");
    assert_eq!(p["vote"]["options"], json!(["good"]), "{p}");
    bridge.stop().await;
}

/// Bad input gets a 4xx naming the field, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kind_input_gets_a_4xx_naming_the_field() {
    let (sim, rx, _dir, bridge) = start().await;
    let theirs = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "hi"})).await;
    event_of(&rx, &theirs, Duration::from_secs(10)).await;
    let thirteen: Vec<String> = (0..13).map(|i| format!("o{i}")).collect();
    let cases = [
        (json!({"to": CONTACT, "type": "sonnet"}), 400, "type"),
        (
            json!({"to": CONTACT, "type": "reaction", "emoji": "👍"}),
            400,
            "message_id",
        ),
        (
            json!({"to": CONTACT, "type": "reaction", "message_id": "NOSUCHID", "emoji": "👍"}),
            404,
            "message_id",
        ),
        (
            json!({"to": CONTACT, "type": "location", "latitude": 91.0, "longitude": 0.0}),
            400,
            "latitude",
        ),
        (
            json!({"to": CONTACT, "type": "location", "latitude": 1.0}),
            400,
            "longitude",
        ),
        (
            json!({"to": CONTACT, "type": "contacts", "contacts": []}),
            400,
            "contacts",
        ),
        (
            json!({"to": CONTACT, "type": "contacts", "contacts": [{"name": "", "phones": ["1555"]}]}),
            400,
            "contacts[0].name",
        ),
        (
            json!({"to": CONTACT, "type": "poll", "question": "?", "options": thirteen}),
            400,
            "options",
        ),
        (
            json!({"to": CONTACT, "type": "poll", "question": "?", "options": ["a", "a"]}),
            400,
            "options[1]",
        ),
        (
            json!({"to": CONTACT, "text": "x", "reply_to": "NOSUCHID"}),
            404,
            "reply_to",
        ),
        (
            json!({"to": CONTACT, "text": "x", "mentions": ["nobody"]}),
            400,
            "mentions[0]",
        ),
    ];
    for (body, status, field) in cases {
        let r = bridge.post("/v1/sessions/k1/messages", body.clone()).await;
        let got = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(got, status, "{body}: {v}");
        let msg = error_text(&v).unwrap_or_default();
        assert!(msg.starts_with(&format!("{field}:")), "{body}: {v}");
    }
    // Editing or deleting the contact's message, or an unknown one.
    let r = bridge
        .api
        .patch(
            &format!("/v1/sessions/k1/messages/{theirs}"),
            json!({"text": "mine now"}),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = bridge
        .api
        .delete(&format!("/v1/sessions/k1/messages/{theirs}"))
        .await;
    assert_eq!(r.status(), 403);
    let r = bridge
        .api
        .patch("/v1/sessions/k1/messages/NOSUCHID", json!({"text": "x"}))
        .await;
    assert_eq!(r.status(), 404);
    let r = bridge
        .api
        .patch("/v1/sessions/k1/messages/bad%20id", json!({"text": "x"}))
        .await;
    assert_eq!(r.status(), 400);
    bridge.stop().await;
}

/// A contact WhatsApp addresses by LID: its messages carry the phone number
/// WhatsApp gave and the LID beside it, each is posted once, and a reply by
/// id reaches the contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_in_lid_mode_is_posted_with_phone_and_lid_and_answered() {
    let (sim, rx, _dir, bridge) = start().await;
    let before = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "by phone"})).await;
    event_of(&rx, &before, Duration::from_secs(10)).await;
    let r = admin_post(
        &sim,
        &format!("/contacts/{CONTACT}/profile"),
        json!({"lid_mode": true}),
    )
    .await;
    assert!(r.status().is_success());
    let lid = r.json::<Value>().await.unwrap()["lid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(lid.ends_with("@lid"), "{lid}");

    let id = contact_sends(&sim, CONTACT, json!({"to": ME, "text": "by lid"})).await;
    let ev = event_of(&rx, &id, Duration::from_secs(10)).await;
    let p = &ev["payload"];
    assert_eq!(p["from"], format!("{CONTACT}@s.whatsapp.net"), "{p}");
    assert_eq!(p["from_lid"], lid.as_str(), "{p}");
    assert_eq!(p["chat"], format!("{CONTACT}@s.whatsapp.net"), "{p}");

    // Answered by id: the reply reaches the contact, quoting it.
    let answer = sends(
        &bridge,
        json!({"to": CONTACT, "text": "got it", "reply_to": id}),
    )
    .await;
    assert_eq!(received(&sim, &answer).await["reply_to"], id.as_str());
    // Sending to the LID works too.
    let to_lid = sends(&bridge, json!({"to": lid, "text": "by your lid"})).await;
    received(&sim, &to_lid).await;

    // Each message was posted once.
    bridge.drained("k1").await;
    for m in [&before, &id] {
        let posts = rx
            .of("k1", "message")
            .into_iter()
            .filter(|e| e["payload"]["id"] == m.as_str())
            .count();
        assert_eq!(posts, 1, "{m}");
    }
    bridge.stop().await;
}

/// The Cloud API format carries locations, contact cards and reactions in
/// its own shapes, and a poll as `unsupported`; the wapi format names the
/// kind in `Type`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_in_the_cloud_and_wapi_formats() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    bridge
        .link_with(
            &sim,
            json!({"session_id": "k1", "webhook_url": format!("{}k1", rx.url),
                   "webhook_format": "cloud"}),
            ME,
        )
        .await;
    let cloud_message = |id: String| {
        let rx = &rx;
        async move {
            eventually(Duration::from_secs(10), &format!("cloud {id}"), || async {
                rx.deliveries().into_iter().find_map(|d| {
                    let m = &d.body["entry"][0]["changes"][0]["value"]["messages"][0];
                    (m["id"] == id.as_str()).then(|| m.clone())
                })
            })
            .await
        }
    };
    let ours = sends(&bridge, json!({"to": CONTACT, "text": "hello"})).await;
    received(&sim, &ours).await;

    let loc = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "location", "latitude": 1.5, "longitude": 2.5, "name": "Dock"}),
    )
    .await;
    let m = cloud_message(loc).await;
    assert_eq!(m["type"], "location", "{m}");
    assert_eq!(m["location"]["latitude"], 1.5);
    assert_eq!(m["location"]["name"], "Dock");

    let cards = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "contacts", "contacts": [{"name": "Ana", "phones": ["+15550001234"]}]}),
    )
    .await;
    let m = cloud_message(cards).await;
    assert_eq!(m["type"], "contacts", "{m}");
    assert_eq!(m["contacts"][0]["name"]["formatted_name"], "Ana");
    assert_eq!(m["contacts"][0]["phones"][0]["phone"], "+15550001234");

    let reaction = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "reaction", "message_id": ours, "emoji": "🙏"}),
    )
    .await;
    let m = cloud_message(reaction).await;
    assert_eq!(m["type"], "reaction", "{m}");
    assert_eq!(m["reaction"]["message_id"], ours.as_str());
    assert_eq!(m["reaction"]["emoji"], "🙏");

    let poll = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "poll", "question": "?", "options": ["a", "b"]}),
    )
    .await;
    assert_eq!(cloud_message(poll).await["type"], "unsupported");

    // The same session switched to wapi's format.
    let r = bridge
        .api
        .patch("/v1/sessions/k1", json!({"webhook_format": "wapi"}))
        .await;
    assert_eq!(r.status(), 200);
    let loc = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ME, "type": "location", "latitude": 3.0, "longitude": 4.0}),
    )
    .await;
    let body = eventually(Duration::from_secs(10), "wapi body", || async {
        rx.deliveries()
            .into_iter()
            .map(|d| d.body)
            .find(|b| b["Info"]["Id"] == loc.as_str())
    })
    .await;
    assert_eq!(body["Type"], "location", "{body}");
    bridge.stop().await;
}
