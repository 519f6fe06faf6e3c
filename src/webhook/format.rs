//! The bodies posted to receivers. The outbox keeps every event in the
//! native envelope; a session's format is applied when the event is posted,
//! so a session switched to another format gets its pending events in the
//! new one.

use serde_json::{Value, json};

use super::subscription::Format;

/// The body to post for a stored (native) event, or None when the format
/// has no shape for it (the event is then skipped as delivered).
pub fn render(format: Format, event: &Value) -> Option<Value> {
    match format {
        Format::Native => Some(event.clone()),
        Format::Cloud => super::cloud::render(event),
        Format::Wapi => wapi(event),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
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
