//! The HTTP API: wapi's routes (with or without a trailing slash) and the
//! resource API under `/v1`.

mod access;
mod chats;
mod cloud;
mod contacts;
mod envelope;
mod events;
mod groups;
mod media;
mod messages;
mod openapi;

use openapi::endpoints;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Extension, FromRef, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Router, middleware};
use base64::Engine as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::{Auth, Principal};
use crate::session::{Command, Manager, SessionError, SessionView, Status, valid_name};
use crate::webhook::{EventKind, Format, MediaInline, SubscriptionChange};

/// An API error: a status and a message, as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        let status = match &e {
            SessionError::NotFound(_) | SessionError::UnknownMessage(_) => StatusCode::NOT_FOUND,
            SessionError::Exists(_)
            | SessionError::NotWorking { .. }
            | SessionError::AlreadyLinked(_)
            | SessionError::Busy(_) => StatusCode::CONFLICT,
            SessionError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SessionError::Store(_) | SessionError::Gone => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::WhatsApp(_) => StatusCode::BAD_GATEWAY,
            // WhatsApp's own code where it means the same over HTTP: not
            // allowed (401 not an admin, 403 not a member), unknown,
            // conflict, gone.
            SessionError::Refused { code, .. } => match code {
                400 | 406 => StatusCode::BAD_REQUEST,
                401 | 403 => StatusCode::FORBIDDEN,
                404 => StatusCode::NOT_FOUND,
                409 => StatusCode::CONFLICT,
                410 => StatusCode::GONE,
                _ => StatusCode::BAD_GATEWAY,
            },
        };
        ApiError(status, e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// A JSON body whose rejections are 400s naming the field: malformed JSON,
/// a wrong type (`name: invalid type: integer...`) or a field the route does
/// not know (checked against the same schema the OpenAPI document shows).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + schemars::JsonSchema + 'static> FromRequest<S>
    for Body<T>
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError(e.status(), e.body_text()))?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
        if let Value::Object(fields) = &value {
            let known = known_fields::<T>();
            if let Some(unknown) = fields.keys().find(|k| !known.contains(k)) {
                return Err(bad(format!(
                    "{unknown}: unknown field; expected any of {}",
                    known.join(", ")
                )));
            }
        }
        serde_path_to_error::deserialize(&value)
            .map(Body)
            .map_err(|e| {
                let path = e.path().to_string();
                let what = if path == "." {
                    culprit::<T>(&value).unwrap_or_else(|| "body".into())
                } else {
                    path
                };
                bad(format!("{what}: {}", e.into_inner()))
            })
    }
}

/// The field to blame when the error has no path (fields of a flattened
/// part lose it): the one whose removal makes the body parse, but for the
/// fields it then lacks.
fn culprit<T: DeserializeOwned>(value: &Value) -> Option<String> {
    let fields = value.as_object()?;
    let parses_without = |k: &String, or_lacks: bool| {
        let mut without = fields.clone();
        without.remove(k);
        match serde_json::from_value::<T>(Value::Object(without)) {
            Ok(_) => true,
            Err(e) => or_lacks && e.to_string().starts_with("missing field"),
        }
    };
    let keys = || fields.keys();
    keys()
        .find(|k| parses_without(k, false))
        .or_else(|| keys().find(|k| parses_without(k, true)))
        .cloned()
}

/// The top-level field names of a request type, from its JSON schema;
/// worked out once per type, as bodies arrive on hot routes (sends).
fn known_fields<T: schemars::JsonSchema + 'static>() -> Arc<Vec<String>> {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KNOWN: OnceLock<Mutex<HashMap<TypeId, Arc<Vec<String>>>>> = OnceLock::new();
    let mut known = KNOWN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    known
        .entry(TypeId::of::<T>())
        .or_insert_with(|| {
            let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
            Arc::new(
                schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default(),
            )
        })
        .clone()
}

/// What the handlers and the gate share.
#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<Manager>,
    pub auth: Arc<Auth>,
    limiter: Arc<access::Limiter>,
}

impl FromRef<AppState> for Arc<Manager> {
    fn from_ref(st: &AppState) -> Self {
        st.manager.clone()
    }
}

type Shared = State<Arc<Manager>>;

/// JSON bodies larger than this get 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// A route with and without its trailing slash, as wapi accepted both.
fn both(r: Router<AppState>, path: &str, m: MethodRouter<AppState>) -> Router<AppState> {
    let bare = path.trim_end_matches('/');
    r.route(bare, m.clone()).route(&format!("{bare}/"), m)
}

