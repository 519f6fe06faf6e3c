//! The WhatsApp Cloud API's webhook bodies (the `cloud` format), as its
//! current reference has them: business-scoped user ids beside the phone
//! numbers (`contacts[].user_id`, `from_user_id`, `recipient_user_id`), a
//! `contacts` array on statuses, string timestamps, every message type the
//! bridge reports mapped to its Cloud API type, and the rest `unsupported`
//! with its `errors`, as the Cloud API does.
//!
//! A WhatsApp Web session is a number on the WhatsApp app, which is what the
//! Cloud API calls a Coexistence number: edits and deletes by the user take
//! the shapes it posts for those (`type: "edit"`, `type: "revoke"`).

use serde_json::{Map, Value, json};

use crate::bsuid;

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The user part of a JID: "15550001111:3@s.whatsapp.net" -> "15550001111".
pub fn number(jid: &str) -> &str {
    let user = jid.split('@').next().unwrap_or(jid);
    user.split(':').next().unwrap_or(user)
}

/// Who a JID (and its LID, when known) is, in the Cloud API's terms.
struct User {
    /// The phone number, when WhatsApp gave it.
    wa_id: Option<String>,
    user_id: Option<String>,
}

impl User {
    fn of(session: &str, account: &str, jid: &str, lid: Option<&str>) -> Self {
        let phone = jid
            .ends_with("@s.whatsapp.net")
            .then(|| number(jid).to_string());
        let lid = lid
            .map(number)
            .or_else(|| jid.ends_with("@lid").then(|| number(jid)));
        let user_id = bsuid::of(session, lid, phone.as_deref(), number(account));
        Self {
            wa_id: phone,
            user_id,
        }
    }

    /// A `contacts[]` entry; `name` when known.
    fn contact(&self, name: Option<&str>) -> Value {
        let mut c = Map::new();
        if let Some(name) = name {
            c.insert("profile".into(), json!({ "name": name }));
        }
        if let Some(w) = &self.wa_id {
            c.insert("wa_id".into(), json!(w));
        }
        if let Some(u) = &self.user_id {
            c.insert("user_id".into(), json!(u));
        }
        Value::Object(c)
    }
}

/// The body for a stored native event; `None` for events the Cloud API has
/// no webhook for (and for the session's own messages, which it does not
/// echo).
pub fn render(event: &Value) -> Option<Value> {
    let session = str_of(event, "session");
    let account = str_of(event, "account");
    let payload = event.get("payload")?;
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": number(account),
            "phone_number_id": session,
        },
    });
    match str_of(event, "event") {
        kind @ ("message" | "message.edited" | "message.revoked" | "message.undecryptable") => {
            if payload.get("from_me").and_then(Value::as_bool) == Some(true) {
                return None;
            }
            let from = str_of(payload, "from");
            let user = User::of(
                session,
                account,
                from,
                payload.get("from_lid").and_then(Value::as_str),
            );
            let name = payload
                .get("push_name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty());
            value["contacts"] = json!([user.contact(Some(name.unwrap_or_default()))]);
            let mut m = head(payload, &user, str_of(payload, "id"));
            match kind {
                "message" => body(payload, &mut m),
                "message.edited" => {
                    // The edit's own id is the message's; the edited one is
                    // `original_message_id`.
                    m["id"] = json!(payload.get("edit_id").unwrap_or(&payload["id"]));
                    let mut inner = Map::new().into();
                    body(payload, &mut inner);
                    m["type"] = json!("edit");
                    m["edit"] = json!({"original_message_id": payload["id"], "message": inner});
                }
                "message.revoked" => {
                    m["id"] = json!(payload.get("edit_id").unwrap_or(&payload["id"]));
                    m["type"] = json!("revoke");
                    m["revoke"] = json!({"original_message_id": payload["id"]});
                }
                _ => unsupported(
                    &mut m,
                    "unknown",
                    131060,
                    "This message is currently unavailable.",
                    "The message could not be decrypted on the linked device.",
                ),
            }
            value["messages"] = json!([m]);
        }
        "contact.number_changed" => {
            // A system message, which has no contacts array.
            let old = str_of(payload, "old");
            let new = str_of(payload, "new");
            let was = User::of(
                session,
                account,
                old,
                payload.get("old_lid").and_then(Value::as_str),
            );
            let is = User::of(
                session,
                account,
                new,
                payload.get("new_lid").and_then(Value::as_str),
            );
            let ms = event.get("timestamp").and_then(Value::as_u64).unwrap_or(0);
            let mut m = json!({
                "id": str_of(event, "id"),
                "timestamp": (ms / 1000).to_string(),
                "type": "system",
                "system": {
                    "body": format!("User changed from {} to {}", number(old), number(new)),
                    "type": "user_changed_number",
                },
            });
            if let Some(w) = &was.wa_id {
                m["from"] = json!(w);
            }
            if let Some(u) = &was.user_id {
                m["from_user_id"] = json!(u);
                m["system"]["previous_user_id"] = json!(u);
            }
            if let Some(w) = &is.wa_id {
                m["system"]["wa_id"] = json!(w);
            }
            if let Some(u) = &is.user_id {
                m["system"]["user_id"] = json!(u);
            }
            value["messages"] = json!([m]);
        }
        "message.status" => statuses(session, account, payload, &mut value)?,
        _ => return None,
    }
    Some(json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": session,
            "changes": [{"value": value, "field": "messages"}],
        }],
    }))
}

