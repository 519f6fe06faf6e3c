//! Nothing accepted is lost: WhatsApp is acknowledged only once the outbox
//! has the message.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_stored_is_redelivered_by_whatsapp() {
    let sim = sim().await;
    let hook = Receiver::start().await;
    let redis = Redis::start().await;
    let store = StoreKind::Redis(redis.url.clone());
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &store)).await;
    bridge
        .link(&sim, "d1", &format!("{}d1", hook.url), "15550006666")
        .await;

    // The store goes away; a message arrives: it cannot be committed, so
    // the client must not acknowledge it.
    let port = redis.kill();
    let id = sim
        .contact_send("15550002222", "15550006666", "keep me", Some("Alice"))
        .await
        .unwrap();
    let queued = || {
        sim.world()
            .lock()
            .accounts
            .get("15550006666")
            .and_then(|a| a.devices.get(&1))
            .map(|d| d.queue.iter().any(|n| n.tag == "message"))
            .unwrap_or(false)
    };
    // Give the hook its attempt (it fails on the dead store), then check the
    // simulator still holds the message as unacknowledged.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        queued(),
        "the message was acknowledged without being stored"
    );

    // The store comes back (empty: Redis kept nothing), the connection is
    // renewed, WhatsApp redelivers, and the webhook gets it once.
    let _redis = Redis::start_on(port).await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/devices/15550006666%3A1%40s.whatsapp.net/disconnect",
            sim.admin_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(
        std::time::Duration::from_secs(15),
        "the redelivered message",
        || async {
            hook.of("d1", "message")
                .into_iter()
                .find(|e| e["payload"]["id"] == id)
        },
    )
    .await;
    eventually(DEADLINE, "the message acknowledged", || async {
        (!queued()).then_some(())
    })
    .await;
    assert_eq!(
        hook.of("d1", "message")
            .iter()
            .filter(|e| e["payload"]["id"] == id)
            .count(),
        1
    );
    bridge.stop().await;
}
