//! The admin HTTP API: the fake phones and contacts, and faults on demand.
//! The routes and bodies are a fixed contract that other tools use.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::kinds::{self, Compose, ComposeError};
use crate::media::MAX_BLOB;
use crate::media_message::{self, ContactMedia, MediaKind};
use crate::pairing::{self, LinkError};
use crate::routing::{self, DeviceAddr, SendError};
use crate::world::{World, is_phone};

/// An admin API error: a status and a message, as `{"error": "..."}`.
pub struct AdminError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, msg.into())
}

pub(crate) fn not_found(msg: impl Into<String>) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, msg.into())
}

impl From<LinkError> for AdminError {
    fn from(e: LinkError) -> Self {
        let status = match e {
            LinkError::BadQr(_) => StatusCode::BAD_REQUEST,
            LinkError::UnknownRef | LinkError::UnknownCode => StatusCode::NOT_FOUND,
            LinkError::Rejected(_) => StatusCode::CONFLICT,
            LinkError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            LinkError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AdminError(status, e.to_string())
    }
}

/// JSON body whose rejections (bad JSON, missing fields, wrong content
/// type) are 400s with a message, never a panic.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(bad(rejection_text(&e))),
        }
    }
}

fn rejection_text(e: &JsonRejection) -> String {
    e.body_text()
}

pub(crate) type Shared = State<Arc<World>>;

pub fn router() -> Router<Arc<World>> {
    Router::new()
        .route("/admin/health", get(health))
        .route("/admin/scan", post(scan))
        .route("/admin/pair-code", post(pair_code))
        .route(
            "/admin/contacts/{phone}/messages",
            // Files come base64-encoded in the JSON body.
            post(contact_send)
                .get(contact_inbox)
                .layer(DefaultBodyLimit::max(MAX_BLOB / 3 * 4 + 64 * 1024)),
        )
        .route("/admin/contacts/{phone}/read", post(contact_read))
        .route("/admin/devices", get(devices))
        .route("/admin/devices/{jid}/disconnect", post(disconnect))
        .route("/admin/devices/{jid}/logout", post(logout))
        .route("/admin/devices/{jid}/stream-error", post(stream_error))
        .route("/admin/devices/{jid}/stall", post(stall))
        // The media CDN: counters, a download delay, its certificate.
        .route("/admin/media/stats", get(media_stats))
        .route("/admin/media/settings", post(media_settings))
        .route("/admin/media/certificate", get(media_certificate))
        // Receipts, chat states, presence, calls, number changes, profiles.
        .merge(crate::chat_admin::router())
        // Groups: create, inspect, change, faults.
        .merge(crate::group_admin::router())
}

async fn health() -> axum::Json<Value> {
    axum::Json(json!({ "ok": true }))
}

pub(crate) fn phone(p: &str, field: &str) -> Result<String, AdminError> {
    let digits = p.trim_start_matches('+');
    if is_phone(digits) {
        Ok(digits.to_string())
    } else {
        Err(bad(format!(
            "{field}: expected a phone number of digits, got {p:?}"
        )))
    }
}

#[derive(Deserialize)]
struct ScanReq {
    qr: String,
    phone: String,
    #[serde(default)]
    push_name: Option<String>,
}

async fn scan(State(w): Shared, Body(req): Body<ScanReq>) -> Result<Response, AdminError> {
    let phone = phone(&req.phone, "phone")?;
    let linked = pairing::scan(&w, &req.qr, &phone, req.push_name.as_deref().unwrap_or("")).await?;
    Ok(axum::Json(linked).into_response())
}

#[derive(Deserialize)]
struct PairCodeReq {
    phone: String,
    code: String,
    #[serde(default)]
    push_name: Option<String>,
}

async fn pair_code(State(w): Shared, Body(req): Body<PairCodeReq>) -> Result<Response, AdminError> {
    let phone = phone(&req.phone, "phone")?;
    let name = req.push_name.as_deref().unwrap_or("");
    let linked = pairing::enter_code(&w, &phone, &req.code, name).await?;
    Ok(axum::Json(linked).into_response())
}

#[derive(Deserialize)]
struct SendReq {
    to: String,
    /// `type` (`text` by default) and the fields of every kind but media.
    #[serde(flatten)]
    compose: Compose,
    /// The file of a media message.
    #[serde(default)]
    base64: Option<String>,
    #[serde(default)]
    mimetype: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    push_name: Option<String>,
    /// Store the file already expired on the CDN.
    #[serde(default)]
    expired: bool,
    /// Whether the contact's phone can upload the file again (default true).
    #[serde(default)]
    reupload: Option<bool>,
    /// Send it with a corrupted ciphertext: the devices cannot decrypt it.
    #[serde(default)]
    undecryptable: bool,
}

