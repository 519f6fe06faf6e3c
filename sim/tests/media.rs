//! Media through wa-sim with the real whatsapp-rust 0.7.0 client: uploads
//! (small and resumable-size), contacts' media of every kind, expired media
//! and re-upload requests, and the admin API's checks.
//!
//! The client trusts exactly the simulator's media certificate
//! (`harness::media_http_client`); every wait is bounded.

mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use harness::{Client, admin, eventually, link_media, within};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use whatsapp_rust::download::{Downloadable, MediaType};
use whatsapp_rust::media::{self, DocumentOptions, ImageOptions};
use whatsapp_rust::prelude::*;
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::{MediaRetryResult, MediaReuploadRequest};

const FAST: Duration = Duration::from_secs(2);
const ACCOUNT: &str = "15550001111";
const CONTACT: &str = "15550002222";

/// Deterministic test bytes that do not compress or repeat.
fn file(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn contact_jid() -> Jid {
    format!("{CONTACT}@s.whatsapp.net").parse().unwrap()
}

/// The contact sends a message through the admin API; returns its id.
async fn contact_sends(sim: &wa_sim::SimHandle, body: Value) -> String {
    harness::contact_sends(sim, CONTACT, body).await
}

/// Waits for the message `id` and returns it with its chat.
async fn received(c: &mut Client, id: &str) -> (Arc<wa::Message>, Jid) {
    let m = c.received(id).await;
    (m.message, m.info.source.chat.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_image_reaches_the_contact_inbox_intact() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let c = link_media(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let data = file(150_000, 1);
    let up = within(
        FAST,
        c.client
            .upload(data.clone(), MediaType::Image, UploadOptions::default()),
    )
    .await
    .expect("upload in time")
    .expect("upload");
    assert!(
        up.direct_path.starts_with("/v/t62.7118-24/") && !up.direct_path.contains('?'),
        "{}",
        up.direct_path
    );
    assert_eq!(
        up.url,
        format!("https://{}{}", sim.media_host(), up.direct_path)
    );
    let msg = media::image_message(
        up,
        ImageOptions {
            caption: Some("a cat".into()),
            mimetype: Some("image/png".into()),
            ..Default::default()
        },
    );
    let sent = within(FAST, c.client.send_message(contact_jid(), msg))
        .await
        .expect("send in time")
        .expect("send");
    let m = eventually(FAST, || {
        sim.inbox(CONTACT)
            .into_iter()
            .find(|m| m.id == sent.message_id)
    })
    .await
    .expect("in the inbox within 2 s");
    assert_eq!(m.media_error, None);
    assert_eq!(m.kind, "image");
    assert_eq!(m.mimetype.as_deref(), Some("image/png"));
    assert_eq!(m.caption.as_deref(), Some("a cat"));
    assert_eq!(m.text, "a cat");
    assert_eq!(m.size, Some(data.len() as u64));
    assert_eq!(m.sha256, Some(sha_hex(&data)));
    assert_eq!(m.from, format!("{ACCOUNT}:1@s.whatsapp.net"));
    // The inbox JSON carries the same.
    let (_, json) = admin(
        &sim,
        "GET",
        &format!("/contacts/{CONTACT}/messages"),
        json!({}),
    )
    .await;
    let entry = &json["messages"][0];
    assert_eq!(entry["type"], "image");
    assert_eq!(entry["sha256"], sha_hex(&data));
    assert_eq!(entry["size"], data.len());
    assert!(entry.get("media_error").is_none(), "{entry}");
    let stats = sim.media_stats();
    assert_eq!((stats.uploads, stats.blobs), (1, 1));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_document_goes_through_the_resume_probe_and_arrives_intact() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let c = link_media(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let data = file(20 << 20, 2);
    let slow = Duration::from_secs(30);
    let up = within(
        slow,
        c.client
            .upload(data.clone(), MediaType::Document, UploadOptions::default()),
    )
    .await
    .expect("upload in time")
    .expect("upload");
    // Files of 5 MiB or more ask first whether the upload exists already.
    let probes = sim
        .world()
        .media
        .resume_probes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(probes, 1);
    // ... and, told it does not, upload from scratch.
    assert_eq!(sim.media_stats().uploads, 1);
    let msg = media::document_message(
        up,
        DocumentOptions {
            file_name: Some("big.bin".into()),
            ..Default::default()
        },
    );
    let sent = c.client.send_message(contact_jid(), msg).await.unwrap();
    let m = eventually(slow, || {
        sim.inbox(CONTACT)
            .into_iter()
            .find(|m| m.id == sent.message_id)
    })
    .await
    .expect("in the inbox");
    assert_eq!(m.media_error, None);
    assert_eq!(m.kind, "document");
    assert_eq!(m.file_name.as_deref(), Some("big.bin"));
    assert_eq!(m.mimetype.as_deref(), Some("application/octet-stream"));
    assert_eq!(m.size, Some(data.len() as u64));
    assert_eq!(m.sha256, Some(sha_hex(&data)));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_downloads_every_kind_of_media_a_contact_sends() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_media(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let kinds = ["image", "video", "audio", "voice", "document", "sticker"];
    let mut first_image = None;
    for (i, kind) in kinds.into_iter().enumerate() {
        let data = file(20_000 + i * 1000, 10 + i as u64);
        let id = contact_sends(
            &sim,
            json!({
                "to": ACCOUNT, "type": kind, "base64": b64(&data), "caption": "look",
                "file_name": "report.pdf", "push_name": "Alice",
            }),
        )
        .await;
        let (m, _) = received(&mut c, &id).await;
        let x: &dyn Downloadable = match kind {
            "image" => {
                let x = m.image_message.as_option().expect("image_message");
                assert_eq!(x.mimetype.as_deref(), Some("image/jpeg"));
                assert_eq!(x.caption.as_deref(), Some("look"));
                first_image = Some(x.clone());
                x
            }
            "video" => {
                let x = m.video_message.as_option().expect("video_message");
                assert_eq!(x.mimetype.as_deref(), Some("video/mp4"));
                x
            }
            "audio" | "voice" => {
                let x = m.audio_message.as_option().expect("audio_message");
                assert_eq!(x.ptt, Some(kind == "voice"), "{kind}");
                assert_eq!(x.mimetype.as_deref(), Some("audio/ogg; codecs=opus"));
                x
            }
            "document" => {
                let x = m.document_message.as_option().expect("document_message");
                assert_eq!(x.file_name.as_deref(), Some("report.pdf"));
                assert_eq!(x.caption.as_deref(), Some("look"));
                x
            }
            _ => {
                let x = m.sticker_message.as_option().expect("sticker_message");
                assert_eq!(x.mimetype.as_deref(), Some("image/webp"));
                x
            }
        };
        let got = within(FAST, c.client.download(x)).await.expect("in time");
        assert!(got.expect(kind) == data, "{kind}: downloaded bytes differ");
    }
    assert_eq!(sim.media_stats().downloads, 6);

    // A download delay holds the body back.
    let (status, _) = admin(
        &sim,
        "POST",
        "/media/settings",
        json!({"download_delay_ms": 300}),
    )
    .await;
    assert_eq!(status, 200);
    let image = first_image.unwrap();
    let started = Instant::now();
    within(FAST, c.client.download(&image))
        .await
        .expect("in time")
        .expect("download");
    assert!(started.elapsed() >= Duration::from_millis(300));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_media_is_uploaded_again_on_request() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_media(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let data = file(30_000, 3);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let id = contact_sends(
        &sim,
        json!({"to": ACCOUNT, "type": "image", "base64": b64, "expired": true}),
    )
    .await;
    let (m, chat) = received(&mut c, &id).await;
    let image = m.image_message.as_option().unwrap().clone();
    let gone = within(FAST, c.client.download(&image))
        .await
        .expect("an answer in time");
    let gone = gone.expect_err("downloaded expired media");
    assert!(format!("{gone:#}").contains("410"), "{gone:#}");

    let key = image.media_key.clone().unwrap();
    let request = MediaReuploadRequest {
        msg_id: &id,
        chat_jid: &chat,
        media_key: &key,
        is_from_me: false,
        participant: None,
    };
    let result = within(FAST, c.client.media_reupload().request(&request))
        .await
        .expect("answered in time")
        .expect("re-upload");
    let MediaRetryResult::Success { direct_path } = result else {
        panic!("not re-uploaded: {result:?}");
    };
    assert_ne!(Some(&direct_path), image.direct_path.as_ref());
    let mut fresh = image.clone();
    fresh.direct_path = Some(direct_path);
    let got = within(FAST, c.client.download(&fresh))
        .await
        .expect("in time")
        .expect("download after re-upload");
    assert!(got == data, "re-uploaded bytes differ");
    assert_eq!(sim.media_stats().reuploads, 1);
    // The client acknowledges the notification: it leaves the offline queue.
    eventually(FAST, || {
        let st = sim.world().lock();
        let queue = &st.accounts[ACCOUNT].devices[&1].queue;
        (!queue.iter().any(|n| n.tag == "notification")).then_some(())
    })
    .await
    .expect("notification acknowledged");

    // A phone that no longer has the file says so at once.
    let id = contact_sends(
        &sim,
        json!({"to": ACCOUNT, "type": "image", "base64": b64, "expired": true, "reupload": false}),
    )
    .await;
    let (m, chat) = received(&mut c, &id).await;
    let key = m
        .image_message
        .as_option()
        .unwrap()
        .media_key
        .clone()
        .unwrap();
    let request = MediaReuploadRequest {
        msg_id: &id,
        chat_jid: &chat,
        media_key: &key,
        is_from_me: false,
        participant: None,
    };
    let result = within(FAST, c.client.media_reupload().request(&request))
        .await
        .expect("answered well before the client's 30 s timeout")
        .expect("an answer");
    assert!(matches!(result, MediaRetryResult::NotFound), "{result:?}");
    assert_eq!(sim.media_stats().reuploads, 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_the_cdn_reject_bad_media_requests() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let path = format!("/contacts/{CONTACT}/messages");
    let cases = [
        (
            json!({"to": ACCOUNT, "type": "gif", "base64": "AAAA"}),
            400,
            "type",
        ),
        (
            json!({"to": ACCOUNT, "type": "image", "base64": "not base64!"}),
            400,
            "base64",
        ),
        (json!({"to": ACCOUNT, "type": "image"}), 400, "base64"),
        (
            json!({"to": ACCOUNT, "type": "video", "base64": ""}),
            400,
            "base64",
        ),
        (json!({"to": ACCOUNT}), 400, "text"),
        (
            json!({"to": ACCOUNT, "type": "image", "base64": "AAAA"}),
            404,
            "to",
        ),
    ];
    for (body, want, field) in cases {
        let (status, json) = admin(&sim, "POST", &path, body.clone()).await;
        assert_eq!(status, want, "{body}: {json}");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(field), "{body}: {error}");
    }
    let (status, _) = admin(
        &sim,
        "POST",
        "/media/settings",
        json!({"download_delay_ms": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    let (_, stats) = admin(&sim, "GET", "/media/stats", json!({})).await;
    assert_eq!(
        stats,
        json!({"uploads": 0, "downloads": 0, "blobs": 0, "reuploads": 0})
    );
    let pem = reqwest::get(format!("{}/media/certificate", sim.admin_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(pem, sim.media_ca_pem());
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    // The CDN itself, over TLS that verifies the certificate.
    let base = format!("https://{}", sim.media_host());
    let auth = sim.world().media.auth.clone();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![
                    ureq::tls::Certificate::from_pem(pem.as_bytes()).unwrap(),
                ])))
                .build(),
        )
        .http_status_as_error(false)
        .build()
        .into();
    let statuses = tokio::task::spawn_blocking(move || {
        let body = b"not what the token says".to_vec();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&body));
        let upload = |auth: &str, token: &str, body: &[u8]| {
            agent
                .post(format!(
                    "{base}/mms/image/{token}?auth={auth}&token={token}"
                ))
                .send(body)
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        };
        [
            upload("wrong", &token, &body),
            upload(&auth, &token, b"other bytes"),
            upload(&auth, &token, &body),
            agent
                .get(format!(
                    "{base}/v/t62.7118-24/nothing.enc?auth={auth}&token=x"
                ))
                .call()
                .map(|r| r.status().as_u16())
                .unwrap_or(0),
        ]
    })
    .await
    .unwrap();
    assert_eq!(statuses, [401, 400, 200, 404]);
    assert_eq!(sim.media_stats().uploads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_video_from_a_contact_downloads_intact() {
    // Alone: tens of MiB of crypto on both cores.
    let _alone = harness::heavy().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_media(&sim, &dir.path().join("a.db"), ACCOUNT, "Acme").await;
    let data = file(64 << 20, 4);
    let sha = Sha256::digest(&data);
    let media = wa_sim::ContactMedia::new(wa_sim::MediaKind::Video, data);
    let id = sim
        .contact_send_media(CONTACT, ACCOUNT, media, Some("Alice"))
        .await
        .expect("send");
    let (m, _) = received(&mut c, &id).await;
    let video = m.video_message.as_option().expect("video_message");
    assert_eq!(video.file_length, Some(64 << 20));
    let started = Instant::now();
    let got = within(Duration::from_secs(30), c.client.download(video))
        .await
        .expect("in time")
        .expect("download");
    eprintln!("64 MiB download: {:?}", started.elapsed());
    assert!(Sha256::digest(&got) == sha, "downloaded bytes differ");
    c.stop().await;
}
