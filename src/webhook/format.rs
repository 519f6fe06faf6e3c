//! The bodies posted to receivers. The outbox keeps every event in the
//! native envelope; a session's format is applied when the event is posted,
//! so a session switched to another format gets its pending events in the
//! new one.

use serde_json::{Map, Value, json};

use super::subscription::Format;

/// The body to post for a stored (native) event, or None when the format
/// has no shape for it (the event is then skipped as delivered).
pub fn render(format: Format, event: &Value) -> Option<Value> {
    match format {
        Format::Native => Some(event.clone()),
        Format::Cloud => cloud(event),
        Format::Wapi => wapi(event),
    }
}

/// The number part of a JID: "15550001111:3@s.whatsapp.net" -> "15550001111".
fn number(jid: &str) -> &str {
    let user = jid.split('@').next().unwrap_or(jid);
    user.split(':').next().unwrap_or(user)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// WhatsApp Cloud API webhook body: one entry, one change, field "messages".
fn cloud(event: &Value) -> Option<Value> {
    let session = str_of(event, "session");
    let payload = event.get("payload")?;
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": number(str_of(event, "account")),
            "phone_number_id": session,
        },
    });
    match str_of(event, "event") {
        "message" => {
            let from = number(str_of(payload, "from"));
            value["contacts"] = json!([{
                "profile": {"name": str_of(payload, "push_name")},
                "wa_id": from,
            }]);
            value["messages"] = json!([cloud_message(payload, from)]);
        }
        "message.status" => {
            // The Cloud API has no "played": a played voice note was heard,
            // which is its "read".
            let status = match str_of(payload, "status") {
                "played" => "read",
                s => s,
            };
            let timestamp = payload.get("timestamp").and_then(Value::as_i64)?;
            let recipient = number(str_of(payload, "recipient"));
            let statuses: Vec<Value> = payload
                .get("ids")?
                .as_array()?
                .iter()
                .map(|id| {
                    json!({
                        "id": id,
                        "status": status,
                        "timestamp": timestamp.to_string(),
                        "recipient_id": recipient,
                    })
                })
                .collect();
            value["statuses"] = json!(statuses);
        }
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

fn cloud_message(m: &Value, from: &str) -> Value {
    let timestamp = m.get("timestamp").and_then(Value::as_i64).unwrap_or(0);
    let mut out = json!({
        "from": from,
        "id": str_of(m, "id"),
        "timestamp": timestamp.to_string(),
    });
    if m.get("is_group").and_then(Value::as_bool) == Some(true) {
        out["group_id"] = json!(str_of(m, "chat"));
    }
    let media = m.get("media").cloned().unwrap_or(Value::Null);
    let (kind, body) = match str_of(m, "type") {
        "text" => ("text", json!({"body": str_of(m, "text")})),
        kind @ ("image" | "video" | "document" | "sticker" | "audio" | "voice") => {
            let mut o = Map::new();
            let mut put = |k: &str, v: Option<&Value>| {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    o.insert(k.to_string(), v.clone());
                }
            };
            // The Cloud API's media id (fetched with `GET /v1/media/{id}`);
            // absent when the file could not be downloaded.
            put("id", media.get("id"));
            put("mime_type", media.get("mimetype"));
            put("sha256", media.get("sha256"));
            put("caption", m.get("caption"));
            put("filename", media.get("file_name"));
            if kind == "voice" {
                o.insert("voice".into(), json!(true));
            }
            (
                if kind == "voice" { "audio" } else { kind },
                Value::Object(o),
            )
        }
        "location" => {
            let l = m.get("location").cloned().unwrap_or(Value::Null);
            let mut o = json!({"latitude": l["latitude"], "longitude": l["longitude"]});
            for k in ["name", "address"] {
                if let Some(v) = l.get(k).filter(|v| !v.is_null()) {
                    o[k] = v.clone();
                }
            }
            ("location", o)
        }
        "contacts" => {
            let cards: Vec<Value> = m
                .get("contacts")
                .and_then(Value::as_array)
                .map(|cards| {
                    cards
                        .iter()
                        .map(|c| {
                            let phones: Vec<Value> = c["phones"]
                                .as_array()
                                .map(|p| {
                                    p.iter()
                                        .map(|n| json!({"phone": n, "type": "CELL"}))
                                        .collect()
                                })
                                .unwrap_or_default();
                            json!({"name": {"formatted_name": c["name"]}, "phones": phones})
                        })
                        .collect()
                })
                .unwrap_or_default();
            ("contacts", Value::Array(cards))
        }
        "reaction" => {
            let r = m.get("reaction").cloned().unwrap_or(Value::Null);
            (
                "reaction",
                json!({"message_id": r["message_id"], "emoji": r["emoji"]}),
            )
        }
        _ => (
            "unsupported",
            json!([{"code": 131051, "title": "Message type unknown"}]),
        ),
    };
    out["type"] = json!(kind);
    // An unsupported message carries `errors`, as the Cloud API's does.
    let key = if kind == "unsupported" {
        "errors"
    } else {
        kind
    };
    out[key] = body;
    if let Some(quoted) = m.get("reply_to").and_then(Value::as_str) {
        let quoted_from = m
            .get("reply_to_sender")
            .and_then(Value::as_str)
            .map(number)
            .unwrap_or_default();
        out["context"] = json!({"from": quoted_from, "id": quoted});
    }
    out
}

