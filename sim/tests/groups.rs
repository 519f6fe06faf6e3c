//! Groups through wa-sim with the real whatsapp-rust 0.7.0 client: the
//! `w:g2` IQs (create, info, participating, participants, leave, invite
//! links, subject, description, announce, locked) with per-participant
//! results and refusals, the `w:gp2` notifications as `Event::GroupUpdate`
//! at the other linked account, group messages both ways between linked
//! devices and simulated contacts (sender keys), offline delivery, the
//! retry path after a withheld sender key, LID-addressed groups, and the
//! admin routes.
//!
//! Every wait is bounded and event-driven.

mod harness;

use std::collections::HashMap;
use std::time::Duration;

use harness::{Client, admin, contact_sends, eventually, inbox_json, jid, link_new, within};
use serde_json::{Value, json};
use wacore::stanza::groups::{GroupNotificationAction, GroupParticipantType};
use wacore::types::events::GroupUpdate;
use wacore::types::message::AddressingMode;
use whatsapp_rust::features::{
    GroupCreateOptions, GroupDescription, GroupError, GroupParticipantOptions, GroupSubject,
    JoinGroupResult, ParticipantType, PreviousDescription,
};
use whatsapp_rust::prelude::*;

const FAST: Duration = Duration::from_secs(2);
/// Accounts whose linked devices are real clients.
const ALICE: &str = "15550001111";
const BOB: &str = "15550004444";
/// Simulated contacts.
const CAROL: &str = "15550002222";
const DAVE: &str = "15550003333";
/// A number that is not on WhatsApp.
const ABSENT: &str = "15550009999";

/// Marks ABSENT as not on WhatsApp.
async fn absent(sim: &wa_sim::SimHandle) {
    let path = format!("/contacts/{ABSENT}/profile");
    let (status, json) = admin(sim, "POST", &path, json!({"on_whatsapp": false})).await;
    assert_eq!(status, 200, "{json}");
}

fn device(phone: &str) -> String {
    format!("{phone}:1@s.whatsapp.net")
}

/// Links ALICE and BOB (one device each); ABSENT is not on WhatsApp.
async fn two_accounts(sim: &wa_sim::SimHandle, dir: &std::path::Path) -> (Client, Client) {
    absent(sim).await;
    let a = link_new(sim, &dir.join("a.db"), ALICE, "Alice").await;
    let b = link_new(sim, &dir.join("b.db"), BOB, "Bob").await;
    (a, b)
}

/// ALICE's device creates a group with these members.
async fn create(
    a: &Client,
    subject: &str,
    members: &[&str],
) -> whatsapp_rust::features::GroupMetadata {
    let options = GroupCreateOptions::new(subject).with_participants(
        members
            .iter()
            .map(|p| GroupParticipantOptions::new(jid(p)))
            .collect(),
    );
    within(FAST, a.client.groups().create_group(options))
        .await
        .expect("created in time")
        .expect("create_group")
        .metadata
}

/// Waits (2 s) until `group` had an update of each of `tags` (action tag
/// names), in any order: whatsapp-rust handles stanzas concurrently, so
/// two notifications may surface in either order. Returns them by tag.
async fn updates(c: &mut Client, group: &Jid, tags: &[&str]) -> HashMap<String, GroupUpdate> {
    let mut seen: HashMap<String, GroupUpdate> = HashMap::new();
    let waited = within(
        FAST,
        c.wait(|e| {
            if let Event::GroupUpdate(u) = e
                && u.group_jid == *group
                && tags.contains(&u.action.tag_name())
            {
                seen.insert(u.action.tag_name().to_string(), u.clone());
            }
            seen.len() == tags.len()
        }),
    )
    .await;
    if let Err(e) = waited {
        panic!("updates {tags:?} of {group}: {e}; got {:?}", seen.keys());
    }
    seen
}

/// [`updates`] for one tag.
async fn update(c: &mut Client, group: &Jid, tag: &str) -> GroupUpdate {
    updates(c, group, &[tag]).await.remove(tag).unwrap()
}

/// Waits (2 s) for every message of `ids`, however the client batches them.
async fn received(c: &mut Client, ids: &[&str]) -> HashMap<String, InboundMessage> {
    let mut got: HashMap<String, InboundMessage> = HashMap::new();
    let waited = within(
        FAST,
        c.wait(|e| {
            for m in e.messages() {
                if ids.contains(&m.info.id.as_str()) {
                    got.insert(m.info.id.to_string(), m.clone());
                }
            }
            got.len() == ids.len()
        }),
    )
    .await;
    if let Err(e) = waited {
        panic!("messages {ids:?}: {e}; got {:?}", got.keys());
    }
    got
}

fn users(ps: &[wacore::stanza::groups::GroupParticipantInfo]) -> Vec<String> {
    ps.iter().map(|p| p.jid.user.to_string()).collect()
}

