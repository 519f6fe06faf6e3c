//! `POST /{version}/{phone_number_id}/messages`: a Cloud API send body made
//! into the bridge's own send request (so both routes send the same way),
//! and the mark-as-read and typing indicator that share the route.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::messages::{SendReq, check_id, compose, phone_digits, remembered};
use super::super::{ApiError, Body, Shared};
use super::{GraphError, session, success};
use crate::auth::Principal;
use crate::bsuid;
use crate::session::{Manager, SessionError};
use crate::whatsapp::{ChatAction, ContactCard};

/// A Cloud API message body, as its reference has it.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct CloudSend {
    /// Always "whatsapp".
    #[serde(default)]
    #[schemars(extend("enum" = ["whatsapp"]))]
    messaging_product: Option<String>,
    /// individual (default) or group.
    #[serde(default)]
    #[schemars(extend("enum" = ["individual", "group"]))]
    recipient_type: Option<String>,
    /// A phone number (with or without +), or a group id.
    #[serde(default)]
    #[schemars(length(min = 1, max = 128))]
    to: Option<String>,
    /// A business-scoped user id (`CC.<digits>`, as the webhooks give
    /// them); `to` wins when both are given.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Z]{2}\.[0-9A-Za-z.]{1,128}$"))]
    recipient: Option<String>,
    /// text (default), image, video, audio, document, sticker, location,
    /// contacts or reaction.
    #[serde(rename = "type", default)]
    #[schemars(extend("enum" = ["text", "image", "video", "audio", "document", "sticker", "location", "contacts", "reaction", "template", "interactive"]))]
    kind: Option<String>,
    #[serde(default)]
    text: Option<Text>,
    #[serde(default)]
    image: Option<MediaObject>,
    #[serde(default)]
    video: Option<MediaObject>,
    #[serde(default)]
    audio: Option<MediaObject>,
    #[serde(default)]
    document: Option<MediaObject>,
    #[serde(default)]
    sticker: Option<MediaObject>,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    #[schemars(length(min = 1))]
    contacts: Option<Vec<Contact>>,
    #[serde(default)]
    reaction: Option<Reaction>,
    /// A reply: the message it answers.
    #[serde(default)]
    context: Option<Context>,
    /// Accepted for compatibility; WhatsApp Web has nothing to echo it in.
    #[serde(default)]
    #[allow(dead_code)]
    #[schemars(length(max = 512))]
    biz_opaque_callback_data: Option<String>,
    /// "read": mark `message_id` (and the chat's earlier messages) read.
    #[serde(default)]
    #[schemars(extend("enum" = ["read"]))]
    status: Option<String>,
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    message_id: Option<String>,
    /// With a read: show the contact that the business is typing.
    #[serde(default)]
    typing_indicator: Option<Typing>,
    /// Not available on WhatsApp Web: answered with code 131051.
    #[serde(default)]
    template: Option<Value>,
    /// Not available on WhatsApp Web: answered with code 131051.
    #[serde(default)]
    interactive: Option<Value>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Text {
    #[schemars(length(min = 1, max = 4096))]
    body: String,
    /// Accepted; WhatsApp Web clients make link previews themselves.
    #[serde(default)]
    preview_url: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaObject {
    /// A media id from `POST /{version}/{phone_number_id}/media`, or of an
    /// incoming file.
    #[serde(default)]
    #[schemars(regex(pattern = r"^med_[0-9a-f]{32}$"))]
    id: Option<String>,
    /// Or an http(s) URL the bridge fetches.
    #[serde(default)]
    #[schemars(regex(pattern = r"^https?://[!-~]+$"))]
    link: Option<String>,
    /// Image, video and document.
    #[serde(default)]
    caption: Option<String>,
    /// Document.
    #[serde(default)]
    filename: Option<String>,
    /// Audio: a voice message.
    #[serde(default)]
    voice: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// A number, or a string of one (the Cloud API takes both).
    #[schemars(with = "f64")]
    latitude: Value,
    #[schemars(with = "f64")]
    longitude: Value,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct Contact {
    name: ContactName,
    #[serde(default)]
    phones: Vec<ContactPhone>,
    // The card's other parts (emails, addresses, org, urls, birthday) are
    // accepted; the vCard the bridge sends carries the name and numbers.
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ContactName {
    #[schemars(length(min = 1))]
    formatted_name: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ContactPhone {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    wa_id: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reaction {
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    message_id: String,
    /// Empty removes the reaction.
    #[serde(default)]
    emoji: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Context {
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    message_id: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Typing {
    #[schemars(extend("enum" = ["text"]))]
    #[serde(rename = "type")]
    kind: String,
}

/// Who a send goes to: the address for WhatsApp and the `contacts` entry
/// of the answer.
struct Recipient {
    jid: String,
    contact: Value,
}

pub async fn messages(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Path((version, pnid)): Path<(String, String)>,
    Body(req): Body<CloudSend>,
) -> Result<Response, GraphError> {
    let n = session(&m, &version, &pnid)?;
    super::super::access::allow(&who, n)?;
    match req.messaging_product.as_deref() {
        Some("whatsapp") => {}
        None => {
            return Err(GraphError::param(
                "messaging_product: The parameter messaging_product is required (\"whatsapp\").",
            ));
        }
        Some(other) => {
            return Err(GraphError::param(format!(
                "messaging_product: expected \"whatsapp\", got {other:?}"
            )));
        }
    }
    if req.status.is_some() {
        return read(&m, n, req).await;
    }
    let kind = req.kind.clone().unwrap_or_else(|| "text".into());
    if matches!(kind.as_str(), "template" | "interactive")
        || req.template.is_some()
        || req.interactive.is_some()
    {
        return Err(GraphError::unsupported(format!(
            "type: {kind} messages need the WhatsApp Business Platform; a WhatsApp Web session can send text, image, video, audio, document, sticker, location, contacts and reaction"
        )));
    }
    let to = recipient(n, &req)?;
    let send = request(&kind, req, &to.jid)?;
    let (out, extras) = compose(&m, &who, n, send)
        .await
        .map_err(|e| in_cloud_terms(&kind, e))?;
    let sent = m
        .send_message(n, &to.jid, out, extras)
        .await
        .map_err(|e| in_cloud_terms(&kind, e.into()))?;
    Ok(axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [to.contact],
        "messages": [{"id": sent.id}],
    }))
    .into_response())
}

/// `to` (a phone number, a group, or leniently a BSUID) or `recipient` (a
/// BSUID of this session).
fn recipient(n: &str, req: &CloudSend) -> Result<Recipient, GraphError> {
    let by_bsuid = |field: &str, id: &str| -> Result<Recipient, GraphError> {
        let jid = match bsuid::parse(n, id) {
            Some(bsuid::User::Lid(lid)) => format!("{lid}@lid"),
            Some(bsuid::User::Phone(p)) => format!("{p}@s.whatsapp.net"),
            None => {
                return Err(GraphError::param(format!(
                    "{field}: {id:?} is not a business-scoped user id of phone number {n}"
                )));
            }
        };
        Ok(Recipient {
            jid,
            contact: json!({"input": id, "user_id": id}),
        })
    };
    let group = req.recipient_type.as_deref() == Some("group");
    if let Some(t) = req.recipient_type.as_deref()
        && !matches!(t, "individual" | "group")
    {
        return Err(GraphError::param(format!(
            "recipient_type: expected individual or group, got {t:?}"
        )));
    }
    match (req.to.as_deref().map(str::trim), req.recipient.as_deref()) {
        (Some(to), _) if !to.is_empty() => {
            if group || to.ends_with("@g.us") {
                let jid = if to.contains('@') {
                    to.to_string()
                } else {
                    format!("{to}@g.us")
                };
                crate::whatsapp::parse_recipient(&jid)
                    .map_err(|_| GraphError::param(format!("to: {to:?} is not a group id")))?;
                return Ok(Recipient {
                    jid,
                    contact: json!({ "input": to }),
                });
            }
            if bsuid::looks_like(to) {
                return by_bsuid("to", to);
            }
            if let Some(digits) = phone_digits(to) {
                return Ok(Recipient {
                    jid: digits.clone(),
                    contact: json!({"input": to, "wa_id": digits}),
                });
            }
            Err(GraphError::param(format!(
                "to: {to:?} is not a phone number (digits, optionally with + and spaces)"
            )))
        }
        (_, Some(r)) => by_bsuid("recipient", r.trim()),
        _ => Err(GraphError::param(
            "to: The parameter to is required (or recipient, a business-scoped user id).",
        )),
    }
}

/// The bridge's send request for a Cloud API body.
fn request(kind: &str, req: CloudSend, to: &str) -> Result<SendReq, GraphError> {
    let mut out = SendReq {
        to: to.to_string(),
        reply_to: req.context.map(|c| c.message_id),
        ..Default::default()
    };
    let missing = |what: &str| GraphError::param(format!("{what}: required for a {kind} message"));
    match kind {
        "text" => {
            let text = req.text.ok_or_else(|| missing("text"))?;
            let _ = text.preview_url;
            out.text = Some(text.body);
        }
        "image" | "video" | "audio" | "document" | "sticker" => {
            let obj = match kind {
                "image" => req.image,
                "video" => req.video,
                "audio" => req.audio,
                "document" => req.document,
                _ => req.sticker,
            }
            .ok_or_else(|| missing(kind))?;
            if obj.id.is_some() == obj.link.is_some() {
                return Err(GraphError::media(format!(
                    "{kind}.id, {kind}.link: give exactly one of them"
                )));
            }
            out.kind = Some(if kind == "audio" && obj.voice == Some(true) {
                "voice".into()
            } else {
                kind.into()
            });
            out.media_id = obj.id;
            out.url = obj.link;
            if matches!(kind, "image" | "video" | "document") {
                out.caption = obj.caption;
            }
            if kind == "document" {
                out.file_name = obj.filename;
            }
        }
        "location" => {
            let l = req.location.ok_or_else(|| missing("location"))?;
            out.kind = Some("location".into());
            out.latitude = Some(coordinate(&l.latitude, "location.latitude")?);
            out.longitude = Some(coordinate(&l.longitude, "location.longitude")?);
            out.name = l.name;
            out.address = l.address;
        }
        "contacts" => {
            let cards = req.contacts.ok_or_else(|| missing("contacts"))?;
            out.kind = Some("contacts".into());
            out.contacts = Some(
                cards
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let phones = c
                            .phones
                            .into_iter()
                            .filter_map(|p| p.phone.or(p.wa_id.map(|w| format!("+{w}"))))
                            .collect::<Vec<_>>();
                        if phones.is_empty() {
                            return Err(GraphError::param(format!(
                                "contacts[{i}].phones: at least one phone"
                            )));
                        }
                        Ok(ContactCard {
                            name: c.name.formatted_name,
                            phones,
                        })
                    })
                    .collect::<Result<_, _>>()?,
            );
        }
        "reaction" => {
            let r = req.reaction.ok_or_else(|| missing("reaction"))?;
            out.kind = Some("reaction".into());
            out.message_id = Some(r.message_id);
            out.emoji = Some(r.emoji.unwrap_or_default());
            // A reaction quotes nothing.
            out.reply_to = None;
        }
        other => {
            return Err(GraphError::param(format!(
                "type: expected one of text, image, video, audio, document, sticker, location, contacts, reaction; got {other:?}"
            )));
        }
    }
    Ok(out)
}

fn coordinate(v: &Value, field: &str) -> Result<f64, GraphError> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| GraphError::param(format!("{field}: expected a number, got {v}")))
}

