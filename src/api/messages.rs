//! Messages: sending every kind, and editing or deleting a message we sent,
//! each by its id alone (the bridge remembers what it needs of it).

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Body, Shared, bad, media, name};
use crate::auth::Principal;
use crate::session::{Manager, SessionError};
use crate::store::MessageRecord;
use crate::whatsapp::{ContactCard, Extras, Outgoing};

/// Every kind but the media ones (listed by `media::KINDS`).
const KINDS: &str = "text, location, contacts, reaction, poll";

/// WhatsApp's limit on a poll's options.
const MAX_POLL_OPTIONS: usize = 12;

#[derive(Deserialize, Default, schemars::JsonSchema)]
pub struct SendReq {
    /// A phone number or a JID.
    #[schemars(regex(
        pattern = r"^(\+?[0-9]{1,20}|[0-9A-Za-z.:_-]{1,64}@(s\.whatsapp\.net|lid|g\.us))$"
    ))]
    pub(super) to: String,
    /// text (default), image, video, audio, voice (a voice note), document,
    /// sticker, location, contacts, reaction or poll.
    #[serde(rename = "type", default)]
    #[schemars(extend("enum" = ["text", "image", "video", "audio", "voice", "document", "sticker", "location", "contacts", "reaction", "poll", null]))]
    pub(super) kind: Option<String>,
    /// The text of a text message.
    #[serde(default)]
    pub(super) text: Option<String>,
    /// A media message's file: exactly one of media_id (uploaded before),
    /// url (fetched by the bridge) or base64.
    #[serde(default)]
    #[schemars(regex(pattern = r"^med_[0-9a-f]{32}$"))]
    pub(super) media_id: Option<String>,
    #[serde(default)]
    #[schemars(regex(pattern = r"^https?://[!-~]+$"))]
    pub(super) url: Option<String>,
    #[serde(default)]
    #[schemars(
        regex(pattern = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"),
        length(min = 4)
    )]
    pub(super) base64: Option<String>,
    #[serde(default)]
    pub(super) caption: Option<String>,
    /// Shown with a document.
    #[serde(default)]
    pub(super) file_name: Option<String>,
    /// Sniffed from the file when absent.
    #[serde(default)]
    pub(super) mimetype: Option<String>,
    /// A location: -90 to 90.
    #[serde(default)]
    #[schemars(range(min = -90.0, max = 90.0))]
    pub(super) latitude: Option<f64>,
    /// A location: -180 to 180.
    #[serde(default)]
    #[schemars(range(min = -180.0, max = 180.0))]
    pub(super) longitude: Option<f64>,
    /// A location's name.
    #[serde(default)]
    pub(super) name: Option<String>,
    /// A location's address.
    #[serde(default)]
    pub(super) address: Option<String>,
    /// Contact cards (one or more), each a name and phone numbers.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub(super) contacts: Option<Vec<ContactCard>>,
    /// A reaction: the message it is for.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub(super) message_id: Option<String>,
    /// A reaction's emoji; empty takes the reaction back.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub(super) emoji: Option<String>,
    /// A poll's question.
    #[serde(default)]
    #[schemars(regex(pattern = r"\S"))]
    pub(super) question: Option<String>,
    /// A poll's options (2 to 12, all different).
    #[serde(default)]
    #[schemars(length(min = 2, max = 12), inner(regex(pattern = r"\S")))]
    #[schemars(extend("uniqueItems" = true))]
    pub(super) options: Option<Vec<String>>,
    /// How many options a voter may choose (default 1).
    #[serde(default)]
    #[schemars(range(min = 1, max = 12))]
    pub(super) selectable: Option<u32>,
    /// Any kind but reactions: the id of the message this one answers.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub(super) reply_to: Option<String>,
    /// Phone numbers or JIDs the message mentions.
    #[serde(default)]
    #[schemars(inner(regex(
        pattern = r"^(\+?[0-9]{1,20}|[0-9A-Za-z.:_-]{1,64}@(s\.whatsapp\.net|lid|g\.us))$"
    )))]
    pub(super) mentions: Option<Vec<String>>,
}

