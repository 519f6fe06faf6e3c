//! Media: `POST /v1/sessions/{name}/media` (upload), `GET /v1/media/{media_id}`
//! (metadata), `GET /v1/media/{media_id}/file` (the bytes, with ranges),
//! `DELETE /v1/media/{media_id}`; and sending a media message, whose file
//! comes from a media id, a URL the bridge fetches, or base64.

use std::path::{Path as FsPath, PathBuf};

use axum::body::Body as HttpBody;
use axum::extract::{Extension, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{ApiError, Shared, bad, name};
use crate::auth::Principal;
use crate::media::fetch::{FetchPolicy, fetch_to_file};
use crate::media::{Media, MediaError, MediaRecord};
use crate::session::{Manager, SessionError, Status};
use crate::whatsapp::{MediaDetails, Outgoing};

/// The media kinds a message can carry.
pub const KINDS: &str = "image, video, audio, voice, document, sticker";

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::NotFound(id) => {
                ApiError(StatusCode::NOT_FOUND, format!("media_id: no media {id}"))
            }
            e => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

fn too_large(field: &str, max: u64) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{field}: the file is larger than the limit of {max} bytes (WAPI_MEDIA_MAX_BYTES)"),
    )
}

/// A staging file removed when dropped, whatever happened to the request.
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A media record the caller may see: its own session's, or any for an
/// admin credential (403 otherwise, as for sessions).
pub(super) async fn visible(
    media: &Media,
    who: &Principal,
    id: &str,
) -> Result<MediaRecord, ApiError> {
    if !crate::media::valid_id(id) {
        return Err(bad(format!(
            "media_id {id:?}: expected an id like med_<32 hex digits>"
        )));
    }
    let rec = media.store.get(id).await?;
    super::access::allow(who, &rec.session)?;
    Ok(rec)
}

pub(super) fn record_json(media: &Media, rec: &MediaRecord) -> serde_json::Value {
    json!({
        "id": rec.id,
        "session": rec.session,
        "mimetype": rec.mimetype,
        "sha256": rec.sha256,
        "size": rec.size,
        "file_name": rec.file_name,
        "message_id": rec.message_id,
        "type": rec.kind,
        "created_at": rec.created_at,
        "url": media.url_of(&rec.id),
    })
}

/// `POST /v1/sessions/{name}/media`: a multipart form with a `file` part,
/// or the file as the raw body with its `Content-Type`.
pub async fn upload(
    State(m): Shared,
    Path(n): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let n = name(&n)?.to_string();
    let (rec, _) = receive(&m, n, req, &[]).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": rec.id,
            "mimetype": rec.mimetype,
            "sha256": rec.sha256,
            "size": rec.size,
        })),
    )
        .into_response())
}

/// Stores an uploaded file for session `n`: a multipart form with a `file`
/// part (and the short text parts named in `texts`, returned by name), or
/// the raw body. Any other part is refused, naming it.
pub(super) async fn receive(
    m: &Manager,
    n: String,
    req: Request,
    texts: &[&str],
) -> Result<(MediaRecord, std::collections::HashMap<String, String>), ApiError> {
    m.view(&n)?;
    let mut fields = std::collections::HashMap::new();
    let media = m.media();
    let max = media.settings.max_bytes;
    let staged = Staged(media.store.staging_path());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (mimetype, file_name) = if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| bad(format!("file: {}", e.body_text())))?;
        // One part named file (and the text parts asked for): anything
        // else is refused, naming it.
        let mut field = loop {
            let field = form
                .next_field()
                .await
                .map_err(|e| bad(format!("file: {}", e.body_text())))?
                .ok_or_else(|| bad("file: a multipart part named file is required"))?;
            if field.name() == Some("file") {
                break field;
            }
            text_part(field, texts, &mut fields).await?;
        };
        let mime = field.content_type().map(str::to_string);
        let fname = field.file_name().map(str::to_string);
        let mut out = tokio::fs::File::create(&staged.0).await.map_err(io)?;
        let mut size = 0u64;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| bad(format!("file: {}", e.body_text())))?
        {
            size += chunk.len() as u64;
            if size > max {
                return Err(too_large("file", max));
            }
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        if size == 0 {
            return Err(bad("file: empty"));
        }
        drop(field);
        loop {
            match form.next_field().await {
                Ok(None) => break,
                Ok(Some(extra)) => text_part(extra, texts, &mut fields).await?,
                Err(e) => return Err(bad(format!("file: {}", e.body_text()))),
            }
        }
        (mime, fname)
    } else {
        let mut body = req.into_body().into_data_stream();
        let mut out = tokio::fs::File::create(&staged.0).await.map_err(io)?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| bad(format!("body: {e}")))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(too_large("body", max));
            }
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        if size == 0 {
            return Err(bad(
                "body: empty; send the file as the body or as a multipart part named file",
            ));
        }
        let mime = (!content_type.is_empty() && content_type != "application/octet-stream")
            .then_some(content_type);
        (mime, None)
    };
    // A Cloud API upload names the MIME type in a `type` part.
    let mimetype = mimetype
        .filter(|m| m != "application/octet-stream")
        .or_else(|| fields.get("type").map(|t| t.trim().to_string()));
    let rec = MediaRecord {
        id: crate::media::new_id(),
        session: n,
        mimetype: mimetype
            .filter(|m| m != "application/octet-stream")
            .unwrap_or_default(),
        sha256: String::new(),
        size: 0,
        file_name,
        message_id: None,
        kind: None,
        created_at: crate::session::now_secs(),
    };
    let rec = media.ingest(&staged.0, rec).await?;
    Ok((rec, fields))
}