/// Base64 with or without padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

async fn contact_send(
    State(w): Shared,
    Path(from): Path<String>,
    Body(req): Body<SendReq>,
) -> Result<Response, AdminError> {
    let undecryptable = req.undecryptable;
    let from = phone(&from, "phone")?;
    // An account's number, or a group's JID (`ID@g.us`).
    let to = match crate::groups::parse_id(&req.to).filter(|_| req.to.contains('@')) {
        Some(id) => format!("{id}@{}", crate::groups::GROUP_SERVER),
        None => phone(&req.to, "to")?,
    };
    let send = send_kind(&w, &from, &to, req);
    let id = if undecryptable {
        crate::chat::undecryptable(send).await
    } else {
        send.await
    }?;
    Ok(axum::Json(json!({ "id": id })).into_response())
}

/// Sends what a `POST .../messages` body describes; returns its id.
async fn send_kind(
    w: &Arc<World>,
    from: &str,
    to: &str,
    req: SendReq,
) -> Result<String, AdminError> {
    let push_name = req.push_name.as_deref();
    let kind = req.compose.kind.as_deref().unwrap_or("text");
    let sent = if let Some(kind) = MediaKind::parse(kind) {
        let b64 = req
            .base64
            .as_deref()
            .ok_or_else(|| bad(format!("base64: required for a {} message", kind.as_str())))?;
        use base64::Engine as _;
        let data = BASE64
            .decode(b64.trim())
            .map_err(|e| bad(format!("base64: not valid base64: {e}")))?;
        if data.is_empty() {
            return Err(bad("base64: the file is empty"));
        }
        let c = &req.compose;
        let context = kinds::context(w, from, c.reply_to.as_deref(), c.mentions.as_deref())
            .map_err(compose_error)?;
        let media = ContactMedia {
            context,
            mimetype: req.mimetype,
            caption: req.caption,
            file_name: req.file_name,
            expired: req.expired,
            reupload: req.reupload.unwrap_or(true),
            ..ContactMedia::new(kind, data)
        };
        media_message::contact_send_media(w, from, to, media, push_name)
            .await
            .map_err(ComposeError::from)
    } else {
        kinds::contact_send(w, from, to, &req.compose, push_name).await
    };
    sent.map_err(compose_error)
}

