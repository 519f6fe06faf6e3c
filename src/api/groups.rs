//! Groups: the groups a session is in, creating one, its participants,
//! settings and invite link, leaving and joining. A group is named by its
//! JID (`120363...@g.us`) or the part before `@g.us`. What WhatsApp refuses
//! comes back with its code (403 for "not an admin" or "not a member",
//! 404, 409, 410).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::messages::people;
use super::{ApiError, Body, Shared, bad, name, present};
use crate::whatsapp::{GroupChange, GroupOp, Membership, group_jid};

/// WhatsApp's limits (whatsapp-rust checks them too).
const MAX_SUBJECT: usize = 100;
const MAX_DESCRIPTION: usize = 2048;
/// A group holds at most this many members besides its creator.
const MAX_PARTICIPANTS: usize = 1023;

fn group(g: &str) -> Result<String, ApiError> {
    group_jid(g).ok_or_else(|| {
        bad(format!(
            "group: {g:?} is not a group id (digits, or digits-digits, optionally with @g.us)"
        ))
    })
}

fn subject(s: &str) -> Result<String, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(bad("subject: must not be empty"));
    }
    if s.chars().count() > MAX_SUBJECT {
        return Err(bad(format!("subject: at most {MAX_SUBJECT} characters")));
    }
    Ok(s.to_string())
}

async fn run(m: &crate::session::Manager, n: &str, op: GroupOp) -> Result<Response, ApiError> {
    let v = m.group(n, op).await?;
    Ok(axum::Json(v).into_response())
}

pub async fn list(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    run(&m, name(&n)?, GroupOp::List).await
}

pub async fn show(
    State(m): Shared,
    Path((n, g)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let group = group(&g)?;
    run(&m, name(&n)?, GroupOp::Info { group }).await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CreateReq {
    /// The group's name (1 to 100 characters).
    #[schemars(length(min = 1, max = 100), regex(pattern = r"\S"))]
    subject: String,
    /// Phone numbers or JIDs of the members (besides the session).
    #[schemars(
        length(min = 1, max = 1023),
        inner(regex(
            pattern = r"^(\+?[0-9]{1,20}|[0-9A-Za-z.:_-]{1,64}@(s\.whatsapp\.net|lid))$"
        ))
    )]
    participants: Vec<String>,
}

pub async fn create(
    State(m): Shared,
    Path(n): Path<String>,
    Body(req): Body<CreateReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let subject = subject(&req.subject)?;
    if req.participants.is_empty() || req.participants.len() > MAX_PARTICIPANTS {
        return Err(bad(format!(
            "participants: 1 to {MAX_PARTICIPANTS} phone numbers or JIDs"
        )));
    }
    let participants = people(&req.participants, "participants")?;
    let v = m
        .group(
            n,
            GroupOp::Create {
                subject,
                participants,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct ParticipantsReq {
    #[serde(default)]
    #[schemars(length(min = 1))]
    add: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(length(min = 1))]
    remove: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(length(min = 1))]
    promote: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(length(min = 1))]
    demote: Option<Vec<String>>,
}

/// Adds, removes, promotes or demotes (one action a request); answers a
/// result per participant, as WhatsApp gives them.
pub async fn participants(
    State(m): Shared,
    Path((n, g)): Path<(String, String)>,
    Body(req): Body<ParticipantsReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let group = group(&g)?;
    let given: Vec<(Membership, Vec<String>, &str)> = [
        (Membership::Add, req.add, "add"),
        (Membership::Remove, req.remove, "remove"),
        (Membership::Promote, req.promote, "promote"),
        (Membership::Demote, req.demote, "demote"),
    ]
    .into_iter()
    .filter_map(|(a, list, field)| list.map(|l| (a, l, field)))
    .collect();
    let [(action, list, field)] = <[_; 1]>::try_from(given).map_err(|_| {
        bad(format!(
            "{}: give exactly one of them",
            Membership::NAMES.join(", ")
        ))
    })?;
    if list.is_empty() || list.len() > MAX_PARTICIPANTS {
        return Err(bad(format!(
            "{field}: 1 to {MAX_PARTICIPANTS} phone numbers or JIDs"
        )));
    }
    let participants = people(&list, field)?;
    run(
        &m,
        n,
        GroupOp::Participants {
            group,
            action,
            participants,
        },
    )
    .await
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
pub struct PatchReq {
    #[serde(default)]
    #[schemars(length(min = 1, max = 100), regex(pattern = r"\S"))]
    subject: Option<String>,
    /// null deletes the description.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>", length(max = 2048))]
    description: Option<Option<String>>,
    /// Only admins may send messages.
    #[serde(default)]
    announce: Option<bool>,
    /// Only admins may change the group's settings.
    #[serde(default)]
    locked: Option<bool>,
}

pub async fn update(
    State(m): Shared,
    Path((n, g)): Path<(String, String)>,
    Body(req): Body<PatchReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let group = group(&g)?;
    let subject = req.subject.as_deref().map(subject).transpose()?;
    if let Some(Some(d)) = &req.description
        && d.chars().count() > MAX_DESCRIPTION
    {
        return Err(bad(format!(
            "description: at most {MAX_DESCRIPTION} characters"
        )));
    }
    let change = GroupChange {
        subject,
        description: req.description.map(|d| d.filter(|d| !d.trim().is_empty())),
        announce: req.announce,
        locked: req.locked,
    };
    if change.subject.is_none()
        && change.description.is_none()
        && change.announce.is_none()
        && change.locked.is_none()
    {
        return Err(bad(
            "body: give any of subject, description, announce, locked",
        ));
    }
    run(&m, n, GroupOp::Update { group, change }).await
}

pub async fn leave(
    State(m): Shared,
    Path((n, g)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let group = group(&g)?;
    run(&m, name(&n)?, GroupOp::Leave { group }).await
}

pub async fn invite(
    State(m): Shared,
    Path((n, g)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let group = group(&g)?;
    run(
        &m,
        name(&n)?,
        GroupOp::Invite {
            group,
            reset: false,
        },
    )
    .await
}

pub async fn reset_invite(
    State(m): Shared,
    Path((n, g)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let group = group(&g)?;
    run(&m, name(&n)?, GroupOp::Invite { group, reset: true }).await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct JoinReq {
    /// The invite code, or the whole link (https://chat.whatsapp.com/CODE).
    #[schemars(regex(pattern = r"^(https://chat\.whatsapp\.com/)?[A-Za-z0-9_-]{6,64}$"))]
    code: String,
}

pub async fn join(
    State(m): Shared,
    Path(n): Path<String>,
    Body(req): Body<JoinReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let code = req.code.trim();
    let code = code
        .strip_prefix("https://chat.whatsapp.com/")
        .unwrap_or(code);
    if code.len() < 6
        || code.len() > 64
        || !code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad(format!(
            "code: {:?} is not an invite code or link",
            req.code
        )));
    }
    run(
        &m,
        n,
        GroupOp::Join {
            code: code.to_string(),
        },
    )
    .await
}