/// A multipart part other than the file: one of the `texts` asked for, once
/// (kept in `fields`), or refused naming it.
async fn text_part(
    field: axum::extract::multipart::Field<'_>,
    texts: &[&str],
    fields: &mut std::collections::HashMap<String, String>,
) -> Result<(), ApiError> {
    let part = field.name().unwrap_or_default().to_string();
    if !texts.contains(&part.as_str()) || fields.contains_key(&part) {
        return Err(bad(format!(
            "{part}: unknown part; send the file as a part named file"
        )));
    }
    let value = field
        .text()
        .await
        .map_err(|e| bad(format!("{part}: {}", e.body_text())))?;
    fields.insert(part, value);
    Ok(())
}

fn io(e: std::io::Error) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("media staging: {e}"),
    )
}

pub async fn show(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rec = visible(m.media(), &who, &id).await?;
    Ok(axum::Json(record_json(m.media(), &rec)).into_response())
}

pub async fn remove(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rec = visible(m.media(), &who, &id).await?;
    m.media().store.delete(&rec.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The bytes, with `ETag` (the SHA-256), `If-None-Match` and one `Range`.
pub async fn file(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rec = visible(m.media(), &who, &id).await?;
    let etag = format!("\"{}\"", rec.sha256);
    let header_str = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    if header_str(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range = match header_str(header::RANGE) {
        None => None,
        Some(r) => match parse_range(r, rec.size) {
            Some(r) => Some(r),
            None => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{}", rec.size))],
                )
                    .into_response());
            }
        },
    };
    let stream = m.media().store.read(&rec.id, range.clone()).await?;
    let mut res = Response::new(HttpBody::from_stream(stream));
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(h, header::CONTENT_TYPE, rec.mimetype.clone());
    set(h, header::ETAG, etag);
    set(h, header::ACCEPT_RANGES, "bytes".into());
    match range {
        Some(r) => {
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = res.headers_mut();
            set(h, header::CONTENT_LENGTH, (r.end - r.start).to_string());
            set(
                h,
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end - 1, rec.size),
            );
        }
        None => set(
            res.headers_mut(),
            header::CONTENT_LENGTH,
            rec.size.to_string(),
        ),
    }
    if let Some(f) = rec.file_name.as_deref().filter(|f| f.is_ascii()) {
        let f = f.replace(['"', '\\', '\r', '\n'], "_");
        set(
            res.headers_mut(),
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{f}\""),
        );
    }
    Ok(res)
}

/// One `bytes=` range (`a-b`, `a-` or `-n`) of a file of `size` bytes, as
/// a half-open range; `None` when it cannot be satisfied. Several ranges
/// are answered with the first.
fn parse_range(h: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = h.trim().strip_prefix("bytes=")?.split(',').next()?.trim();
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (a, "") => (a.parse().ok()?, size),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.saturating_add(1).min(size),
        ),
    };
    (start < end && start < size).then_some(start..end)
}

/// What a send request says about a media message.
pub struct MediaSend {
    pub kind: String,
    pub media_id: Option<String>,
    pub url: Option<String>,
    pub base64: Option<String>,
    pub caption: Option<String>,
    pub file_name: Option<String>,
    pub mimetype: Option<String>,
}

