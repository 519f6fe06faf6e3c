//! The WhatsApp Cloud API drop-in: the Graph API's routes for sending
//! (`POST /{version}/{phone_number_id}/messages`), media
//! (`POST /{version}/{phone_number_id}/media`, `GET|DELETE /{version}/{media_id}`)
//! and the phone number (`GET /{version}/{phone_number_id}`), where the
//! phone number id is the session's name and any `v<major>.<minor>` is a
//! version. A product written for the Cloud API changes its base URL and
//! its token, and nothing else.
//!
//! Every error on these routes, the gate's included (401, 403, 429, 413),
//! is in the Graph API's shape with the codes Cloud API clients act on
//! (see [`wrap`]).

mod errors;
mod media;
mod send;

pub use errors::{GraphError, wrap};
pub use media::{media_delete, upload};
pub use send::{CloudSend, messages};

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, Shared};
use crate::auth::Principal;
use crate::session::{Manager, Status};

/// Whether a path segment is a Graph API version: `v<major>.<minor>`.
pub fn is_version(seg: &str) -> bool {
    seg.strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.len() <= 4
                && b.len() <= 4
                && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        })
}

/// The version and session of a Cloud route, checked: an unknown version
/// shape is an unknown path; an unknown session is the Graph API's
/// "object does not exist".
fn session<'a>(m: &Manager, version: &str, pnid: &'a str) -> Result<&'a str, GraphError> {
    if !is_version(version) {
        return Err(GraphError::unknown_path(version));
    }
    let n = super::name(pnid).map_err(|_| GraphError::no_object(pnid))?;
    m.view(n).map_err(|_| GraphError::no_object(pnid))?;
    Ok(n)
}

#[derive(serde::Deserialize)]
pub struct ObjectQuery {
    /// Graph's field selection: a comma-separated list.
    fields: Option<String>,
    /// A media request may name the phone number the media must belong to.
    phone_number_id: Option<String>,
}

/// `GET /{version}/{object_id}`: a media object (by media id) or a phone
/// number (by session name).
pub async fn object(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Path((version, id)): Path<(String, String)>,
    Query(q): Query<ObjectQuery>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    if !is_version(&version) {
        return Err(GraphError::unknown_path(&version));
    }
    if crate::media::valid_id(&id) {
        return media::show(&m, &who, &id, q.phone_number_id.as_deref(), &headers).await;
    }
    let n = session(&m, &version, &id)?;
    super::access::allow(&who, n).map_err(GraphError::from)?;
    let v = m.view(n).map_err(ApiError::from)?;
    let number = v
        .jid
        .as_deref()
        .map(|j| crate::webhook::number_of(j).to_string());
    let mut out = json!({
        "id": n,
        "verified_name": v.push_name.clone().unwrap_or_default(),
        "display_phone_number": number.clone().unwrap_or_default(),
        // WhatsApp Web reports no quality rating or tier.
        "quality_rating": "UNKNOWN",
        "code_verification_status": if number.is_some() { "VERIFIED" } else { "NOT_VERIFIED" },
        "platform_type": "NOT_APPLICABLE",
        "throughput": {"level": "STANDARD"},
        "account_mode": "LIVE",
        "status": if v.status == Status::Working { "CONNECTED" } else { "DISCONNECTED" },
        "messaging_limit_tier": "TIER_UNLIMITED",
    });
    if let Some(url) = &v.webhook.url {
        out["webhook_configuration"] = json!({ "application": url });
    }
    if let Some(fields) = q.fields.as_deref().filter(|f| !f.trim().is_empty()) {
        let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
        if let Value::Object(o) = &mut out {
            o.retain(|k, _| k == "id" || wanted.contains(&k.as_str()));
        }
    }
    Ok(axum::Json(out).into_response())
}

/// `DELETE /{version}/{object_id}`: media only.
pub async fn delete(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Path((version, id)): Path<(String, String)>,
    Query(q): Query<ObjectQuery>,
) -> Result<Response, GraphError> {
    if !is_version(&version) {
        return Err(GraphError::unknown_path(&version));
    }
    media_delete(&m, &who, &id, q.phone_number_id.as_deref()).await
}

/// `{"success": true}`, as the Graph API answers actions.
fn success() -> Response {
    (StatusCode::OK, axum::Json(json!({"success": true}))).into_response()
}
