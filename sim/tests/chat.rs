//! Chat actions and lookups through wa-sim with the real whatsapp-rust
//! 0.7.0 client: read and played receipts, chat states and presence both
//! ways, is-on-WhatsApp, profile pictures and status texts, calls,
//! undecryptable messages, number changes; and the admin API's checks of
//! their bodies.
//!
//! Every wait is bounded and event-driven.

mod harness;

use std::time::Duration;

use harness::{admin, admin_list, contact_sends, eventually, jid, link_new};
use serde_json::{Value, json};
use wacore::types::call::CallAction;
use wacore::types::presence::{ChatPresence, ChatPresenceMedia};
use whatsapp_rust::prelude::*;

const FAST: Duration = Duration::from_secs(2);
const ACCOUNT: &str = "15550001111";
const CONTACT: &str = "15550002222";
const OTHER: &str = "15550003333";
const ABSENT: &str = "15550009999";

/// Waits until the simulator holds `n` entries (`count`), then checks that
/// `GET /admin{path}` lists them under `key`.
async fn listed(
    sim: &wa_sim::SimHandle,
    count: impl Fn() -> usize,
    path: &str,
    key: &str,
    n: usize,
) -> Vec<Value> {
    eventually(FAST, || (count() >= n).then_some(()))
        .await
        .unwrap_or_else(|e| panic!("{n} {key}: {e}"));
    let list = admin_list(sim, path, key).await;
    assert_eq!(list.len(), n, "{list:?}");
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_and_played_receipts_to_a_contact_are_recorded() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let id = contact_sends(&sim, CONTACT, json!({"to": ACCOUNT, "text": text})).await;
        c.received(&id).await;
        ids.push(id);
    }
    let contact = jid(CONTACT);
    c.client
        .mark_as_read(&contact, None, &[ids[0].as_str(), ids[1].as_str()])
        .await
        .expect("read");
    c.client
        .mark_as_played(&contact, None, &[ids[2].as_str()])
        .await
        .expect("played");
    let list = listed(
        &sim,
        || sim.contact_receipts(CONTACT).len(),
        &format!("/contacts/{CONTACT}/receipts"),
        "receipts",
        3,
    )
    .await;
    let from = format!("{ACCOUNT}@s.whatsapp.net");
    for (entry, (id, kind)) in
        list.iter()
            .zip([(&ids[0], "read"), (&ids[1], "read"), (&ids[2], "played")])
    {
        assert_eq!(entry["id"], id.as_str(), "{entry}");
        assert_eq!(entry["type"], kind, "{entry}");
        assert_eq!(entry["from"], from.as_str(), "{entry}");
        assert!(entry["t"].as_u64().unwrap_or(0) > 1_600_000_000, "{entry}");
    }
    // Delivery receipts are not listed, and nobody else got any.
    assert!(sim.contact_receipts(OTHER).is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_states_and_own_presence_are_recorded() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let contact = jid(CONTACT);
    let chatstate = c.client.chatstate();
    chatstate.send_composing(&contact).await.expect("composing");
    chatstate.send_recording(&contact).await.expect("recording");
    chatstate.send_paused(&contact).await.expect("paused");
    let list = listed(
        &sim,
        || sim.contact_chatstates(CONTACT).len(),
        &format!("/contacts/{CONTACT}/chatstates"),
        "chatstates",
        3,
    )
    .await;
    let states: Vec<&Value> = list.iter().map(|e| &e["state"]).collect();
    assert_eq!(
        states,
        [&json!("composing"), &json!("recording"), &json!("paused")]
    );
    for e in &list {
        assert_eq!(e["from"], format!("{ACCOUNT}@s.whatsapp.net"), "{e}");
        assert!(e["t"].as_u64().is_some(), "{e}");
    }

    let path = format!("/accounts/{ACCOUNT}/presence");
    for (state, set) in [("unavailable", false), ("available", true)] {
        if set {
            c.client
                .presence()
                .set_available()
                .await
                .expect("available");
        } else {
            c.client
                .presence()
                .set_unavailable()
                .await
                .expect("unavailable");
        }
        eventually(FAST, || {
            let p = sim.account_presence(ACCOUNT);
            (serde_json::to_value(&p).unwrap()["state"] == state).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("presence {state}: {e}"));
        let (status, json) = admin(&sim, "GET", &path, Value::Null).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["state"], state, "{json}");
        assert!(json["t"].as_u64().is_some(), "{json}");
    }
    // An account whose devices never said anything.
    let (_, json) = admin(
        &sim,
        "GET",
        &format!("/accounts/{OTHER}/presence"),
        Value::Null,
    )
    .await;
    assert_eq!(json, json!({"state": null, "t": null}));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_answer_from_each_numbers_profile() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let set = |phone: &str, body: Value| {
        let sim = &sim;
        let path = format!("/contacts/{phone}/profile");
        async move {
            let (status, json) = admin(sim, "POST", &path, body).await;
            assert_eq!(status, 200, "{json}");
            json
        }
    };
    let json = set(ABSENT, json!({"on_whatsapp": false})).await;
    assert_eq!(
        json,
        json!({"phone": ABSENT, "on_whatsapp": false, "status": null, "picture": false,
               "lid_mode": false, "refuse_with": null, "lid": null})
    );
    let json = set(CONTACT, json!({"status": "Busy building", "picture": true})).await;
    assert_eq!(json["status"], "Busy building");
    assert_eq!(json["picture"], true);

    // Is on WhatsApp: a linked account, a contact, a number marked absent.
    let contacts = c.client.contacts();
    let results = harness::within(
        FAST,
        contacts.is_on_whatsapp(&[jid(ACCOUNT), jid(CONTACT), jid(ABSENT)]),
    )
    .await
    .expect("in time")
    .expect("is_on_whatsapp");
    let registered = |phone: &str| {
        results
            .iter()
            .find(|r| r.jid.user == phone)
            .unwrap_or_else(|| panic!("{phone} not in {results:?}"))
    };
    assert!(registered(ACCOUNT).is_registered);
    assert!(registered(ACCOUNT).lid.is_some(), "accounts have a LID");
    assert!(registered(CONTACT).is_registered);
    assert!(!registered(ABSENT).is_registered);

    // Profile pictures: the contact has one, another number has none.
    let pic = harness::within(FAST, contacts.get_profile_picture(&jid(CONTACT), false))
        .await
        .expect("in time")
        .expect("picture")
        .expect("the contact has a picture");
    assert!(pic.id.parse::<u64>().is_ok(), "{pic:?}");
    assert!(
        pic.url.starts_with("https://") && pic.url.ends_with(&format!("/pp/{CONTACT}.jpg")),
        "{pic:?}"
    );
    assert_eq!(pic.direct_path.as_deref(), Some("/pp/15550002222.jpg"));
    let none = harness::within(FAST, contacts.get_profile_picture(&jid(OTHER), true))
        .await
        .expect("in time")
        .expect("no error for a missing picture");
    assert!(none.is_none(), "{none:?}");

    // Status texts.
    let info = harness::within(FAST, contacts.get_user_info(&[jid(CONTACT), jid(OTHER)]))
        .await
        .expect("in time")
        .expect("user info");
    assert_eq!(
        info.get(&jid(CONTACT)).and_then(|i| i.status.as_deref()),
        Some("Busy building"),
        "{info:?}"
    );
    assert_eq!(info.get(&jid(OTHER)).map(|i| i.status.clone()), Some(None));

    // Clearing the status and the picture.
    let json = set(CONTACT, json!({"status": null, "picture": false})).await;
    assert_eq!(json["status"], Value::Null);
    let none = harness::within(FAST, contacts.get_profile_picture(&jid(CONTACT), false))
        .await
        .expect("in time")
        .expect("no error");
    assert!(none.is_none(), "{none:?}");
    let info = harness::within(FAST, contacts.get_user_info(&[jid(CONTACT)]))
        .await
        .expect("in time")
        .expect("user info");
    assert_eq!(info[&jid(CONTACT)].status, None);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_chat_states_and_presence_reach_the_client() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let chatstate = format!("/contacts/{CONTACT}/chatstate");
    for (state, want, media) in [
        (
            "composing",
            ChatPresence::Composing,
            ChatPresenceMedia::Text,
        ),
        (
            "recording",
            ChatPresence::Composing,
            ChatPresenceMedia::Audio,
        ),
        ("paused", ChatPresence::Paused, ChatPresenceMedia::Text),
    ] {
        let (status, json) = admin(
            &sim,
            "POST",
            &chatstate,
            json!({"to": ACCOUNT, "state": state}),
        )
        .await;
        assert_eq!(status, 200, "{json}");
        let (got, got_media) = c
            .expect(&format!("ChatPresence {state}"), |e| match e {
                Event::ChatPresence(u) if u.source.sender.user == CONTACT => {
                    Some((u.state, u.media))
                }
                _ => None,
            })
            .await;
        assert_eq!((got, got_media), (want, media), "{state}");
    }

    let presence = format!("/contacts/{CONTACT}/presence");
    let (status, json) = admin(
        &sim,
        "POST",
        &presence,
        json!({"to": ACCOUNT, "state": "available"}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let (unavailable, last) = c
        .expect("Presence available", |e| match e {
            Event::Presence(p) if p.from.user == CONTACT => Some((p.unavailable, p.last_seen)),
            _ => None,
        })
        .await;
    assert!(!unavailable);
    assert_eq!(last, None);
    let (status, json) = admin(
        &sim,
        "POST",
        &presence,
        json!({"to": ACCOUNT, "state": "unavailable", "last_seen": 1_700_000_000}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let (unavailable, last) = c
        .expect("Presence unavailable", |e| match e {
            Event::Presence(p) if p.from.user == CONTACT => Some((p.unavailable, p.last_seen)),
            _ => None,
        })
        .await;
    assert!(unavailable);
    assert_eq!(last.map(|t| t.timestamp()), Some(1_700_000_000));

    // A subscription is answered with what the contact last showed.
    c.client
        .presence()
        .subscribe(jid(CONTACT))
        .await
        .expect("subscribe");
    let unavailable = c
        .expect("Presence after subscribe", |e| match e {
            Event::Presence(p) if p.from.user == CONTACT => Some(p.unavailable),
            _ => None,
        })
        .await;
    assert!(unavailable);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_call_rings_and_the_rejection_is_recorded() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let (status, json) = admin(
        &sim,
        "POST",
        &format!("/contacts/{CONTACT}/call"),
        json!({"to": ACCOUNT, "video": true}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let call_id = json["call_id"].as_str().expect("a call id").to_string();
    let call = c
        .expect("IncomingCall", |e| match e {
            Event::IncomingCall(call) if call.action.call_id() == call_id => Some(call.clone()),
            _ => None,
        })
        .await;
    assert_eq!(call.from.user, CONTACT);
    assert!(
        matches!(call.action, CallAction::Offer { is_video: true, .. }),
        "{:?}",
        call.action
    );
    let calls = admin_list(&sim, &format!("/contacts/{CONTACT}/calls"), "calls").await;
    assert_eq!(
        calls,
        [json!({"call_id": call_id, "to": ACCOUNT, "video": true, "state": "offered"})]
    );

    c.client.voip().reject(&call).await.expect("reject");
    eventually(FAST, || {
        sim.contact_calls(CONTACT)
            .first()
            .filter(|c| c.state == wa_sim::CallState::Rejected)
            .cloned()
    })
    .await
    .expect("the rejection is recorded");
    let calls = admin_list(&sim, &format!("/contacts/{CONTACT}/calls"), "calls").await;
    assert_eq!(calls[0]["state"], "rejected", "{calls:?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecryptable_messages_raise_the_event_and_later_ones_decrypt() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let undecryptable = |round: &str| {
        let body = json!({"to": ACCOUNT, "text": format!("secret {round}"), "undecryptable": true});
        contact_sends(&sim, CONTACT, body)
    };
    // First as a prekey message (no session yet), then, once the client
    // has written to the contact, as an ordinary one.
    for round in ["pkmsg", "msg"] {
        let id = undecryptable(round).await;
        c.expect(&format!("UndecryptableMessage ({round})"), |e| match e {
            Event::UndecryptableMessage(u) if u.info.id == id => Some(()),
            _ => None,
        })
        .await;
        let id = contact_sends(
            &sim,
            CONTACT,
            json!({"to": ACCOUNT, "text": format!("after {round}")}),
        )
        .await;
        let m = c.received(&id).await;
        assert_eq!(
            m.message.text_content(),
            Some(format!("after {round}").as_str())
        );
        if round == "pkmsg" {
            let sent = c
                .client
                .send_message(jid(CONTACT), wa::Message::text("hello"))
                .await
                .expect("send");
            eventually(FAST, || {
                sim.inbox(CONTACT)
                    .iter()
                    .any(|m| m.id == sent.message_id)
                    .then_some(())
            })
            .await
            .expect("the contact got the client's text");
        }
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_change_reaches_the_client() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let (status, json) = admin(
        &sim,
        "POST",
        &format!("/contacts/{CONTACT}/change-number"),
        json!({"to": ACCOUNT, "new_phone": "+15550004444"}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let (old, new) = c
        .expect("ContactNumberChanged", |e| match e {
            Event::ContactNumberChanged(n) => Some((n.old_jid.to_string(), n.new_jid.to_string())),
            _ => None,
        })
        .await;
    assert_eq!(old, format!("{CONTACT}@s.whatsapp.net"));
    assert_eq!(new, "15550004444@s.whatsapp.net");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_rejects_bad_chat_bodies_naming_the_field() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let cases = [
        (
            "chatstate",
            json!({"to": ACCOUNT, "state": "typing"}),
            "state",
        ),
        ("chatstate", json!({"to": ACCOUNT}), "state"),
        ("chatstate", json!({"to": ACCOUNT, "state": 1}), "state"),
        ("chatstate", json!({"state": "composing"}), "to"),
        (
            "chatstate",
            json!({"to": "alice", "state": "composing"}),
            "to",
        ),
        (
            "chatstate",
            json!({"to": ACCOUNT, "state": "composing", "mood": "happy"}),
            "mood",
        ),
        ("chatstate", json!(["composing"]), "body"),
        ("presence", json!({"to": ACCOUNT, "state": "away"}), "state"),
        (
            "presence",
            json!({"to": ACCOUNT, "state": "available", "last_seen": 5}),
            "last_seen",
        ),
        (
            "presence",
            json!({"to": ACCOUNT, "state": "unavailable", "last_seen": -1}),
            "last_seen",
        ),
        ("call", json!({"to": ACCOUNT, "video": "yes"}), "video"),
        ("call", json!({}), "to"),
        ("change-number", json!({"to": ACCOUNT}), "new_phone"),
        (
            "change-number",
            json!({"to": ACCOUNT, "new_phone": "12ab"}),
            "new_phone",
        ),
        (
            "change-number",
            json!({"to": ACCOUNT, "new_phone": CONTACT}),
            "new_phone",
        ),
        ("profile", json!({}), "body"),
        ("profile", json!({"on_whatsapp": "no"}), "on_whatsapp"),
        ("profile", json!({"status": 5}), "status"),
        ("profile", json!({"picture": 1}), "picture"),
        ("profile", json!({"lid": "123@lid"}), "lid"),
    ];
    for (route, body, field) in cases {
        let path = format!("/contacts/{CONTACT}/{route}");
        let (status, json) = admin(&sim, "POST", &path, body.clone()).await;
        assert_eq!(status, 400, "{route} {body}: {json}");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(field), "{route} {body}: {error}");
    }
    // Good bodies to a number that is not an account.
    for (route, body) in [
        ("chatstate", json!({"to": OTHER, "state": "paused"})),
        ("presence", json!({"to": OTHER, "state": "available"})),
        ("call", json!({"to": OTHER})),
        ("change-number", json!({"to": OTHER, "new_phone": ABSENT})),
    ] {
        let path = format!("/contacts/{CONTACT}/{route}");
        let (status, json) = admin(&sim, "POST", &path, body).await;
        assert_eq!(status, 404, "{route}: {json}");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("to:"), "{route}: {error}");
    }
    // A bad phone number in the path.
    let (status, json) = admin(&sim, "GET", "/contacts/bob/receipts", Value::Null).await;
    assert_eq!(status, 400, "{json}");
    // Nothing was recorded for a refused call.
    assert!(sim.contact_calls(CONTACT).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_state_between_two_accounts_is_passed_on() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let a = link_new(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let mut b = link_new(&sim, &dir.path().join("b.db"), OTHER, "Bob").await;
    a.client
        .chatstate()
        .send_recording(&jid(OTHER))
        .await
        .expect("recording");
    let (state, media) = b
        .expect("ChatPresence from the other account", |e| match e {
            Event::ChatPresence(u) if u.source.sender.user == ACCOUNT => Some((u.state, u.media)),
            _ => None,
        })
        .await;
    assert_eq!(
        (state, media),
        (ChatPresence::Composing, ChatPresenceMedia::Audio)
    );
    // Between accounts nothing is recorded.
    assert!(sim.contact_chatstates(OTHER).is_empty());
    a.stop().await;
    b.stop().await;
}
