//! The message kinds other than media through wa-sim with the real
//! whatsapp-rust 0.7.0 client, both ways: locations, contact cards,
//! replies and mentions, reactions, edits, revokes, polls and votes; and
//! the admin API's checks of their bodies.
//!
//! Every wait is bounded and event-driven.

mod harness;

use std::time::Duration;

use harness::{admin, contact_sends, eventually, inbox_json, link_new};
use serde_json::{Value, json};
use wa::message::protocol_message::Type as ProtocolType;
use wacore::poll::{PollVoteCiphertext, compute_option_hash};
use wacore::proto_helpers::build_quote_context;
use whatsapp_rust::RevokeType;
use whatsapp_rust::prelude::*;

const FAST: Duration = Duration::from_secs(2);
const ACCOUNT: &str = "15550001111";
const CONTACT: &str = "15550002222";

fn jid(phone: &str) -> Jid {
    format!("{phone}@s.whatsapp.net").parse().unwrap()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Waits until the contact's inbox (as JSON) has an entry matching `pred`.
async fn inbox_entry(sim: &wa_sim::SimHandle, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let found = eventually(FAST, || {
        sim.inbox(CONTACT)
            .iter()
            .map(|m| serde_json::to_value(m).unwrap())
            .find(&pred)
    })
    .await
    .unwrap_or_else(|e| panic!("{what} in the inbox: {e}"));
    // The HTTP API shows the same entry.
    let listed = inbox_json(sim, CONTACT).await;
    assert!(listed.contains(&found), "{found} not in GET messages");
    found
}

async fn entry_by_id(sim: &wa_sim::SimHandle, id: &str) -> Value {
    inbox_entry(sim, id, |m| m["id"] == id).await
}

fn vcard(name: &str, phone: &str) -> String {
    format!("BEGIN:VCARD\nVERSION:3.0\nFN:{name}\nTEL;type=CELL;waid={phone}:+{phone}\nEND:VCARD")
}

fn contact_card(name: &str, vcard: String) -> wa::message::ContactMessage {
    wa::message::ContactMessage {
        display_name: Some(name.into()),
        vcard: Some(vcard),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_the_client_sends_lands_in_the_contact_inbox() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let contact = jid(CONTACT);
    let client = c.client.clone();
    let send = |m: wa::Message| {
        let client = client.clone();
        let to = contact.clone();
        async move {
            harness::within(FAST, client.send_message(to, m))
                .await
                .expect("sent in time")
                .expect("send")
                .message_id
        }
    };

    // A location.
    let id = send(wa::Message {
        location_message: MessageField::some(wa::message::LocationMessage {
            degrees_latitude: Some(48.8584),
            degrees_longitude: Some(2.2945),
            name: Some("Eiffel Tower".into()),
            address: Some("Champ de Mars, Paris".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let m = entry_by_id(&sim, &id).await;
    assert_eq!(m["type"], "location", "{m}");
    assert_eq!(m["latitude"], 48.8584);
    assert_eq!(m["longitude"], 2.2945);
    assert_eq!(m["name"], "Eiffel Tower");
    assert_eq!(m["address"], "Champ de Mars, Paris");

    // One card, with a phone written with spaces and a folded line.
    let id = send(wa::Message {
        contact_message: MessageField::some(contact_card(
            "Bob",
            "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Builder;Bob;;;\r\nFN:Bob the\r\n  Builder\r\n\
             item1.TEL;waid=15550003333:+1 555 000 3333\r\nEND:VCARD"
                .into(),
        )),
        ..Default::default()
    })
    .await;
    let m = entry_by_id(&sim, &id).await;
    assert_eq!(m["type"], "contacts", "{m}");
    assert_eq!(
        m["contacts"],
        json!([{"name": "Bob the Builder", "phones": ["+15550003333"]}])
    );

    // Two cards.
    let id = send(wa::Message {
        contacts_array_message: MessageField::some(wa::message::ContactsArrayMessage {
            display_name: Some("2 contacts".into()),
            contacts: vec![
                contact_card("Carol", vcard("Carol", "15550004444")),
                contact_card("Dan", vcard("Dan", "15550005555")),
            ],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let m = entry_by_id(&sim, &id).await;
    assert_eq!(m["type"], "contacts", "{m}");
    assert_eq!(
        m["contacts"],
        json!([
            {"name": "Carol", "phones": ["+15550004444"]},
            {"name": "Dan", "phones": ["+15550005555"]},
        ])
    );

    // A reply (with a mention) to a message the contact sent.
    let theirs = contact_sends(&sim, CONTACT, json!({"to": ACCOUNT, "text": "lunch?"})).await;
    let quoted = c.received(&theirs).await;
    let mut ctx = build_quote_context(&theirs, CONTACT_JID, &quoted.message);
    ctx.mentioned_jid = vec![CONTACT_JID.into()];
    let id = send(wa::Message::text_with_context("yes, @15550002222", ctx)).await;
    let m = entry_by_id(&sim, &id).await;
    assert_eq!(m["type"], "text", "{m}");
    assert_eq!(m["text"], "yes, @15550002222");
    assert_eq!(m["reply_to"], theirs.as_str());
    assert_eq!(m["mentions"], json!([CONTACT_JID]));

    // A reaction to it, then its removal.
    let target = wa::MessageKey {
        remote_jid: Some(CONTACT_JID.into()),
        from_me: Some(false),
        id: Some(theirs.clone()),
        participant: None,
    };
    for emoji in ["👍", ""] {
        let r = harness::within(
            FAST,
            c.client
                .send_reaction(contact.clone(), target.clone(), emoji),
        )
        .await
        .expect("in time")
        .expect("reaction");
        let m = entry_by_id(&sim, &r.message_id).await;
        assert_eq!(m["type"], "reaction", "{m}");
        assert_eq!(m["message_id"], theirs.as_str());
        assert_eq!(m["emoji"], emoji);
    }

    // A poll.
    let (r, _secret) = harness::within(
        FAST,
        c.client
            .polls()
            .create(contact.clone(), "Where?", &s(&["Pizza", "Sushi"]), 1),
    )
    .await
    .expect("in time")
    .expect("poll");
    let m = entry_by_id(&sim, &r.message_id).await;
    assert_eq!(m["type"], "poll", "{m}");
    assert_eq!(m["question"], "Where?");
    assert_eq!(m["options"], json!(["Pizza", "Sushi"]));
    assert_eq!(m["selectable"], 1);

    // A text, edited, then revoked.
    let id = send(wa::Message::text("see you at 12")).await;
    let m = entry_by_id(&sim, &id).await;
    assert_eq!(
        (&m["type"], &m["text"]),
        (&json!("text"), &json!("see you at 12"))
    );
    assert!(
        m.get("reply_to").is_none() && m.get("mentions").is_none(),
        "{m}"
    );
    // `edit_message` answers the edited message's id; the edit itself
    // travels under a fresh one.
    let edited = harness::within(
        FAST,
        c.client.edit_message(
            contact.clone(),
            id.clone(),
            wa::Message::text("see you at 1"),
        ),
    )
    .await
    .expect("in time")
    .expect("edit");
    assert_eq!(edited, id);
    let m = inbox_entry(&sim, "the edit", |m| m["type"] == "edit").await;
    assert_ne!(m["id"], id.as_str());
    assert_eq!(m["message_id"], id.as_str());
    assert_eq!(m["text"], "see you at 1");
    harness::within(
        FAST,
        c.client
            .revoke_message(contact.clone(), id.clone(), RevokeType::Sender),
    )
    .await
    .expect("in time")
    .expect("revoke");
    let m = inbox_entry(&sim, "the revoke", |m| m["type"] == "revoke").await;
    assert_eq!(m["message_id"], id.as_str());
    assert_eq!(m["from"], format!("{ACCOUNT}:1@s.whatsapp.net"));
    c.stop().await;
}

const ACCOUNT_JID: &str = "15550001111@s.whatsapp.net";
const CONTACT_JID: &str = "15550002222@s.whatsapp.net";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_a_contact_sends_reaches_the_client() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    // Something of the account's to reply and react to.
    let ours = c
        .client
        .send_message(jid(CONTACT), wa::Message::text("hello"))
        .await
        .unwrap()
        .message_id;
    entry_by_id(&sim, &ours).await;
    let to = |body: Value| {
        let mut body = body;
        body["to"] = json!(ACCOUNT);
        body["push_name"] = json!("Alice");
        body
    };

    // A location.
    let id = contact_sends(
        &sim,
        CONTACT,
        to(
            json!({"type": "location", "latitude": 52.52, "longitude": 13.405,
                  "name": "Berlin", "address": "Alexanderplatz"}),
        ),
    )
    .await;
    let got = c.received(&id).await;
    let l = got.message.location_message.as_option().expect("location");
    assert_eq!(
        (l.degrees_latitude, l.degrees_longitude),
        (Some(52.52), Some(13.405))
    );
    assert_eq!(l.name.as_deref(), Some("Berlin"));
    assert_eq!(l.address.as_deref(), Some("Alexanderplatz"));
    assert_eq!(got.info.push_name, "Alice");
    assert_eq!(got.info.edit.to_string_val(), "");
    let location_id = id;

    // One card, then two.
    let id = contact_sends(
        &sim,
        CONTACT,
        to(json!({"type": "contacts", "contacts": [{"name": "Bob", "phones": ["+15550003333"]}]})),
    )
    .await;
    let got = c.received(&id).await;
    let card = got.message.contact_message.as_option().expect("contact");
    assert_eq!(card.display_name.as_deref(), Some("Bob"));
    assert_eq!(
        card.vcard.as_deref(),
        Some(vcard("Bob", "15550003333").as_str())
    );
    let id = contact_sends(
        &sim,
        CONTACT,
        to(json!({"type": "contacts", "contacts": [
            {"name": "Carol", "phones": ["15550004444", "15550006666"]},
            {"name": "Dan", "phones": ["15550005555"]},
        ]})),
    )
    .await;
    let got = c.received(&id).await;
    let cards = got
        .message
        .contacts_array_message
        .as_option()
        .expect("array");
    assert_eq!(cards.contacts.len(), 2);
    assert_eq!(
        cards.contacts[0].vcard.as_deref(),
        Some(
            "BEGIN:VCARD\nVERSION:3.0\nFN:Carol\nTEL;type=CELL;waid=15550004444:+15550004444\n\
             TEL;type=CELL;waid=15550006666:+15550006666\nEND:VCARD"
        )
    );
    assert_eq!(cards.contacts[1].display_name.as_deref(), Some("Dan"));

    // Reactions: to the account's message, to the contact's own, removed.
    let cases = [
        (ours.as_str(), "❤️", false, ""),
        (location_id.as_str(), "😂", true, ""),
        (ours.as_str(), "", false, "7"),
    ];
    for (target, emoji, from_me, edit) in cases {
        let id = contact_sends(
            &sim,
            CONTACT,
            to(json!({"type": "reaction", "message_id": target, "emoji": emoji})),
        )
        .await;
        let got = c.received(&id).await;
        let r = got.message.reaction_message.as_option().expect("reaction");
        let key = r.key.as_option().expect("key");
        assert_eq!(key.id.as_deref(), Some(target));
        assert_eq!(key.remote_jid.as_deref(), Some(ACCOUNT_JID));
        assert_eq!(key.from_me, Some(from_me), "{emoji:?}");
        assert_eq!(r.text.as_deref(), Some(emoji));
        assert_eq!(got.info.edit.to_string_val(), edit, "{emoji:?}");
    }

    // A reply to the account's message with a mention.
    let id = contact_sends(
        &sim,
        CONTACT,
        to(json!({"text": "hi @15550001111", "reply_to": ours, "mentions": [ACCOUNT]})),
    )
    .await;
    let got = c.received(&id).await;
    let ext = got.message.extended_text_message.as_option().expect("ext");
    assert_eq!(ext.text.as_deref(), Some("hi @15550001111"));
    let ctx = ext.context_info.as_option().expect("context_info");
    assert_eq!(ctx.stanza_id.as_deref(), Some(ours.as_str()));
    assert_eq!(ctx.participant.as_deref(), Some(ACCOUNT_JID));
    assert_eq!(
        ctx.quoted_message
            .as_option()
            .and_then(|q| q.text_content()),
        Some("hello")
    );
    assert_eq!(ctx.mentioned_jid, vec![ACCOUNT_JID.to_string()]);

    // A location replying to the contact's own location.
    let id = contact_sends(
        &sim,
        CONTACT,
        to(
            json!({"type": "location", "latitude": -33.86, "longitude": 151.21,
                  "reply_to": location_id}),
        ),
    )
    .await;
    let got = c.received(&id).await;
    let l = got.message.location_message.as_option().expect("location");
    let ctx = l.context_info.as_option().expect("context_info");
    assert_eq!(ctx.stanza_id.as_deref(), Some(location_id.as_str()));
    assert_eq!(ctx.participant.as_deref(), Some(CONTACT_JID));
    assert!(
        ctx.quoted_message
            .as_option()
            .is_some_and(|q| q.location_message.is_set())
    );

    // A text, edited, then revoked.
    let text_id = contact_sends(&sim, CONTACT, to(json!({"text": "typo"}))).await;
    c.received(&text_id).await;
    let id = contact_sends(
        &sim,
        CONTACT,
        to(json!({"type": "edit", "message_id": text_id, "text": "fixed"})),
    )
    .await;
    assert_ne!(id, text_id);
    let got = c.received(&id).await;
    let p = got.message.protocol_message.as_option().expect("protocol");
    assert_eq!(p.r#type, Some(ProtocolType::MESSAGE_EDIT));
    let key = p.key.as_option().expect("key");
    assert_eq!(key.id.as_deref(), Some(text_id.as_str()));
    assert_eq!(key.from_me, Some(true));
    assert_eq!(key.remote_jid.as_deref(), Some(ACCOUNT_JID));
    assert_eq!(
        p.edited_message.as_option().and_then(|m| m.text_content()),
        Some("fixed")
    );
    assert_eq!(got.info.edit.to_string_val(), "1");
    let id = contact_sends(
        &sim,
        CONTACT,
        to(json!({"type": "revoke", "message_id": text_id})),
    )
    .await;
    let got = c.received(&id).await;
    let p = got.message.protocol_message.as_option().expect("protocol");
    assert_eq!(p.r#type, Some(ProtocolType::REVOKE));
    assert_eq!(
        p.key.as_option().and_then(|k| k.id.as_deref()),
        Some(text_id.as_str())
    );
    assert_eq!(got.info.edit.to_string_val(), "7");

    // Polls: multiple choice (v1) and single choice (v3), with a secret.
    let id = contact_sends(
        &sim,
        CONTACT,
        to(
            json!({"type": "poll", "question": "Which days?", "options": ["Mon", "Tue", "Wed"],
                  "selectable": 2}),
        ),
    )
    .await;
    let got = c.received(&id).await;
    let poll = got
        .message
        .poll_creation_message
        .as_option()
        .expect("poll v1");
    assert_eq!(poll.name.as_deref(), Some("Which days?"));
    let names: Vec<_> = poll
        .options
        .iter()
        .filter_map(|o| o.option_name.clone())
        .collect();
    assert_eq!(names, s(&["Mon", "Tue", "Wed"]));
    assert_eq!(poll.selectable_options_count, Some(2));
    let secret = got
        .message
        .message_context_info
        .as_option()
        .and_then(|c| c.message_secret.clone());
    assert_eq!(secret.map(|s| s.len()), Some(32));
    let id = contact_sends(
        &sim,
        CONTACT,
        to(json!({"type": "poll", "question": "Yes?", "options": ["Yes", "No"]})),
    )
    .await;
    let got = c.received(&id).await;
    let poll = got
        .message
        .poll_creation_message_v3
        .as_option()
        .expect("poll v3");
    assert_eq!(poll.selectable_options_count, Some(1));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_votes_decrypt_both_ways() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let options = s(&["Pizza", "Sushi", "Salad"]);

    // The client's poll; the contact votes through the admin API.
    let (poll, secret) = harness::within(
        FAST,
        c.client.polls().create(jid(CONTACT), "Lunch?", &options, 2),
    )
    .await
    .expect("in time")
    .expect("poll");
    entry_by_id(&sim, &poll.message_id).await;
    let vote = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ACCOUNT, "type": "poll_vote", "message_id": poll.message_id,
               "options": ["Sushi", "Salad"]}),
    )
    .await;
    let got = c.received(&vote).await;
    let u = got
        .message
        .poll_update_message
        .as_option()
        .expect("poll update");
    let key = u.poll_creation_message_key.as_option().expect("key");
    assert_eq!(key.id.as_deref(), Some(poll.message_id.as_str()));
    assert_eq!(key.from_me, Some(false));
    let v = u.vote.as_option().expect("vote");
    let hashes = c
        .client
        .polls()
        .decrypt_vote(
            PollVoteCiphertext {
                enc_payload: v.enc_payload.as_deref().unwrap(),
                enc_iv: v.enc_iv.as_deref().unwrap(),
            },
            &secret,
            &poll.message_id,
            &jid(ACCOUNT),
            &got.info.source.sender,
        )
        .await
        .expect("the vote decrypts");
    assert_eq!(
        hashes,
        vec![
            compute_option_hash("Sushi").to_vec(),
            compute_option_hash("Salad").to_vec()
        ]
    );

    // The contact's poll; the client votes; the contact reads the vote.
    let theirs = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ACCOUNT, "type": "poll", "question": "Dinner?", "options": ["A", "B"]}),
    )
    .await;
    let got = c.received(&theirs).await;
    let their_secret = got
        .message
        .message_context_info
        .as_option()
        .and_then(|c| c.message_secret.clone())
        .expect("a message secret");
    let r = harness::within(
        FAST,
        c.client.polls().vote(
            jid(CONTACT),
            &theirs,
            &jid(CONTACT),
            &their_secret,
            &s(&["B"]),
        ),
    )
    .await
    .expect("in time")
    .expect("vote");
    let m = entry_by_id(&sim, &r.message_id).await;
    assert_eq!(m["type"], "poll_vote", "{m}");
    assert_eq!(m["message_id"], theirs.as_str());
    assert_eq!(m["options"], json!(["B"]));

    // A vote on the contact's own poll is allowed too; a vote on a poll
    // the contact never saw is not.
    let (status, json) = admin(
        &sim,
        "POST",
        &format!("/contacts/{CONTACT}/messages"),
        json!({"to": ACCOUNT, "type": "poll_vote", "message_id": "3EB0NOPE", "options": ["A"]}),
    )
    .await;
    assert_eq!(status, 400, "{json}");
    assert!(
        json["error"].as_str().unwrap().starts_with("message_id"),
        "{json}"
    );
    let own = contact_sends(
        &sim,
        CONTACT,
        json!({"to": ACCOUNT, "type": "poll_vote", "message_id": theirs, "options": ["A"]}),
    )
    .await;
    let got = c.received(&own).await;
    let u = got
        .message
        .poll_update_message
        .as_option()
        .expect("poll update");
    let key = u.poll_creation_message_key.as_option().expect("key");
    assert_eq!(key.from_me, Some(true));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_rejects_bad_message_bodies_naming_the_field() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let thirteen: Vec<String> = (1..=13).map(|i| format!("o{i}")).collect();
    let cases = [
        (json!({"type": "sticker_pack"}), "type"),
        (
            json!({"type": "location", "latitude": 91, "longitude": 0}),
            "latitude",
        ),
        (
            json!({"type": "location", "latitude": 0, "longitude": -180.5}),
            "longitude",
        ),
        (json!({"type": "location", "longitude": 0}), "latitude"),
        (json!({"type": "contacts", "contacts": []}), "contacts"),
        (json!({"type": "contacts"}), "contacts"),
        (
            json!({"type": "contacts", "contacts": [{"phones": ["15550003333"]}]}),
            "contacts",
        ),
        (
            json!({"type": "contacts", "contacts": [{"name": "X", "phones": ["call me"]}]}),
            "contacts",
        ),
        (
            json!({"type": "poll", "question": "Q", "options": ["only"]}),
            "options",
        ),
        (
            json!({"type": "poll", "question": "Q", "options": thirteen}),
            "options",
        ),
        (
            json!({"type": "poll", "question": "Q", "options": ["a", "a"]}),
            "options",
        ),
        (json!({"type": "poll", "options": ["a", "b"]}), "question"),
        (
            json!({"type": "poll", "question": "Q", "options": ["a", "b"], "selectable": 3}),
            "selectable",
        ),
        (
            json!({"type": "poll_vote", "message_id": "3EB0NOPE", "options": ["a"]}),
            "message_id",
        ),
        (
            json!({"type": "edit", "message_id": "3EB0NOPE", "text": "x"}),
            "message_id",
        ),
        (
            json!({"type": "revoke", "message_id": "3EB0NOPE"}),
            "message_id",
        ),
        (json!({"type": "revoke"}), "message_id"),
        (
            json!({"type": "reaction", "message_id": "3EB0NOPE"}),
            "emoji",
        ),
        (json!({"type": "reaction", "emoji": "👍"}), "message_id"),
        (
            json!({"type": "reaction", "message_id": "x", "emoji": "👍", "reply_to": "y"}),
            "reply_to",
        ),
        (json!({"text": "hi", "reply_to": "3EB0NOPE"}), "reply_to"),
        (json!({"text": "hi", "mentions": ["nobody"]}), "mentions"),
        (json!({"type": "text"}), "text"),
    ];
    let path = format!("/contacts/{CONTACT}/messages");
    for (mut body, field) in cases {
        body["to"] = json!(ACCOUNT);
        let (status, json) = admin(&sim, "POST", &path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {json}");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(field), "{body}: {error}");
    }
    // An unknown type lists the known ones.
    let (_, json) = admin(&sim, "POST", &path, json!({"to": ACCOUNT, "type": "gif"})).await;
    let error = json["error"].as_str().unwrap();
    for kind in [
        "location",
        "contacts",
        "reaction",
        "edit",
        "revoke",
        "poll",
        "poll_vote",
    ] {
        assert!(error.contains(kind), "{error}");
    }
    // A good body to a number that is not an account.
    let (status, json) = admin(
        &sim,
        "POST",
        &path,
        json!({"to": ACCOUNT, "type": "location", "latitude": 1, "longitude": 2}),
    )
    .await;
    assert_eq!(status, 404, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_revokes_between_two_real_clients_keep_their_edit_attribute() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let a = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Alice").await;
    let mut b = link_new(&sim, &dir.path().join("b.db"), "15550004444", "Bob").await;
    let to_b = jid("15550004444");
    let id = a
        .client
        .send_message(to_b.clone(), wa::Message::text("draft"))
        .await
        .unwrap()
        .message_id;
    assert_eq!(b.received(&id).await.info.edit.to_string_val(), "");
    a.client
        .edit_message(to_b.clone(), id.clone(), wa::Message::text("final"))
        .await
        .unwrap();
    let edit = |want: ProtocolType| {
        move |e: &Event| {
            e.messages().any(|m| {
                m.message
                    .protocol_message
                    .as_option()
                    .is_some_and(|p| p.r#type == Some(want))
            })
        }
    };
    let e = harness::within(FAST, b.wait(edit(ProtocolType::MESSAGE_EDIT)))
        .await
        .expect("the edit");
    let m = e.messages().next().unwrap();
    assert_eq!(m.info.edit.to_string_val(), "1");
    a.client
        .revoke_message(to_b, id, RevokeType::Sender)
        .await
        .unwrap();
    let e = harness::within(FAST, b.wait(edit(ProtocolType::REVOKE)))
        .await
        .expect("the revoke");
    let m = e.messages().next().unwrap();
    assert_eq!(m.info.edit.to_string_val(), "7");
    a.stop().await;
    b.stop().await;
}