/// An error of the bridge's send, naming the Cloud API's field instead of
/// the bridge's, with the media code for problems with the file.
fn in_cloud_terms(kind: &str, e: ApiError) -> GraphError {
    let ApiError(status, msg) = e;
    let (field, rest) = msg.split_once(": ").unwrap_or(("", msg.as_str()));
    let media_kind = if kind == "voice" { "audio" } else { kind };
    let renamed = match field {
        "text" => "text.body".to_string(),
        "url" => format!("{media_kind}.link"),
        "media_id" => format!("{media_kind}.id"),
        "base64" => format!("{media_kind}.link"),
        "media_id, url, base64" => format!("{media_kind}.id, {media_kind}.link"),
        "caption" => format!("{media_kind}.caption"),
        "file_name" => "document.filename".into(),
        "latitude" | "longitude" | "name" | "address" => format!("location.{field}"),
        "message_id" | "emoji" => format!("reaction.{field}"),
        "reply_to" => "context.message_id".into(),
        f if f.starts_with("contacts[") && f.ends_with(".name") => format!("{f}.formatted_name"),
        f => f.to_string(),
    };
    let details = if field.is_empty() {
        msg.clone()
    } else {
        format!("{renamed}: {rest}")
    };
    let is_media = matches!(
        field,
        "url" | "media_id" | "base64" | "media_id, url, base64"
    ) || status == StatusCode::PAYLOAD_TOO_LARGE;
    if is_media && status.is_client_error() {
        return GraphError {
            status,
            ..GraphError::media(details)
        };
    }
    GraphError::from(ApiError(status, details))
}

