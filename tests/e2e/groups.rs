//! Groups over HTTP: a session creates a group with contacts and a second
//! linked session, messages flow both ways through sender keys, members
//! and settings change with a result per participant and events at every
//! linked member, invites, leaving and joining, WhatsApp's refusals, and a
//! device that missed a sender key.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const ME: &str = "15550007001";
const OTHER: &str = "15550007002";
const C1: &str = "15550007011";
const C2: &str = "15550007012";
const C3: &str = "15550007013";
const C4: &str = "15550007014";
const WAIT: Duration = Duration::from_secs(10);

fn jid(phone: &str) -> String {
    format!("{phone}@s.whatsapp.net")
}

async fn call(bridge: &Bridge, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = bridge.http.request(m, format!("{}{path}", bridge.base));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The first event of `kind` posted for `session` that `pred` accepts.
async fn event(rx: &Receiver, session: &str, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(WAIT, &format!("{kind} at {session}"), || async {
        rx.of(session, kind)
            .into_iter()
            .find(|e| pred(&e["payload"]))
    })
    .await
}

/// Two linked sessions (g1 as ME, g2 as OTHER) and a group g1 made with
/// three contacts and g2.
async fn start() -> (
    wa_sim::SimHandle,
    Receiver,
    tempfile::TempDir,
    Bridge,
    String,
) {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    let gid = make_group(&sim, &rx, &bridge).await;
    (sim, rx, dir, bridge, gid)
}

/// Links g1 and g2 and has g1 make the group.
async fn make_group(sim: &wa_sim::SimHandle, rx: &Receiver, bridge: &Bridge) -> String {
    bridge.link(sim, "g1", &format!("{}g1", rx.url), ME).await;
    bridge
        .link(sim, "g2", &format!("{}g2", rx.url), OTHER)
        .await;
    let (s, g) = call(
        bridge,
        "POST",
        "/v1/sessions/g1/groups",
        Some(json!({"subject": "Project", "participants": [C1, C2, format!("+{C3}"), jid(OTHER)]})),
    )
    .await;
    assert_eq!(s, 201, "{g}");
    let id = g["id"].as_str().unwrap().to_string();
    assert!(id.ends_with("@g.us"), "{g}");
    assert_eq!(g["subject"], "Project");
    assert_eq!(g["size"], 5, "{g}");
    let role = |who: &str| {
        g["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["jid"] == jid(who))
            .map(|p| p["role"].clone())
    };
    assert_eq!(role(ME), Some(json!("superadmin")), "{g}");
    assert_eq!(role(C1), Some(json!("member")), "{g}");
    assert_eq!(role(OTHER), Some(json!("member")), "{g}");
    id
}

async fn send(bridge: &Bridge, session: &str, body: Value) -> String {
    let (s, v) = call(
        bridge,
        "POST",
        &format!("/v1/sessions/{session}/messages"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 201, "{body}: {v}");
    v["id"].as_str().unwrap().to_string()
}

async fn in_inbox(sim: &wa_sim::SimHandle, contact: &str, id: &str) -> Value {
    eventually(WAIT, &format!("{id} at {contact}"), || async {
        inbox(sim, contact)
            .await
            .into_iter()
            .find(|m| m["id"] == id)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_made_messaged_and_answered_by_contacts_and_a_second_session() {
    let (sim, rx, _dir, bridge, gid) = start().await;
    // The second session sees the group too.
    let (s, list) = call(&bridge, "GET", "/v1/sessions/g2/groups", None).await;
    assert_eq!(s, 200, "{list}");
    assert!(
        list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == gid.as_str()),
        "{list}"
    );
    let bare = gid.trim_end_matches("@g.us");
    let (s, info) = call(
        &bridge,
        "GET",
        &format!("/v1/sessions/g1/groups/{bare}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(info["id"], gid.as_str());
    assert_eq!(info["owner"], jid(ME));
    assert!(
        info["invite_link"]
            .as_str()
            .unwrap()
            .starts_with("https://chat.whatsapp.com/")
    );

    // The session's first group message reaches every member, decrypted.
    let first = send(
        &bridge,
        "g1",
        json!({"to": gid, "text": "kickoff, @15550007011", "mentions": [C1]}),
    )
    .await;
    for c in [C1, C2, C3] {
        let e = in_inbox(&sim, c, &first).await;
        assert_eq!(e["text"], "kickoff, @15550007011", "{e}");
        assert_eq!(e["group"], gid.as_str(), "{e}");
    }
    let at_g2 = event(&rx, "g2", "message", |p| p["id"] == first.as_str()).await;
    let p = &at_g2["payload"];
    assert_eq!(p["is_group"], true, "{p}");
    assert_eq!(p["chat"], gid.as_str(), "{p}");
    assert_eq!(p["from"], jid(ME), "{p}");
    assert_eq!(p["mentions"], json!([jid(C1)]), "{p}");

    // A contact answers in the group, then the second session.
    let theirs = contact_sends(
        &sim,
        C1,
        json!({"to": gid, "text": "on it", "reply_to": first, "push_name": "Cleo"}),
    )
    .await;
    let e = event(&rx, "g1", "message", |p| p["id"] == theirs.as_str()).await;
    let p = &e["payload"];
    assert_eq!(p["from"], jid(C1), "{p}");
    assert_eq!(p["chat"], gid.as_str(), "{p}");
    assert_eq!(p["is_group"], true, "{p}");
    assert_eq!(p["push_name"], "Cleo", "{p}");
    assert_eq!(p["reply_to"], first.as_str(), "{p}");
    for c in [C2, C3] {
        let id = contact_sends(&sim, c, json!({"to": gid, "text": format!("{c} here")})).await;
        let e = event(&rx, "g1", "message", |p| p["id"] == id.as_str()).await;
        assert_eq!(e["payload"]["from"], jid(c), "{e}");
        assert_eq!(e["payload"]["chat"], gid.as_str(), "{e}");
    }
    let mine = send(&bridge, "g2", json!({"to": gid, "text": "me too"})).await;
    let e = event(&rx, "g1", "message", |p| p["id"] == mine.as_str()).await;
    assert_eq!(e["payload"]["from"], jid(OTHER), "{e}");
    in_inbox(&sim, C2, &mine).await;

    // Other kinds go to a group the same way; the session reads by id.
    let loc = send(
        &bridge,
        "g1",
        json!({"to": gid, "type": "location", "latitude": 1.5, "longitude": 2.5}),
    )
    .await;
    assert_eq!(in_inbox(&sim, C3, &loc).await["type"], "location");
    let image = crate::media::bytes(21, 8_000);
    let pic = send(
        &bridge,
        "g1",
        json!({"to": gid, "type": "image", "base64": crate::media::b64(&image), "caption": "plan"}),
    )
    .await;
    let e = in_inbox(&sim, C2, &pic).await;
    assert_eq!(e["type"], "image", "{e}");
    assert_eq!(e["sha256"], crate::media::sha_hex(&image), "{e}");

    // In the Cloud format a group message carries group_id.
    let (s, v) = call(
        &bridge,
        "PATCH",
        "/v1/sessions/g1",
        Some(json!({"webhook_format": "cloud"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let cloudy = contact_sends(&sim, C2, json!({"to": gid, "text": "cloud?"})).await;
    let m = eventually(WAIT, "the cloud group message", || async {
        rx.deliveries().into_iter().find_map(|d| {
            let m = d.body["entry"][0]["changes"][0]["value"]["messages"][0].clone();
            (m["id"] == cloudy.as_str()).then_some(m)
        })
    })
    .await;
    assert_eq!(m["group_id"], gid.as_str(), "{m}");
    assert_eq!(m["from"], C2, "{m}");
    let (s, v) = call(
        &bridge,
        "POST",
        &format!("/v1/sessions/g1/chats/{bare}@g.us/read"),
        Some(json!({"ids": [theirs]})),
    )
    .await;
    assert_eq!((s, v["read"].clone()), (200, json!(1)), "{v}");
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_settings_invites_and_refusals() {
    let (sim, rx, _dir, bridge, gid) = start().await;
    let path = |tail: &str| format!("/v1/sessions/g1/groups/{gid}{tail}");
    let absent = "15550007099";
    let r = admin_post(
        &sim,
        &format!("/contacts/{absent}/profile"),
        json!({"on_whatsapp": false}),
    )
    .await;
    assert!(r.status().is_success());

    // Add: a result per participant.
    let (s, v) = call(
        &bridge,
        "POST",
        &path("/participants"),
        Some(json!({"add": [C4, absent]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    let of = |who: &str| results.iter().find(|r| r["jid"] == jid(who)).cloned();
    assert_eq!(of(C4).map(|r| r["ok"].clone()), Some(json!(true)), "{v}");
    let bad = of(absent).expect("a result for the absent number");
    assert_eq!(bad["ok"], false, "{v}");
    assert_eq!(bad["error"]["code"], 404, "{v}");
    // Every linked member hears of it, the actor's session included.
    for session in ["g1", "g2"] {
        let e = event(&rx, session, "group.participants", |p| p["action"] == "add").await;
        let p = &e["payload"];
        assert_eq!(p["group"], gid.as_str(), "{p}");
        assert_eq!(p["participants"], json!([jid(C4)]), "{p}");
        assert_eq!(p["by"], jid(ME), "{p}");
    }
    let after_add = send(&bridge, "g1", json!({"to": gid, "text": "welcome C4"})).await;
    in_inbox(&sim, C4, &after_add).await;

    // Promote and demote the second session.
    for action in ["promote", "demote"] {
        let (s, v) = call(
            &bridge,
            "POST",
            &path("/participants"),
            Some(json!({ action: [OTHER] })),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["results"][0]["ok"], true, "{v}");
        let e = event(&rx, "g2", "group.participants", |p| p["action"] == action).await;
        assert_eq!(e["payload"]["participants"], json!([jid(OTHER)]), "{e}");
    }
    // A member who is not an admin is refused as WhatsApp refuses it.
    let (s, v) = call(
        &bridge,
        "POST",
        &format!("/v1/sessions/g2/groups/{gid}/participants"),
        Some(json!({"remove": [C1]})),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["errors"][0]["details"].as_str().unwrap().contains("401"),
        "{v}"
    );

    // Removed: no more of the group's messages.
    let (s, v) = call(
        &bridge,
        "POST",
        &path("/participants"),
        Some(json!({"remove": [C3]})),
    )
    .await;
    assert_eq!(
        (s, v["results"][0]["ok"].clone()),
        (200, json!(true)),
        "{v}"
    );
    event(&rx, "g2", "group.participants", |p| p["action"] == "remove").await;
    let after = send(&bridge, "g1", json!({"to": gid, "text": "without C3"})).await;
    in_inbox(&sim, C1, &after).await;
    in_inbox(&sim, C2, &after).await;
    assert!(
        inbox(&sim, C3)
            .await
            .iter()
            .all(|m| m["id"] != after.as_str()),
        "a removed member must not get the group's messages"
    );

    // Settings.
    let (s, v) = call(
        &bridge,
        "PATCH",
        &path(""),
        Some(json!({"subject": "Project X", "description": "All about X",
                    "announce": true, "locked": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subject"], "Project X");
    assert_eq!(v["description"], "All about X");
    assert_eq!(
        (v["announce"].clone(), v["locked"].clone()),
        (json!(true), json!(true))
    );
    let e = event(&rx, "g2", "group.update", |p| p.get("subject").is_some()).await;
    assert_eq!(e["payload"]["subject"], "Project X", "{e}");
    event(&rx, "g2", "group.update", |p| p["announce"] == true).await;
    event(&rx, "g2", "group.update", |p| {
        p["description"] == "All about X"
    })
    .await;
    let (s, v) = call(
        &bridge,
        "PATCH",
        &path(""),
        Some(json!({"description": null, "announce": false})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["description"].is_null(), "{v}");

    // Invites: read, reset; leave, and join again with the new code.
    let (s, inv) = call(&bridge, "GET", &path("/invite"), None).await;
    assert_eq!(s, 200, "{inv}");
    let (s, reset) = call(&bridge, "POST", &path("/invite/reset"), None).await;
    assert_eq!(s, 200, "{reset}");
    assert_ne!(inv["code"], reset["code"]);
    assert_eq!(
        reset["link"],
        format!(
            "https://chat.whatsapp.com/{}",
            reset["code"].as_str().unwrap()
        )
    );
    let (s, v) = call(
        &bridge,
        "POST",
        &format!("/v1/sessions/g2/groups/{gid}/leave"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let e = event(&rx, "g1", "group.participants", |p| p["action"] == "leave").await;
    assert_eq!(e["payload"]["participants"], json!([jid(OTHER)]), "{e}");
    let (s, v) = call(
        &bridge,
        "POST",
        "/v1/sessions/g2/groups/join",
        Some(json!({"code": inv["code"]})),
    )
    .await;
    assert!(
        s == 410 || s == 404,
        "the old code no longer works: {s} {v}"
    );
    let (s, v) = call(
        &bridge,
        "POST",
        "/v1/sessions/g2/groups/join",
        Some(json!({"code": reset["link"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], gid.as_str());
    let e = event(&rx, "g1", "group.participants", |p| p["action"] == "join").await;
    assert_eq!(e["payload"]["participants"], json!([jid(OTHER)]), "{e}");

    // Bad input: a 4xx naming the field, never a 500.
    let cases = [
        (
            "GET",
            "/v1/sessions/g1/groups/not-a-group".to_string(),
            None,
            400,
            "group",
        ),
        (
            "GET",
            "/v1/sessions/g1/groups/120363999999999999".to_string(),
            None,
            404,
            "404",
        ),
        (
            "POST",
            "/v1/sessions/g1/groups".to_string(),
            Some(json!({"subject": " ", "participants": [C1]})),
            400,
            "subject",
        ),
        (
            "POST",
            "/v1/sessions/g1/groups".to_string(),
            Some(json!({"subject": "x", "participants": []})),
            400,
            "participants",
        ),
        (
            "POST",
            "/v1/sessions/g1/groups".to_string(),
            Some(json!({"subject": "x", "participants": ["nobody"]})),
            400,
            "participants[0]",
        ),
        ("PATCH", path(""), Some(json!({})), 400, "subject"),
        (
            "POST",
            path("/participants"),
            Some(json!({"add": [C1], "remove": [C2]})),
            400,
            "add",
        ),
        (
            "POST",
            path("/participants"),
            Some(json!({"kick": [C1]})),
            400,
            "kick",
        ),
        (
            "POST",
            "/v1/sessions/g1/groups/join".to_string(),
            Some(json!({"code": "!"})),
            400,
            "code",
        ),
    ];
    for (method, p, body, status, field) in cases {
        let (s, v) = call(&bridge, method, &p, body.clone()).await;
        assert_eq!(s, status, "{method} {p} {body:?}: {v}");
        let details = v["errors"][0]["details"].as_str().unwrap_or_default();
        assert!(details.contains(field), "{method} {p}: {v}");
    }
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_missed_the_sender_key_gets_the_message_after_a_retry() {
    let (sim, rx, _dir, bridge, gid) = start().await;
    // C1's first group message leaves g1's device out of its sender key.
    let r = admin_post(
        &sim,
        &format!("/groups/{gid}/withhold-key"),
        json!({"from": C1, "device": format!("{ME}:1@s.whatsapp.net")}),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let late = contact_sends(&sim, C1, json!({"to": gid, "text": "did you get this?"})).await;
    let e = event(&rx, "g1", "message", |p| p["id"] == late.as_str()).await;
    assert_eq!(e["payload"]["text"], "did you get this?", "{e}");
    assert_eq!(e["payload"]["chat"], gid.as_str(), "{e}");
    // The bridge said so while it waited for the key.
    event(&rx, "g1", "message.undecryptable", |p| {
        p["id"] == late.as_str()
    })
    .await;
    // The second session got it at once.
    event(&rx, "g2", "message", |p| p["id"] == late.as_str()).await;
    let g: Value = reqwest::get(format!("{}/groups/{gid}", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(g["sender_key_resends"].as_u64().unwrap_or(0) >= 1, "{g}");
    bridge.stop().await;
}

/// Group events wait in the outbox like every other event: a restart of
/// the bridge loses none and posts each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_events_survive_a_restart() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    let bridge = Bridge::start(cfg.clone()).await;
    let gid = make_group(&sim, &rx, &bridge).await;
    bridge.drained("g2").await;
    rx.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let (s, v) = call(
        &bridge,
        "PATCH",
        &format!("/v1/sessions/g1/groups/{gid}"),
        Some(json!({"subject": "Renamed", "locked": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    eventually(WAIT, "two group.update events queued for g2", || async {
        let s = bridge.json("/v1/sessions/g2/webhooks").await;
        (s["pending"].as_u64()? >= 2).then_some(())
    })
    .await;
    bridge.stop().await;

    let bridge = Bridge::start(cfg).await;
    bridge.wait_status("g2", "WORKING").await;
    rx.down.store(false, std::sync::atomic::Ordering::SeqCst);
    bridge.drained("g2").await;
    let updates = rx.of("g2", "group.update");
    assert!(
        updates.iter().any(|e| e["payload"]["subject"] == "Renamed"),
        "{updates:?}"
    );
    assert!(
        updates.iter().any(|e| e["payload"]["locked"] == true),
        "{updates:?}"
    );
    let mut ids: Vec<&str> = updates.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "each event posted once: {updates:?}");
    bridge.stop().await;
}

/// A group a contact made with LID addressing (as new groups are): its
/// members' messages come with `from` the phone number and `from_lid` the
/// LID, as direct messages do; the session answers it and its info names
/// members by phone number with their LIDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lid_addressed_group_from_a_contact() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    bridge.link(&sim, "g1", &format!("{}g1", rx.url), ME).await;
    let r = admin_post(
        &sim,
        "/groups",
        json!({"creator": C1, "subject": "By LID", "participants": [ME, C2],
               "addressing_mode": "lid"}),
    )
    .await;
    assert!(r.status().is_success());
    let g: Value = r.json().await.unwrap();
    let gid = g["group"]["id"].as_str().unwrap().to_string();
    let e = event(&rx, "g1", "group.participants", |p| {
        p["group"] == gid.as_str()
    })
    .await;
    let p = &e["payload"];
    assert_eq!(p["action"], "create", "{e}");
    assert_eq!(p["subject"], "By LID", "{e}");
    assert_eq!(p["by"], jid(C1), "{e}");
    let members = p["participants"].as_array().unwrap();
    assert!(
        members.contains(&json!(jid(ME))) && members.contains(&json!(jid(C2))),
        "{e}"
    );

    let id = contact_sends(&sim, C1, json!({"to": gid, "text": "by lid"})).await;
    let e = event(&rx, "g1", "message", |p| p["id"] == id.as_str()).await;
    let p = &e["payload"];
    assert_eq!(p["from"], jid(C1), "{p}");
    let lid = sim.lid(C1).unwrap();
    assert_eq!(p["from_lid"], lid.as_str(), "{p}");
    assert_eq!(p["chat"], gid.as_str(), "{p}");

    let (s, info) = call(
        &bridge,
        "GET",
        &format!("/v1/sessions/g1/groups/{gid}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(info["addressing_mode"], "lid", "{info}");
    let c1 = info["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["jid"] == jid(C1))
        .cloned()
        .expect("C1 by phone number");
    assert_eq!(c1["lid"], lid.as_str(), "{c1}");
    assert_eq!(c1["role"], "superadmin", "{c1}");

    let mine = send(&bridge, "g1", json!({"to": gid, "text": "answer"})).await;
    assert_eq!(in_inbox(&sim, C1, &mine).await["group"], gid.as_str());
    in_inbox(&sim, C2, &mine).await;
    bridge.stop().await;
}
