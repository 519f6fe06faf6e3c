//! wapi's routes (the Go project's paths, with or without the trailing
//! slash): register a session, send a text, its QR code and its state.

use super::*;

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct RegisterReq {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    session_id: String,
    #[serde(flatten)]
    webhook: WebhookFields,
}

pub(super) async fn register(
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
pub(super) struct SendMessageReq {
    #[schemars(regex(
        pattern = r"^(\+?[0-9]{1,20}|[0-9A-Za-z.:_-]{1,64}@(s\.whatsapp\.net|lid|g\.us))$"
    ))]
    chat_id: String,
    text: String,
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    session_name: String,
}

pub(super) async fn send_message(
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

pub(super) fn png_response(png: &[u8]) -> Response {
    ([(header::CONTENT_TYPE, "image/png")], png.to_vec()).into_response()
}

/// Why a session has no QR code to show (404): what it is doing instead.
pub(super) fn no_qr(v: &SessionView) -> ApiError {
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

pub(super) async fn qr_png(State(m): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let v = m.view(name(&id)?)?;
    match &v.qr {
        Some(qr) => Ok(png_response(&qr.png)),
        None => Err(no_qr(&v)),
    }
}

pub(super) async fn session_info(
    State(m): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
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

pub(super) async fn connection_info(
    State(m): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let v = m.view(name(&id)?)?;
    Ok(axum::Json(json!({
        "connected": v.status == Status::Working,
        "jid": v.jid,
        "since": v.connected_since,
        "reconnects": v.reconnects,
    }))
    .into_response())
}
