//! The Cloud API's media routes over the bridge's media store: upload,
//! the media object (its `url` downloads the file with the same bearer
//! token), and delete.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::super::Shared;
use super::super::media::{receive, visible};
use super::{GraphError, session, success};
use crate::auth::Principal;
use crate::session::Manager;

/// `POST /{version}/{phone_number_id}/media`: multipart `file`, with
/// `messaging_product` and `type` (the MIME type) -> `{"id"}`.
pub async fn upload(
    State(m): Shared,
    axum::extract::Extension(who): axum::extract::Extension<Principal>,
    Path((version, pnid)): Path<(String, String)>,
    req: Request,
) -> Result<Response, GraphError> {
    let n = session(&m, &version, &pnid)?.to_string();
    super::super::access::allow(&who, &n)?;
    let (rec, fields) = receive(&m, n, req, &["messaging_product", "type"])
        .await
        .map_err(|e| {
            let e = GraphError::from(e);
            if e.status.is_client_error() && e.code == 100 {
                GraphError {
                    code: 131053,
                    title: "Media upload error",
                    ..e
                }
            } else {
                e
            }
        })?;
    match fields.get("messaging_product").map(String::as_str) {
        Some("whatsapp") => {}
        other => {
            // The file is stored already: take it back rather than keep an
            // upload the caller was told failed.
            let _ = m.media().store.delete(&rec.id).await;
            return Err(GraphError::param(format!(
                "messaging_product: The parameter messaging_product is required (\"whatsapp\"), got {other:?}"
            )));
        }
    }
    Ok(axum::Json(json!({ "id": rec.id })).into_response())
}

/// Checks a media id's owner against `?phone_number_id=`, as the Graph API
/// does when it is given.
fn owned_by(rec_session: &str, id: &str, pnid: Option<&str>) -> Result<(), GraphError> {
    match pnid {
        Some(p) if p != rec_session => Err(GraphError::no_object(id)),
        _ => Ok(()),
    }
}

/// `GET /{version}/{media_id}`.
pub(super) async fn show(
    m: &Manager,
    who: &Principal,
    id: &str,
    pnid: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, GraphError> {
    let rec = visible(m.media(), who, id)
        .await
        .map_err(|e| not_found_as_object(e, id))?;
    owned_by(&rec.session, id, pnid)?;
    let url = absolute(m, headers, &m.media().url_of(&rec.id));
    Ok(axum::Json(json!({
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": rec.mimetype,
        "sha256": rec.sha256,
        "file_size": rec.size,
        "id": rec.id,
    }))
    .into_response())
}

/// `DELETE /{version}/{media_id}`.
pub async fn media_delete(
    m: &Manager,
    who: &Principal,
    id: &str,
    pnid: Option<&str>,
) -> Result<Response, GraphError> {
    if !crate::media::valid_id(id) {
        return Err(GraphError::no_object(id));
    }
    let rec = visible(m.media(), who, id)
        .await
        .map_err(|e| not_found_as_object(e, id))?;
    owned_by(&rec.session, id, pnid)?;
    m.media()
        .store
        .delete(&rec.id)
        .await
        .map_err(super::super::ApiError::from)?;
    Ok(success())
}

fn not_found_as_object(e: super::super::ApiError, id: &str) -> GraphError {
    if e.0 == axum::http::StatusCode::NOT_FOUND {
        GraphError::no_object(id)
    } else {
        e.into()
    }
}

/// The media URL as the caller can fetch it: `WAPI_PUBLIC_URL` makes it
/// absolute already; otherwise the address the caller reached the bridge
/// at.
fn absolute(m: &Manager, headers: &HeaderMap, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        return url.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if m.config().tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}{url}")
}
