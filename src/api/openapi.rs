//! The OpenAPI document, made from the route table (`routes`): request
//! schemas from the request types (schemars), each path parameter's
//! pattern, the error statuses a route can answer, and the docs page.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use super::*;

/// One route: how it is served and how it is documented.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    /// wapi's routes answer with and without the trailing slash.
    pub wapi: bool,
    pub summary: &'static str,
    pub request: Option<Value>,
    /// Success status and the schema of its body (`None`: no JSON body).
    pub status: u16,
    pub response: Option<Value>,
    pub handler: MethodRouter<AppState>,
}

pub(super) fn request<T: JsonSchema>() -> Option<Value> {
    let settings = schemars::generate::SchemaSettings::openapi3();
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
    nullable(&mut v);
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
        // Unknown fields are refused (400 naming them).
        if o.get("type") == Some(&json!("object")) {
            o.entry("additionalProperties").or_insert(json!(false));
        }
    }
    Some(v)
}

/// OpenAPI 3.0 has no type lists: `"type": [T, "null"]` (which schemars
/// leaves in the definitions of nested types) becomes `T` and
/// `"nullable": true`, everywhere in the schema.
fn nullable(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(types)) = o.get("type") {
                let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                if rest.len() == 1 && rest.len() < types.len() {
                    o.insert("type".into(), rest[0].clone());
                    o.insert("nullable".into(), Value::Bool(true));
                }
            }
            o.values_mut().for_each(nullable);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable),
        _ => {}
    }
}

/// The send body: its fields, and which of them each kind needs (the
/// handler answers 400 naming the field that a kind lacks).
pub(super) fn send_request() -> Option<Value> {
    let mut schema = request::<super::messages::SendReq>()?;
    // A field given with a value (null counts as absent).
    let given = |k: &str| json!({"required": [k], "properties": {k: {"not": {"enum": [null]}}}});
    let kind = |ks: &[&str]| json!({"properties": {"type": {"enum": ks}}, "required": ["type"]});
    let media = ["image", "video", "audio", "voice", "document", "sticker"];
    let sources = ["media_id", "url", "base64"];
    let mut variants = vec![json!({
        "allOf": [given("text")],
        "properties": {"type": {"enum": ["text", null]}},
    })];
    for source in sources {
        let others: Vec<Value> = sources
            .iter()
            .filter(|o| **o != source)
            .map(|o| given(o))
            .collect();
        variants.push(json!({"allOf": [kind(&media), given(source), {"not": {"anyOf": others}}]}));
    }
    variants.push(json!({"allOf": [kind(&["location"]), given("latitude"), given("longitude")]}));
    variants.push(json!({"allOf": [kind(&["contacts"]), given("contacts")]}));
    variants.push(json!({"allOf": [kind(&["reaction"]), given("message_id"), given("emoji")]}));
    variants.push(json!({"allOf": [kind(&["poll"]), given("question"), given("options")]}));
    schema["anyOf"] = Value::Array(variants);
    Some(schema)
}

/// Moves the definitions a request schema carries (`components.schemas`,
/// where its `$ref`s point) into the document's components.
fn hoist(schema: &mut Value, into: &mut Map<String, Value>) {
    if let Some(defs) = schema
        .as_object_mut()
        .and_then(|o| o.remove("components"))
        .and_then(|c| c.get("schemas").cloned())
        .and_then(|s| s.as_object().cloned())
    {
        into.extend(defs);
    }
}

/// `{"type": "object", "properties": {..}}` from (name, type) pairs; a type
/// is a JSON schema type name or a whole schema.
pub(super) fn object(fields: &[(&str, Value)]) -> Value {
    let props: Map<String, Value> = fields
        .iter()
        .map(|(k, t)| {
            let schema = match t {
                Value::String(ty) => json!({ "type": ty }),
                other => other.clone(),
            };
            (k.to_string(), schema)
        })
        .collect();
    json!({"type": "object", "properties": props})
}

