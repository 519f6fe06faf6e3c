//! The HTTP API: wapi's routes (with or without a trailing slash) and the
//! resource API under `/v1`.

mod access;
mod chats;
mod cloud;
mod contacts;
mod dashboard;
mod envelope;
mod events;
mod groups;
mod media;
mod messages;
mod openapi;
mod routes;
mod sessions;
mod wapi;

use self::sessions::*;
use self::wapi::*;
use routes::endpoints;

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
        .merge(dashboard::routes())
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

/// Deserializes a present field (even `null`) as `Some(..)`, so that an
/// absent field (`None`, by `default`) can mean "leave it as it is".
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A status as the API writes it (`SCAN_QR_CODE`).
fn status_name(s: Status) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
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
async fn health(State(st): State<AppState>) -> Response {
    let m = &st.manager;
    let store = tokio::time::timeout(std::time::Duration::from_secs(3), m.store().ping()).await;
    let store_ok = matches!(store, Ok(Ok(())));
    let counts = sessions_by_status(m);
    // The same numbers /metrics has: events waiting, and what became of
    // those posted since the bridge started.
    let queued = if store_ok { queue_depth(m).await } else { None };
    let outcome = |o: &str| m.metrics().deliveries.with_label_values(&[o]).get();
    let body = json!({
        "ok": store_ok,
        "store": if store_ok { "ok" } else { "unreachable" },
        "sessions": counts,
        "queued": queued,
        "whatsapp_version": m.versions().describe(),
        // Whether the API wants a credential: the dashboard asks for one
        // only then (and answers nothing to an unsigned caller otherwise).
        "auth_required": st.auth.enabled(),
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
