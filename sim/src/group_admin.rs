//! The admin routes of groups (see [`crate::groups`]): create a group owned
//! by any number (a contact or an account), list and inspect groups, act as
//! a member (participants, leave, join, subject, description, settings),
//! and withhold a contact's sender key from a device (the retry fault).
//!
//! Numbers act as WhatsApp lets them: a refusal is answered with the HTTP
//! status closest to WhatsApp's code (401 and 403 -> 403, 404, 409, 410)
//! and `{"error": "FIELD: CODE TEXT (...)", "code": CODE}`. Contacts send
//! to a group with `POST /admin/contacts/{phone}/messages`, `to` being the
//! group's JID.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{AdminError, Body, Shared, bad, not_found, phone};
use crate::groups::{self, Addressing, Change, Group, NewGroup, Refusal, Setting};
use crate::routing::DeviceAddr;
use crate::world::World;

pub fn router() -> Router<Arc<World>> {
    Router::new()
        .route("/admin/groups", post(create).get(list))
        .route("/admin/groups/{id}", get(show))
        .route("/admin/groups/{id}/participants", post(participants))
        .route("/admin/groups/{id}/leave", post(leave))
        .route("/admin/groups/{id}/join", post(join))
        .route("/admin/groups/{id}/settings", post(settings))
        .route("/admin/groups/{id}/withhold-key", post(withhold_key))
}

/// A refusal as an admin error that keeps WhatsApp's code.
struct Refused(&'static str, Refusal);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let Refused(field, r) = self;
        let status = match r.code {
            400 => StatusCode::BAD_REQUEST,
            401 | 403 => StatusCode::FORBIDDEN,
            404 => StatusCode::NOT_FOUND,
            410 => StatusCode::GONE,
            _ => StatusCode::CONFLICT,
        };
        let what = match r.code {
            400 => "WhatsApp refuses it",
            401 => "only admins may",
            403 => "not a member",
            404 => "no such group",
            409 => "it changed since",
            410 => "the invite code was reset",
            304 => "already a member",
            _ => "refused",
        };
        let error = format!("{field}: {} {} ({what})", r.code, r.text);
        (
            status,
            axum::Json(json!({ "error": error, "code": r.code })),
        )
            .into_response()
    }
}

fn refused(field: &'static str) -> impl Fn(Refusal) -> Response {
    move |r| Refused(field, r).into_response()
}

fn group(w: &World, id: &str) -> Result<Group, AdminError> {
    if groups::parse_id(id).is_none() {
        return Err(bad(format!(
            "id: expected a group id (digits, or digits-digits, with or without @g.us), got {id:?}"
        )));
    }
    w.groups
        .get(id)
        .ok_or_else(|| not_found(format!("id: no group {id}")))
}

/// The group as JSON, with how many retry receipts its simulated members
/// answered.
fn group_json(w: &World, g: &Group) -> Value {
    let mut v = json!(crate::group_wire::view(w, g));
    v["sender_key_resends"] = json!(w.groups.ledger.resends(&g.id));
    v
}

fn phones(list: &[String], field: &str) -> Result<Vec<String>, AdminError> {
    list.iter().map(|p| phone(p, field)).collect()
}

/// One outcome per number: its JID, and WhatsApp's `error` code if refused.
fn outcomes(list: Vec<groups::Outcome>) -> Value {
    let list: Vec<Value> = list
        .into_iter()
        .map(|(p, e)| {
            let mut v = json!({ "phone": p, "jid": format!("{p}@s.whatsapp.net") });
            if let Some(e) = e {
                v["error"] = json!(e);
            }
            v
        })
        .collect();
    json!(list)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    creator: String,
    subject: String,
    #[serde(default)]
    participants: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    /// `pn` (default) or `lid`.
    #[serde(default)]
    addressing_mode: Option<String>,
    /// An old-style id (`CREATOR-TIME`) instead of an all-digit one.
    #[serde(default)]
    legacy_id: bool,
}

async fn create(State(w): Shared, Body(req): Body<CreateReq>) -> Result<Response, Response> {
    let err = |e: AdminError| e.into_response();
    let creator = phone(&req.creator, "creator").map_err(err)?;
    let participants = phones(&req.participants, "participants").map_err(err)?;
    let addressing = match req.addressing_mode.as_deref() {
        None => Addressing::Pn,
        Some(m) => Addressing::parse(m).ok_or_else(|| {
            err(bad(format!(
                "addressing_mode: expected pn or lid, got {m:?}"
            )))
        })?,
    };
    let new = NewGroup {
        subject: req.subject,
        participants,
        description: req.description,
        addressing,
        legacy_id: req.legacy_id,
    };
    let (g, results) = groups::create(&w, &creator, new).map_err(refused("subject"))?;
    Ok(
        axum::Json(json!({ "group": group_json(&w, &g), "results": outcomes(results) }))
            .into_response(),
    )
}

async fn list(State(w): Shared) -> axum::Json<Value> {
    let all: Vec<Value> = w.groups.all().iter().map(|g| group_json(&w, g)).collect();
    axum::Json(json!({ "groups": all }))
}

async fn show(State(w): Shared, Path(id): Path<String>) -> Result<Response, AdminError> {
    let g = group(&w, &id)?;
    Ok(axum::Json(group_json(&w, &g)).into_response())
}

