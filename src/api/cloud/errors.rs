//! The Graph API's error shape, and the Cloud API codes clients act on:
//!
//! | code | when | HTTP |
//! | --- | --- | --- |
//! | 190 | no token, or a token the bridge does not know | 401 |
//! | 10 | the token does not reach this session | 403 |
//! | 100 | a parameter is missing or invalid (named in `details`); an unknown object | 400, 404 |
//! | 130429 | the rate limit | 429 |
//! | 131026 | WhatsApp did not take the message | 502 |
//! | 131051 | a message type WhatsApp Web cannot send (`template`, `interactive`) | 400 |
//! | 131053 | the media: a `link` that cannot be fetched, a file too large, a bad id | 400, 413 |
//! | 133010 | the session is not linked and working (`SCAN_QR_CODE`, `STOPPED`...) | 409 |
//! | 131016 | the bridge's store is unreachable, or WhatsApp did not answer in time | 503, 504 |
//! | 131000 | anything else | 500 |

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::ApiError;
use super::is_version;

/// A Graph API error.
#[derive(Debug)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: u32,
    pub title: &'static str,
    pub details: String,
    pub subcode: Option<u32>,
}

impl GraphError {
    pub fn new(
        status: StatusCode,
        code: u32,
        title: &'static str,
        details: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            details: details.into(),
            subcode: None,
        }
    }

    /// A bad or missing parameter, named in `details`.
    pub fn param(details: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 100, "Invalid parameter", details)
    }

    /// A media problem (named in `details`).
    pub fn media(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            131053,
            "Media upload error",
            details,
        )
    }

    /// What WhatsApp Web cannot send.
    pub fn unsupported(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            131051,
            "Unsupported message type",
            details,
        )
    }

    /// The Graph API's answer for an id it does not have.
    pub fn no_object(id: &str) -> Self {
        Self {
            subcode: Some(33),
            ..Self::new(
                StatusCode::NOT_FOUND,
                100,
                "Invalid parameter",
                format!(
                    "Unsupported request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"
                ),
            )
        }
    }

    pub fn unknown_path(seg: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            100,
            "Invalid parameter",
            format!("Unknown path components: /{seg}; a version is v<major>.<minor>, e.g. v22.0"),
        )
    }

    /// The Graph error for a status and message of the bridge's own API
    /// (the gate's, or a shared handler's): the message names the field.
    fn of_status(status: StatusCode, details: String) -> Self {
        let (code, title) = match status.as_u16() {
            401 => (190, "Invalid OAuth access token"),
            403 => (10, "Permission Denied"),
            404 => (100, "Invalid parameter"),
            409 => (133010, "Account not registered"),
            413 => (131053, "Media upload error"),
            429 => (130429, "Rate limit hit"),
            502 => (131026, "Message undeliverable"),
            503 | 504 => (131016, "Service unavailable"),
            400..=499 => (100, "Invalid parameter"),
            _ => (131000, "Something went wrong"),
        };
        Self::new(status, code, title, details)
    }

    fn body(&self) -> Value {
        let mut e = json!({
            "message": format!("(#{}) {}", self.code, self.title),
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
            "fbtrace_id": fbtrace_id(),
        });
        if let Some(sub) = self.subcode {
            e["error_subcode"] = json!(sub);
        }
        json!({ "error": e })
    }
}

impl From<ApiError> for GraphError {
    fn from(e: ApiError) -> Self {
        Self::of_status(e.0, e.1)
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // The Graph API's challenge.
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("OAuth \"Facebook Platform\" \"invalid_token\""),
            );
        }
        res
    }
}

/// A request id, as Graph gives one with every error (for support).
fn fbtrace_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// Whether a request path is a Cloud API one: `/v<major>.<minor>/...`.
pub fn is_cloud_path(path: &str) -> bool {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .is_some_and(is_version)
}

const MAX_ERROR: usize = 64 * 1024;

/// Makes every error answered on a Cloud API path a Graph error: those the
/// gate answers before any Cloud handler (401, 403, 429), the body limits'
/// (413), unknown routes and methods (404, 405). Errors already in the
/// Graph shape pass as they are.
pub async fn wrap(req: Request, next: Next) -> Response {
    let cloud = is_cloud_path(req.uri().path());
    let res = next.run(req).await;
    if !cloud || res.status().is_success() || res.status().is_redirection() {
        return res;
    }
    let (parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    if parsed
        .as_ref()
        .is_some_and(|v| v["error"].is_object() && v["error"]["fbtrace_id"].is_string())
    {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let details = match parsed.as_ref().and_then(|v| v["error"].as_str()) {
        Some(e) => e.to_string(),
        None if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        None => parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string(),
    };
    let mut res = GraphError::of_status(parts.status, details).into_response();
    // Keep what the gate said besides the body (Retry-After).
    for (k, v) in parts.headers.iter() {
        if k == header::RETRY_AFTER {
            res.headers_mut().insert(k.clone(), v.clone());
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_paths() {
        assert!(is_version("v22.0") && is_version("v19.10"));
        assert!(!is_version("v1") && !is_version("v1.") && !is_version("x2.0"));
        assert!(is_cloud_path("/v22.0/s1/messages"));
        assert!(!is_cloud_path("/v1/sessions"));
    }

    #[test]
    fn statuses_map_to_the_codes_clients_act_on() {
        let e = GraphError::of_status(StatusCode::UNAUTHORIZED, "no credential".into());
        assert_eq!(e.code, 190);
        let b = e.body();
        assert_eq!(b["error"]["message"], "(#190) Invalid OAuth access token");
        assert_eq!(b["error"]["type"], "OAuthException");
        assert_eq!(b["error"]["error_data"]["messaging_product"], "whatsapp");
        assert_eq!(b["error"]["error_data"]["details"], "no credential");
        assert!(b["error"]["fbtrace_id"].is_string());
        assert_eq!(
            GraphError::of_status(StatusCode::TOO_MANY_REQUESTS, String::new()).code,
            130429
        );
        assert_eq!(
            GraphError::of_status(StatusCode::CONFLICT, String::new()).code,
            133010
        );
    }
}
