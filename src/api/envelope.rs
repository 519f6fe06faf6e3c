//! The WhatsApp Business API envelope of every `/v1` JSON response: `meta`
//! always, the payload beside it on success, and on failure
//! `errors: [{"code", "title", "details"}]`. Handlers answer plain JSON (or
//! `{"error": "..."}`); this layer wraps it, so no route can forget.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

/// Responses are small; anything bigger is passed through untouched.
const MAX_WRAPPED: usize = 8 * 1024 * 1024;

pub fn meta() -> Value {
    json!({"version": env!("CARGO_PKG_VERSION"), "api_status": "stable"})
}

pub async fn wrap(req: Request, next: Next) -> Response {
    // The OpenAPI document is what it is: no envelope around it.
    let v1 = req.uri().path().starts_with("/v1/") && req.uri().path() != "/v1/openapi.json";
    let res = next.run(req).await;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // Errors answered before a handler (413, 405...) come as plain text.
    let plain_error = !res.status().is_success()
        && res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !v1 || !(is_json || plain_error) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_WRAPPED).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let status = parts.status;
    let mut v: Value = if is_json {
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(o)) => Value::Object(o),
            _ => return Response::from_parts(parts, Body::from(bytes)),
        }
    } else {
        json!({"error": String::from_utf8_lossy(&bytes)})
    };
    if !status.is_success() {
        // A handler's `{"error"}` becomes the errors list; a body with more
        // to say (health's 503) keeps it beside the list.
        let details = match v.as_object_mut().and_then(|o| o.remove("error")) {
            Some(Value::String(e)) => e,
            _ => status.to_string(),
        };
        v["errors"] = json!([{
            "code": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "details": details,
        }]);
    }
    v["meta"] = meta();
    let out = serde_json::to_vec(&v).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(out))
}