/// Who acts: `actor`, or the group's creator.
fn actor(g: &Group, actor: Option<&str>) -> Result<String, AdminError> {
    match actor {
        Some(a) => phone(a, "actor"),
        None => Ok(g.creator.clone()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantsReq {
    #[serde(default)]
    actor: Option<String>,
    action: String,
    participants: Vec<String>,
}

async fn participants(
    State(w): Shared,
    Path(id): Path<String>,
    Body(req): Body<ParticipantsReq>,
) -> Result<Response, Response> {
    let err = |e: AdminError| e.into_response();
    let g = group(&w, &id).map_err(err)?;
    let actor = actor(&g, req.actor.as_deref()).map_err(err)?;
    let change = Change::parse(&req.action).ok_or_else(|| {
        err(bad(format!(
            "action: expected add, remove, promote or demote, got {:?}",
            req.action
        )))
    })?;
    if req.participants.is_empty() {
        return Err(err(bad("participants: at least one number is needed")));
    }
    let list = phones(&req.participants, "participants").map_err(err)?;
    let results = groups::change(&w, &g.id, &actor, change, &list).map_err(refused("actor"))?;
    Ok(axum::Json(json!({ "results": outcomes(results) })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneReq {
    phone: String,
    /// An invite code (joins); the group's current one by default.
    #[serde(default)]
    code: Option<String>,
}

async fn leave(
    State(w): Shared,
    Path(id): Path<String>,
    Body(req): Body<PhoneReq>,
) -> Result<Response, Response> {
    let err = |e: AdminError| e.into_response();
    let g = group(&w, &id).map_err(err)?;
    if req.code.is_some() {
        return Err(err(bad("code: only for joining")));
    }
    let p = phone(&req.phone, "phone").map_err(err)?;
    groups::leave(&w, &g.id, &p).map_err(refused("phone"))?;
    Ok(crate::admin::ok())
}

async fn join(
    State(w): Shared,
    Path(id): Path<String>,
    Body(req): Body<PhoneReq>,
) -> Result<Response, Response> {
    let err = |e: AdminError| e.into_response();
    let g = group(&w, &id).map_err(err)?;
    let p = phone(&req.phone, "phone").map_err(err)?;
    let code = req.code.unwrap_or_else(|| g.invite_code.clone());
    // A code of another group does not join this one.
    if groups::by_code(&w, &code).is_ok_and(|other| other.id != g.id) {
        return Err(err(bad(format!("code: {code:?} is not an invite to {id}"))));
    }
    let g = groups::join(&w, &code, &p).map_err(refused("code"))?;
    Ok(axum::Json(group_json(&w, &g)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsReq {
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    /// A string sets it; `null` deletes it.
    #[serde(default, deserialize_with = "some_or_null")]
    description: Option<Option<String>>,
    #[serde(default)]
    announce: Option<bool>,
    #[serde(default)]
    locked: Option<bool>,
    /// Disappearing messages timer in seconds (0: off).
    #[serde(default)]
    ephemeral: Option<u32>,
}

/// A present field, `null` included (`Some(None)`); absent is `None`.
fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn settings(
    State(w): Shared,
    Path(id): Path<String>,
    Body(req): Body<SettingsReq>,
) -> Result<Response, Response> {
    let err = |e: AdminError| e.into_response();
    let g = group(&w, &id).map_err(err)?;
    let actor = actor(&g, req.actor.as_deref()).map_err(err)?;
    let mut settings = Vec::new();
    settings.extend(req.announce.map(Setting::Announce));
    settings.extend(req.locked.map(Setting::Locked));
    settings.extend(req.ephemeral.map(Setting::Ephemeral));
    if req.subject.is_none() && req.description.is_none() && settings.is_empty() {
        return Err(err(bad(
            "body: expected at least one of subject, description, announce, locked, ephemeral",
        )));
    }
    if let Some(subject) = &req.subject {
        groups::set_subject(&w, &g.id, &actor, subject).map_err(refused("subject"))?;
    }
    if let Some(body) = &req.description {
        let prev = w
            .groups
            .get(&g.id)
            .and_then(|g| g.description.map(|d| d.id));
        groups::set_description(
            &w,
            &g.id,
            &actor,
            body.as_deref(),
            &groups::description_id(),
            prev.as_deref(),
        )
        .map_err(refused("description"))?;
    }
    for s in settings {
        groups::set(&w, &g.id, &actor, s).map_err(refused("actor"))?;
    }
    let g = group(&w, &g.id).map_err(err)?;
    Ok(axum::Json(group_json(&w, &g)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithholdReq {
    /// The contact whose next message to the group goes without its key.
    from: String,
    /// The device that does not get it (`PHONE:DEVICE@s.whatsapp.net`).
    device: String,
}

async fn withhold_key(
    State(w): Shared,
    Path(id): Path<String>,
    Body(req): Body<WithholdReq>,
) -> Result<Response, AdminError> {
    let g = group(&w, &id)?;
    let from = phone(&req.from, "from")?;
    if g.role(&from).is_none() {
        return Err(bad(format!("from: {from} is not in {}", g.jid())));
    }
    if w.companions(&from).is_some() {
        return Err(bad(format!(
            "from: {from} is an account; its linked devices keep their own keys"
        )));
    }
    let device = DeviceAddr::parse(&req.device)
        .ok_or_else(|| bad(format!("device: not a device JID: {:?}", req.device)))?;
    w.groups.ledger.withhold(&g.id, &from, device);
    Ok(crate::admin::ok())
}
