//! Credentials, session keys, login tokens, rate limits, the `/v1`
//! envelope, body limits, health with the store down, and random input.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use wapi::config::{Clock, Secret};

use crate::support::*;

const KEY: &str = "test-api-key-0123456789";

fn secured(cfg: &mut wapi::config::Config, clock: &Arc<AtomicU64>) {
    cfg.auth.api_keys = vec![Secret(KEY.into())];
    cfg.auth.admin = Some(("admin".into(), Secret("s3cret pass".into())));
    cfg.clock = Clock::offset(clock.clone());
}

async fn call(
    bridge: &Bridge,
    method: reqwest::Method,
    path: &str,
    auth: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut req = bridge
        .http
        .request(method, format!("{}{path}", bridge.base));
    if let Some((h, v)) = auth {
        req = req.header(h, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn bearer(t: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {t}"))
}

fn basic(user: &str, pass: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_tokens_and_session_scopes() {
    use reqwest::Method as M;
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(0));
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    secured(&mut cfg, &clock);
    let bridge = Bridge::start(cfg.clone()).await;

    // No credential, a wrong one, then the key both ways.
    let (s, v) = call(&bridge, M::GET, "/v1/sessions", None).await;
    assert_eq!(s, 401);
    assert_eq!(v["errors"][0]["code"], 401);
    assert!(v["errors"][0]["title"].is_string());
    assert!(error_text(&v).unwrap().contains("credential"));
    assert_eq!(v["meta"]["api_status"], "stable");
    let wrong = bearer("test-api-key-0123456780");
    assert_eq!(
        call(&bridge, M::GET, "/v1/sessions", Some((wrong.0, &wrong.1)))
            .await
            .0,
        401
    );
    let (s, v) = call(&bridge, M::GET, "/v1/sessions", Some(("x-api-key", KEY))).await;
    assert_eq!(s, 200);
    assert_eq!(v["meta"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["sessions"].is_array());
    assert_eq!(v["access"], "admin");
    let key = bearer(KEY);
    let k = Some((key.0, key.1.as_str()));
    // The wapi routes follow the same rule; health needs nothing.
    assert_eq!(
        call(&bridge, M::GET, "/get-session-info/a/", None).await.0,
        401
    );
    let (s, v) = call(&bridge, M::GET, "/v1/health", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["auth_required"], true);

    // Session keys: sessions a and b, a key for a.
    for n in ["a", "b"] {
        let r = bridge
            .http
            .post(format!("{}/v1/sessions", bridge.base))
            .header("x-api-key", KEY)
            .json(&json!({"name": n, "start": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let (s, v) = call(&bridge, M::POST, "/v1/sessions/a/keys", k).await;
    assert_eq!(s, 201);
    let a_key = bearer(v["key"].as_str().unwrap());
    let a = Some((a_key.0, a_key.1.as_str()));
    assert_eq!(call(&bridge, M::GET, "/v1/sessions/a", a).await.0, 200);
    assert_eq!(
        call(&bridge, M::GET, "/get-session-info/a/", a).await.0,
        200
    );
    assert_eq!(call(&bridge, M::GET, "/v1/sessions/b", a).await.0, 403);
    // The list answers with its own session only; it may not create one.
    let (s, v) = call(&bridge, M::GET, "/v1/sessions", a).await;
    assert_eq!(s, 200);
    assert_eq!(v["access"], "session");
    let names: Vec<&str> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a"]);
    let r = bridge
        .http
        .post(format!("{}/v1/sessions", bridge.base))
        .header(a_key.0, &a_key.1)
        .json(&json!({"name": "c", "start": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        call(&bridge, M::POST, "/v1/sessions/a/keys", a).await.0,
        403
    );
    let r = bridge
        .http
        .post(format!("{}/send-message/", bridge.base))
        .header(a_key.0, &a_key.1)
        .json(&json!({"chat_id": "15550002222", "text": "x", "session_name": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Login tokens: wrong password, then a token that works.
    let (s, _) = call(
        &bridge,
        M::POST,
        "/v1/users/login",
        Some(("authorization", &basic("admin", "nope"))),
    )
    .await;
    assert_eq!(s, 401);
    let (s, v) = call(
        &bridge,
        M::POST,
        "/v1/users/login",
        Some(("authorization", &basic("admin", "s3cret pass"))),
    )
    .await;
    assert_eq!(s, 200);
    let user = &v["users"][0];
    let expires = chrono::DateTime::parse_from_rfc3339(user["expires_after"].as_str().unwrap())
        .expect("RFC 3339");
    let in_days = (expires.timestamp() - chrono::Utc::now().timestamp()) / 86_400;
    assert!((6..=7).contains(&in_days), "{in_days} days");
    let token = bearer(user["token"].as_str().unwrap());
    let t = Some((token.0, token.1.as_str()));
    assert_eq!(call(&bridge, M::GET, "/v1/sessions", t).await.0, 200);

    // Kept in the store: a restarted bridge takes the token and the key.
    bridge.stop().await;
    let bridge = Bridge::start(cfg).await;
    assert_eq!(call(&bridge, M::GET, "/v1/sessions", t).await.0, 200);
    assert_eq!(call(&bridge, M::GET, "/v1/sessions/a", a).await.0, 200);

    // Seven days on, the token has expired; a new one is revoked by logout.
    clock.store(7 * 86_400 + 1, Ordering::SeqCst);
    assert_eq!(call(&bridge, M::GET, "/v1/sessions", t).await.0, 401);
    let (_, v) = call(
        &bridge,
        M::POST,
        "/v1/users/login",
        Some(("authorization", &basic("admin", "s3cret pass"))),
    )
    .await;
    let token = bearer(v["users"][0]["token"].as_str().unwrap());
    let t = Some((token.0, token.1.as_str()));
    assert_eq!(call(&bridge, M::GET, "/v1/sessions", t).await.0, 200);
    assert_eq!(call(&bridge, M::POST, "/v1/users/logout", t).await.0, 200);
    assert_eq!(call(&bridge, M::GET, "/v1/sessions", t).await.0, 401);

    // A session deleted and made again does not inherit its old keys.
    assert_eq!(call(&bridge, M::DELETE, "/v1/sessions/a", k).await.0, 204);
    let r = bridge
        .http
        .post(format!("{}/v1/sessions", bridge.base))
        .header("x-api-key", KEY)
        .json(&json!({"name": "a", "start": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(call(&bridge, M::GET, "/v1/sessions/a", a).await.0, 403);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_body_limits_and_health_without_the_store() {
    let sim = sim().await;
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Redis(redis.url.clone()));
    cfg.rate_limit.per_second = 1;
    cfg.rate_limit.burst = 5;
    let bridge = Bridge::start(cfg).await;

    for _ in 0..5 {
        assert_eq!(bridge.get("/v1/sessions").await.status(), 200);
    }
    let r = bridge.get("/v1/sessions").await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], 429);
    // Per endpoint: another route still has its own allowance.
    assert_eq!(bridge.get("/v1/health").await.status(), 200);

    // Wrong types and unknown fields: 400 naming the field.
    for (body, field) in [
        (json!({"name": 5}), "name"),
        (json!({"name": "ok", "start": "yes"}), "start"),
        (json!({"name": "ok", "colour": "red"}), "colour"),
        (
            json!({"name": "ok", "webhook_events": "message"}),
            "webhook_events",
        ),
    ] {
        let r = bridge
            .http
            .post(format!("{}/v1/sessions", bridge.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        let e = error_text(&v).unwrap();
        assert!(e.starts_with(field), "{body}: {e}");
    }
    let r = bridge
        .post(
            "/v1/sessions/x/webhooks/dead/..%2F..%2Fetc/replay",
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 400);

    // Over 1 MiB: 413, in the envelope.
    let big = json!({"name": "x".repeat(1024 * 1024 + 10)});
    let r = bridge.post("/register-session/", big.clone()).await;
    assert_eq!(r.status(), 413);
    let r = bridge
        .http
        .patch(format!("{}/v1/sessions/zz", bridge.base))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], 413);

    // The store goes away: health says so with 503, and comes back.
    let h = bridge.json("/v1/health").await;
    assert_eq!(h["store"], "ok");
    let port = redis.kill();
    let r = bridge.get("/v1/health").await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["store"], "unreachable");
    let _redis = Redis::start_on(port).await;
    eventually(DEADLINE, "health 200 again", || async {
        (bridge.get("/v1/health").await.status() == 200).then_some(())
    })
    .await;
    bridge.stop().await;
}

/// Random methods, paths, headers and bodies: never a 5xx, never a panic
/// (a panic in a handler would drop the connection or answer 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_get_a_5xx() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(0));
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    secured(&mut cfg, &clock);
    cfg.rate_limit.burst = 100_000;
    cfg.rate_limit.per_second = 100_000;
    let bridge = Bridge::start(cfg).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let paths = [
        "/register-session/",
        "/send-message",
        "/get-qr-code/{s}/",
        "/get-session-info/{s}",
        "/get-active-connection-info/{s}/",
        "/v1/health",
        "/v1/sessions",
        "/v1/sessions/{s}",
        "/v1/sessions/{s}/start",
        "/v1/sessions/{s}/stop",
        "/v1/sessions/{s}/qr",
        "/v1/sessions/{s}/messages",
        "/v1/sessions/{s}/webhooks",
        "/v1/sessions/{s}/webhooks/dead",
        "/v1/sessions/{s}/webhooks/dead/{s}/replay",
        "/v1/sessions/{s}/keys",
        "/v1/users/login",
        "/v1/users/logout",
        "/v1/openapi.json",
        "/metrics",
        "/docs",
        "/{s}",
    ];
    let segments = [
        "fz", "a", "..", "%2e%2e", "%00", "x%2Fy", "ÿ", "a b", "", "-", "evt_1", "%ZZ",
    ];
    let fields = [
        "session_id",
        "name",
        "webhook_url",
        "webhook_format",
        "webhook_events",
        "webhook_secret",
        "chat_id",
        "text",
        "session_name",
        "to",
        "start",
        "phone",
    ];
    let values = [
        json!(null),
        json!(1),
        json!(-1),
        json!(1e300),
        json!(true),
        json!("fz"),
        json!(""),
        json!("http://127.0.0.1:1/x"),
        json!(["message"]),
        json!([1, 2]),
        json!({"a": {}}),
        json!("x".repeat(3000)),
        json!("cloud"),
        json!("\u{0}"),
    ];
    for i in 0..1500 {
        let method = methods[rng.random_range(0..methods.len())];
        let mut path = paths[rng.random_range(0..paths.len())].to_string();
        while path.contains("{s}") {
            let seg = segments[rng.random_range(0..segments.len())];
            path = path.replacen("{s}", seg, 1);
        }
        let mut req = bridge.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", bridge.base),
        );
        match rng.random_range(0..4) {
            0 => req = req.header("x-api-key", KEY),
            1 => {
                req = req.header(
                    "authorization",
                    format!("Bearer {}", "z".repeat(rng.random_range(0..200))),
                )
            }
            2 => req = req.header("authorization", basic("admin", "s3cret pass")),
            _ => {}
        }
        if rng.random_bool(0.3) {
            req = req.header("accept", "application/json");
        }
        let body: Vec<u8> = match rng.random_range(0..4) {
            0 => Vec::new(),
            1 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            2 => {
                let mut o = serde_json::Map::new();
                for _ in 0..rng.random_range(0..5) {
                    let f = fields[rng.random_range(0..fields.len())];
                    o.insert(f.into(), values[rng.random_range(0..values.len())].clone());
                }
                serde_json::to_vec(&o).unwrap()
            }
            _ => serde_json::to_vec(&values[rng.random_range(0..values.len())]).unwrap(),
        };
        if rng.random_bool(0.7) {
            req = req.header("content-type", "application/json");
        }
        let r = req.body(body).send().await;
        let r = r.unwrap_or_else(|e| panic!("request {i} {method} {path}: no answer: {e}"));
        assert!(
            r.status().as_u16() < 500,
            "request {i} {method} {path}: {}",
            r.status()
        );
    }
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_generated_certificate_and_only_https() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let cert = dir.path().join(format!("{name}.crt"));
        let key = dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (cert, key, ck.cert.pem())
    };
    let (cert, key, pem) = make("a");
    let (_, other_key, _) = make("b");

    // A key of another certificate, and a file that is not there: start-up
    // stops, naming the variable.
    for (files, var) in [
        ((cert.clone(), other_key), "WAPI_CERT_KEY_PATH"),
        (
            (dir.path().join("none.crt"), key.clone()),
            "WAPI_CERT_FILE_PATH",
        ),
    ] {
        let mut cfg = config(&sim, &dir.path().join("bad"), &StoreKind::Embedded);
        cfg.tls = Some(wapi::tls::TlsFiles {
            cert: files.0,
            key: files.1,
        });
        let e = wapi::App::start(cfg).await.err().expect("refused");
        assert!(e.to_string().contains(var), "{e}");
    }

    let mut cfg = config(&sim, &dir.path().join("ok"), &StoreKind::Embedded);
    cfg.tls = Some(wapi::tls::TlsFiles { cert, key });
    let bridge = Bridge::start(cfg).await;
    let port = bridge.app.addr().port();
    let trusting = |max: Option<reqwest::tls::Version>| {
        let mut b = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
        if let Some(v) = max {
            b = b.max_tls_version(v);
        }
        b.build().unwrap()
    };
    for max in [None, Some(reqwest::tls::Version::TLS_1_2)] {
        let r = trusting(max)
            .get(format!("https://localhost:{port}/v1/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Plain HTTP gets nothing; a client that does not trust the
    // certificate cannot connect.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/v1/health"))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );
    assert!(
        reqwest::get(format!("https://localhost:{port}/v1/health"))
            .await
            .is_err()
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_covers_every_route() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(0));
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    secured(&mut cfg, &clock);
    let bridge = Bridge::start(cfg).await;
    assert_eq!(bridge.get("/v1/openapi.json").await.status(), 401);
    let r = bridge
        .http
        .get(format!("{}/v1/openapi.json", bridge.base))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let raw: Value = r.json().await.unwrap();
    let doc: openapiv3::OpenAPI =
        serde_json::from_value(raw.clone()).expect("an OpenAPI 3 document");
    assert_eq!(doc.openapi, "3.0.3");
    let routes = [
        ("post", "/register-session/"),
        ("post", "/send-message/"),
        ("get", "/get-qr-code/{id}/"),
        ("get", "/get-session-info/{id}/"),
        ("get", "/get-active-connection-info/{id}/"),
        ("get", "/v1/health"),
        ("get", "/v1/openapi.json"),
        ("post", "/v1/sessions"),
        ("get", "/v1/sessions"),
        ("get", "/v1/sessions/{name}"),
        ("patch", "/v1/sessions/{name}"),
        ("delete", "/v1/sessions/{name}"),
        ("post", "/v1/sessions/{name}/start"),
        ("post", "/v1/sessions/{name}/stop"),
        ("post", "/v1/sessions/{name}/restart"),
        ("post", "/v1/sessions/{name}/logout"),
        ("get", "/v1/sessions/{name}/qr"),
        ("post", "/v1/sessions/{name}/pair-code"),
        ("post", "/v1/sessions/{name}/messages"),
        ("patch", "/v1/sessions/{name}/messages/{message_id}"),
        ("delete", "/v1/sessions/{name}/messages/{message_id}"),
        ("post", "/v1/sessions/{name}/chats/{chat}/read"),
        ("post", "/v1/sessions/{name}/chats/{chat}/presence"),
        ("post", "/v1/sessions/{name}/presence"),
        ("post", "/v1/sessions/{name}/contacts/check"),
        ("get", "/v1/sessions/{name}/contacts/{contact}"),
        ("post", "/v1/sessions/{name}/contacts/{contact}/subscribe"),
        ("post", "/v1/sessions/{name}/media"),
        ("get", "/v1/media/{media_id}"),
        ("get", "/v1/media/{media_id}/file"),
        ("delete", "/v1/media/{media_id}"),
        ("get", "/v1/sessions/{name}/webhooks"),
        ("get", "/v1/sessions/{name}/webhooks/dead"),
        ("post", "/v1/sessions/{name}/webhooks/dead/replay"),
        (
            "post",
            "/v1/sessions/{name}/webhooks/dead/{event_id}/replay",
        ),
        ("post", "/v1/sessions/{name}/keys"),
        ("post", "/v1/users/login"),
        ("post", "/v1/users/logout"),
        ("get", "/metrics"),
        ("get", "/v1/events"),
        ("get", "/v1/sessions/{name}/groups"),
        ("post", "/v1/sessions/{name}/groups"),
        ("post", "/v1/sessions/{name}/groups/join"),
        ("get", "/v1/sessions/{name}/groups/{group}"),
        ("patch", "/v1/sessions/{name}/groups/{group}"),
        ("post", "/v1/sessions/{name}/groups/{group}/participants"),
        ("post", "/v1/sessions/{name}/groups/{group}/leave"),
        ("get", "/v1/sessions/{name}/groups/{group}/invite"),
        ("post", "/v1/sessions/{name}/groups/{group}/invite/reset"),
        ("post", "/{version}/{phone_number_id}/messages"),
        ("post", "/{version}/{phone_number_id}/media"),
        ("get", "/{version}/{object_id}"),
        ("delete", "/{version}/{object_id}"),
    ];
    let documented: usize = raw["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, routes.len(), "no route more, none less");
    for (method, path) in routes {
        let op = &raw["paths"][path][method];
        assert!(op["responses"].is_object(), "{method} {path} is documented");
        // And it is served: never a 404 for a missing route or a 405.
        let url = format!(
            "{}{}",
            bridge.base,
            path.replace("{id}", "nope")
                .replace("{name}", "nope")
                .replace("{event_id}", "e")
                .replace("{message_id}", "3EB0AA")
                .replace("{chat}", "15550001111")
                .replace("{contact}", "15550001111")
                .replace("{media_id}", "med_00000000000000000000000000000000")
                .replace("{version}", "v22.0")
                .replace("{group}", "120363000000000001")
                .replace("{phone_number_id}", "nope")
                .replace("{object_id}", "nope")
        );
        let r = bridge
            .http
            .request(
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                url,
            )
            .header("x-api-key", KEY)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 405, "{method} {path}");
    }
    let create = &raw["paths"]["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert!(create["properties"]["name"].is_object(), "{create}");
    assert!(
        create["properties"]["webhook_format"].is_object(),
        "{create}"
    );

    // The page renders it with nothing fetched from elsewhere.
    let html = bridge.get("/docs").await.text().await.unwrap();
    assert!(html.contains("/v1/openapi.json"));
    assert!(!html.contains("://"), "no external asset");
    bridge.stop().await;
}

/// `WAPI_ENV=dev` (wapi's meaning) accepts a receiver whose certificate
/// does not verify; `prod` does not deliver to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_accepts_a_self_signed_receiver_and_prod_does_not() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let files = wapi::tls::TlsFiles {
        cert: dir.path().join("r.crt"),
        key: dir.path().join("r.key"),
    };
    std::fs::write(&files.cert, ck.cert.pem()).unwrap();
    std::fs::write(&files.key, ck.signing_key.serialize_pem()).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let app = {
        let got = got.clone();
        axum::Router::new().route(
            "/{*path}",
            axum::routing::post(move || {
                let got = got.clone();
                async move {
                    got.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        )
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(
        wapi::tls::server_config(&files).unwrap(),
    );
    tokio::spawn(async move {
        let _ = axum_server::from_tcp_rustls(listener, tls)
            .serve(app.into_make_service())
            .await;
    });
    let url = format!("https://localhost:{port}/hook");

    for (dev, phone) in [(false, "15550006621"), (true, "15550006622")] {
        let mut cfg = config(&sim, &dir.path().join(phone), &StoreKind::Embedded);
        cfg.webhook.insecure_receivers = dev;
        let bridge = Bridge::start(cfg).await;
        got.store(0, Ordering::SeqCst);
        bridge.link(&sim, "tls1", &url, phone).await;
        sim.contact_send("15550002222", phone, "over https", None)
            .await
            .unwrap();
        if dev {
            eventually(
                DEADLINE,
                "delivered to the self-signed receiver",
                || async { (got.load(Ordering::SeqCst) > 0).then_some(()) },
            )
            .await;
        } else {
            let stats = eventually(DEADLINE, "a failed attempt", || async {
                let s = bridge.json("/v1/sessions/tls1/webhooks").await;
                (s["retrying"].as_u64()? > 0).then_some(s)
            })
            .await;
            assert!(stats["last_error"].is_string(), "{stats}");
            assert_eq!(got.load(Ordering::SeqCst), 0, "nothing reached it");
        }
        bridge.stop().await;
    }
}
