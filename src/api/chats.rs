//! Chat actions: read receipts, typing and recording, and the session's own
//! presence.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Body, Shared, bad, name};
use crate::session::SessionError;
use crate::whatsapp::ChatAction;

/// A chat in a path: a phone number or a JID.
pub fn chat(c: &str) -> Result<String, ApiError> {
    crate::whatsapp::parse_recipient(c)
        .map(|j| j.to_string())
        .map_err(|_| bad(format!("chat: {c:?} is not a phone number or JID")))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(extend("oneOf" = [{"required": ["ids"]}, {"required": ["up_to"]}]))]
pub struct ReadReq {
    /// Ids of messages of this chat to mark read (at most 1,000).
    #[serde(default)]
    #[schemars(
        length(min = 1, max = 1000),
        inner(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))
    )]
    ids: Option<Vec<String>>,
    /// Or: every message received in this chat up to and including this
    /// one, since the bridge started, that is not read yet.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    up_to: Option<String>,
}

/// Marks messages read: the sender sees blue ticks.
pub async fn read(
    State(m): Shared,
    Path((n, c)): Path<(String, String)>,
    Body(req): Body<ReadReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let chat = chat(&c)?;
    let ids = match (req.ids, req.up_to) {
        (Some(ids), None) => ids,
        (None, Some(id)) => {
            super::messages::check_id(&id, "up_to")?;
            m.view(n)?;
            let count = m.read_up_to(n, &chat, &id).await.map_err(|e| match e {
                SessionError::UnknownMessage(_) => ApiError(
                    StatusCode::NOT_FOUND,
                    format!("up_to: no unread message {id} in this chat"),
                ),
                e => e.into(),
            })?;
            return Ok(axum::Json(json!({"chat": chat, "read": count})).into_response());
        }
        _ => return Err(bad("ids, up_to: give exactly one of them")),
    };
    if ids.is_empty() || ids.len() > 1000 {
        return Err(bad("ids: 1 to 1,000 message ids"));
    }
    for (i, id) in ids.iter().enumerate() {
        super::messages::check_id(id, &format!("ids[{i}]"))?;
    }
    // In a group, receipts name who wrote each message: the remembered
    // sender of the first one (WhatsApp groups receipts per sender).
    let sender = if chat.ends_with("@g.us") {
        m.remembered(n, &ids[0]).await.ok().map(|r| r.sender)
    } else {
        None
    };
    let count = ids.len();
    m.act(
        n,
        ChatAction::Read {
            chat: chat.clone(),
            sender,
            ids,
        },
    )
    .await?;
    Ok(axum::Json(json!({"chat": chat, "read": count})).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ChatStateReq {
    /// composing, recording or paused.
    #[schemars(extend("enum" = ["composing", "recording", "paused"]))]
    state: String,
}

/// Shows the contact that the session is typing or recording, or stopped.
pub async fn chat_state(
    State(m): Shared,
    Path((n, c)): Path<(String, String)>,
    Body(req): Body<ChatStateReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let chat = chat(&c)?;
    if !matches!(req.state.as_str(), "composing" | "recording" | "paused") {
        return Err(bad(format!(
            "state: expected composing, recording or paused, got {:?}",
            req.state
        )));
    }
    m.act(
        n,
        ChatAction::ChatState {
            chat: chat.clone(),
            state: req.state.clone(),
        },
    )
    .await?;
    Ok(axum::Json(json!({"chat": chat, "state": req.state})).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct PresenceReq {
    /// available or unavailable.
    #[schemars(extend("enum" = ["available", "unavailable"]))]
    state: String,
}

/// The session's own presence: online (available) or not.
pub async fn presence(
    State(m): Shared,
    Path(n): Path<String>,
    Body(req): Body<PresenceReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let available = match req.state.as_str() {
        "available" => true,
        "unavailable" => false,
        other => {
            return Err(bad(format!(
                "state: expected available or unavailable, got {other:?}"
            )));
        }
    };
    m.act(n, ChatAction::Presence { available }).await?;
    Ok(axum::Json(json!({"state": req.state})).into_response())
}
