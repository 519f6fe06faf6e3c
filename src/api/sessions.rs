//! The `/v1` session resource: create, list, change (webhook settings,
//! with the Cloud API's verification handshake), start, stop, log out,
//! QR and pair code, the webhook outbox and its dead letters, session keys
//! and the admin's login tokens.

use super::*;

pub(super) fn view_json(v: &SessionView) -> Value {
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
        // Since when it has been WORKING (unix seconds), and how many times
        // it has reconnected since the bridge started it.
        "connected_since": v.connected_since,
        "reconnects": v.reconnects,
    })
}
/// The webhook settings a register, create or patch body may carry. An
/// absent field leaves the setting alone; `null` (or "") clears it.
#[derive(Deserialize, Default, schemars::JsonSchema)]
pub(super) struct WebhookFields {
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
    pub(super) fn change(self) -> Result<SubscriptionChange, ApiError> {
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
pub(super) async fn guard_webhook(
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

pub(super) fn opt_url(url: Option<String>, field: &str) -> Result<Option<String>, ApiError> {
    match url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) {
        None => Ok(None),
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(Some(u)),
        Some(u) => Err(bad(format!("{field}: expected an http(s) URL, got {u:?}"))),
    }
}

// --- credentials ---

pub(super) async fn login(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (token, expires_at) = st.auth.login(&headers).await?;
    let expires = chrono::DateTime::from_timestamp(expires_at as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    Ok(axum::Json(json!({"users": [{"token": token, "expires_after": expires}]})).into_response())
}

pub(super) async fn logout_user(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    st.auth.logout(&headers).await?;
    Ok(axum::Json(json!({})).into_response())
}

/// A key that can use this session only (an admin's route).
pub(super) async fn session_key(
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
pub(super) struct CreateReq {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    name: String,
    #[serde(default)]
    start: Option<bool>,
    #[serde(flatten)]
    webhook: WebhookFields,
}

pub(super) async fn create(
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

/// Every session, or with a session key its own; `access` says which
/// credential asked (`open`, `admin` or `session`), so that a client such
/// as the dashboard knows what it may offer.
pub(super) async fn list(State(m): Shared, Extension(who): Extension<Principal>) -> Response {
    let all: Vec<Value> = m
        .list()
        .iter()
        .filter(|v| who.may_use(&v.name))
        .map(view_json)
        .collect();
    let access = match who {
        Principal::Open => "open",
        Principal::Admin => "admin",
        Principal::Session { .. } => "session",
    };
    axum::Json(json!({"sessions": all, "access": access})).into_response()
}

pub(super) async fn show(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let v = m.view(name(&n)?)?;
    Ok(axum::Json(view_json(&v)).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct PatchReq {
    #[serde(flatten)]
    webhook: WebhookFields,
}

pub(super) async fn patch(
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

pub(super) async fn delete(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    m.delete(name(&n)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn start(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.send(n, Command::Start)?;
    Ok(axum::Json(view_json(&m.view(n)?)).into_response())
}

pub(super) async fn stop(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.command(n, Command::Stop).await?;
    Ok(axum::Json(view_json(&m.view(n)?)).into_response())
}

pub(super) async fn restart(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.command(n, Command::Restart).await?;
    Ok(axum::Json(view_json(&m.view(n)?)).into_response())
}

pub(super) async fn logout(State(m): Shared, Path(n): Path<String>) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.command(n, Command::Logout).await??;
    Ok(axum::Json(view_json(&m.view(n)?)).into_response())
}

pub(super) async fn qr(
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
pub(super) struct PairCodeReq {
    /// International number, digits only (7 to 15, no leading 0).
    #[schemars(regex(pattern = r"^\+?[1-9][0-9]{6,14}$"))]
    phone: String,
}

pub(super) async fn pair_code(
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

pub(super) fn event_json(ev: &crate::store::OutboxEvent) -> Value {
    json!({
        "id": ev.id,
        "event": ev.body["event"],
        "attempts": ev.attempts,
        "last_status": ev.last_status,
        "last_error": ev.last_error,
        "body": ev.body,
    })
}

pub(super) async fn webhook_stats(
    State(m): Shared,
    Path(n): Path<String>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.view(n)?;
    let stats = m.webhook_stats(n).await?;
    Ok(axum::Json(stats).into_response())
}

pub(super) async fn dead_letters(
    State(m): Shared,
    Path(n): Path<String>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.view(n)?;
    let dead = m.store().dead_list(n).await.map_err(SessionError::from)?;
    let list: Vec<Value> = dead.iter().map(event_json).collect();
    Ok(axum::Json(json!({"dead": list})).into_response())
}

pub(super) async fn replay_all(
    State(m): Shared,
    Path(n): Path<String>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    m.view(n)?;
    let moved = m.replay(n, None).await?;
    Ok(axum::Json(json!({"replayed": moved})).into_response())
}

pub(super) async fn replay_one(
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
