//! The real whatsapp-rust 0.7.0 client against wa-sim: linking, restore,
//! messages both ways, receipts, offline queue, faults, pair codes, two
//! clients, and many clients at once.
//!
//! Every wait is bounded and event-driven: a hidden 10 s wait in the
//! protocol path fails a test instead of slowing it down.

mod harness;

use std::time::Duration;

use harness::{Client, link_new, within};
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::prelude::*;

const FAST: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_link_connects_within_two_seconds_of_the_scan() {
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::start(&sim, &dir.path().join("a.db")).await;
    let qr = c.next_qr().await;
    let linked = sim.scan(&qr, "15550001111", "Acme").await.expect("scan");
    assert_eq!(linked.jid, "15550001111:1@s.whatsapp.net");
    assert!(linked.lid.ends_with(":1@lid"), "{}", linked.lid);
    within(FAST, c.wait(|e| matches!(e, Event::Connected(_))))
        .await
        .expect("Connected within 2 s of the scan");
    let jid = c.client.pn().expect("paired");
    assert_eq!(jid.user, "15550001111");
    assert_eq!(jid.device, 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_the_stored_session_without_a_qr() {
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let c = link_new(&sim, &db, "15550001111", "Acme").await;
    c.stop().await;

    let mut c = Client::start(&sim, &db).await;
    let first = within(
        FAST,
        c.wait(|e| matches!(e, Event::Connected(_) | Event::PairingQrCode(_))),
    )
    .await
    .expect("Connected within 2 s on restore");
    assert!(matches!(&*first, Event::Connected(_)), "got a QR on restore");
    c.stop().await;
}

fn text_of(e: &Event) -> Option<(String, String, String, i64, String)> {
    let Event::Messages(batch) = e else {
        return None;
    };
    let m = batch.messages.first()?;
    Some((
        m.info.id.to_string(),
        m.info.source.sender.to_string(),
        m.info.push_name.clone(),
        m.info.timestamp.timestamp(),
        m.message.text_content()?.to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_text_reaches_the_client_with_id_sender_name_and_time() {
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), "15550001111", "Acme").await;
    let before = wa_sim_now();
    let id = sim
        .contact_send("15550002222", "15550001111", "hello", Some("Alice"))
        .await
        .expect("send");
    let e = within(FAST, c.wait(|e| text_of(e).is_some()))
        .await
        .expect("message within 2 s");
    let (mid, sender, name, ts, text) = text_of(&e).unwrap();
    assert_eq!(mid, id);
    assert_eq!(sender, "15550002222@s.whatsapp.net");
    assert_eq!(name, "Alice");
    assert_eq!(text, "hello");
    assert!((before..=before + 2).contains(&ts), "timestamp {ts} vs {before}");

    // A second message goes over the established session (msg, not pkmsg).
    let id2 = sim
        .contact_send("15550002222", "15550001111", "again", Some("Alice"))
        .await
        .unwrap();
    let e = within(FAST, c.wait(|e| text_of(e).is_some())).await.unwrap();
    assert_eq!(text_of(&e).unwrap().0, id2);
    c.stop().await;
}

fn wa_sim_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls a condition every 20 ms until it holds or the deadline passes.
async fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    within(limit, async {
        loop {
            if let Some(v) = f() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_text_reaches_the_contact_inbox_and_receipts_come_back() {
    let sim = harness::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = link_new(&sim, &dir.path().join("a.db"), "15550001111", "Acme").await;
    let to: Jid = "15550002222@s.whatsapp.net".parse().unwrap();
    let sent = within(FAST, c.client.send_message(to.clone(), wa::Message::text("hi there")))
        .await
        .expect("send in time")
        .expect("send");
    let inbox = eventually(FAST, || {
        let i = sim.inbox("15550002222");
        (!i.is_empty()).then_some(i)
    })
    .await
    .expect("inbox within 2 s");
    assert_eq!(inbox[0].id, sent.message_id);
    assert_eq!(inbox[0].text, "hi there");
    assert_eq!(inbox[0].from, "15550001111:1@s.whatsapp.net");
    assert_eq!(inbox[0].to, "15550002222@s.whatsapp.net");

    let receipt = |want: ReceiptType| {
        let id = sent.message_id.clone();
        move |e: &Event| match e {
            Event::Receipt(r) => r.r#type == want && r.message_ids.iter().any(|m| *m == id),
            _ => false,
        }
    };
    within(FAST, c.wait(receipt(ReceiptType::Delivered)))
        .await
        .expect("delivered receipt");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/contacts/15550002222/read", sim.admin_url()))
        .json(&serde_json::json!({"id": sent.message_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    within(FAST, c.wait(receipt(ReceiptType::Read)))
        .await
        .expect("read receipt");
    c.stop().await;
}