pub async fn send(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Path(n): Path<String>,
    Body(req): Body<SendReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    if req.to.trim().is_empty() {
        return Err(bad("to: must not be empty"));
    }
    let to = req.to.clone();
    let (out, extras) = compose(&m, &who, n, req).await?;
    let sent = m.send_message(n, &to, out, extras).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"id": sent.id, "to": sent.to})),
    )
        .into_response())
}

/// The message a send request describes (the Cloud API's route builds the
/// same request from its own body). Files are staged and uploaded here.
pub(super) async fn compose(
    m: &Manager,
    who: &Principal,
    n: &str,
    req: SendReq,
) -> Result<(Outgoing, Extras), ApiError> {
    let kind = req.kind.as_deref().map(str::trim).unwrap_or("text");
    let reply_to = match &req.reply_to {
        Some(id) => Some(remembered(m, n, id, "reply_to").await?),
        None => None,
    };
    let extras = Extras {
        reply_to,
        mentions: mentions(req.mentions.as_deref().unwrap_or_default())?,
    };
    let out = match kind {
        "text" => {
            let Some(text) = req.text else {
                return Err(bad("text: required for a text message"));
            };
            Outgoing::Text(text)
        }
        "location" => location(&req)?,
        "contacts" => Outgoing::Contacts(contacts(req.contacts.unwrap_or_default())?),
        "reaction" => {
            let id = req
                .message_id
                .as_deref()
                .ok_or_else(|| bad("message_id: required for a reaction"))?;
            let emoji = req
                .emoji
                .ok_or_else(|| bad("emoji: required for a reaction (empty removes it)"))?;
            if emoji.chars().count() > 16 {
                return Err(bad("emoji: expected one emoji"));
            }
            Outgoing::Reaction {
                target: remembered(m, n, id, "message_id").await?,
                emoji,
            }
        }
        "poll" => poll(req.question, req.options, req.selectable)?,
        k if crate::whatsapp::media_type(k).is_some() => {
            let send = media::MediaSend {
                kind: k.to_string(),
                media_id: req.media_id,
                url: req.url,
                base64: req.base64,
                caption: req.caption,
                file_name: req.file_name,
                mimetype: req.mimetype,
            };
            media::prepare(m, who, n, send).await?
        }
        other => {
            return Err(bad(format!(
                "type: expected one of {KINDS}, {}, got {other:?}",
                media::KINDS
            )));
        }
    };
    Ok((out, extras))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct EditReq {
    /// The new text.
    #[schemars(regex(pattern = r"\S"))]
    text: String,
}

/// Replaces the text of a message this session sent.
pub async fn edit(
    State(m): Shared,
    Path((n, id)): Path<(String, String)>,
    Body(req): Body<EditReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    if req.text.trim().is_empty() {
        return Err(bad("text: must not be empty"));
    }
    let rec = own(&m, n, &id, "edited").await?;
    m.edit(n, &rec.chat, &rec.id, &req.text).await?;
    Ok(axum::Json(json!({"id": rec.id, "status": "edited"})).into_response())
}

/// Deletes a message this session sent, for everyone.
pub async fn revoke(
    State(m): Shared,
    Path((n, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let rec = own(&m, n, &id, "deleted").await?;
    m.revoke(n, &rec.chat, &rec.id).await?;
    Ok(axum::Json(json!({"id": rec.id, "status": "revoked"})).into_response())
}

/// Message ids as WhatsApp makes them (hex, sometimes other letters).
pub fn check_id(id: &str, field: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(bad(format!("{field}: {id:?} is not a message id")))
    }
}

pub(super) async fn remembered(
    m: &Manager,
    session: &str,
    id: &str,
    field: &str,
) -> Result<MessageRecord, ApiError> {
    check_id(id, field)?;
    m.view(session)?;
    m.remembered(session, id).await.map_err(|e| match e {
        SessionError::UnknownMessage(_) => ApiError(
            StatusCode::NOT_FOUND,
            format!("{field}: no message {id} in this session (messages are remembered 30 days)"),
        ),
        e => e.into(),
    })
}

/// A message this session sent: only those can be edited or deleted.
async fn own(m: &Manager, session: &str, id: &str, what: &str) -> Result<MessageRecord, ApiError> {
    let rec = remembered(m, session, id, "message_id").await?;
    if !rec.from_me {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "message_id: message {id} was not sent by this session; only its own messages can be {what}"
            ),
        ));
    }
    Ok(rec)
}