pub fn router(manager: Arc<Manager>, auth: Arc<Auth>, rate: crate::config::RateLimit) -> Router {
    let state = AppState {
        manager,
        auth,
        limiter: Arc::new(access::Limiter::new(rate)),
    };
    // Sends may carry a file as base64, uploads the file itself: their
    // bodies may be as large as a file (plus base64's third).
    let max_file = state.manager.config().media.max_bytes;
    let file_body = usize::try_from(max_file / 3 * 4 + 64 * 1024).unwrap_or(usize::MAX);
    let mut r = Router::new();
    for e in endpoints() {
        let handler = match e.path {
            "/v1/sessions/{name}/messages"
            | "/v1/sessions/{name}/media"
            | "/{version}/{phone_number_id}/messages"
            | "/{version}/{phone_number_id}/media" => {
                e.handler.layer(DefaultBodyLimit::max(file_body))
            }
            _ => e.handler,
        };
        r = if e.wapi {
            both(r, e.path, handler)
        } else {
            r.route(e.path, handler)
        };
    }
    r.route_layer(middleware::from_fn_with_state(state.clone(), access::guard))
        // The docs page is static (no data, no secrets): it is served
        // without a credential and asks for one to load the document.
        .route("/docs", get(openapi::page))
        .layer(middleware::from_fn(envelope::wrap))
        .layer(middleware::from_fn(cloud::wrap))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn name(n: &str) -> Result<&str, ApiError> {
    if valid_name(n) {
        Ok(n)
    } else {
        Err(bad(format!(
            "session name {n:?}: must match ^[A-Za-z0-9_-]{{1,64}}$"
        )))
    }
}

fn view_json(v: &SessionView) -> Value {
    json!({
        "name": v.name,
        "status": v.status,
        "reason": v.reason,
        "jid": v.jid,
        "push_name": v.push_name,
        "webhook_url": v.webhook.url,
        "webhook_format": v.webhook.format,
        "webhook_events": v.webhook.events,
        // The secret itself is never returned.
        "webhook_secret_set": v.webhook.secret.is_some(),
        "webhook_media": v.webhook.media_inline,
        "webhook_verify_token_set": v.webhook.verify_token.is_some(),
        "created_at": v.created_at,
        "connected": v.status == Status::Working,
    })
}

/// Deserializes a present field (even `null`) as `Some(..)`, so that an
/// absent field (`None`, by `default`) can mean "leave it as it is".
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The webhook settings a register, create or patch body may carry. An
/// absent field leaves the setting alone; `null` (or "") clears it.
#[derive(Deserialize, Default, schemars::JsonSchema)]
struct WebhookFields {
    /// http(s) URL; null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>", regex(pattern = r"^(https?://[!-~]+)?$"))]
    webhook_url: Option<Option<String>>,
    /// native (default), cloud or wapi.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>", extend("enum" = ["native", "cloud", "wapi", null]))]
    webhook_format: Option<Option<String>>,
    /// Signs this session's deliveries; never returned.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    webhook_secret: Option<Option<String>>,
    /// Any of the event kinds; null means all but presence.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Vec<crate::webhook::EventKind>>")]
    webhook_events: Option<Option<Vec<String>>>,
    /// How media events carry their file: url (default) or base64 (inline
    /// as well).
    #[serde(default)]
    #[schemars(extend("enum" = ["url", "base64", null]))]
    webhook_media: Option<String>,
    /// The Cloud API's verify token: with the cloud format, the URL must
    /// answer the verification handshake (echo hub.challenge) to be set;
    /// never returned. null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    webhook_verify_token: Option<Option<String>>,
}

impl WebhookFields {
    fn change(self) -> Result<SubscriptionChange, ApiError> {
        let url = match self.webhook_url {
            None => None,
            Some(u) => Some(opt_url(u, "webhook_url")?),
        };
        let format = match self.webhook_format {
            None => None,
            Some(None) => Some(Format::Native),
            Some(Some(f)) => Some(Format::parse(f.trim()).ok_or_else(|| {
                bad(format!(
                    "webhook_format: expected one of {}, got {f:?}",
                    Format::NAMES
                ))
            })?),
        };
        let secret = match self.webhook_secret {
            None => None,
            Some(s) => {
                let s = s.filter(|s| !s.is_empty());
                if s.as_ref().is_some_and(|s| s.len() > 512) {
                    return Err(bad("webhook_secret: at most 512 bytes"));
                }
                Some(s)
            }
        };
        let events = match self.webhook_events {
            None => None,
            Some(None) => Some(None),
            Some(Some(names)) => {
                let mut kinds = Vec::new();
                for n in &names {
                    let k = EventKind::parse(n).ok_or_else(|| {
                        bad(format!(
                            "webhook_events: expected any of {}, got {n:?}",
                            EventKind::NAMES
                        ))
                    })?;
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
                Some(Some(kinds))
            }
        };
        let media_inline = match self.webhook_media {
            None => None,
            Some(m) => Some(MediaInline::parse(m.trim()).ok_or_else(|| {
                bad(format!(
                    "webhook_media: expected one of {}, got {m:?}",
                    MediaInline::NAMES
                ))
            })?),
        };
        let verify_token = match self.webhook_verify_token {
            None => None,
            Some(t) => {
                let t = t.filter(|t| !t.is_empty());
                if t.as_ref().is_some_and(|t| t.len() > 256) {
                    return Err(bad("webhook_verify_token: at most 256 bytes"));
                }
                Some(t)
            }
        };
        Ok(SubscriptionChange {
            url,
            format,
            secret,
            events,
            media_inline,
            verify_token,
        })
    }
}

/// A webhook URL set with a session key must not point into the bridge's
/// own network (the rule of media URLs); an admin credential may point
/// webhooks anywhere. With the cloud format and a verify token, the URL
/// must pass the Cloud API's verification handshake first (`session`: the
/// session as it will be, its current settings if it exists).
async fn guard_webhook(
    m: &Manager,
    who: &Principal,
    session: &str,
    change: &SubscriptionChange,
) -> Result<(), ApiError> {
    if let (Principal::Session { .. }, Some(Some(url))) = (who, &change.url) {
        crate::media::fetch::check_destination(url, m.media().settings.allow_private_urls)
            .await
            .map_err(|e| bad(format!("webhook_url: {e}")))?;
    }
    if change.needs_verification() {
        let mut sub = m.view(session).map(|v| v.webhook).unwrap_or_default();
        sub.apply(change.clone());
        m.webhooks()
            .verify(session, &sub)
            .await
            .map_err(|e| bad(format!("webhook_url: {e}")))?;
    }
    Ok(())
}

fn opt_url(url: Option<String>, field: &str) -> Result<Option<String>, ApiError> {
    match url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) {
        None => Ok(None),
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(Some(u)),
        Some(u) => Err(bad(format!("{field}: expected an http(s) URL, got {u:?}"))),
    }
}

// --- wapi routes ---

#[derive(Deserialize, schemars::JsonSchema)]
struct RegisterReq {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    session_id: String,
    #[serde(flatten)]
    webhook: WebhookFields,
}

async fn register(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Body(req): Body<RegisterReq>,
) -> Result<Response, ApiError> {
    let n = name(&req.session_id)?;
    access::allow(&who, n)?;
    let mut change = req.webhook.change()?;
    guard_webhook(&m, &who, n, &change).await?;
    // wapi clients send an empty webhook_url to mean "none given": it
    // keeps the session's URL rather than clearing it.
    if change.url == Some(None) {
        change.url = None;
    }
    let v = m.register(n, change).await?;
    let mut body = json!({"session_id": v.name, "status": v.status});
    if v.jid.is_none() {
        body["qr_url"] = json!(format!("/get-qr-code/{}/", v.name));
    }
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SendMessageReq {
    #[schemars(regex(
        pattern = r"^(\+?[0-9]{1,20}|[0-9A-Za-z.:_-]{1,64}@(s\.whatsapp\.net|lid|g\.us))$"
    ))]
    chat_id: String,
    text: String,
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    session_name: String,
}