/// The IQ error code of a refused group call.
fn code(r: Result<impl std::fmt::Debug, GroupError>) -> u16 {
    match r {
        Err(GroupError::Iq(IqError::ServerError { code, .. })) => code,
        other => panic!("expected a server refusal, got {other:?}"),
    }
}

fn role(meta: &whatsapp_rust::features::GroupMetadata, phone: &str) -> Option<ParticipantType> {
    meta.participants
        .iter()
        .find(|p| p.jid.user == phone || p.phone_number.as_ref().is_some_and(|n| n.user == phone))
        .map(|p| p.participant_type)
}

async fn group_json(sim: &wa_sim::SimHandle, gid: &str) -> Value {
    let (status, json) = admin(sim, "GET", &format!("/groups/{gid}"), Value::Null).await;
    assert_eq!(status, 200, "{json}");
    json
}

/// Waits for the message `id` in a contact's inbox; checks the HTTP view.
async fn inbox_entry(sim: &wa_sim::SimHandle, contact: &str, id: &str) -> Value {
    let found = eventually(FAST, || {
        sim.inbox(contact)
            .iter()
            .map(|m| serde_json::to_value(m).unwrap())
            .find(|m| m["id"] == id)
    })
    .await
    .unwrap_or_else(|e| panic!("{id} in the inbox of {contact}: {e}"));
    assert!(inbox_json(sim, contact).await.contains(&found));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_info_and_participating_groups_at_both_accounts() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b) = two_accounts(&sim, dir.path()).await;

    let meta = create(&a, "Team", &[BOB, CAROL, ABSENT]).await;
    let gid = meta.id.clone();
    assert_eq!(gid.server, Server::Group);
    assert!(gid.user.chars().all(|c| c.is_ascii_digit()), "{gid}");
    assert_eq!(meta.subject, "Team");
    assert_eq!(meta.creator.as_ref().map(|c| c.user.as_str()), Some(ALICE));
    assert_eq!(meta.addressing_mode, AddressingMode::Pn);
    assert_eq!(role(&meta, ALICE), Some(ParticipantType::SuperAdmin));
    assert_eq!(role(&meta, BOB), Some(ParticipantType::Member));
    assert_eq!(role(&meta, CAROL), Some(ParticipantType::Member));
    assert_eq!(role(&meta, ABSENT), None, "not on WhatsApp: left out");

    // Bob's device hears of it.
    let u = update(&mut b, &gid, "create").await;
    assert_eq!(u.participant.as_ref().map(|p| p.user.as_str()), Some(ALICE));

    // Info from Bob's side.
    let info = within(FAST, b.client.groups().get_metadata(&gid))
        .await
        .unwrap()
        .expect("get_metadata");
    assert_eq!(info.subject, "Team");
    assert_eq!(info.participants.len(), 3);
    assert_eq!(
        info.subject_owner.as_ref().map(|j| j.user.as_str()),
        Some(ALICE)
    );
    assert!(info.creation_time.is_some_and(|t| t > 1_600_000_000));
    assert!(!info.is_announcement && !info.is_locked);

    // A second group without Bob.
    let other = create(&a, "Alice and Carol", &[CAROL]).await;
    let mine = within(FAST, a.client.groups().get_participating())
        .await
        .unwrap()
        .expect("participating");
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[&gid].participants.len(), 3);
    assert_eq!(mine[&other.id].subject, "Alice and Carol");
    let bobs = within(FAST, b.client.groups().get_participating())
        .await
        .unwrap()
        .expect("participating");
    assert_eq!(bobs.keys().collect::<Vec<_>>(), [&gid]);

    // Bob may not read a group he is not in.
    assert_eq!(code(b.client.groups().get_metadata(&other.id).await), 403);

    // The admin API shows the same.
    let g = group_json(&sim, &gid.to_string()).await;
    assert_eq!(g["id"], gid.to_string());
    assert_eq!(g["subject"], "Team");
    assert_eq!(g["creator"], format!("{ALICE}@s.whatsapp.net"));
    let roles: Vec<(String, String)> = g["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phone"].as_str().unwrap().into(),
                p["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            (ALICE.into(), "superadmin".into()),
            (BOB.into(), "member".into()),
            (CAROL.into(), "member".into())
        ]
    );
    let (_, list) = admin(&sim, "GET", "/groups", Value::Null).await;
    assert_eq!(list["groups"].as_array().unwrap().len(), 2);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_change_with_per_participant_results_and_notifications() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b) = two_accounts(&sim, dir.path()).await;
    let gid = create(&a, "Team", &[BOB]).await.id;
    let alice = a.client.clone();
    let groups = alice.groups();

    // Add: one new, one not on WhatsApp, one already in.
    let r = within(
        FAST,
        groups.add_participants(&gid, &[jid(CAROL), jid(ABSENT), jid(BOB)]),
    )
    .await
    .unwrap()
    .expect("add");
    let errors: Vec<(String, Option<String>)> = r
        .iter()
        .map(|p| (p.jid.user.to_string(), p.error.clone()))
        .collect();
    assert_eq!(
        errors,
        [
            (CAROL.into(), None),
            (ABSENT.into(), Some("404".into())),
            (BOB.into(), Some("409".into()))
        ]
    );
    let u = update(&mut b, &gid, "add").await;
    let GroupNotificationAction::Add { participants, .. } = &u.action else {
        unreachable!()
    };
    assert_eq!(users(participants), [CAROL]);
    assert_eq!(u.participant.as_ref().map(|p| p.user.as_str()), Some(ALICE));

    // Promote and demote.
    let r = groups
        .promote_participants(&gid, &[jid(CAROL)])
        .await
        .unwrap();
    assert!(r.iter().all(|p| p.is_ok()), "{r:?}");
    let u = update(&mut b, &gid, "promote").await;
    let GroupNotificationAction::Promote { participants } = &u.action else {
        unreachable!()
    };
    assert_eq!(users(participants), [CAROL]);
    assert_eq!(participants[0].r#type, Some(GroupParticipantType::Admin));
    let meta = b.client.groups().get_metadata(&gid).await.unwrap();
    assert_eq!(role(&meta, CAROL), Some(ParticipantType::Admin));

    groups
        .demote_participants(&gid, &[jid(CAROL)])
        .await
        .unwrap();
    let u = update(&mut b, &gid, "demote").await;
    let GroupNotificationAction::Demote { participants } = &u.action else {
        unreachable!()
    };
    assert_eq!(users(participants), [CAROL]);

    // Remove: one member, one who is not in the group.
    let r = groups
        .remove_participants(&gid, &[jid(CAROL), jid(DAVE)])
        .await
        .unwrap();
    let errors: Vec<Option<String>> = r.iter().map(|p| p.error.clone()).collect();
    assert_eq!(errors, [None, Some("404".into())]);
    let u = update(&mut b, &gid, "remove").await;
    let GroupNotificationAction::Remove { participants, .. } = &u.action else {
        unreachable!()
    };
    assert_eq!(users(participants), [CAROL]);
    let meta = b.client.groups().get_metadata(&gid).await.unwrap();
    assert_eq!(meta.participants.len(), 2);
    assert_eq!(role(&meta, CAROL), None);
    // Carol is no longer given the group's messages; Dave, added since, is
    // (the simulator reads for its members in the order they joined).
    groups.add_participants(&gid, &[jid(DAVE)]).await.unwrap();
    let after = a
        .client
        .send_message(gid.clone(), wa::Message::text("without Carol"))
        .await
        .unwrap()
        .message_id;
    b.received(&after).await;
    inbox_entry(&sim, DAVE, &after).await;
    assert!(
        sim.inbox(CAROL).iter().all(|m| m.id != after),
        "a removed member got {after}"
    );

    // Bob, a member, may not do any of it.
    let bobs = b.client.groups();
    assert_eq!(code(bobs.add_participants(&gid, &[jid(CAROL)]).await), 401);
    assert_eq!(
        code(bobs.remove_participants(&gid, &[jid(ALICE)]).await),
        401
    );
    assert_eq!(
        code(bobs.promote_participants(&gid, &[jid(BOB)]).await),
        401
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_and_invite_links_get_reset_and_join() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut a, b) = two_accounts(&sim, dir.path()).await;
    let gid = create(&a, "Team", &[BOB]).await.id;
    let alice = a.client.clone();
    let groups = alice.groups();

    let link = groups.get_invite_link(&gid, false).await.expect("link");
    let g = group_json(&sim, &gid.to_string()).await;
    let code_now = g["invite_code"].as_str().unwrap().to_string();
    assert_eq!(link, format!("https://chat.whatsapp.com/{code_now}"));
    assert_eq!(code_now.len(), 22);
    // Only admins see the link; anyone with it sees the group.
    assert_eq!(
        code(b.client.groups().get_invite_link(&gid, false).await),
        401
    );
    let preview = b
        .client
        .groups()
        .get_invite_info(&code_now)
        .await
        .expect("info");
    assert_eq!((&preview.id, preview.subject.as_str()), (&gid, "Team"));

    // Bob leaves; Alice hears it from Bob.
    within(FAST, b.client.groups().leave(gid.clone()))
        .await
        .unwrap()
        .expect("leave");
    let u = update(&mut a, &gid, "remove").await;
    assert_eq!(u.participant.as_ref().map(|p| p.user.as_str()), Some(BOB));
    let bobs = b.client.groups().get_participating().await.unwrap();
    assert!(bobs.is_empty(), "{bobs:?}");
    assert_eq!(code(b.client.groups().get_metadata(&gid).await), 403);

    // And comes back with the link.
    let joined = within(FAST, b.client.groups().join_with_invite_code(&link))
        .await
        .unwrap()
        .expect("join");
    assert_eq!(joined, JoinGroupResult::Joined(gid.clone()));
    let u = update(&mut a, &gid, "add").await;
    let GroupNotificationAction::Add {
        participants,
        reason,
    } = &u.action
    else {
        unreachable!()
    };
    assert_eq!(users(participants), [BOB]);
    assert_eq!(reason.as_deref(), Some("invite"));
    // Joining twice: already a member.
    assert_eq!(
        code(b.client.groups().join_with_invite_code(&link).await),
        304
    );

    // A reset: the old code is gone, the new one works (for a contact too).
    let new_link = groups.get_invite_link(&gid, true).await.expect("reset");
    assert_ne!(new_link, link);
    let new_code = new_link.rsplit('/').next().unwrap();
    let path = format!("/groups/{gid}/join");
    let (status, json) = admin(
        &sim,
        "POST",
        &path,
        json!({"phone": DAVE, "code": code_now}),
    )
    .await;
    assert_eq!((status, &json["code"]), (410, &json!(410)), "{json}");
    let (status, json) = admin(
        &sim,
        "POST",
        &path,
        json!({"phone": DAVE, "code": new_code}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let u = update(&mut a, &gid, "add").await;
    assert_eq!(u.participant.as_ref().map(|p| p.user.as_str()), Some(DAVE));
    // Unknown codes are 404.
    assert_eq!(
        code(
            b.client
                .groups()
                .join_with_invite_code("AAAAAAAAAAAAAAAAAAAAAA")
                .await
        ),
        404
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_description_announce_and_locked_with_refusals_for_members() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b) = two_accounts(&sim, dir.path()).await;
    let gid = create(&a, "Team", &[BOB, CAROL]).await.id;
    let (alice, bob) = (a.client.clone(), b.client.clone());
    let (groups, bobs) = (alice.groups(), bob.groups());

    // Any member may rename an unlocked group.
    bobs.set_subject(&gid, GroupSubject::new("Bob's name").unwrap())
        .await
        .expect("member renames");
    let u = update(&mut b, &gid, "subject").await;
    let GroupNotificationAction::Subject {
        subject,
        subject_owner,
        ..
    } = &u.action
    else {
        unreachable!()
    };
    assert_eq!(subject, "Bob's name");
    assert_eq!(subject_owner.as_ref().map(|j| j.user.as_str()), Some(BOB));

    groups
        .set_description(
            &gid,
            Some(GroupDescription::new("What we do").unwrap()),
            PreviousDescription::Resolve,
        )
        .await
        .expect("description");
    let u = update(&mut b, &gid, "description").await;
    let GroupNotificationAction::Description { id, description } = &u.action else {
        unreachable!()
    };
    assert_eq!(description.as_deref(), Some("What we do"));
    let meta = bobs.get_metadata(&gid).await.unwrap();
    assert_eq!(meta.description.as_deref(), Some("What we do"));
    assert_eq!(meta.description_id.as_deref(), Some(id.as_str()));
    // An update against a description that changed since: conflict.
    let stale = groups
        .set_description(
            &gid,
            Some(GroupDescription::new("Too late").unwrap()),
            PreviousDescription::Id("00000000"),
        )
        .await;
    assert!(
        matches!(stale, Err(GroupError::DescriptionConflict)),
        "{stale:?}"
    );
    // Delete.
    groups
        .set_description(&gid, None, PreviousDescription::Resolve)
        .await
        .expect("delete description");
    let u = update(&mut b, &gid, "description").await;
    assert!(matches!(
        u.action,
        GroupNotificationAction::Description {
            description: None,
            ..
        }
    ));

    groups.set_announce(&gid, true).await.expect("announce");
    update(&mut b, &gid, "announcement").await;
    groups.set_locked(&gid, true).await.expect("lock");
    update(&mut b, &gid, "locked").await;
    groups.set_ephemeral(&gid, 86400).await.expect("ephemeral");
    let u = update(&mut b, &gid, "ephemeral").await;
    assert!(matches!(
        u.action,
        GroupNotificationAction::Ephemeral {
            expiration: 86400,
            ..
        }
    ));
    let meta = bobs.get_metadata(&gid).await.unwrap();
    assert!(meta.is_announcement && meta.is_locked);
    assert_eq!(meta.ephemeral.and_then(|e| e.expiration), Some(86400));
    assert!(meta.description.is_none());

    // Now Bob, a member, is refused what only admins may do.
    assert_eq!(
        code(
            bobs.set_subject(&gid, GroupSubject::new("Mine").unwrap())
                .await
        ),
        401
    );
    assert_eq!(code(bobs.set_announce(&gid, false).await), 401);
    assert_eq!(code(bobs.set_locked(&gid, false).await), 401);
    // A member contact may not write to an announcement group.
    let (status, json) = admin(
        &sim,
        "POST",
        &format!("/contacts/{CAROL}/messages"),
        json!({"to": gid.to_string(), "text": "may I?"}),
    )
    .await;
    assert_eq!(status, 403, "{json}");

    groups.set_announce(&gid, false).await.unwrap();
    update(&mut b, &gid, "not_announcement").await;
    groups.set_locked(&gid, false).await.unwrap();
    update(&mut b, &gid, "unlocked").await;
    let g = group_json(&sim, &gid.to_string()).await;
    assert_eq!(
        (&g["announce"], &g["locked"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(g["subject"], "Bob's name");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_devices_group_message_reaches_contacts_and_the_other_account() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b) = two_accounts(&sim, dir.path()).await;
    let gid = create(&a, "Team", &[BOB, CAROL, DAVE]).await.id;
    let gjid = gid.to_string();
    // Alice links a second device: it gets her own group messages too.
    // (WhatsApp tells her first device with a `devices` notification, which
    // the simulator does not send: a restart makes it read the list again.)
    let mut a2 = link_new(&sim, &dir.path().join("a2.db"), ALICE, "Alice").await;
    a.stop().await;
    let mut a = Client::start(&sim, &dir.path().join("a.db")).await;
    a.expect("reconnected", |e| {
        matches!(e, Event::Connected(_)).then_some(())
    })
    .await;
    // Its own device list is read again in the background: wait for it.
    within(FAST, async {
        loop {
            let own = a.client.signal().get_user_devices(&[jid(ALICE)]).await;
            if own.is_ok_and(|d| d.iter().any(|j| j.device == 2)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("Alice's first device knows her second");

    for text in ["hello group", "and again"] {
        let sent = within(
            FAST,
            a.client.send_message(gid.clone(), wa::Message::text(text)),
        )
        .await
        .expect("sent in time")
        .expect("send");
        for contact in [CAROL, DAVE] {
            let m = inbox_entry(&sim, contact, &sent.message_id).await;
            assert_eq!(m["text"], text, "{m}");
            assert_eq!(m["group"], gjid.as_str(), "{m}");
            assert_eq!(m["to"], gjid.as_str(), "{m}");
            assert_eq!(m["from"], device(ALICE), "{m}");
        }
        let m = b.received(&sent.message_id).await;
        assert_eq!(m.message.text_content(), Some(text));
        assert_eq!(m.info.source.chat, gid);
        assert!(m.info.source.is_group);
        assert!(!m.info.source.is_from_me);
        assert_eq!(m.info.source.sender.to_string(), device(ALICE));
        assert_eq!(m.info.push_name, "Alice");
        let m = a2.received(&sent.message_id).await;
        assert_eq!(m.message.text_content(), Some(text));
        assert_eq!(m.info.source.chat, gid);
        assert!(m.info.source.is_from_me);
        assert_eq!(m.info.source.sender.to_string(), device(ALICE));
        // The contacts' delivery receipts come back to Alice.
        within(
            FAST,
            a.wait(|e| {
                matches!(e, Event::Receipt(r) if r.message_ids.contains(&sent.message_id)
                    && r.source.chat == gid)
            }),
        )
        .await
        .expect("a receipt from the group");
    }

    // Bob answers with a reply; Alice and the contacts read it.
    let reply = within(
        FAST,
        b.client
            .send_message(gid.clone(), wa::Message::text("hi all")),
    )
    .await
    .unwrap()
    .unwrap();
    let m = a.received(&reply.message_id).await;
    assert_eq!(m.info.source.sender.to_string(), device(BOB));
    assert_eq!(m.info.source.chat, gid);
    let m = inbox_entry(&sim, CAROL, &reply.message_id).await;
    assert_eq!(m["from"], device(BOB));
    a2.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_group_messages_reach_linked_devices_and_other_contacts() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = two_accounts(&sim, dir.path()).await;
    // A group owned by a contact, through the admin API.
    let (status, json) = admin(
        &sim,
        "POST",
        "/groups",
        json!({"creator": CAROL, "subject": "Carol's", "participants": [ALICE, BOB, DAVE, ABSENT]}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json["results"][3],
        json!({"phone": ABSENT, "jid": format!("{ABSENT}@s.whatsapp.net"), "error": 404})
    );
    let gjid = json["group"]["id"].as_str().unwrap().to_string();
    let gid: Jid = gjid.parse().unwrap();
    for c in [&mut a, &mut b] {
        let u = update(c, &gid, "create").await;
        assert_eq!(u.participant.as_ref().map(|p| p.user.as_str()), Some(CAROL));
    }

    let first = contact_sends(
        &sim,
        CAROL,
        json!({"to": gjid, "text": "welcome", "push_name": "Carol"}),
    )
    .await;
    let second = contact_sends(
        &sim,
        CAROL,
        json!({"to": gjid, "type": "location", "latitude": 1.5, "longitude": 2.5}),
    )
    .await;
    for c in [&mut a, &mut b] {
        let got = received(c, &[&first, &second]).await;
        let m = &got[&first];
        assert_eq!(m.message.text_content(), Some("welcome"));
        assert_eq!(m.info.source.chat, gid);
        assert!(m.info.source.is_group);
        assert_eq!(
            m.info.source.sender.to_string(),
            format!("{CAROL}@s.whatsapp.net")
        );
        assert_eq!(m.info.push_name, "Carol");
        let m = &got[&second];
        let loc = m.message.location_message.as_option().expect("a location");
        assert_eq!(loc.degrees_latitude, Some(1.5));
    }
    let m = inbox_entry(&sim, DAVE, &first).await;
    assert_eq!((&m["text"], &m["group"]), (&json!("welcome"), &json!(gjid)));
    assert_eq!(m["from"], format!("{CAROL}@s.whatsapp.net"));
    let m = inbox_entry(&sim, DAVE, &second).await;
    assert_eq!(m["type"], "location");
    // Alice reads Carol's messages: Carol's phone records it.
    a.client
        .mark_as_read(&gid, Some(&jid(CAROL)), &[first.as_str(), second.as_str()])
        .await
        .expect("read");
    let read = eventually(FAST, || {
        let r = sim.contact_receipts(CAROL);
        (r.len() == 2).then_some(r)
    })
    .await
    .expect("two read receipts");
    assert_eq!(read[0].id, first);
    assert_eq!(read[0].from, format!("{ALICE}@s.whatsapp.net"));

    // Alice quotes Carol's message; Carol can react to the reply.
    let quote = wacore::proto_helpers::build_quote_context(
        &first,
        format!("{CAROL}@s.whatsapp.net"),
        &wa::Message::text("welcome"),
    );
    let reply = a
        .client
        .send_message(gid.clone(), wa::Message::text_with_context("thanks", quote))
        .await
        .unwrap();
    let m = inbox_entry(&sim, CAROL, &reply.message_id).await;
    assert_eq!(
        (&m["text"], &m["reply_to"]),
        (&json!("thanks"), &json!(first))
    );
    let reaction = contact_sends(
        &sim,
        CAROL,
        json!({"to": gjid, "type": "reaction", "message_id": reply.message_id, "emoji": "👍"}),
    )
    .await;
    let m = a.received(&reaction).await;
    let r = m.message.reaction_message.as_option().expect("a reaction");
    assert_eq!(r.text.as_deref(), Some("👍"));
    assert_eq!(
        r.key.as_option().and_then(|k| k.id.clone()),
        Some(reply.message_id.clone())
    );

    // Not members: refused; unknown groups: 404.
    let (status, json) = admin(
        &sim,
        "POST",
        &format!("/contacts/{ABSENT}/messages"),
        json!({"to": gjid, "text": "let me in"}),
    )
    .await;
    assert_eq!(status, 403, "{json}");
    let (status, json) = admin(
        &sim,
        "POST",
        &format!("/contacts/{CAROL}/messages"),
        json!({"to": "120363999999999999@g.us", "text": "anyone?"}),
    )
    .await;
    assert_eq!(status, 404, "{json}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_wait_for_an_offline_device() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_accounts(&sim, dir.path()).await;
    let gid = create(&a, "Team", &[BOB, CAROL]).await.id;
    b.stop().await;

    let from_alice = a
        .client
        .send_message(gid.clone(), wa::Message::text("while you were away"))
        .await
        .unwrap()
        .message_id;
    // Carol got it at once.
    inbox_entry(&sim, CAROL, &from_alice).await;
    let from_carol = contact_sends(
        &sim,
        CAROL,
        json!({"to": gid.to_string(), "text": "me too"}),
    )
    .await;

    let mut b = Client::start(&sim, &dir.path().join("b.db")).await;
    let got = received(&mut b, &[&from_alice, &from_carol]).await;
    let m = &got[&from_alice];
    assert_eq!(m.message.text_content(), Some("while you were away"));
    assert_eq!(m.info.source.chat, gid);
    assert_eq!(m.info.source.sender.to_string(), device(ALICE));
    let m = &got[&from_carol];
    assert_eq!(m.message.text_content(), Some("me too"));
    assert_eq!(m.info.source.sender.user, CAROL);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withheld_sender_key_is_sent_again_on_the_devices_retry() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = link_new(&sim, &dir.path().join("a.db"), ALICE, "Alice").await;
    let (status, json) = admin(
        &sim,
        "POST",
        "/groups",
        json!({"creator": CAROL, "subject": "Keys", "participants": [ALICE, DAVE]}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let gjid = json["group"]["id"].as_str().unwrap().to_string();
    let gid: Jid = gjid.parse().unwrap();

    let path = format!("/groups/{gjid}/withhold-key");
    let (status, json) = admin(
        &sim,
        "POST",
        &path,
        json!({"from": CAROL, "device": device(ALICE)}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let id = contact_sends(&sim, CAROL, json!({"to": gjid, "text": "lost key"})).await;
    // Alice's device cannot read it without the key, and says so...
    a.expect("undecryptable", |e| match e {
        Event::UndecryptableMessage(u) if u.info.id == id => Some(()),
        _ => None,
    })
    .await;
    // ...then gets it again from Carol's phone, key included.
    let m = a.received(&id).await;
    assert_eq!(m.message.text_content(), Some("lost key"));
    assert_eq!(m.info.source.chat, gid);
    assert_eq!(m.info.source.sender.user, CAROL);
    assert_eq!(group_json(&sim, &gjid).await["sender_key_resends"], 1);
    // Dave, who had the key, read it at once.
    inbox_entry(&sim, DAVE, &id).await;

    // From now on the key is there.
    let next = contact_sends(&sim, CAROL, json!({"to": gjid, "text": "better"})).await;
    let m = a.received(&next).await;
    assert_eq!(m.message.text_content(), Some("better"));
    assert_eq!(group_json(&sim, &gjid).await["sender_key_resends"], 1);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lid_addressed_group_names_members_by_lid() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = two_accounts(&sim, dir.path()).await;
    let (status, json) = admin(
        &sim,
        "POST",
        "/groups",
        json!({"creator": CAROL, "subject": "LIDs", "participants": [ALICE, BOB],
               "addressing_mode": "lid", "legacy_id": true}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let gjid = json["group"]["id"].as_str().unwrap().to_string();
    assert!(gjid.starts_with(&format!("{CAROL}-")), "{gjid}");
    let gid: Jid = gjid.parse().unwrap();
    let u = update(&mut a, &gid, "create").await;
    assert!(u.is_lid_addressing_mode);

    let meta = a
        .client
        .groups()
        .get_metadata(&gid)
        .await
        .expect("metadata");
    assert_eq!(meta.addressing_mode, AddressingMode::Lid);
    let carol_lid = sim.lid(CAROL).unwrap();
    let carol = meta
        .participants
        .iter()
        .find(|p| p.jid.to_string() == carol_lid)
        .expect("Carol by her LID");
    assert_eq!(
        carol.phone_number.as_ref().map(|p| p.user.as_str()),
        Some(CAROL)
    );
    assert_eq!(carol.participant_type, ParticipantType::SuperAdmin);

    let id = contact_sends(&sim, CAROL, json!({"to": gjid, "text": "by lid"})).await;
    for c in [&mut a, &mut b] {
        let m = c.received(&id).await;
        assert_eq!(m.message.text_content(), Some("by lid"));
        assert_eq!(m.info.source.sender.to_string(), carol_lid);
        assert_eq!(
            m.info.source.sender_alt.as_ref().map(|j| j.user.as_str()),
            Some(CAROL)
        );
    }
    let sent = within(
        FAST,
        a.client
            .send_message(gid.clone(), wa::Message::text("lid reply")),
    )
    .await
    .unwrap()
    .unwrap();
    let m = inbox_entry(&sim, CAROL, &sent.message_id).await;
    assert_eq!(m["group"], gjid.as_str());
    let m = b.received(&sent.message_id).await;
    assert_eq!(
        m.info.source.sender.user,
        sim.lid(ALICE).unwrap().trim_end_matches("@lid")
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_routes_act_for_contacts_and_check_their_bodies() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = link_new(&sim, &dir.path().join("a.db"), ALICE, "Alice").await;
    let (_, json) = admin(
        &sim,
        "POST",
        "/groups",
        json!({"creator": CAROL, "subject": "Admin", "participants": [ALICE]}),
    )
    .await;
    let gjid = json["group"]["id"].as_str().unwrap().to_string();
    let gid: Jid = gjid.parse().unwrap();
    let id = gid.user.to_string();

    // The creator (a contact) adds Dave and makes Alice an admin.
    let path = format!("/groups/{id}/participants");
    let (status, json) = admin(
        &sim,
        "POST",
        &path,
        json!({"action": "add", "participants": [DAVE, ALICE]}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["results"][0]["error"], Value::Null);
    assert_eq!(json["results"][1]["error"], 409);
    let u = update(&mut a, &gid, "add").await;
    assert_eq!(u.participant.as_ref().map(|p| p.user.as_str()), Some(CAROL));
    let (status, _) = admin(
        &sim,
        "POST",
        &path,
        json!({"action": "promote", "participants": [ALICE]}),
    )
    .await;
    assert_eq!(status, 200);
    let meta = a.client.groups().get_metadata(&gid).await.unwrap();
    assert_eq!(role(&meta, ALICE), Some(ParticipantType::Admin));
    // Dave, a member, may not.
    let (status, json) = admin(
        &sim,
        "POST",
        &path,
        json!({"actor": DAVE, "action": "remove", "participants": [ALICE]}),
    )
    .await;
    assert_eq!((status, &json["code"]), (403, &json!(401)), "{json}");

    // Settings as the creator; Alice hears each.
    let (status, json) = admin(
        &sim,
        "POST",
        &format!("/groups/{id}/settings"),
        json!({"subject": "Renamed", "description": "About", "locked": true}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        (&json["subject"], &json["description"], &json["locked"]),
        (&json!("Renamed"), &json!("About"), &json!(true))
    );
    let got = updates(&mut a, &gid, &["subject", "description", "locked"]).await;
    assert!(
        matches!(&got["subject"].action, GroupNotificationAction::Subject { subject, .. } if subject == "Renamed")
    );
    // Locked: Dave may not rename.
    let (status, _) = admin(
        &sim,
        "POST",
        &format!("/groups/{id}/settings"),
        json!({"actor": DAVE, "subject": "Dave's"}),
    )
    .await;
    assert_eq!(status, 403);

    // Dave leaves.
    let (status, _) = admin(
        &sim,
        "POST",
        &format!("/groups/{id}/leave"),
        json!({"phone": DAVE}),
    )
    .await;
    assert_eq!(status, 200);
    let u = update(&mut a, &gid, "remove").await;
    assert_eq!(u.participant.as_ref().map(|p| p.user.as_str()), Some(DAVE));

    // Bad bodies and unknown groups.
    for (method, path, body, status) in [
        (
            "POST",
            "/groups".to_string(),
            json!({"creator": "x", "subject": "s"}),
            400,
        ),
        (
            "POST",
            "/groups".to_string(),
            json!({"creator": CAROL, "subject": ""}),
            400,
        ),
        (
            "POST",
            "/groups".to_string(),
            json!({"creator": CAROL, "subject": "s", "addressing_mode": "xx"}),
            400,
        ),
        (
            "POST",
            "/groups".to_string(),
            json!({"creator": CAROL, "subject": "s", "bogus": 1}),
            400,
        ),
        (
            "GET",
            "/groups/120363000000000000".to_string(),
            Value::Null,
            404,
        ),
        ("GET", "/groups/not-a-group".to_string(), Value::Null, 400),
        (
            "POST",
            path.clone(),
            json!({"action": "kick", "participants": [DAVE]}),
            400,
        ),
        (
            "POST",
            path.clone(),
            json!({"action": "add", "participants": []}),
            400,
        ),
        ("POST", format!("/groups/{id}/settings"), json!({}), 400),
        (
            "POST",
            format!("/groups/{id}/withhold-key"),
            json!({"from": CAROL, "device": "nope"}),
            400,
        ),
        (
            "POST",
            format!("/groups/{id}/withhold-key"),
            json!({"from": ALICE, "device": device(ALICE)}),
            400,
        ),
        (
            "POST",
            format!("/groups/{id}/leave"),
            json!({"phone": DAVE}),
            403,
        ),
    ] {
        let (got, json) = admin(&sim, method, &path, body.clone()).await;
        assert_eq!(got, status, "{method} {path} {body}: {json}");
        assert!(json["error"].is_string(), "{json}");
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_go_both_ways_in_a_group() {
    use base64::Engine as _;
    use whatsapp_rust::download::MediaType;
    use whatsapp_rust::upload::UploadOptions;
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = harness::link_media(&sim, &dir.path().join("a.db"), ALICE, "Alice").await;
    let g = sim
        .create_group(
            CAROL,
            wa_sim::NewGroup {
                subject: "Photos".into(),
                participants: vec![ALICE.into(), DAVE.into()],
                ..Default::default()
            },
        )
        .expect("create");
    let gid: Jid = g.id.parse().unwrap();
    assert_eq!(sim.group(&g.id).map(|v| v.participants.len()), Some(3));

    // Carol's image reaches Alice, who downloads it.
    let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let id = contact_sends(
        &sim,
        CAROL,
        json!({"to": g.id, "type": "image", "base64": b64, "caption": "look"}),
    )
    .await;
    let m = a.received(&id).await;
    assert_eq!(m.info.source.chat, gid);
    let image = m
        .message
        .image_message
        .as_option()
        .expect("an image")
        .clone();
    assert_eq!(image.caption.as_deref(), Some("look"));
    let got = within(FAST, a.client.download(&image))
        .await
        .expect("in time")
        .expect("download");
    assert!(got == data, "downloaded bytes differ");
    let m = inbox_entry(&sim, DAVE, &id).await;
    assert_eq!(
        (&m["type"], &m["size"]),
        (&json!("image"), &json!(data.len()))
    );

    // Alice's image reaches both contacts intact.
    let up = within(
        FAST,
        a.client
            .upload(data.clone(), MediaType::Image, UploadOptions::default()),
    )
    .await
    .expect("in time")
    .expect("upload");
    let msg = whatsapp_rust::media::image_message(up, Default::default());
    let sent = a.client.send_message(gid.clone(), msg).await.expect("send");
    for contact in [CAROL, DAVE] {
        let m = inbox_entry(&sim, contact, &sent.message_id).await;
        assert_eq!(m["type"], "image", "{m}");
        assert_eq!(m["group"], g.id.as_str(), "{m}");
        assert_eq!(m["size"], data.len(), "{m}");
        assert!(m.get("media_error").is_none(), "{m}");
    }
    a.stop().await;
}
