//! LIDs of simulated contacts with the real whatsapp-rust 0.7.0 client:
//! lookups reveal them, a contact in LID mode sends from its LID (with its
//! phone number in `sender_pn`), and whatever address a client writes to,
//! PN or LID, reaches the contact, before, during and after LID mode.
//!
//! Every wait is bounded and event-driven.

mod harness;

use std::time::Duration;

use harness::{Client, admin, contact_sends, eventually, inbox_json, jid, link_new};
use serde_json::{Value, json};
use wa::message::protocol_message::Type as ProtocolType;
use whatsapp_rust::prelude::*;
use whatsapp_rust::types::presence::ReceiptType;

const FAST: Duration = Duration::from_secs(2);
const ACCOUNT: &str = "15550001111";
const OTHER: &str = "15550003333";
const CONTACT: &str = "15550002222";
const SECOND: &str = "15550004444";

/// `GET /admin/contacts/{phone}/profile`.
async fn profile(sim: &wa_sim::SimHandle, phone: &str) -> Value {
    let (status, json) = admin(
        sim,
        "GET",
        &format!("/contacts/{phone}/profile"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{json}");
    json
}

/// Sets a contact's LID mode; returns the profile answer.
async fn lid_mode(sim: &wa_sim::SimHandle, phone: &str, on: bool) -> Value {
    let path = format!("/contacts/{phone}/profile");
    let (status, json) = admin(sim, "POST", &path, json!({ "lid_mode": on })).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["lid_mode"], on, "{json}");
    json
}

/// A contact's LID JID, from the admin API.
async fn lid_of(sim: &wa_sim::SimHandle, phone: &str) -> Jid {
    let json = profile(sim, phone).await;
    let lid = json["lid"].as_str().expect("a LID").to_string();
    assert_eq!(sim.lid(phone).as_deref(), Some(lid.as_str()));
    lid.parse().unwrap()
}

/// The contact's inbox entry `id` (as JSON), once it is there; the HTTP
/// API lists the same entry.
async fn inbox_entry(sim: &wa_sim::SimHandle, contact: &str, id: &str) -> Value {
    let found = eventually(FAST, || {
        sim.inbox(contact)
            .iter()
            .map(|m| serde_json::to_value(m).unwrap())
            .find(|m| m["id"] == id)
    })
    .await
    .unwrap_or_else(|e| panic!("{id} in the inbox of {contact}: {e}"));
    assert!(inbox_json(sim, contact).await.contains(&found), "{found}");
    found
}

/// The client sends a text to `to`; returns its id.
async fn send_text(c: &Client, to: &Jid, text: &str) -> String {
    harness::within(
        FAST,
        c.client.send_message(to.clone(), wa::Message::text(text)),
    )
    .await
    .expect("sent in time")
    .expect("send")
    .message_id
}

/// The contact sends a text to ACCOUNT; the client gets it. Returns it.
async fn contact_text(
    sim: &wa_sim::SimHandle,
    c: &mut Client,
    contact: &str,
    text: &str,
) -> InboundMessage {
    let id = contact_sends(sim, contact, json!({"to": ACCOUNT, "text": text})).await;
    let got = c.received(&id).await;
    assert_eq!(got.message.text_content(), Some(text));
    got
}

/// Asserts who a received message is from: the LID (with the phone number
/// as `sender_alt`) or the phone number (no `sender_alt`).
fn assert_sender(got: &InboundMessage, phone: &str, lid: Option<&Jid>) {
    let s = &got.info.source;
    assert!(!s.is_from_me && !s.is_group, "{s:?}");
    match lid {
        Some(lid) => {
            assert_eq!(&s.sender, lid, "{s:?}");
            assert_eq!(&s.chat, lid, "{s:?}");
            assert_eq!(s.sender_alt.as_ref(), Some(&jid(phone)), "{s:?}");
        }
        None => {
            assert_eq!(s.sender, jid(phone), "{s:?}");
            // WhatsApp names the sender's LID beside its number
            // (`sender_lid`), as the simulator does.
            assert!(s.sender_alt.as_ref().is_some_and(|a| a.is_lid()), "{s:?}");
        }
    }
}

/// The client writes to `to` and the contact's inbox has it, from the
/// account's device, to the contact's phone number; `to_lid` tells how the
/// stanza was addressed. Returns the message id.
async fn reaches(
    sim: &wa_sim::SimHandle,
    c: &Client,
    contact: &str,
    to: &Jid,
    text: &str,
) -> (String, bool) {
    let id = send_text(c, to, text).await;
    let m = inbox_entry(sim, contact, &id).await;
    assert_eq!(m["text"], text, "{m}");
    assert_eq!(m["type"], "text", "{m}");
    let device = c.client.pn().expect("logged in");
    assert_eq!(m["from"], device.to_string(), "{m}");
    assert_eq!(m["to"], format!("{contact}@s.whatsapp.net"), "{m}");
    let to_lid = m.get("to_lid").is_some();
    if to_lid {
        assert_eq!(m["to_lid"], true, "{m}");
    }
    (id, to_lid)
}

/// Waits for a receipt of `want` for message `id`; returns its sender.
async fn receipt(c: &mut Client, id: &str, want: ReceiptType) -> Jid {
    c.expect("a receipt", |e| match e {
        Event::Receipt(r) if r.r#type == want && r.message_ids.iter().any(|m| m == id) => {
            Some(r.source.sender.clone())
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_reveal_a_contacts_lid() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;

    let json = profile(&sim, CONTACT).await;
    assert_eq!(json["lid_mode"], false, "{json}");
    let lid = lid_of(&sim, CONTACT).await;
    assert_eq!(lid.server, Server::Lid, "{lid}");
    assert!(lid.user.bytes().all(|b| b.is_ascii_digit()), "{lid}");
    // Stable, and unique across contacts and accounts.
    assert_eq!(lid_of(&sim, CONTACT).await, lid);
    let second = lid_of(&sim, SECOND).await;
    assert_ne!(second, lid);
    let (_, devices) = admin(&sim, "GET", "/devices", Value::Null).await;
    let account_lid = devices["devices"][0]["lid"].as_str().expect("account LID");
    let account_lid: Jid = account_lid.parse().unwrap();
    assert!(account_lid.user != lid.user && account_lid.user != second.user);

    // usync by phone number: the LID, learned by the client.
    let contacts = c.client.contacts();
    let results = harness::within(
        FAST,
        contacts.is_on_whatsapp(&[jid(CONTACT), jid(SECOND), jid(ACCOUNT)]),
    )
    .await
    .expect("in time")
    .expect("is_on_whatsapp");
    let result = |phone: &str| {
        results
            .iter()
            .find(|r| r.jid.user == phone)
            .unwrap_or_else(|| panic!("{phone} not in {results:?}"))
    };
    assert!(result(CONTACT).is_registered);
    assert_eq!(result(CONTACT).lid.as_ref(), Some(&lid));
    assert_eq!(result(SECOND).lid.as_ref(), Some(&second));
    assert_eq!(
        result(ACCOUNT).lid.as_ref().map(|l| &l.user),
        Some(&account_lid.user)
    );
    let entry = c.client.get_lid_pn_entry(&lid).await.expect("lookup");
    assert_eq!(
        entry.map(|e| e.phone_number.to_string()).as_deref(),
        Some(CONTACT)
    );

    // usync by LID: registered.
    let results = harness::within(FAST, contacts.is_on_whatsapp(std::slice::from_ref(&lid)))
        .await
        .expect("in time")
        .expect("is_on_whatsapp by LID");
    assert!(
        results
            .iter()
            .any(|r| r.jid.user == lid.user && r.is_registered),
        "{results:?}"
    );

    // A number that is not on WhatsApp has no LID.
    let path = format!("/contacts/{SECOND}/profile");
    let (status, json) = admin(&sim, "POST", &path, json!({"on_whatsapp": false})).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["lid"], Value::Null, "{json}");
    let results = harness::within(FAST, contacts.is_on_whatsapp(&[jid(SECOND)]))
        .await
        .expect("in time")
        .expect("is_on_whatsapp");
    assert!(
        !results[0].is_registered && results[0].lid.is_none(),
        "{results:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_in_lid_mode_sends_from_its_lid() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let json = lid_mode(&sim, CONTACT, true).await;
    let lid = lid_of(&sim, CONTACT).await;
    assert_eq!(json["lid"], lid.to_string());
    assert_eq!(profile(&sim, CONTACT).await["lid_mode"], true);

    // The first message (a pkmsg) and the next (a msg), from the LID.
    for text in ["hello from my LID", "and again"] {
        let got = contact_text(&sim, &mut c, CONTACT, text).await;
        assert_sender(&got, CONTACT, Some(&lid));
    }
    // The client learned the mapping from `sender_pn`.
    let entry = c.client.get_lid_pn_entry(&lid).await.expect("lookup");
    assert_eq!(
        entry.map(|e| e.phone_number.to_string()).as_deref(),
        Some(CONTACT)
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reaches_a_lid_contact_by_lid_and_by_phone_number() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    lid_mode(&sim, CONTACT, true).await;
    let lid = lid_of(&sim, CONTACT).await;
    let got = contact_text(&sim, &mut c, CONTACT, "write me").await;
    assert_sender(&got, CONTACT, Some(&lid));

    // A reply to the LID JID the message came from, then to the number.
    // The client knows the mapping and its account is not LID-migrated, so
    // whatsapp-rust puts the phone number on the wire either way.
    let (id, to_lid) = reaches(&sim, &c, CONTACT, &got.info.source.sender, "by LID").await;
    assert!(!to_lid);
    assert_eq!(
        receipt(&mut c, &id, ReceiptType::Delivered).await.user,
        CONTACT
    );
    let (id, to_lid) = reaches(&sim, &c, CONTACT, &jid(CONTACT), "by phone").await;
    assert!(!to_lid);
    assert_eq!(
        receipt(&mut c, &id, ReceiptType::Delivered).await.user,
        CONTACT
    );

    // A client that never heard of the mapping writes to the LID: the
    // stanza goes to the LID (device list and prekeys asked for the LID
    // user), and the receipts come from the LID.
    let mut b = link_new(&sim, &dir.path().join("b.db"), OTHER, "Bob").await;
    assert!(
        b.client
            .get_lid_pn_entry(&lid)
            .await
            .expect("lookup")
            .is_none()
    );
    let (id, to_lid) = reaches(&sim, &b, CONTACT, &lid, "first by LID").await;
    assert!(to_lid, "the stanza was addressed to the LID");
    assert_eq!(receipt(&mut b, &id, ReceiptType::Delivered).await, lid);
    let (status, json) = admin(
        &sim,
        "POST",
        &format!("/contacts/{CONTACT}/read"),
        json!({ "id": id }),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(receipt(&mut b, &id, ReceiptType::Read).await, lid);
    // The contact answers it (from its LID) and B answers back.
    let reply = contact_sends(
        &sim,
        CONTACT,
        json!({"to": OTHER, "text": "got it", "reply_to": id}),
    )
    .await;
    let got = b.received(&reply).await;
    assert_sender(&got, CONTACT, Some(&lid));
    let ctx = got
        .message
        .extended_text_message
        .as_option()
        .and_then(|x| x.context_info.as_option())
        .expect("a quote");
    assert_eq!(ctx.stanza_id.as_deref(), Some(id.as_str()));
    reaches(&sim, &b, CONTACT, &lid, "second by LID").await;
    reaches(&sim, &b, CONTACT, &jid(CONTACT), "by phone").await;
    c.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_switched_to_lid_mode_after_a_pn_chat_keeps_working() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let lid = lid_of(&sim, CONTACT).await;

    // A conversation by phone number both ways.
    let got = contact_text(&sim, &mut c, CONTACT, "hi by number").await;
    assert_sender(&got, CONTACT, None);
    reaches(&sim, &c, CONTACT, &jid(CONTACT), "hi back").await;
    let got = contact_text(&sim, &mut c, CONTACT, "still by number").await;
    assert_sender(&got, CONTACT, None);

    // LID mode: the same Signal session goes on under the LID address.
    lid_mode(&sim, CONTACT, true).await;
    let got = contact_text(&sim, &mut c, CONTACT, "now from my LID").await;
    assert_sender(&got, CONTACT, Some(&lid));
    reaches(&sim, &c, CONTACT, &lid, "to the LID").await;
    reaches(&sim, &c, CONTACT, &jid(CONTACT), "to the number").await;
    let got = contact_text(&sim, &mut c, CONTACT, "LID again").await;
    assert_sender(&got, CONTACT, Some(&lid));

    // Back to the phone number; the client may keep using the LID.
    let json = lid_mode(&sim, CONTACT, false).await;
    assert_eq!(json["lid"], lid.to_string(), "the LID stays");
    let got = contact_text(&sim, &mut c, CONTACT, "by number again").await;
    assert_sender(&got, CONTACT, None);
    reaches(&sim, &c, CONTACT, &lid, "to the LID still").await;
    reaches(&sim, &c, CONTACT, &jid(CONTACT), "to the number too").await;

    // A contact whose first messages, by number, were never answered (no
    // mapping known, the session not yet acknowledged) switches: the client
    // moves the session to the LID address when the LID message arrives.
    let second_lid = lid_of(&sim, SECOND).await;
    for text in ["one", "two"] {
        let got = contact_text(&sim, &mut c, SECOND, text).await;
        assert_sender(&got, SECOND, None);
    }
    lid_mode(&sim, SECOND, true).await;
    for text in ["three", "four"] {
        let got = contact_text(&sim, &mut c, SECOND, text).await;
        assert_sender(&got, SECOND, Some(&second_lid));
    }
    reaches(&sim, &c, SECOND, &second_lid, "five").await;
    let got = contact_text(&sim, &mut c, SECOND, "six").await;
    assert_sender(&got, SECOND, Some(&second_lid));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_edits_replies_and_media_from_a_lid_contact_reach_the_client() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = harness::link_media(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    lid_mode(&sim, CONTACT, true).await;
    let lid = lid_of(&sim, CONTACT).await;
    let account_jid = format!("{ACCOUNT}@s.whatsapp.net");
    let to = |body: Value| {
        let mut body = body;
        body["to"] = json!(ACCOUNT);
        body
    };
    let ours = send_text(&c, &jid(CONTACT), "lunch at 12?").await;
    inbox_entry(&sim, CONTACT, &ours).await;

    // A reaction to the account's message.
    let id = contact_sends(
        &sim,
        CONTACT,
        to(json!({"type": "reaction", "message_id": ours, "emoji": "👍"})),
    )
    .await;
    let got = c.received(&id).await;
    assert_sender(&got, CONTACT, Some(&lid));
    let r = got.message.reaction_message.as_option().expect("reaction");
    let key = r.key.as_option().expect("key");
    assert_eq!(key.id.as_deref(), Some(ours.as_str()));
    assert_eq!(key.from_me, Some(false));
    assert_eq!(r.text.as_deref(), Some("👍"));

    // A reply quoting it.
    let id = contact_sends(&sim, CONTACT, to(json!({"text": "yes", "reply_to": ours}))).await;
    let got = c.received(&id).await;
    assert_sender(&got, CONTACT, Some(&lid));
    let ctx = got
        .message
        .extended_text_message
        .as_option()
        .and_then(|x| x.context_info.as_option())
        .expect("a quote");
    assert_eq!(ctx.stanza_id.as_deref(), Some(ours.as_str()));
    assert_eq!(ctx.participant.as_deref(), Some(account_jid.as_str()));

    // A text, edited.
    let text_id = contact_sends(&sim, CONTACT, to(json!({"text": "typo"}))).await;
    c.received(&text_id).await;
    let id = contact_sends(
        &sim,
        CONTACT,
        to(json!({"type": "edit", "message_id": text_id, "text": "fixed"})),
    )
    .await;
    let got = c.received(&id).await;
    assert_sender(&got, CONTACT, Some(&lid));
    let p = got.message.protocol_message.as_option().expect("protocol");
    assert_eq!(p.r#type, Some(ProtocolType::MESSAGE_EDIT));
    assert_eq!(
        p.key.as_option().and_then(|k| k.id.as_deref()),
        Some(text_id.as_str())
    );
    assert_eq!(
        p.edited_message.as_option().and_then(|m| m.text_content()),
        Some("fixed")
    );
    assert_eq!(got.info.edit.to_string_val(), "1");

    // An image, downloaded.
    use base64::Engine as _;
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let id = contact_sends(
        &sim,
        CONTACT,
        to(json!({"type": "image", "base64": b64, "caption": "look"})),
    )
    .await;
    let got = c.received(&id).await;
    assert_sender(&got, CONTACT, Some(&lid));
    let image = got.message.image_message.as_option().expect("image");
    assert_eq!(image.caption.as_deref(), Some("look"));
    let bytes = harness::within(FAST, c.client.download(image))
        .await
        .expect("in time")
        .expect("download");
    assert!(bytes == data, "downloaded bytes differ");

    // The client reads the LID chat: the contact records it.
    c.client
        .mark_as_read(&lid, None, &[text_id.as_str()])
        .await
        .expect("read");
    let receipts = eventually(FAST, || {
        let r = sim.contact_receipts(CONTACT);
        (!r.is_empty()).then_some(r)
    })
    .await
    .expect("a read receipt");
    assert_eq!(receipts[0].id, text_id);
    assert_eq!(receipts[0].from, account_jid);

    // And the client reacts to the contact's message by LID.
    let target = wa::MessageKey {
        remote_jid: Some(lid.to_string()),
        from_me: Some(false),
        id: Some(text_id.clone()),
        participant: None,
    };
    let r = harness::within(FAST, c.client.send_reaction(lid.clone(), target, "❤️"))
        .await
        .expect("in time")
        .expect("reaction");
    let m = inbox_entry(&sim, CONTACT, &r.message_id).await;
    assert_eq!(m["type"], "reaction", "{m}");
    assert_eq!(m["message_id"], text_id.as_str());
    assert_eq!(m["emoji"], "❤️");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lid_mode_field_is_checked() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let path = format!("/contacts/{CONTACT}/profile");
    for body in [json!({"lid_mode": "yes"}), json!({"lid_mode": 1})] {
        let (status, json) = admin(&sim, "POST", &path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {json}");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("lid_mode"), "{body}: {error}");
    }
    assert!(!sim.profile(CONTACT).lid_mode);
    // Sending to a number that is not an account is still refused.
    let (status, json) = admin(
        &sim,
        "POST",
        &format!("/contacts/{CONTACT}/messages"),
        json!({"to": OTHER, "text": "hi"}),
    )
    .await;
    assert_eq!(status, 404, "{json}");
}

/// A contact writing from its number names its LID too (`sender_lid`), so
/// the client learns the mapping; a number the admin made refuse messages
/// gets the client's stanza nacked with that error, and nothing delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pn_sender_names_its_lid_and_a_refusing_number_nacks() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let lid = lid_of(&sim, CONTACT).await;
    let got = contact_text(&sim, &mut c, CONTACT, "from my number").await;
    assert_eq!(got.info.source.sender, jid(CONTACT));
    assert_eq!(got.info.source.sender_alt.as_ref(), Some(&lid));
    let entry = c
        .client
        .get_lid_pn_entry(&jid(CONTACT))
        .await
        .expect("lookup");
    assert_eq!(entry.map(|e| e.lid.to_string()), Some(lid.user.to_string()));

    let path = format!("/contacts/{SECOND}/profile");
    let (status, json) = admin(&sim, "POST", &path, json!({"refuse_with": "463"})).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["refuse_with"], "463", "{json}");
    let id = send_text(&c, &jid(SECOND), "are you there?").await;
    let error = c
        .expect("the nack", |e| match e {
            Event::ServerAck(a) if a.id == id => Some(a.error.clone()),
            _ => None,
        })
        .await;
    assert_eq!(error.as_deref(), Some("463"));
    assert!(sim.inbox(SECOND).iter().all(|m| m.id != id));
    // Cleared, the number takes messages again.
    let (status, _) = admin(&sim, "POST", &path, json!({"refuse_with": null})).await;
    assert_eq!(status, 200);
    reaches(&sim, &c, SECOND, &jid(SECOND), "now?").await;
    c.stop().await;
}
