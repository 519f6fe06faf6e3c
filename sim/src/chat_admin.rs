//! The admin routes of chat actions and lookups (see [`crate::chat`] and
//! [`crate::lookups`]): what devices sent to contacts, what contacts do
//! towards accounts, and how lookups answer for a number.
//!
//! Bodies are read field by field so that every 400 starts with the field
//! at fault; unknown fields are refused.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::admin::{AdminError, Body, Shared, bad, not_found, phone};
use crate::chat::{self, ChatState, Presence};
use crate::lookups::ProfileUpdate;
use crate::routing::SendError;
use crate::world::World;

pub fn router() -> Router<Arc<World>> {
    Router::new()
        .route("/admin/contacts/{phone}/receipts", get(receipts))
        .route("/admin/contacts/{phone}/chatstates", get(chatstates))
        .route("/admin/contacts/{phone}/calls", get(calls))
        .route("/admin/accounts/{phone}/presence", get(account_presence))
        .route(
            "/admin/contacts/{phone}/profile",
            post(set_profile).get(get_profile),
        )
        .route("/admin/contacts/{phone}/chatstate", post(contact_chatstate))
        .route("/admin/contacts/{phone}/presence", post(contact_presence))
        .route("/admin/contacts/{phone}/call", post(contact_call))
        .route(
            "/admin/contacts/{phone}/change-number",
            post(contact_change_number),
        )
}

/// A JSON object body, read one field at a time.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: Value, allowed: &[&str]) -> Result<Self, AdminError> {
        let Value::Object(map) = body else {
            return Err(bad("body: expected a JSON object"));
        };
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(format!(
                "{k}: unknown field (expected {})",
                allowed.join(", ")
            )));
        }
        Ok(Self(map))
    }

    fn string(&self, key: &str) -> Result<Option<&str>, AdminError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(bad(format!("{key}: expected a string, got {other}"))),
        }
    }

    fn required(&self, key: &str) -> Result<&str, AdminError> {
        self.string(key)?
            .ok_or_else(|| bad(format!("{key}: required")))
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, AdminError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(bad(format!("{key}: expected true or false, got {other}"))),
        }
    }

    fn unix_secs(&self, key: &str) -> Result<Option<u64>, AdminError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                bad(format!(
                    "{key}: expected a unix time in seconds (an integer >= 0), got {v}"
                ))
            }),
        }
    }

    /// The account a contact acts towards (`to`).
    fn to(&self) -> Result<String, AdminError> {
        phone(self.required("to")?, "to")
    }
}