/// The Go wapi's message body (whatsmeow-era field names). Non-text
/// messages keep the shape with their caption as `Text` and a `Type`, so a
/// wapi receiver sees every message rather than none.
fn wapi(event: &Value) -> Option<Value> {
    if str_of(event, "event") != "message" {
        return None;
    }
    let m = event.get("payload")?;
    let text = m
        .get("text")
        .and_then(Value::as_str)
        .or_else(|| m.get("caption").and_then(Value::as_str))
        .unwrap_or_default();
    Some(json!({
        "Info": {
            "Id": str_of(m, "id"),
            "RemoteJid": str_of(m, "chat"),
            "SenderJid": str_of(m, "from"),
            "FromMe": m.get("from_me").and_then(Value::as_bool).unwrap_or(false),
            "Timestamp": m.get("timestamp").and_then(Value::as_i64).unwrap_or(0),
            "PushName": str_of(m, "push_name"),
            // go-whatsapp's DeliveryAck: the message reached this device.
            "Status": 3,
        },
        "Text": text,
        "Type": str_of(m, "type"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: Value) -> Value {
        json!({
            "id": "evt_1", "event": "message", "session": "s1",
            "account": "15550001111@s.whatsapp.net", "timestamp": 1_700_000_000_123u64,
            "payload": payload,
        })
    }

    #[test]
    fn cloud_text_reply() {
        let body = cloud(&message(json!({
            "id": "ABC", "chat": "15550002222@s.whatsapp.net",
            "from": "15550002222@s.whatsapp.net", "push_name": "Bob",
            "timestamp": 1_700_000_000, "type": "text", "text": "hi",
            "reply_to": "XYZ", "reply_to_sender": "15550001111@s.whatsapp.net",
        })))
        .unwrap();
        let v = &body["entry"][0]["changes"][0]["value"];
        assert_eq!(v["metadata"]["display_phone_number"], "15550001111");
        assert_eq!(v["contacts"][0]["wa_id"], "15550002222");
        let m = &v["messages"][0];
        assert_eq!(m["timestamp"], "1700000000");
        assert_eq!(m["text"]["body"], "hi");
        assert_eq!(m["context"], json!({"from": "15550001111", "id": "XYZ"}));
    }

    #[test]
    fn cloud_media_kinds() {
        let voice = cloud(&message(json!({
            "id": "A", "from": "1@s.whatsapp.net", "timestamp": 1, "type": "voice",
            "media": {"mimetype": "audio/ogg; codecs=opus", "file_size": 10},
        })))
        .unwrap();
        let m = &voice["entry"][0]["changes"][0]["value"]["messages"][0];
        assert_eq!(m["type"], "audio");
        assert_eq!(m["audio"]["voice"], true);
        assert_eq!(m["audio"]["mime_type"], "audio/ogg; codecs=opus");

        let odd = cloud(&message(
            json!({"id": "B", "from": "1@s", "type": "unknown"}),
        ))
        .unwrap();
        let m = &odd["entry"][0]["changes"][0]["value"]["messages"][0];
        assert_eq!(m["type"], "unsupported");
        assert_eq!(m["errors"][0]["code"], 131051);
    }

    #[test]
    fn cloud_has_no_session_status_and_wapi_only_messages() {
        let ev =
            json!({"event": "session.status", "session": "s", "payload": {"status": "WORKING"}});
        assert_eq!(render(Format::Cloud, &ev), None);
        assert_eq!(render(Format::Wapi, &ev), None);
        let w = render(
            Format::Wapi,
            &message(json!({"id": "I", "chat": "c", "from": "f", "text": "t", "timestamp": 5})),
        )
        .unwrap();
        assert_eq!(w["Info"]["Id"], "I");
        assert_eq!(w["Info"]["Timestamp"], 5);
        assert_eq!(w["Text"], "t");
    }
}