async fn send_message(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Body(req): Body<SendMessageReq>,
) -> Result<Response, ApiError> {
    let n = name(&req.session_name)?;
    access::allow(&who, n)?;
    if req.chat_id.trim().is_empty() {
        return Err(bad("chat_id: must not be empty"));
    }
    let sent = m.send_text(n, &req.chat_id, &req.text).await?;
    Ok(axum::Json(json!({"message_id": sent.id})).into_response())
}

fn png_response(png: &[u8]) -> Response {
    ([(header::CONTENT_TYPE, "image/png")], png.to_vec()).into_response()
}

/// A status as the API writes it (`SCAN_QR_CODE`).
fn status_name(s: Status) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Why a session has no QR code to show (404): what it is doing instead.
fn no_qr(v: &SessionView) -> ApiError {
    let n = &v.name;
    let why = match (v.status, v.reason.as_deref()) {
        (Status::Starting | Status::Reconnecting, Some(r)) => {
            format!("not yet: the session is connecting to WhatsApp and {r}")
        }
        (Status::Starting | Status::Reconnecting, None) => {
            "not yet: the session is connecting to WhatsApp; the QR code comes once it is connected"
                .to_string()
        }
        (Status::Working, _) => "the session is linked (WORKING)".to_string(),
        (Status::Stopped | Status::LoggedOut, _) => {
            format!(
                "the session is {}: start it to get a QR code",
                status_name(v.status)
            )
        }
        (status, reason) => format!(
            "the session is {} ({}): restart it to get a QR code",
            status_name(status),
            reason.unwrap_or("no reason given")
        ),
    };
    ApiError(
        StatusCode::NOT_FOUND,
        format!("session {n} has no QR code: {why}"),
    )
}