fn send_error(e: SendError) -> AdminError {
    match e {
        SendError::NoAccount(a) => not_found(format!("to: {a} is not an account")),
        SendError::NoGroup(g) => not_found(format!("to: no group {g}")),
        SendError::Refused(m) => AdminError(StatusCode::FORBIDDEN, format!("to: {m}")),
        SendError::Sim(e) => AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn json(v: Value) -> Response {
    axum::Json(v).into_response()
}

async fn receipts(State(w): Shared, Path(p): Path<String>) -> Result<Response, AdminError> {
    let p = phone(&p, "phone")?;
    Ok(json(json!({ "receipts": w.chat.receipts(&p) })))
}

async fn chatstates(State(w): Shared, Path(p): Path<String>) -> Result<Response, AdminError> {
    let p = phone(&p, "phone")?;
    Ok(json(json!({ "chatstates": w.chat.chatstates(&p) })))
}

async fn calls(State(w): Shared, Path(p): Path<String>) -> Result<Response, AdminError> {
    let p = phone(&p, "phone")?;
    Ok(json(json!({ "calls": w.chat.calls(&p) })))
}

async fn account_presence(State(w): Shared, Path(p): Path<String>) -> Result<Response, AdminError> {
    let p = phone(&p, "phone")?;
    Ok(json(json!(w.chat.presence(&p))))
}

/// A number's profile, its phone and its LID JID (`null` when it is not on
/// WhatsApp).
fn profile_json(w: &World, p: &str) -> Response {
    let mut v = json!(w.profiles.get(p));
    v["phone"] = json!(p);
    v["lid"] = json!(crate::lids::revealed(w, p));
    json(v)
}

async fn get_profile(State(w): Shared, Path(p): Path<String>) -> Result<Response, AdminError> {
    let p = phone(&p, "phone")?;
    Ok(profile_json(&w, &p))
}

const PROFILE_FIELDS: [&str; 5] = [
    "on_whatsapp",
    "status",
    "picture",
    "lid_mode",
    "refuse_with",
];

async fn set_profile(
    State(w): Shared,
    Path(p): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, AdminError> {
    let p = phone(&p, "phone")?;
    let f = Fields::parse(body, &PROFILE_FIELDS)?;
    let update = ProfileUpdate {
        on_whatsapp: f.boolean("on_whatsapp")?,
        status: match f.0.get("status") {
            None => None,
            Some(_) => Some(f.string("status")?.map(str::to_string)),
        },
        picture: f.boolean("picture")?,
        lid_mode: f.boolean("lid_mode")?,
        refuse_with: match f.0.get("refuse_with") {
            None => None,
            Some(_) => Some(f.string("refuse_with")?.map(str::to_string)),
        },
    };
    if update.on_whatsapp.is_none()
        && update.status.is_none()
        && update.picture.is_none()
        && update.lid_mode.is_none()
        && update.refuse_with.is_none()
    {
        return Err(bad(format!(
            "body: expected at least one of {}",
            PROFILE_FIELDS.join(", ")
        )));
    }
    w.profiles.update(&p, update);
    Ok(profile_json(&w, &p))
}

async fn contact_chatstate(
    State(w): Shared,
    Path(p): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, AdminError> {
    let from = phone(&p, "phone")?;
    let f = Fields::parse(body, &["to", "state"])?;
    let to = f.to()?;
    let state = f.required("state")?;
    let state = ChatState::parse(state).ok_or_else(|| {
        bad(format!(
            "state: expected composing, recording or paused, got {state:?}"
        ))
    })?;
    chat::contact_chatstate(&w, &from, &to, state).map_err(send_error)?;
    Ok(crate::admin::ok())
}

async fn contact_presence(
    State(w): Shared,
    Path(p): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, AdminError> {
    let from = phone(&p, "phone")?;
    let f = Fields::parse(body, &["to", "state", "last_seen"])?;
    let to = f.to()?;
    let state = f.required("state")?;
    let state = Presence::parse(state).ok_or_else(|| {
        bad(format!(
            "state: expected available or unavailable, got {state:?}"
        ))
    })?;
    let last_seen = f.unix_secs("last_seen")?;
    if last_seen.is_some() && state == Presence::Available {
        return Err(bad("last_seen: only goes with state unavailable"));
    }
    chat::contact_presence(&w, &from, &to, state, last_seen).map_err(send_error)?;
    Ok(crate::admin::ok())
}

async fn contact_call(
    State(w): Shared,
    Path(p): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, AdminError> {
    let from = phone(&p, "phone")?;
    let f = Fields::parse(body, &["to", "video"])?;
    let to = f.to()?;
    let video = f.boolean("video")?.unwrap_or(false);
    let call_id = chat::contact_call(&w, &from, &to, video).map_err(send_error)?;
    Ok(json(json!({ "call_id": call_id })))
}

async fn contact_change_number(
    State(w): Shared,
    Path(p): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, AdminError> {
    let from = phone(&p, "phone")?;
    let f = Fields::parse(body, &["to", "new_phone"])?;
    let to = f.to()?;
    let new_phone = phone(f.required("new_phone")?, "new_phone")?;
    if new_phone == from {
        return Err(bad(format!("new_phone: {from} is already the number")));
    }
    chat::contact_change_number(&w, &from, &to, &new_phone).map_err(send_error)?;
    Ok(crate::admin::ok())
}