fn compose_error(e: ComposeError) -> AdminError {
    match e {
        ComposeError::Bad(m) => bad(m),
        ComposeError::Send(SendError::NoAccount(a)) => {
            not_found(format!("to: {a} is not an account"))
        }
        ComposeError::Send(SendError::NoGroup(g)) => not_found(format!("to: no group {g}")),
        ComposeError::Send(SendError::Refused(m)) => {
            AdminError(StatusCode::FORBIDDEN, format!("to: {m}"))
        }
        ComposeError::Send(SendError::Sim(e)) => {
            AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

async fn contact_inbox(State(w): Shared, Path(p): Path<String>) -> Result<Response, AdminError> {
    let p = phone(&p, "phone")?;
    let messages = match w.lock().endpoints.get(&p).cloned() {
        Some(e) => e.inbox.lock().map(|i| i.clone()).unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(axum::Json(json!({ "messages": messages })).into_response())
}

#[derive(Deserialize)]
struct ReadReq {
    id: String,
}

async fn contact_read(
    State(w): Shared,
    Path(p): Path<String>,
    Body(req): Body<ReadReq>,
) -> Result<Response, AdminError> {
    let p = phone(&p, "phone")?;
    let endpoint = w.lock().endpoints.get(&p).cloned();
    let sender = endpoint.and_then(|e| {
        e.inbox
            .lock()
            .ok()?
            .iter()
            .find(|m| m.id == req.id)
            .map(|m| (m.from.clone(), m.to_lid))
    });
    let Some((addr, to_lid)) = sender.and_then(|(f, l)| Some((DeviceAddr::parse(&f)?, l))) else {
        return Err(not_found(format!(
            "id: no message {} in the inbox of {p}",
            req.id
        )));
    };
    // From the address the message was sent to.
    let from = crate::lids::user_jid(&w, &p, to_lid);
    w.deliver(
        &addr.phone,
        addr.device,
        routing::receipt_node(&from, &req.id, Some("read")),
    );
    Ok(axum::Json(json!({ "ok": true })).into_response())
}

async fn devices(State(w): Shared) -> axum::Json<Value> {
    let st = w.lock();
    let mut list = Vec::new();
    let mut phones: Vec<&String> = st.accounts.keys().collect();
    phones.sort();
    for p in phones {
        let a = &st.accounts[p];
        for d in a.devices.values() {
            list.push(json!({
                "jid": format!("{}:{}@s.whatsapp.net", a.phone, d.id),
                "lid": format!("{}:{}@lid", a.lid, d.id),
                "phone": a.phone,
                "push_name": a.push_name,
                "connected": d.conn.is_some(),
                "logins": d.logins,
                "version": d.version.map(|v| v.to_string()),
            }));
        }
    }
    axum::Json(json!({ "devices": list }))
}

/// A device JID from the path (URL-decoded by axum).
fn device(w: &World, jid: &str) -> Result<DeviceAddr, AdminError> {
    let addr =
        DeviceAddr::parse(jid).ok_or_else(|| bad(format!("jid: not a device JID: {jid:?}")))?;
    let known = w
        .lock()
        .accounts
        .get(&addr.phone)
        .is_some_and(|a| a.devices.contains_key(&addr.device));
    if known {
        Ok(addr)
    } else {
        Err(not_found(format!("no device {jid}")))
    }
}

pub(crate) fn ok() -> Response {
    axum::Json(json!({ "ok": true })).into_response()
}

async fn disconnect(State(w): Shared, Path(jid): Path<String>) -> Result<Response, AdminError> {
    let addr = device(&w, &jid)?;
    let st = w.lock();
    if let Some(conn) = st
        .accounts
        .get(&addr.phone)
        .and_then(|a| a.devices.get(&addr.device))
        .and_then(|d| d.conn.as_ref())
    {
        conn.drop_connection();
    }
    Ok(ok())
}

async fn logout(State(w): Shared, Path(jid): Path<String>) -> Result<Response, AdminError> {
    let addr = device(&w, &jid)?;
    w.unlink(&addr.phone, addr.device, true);
    Ok(ok())
}

#[derive(Deserialize)]
struct StreamErrorReq {
    code: String,
}

async fn stream_error(
    State(w): Shared,
    Path(jid): Path<String>,
    Body(req): Body<StreamErrorReq>,
) -> Result<Response, AdminError> {
    let addr = device(&w, &jid)?;
    if req.code.is_empty() || !req.code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("code: expected a numeric stream error code"));
    }
    let st = w.lock();
    if let Some(conn) = st
        .accounts
        .get(&addr.phone)
        .and_then(|a| a.devices.get(&addr.device))
        .and_then(|d| d.conn.as_ref())
    {
        conn.send_final(pairing::stream_error(&req.code));
    }
    Ok(ok())
}

#[derive(Deserialize)]
struct StallReq {
    seconds: u64,
}

async fn stall(
    State(w): Shared,
    Path(jid): Path<String>,
    Body(req): Body<StallReq>,
) -> Result<Response, AdminError> {
    let addr = device(&w, &jid)?;
    if req.seconds > 3600 {
        return Err(bad("seconds: at most 3600"));
    }
    let mut st = w.lock();
    let conn_id = st
        .accounts
        .get(&addr.phone)
        .and_then(|a| a.devices.get(&addr.device))
        .and_then(|d| d.conn.as_ref())
        .map(|c| c.id);
    if let Some(id) = conn_id {
        st.stalls.insert(
            id,
            tokio::time::Instant::now() + Duration::from_secs(req.seconds),
        );
    }
    Ok(ok())
}

async fn media_stats(State(w): Shared) -> axum::Json<crate::media::MediaStats> {
    axum::Json(w.media.stats())
}

#[derive(Deserialize)]
struct MediaSettingsReq {
    download_delay_ms: u64,
}

async fn media_settings(
    State(w): Shared,
    Body(req): Body<MediaSettingsReq>,
) -> Result<Response, AdminError> {
    if req.download_delay_ms > 600_000 {
        return Err(bad("download_delay_ms: at most 600000"));
    }
    w.media
        .set_download_delay(Duration::from_millis(req.download_delay_ms));
    Ok(ok())
}

/// The media CDN's certificate, for clients to trust.
async fn media_certificate(State(w): Shared) -> Result<Response, AdminError> {
    let pem = w
        .media
        .cert_pem()
        .ok_or_else(|| not_found("no media server runs"))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        pem.to_string(),
    )
        .into_response())
}