pub(super) fn t(ty: &str) -> Value {
    Value::String(ty.into())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn ep(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    request: Option<Value>,
    status: u16,
    response: Option<Value>,
    handler: MethodRouter<AppState>,
) -> Endpoint {
    Endpoint {
        method,
        path,
        wapi: !path.starts_with("/v1") && !path.starts_with("/{version}") && path != "/metrics",
        summary,
        request,
        status,
        response,
        handler,
    }
}

/// A path parameter's schema: the pattern the handler checks.
fn path_param(name: &str) -> Value {
    let pattern = match name {
        // Session names (wapi's routes call them `id`).
        "name" | "id" => "^[A-Za-z0-9_-]{1,64}$",
        "media_id" => "^med_[0-9a-f]{32}$",
        "event_id" => "^[A-Za-z0-9_]{1,64}$",
        "message_id" => "^[A-Za-z0-9._-]{1,128}$",
        "version" => "^v[0-9]{1,4}\\.[0-9]{1,4}$",
        "group" => "^[0-9]{1,32}(-[0-9]{1,31})?(@g\\.us)?$",
        // A session name (phone number id) or a media id.
        "phone_number_id" | "object_id" => "^[A-Za-z0-9_-]{1,64}$",
        // A phone number, or a user, LID or group JID.
        "chat" | "contact" => {
            "^(\\+?[0-9]{1,20}|[0-9A-Za-z.:_-]{1,64}@(s\\.whatsapp\\.net|lid|g\\.us))$"
        }
        _ => return json!({"type": "string"}),
    };
    json!({"type": "string", "pattern": pattern})
}

/// The error statuses a route can answer, from what it does.
fn error_statuses(e: &Endpoint) -> Vec<(u16, &'static str)> {
    let mut out = Vec::new();
    let public = e.path == "/v1/health" || e.path == "/v1/users/login";
    let named = e.path.contains('{');
    if named || e.request.is_some() || e.method != "get" {
        out.push((400, "bad input: the message names the field"));
    }
    if !public || e.path == "/v1/users/login" {
        out.push((401, "no valid credential"));
    }
    if !public {
        out.push((403, "the credential does not reach this session or route"));
    }
    // Also the routes whose body names the session.
    if named || e.path == "/send-message/" {
        out.push((404, "no such session, message, media or event"));
    }
    let session_work = (e.path.starts_with("/v1/sessions/{name}/")
        && !e.path.contains("/webhooks")
        && !e.path.ends_with("/keys"))
        || e.path == "/{version}/{phone_number_id}/messages";
    if session_work
        || e.path == "/send-message/"
        || e.path == "/v1/sessions"
        || e.path == "/register-session/"
    {
        out.push((409, "the session is not WORKING, or already exists"));
    }
    if e.request.is_some() || e.method == "post" || e.method == "patch" {
        out.push((413, "the body is too large"));
    }
    out.push((429, "rate limit: retry after Retry-After seconds"));
    if session_work || e.path == "/send-message/" {
        out.push((502, "WhatsApp refused or failed the request"));
        out.push((504, "WhatsApp did not answer in time"));
    }
    out.push((
        503,
        "the store is unreachable, or the bridge is shutting down",
    ));
    out
}

/// The OpenAPI 3.0 document of every route in [`super::routes::endpoints`].
pub fn build() -> Value {
    let error = json!({"type": "object", "properties": {
        "meta": {"type": "object"},
        "error": {"type": "string", "description": "wapi routes"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "code": {"type": "integer"}, "title": {"type": "string"}, "details": {"type": "string"}}}},
    }});
    // The Cloud API routes answer the Graph API's errors.
    let graph_error = json!({"type": "object", "required": ["error"], "properties": {
        "error": {"type": "object", "required": ["message", "type", "code", "fbtrace_id"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"},
            "error_subcode": {"type": "integer"},
            "error_data": {"type": "object", "properties": {
                "messaging_product": {"type": "string"}, "details": {"type": "string"}}},
            "fbtrace_id": {"type": "string"}}},
    }});
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for e in super::routes::endpoints() {
        let params: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": path_param(p)}))
            .collect();
        let png = json!({"schema": {"type": "string", "format": "binary"}});
        let mut ok = json!({"description": "success"});
        if let Some(schema) = &e.response {
            ok["content"] = json!({"application/json": {"schema": schema}});
            // The QR code is a PNG unless JSON is asked for.
            if e.path.contains("qr") {
                ok["content"]["image/png"] = png.clone();
            }
        } else if e.path.contains("qr") {
            ok["content"] = json!({"image/png": png});
        } else if e.path == "/v1/events" {
            ok["content"] = json!({"text/event-stream": {"schema": {"type": "string"}}});
        } else if e.path == "/metrics" {
            ok["content"] = json!({"text/plain": {"schema": {"type": "string"}}});
        } else if e.path.ends_with("/file") {
            ok["content"] = json!({"*/*": {"schema": {"type": "string", "format": "binary"}}});
        }
        let mut op = json!({
            "summary": e.summary,
            "operationId": format!("{}{}", e.method, e.path.replace(['/', '{', '}', '-', '.'], "_")),
            "responses": { e.status.to_string(): ok },
        });
        let cloud = e.path.starts_with("/{version}");
        for (code, why) in error_statuses(&e) {
            let schema = if cloud { &graph_error } else { &error };
            op["responses"][code.to_string()] = json!({"description": why,
                "content": {"application/json": {"schema": schema}}});
        }
        if e.path.ends_with("/file") {
            op["responses"]["206"] = json!({"description": "the range asked for",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}});
            op["responses"]["304"] = json!({"description": "not modified (If-None-Match)"});
            op["responses"]["416"] = json!({"description": "a range outside the file"});
        }
        if !params.is_empty() {
            op["parameters"] = json!(params);
        }
        if e.path == "/v1/events" {
            op["parameters"] = json!([{"name": "session", "in": "query", "required": false,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}]);
        }
        if e.path == "/{version}/{object_id}" {
            // The Graph API's: the media must belong to this phone number;
            // and, for a phone number, the fields to answer.
            let mut q = vec![
                json!({"name": "phone_number_id", "in": "query", "required": false,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}),
            ];
            if e.method == "get" {
                q.push(json!({"name": "fields", "in": "query", "required": false,
                    "description": "comma-separated field names (a phone number)",
                    "schema": {"type": "string"}}));
            }
            if let Some(list) = op["parameters"].as_array_mut() {
                list.extend(q);
            }
        }
        if let Some(schema) = &e.request {
            let mut schema = schema.clone();
            hoist(&mut schema, &mut schemas);
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
        } else if e.path.ends_with("/media") && e.method == "post" {
            let binary = json!({"type": "string", "format": "binary", "minLength": 1});
            op["requestBody"] = if cloud {
                json!({"required": true, "content": {
                    "multipart/form-data": {"schema": {"type": "object",
                        "required": ["file", "messaging_product"],
                        "properties": {"file": binary,
                            "messaging_product": {"type": "string", "enum": ["whatsapp"]},
                            "type": {"type": "string", "description": "the file's MIME type"}},
                        "additionalProperties": false}},
                }})
            } else {
                json!({"required": true, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                        "properties": {"file": binary}, "additionalProperties": false}},
                    "application/octet-stream": {"schema": binary},
                }})
            };
        }
        if e.path != "/v1/health" && e.path != "/v1/users/login" {
            op["security"] = json!([{"bearer": []}, {"apiKey": []}]);
        }
        let entry = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        entry[e.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "wapi", "version": env!("CARGO_PKG_VERSION"),
                 "description": "A multi-session WhatsApp Web bridge"},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "basic": {"type": "http", "scheme": "basic"},
        }},
    })
}

pub async fn document(State(_): State<Arc<Manager>>) -> Response {
    axum::Json(build()).into_response()
}

/// A page that renders the document, with nothing loaded from elsewhere.
pub async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("docs.html"),
    )
        .into_response()
}