async fn qr_png(State(m): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let v = m.view(name(&id)?)?;
    match &v.qr {
        Some(qr) => Ok(png_response(&qr.png)),
        None => Err(no_qr(&v)),
    }
}

async fn session_info(State(m): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let v = m.view(name(&id)?)?;
    Ok(axum::Json(json!({
        "session_id": v.name,
        "status": v.status,
        "reason": v.reason,
        "jid": v.jid,
        "push_name": v.push_name,
        "webhook_url": v.webhook.url,
        "created_at": v.created_at,
    }))
    .into_response())
}

async fn connection_info(State(m): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let v = m.view(name(&id)?)?;
    Ok(axum::Json(json!({
        "connected": v.status == Status::Working,
        "jid": v.jid,
        "since": v.connected_since,
        "reconnects": v.reconnects,
    }))
    .into_response())
}

// --- /v1 ---

/// How many sessions are in each status, e.g. {"WORKING": 3}.
fn sessions_by_status(m: &Manager) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for v in m.list() {
        *counts.entry(status_name(v.status)).or_default() += 1;
    }
    counts
}

/// 200 with the store's state and sessions per status; 503 when the store
/// does not answer.
async fn health(State(m): Shared) -> Response {
    let store = tokio::time::timeout(std::time::Duration::from_secs(3), m.store().ping()).await;
    let store_ok = matches!(store, Ok(Ok(())));
    let counts = sessions_by_status(&m);
    // The same numbers /metrics has: events waiting, and what became of
    // those posted since the bridge started.
    let queued = if store_ok {
        queue_depth(&m).await
    } else {
        None
    };
    let outcome = |o: &str| m.metrics().deliveries.with_label_values(&[o]).get();
    let body = json!({
        "ok": store_ok,
        "store": if store_ok { "ok" } else { "unreachable" },
        "sessions": counts,
        "queued": queued,
        "whatsapp_version": m.versions().describe(),
        "deliveries": {
            "delivered": outcome("delivered"),
            "retried": outcome("retried"),
            "dead": outcome("dead"),
        },
    });
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // A monitor reads the same fields either way (plus `errors` on 503).
    (status, axum::Json(body)).into_response()
}

/// Events waiting in every session's outbox; `None` when the store does not
/// say.
async fn queue_depth(m: &Manager) -> Option<u64> {
    let mut queued = 0;
    for s in m.store().outbox_sessions().await.ok()? {
        if let Ok(c) = m.store().outbox_counts(&s).await {
            queued += c.pending;
        }
    }
    Some(queued)
}

/// Prometheus text format.
async fn metrics(State(m): Shared) -> Response {
    let queued = queue_depth(&m).await.unwrap_or(0) as i64;
    let by_status: Vec<(String, i64)> = sessions_by_status(&m)
        .into_iter()
        .map(|(k, n)| (k, n as i64))
        .collect();
    let text = m.metrics().render(&by_status, queued);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

// --- credentials ---

async fn login(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (token, expires_at) = st.auth.login(&headers).await?;
    let expires = chrono::DateTime::from_timestamp(expires_at as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    Ok(axum::Json(json!({"users": [{"token": token, "expires_after": expires}]})).into_response())
}

async fn logout_user(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    st.auth.logout(&headers).await?;
    Ok(axum::Json(json!({})).into_response())
}

/// A key that can use this session only (an admin's route).
async fn session_key(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(n): Path<String>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    if matches!(who, Principal::Session { .. }) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "a session key cannot make keys".into(),
        ));
    }
    let v = st.manager.view(n)?;
    let key = st.auth.issue_session_key(n, v.epoch).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"session": n, "key": key})),
    )
        .into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
struct CreateReq {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    name: String,
    #[serde(default)]
    start: Option<bool>,
    #[serde(flatten)]
    webhook: WebhookFields,
}