fn location(req: &SendReq) -> Result<Outgoing, ApiError> {
    let latitude = req
        .latitude
        .ok_or_else(|| bad("latitude: required for a location"))?;
    let longitude = req
        .longitude
        .ok_or_else(|| bad("longitude: required for a location"))?;
    if !(-90.0..=90.0).contains(&latitude) {
        return Err(bad(format!("latitude: {latitude} is outside -90..90")));
    }
    if !(-180.0..=180.0).contains(&longitude) {
        return Err(bad(format!("longitude: {longitude} is outside -180..180")));
    }
    Ok(Outgoing::Location {
        latitude,
        longitude,
        name: req.name.clone(),
        address: req.address.clone(),
    })
}

pub(super) fn contacts(cards: Vec<ContactCard>) -> Result<Vec<ContactCard>, ApiError> {
    if cards.is_empty() {
        return Err(bad("contacts: at least one card is required"));
    }
    for (i, c) in cards.iter().enumerate() {
        if c.name.trim().is_empty() {
            return Err(bad(format!("contacts[{i}].name: must not be empty")));
        }
        if c.phones.is_empty() {
            return Err(bad(format!("contacts[{i}].phones: at least one number")));
        }
        for p in &c.phones {
            if phone_digits(p).is_none() {
                return Err(bad(format!(
                    "contacts[{i}].phones: {p:?} is not a phone number"
                )));
            }
        }
    }
    Ok(cards)
}

fn poll(
    question: Option<String>,
    options: Option<Vec<String>>,
    selectable: Option<u32>,
) -> Result<Outgoing, ApiError> {
    let question = question
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| bad("question: required for a poll"))?;
    let options = options.unwrap_or_default();
    if options.len() < 2 || options.len() > MAX_POLL_OPTIONS {
        return Err(bad(format!(
            "options: a poll has 2 to {MAX_POLL_OPTIONS} options, got {}",
            options.len()
        )));
    }
    for (i, o) in options.iter().enumerate() {
        if o.trim().is_empty() {
            return Err(bad(format!("options[{i}]: must not be empty")));
        }
        if options[..i].contains(o) {
            return Err(bad(format!("options[{i}]: {o:?} appears twice")));
        }
    }
    let selectable = selectable.unwrap_or(1);
    if selectable == 0 || selectable as usize > options.len() {
        return Err(bad(format!(
            "selectable: expected 1 to {}, got {selectable}",
            options.len()
        )));
    }
    Ok(Outgoing::Poll {
        question,
        options,
        selectable,
    })
}

/// The digits of a phone number written with `+`, spaces, dashes or
/// brackets; None unless 5 to 20 digits.
pub fn phone_digits(p: &str) -> Option<String> {
    if !p
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'))
    {
        return None;
    }
    let digits: String = p.chars().filter(char::is_ascii_digit).collect();
    (5..=20).contains(&digits.len()).then_some(digits)
}

/// Mentions as JIDs: a phone number becomes its user JID.
fn mentions(list: &[String]) -> Result<Vec<String>, ApiError> {
    people(list, "mentions")
}

/// People given as phone numbers or JIDs, as JIDs; a bad one is a 400
/// naming `field[i]`.
pub(super) fn people(list: &[String], field: &str) -> Result<Vec<String>, ApiError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| match phone_digits(v) {
            Some(d) => Ok(format!("{d}@s.whatsapp.net")),
            None => crate::whatsapp::parse_recipient(v)
                .map(|j| j.to_string())
                .map_err(|_| bad(format!("{field}[{i}]: {v:?} is not a phone number or JID"))),
        })
        .collect()
}