/// `from`, `from_user_id`, `id`, `timestamp` and `group_id` of a message.
fn head(m: &Value, user: &User, id: &str) -> Value {
    let timestamp = m.get("timestamp").and_then(Value::as_i64).unwrap_or(0);
    let mut out = json!({"id": id, "timestamp": timestamp.to_string()});
    if let Some(w) = &user.wa_id {
        out["from"] = json!(w);
    }
    if let Some(u) = &user.user_id {
        out["from_user_id"] = json!(u);
    }
    if m.get("is_group").and_then(Value::as_bool) == Some(true) {
        out["group_id"] = json!(str_of(m, "chat"));
    }
    out
}

fn unsupported(out: &mut Value, what: &str, code: u32, title: &str, details: &str) {
    out["type"] = json!("unsupported");
    out["unsupported"] = json!({ "type": what });
    out["errors"] = json!([{
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details},
    }]);
}

/// The type and the object of that type, and the reply context.
fn body(m: &Value, out: &mut Value) {
    let media = m.get("media").cloned().unwrap_or(Value::Null);
    let mut put = |kind: &str, obj: Value| {
        out["type"] = json!(kind);
        out[kind] = obj;
    };
    match str_of(m, "type") {
        "text" => put("text", json!({"body": str_of(m, "text")})),
        kind @ ("image" | "video" | "document" | "sticker" | "audio" | "voice") => {
            let mut o = Map::new();
            let mut set = |k: &str, v: Option<&Value>| {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    o.insert(k.to_string(), v.clone());
                }
            };
            // The media id works with `GET /{version}/{media_id}`; absent
            // when the file could not be downloaded.
            set("id", media.get("id"));
            set("url", media.get("url"));
            set("mime_type", media.get("mimetype"));
            set("sha256", media.get("sha256"));
            if !matches!(kind, "audio" | "voice" | "sticker") {
                set("caption", m.get("caption"));
            }
            if kind == "document" {
                set("filename", media.get("file_name"));
            }
            match kind {
                "voice" => {
                    o.insert("voice".into(), json!(true));
                }
                "audio" => {
                    o.insert("voice".into(), json!(false));
                }
                "sticker" => {
                    o.insert("animated".into(), json!(false));
                }
                _ => {}
            }
            put(
                if kind == "voice" { "audio" } else { kind },
                Value::Object(o),
            );
        }
        "location" => {
            let l = m.get("location").cloned().unwrap_or(Value::Null);
            let mut o = json!({"latitude": l["latitude"], "longitude": l["longitude"]});
            for k in ["name", "address"] {
                if let Some(v) = l.get(k).filter(|v| !v.is_null()) {
                    o[k] = v.clone();
                }
            }
            put("location", o);
        }
        "contacts" => {
            let cards: Vec<Value> = m
                .get("contacts")
                .and_then(Value::as_array)
                .map(|cards| cards.iter().map(card).collect())
                .unwrap_or_default();
            put("contacts", Value::Array(cards));
        }
        "reaction" => {
            let r = m.get("reaction").cloned().unwrap_or(Value::Null);
            let mut o = json!({"message_id": r["message_id"]});
            // The Cloud API leaves the emoji out when a reaction is removed.
            if let Some(e) = r
                .get("emoji")
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
            {
                o["emoji"] = json!(e);
            }
            put("reaction", o);
        }
        other => {
            // Polls and votes are what the Cloud API calls poll_creation and
            // poll_update; it posts neither.
            let what = match other {
                "poll" => "poll_creation",
                "poll_vote" => "poll_update",
                _ => "unknown",
            };
            unsupported(
                out,
                what,
                131051,
                "Message type unknown",
                "Message type is currently not supported.",
            );
        }
    }
    if let Some(quoted) = m.get("reply_to").and_then(Value::as_str) {
        let quoted_from = m
            .get("reply_to_sender")
            .and_then(Value::as_str)
            .map(number)
            .unwrap_or_default();
        out["context"] = json!({"from": quoted_from, "id": quoted});
    }
}