/// `{"status": "read", "message_id", "typing_indicator"?}`: the message
/// (and, as the Cloud API does, the unread messages of its chat before it)
/// are marked read; with the indicator, the contact sees the business
/// typing.
async fn read(m: &Manager, n: &str, req: CloudSend) -> Result<Response, GraphError> {
    if req.status.as_deref() != Some("read") {
        return Err(GraphError::param(format!(
            "status: expected \"read\", got {:?}",
            req.status.unwrap_or_default()
        )));
    }
    let id = req
        .message_id
        .ok_or_else(|| GraphError::param("message_id: required with status read"))?;
    check_id(&id, "message_id")?;
    let typing = match req.typing_indicator {
        None => false,
        Some(t) if t.kind == "text" => true,
        Some(t) => {
            return Err(GraphError::param(format!(
                "typing_indicator.type: expected \"text\", got {:?}",
                t.kind
            )));
        }
    };
    let rec = remembered(m, n, &id, "message_id").await?;
    if rec.from_me {
        return Err(GraphError::param(format!(
            "message_id: {id} was sent by this phone number; only received messages are marked read"
        )));
    }
    match m.read_up_to(n, &rec.chat, &id).await {
        Ok(_) => {}
        // Not in the unread index (read before, or received before the
        // bridge started): that message alone.
        Err(SessionError::UnknownMessage(_)) => {
            let sender = rec.chat.ends_with("@g.us").then(|| rec.sender.clone());
            m.act(
                n,
                ChatAction::Read {
                    chat: rec.chat.clone(),
                    sender,
                    ids: vec![id.clone()],
                },
            )
            .await
            .map_err(ApiError::from)?;
        }
        Err(e) => return Err(ApiError::from(e).into()),
    }
    if typing {
        m.act(
            n,
            ChatAction::ChatState {
                chat: rec.chat,
                state: "composing".into(),
            },
        )
        .await
        .map_err(ApiError::from)?;
    }
    Ok(success())
}
