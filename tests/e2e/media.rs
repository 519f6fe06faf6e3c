//! Media both ways: contacts' files downloaded, checked and kept; files sent
//! by media id, URL and base64; expired files re-uploaded by the sender;
//! the media API and its refusals.

use std::time::Duration;

use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::*;

const KINDS: [&str; 6] = ["image", "video", "audio", "voice", "document", "sticker"];

pub(crate) fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub(crate) fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `n` bytes that differ per `seed` (a file per kind, none alike).
pub(crate) fn bytes(seed: u8, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

async fn media_stats(sim: &wa_sim::SimHandle) -> Value {
    reqwest::get(format!("{}/media/stats", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn file_of(api: &Api, id: &str) -> Vec<u8> {
    let r = api.get(&format!("/v1/media/{id}/file")).await;
    assert_eq!(r.status(), 200, "file {id}");
    r.bytes().await.unwrap().to_vec()
}

/// A test HTTP server serving `/f/{n}` (file n), plus misbehaving paths.
pub(crate) async fn file_server(files: Vec<Vec<u8>>) -> String {
    let files = std::sync::Arc::new(files);
    let app =
        axum::Router::new()
            .route(
                "/f/{n}",
                get(
                    |axum::extract::Path(n): axum::extract::Path<usize>,
                     axum::extract::State(f): axum::extract::State<
                        std::sync::Arc<Vec<Vec<u8>>>,
                    >| async move {
                        f.get(n).cloned().ok_or(axum::http::StatusCode::NOT_FOUND)
                    },
                ),
            )
            .route(
                "/missing",
                get(|| async { axum::http::StatusCode::NOT_FOUND }),
            )
            .route(
                "/slow",
                // Never answers: the fetch must give up at its timeout.
                get(std::future::pending::<&'static str>),
            )
            .route(
                "/loop",
                get(|| async { axum::response::Redirect::temporary("/loop") }),
            )
            .route(
                "/to-metadata",
                get(|| async {
                    axum::response::Redirect::temporary("http://169.254.169.254/latest/meta-data/")
                }),
            )
            .with_state(files);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// Contacts send every kind; each file is downloaded, kept and served with
/// the SHA-256 the contact sent. The session sends every kind by media id,
/// by URL and by base64; the contact decrypts each.
async fn round_trip(store: StoreKind, s3: Option<&S3>) {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &store);
    cfg.media.s3 = s3.map(S3::settings);
    let bridge = Bridge::start(cfg).await;
    let (me, contact) = ("15550007001", "15550007002");
    bridge.link(&sim, "m1", &format!("{}m1", rx.url), me).await;

    // Incoming: every kind, a 20 MiB document among them.
    for (i, kind) in KINDS.iter().enumerate() {
        let size = if *kind == "document" {
            20 << 20
        } else {
            40_000 + i * 1000
        };
        let file = bytes(i as u8, size);
        let id = contact_sends(
            &sim,
            contact,
            json!({"to": me, "type": kind, "base64": b64(&file), "caption": format!("a {kind}"),
                   "file_name": format!("{kind}.bin")}),
        )
        .await;
        let ev = event_of(&rx, &id, Duration::from_secs(30)).await;
        let p = &ev["payload"];
        assert_eq!(p["type"], *kind, "{ev}");
        let media_id = p["media"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("media id: {ev}"));
        assert!(p["media"]["error"].is_null(), "{ev}");
        assert_eq!(
            p["media"]["url"].as_str().unwrap(),
            format!("/v1/media/{media_id}/file")
        );
        let got = file_of(&bridge.api, media_id).await;
        assert_eq!(
            sha_hex(&got),
            sha_hex(&file),
            "{kind}: the bytes the contact sent"
        );
        let meta = bridge.json(&format!("/v1/media/{media_id}")).await;
        assert_eq!(meta["session"], "m1");
        assert_eq!(meta["message_id"], id.as_str());
        assert_eq!(meta["sha256"], sha_hex(&file));
        assert_eq!(meta["size"], size as u64);
        if *kind == "document" {
            assert_eq!(p["media"]["file_name"], "document.bin");
        }
        // The file is where the store was configured, and only there.
        let local = dir.path().join("media").join(format!("{media_id}.bin"));
        if let Some(s3) = s3 {
            assert!(
                s3.objects().contains(&format!("{media_id}.bin")),
                "in the bucket"
            );
            assert!(!local.exists(), "not on local disk");
        } else {
            assert!(local.exists(), "under files/media");
        }
    }

    // Outgoing: every kind from each of the three sources.
    let files: Vec<Vec<u8>> = (0..KINDS.len())
        .map(|i| bytes(100 + i as u8, 30_000 + i))
        .collect();
    let server = file_server(files.clone()).await;
    let mut expected = Vec::new();
    for (i, kind) in KINDS.iter().enumerate() {
        let file = &files[i];
        // Uploaded before: multipart for some, a raw body for the others.
        let uploaded: Value = if i % 2 == 0 {
            let part = reqwest::multipart::Part::bytes(file.clone()).file_name("f.bin");
            let form = reqwest::multipart::Form::new().part("file", part);
            let r = bridge
                .http
                .post(format!("{}/v1/sessions/m1/media", bridge.base))
                .multipart(form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json().await.unwrap()
        } else {
            let r = bridge
                .http
                .post(format!("{}/v1/sessions/m1/media", bridge.base))
                .header("content-type", "application/octet-stream")
                .body(file.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json().await.unwrap()
        };
        assert_eq!(uploaded["sha256"], sha_hex(file));
        assert_eq!(uploaded["size"], file.len() as u64);
        let sources = [
            json!({"media_id": uploaded["id"]}),
            json!({"url": format!("{server}/f/{i}")}),
            json!({"base64": b64(file)}),
        ];
        for source in sources {
            let mut body = json!({"to": contact, "type": kind, "caption": "from the bridge", "file_name": "x.bin"});
            for (k, v) in source.as_object().unwrap() {
                body[k] = v.clone();
            }
            let r = bridge.post("/v1/sessions/m1/messages", body.clone()).await;
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert_eq!(status, 201, "send {body}: {v}");
            expected.push((v["id"].as_str().unwrap().to_string(), *kind, sha_hex(file)));
        }
    }
    for (id, kind, sha) in &expected {
        let entry = eventually(Duration::from_secs(10), "the contact's inbox", || async {
            inbox(&sim, contact)
                .await
                .into_iter()
                .find(|m| m["id"] == id.as_str())
        })
        .await;
        assert_eq!(entry["type"], *kind, "{entry}");
        assert_eq!(entry["sha256"], sha.as_str(), "{entry}");
        assert!(entry["media_error"].is_null(), "{entry}");
    }

    // Ranges, ETags and deletion.
    let some = expected.len();
    assert_eq!(some, 18);
    let up: Value = bridge
        .http
        .post(format!("{}/v1/sessions/m1/media", bridge.base))
        .header("content-type", "text/plain")
        .body("0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = up["id"].as_str().unwrap();
    assert_eq!(up["mimetype"], "text/plain");
    let r = bridge
        .http
        .get(format!("{}/v1/media/{id}/file", bridge.base))
        .header("range", "bytes=2-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
    let etag = r.headers()["etag"].clone();
    assert_eq!(r.text().await.unwrap(), "234");
    let r = bridge
        .http
        .get(format!("{}/v1/media/{id}/file", bridge.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = bridge
        .http
        .delete(format!("{}/v1/media/{id}", bridge.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(bridge.get(&format!("/v1/media/{id}")).await.status(), 404);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_both_ways_on_the_embedded_store() {
    round_trip(StoreKind::Embedded, None).await;
}

/// The deployment of several nodes: Redis for state, S3 for files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_both_ways_on_redis_and_s3() {
    let redis = Redis::start().await;
    let s3 = S3::start().await;
    round_trip(StoreKind::Redis(redis.url.clone()), Some(&s3)).await;
}

/// A bucket that is missing or refuses the key stops the start, naming the
/// bucket, instead of failing at the first file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_s3_bucket_or_key_stops_the_start() {
    let sim = sim().await;
    let s3 = S3::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut wrong_bucket = s3.settings();
    wrong_bucket.bucket = "no-such-bucket".into();
    let mut wrong_key = s3.settings();
    wrong_key.secret_access_key = Some(wapi::config::Secret("not-the-secret".into()));
    for settings in [wrong_bucket, wrong_key] {
        let bucket = settings.bucket.clone();
        let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
        cfg.media.s3 = Some(settings);
        let err = within(Duration::from_secs(60), wapi::App::start(cfg))
            .await
            .err()
            .expect("the start is refused");
        assert!(format!("{err:#}").contains(&bucket), "{err:#}");
    }
}

/// The Cloud API format carries a media message as the Cloud API does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_format_media_fields() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    let (me, contact) = ("15550007101", "15550007102");
    bridge
        .link_with(
            &sim,
            json!({"session_id": "c1", "webhook_url": format!("{}c1", rx.url), "webhook_format": "cloud"}),
            me,
        )
        .await;
    let image = bytes(7, 5000);
    contact_sends(&sim, contact, json!({"to": me, "type": "image", "base64": b64(&image), "mimetype": "image/png", "caption": "look"})).await;
    contact_sends(
        &sim,
        contact,
        json!({"to": me, "type": "voice", "base64": b64(&bytes(8, 3000))}),
    )
    .await;
    contact_sends(&sim, contact, json!({"to": me, "type": "document", "base64": b64(&bytes(9, 3000)), "file_name": "invoice.pdf", "mimetype": "application/pdf"})).await;
    let msgs = eventually(Duration::from_secs(20), "three cloud messages", || async {
        let m: Vec<Value> = rx
            .deliveries()
            .into_iter()
            .map(|d| d.body["entry"][0]["changes"][0]["value"]["messages"][0].clone())
            .filter(|m| !m.is_null())
            .collect();
        (m.len() >= 3).then_some(m)
    })
    .await;
    let img = &msgs[0];
    assert_eq!(img["type"], "image");
    assert_eq!(img["image"]["mime_type"], "image/png");
    assert_eq!(img["image"]["caption"], "look");
    assert_eq!(
        img["image"]["sha256"],
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&image))
    );
    let id = img["image"]["id"].as_str().expect("a media id");
    assert_eq!(sha_hex(&file_of(&bridge.api, id).await), sha_hex(&image));
    assert_eq!(msgs[1]["type"], "audio");
    assert_eq!(msgs[1]["audio"]["voice"], true);
    assert!(msgs[1]["audio"]["id"].is_string());
    assert_eq!(msgs[2]["type"], "document");
    assert_eq!(msgs[2]["document"]["filename"], "invoice.pdf");
    bridge.stop().await;
}

/// An expired file is uploaded again by the sender's phone on request; when
/// the phone no longer has it, the event is posted with `media.error`, and
/// the events behind it are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_files_are_asked_for_again() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &StoreKind::Embedded)).await;
    let (me, contact) = ("15550007201", "15550007202");
    bridge.link(&sim, "e1", &format!("{}e1", rx.url), me).await;

    let file = bytes(21, 10_000);
    let id = contact_sends(
        &sim,
        contact,
        json!({"to": me, "type": "image", "base64": b64(&file), "expired": true}),
    )
    .await;
    let ev = event_of(&rx, &id, Duration::from_secs(40)).await;
    let media_id = ev["payload"]["media"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{ev}"));
    assert_eq!(
        sha_hex(&file_of(&bridge.api, media_id).await),
        sha_hex(&file)
    );
    assert_eq!(media_stats(&sim).await["reuploads"], 1);

    let lost = contact_sends(&sim, contact, json!({"to": me, "type": "document", "base64": b64(&file), "expired": true, "reupload": false})).await;
    let after = contact_sends(&sim, contact, json!({"to": me, "text": "are you there?"})).await;
    let ev = event_of(&rx, &lost, Duration::from_secs(40)).await;
    assert!(ev["payload"]["media"]["id"].is_null(), "{ev}");
    assert!(ev["payload"]["media"]["error"].is_string(), "{ev}");
    event_of(&rx, &after, DEADLINE).await;
    let order: Vec<String> = rx
        .deliveries()
        .iter()
        .filter(|d| d.body["event"] == "message")
        .map(|d| {
            d.body["payload"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(order, vec![id, lost, after], "in order, each once");
    bridge.stop().await;
}

/// Refusals: each a 4xx naming the field, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_media_input_gets_a_4xx_naming_the_field() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.media.max_bytes = 1 << 20;
    cfg.media.url_timeout = Duration::from_secs(1);
    let bridge = Bridge::start(cfg).await;
    bridge
        .link(&sim, "b1", "http://127.0.0.1:9/unused", "15550007301")
        .await;
    let server = file_server(vec![bytes(1, 100), bytes(2, 2 << 20)]).await;
    let send = |extra: Value| {
        let mut body = json!({"to": "15550007302", "type": "image"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (
            send(json!({"media_id": "med_00000000000000000000000000000000"})),
            404,
            "media_id",
        ),
        (send(json!({"media_id": "nope"})), 400, "media_id"),
        (
            send(json!({"url": format!("{server}/missing")})),
            400,
            "url",
        ),
        (send(json!({"url": format!("{server}/slow")})), 400, "url"),
        (send(json!({"url": format!("{server}/loop")})), 400, "url"),
        (send(json!({"url": format!("{server}/f/1")})), 413, "url"),
        (
            send(json!({"url": "http://169.254.169.254/latest/meta-data/"})),
            400,
            "url",
        ),
        (
            send(json!({"url": format!("{server}/to-metadata")})),
            400,
            "url",
        ),
        (send(json!({"url": "ftp://example.com/x"})), 400, "url"),
        (send(json!({"base64": "not base64!"})), 400, "base64"),
        (
            send(json!({"base64": b64(&bytes(3, (1 << 20) + 10))})),
            413,
            "base64",
        ),
        (send(json!({})), 400, "media_id, url, base64"),
        (
            send(json!({"base64": "AAAA", "url": format!("{server}/f/0")})),
            400,
            "media_id, url, base64",
        ),
        (
            json!({"to": "15550007302", "type": "hologram", "base64": "AAAA"}),
            400,
            "type",
        ),
        (json!({"to": "15550007302", "type": "text"}), 400, "text"),
    ];
    for (body, status, field) in cases {
        let r = within(
            Duration::from_secs(10),
            bridge.post("/v1/sessions/b1/messages", body.clone()),
        )
        .await;
        let got = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{body}: {v}");
        let text = error_text(&v).unwrap_or_default();
        assert!(text.starts_with(field), "{body}: {text}");
    }
    // Multipart: only one part, named file, not empty.
    for (form, field) in [
        (
            reqwest::multipart::Form::new()
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(b"abc".to_vec()).file_name("a"),
                )
                .text("caption", "x"),
            "caption",
        ),
        (reqwest::multipart::Form::new().text("other", "x"), "other"),
        (
            reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(Vec::new()).file_name("a"),
            ),
            "file",
        ),
    ] {
        let r = bridge
            .http
            .post(format!("{}/v1/sessions/b1/media", bridge.base))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{field}");
        let v: Value = r.json().await.unwrap();
        assert!(error_text(&v).unwrap_or_default().starts_with(field), "{v}");
    }
    // A raw upload over the limit.
    let r = bridge
        .http
        .post(format!("{}/v1/sessions/b1/media", bridge.base))
        .body(bytes(4, (1 << 20) + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        bridge
            .get("/v1/media/med_00000000000000000000000000000000")
            .await
            .status(),
        404
    );
    bridge.stop().await;

    // Without WAPI_MEDIA_URL_ALLOW_PRIVATE, loopback is refused too.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.media.allow_private_urls = false;
    cfg.auth.api_keys = vec![wapi::config::Secret("admin-key-0123456789".into())];
    let bridge = Bridge::start(cfg).await;
    let admin = |rb: reqwest::RequestBuilder| rb.header("x-api-key", "admin-key-0123456789");
    // A key of p2 (p1 is another session it must not reach).
    let key = sessions_and_key(&bridge, "admin-key-0123456789", &["p2", "p1"]).await;
    let up: Value = admin(
        bridge
            .http
            .post(format!("{}/v1/sessions/p1/media", bridge.base)),
    )
    .body("private to p1")
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = up["id"].as_str().unwrap();
    for path in [format!("/v1/media/{id}"), format!("/v1/media/{id}/file")] {
        let r = bridge
            .http
            .get(format!("{}{path}", bridge.base))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path} with p2's key");
    }
    let r = admin(bridge.http.get(format!("{}/v1/media/{id}", bridge.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The same rule for a webhook URL set with a session key; an admin
    // credential may point webhooks anywhere.
    let hook = json!({"webhook_url": "http://127.0.0.1:9/hook"});
    let r = bridge
        .http
        .patch(format!("{}/v1/sessions/p2", bridge.base))
        .header("x-api-key", &key)
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        error_text(&v)
            .unwrap_or_default()
            .starts_with("webhook_url"),
        "{v}"
    );
    let r = admin(bridge.http.patch(format!("{}/v1/sessions/p2", bridge.base)))
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The destination is checked before anything else.
    let r = admin(
        bridge
            .http
            .post(format!("{}/v1/sessions/p1/messages", bridge.base)),
    )
    .json(&json!({"to": "15550007302", "type": "image", "url": format!("{server}/f/0")}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(error_text(&v).unwrap_or_default().starts_with("url"), "{v}");
    bridge.stop().await;
}

/// The bridge process killed in the middle of a download: after the
/// restart the file is fetched and the event posted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_by_sigkill_is_done_after_the_restart() {
    let sim = sim().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("sim-media.pem");
    std::fs::write(&ca, sim.media_ca_pem()).unwrap();
    let root = dir.path().join("files");
    let env = [
        (
            "WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH",
            root.display().to_string(),
        ),
        ("WAPI_WHATSAPP_URL", sim.ws_url()),
        ("WAPI_WHATSAPP_VERSION_URL", sim.sw_js_url()),
        ("WAPI_SANDBOX_MEDIA_CA", ca.display().to_string()),
    ];
    let (me, contact) = ("15550007401", "15550007402");
    let port = port();
    let bridge = ChildBridge::start(port, &env).await;
    bridge.link(&sim, "k1", &format!("{}k1", rx.url), me).await;
    let r = admin_post(
        &sim,
        "/media/settings",
        json!({"download_delay_ms": 60_000}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let file = bytes(41, 200_000);
    let id = contact_sends(
        &sim,
        contact,
        json!({"to": me, "type": "image", "base64": b64(&file)}),
    )
    .await;
    // The download has begun once its staging file exists.
    let staging = root.join("media-tmp");
    eventually(Duration::from_secs(10), "a download in progress", || {
        let staging = staging.clone();
        async move {
            let n = std::fs::read_dir(&staging).ok()?.count();
            (n > 0).then_some(())
        }
    })
    .await;
    bridge.kill();
    assert!(rx.deliveries().iter().all(|d| d.body["event"] != "message"));
    let r = admin_post(&sim, "/media/settings", json!({"download_delay_ms": 0})).await;
    assert_eq!(r.status(), 200);
    let bridge = ChildBridge::start(port, &env).await;
    let ev = event_of(&rx, &id, Duration::from_secs(20)).await;
    let media_id = ev["payload"]["media"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{ev}"));
    assert_eq!(
        sha_hex(&file_of(&bridge.api, media_id).await),
        sha_hex(&file)
    );
    bridge.drained("k1").await;
    let posted = rx
        .deliveries()
        .iter()
        .filter(|d| d.body["event"] == "message" && d.body["payload"]["id"] == id.as_str())
        .count();
    assert_eq!(posted, 1);
}
