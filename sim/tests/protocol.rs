//! The real whatsapp-rust 0.7.0 client against wa-sim: linking, restore,
//! messages both ways, receipts, offline queue, faults, pair codes, two
//! clients, and many clients at once.
//!
//! Every wait is bounded and event-driven: a hidden 10 s wait in the
//! protocol path fails a test instead of slowing it down.

mod harness;

use std::time::Duration;

use harness::{Client, link_new, within};
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