/// Prepares a media message: the file is staged on disk and uploaded to
/// WhatsApp here, outside the session's task (a large file holds nothing
/// else up); the task then only sends the message.
pub async fn prepare(
    m: &Manager,
    who: &Principal,
    session: &str,
    req: MediaSend,
) -> Result<Outgoing, ApiError> {
    let sources = [&req.media_id, &req.url, &req.base64]
        .iter()
        .filter(|s| s.is_some())
        .count();
    if sources != 1 {
        return Err(bad(format!(
            "media_id, url, base64: a {} message needs exactly one of them",
            req.kind
        )));
    }
    // A URL that may not be fetched is refused before anything else.
    if let Some(url) = &req.url {
        crate::media::fetch::check_destination(url.trim(), m.media().settings.allow_private_urls)
            .await
            .map_err(|e| bad(format!("url: {e}")))?;
    }
    let view = m.view(session)?;
    if view.status != Status::Working {
        return Err(SessionError::NotWorking {
            name: session.to_string(),
            status: view.status,
        }
        .into());
    }
    let media = m.media();
    let staged = Staged(media.store.staging_path());
    let source_type = stage(media, who, &req, &staged.0).await?;
    let mimetype = match req.mimetype.clone().filter(|t| !t.trim().is_empty()) {
        Some(t) => t,
        None => match source_type {
            Some(t) => t,
            None => sniff_file(&staged.0, &req.kind).await,
        },
    };
    let link = media
        .link(session)
        .filter(|l| l.is_connected())
        .ok_or_else(|| {
            ApiError::from(SessionError::NotWorking {
                name: session.to_string(),
                status: Status::Reconnecting,
            })
        })?;
    let ty = crate::whatsapp::media_type(&req.kind)
        .ok_or_else(|| bad(format!("type: expected one of text, {KINDS}")))?;
    let uploaded = link
        .upload(&staged.0, ty)
        .await
        .map_err(|e| ApiError::from(SessionError::WhatsApp(e)))?;
    let details = MediaDetails {
        kind: req.kind.clone(),
        mimetype,
        caption: req.caption.clone(),
        file_name: req.file_name.clone(),
    };
    Ok(Outgoing::Media(Box::new(uploaded), details))
}

/// Puts the request's file at `dest`; returns the MIME type its source
/// gave (the stored record's, the URL's `Content-Type`), if any.
async fn stage(
    media: &Media,
    who: &Principal,
    req: &MediaSend,
    dest: &FsPath,
) -> Result<Option<String>, ApiError> {
    let max = media.settings.max_bytes;
    if let Some(id) = &req.media_id {
        let rec = visible(media, who, id.trim()).await?;
        media.store.copy_to(&rec.id, dest).await?;
        return Ok(Some(rec.mimetype).filter(|t| !t.is_empty()));
    }
    if let Some(url) = &req.url {
        let policy = FetchPolicy {
            allow_private: media.settings.allow_private_urls,
            max_bytes: max,
            timeout: media.settings.url_timeout,
            max_redirects: 5,
        };
        let fetched = fetch_to_file(&policy, url.trim(), dest)
            .await
            .map_err(|e| {
                if e.is_too_large() {
                    too_large("url", max)
                } else {
                    bad(format!("url: {e}"))
                }
            })?;
        let generic = |t: &String| {
            let t = t.split(';').next().unwrap_or("").trim();
            t.is_empty() || t == "application/octet-stream" || t == "binary/octet-stream"
        };
        return Ok(fetched.content_type.filter(|t| !generic(t)));
    }
    let b64 = req.base64.as_deref().unwrap_or("").trim();
    // A data: URL's prefix is accepted, as browsers produce them.
    let b64 = match b64.split_once(";base64,") {
        Some((prefix, rest)) if prefix.starts_with("data:") => rest,
        _ => b64,
    };
    if (b64.len() as u64) / 4 * 3 > max + 3 {
        return Err(too_large("base64", max));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(format!("base64: not valid base64: {e}")))?;
    if bytes.is_empty() {
        return Err(bad("base64: the file is empty"));
    }
    tokio::fs::write(dest, &bytes).await.map_err(io)?;
    Ok(None)
}

async fn sniff_file(path: &FsPath, kind: &str) -> String {
    let mut head = vec![0u8; 8192];
    let n = match tokio::fs::File::open(path).await {
        Ok(mut f) => {
            use tokio::io::AsyncReadExt;
            f.read(&mut head).await.unwrap_or(0)
        }
        Err(_) => 0,
    };
    crate::media::sniff(&head[..n], Some(kind))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Some(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Some(90..100));
        assert_eq!(parse_range("bytes=50-500", 100), Some(50..100));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-2", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