/// A contact card: its name, its numbers, and the vCard it came as.
fn card(c: &Value) -> Value {
    let phones: Vec<Value> = c["phones"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|n| {
                    let digits: String = n
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect();
                    json!({"phone": n, "wa_id": digits, "type": "CELL"})
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = json!({
        "name": {"formatted_name": c["name"]},
        "phones": phones,
        "origin": "other",
    });
    if let Some(v) = c.get("vcard").filter(|v| !v.is_null()) {
        out["vcard"] = v.clone();
    }
    out
}

/// `statuses` (one per message id) and, but for failures, `contacts`.
fn statuses(session: &str, account: &str, payload: &Value, value: &mut Value) -> Option<()> {
    let status = str_of(payload, "status");
    let timestamp = payload.get("timestamp").and_then(Value::as_i64)?;
    let recipient = str_of(payload, "recipient");
    let group = recipient.ends_with("@g.us");
    let user = User::of(
        session,
        account,
        recipient,
        payload.get("recipient_lid").and_then(Value::as_str),
    );
    let failed = status == "failed";
    let list: Vec<Value> = payload
        .get("ids")?
        .as_array()?
        .iter()
        .map(|id| {
            let mut s = json!({
                "id": id,
                "status": status,
                "timestamp": timestamp.to_string(),
            });
            if group {
                s["recipient_id"] = json!(recipient);
                s["recipient_type"] = json!("group");
            } else if let Some(w) = &user.wa_id {
                s["recipient_id"] = json!(w);
            }
            // A failure of a message sent to a phone number has no
            // business-scoped id, as the Cloud API's.
            if !failed
                && !group
                && let Some(u) = &user.user_id
            {
                s["recipient_user_id"] = json!(u);
            }
            if failed {
                let code = str_of(payload, "error");
                s["errors"] = json!([{
                    "code": 131026,
                    "title": "Message undeliverable",
                    "message": "Message undeliverable",
                    "error_data": {"details": format!(
                        "WhatsApp did not accept the message (server error {code})."
                    )},
                    "href": "/documentation/business-messaging/whatsapp/support/error-codes",
                }]);
            }
            s
        })
        .collect();
    if !failed && !group {
        value["contacts"] = json!([user.contact(None)]);
    }
    value["statuses"] = json!(list);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: Value) -> Value {
        json!({
            "id": "evt_1", "event": kind, "session": "s1",
            "account": "15550001111@s.whatsapp.net", "timestamp": 1_700_000_000_123u64,
            "payload": payload,
        })
    }

    fn value(v: &Value) -> &Value {
        &v["entry"][0]["changes"][0]["value"]
    }

    #[test]
    fn a_text_reply_has_both_ids_of_its_sender() {
        let body = render(&event(
            "message",
            json!({
                "id": "ABC", "chat": "15550002222@s.whatsapp.net",
                "from": "15550002222@s.whatsapp.net", "from_lid": "777@lid", "push_name": "Bob",
                "timestamp": 1_700_000_000, "type": "text", "text": "hi",
                "reply_to": "XYZ", "reply_to_sender": "15550001111@s.whatsapp.net",
            }),
        ))
        .unwrap();
        let v = value(&body);
        assert_eq!(v["metadata"]["display_phone_number"], "15550001111");
        let bsuid = bsuid::of("s1", Some("777"), Some("15550002222"), "15550001111").unwrap();
        assert_eq!(
            v["contacts"][0],
            json!({"profile": {"name": "Bob"}, "wa_id": "15550002222", "user_id": bsuid})
        );
        let m = &v["messages"][0];
        assert_eq!(m["from"], "15550002222");
        assert_eq!(m["from_user_id"], bsuid);
        assert_eq!(m["timestamp"], "1700000000");
        assert_eq!(m["text"]["body"], "hi");
        assert_eq!(m["context"], json!({"from": "15550001111", "id": "XYZ"}));
    }

    #[test]
    fn a_lid_only_sender_has_no_phone_fields() {
        let body = render(&event(
            "message",
            json!({"id": "A", "chat": "9@lid", "from": "9@lid", "from_lid": "9@lid",
                   "push_name": "", "timestamp": 1, "type": "text", "text": "x"}),
        ))
        .unwrap();
        let v = value(&body);
        assert!(v["contacts"][0].get("wa_id").is_none());
        assert!(v["messages"][0].get("from").is_none());
        assert!(
            v["messages"][0]["from_user_id"]
                .as_str()
                .unwrap()
                .starts_with("US.1")
        );
    }

    #[test]
    fn media_kinds_and_unsupported_ones() {
        let voice = render(&event(
            "message",
            json!({"id": "A", "from": "1@s.whatsapp.net", "timestamp": 1, "type": "voice",
                   "media": {"id": "med_1", "mimetype": "audio/ogg; codecs=opus", "file_size": 10}}),
        ))
        .unwrap();
        let m = &value(&voice)["messages"][0];
        assert_eq!(m["type"], "audio");
        assert_eq!(
            m["audio"],
            json!({"id": "med_1", "mime_type": "audio/ogg; codecs=opus", "voice": true})
        );
        let poll = render(&event(
            "message",
            json!({"id": "B", "from": "1@s.whatsapp.net", "type": "poll"}),
        ))
        .unwrap();
        let m = &value(&poll)["messages"][0];
        assert_eq!(m["type"], "unsupported");
        assert_eq!(m["unsupported"]["type"], "poll_creation");
        assert_eq!(m["errors"][0]["code"], 131051);
    }

    #[test]
    fn edits_deletes_and_number_changes() {
        let edit = render(&event(
            "message.edited",
            json!({"id": "ORIG", "edit_id": "E1", "from": "1@s.whatsapp.net", "timestamp": 5,
                   "type": "text", "text": "new"}),
        ))
        .unwrap();
        let m = &value(&edit)["messages"][0];
        assert_eq!(m["id"], "E1");
        assert_eq!(m["type"], "edit");
        assert_eq!(m["edit"]["original_message_id"], "ORIG");
        assert_eq!(m["edit"]["message"]["text"]["body"], "new");
        let revoke = render(&event(
            "message.revoked",
            json!({"id": "ORIG", "edit_id": "R1", "from": "1@s.whatsapp.net", "timestamp": 5,
                   "type": "revoke"}),
        ))
        .unwrap();
        let m = &value(&revoke)["messages"][0];
        assert_eq!(m["type"], "revoke");
        assert_eq!(m["revoke"]["original_message_id"], "ORIG");
        let moved = render(&event(
            "contact.number_changed",
            json!({"old": "15550002222@s.whatsapp.net", "new": "15550003333@s.whatsapp.net",
                   "old_lid": "5@lid", "new_lid": "5@lid"}),
        ))
        .unwrap();
        let v = value(&moved);
        assert!(v.get("contacts").is_none());
        let m = &v["messages"][0];
        assert_eq!(m["type"], "system");
        assert_eq!(m["system"]["type"], "user_changed_number");
        assert_eq!(m["system"]["wa_id"], "15550003333");
        assert_eq!(m["timestamp"], "1700000000");
    }

    #[test]
    fn statuses_carry_contacts_but_failures_carry_errors() {
        let sent = render(&event(
            "message.status",
            json!({"ids": ["M1", "M2"], "status": "played", "recipient": "15550002222@s.whatsapp.net",
                   "recipient_lid": "777@lid", "timestamp": 9}),
        ))
        .unwrap();
        let v = value(&sent);
        let bsuid = bsuid::of("s1", Some("777"), Some("15550002222"), "1").unwrap();
        assert_eq!(
            v["contacts"],
            json!([{"wa_id": "15550002222", "user_id": bsuid}])
        );
        assert_eq!(v["statuses"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["statuses"][0],
            json!({"id": "M1", "status": "played", "timestamp": "9",
                   "recipient_id": "15550002222", "recipient_user_id": bsuid})
        );
        let failed = render(&event(
            "message.status",
            json!({"ids": ["M3"], "status": "failed", "recipient": "15550002222@s.whatsapp.net",
                   "timestamp": 9, "error": "479"}),
        ))
        .unwrap();
        let v = value(&failed);
        assert!(v.get("contacts").is_none());
        let s = &v["statuses"][0];
        assert!(s.get("recipient_user_id").is_none());
        assert_eq!(s["errors"][0]["code"], 131026);
        assert!(
            s["errors"][0]["error_data"]["details"]
                .as_str()
                .unwrap()
                .contains("479")
        );
    }

    #[test]
    fn own_messages_and_session_events_are_not_posted() {
        assert_eq!(
            render(&event(
                "message",
                json!({"id": "A", "from": "1@s.whatsapp.net", "from_me": true, "type": "text"})
            )),
            None
        );
        assert_eq!(
            render(&event("session.status", json!({"status": "WORKING"}))),
            None
        );
    }
}
