//! The group phase: one session makes a group of many contacts and sends
//! to it; how long until every member's inbox has the message. The first
//! message also distributes the session's sender key to every member
//! device (one Signal message each, after fetching their prekeys); the
//! second is one `skmsg` the server fans out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wa_sim::SimHandle;

use crate::run::{Api, round, session_name};

/// The contacts of the group.
fn member_phone(i: usize) -> String {
    format!("1999{i:07}")
}

async fn post(api: &Api, path: &str, body: Value) -> anyhow::Result<Value> {
    let r = api
        .http
        .post(format!("{}{path}", api.base))
        .json(&body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("{path}: HTTP {} {}", r.status(), r.text().await?);
    }
    Ok(r.json().await?)
}

/// A message to the group; seconds until all `members` inboxes hold it.
async fn fan_out(
    api: &Api,
    sim: &Arc<SimHandle>,
    group: &str,
    members: usize,
    text: &str,
) -> anyhow::Result<f64> {
    let name = session_name(0);
    let t = Instant::now();
    let sent = post(
        api,
        &format!("/v1/sessions/{name}/messages"),
        json!({"to": group, "text": text}),
    )
    .await?;
    let id = sent["id"].as_str().context("message id")?.to_string();
    api.until(
        Duration::from_secs(120),
        "the group message in every member's inbox",
        || async { (0..members).all(|i| sim.inbox(&member_phone(i)).iter().any(|m| m.id == id)) },
    )
    .await?;
    Ok(t.elapsed().as_secs_f64())
}

pub async fn group(api: &Api, sim: &Arc<SimHandle>, members: usize) -> anyhow::Result<Value> {
    let name = session_name(0);
    let participants: Vec<String> = (0..members).map(member_phone).collect();
    let t = Instant::now();
    let g = post(
        api,
        &format!("/v1/sessions/{name}/groups"),
        json!({"subject": "bench", "participants": participants}),
    )
    .await?;
    let created = t.elapsed().as_secs_f64();
    let id = g["id"].as_str().context("group id")?.to_string();
    if g["size"].as_u64() != Some(members as u64 + 1) {
        bail!("group of {} members, not {}", g["size"], members + 1);
    }
    let first = fan_out(api, sim, &id, members, "first: with the sender key").await?;
    let second = fan_out(api, sim, &id, members, "second: one skmsg").await?;
    Ok(json!({
        "members": members,
        "create_s": round(created, 3),
        "first_message_all_inboxes_s": round(first, 3),
        "next_message_all_inboxes_s": round(second, 3),
    }))
}