async fn create(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Body(req): Body<CreateReq>,
) -> Result<Response, ApiError> {
    let n = name(&req.name)?;
    let change = req.webhook.change()?;
    guard_webhook(&m, &who, n, &change).await?;
    let v = m.create(n, change, req.start.unwrap_or(true)).await?;
    Ok((StatusCode::CREATED, axum::Json(view_json(&v))).into_response())
}

async fn list(State(m): Shared) -> Response {
    let all: Vec<Value> = m.list().iter().map(view_json).collect();
    axum::Json(json!({"sessions": all})).into_response()
}

async fn show(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let v = m.view(name(&n)?)?;
    Ok(axum::Json(view_json(&v)).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
struct PatchReq {
    #[serde(flatten)]
    webhook: WebhookFields,
}

async fn patch(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Path(n): Path<String>,
    Body(req): Body<PatchReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let change = req.webhook.change()?;
    guard_webhook(&m, &who, n, &change).await?;
    m.command(n, |reply| Command::SetWebhook(change, reply))
        .await??;
    Ok(axum::Json(view_json(&m.view(n)?)).into_response())
}

async fn delete(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    m.delete(name(&n)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn start(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.send(n, Command::Start)?;
    Ok(axum::Json(view_json(&m.view(n)?)).into_response())
}

async fn stop(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.command(n, Command::Stop).await?;
    Ok(axum::Json(view_json(&m.view(n)?)).into_response())
}

async fn restart(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.command(n, Command::Restart).await?;
    Ok(axum::Json(view_json(&m.view(n)?)).into_response())
}

async fn logout(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.command(n, Command::Logout).await??;
    Ok(axum::Json(view_json(&m.view(n)?)).into_response())
}

async fn qr(
    State(m): Shared,
    Path(n): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let v = m.view(n)?;
    let Some(qr) = v.qr.clone() else {
        return Err(no_qr(&v));
    };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        Ok(axum::Json(json!({
            "code": qr.code,
            "png_base64": base64::prelude::BASE64_STANDARD.encode(qr.png.as_slice()),
            "expires_at": qr.expires_at,
        }))
        .into_response())
    } else {
        Ok(png_response(&qr.png))
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct PairCodeReq {
    /// International number, digits only (7 to 15, no leading 0).
    #[schemars(regex(pattern = r"^\+?[1-9][0-9]{6,14}$"))]
    phone: String,
}

async fn pair_code(
    State(m): Shared,
    Path(n): Path<String>,
    Body(req): Body<PairCodeReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let phone: String = req.phone.chars().filter(char::is_ascii_digit).collect();
    if phone.len() < 7 || phone.len() > 15 || phone.starts_with('0') {
        return Err(bad(
            "phone: expected an international phone number, digits only",
        ));
    }
    let code = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        m.command(n, |reply| Command::PairCode { phone, reply }),
    )
    .await
    .map_err(|_| {
        ApiError(
            StatusCode::GATEWAY_TIMEOUT,
            "no pair code from WhatsApp in time".into(),
        )
    })???;
    Ok(axum::Json(json!({"code": code})).into_response())
}

// --- webhook outbox ---

fn event_json(ev: &crate::store::OutboxEvent) -> Value {
    json!({
        "id": ev.id,
        "event": ev.body["event"],
        "attempts": ev.attempts,
        "last_status": ev.last_status,
        "last_error": ev.last_error,
        "body": ev.body,
    })
}

async fn webhook_stats(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.view(n)?;
    let stats = m.webhook_stats(n).await?;
    Ok(axum::Json(stats).into_response())
}

async fn dead_letters(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.view(n)?;
    let dead = m.store().dead_list(n).await.map_err(SessionError::from)?;
    let list: Vec<Value> = dead.iter().map(event_json).collect();
    Ok(axum::Json(json!({"dead": list})).into_response())
}

async fn replay_all(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.view(n)?;
    let moved = m.replay(n, None).await?;
    Ok(axum::Json(json!({"replayed": moved})).into_response())
}

async fn replay_one(
    State(m): Shared,
    Path((n, event_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    if event_id.is_empty()
        || event_id.len() > 64
        || !event_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(bad(format!(
            "event_id {event_id:?}: expected an id like evt_<hex>"
        )));
    }
    m.view(n)?;
    let moved = m.replay(n, Some(&event_id)).await?;
    if moved == 0 {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("event_id: no dead letter {event_id}"),
        ));
    }
    Ok(axum::Json(json!({"replayed": moved})).into_response())
}
