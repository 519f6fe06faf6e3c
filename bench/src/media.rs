//! The media phase: images received by many sessions (each downloaded,
//! checked and stored by the bridge before its webhook), and one large
//! document sent through the API; throughput and the bridge's peak memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wa_sim::{ContactMedia, MediaKind, SimHandle};

use crate::child::{cpu_time, peak_rss, reset_peak, rss};
use crate::receiver::Receiver;
use crate::run::{Api, MIB, contact_phone, round, session_name, session_phone};

/// Bytes that differ from file to file (no two files alike).
fn file(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            // xorshift: cheap, and not compressible by anything on the way.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `per` images of `bytes` to each of `sessions` at once, from their
/// contacts; MiB/s from the first send to the last webhook carrying a
/// stored file, and the bridge's peak RSS over its RSS before the phase.
pub async fn inbound(
    sim: &Arc<SimHandle>,
    hook: &Receiver,
    bridge_pid: u32,
    sessions: usize,
    per: usize,
    bytes: usize,
) -> anyhow::Result<Value> {
    let idle = rss(bridge_pid)?;
    reset_peak(bridge_pid)?;
    let (stored0, failed0) = hook.media();
    let total = (sessions * per) as u64;
    let (cpu0, t) = (cpu_time(bridge_pid)?, Instant::now());
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let sim = sim.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..per {
                let data = file((i * per + k) as u64, bytes);
                let media = ContactMedia::new(MediaKind::Image, data);
                sim.contact_send_media(&contact_phone(i), &session_phone(i), media, None)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let (stored, failed) = loop {
        let (s, f) = hook.media();
        if (s - stored0) + (f - failed0) >= total {
            break (s - stored0, f - failed0);
        }
        if Instant::now() > deadline {
            bail!(
                "media: {} of {total} images posted within 600 s",
                s - stored0
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    if failed > 0 {
        bail!("media: {failed} of {total} images posted without their file");
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = (cpu_time(bridge_pid)? - cpu0).as_secs_f64();
    let over = peak_rss(bridge_pid)?.saturating_sub(idle) as f64 / MIB;
    Ok(json!({
        "images": stored, "sessions": sessions, "image_bytes": bytes,
        "mib_per_s": round(total as f64 * bytes as f64 / MIB / secs, 1),
        "images_per_s": round(total as f64 / secs, 1),
        "bridge_cpu_cores": round(cpu / secs, 2),
        "idle_rss_mib": round(idle as f64 / MIB, 1),
        "peak_rss_over_idle_mib": round(over, 1),
        "within_256_mib": over <= 256.0,
    }))
}

/// One document of `bytes` uploaded to the media API (raw body) and sent by
/// its media id to a contact, who decrypts it; the bridge's peak RSS over
/// its RSS before.
pub async fn send_document(
    api: &Api,
    sim: &Arc<SimHandle>,
    bridge_pid: u32,
    bytes: usize,
) -> anyhow::Result<Value> {
    let data = file(u64::MAX, bytes);
    let sha = hex(&Sha256::digest(&data));
    let (name, to) = (session_name(0), contact_phone(0));
    let idle = rss(bridge_pid)?;
    reset_peak(bridge_pid)?;
    let t = Instant::now();
    let r = api
        .http
        .post(format!("{}/v1/sessions/{name}/media", api.base))
        .header("content-type", "application/pdf")
        .body(data)
        .send()
        .await?;
    if r.status() != 201 {
        bail!("upload: HTTP {} {}", r.status(), r.text().await?);
    }
    let up: Value = r.json().await?;
    let media_id = up["id"].as_str().context("media id")?.to_string();
    let uploaded = t.elapsed();
    let r = api
        .http
        .post(format!("{}/v1/sessions/{name}/messages", api.base))
        .json(&json!({"to": to, "type": "document", "media_id": media_id,
                      "file_name": "big.pdf"}))
        .send()
        .await?;
    if r.status() != 201 {
        bail!("send: HTTP {} {}", r.status(), r.text().await?);
    }
    let sent: Value = r.json().await?;
    let id = sent["id"].as_str().context("message id")?.to_string();
    let accepted = t.elapsed();
    api.until(
        Duration::from_secs(300),
        "the document in the contact's inbox",
        || async {
            sim.inbox(&to)
                .iter()
                .any(|m| m.id == id && m.sha256.as_deref() == Some(sha.as_str()))
        },
    )
    .await?;
    let over = peak_rss(bridge_pid)?.saturating_sub(idle) as f64 / MIB;
    Ok(json!({
        "document_mib": round(bytes as f64 / MIB, 1),
        "upload_s": round(uploaded.as_secs_f64(), 2),
        "send_accepted_s": round((accepted - uploaded).as_secs_f64(), 2),
        "in_inbox_s": round(t.elapsed().as_secs_f64(), 2),
        "idle_rss_mib": round(idle as f64 / MIB, 1),
        "peak_rss_over_idle_mib": round(over, 1),
    }))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
