//! The WhatsApp Web version: the service worker that advertises it, and the
//! minimum below which logins are refused with `<failure reason="405"/>`
//! (whatsapp-rust's `Event::ClientOutdated`), with the real client.
//!
//! Every wait is bounded and event-driven.

mod harness;

use std::time::Duration;

use harness::{Client, admin, admin_list, link_new, within};
use serde_json::{Value, json};
use whatsapp_rust::prelude::*;

const FAST: Duration = Duration::from_secs(2);
const PHONE: &str = "15550001111";
const JID: &str = "15550001111:1@s.whatsapp.net";

async fn fetch_sw_js(url: &str) -> String {
    let r = reqwest::get(url).await.expect("GET /sw.js");
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/javascript"), "{ct}");
    r.text().await.unwrap()
}

async fn version(sim: &wa_sim::SimHandle) -> Value {
    let (status, json) = admin(sim, "GET", "/version", Value::Null).await;
    assert_eq!(status, 200, "{json}");
    json
}

fn device_json(devices: &[Value], jid: &str) -> Value {
    devices
        .iter()
        .find(|d| d["jid"] == jid)
        .cloned()
        .unwrap_or_else(|| panic!("no device {jid} in {devices:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sw_js_advertises_the_current_revision_and_counts_fetches() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let url = sim.sw_js_url();
    assert_eq!(url, format!("http://{}/sw.js", sim.addr()));

    let v = version(&sim).await;
    assert_eq!(
        v,
        json!({
            "current": "2.3000.1030000000",
            "current_revision": 1_030_000_000u32,
            "min_revision": null,
            "sw_js_fetches": 0,
        })
    );

    let body = fetch_sw_js(&url).await;
    assert_eq!(
        wacore::version::parse_sw_js(&body),
        Some((2, 3000, 1_030_000_000)),
        "{body}"
    );
    assert_eq!(version(&sim).await["sw_js_fetches"], 1);

    // A new release: the service worker says so at once.
    let (status, json) = admin(
        &sim,
        "POST",
        "/version",
        json!({ "current_revision": 1_031_234_567u32 }),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["current"], "2.3000.1031234567");
    assert_eq!(json["min_revision"], Value::Null);
    let body = fetch_sw_js(&url).await;
    assert_eq!(
        wacore::version::parse_sw_js(&body),
        Some((2, 3000, 1_031_234_567))
    );
    let v = version(&sim).await;
    assert_eq!(v["sw_js_fetches"], 2);
    assert_eq!(v["current_revision"], 1_031_234_567u32);
    assert_eq!(sim.world().versions.info().sw_js_fetches, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_client_is_refused_and_the_current_one_logs_in_again() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");

    // Linked with the harness's version, 2.3000.0: no minimum, accepted.
    let mut old = link_new(&sim, &db, PHONE, "Acme").await;
    let d = device_json(&admin_list(&sim, "/devices", "devices").await, JID);
    assert_eq!(d["version"], "2.3000.0", "{d}");
    assert_eq!(d["logins"], 1, "{d}");

    // WhatsApp stops accepting anything older than the current release.
    let (status, json) = admin(
        &sim,
        "POST",
        "/version",
        json!({ "min_revision": 1_030_000_000u32 }),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["min_revision"], 1_030_000_000u32);

    // Raising the minimum does not drop the connected device by itself.
    let d = device_json(&admin_list(&sim, "/devices", "devices").await, JID);
    assert_eq!(d["connected"], true, "{d}");

    // Its next connection is refused: ClientOutdated, and no reconnect loop.
    let (status, json) = admin(
        &sim,
        "POST",
        &format!(
            "/devices/{}/disconnect",
            JID.replace(':', "%3A").replace('@', "%40")
        ),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    // The client's own reconnect backoff starts at 1 s.
    let raw = within(
        Duration::from_secs(5),
        old.wait(|e| matches!(e, Event::ClientOutdated(_) | Event::Connected(_))),
    )
    .await
    .expect("ClientOutdated on the next connection");
    let Event::ClientOutdated(co) = &*raw else {
        panic!("the outdated client logged in again: {raw:?}");
    };
    let failure = co.raw.as_ref().expect("the <failure> stanza");
    assert_eq!(failure.tag, "failure");
    assert_eq!(
        failure.attrs.get("reason").map(|v| v.as_str().into_owned()),
        Some("405".to_string())
    );
    let d = device_json(&admin_list(&sim, "/devices", "devices").await, JID);
    assert_eq!(d["connected"], false, "{d}");
    assert_eq!(d["logins"], 1, "a refused login is no login: {d}");
    assert_eq!(d["version"], "2.3000.0", "{d}");
    old.stop().await;

    // The same session with the current version: logs in, no re-pairing.
    let mut new = Client::start_with(&sim, &db, |b| b.with_version((2, 3000, 1_030_000_000))).await;
    let e = within(
        FAST,
        new.wait(|e| {
            matches!(
                e,
                Event::Connected(_) | Event::PairingQrCode(_) | Event::ClientOutdated(_)
            )
        }),
    )
    .await
    .expect("Connected with the current version");
    assert!(matches!(&*e, Event::Connected(_)), "{e:?}");
    assert_eq!(new.client.pn().expect("still paired").user, PHONE);
    let d = device_json(&admin_list(&sim, "/devices", "devices").await, JID);
    assert_eq!(d["version"], "2.3000.1030000000", "{d}");
    assert_eq!(d["logins"], 2, "{d}");
    assert_eq!(d["connected"], true, "{d}");

    // And it works: a contact's message arrives.
    let id = sim
        .contact_send("15550002222", PHONE, "still there?", None)
        .await
        .unwrap();
    new.received(&id).await;
    new.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_client_cannot_register_either() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (status, json) = admin(&sim, "POST", "/version", json!({ "min_revision": 5 })).await;
    assert_eq!(status, 200, "{json}");
    let mut c = Client::start(&sim, &dir.path().join("a.db")).await;
    let e = within(
        Duration::from_secs(5),
        c.wait(|e| matches!(e, Event::ClientOutdated(_) | Event::PairingQrCode(_))),
    )
    .await
    .expect("ClientOutdated");
    assert!(matches!(&*e, Event::ClientOutdated(_)), "{e:?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_admin_rejects_bad_input_naming_the_field() {
    let _load = harness::light().await;
    let sim = harness::sim().await;
    let cases = [
        (
            json!({ "current_revision": "1030000000" }),
            "current_revision",
        ),
        (json!({ "current_revision": -1 }), "current_revision"),
        (json!({ "current_revision": 0 }), "current_revision"),
        (
            json!({ "current_revision": 5_000_000_000u64 }),
            "current_revision",
        ),
        (json!({ "current_revision": 1.5 }), "current_revision"),
        (json!({ "min_revision": "x" }), "min_revision"),
        (json!({ "min_revision": 2_000_000_000u32 }), "min_revision"),
        (json!({ "minimum": 1 }), "minimum"),
        (json!([1, 2]), ""),
    ];
    for (body, field) in cases {
        let (status, json) = admin(&sim, "POST", "/version", body.clone()).await;
        assert_eq!(status, 400, "{body}: {json}");
        let msg = json["error"].as_str().unwrap_or_default();
        assert!(msg.starts_with(field), "{body}: {msg}");
    }
    // Not JSON at all.
    let r = reqwest::Client::new()
        .post(format!("{}/version", sim.admin_url()))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Nothing changed.
    let v = version(&sim).await;
    assert_eq!(v["current_revision"], 1_030_000_000u32);
    assert_eq!(v["min_revision"], Value::Null);

    // Both at once, then the minimum removed with null.
    let (status, json) = admin(
        &sim,
        "POST",
        "/version",
        json!({ "current_revision": 1_040_000_000u32, "min_revision": 1_035_000_000u32 }),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["current"], "2.3000.1040000000");
    assert_eq!(json["min_revision"], 1_035_000_000u32);
    // The current revision cannot drop below the minimum.
    let (status, json) = admin(
        &sim,
        "POST",
        "/version",
        json!({ "current_revision": 1_034_000_000u32 }),
    )
    .await;
    assert_eq!(status, 400, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("current_revision"),
        "{json}"
    );
    let (status, json) = admin(&sim, "POST", "/version", json!({ "min_revision": null })).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["min_revision"], Value::Null);
    // An empty body changes nothing.
    let (status, json) = admin(&sim, "POST", "/version", json!({})).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["current_revision"], 1_040_000_000u32);
}
