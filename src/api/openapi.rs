//! The route table: the router and the OpenAPI document are both made from
//! it, so the document cannot leave a route out or describe one that is not
//! there. Request schemas come from the request types (schemars); response
//! schemas are written next to their routes.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
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

fn request<T: JsonSchema>() -> Option<Value> {
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
fn send_request() -> Option<Value> {
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
fn object(fields: &[(&str, Value)]) -> Value {
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

fn t(ty: &str) -> Value {
    Value::String(ty.into())
}

fn session() -> Value {
    object(&[
        ("name", t("string")),
        (
            "status",
            json!({"type": "string", "enum": ["STARTING", "SCAN_QR_CODE", "WORKING", "RECONNECTING", "STOPPED", "LOGGED_OUT", "FAILED"]}),
        ),
        ("reason", json!({"type": "string", "nullable": true})),
        ("jid", json!({"type": "string", "nullable": true})),
        ("push_name", json!({"type": "string", "nullable": true})),
        ("webhook_url", json!({"type": "string", "nullable": true})),
        (
            "webhook_format",
            json!({"type": "string", "enum": ["native", "cloud", "wapi"]}),
        ),
        (
            "webhook_events",
            json!({"type": "array", "items": {"type": "string"}, "nullable": true}),
        ),
        ("webhook_secret_set", t("boolean")),
        (
            "webhook_media",
            json!({"type": "string", "enum": ["url", "base64"]}),
        ),
        ("webhook_verify_token_set", t("boolean")),
        ("created_at", t("integer")),
        ("connected", t("boolean")),
    ])
}

fn media_record() -> Value {
    let nullable = |ty: &str| json!({"type": ty, "nullable": true});
    object(&[
        ("id", t("string")),
        ("session", t("string")),
        ("mimetype", t("string")),
        ("sha256", t("string")),
        ("size", t("integer")),
        ("file_name", nullable("string")),
        ("message_id", nullable("string")),
        ("type", nullable("string")),
        ("created_at", t("integer")),
        ("url", t("string")),
    ])
}

fn group_view() -> Value {
    let nullable = |ty: &str| json!({"type": ty, "nullable": true});
    object(&[
        ("id", t("string")),
        ("subject", t("string")),
        ("description", nullable("string")),
        ("owner", nullable("string")),
        ("created_at", nullable("integer")),
        ("announce", t("boolean")),
        ("locked", t("boolean")),
        ("addressing_mode", t("string")),
        ("size", t("integer")),
        (
            "participants",
            json!({"type": "array", "items": object(&[
                ("jid", t("string")),
                ("lid", nullable("string")),
                ("role", json!({"type": "string", "enum": ["member", "admin", "superadmin"]})),
            ])}),
        ),
        ("invite_link", t("string")),
    ])
}

fn outbox_event() -> Value {
    object(&[
        ("id", t("string")),
        ("event", t("string")),
        ("attempts", t("integer")),
        ("last_status", json!({"type": "integer", "nullable": true})),
        ("last_error", json!({"type": "string", "nullable": true})),
        ("body", t("object")),
    ])
}

#[allow(clippy::too_many_arguments)]
fn ep(
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

pub fn endpoints() -> Vec<Endpoint> {
    let replayed = object(&[("replayed", t("integer"))]);
    let invite = object(&[
        ("id", t("string")),
        ("code", t("string")),
        ("link", t("string")),
    ]);
    vec![
        ep(
            "post",
            "/register-session/",
            "wapi: create (if needed) and start a session",
            request::<RegisterReq>(),
            200,
            Some(object(&[
                ("session_id", t("string")),
                ("status", t("string")),
                ("qr_url", t("string")),
            ])),
            post(register),
        ),
        ep(
            "post",
            "/send-message/",
            "wapi: send a text",
            request::<SendMessageReq>(),
            200,
            Some(object(&[("message_id", t("string"))])),
            post(send_message),
        ),
        ep(
            "get",
            "/get-qr-code/{id}/",
            "wapi: the QR code as a PNG",
            None,
            200,
            None,
            get(qr_png),
        ),
        ep(
            "get",
            "/get-session-info/{id}/",
            "wapi: a session",
            None,
            200,
            Some(object(&[
                ("session_id", t("string")),
                ("status", t("string")),
                ("reason", json!({"type": "string", "nullable": true})),
                ("jid", json!({"type": "string", "nullable": true})),
                ("push_name", json!({"type": "string", "nullable": true})),
                ("webhook_url", json!({"type": "string", "nullable": true})),
                ("created_at", t("integer")),
            ])),
            get(session_info),
        ),
        ep(
            "get",
            "/get-active-connection-info/{id}/",
            "wapi: the session's connection",
            None,
            200,
            Some(object(&[
                ("connected", t("boolean")),
                ("jid", json!({"type": "string", "nullable": true})),
                ("since", json!({"type": "integer", "nullable": true})),
                ("reconnects", t("integer")),
            ])),
            get(connection_info),
        ),
        ep(
            "get",
            "/v1/health",
            "Store state and sessions per status (no credential; 503 without the store)",
            None,
            200,
            Some(object(&[
                ("ok", t("boolean")),
                ("store", t("string")),
                ("sessions", t("object")),
                ("queued", json!({"type": "integer", "nullable": true})),
                (
                    "whatsapp_version",
                    object(&[
                        ("version", t("string")),
                        ("source", t("string")),
                        ("pinned", t("boolean")),
                    ]),
                ),
                (
                    "deliveries",
                    object(&[
                        ("delivered", t("integer")),
                        ("retried", t("integer")),
                        ("dead", t("integer")),
                    ]),
                ),
            ])),
            get(health),
        ),
        ep(
            "get",
            "/v1/openapi.json",
            "This document",
            None,
            200,
            Some(t("object").into_schema()),
            get(document),
        ),
        ep(
            "post",
            "/v1/sessions",
            "Create a session",
            request::<CreateReq>(),
            201,
            Some(session()),
            post(create),
        ),
        ep(
            "get",
            "/v1/sessions",
            "All sessions",
            None,
            200,
            Some(object(&[(
                "sessions",
                json!({"type": "array", "items": session()}),
            )])),
            get(list),
        ),
        ep(
            "get",
            "/v1/sessions/{name}",
            "A session",
            None,
            200,
            Some(session()),
            get(show),
        ),
        ep(
            "patch",
            "/v1/sessions/{name}",
            "Change a session's webhook settings",
            request::<PatchReq>(),
            200,
            Some(session()),
            patch(super::patch),
        ),
        ep(
            "delete",
            "/v1/sessions/{name}",
            "Log out and delete a session",
            None,
            204,
            None,
            delete(super::delete),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/start",
            "Start",
            None,
            200,
            Some(session()),
            post(start),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/stop",
            "Stop (kept stopped across restarts)",
            None,
            200,
            Some(session()),
            post(stop),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/restart",
            "Restart the client",
            None,
            200,
            Some(session()),
            post(restart),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/logout",
            "Unlink the device",
            None,
            200,
            Some(session()),
            post(logout),
        ),
        ep(
            "get",
            "/v1/sessions/{name}/qr",
            "The QR code: PNG, or JSON with Accept: application/json",
            None,
            200,
            Some(object(&[
                ("code", t("string")),
                ("png_base64", t("string")),
                ("expires_at", t("integer")),
            ])),
            get(qr),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/pair-code",
            "Link with a pair code instead of a QR code",
            request::<PairCodeReq>(),
            200,
            Some(object(&[("code", t("string"))])),
            post(pair_code),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/messages",
            "Send a message: text, a file (image, video, audio, voice, document, sticker; by media_id, url or base64), a location, contact cards, a reaction or a poll; any kind may answer a message (reply_to) and mention people",
            send_request(),
            201,
            Some(object(&[("id", t("string")), ("to", t("string"))])),
            post(super::messages::send),
        ),
        ep(
            "patch",
            "/v1/sessions/{name}/messages/{message_id}",
            "Edit the text of a message this session sent",
            request::<super::messages::EditReq>(),
            200,
            Some(object(&[("id", t("string")), ("status", t("string"))])),
            patch(super::messages::edit),
        ),
        ep(
            "delete",
            "/v1/sessions/{name}/messages/{message_id}",
            "Delete a message this session sent, for everyone",
            None,
            200,
            Some(object(&[("id", t("string")), ("status", t("string"))])),
            delete(super::messages::revoke),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/chats/{chat}/read",
            "Mark messages of a chat read (the sender sees blue ticks)",
            request::<super::chats::ReadReq>(),
            200,
            Some(object(&[("chat", t("string")), ("read", t("integer"))])),
            post(super::chats::read),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/chats/{chat}/presence",
            "Show typing (composing), recording or paused in a chat",
            request::<super::chats::ChatStateReq>(),
            200,
            Some(object(&[("chat", t("string")), ("state", t("string"))])),
            post(super::chats::chat_state),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/presence",
            "Set the session's own presence: available or unavailable",
            request::<super::chats::PresenceReq>(),
            200,
            Some(object(&[("state", t("string"))])),
            post(super::chats::presence),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/contacts/check",
            "Which phone numbers are on WhatsApp (at most 300 a minute per session)",
            request::<super::contacts::CheckReq>(),
            200,
            Some(object(&[(
                "results",
                json!({"type": "array", "items": object(&[
                    ("phone", t("string")),
                    ("exists", t("boolean")),
                    ("jid", json!({"type": "string", "nullable": true})),
                    ("lid", json!({"type": "string", "nullable": true})),
                ])}),
            )])),
            post(super::contacts::check),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/contacts/{contact}/subscribe",
            "Receive a contact's online and last-seen updates (as presence events)",
            None,
            200,
            Some(object(&[
                ("jid", t("string")),
                ("subscribed", t("boolean")),
            ])),
            post(super::contacts::subscribe),
        ),
        ep(
            "get",
            "/v1/sessions/{name}/contacts/{contact}",
            "A contact's profile: JID, LID, status text, profile picture URL",
            None,
            200,
            Some(object(&[
                ("jid", t("string")),
                ("lid", json!({"type": "string", "nullable": true})),
                ("status", json!({"type": "string", "nullable": true})),
                ("picture_url", json!({"type": "string", "nullable": true})),
                ("picture_id", json!({"type": "string", "nullable": true})),
            ])),
            get(super::contacts::profile),
        ),
        ep(
            "get",
            "/v1/events",
            "Every event the webhooks carry, live, as Server-Sent Events (event: the kind, id: the event id, data: the native envelope); ?session= keeps one session's. A live view, not a queue",
            None,
            200,
            None,
            get(super::events::stream),
        ),
        ep(
            "get",
            "/v1/sessions/{name}/groups",
            "The groups the session's account is in",
            None,
            200,
            Some(object(&[(
                "groups",
                json!({"type": "array", "items": group_view()}),
            )])),
            get(super::groups::list),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/groups",
            "Create a group with these participants (the session is its owner)",
            request::<super::groups::CreateReq>(),
            201,
            Some(group_view()),
            post(super::groups::create),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/groups/join",
            "Join a group by its invite code or link",
            request::<super::groups::JoinReq>(),
            200,
            Some(object(&[
                ("id", t("string")),
                ("pending_approval", t("boolean")),
            ])),
            post(super::groups::join),
        ),
        ep(
            "get",
            "/v1/sessions/{name}/groups/{group}",
            "A group: subject, description, owner, participants with roles, settings, and the invite link for an admin",
            None,
            200,
            Some(group_view()),
            get(super::groups::show),
        ),
        ep(
            "patch",
            "/v1/sessions/{name}/groups/{group}",
            "Change a group's subject, description, announce (only admins send) or locked (only admins edit)",
            request::<super::groups::PatchReq>(),
            200,
            Some(group_view()),
            patch(super::groups::update),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/groups/{group}/participants",
            "Add, remove, promote or demote participants; a result per participant",
            request::<super::groups::ParticipantsReq>(),
            200,
            Some(object(&[(
                "results",
                json!({"type": "array", "items": object(&[
                    ("jid", t("string")),
                    ("ok", t("boolean")),
                    ("error", json!({"type": "object", "nullable": true, "properties": {
                        "code": {"type": "integer", "nullable": true},
                        "reason": {"type": "string"}}})),
                ])}),
            )])),
            post(super::groups::participants),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/groups/{group}/leave",
            "Leave a group",
            None,
            200,
            Some(object(&[("id", t("string")), ("left", t("boolean"))])),
            post(super::groups::leave),
        ),
        ep(
            "get",
            "/v1/sessions/{name}/groups/{group}/invite",
            "The group's invite code and link (admins)",
            None,
            200,
            Some(invite.clone()),
            get(super::groups::invite),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/groups/{group}/invite/reset",
            "A new invite link; the old one stops working (admins)",
            None,
            200,
            Some(invite),
            post(super::groups::reset_invite),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/media",
            "Upload a file (multipart part `file`, or the raw body with its Content-Type) to send later by its id",
            None,
            201,
            Some(object(&[
                ("id", t("string")),
                ("mimetype", t("string")),
                ("sha256", t("string")),
                ("size", t("integer")),
            ])),
            post(super::media::upload),
        ),
        ep(
            "get",
            "/v1/media/{media_id}",
            "A stored file's metadata (uploaded, or downloaded from an incoming message)",
            None,
            200,
            Some(media_record()),
            get(super::media::show),
        ),
        ep(
            "get",
            "/v1/media/{media_id}/file",
            "A stored file's bytes (Range and If-None-Match supported)",
            None,
            200,
            None,
            get(super::media::file),
        ),
        ep(
            "delete",
            "/v1/media/{media_id}",
            "Delete a stored file",
            None,
            204,
            None,
            delete(super::media::remove),
        ),
        ep(
            "get",
            "/v1/sessions/{name}/webhooks",
            "Webhook outbox counts",
            None,
            200,
            Some(object(&[
                ("pending", t("integer")),
                ("retrying", t("integer")),
                ("dead", t("integer")),
                ("delivered", t("integer")),
                ("last_error", json!({"type": "string", "nullable": true})),
            ])),
            get(webhook_stats),
        ),
        ep(
            "get",
            "/v1/sessions/{name}/webhooks/dead",
            "Dead letters",
            None,
            200,
            Some(object(&[(
                "dead",
                json!({"type": "array", "items": outbox_event()}),
            )])),
            get(dead_letters),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/webhooks/dead/replay",
            "Queue every dead letter again",
            None,
            200,
            Some(replayed.clone()),
            post(replay_all),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/webhooks/dead/{event_id}/replay",
            "Queue one dead letter again",
            None,
            200,
            Some(replayed),
            post(replay_one),
        ),
        ep(
            "post",
            "/v1/sessions/{name}/keys",
            "A key that can use this session only",
            None,
            201,
            Some(object(&[("session", t("string")), ("key", t("string"))])),
            post(session_key),
        ),
        ep(
            "post",
            "/v1/users/login",
            "Exchange the admin's HTTP Basic credentials for a 7-day token",
            None,
            200,
            Some(object(&[(
                "users",
                json!({"type": "array", "items": object(&[("token", t("string")), ("expires_after", json!({"type": "string", "format": "date-time"}))])}),
            )])),
            post(login),
        ),
        ep(
            "post",
            "/v1/users/logout",
            "Revoke the login token of the request",
            None,
            200,
            Some(t("object").into_schema()),
            post(logout_user),
        ),
        ep(
            "post",
            "/{version}/{phone_number_id}/messages",
            "Cloud API: send a message (text, image, video, audio, document, sticker, location, contacts, reaction; context.message_id replies), or mark one read (status: read) and show typing",
            request::<super::cloud::CloudSend>(),
            200,
            Some(json!({"oneOf": [
                object(&[
                    ("messaging_product", t("string")),
                    ("contacts", json!({"type": "array", "items": object(&[
                        ("input", t("string")),
                        ("wa_id", t("string")),
                        ("user_id", t("string")),
                    ])})),
                    ("messages", json!({"type": "array", "items": object(&[("id", t("string"))])})),
                ]),
                object(&[("success", t("boolean"))]),
            ]})),
            post(super::cloud::messages),
        ),
        ep(
            "post",
            "/{version}/{phone_number_id}/media",
            "Cloud API: upload a file (multipart: file, type, messaging_product) to send by its id",
            None,
            200,
            Some(object(&[("id", t("string"))])),
            post(super::cloud::upload),
        ),
        ep(
            "get",
            "/{version}/{object_id}",
            "Cloud API: a media object (by media id; its url downloads the file with the same token) or the phone number (by session name)",
            None,
            200,
            Some(json!({"oneOf": [
                object(&[
                    ("messaging_product", t("string")),
                    ("url", t("string")),
                    ("mime_type", t("string")),
                    ("sha256", t("string")),
                    ("file_size", t("integer")),
                    ("id", t("string")),
                ]),
                object(&[
                    ("id", t("string")),
                    ("verified_name", t("string")),
                    ("display_phone_number", t("string")),
                    ("quality_rating", t("string")),
                    ("code_verification_status", t("string")),
                    ("platform_type", t("string")),
                    ("throughput", t("object")),
                    ("account_mode", t("string")),
                    ("status", t("string")),
                    ("messaging_limit_tier", t("string")),
                    ("webhook_configuration", t("object")),
                ]),
            ]})),
            get(super::cloud::object),
        ),
        ep(
            "delete",
            "/{version}/{object_id}",
            "Cloud API: delete a media object",
            None,
            200,
            Some(object(&[("success", t("boolean"))])),
            delete(super::cloud::delete),
        ),
        ep(
            "get",
            "/metrics",
            "Prometheus metrics (text)",
            None,
            200,
            None,
            get(metrics),
        ),
    ]
}

trait IntoSchema {
    fn into_schema(self) -> Value;
}

impl IntoSchema for Value {
    fn into_schema(self) -> Value {
        match self {
            Value::String(ty) => json!({ "type": ty }),
            other => other,
        }
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

/// The OpenAPI 3.0 document of every route in [`endpoints`].
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
    for e in endpoints() {
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
