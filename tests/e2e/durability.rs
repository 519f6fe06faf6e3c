//! Nothing accepted is lost: WhatsApp is acknowledged only once the outbox
//! has the message.

use std::time::Duration;

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
    // Once the hook has tried and failed on the dead store, the simulator
    // still holds the message as unacknowledged.
    eventually(Duration::from_secs(10), "a failed commit", || async {
        let text = bridge
            .get("/metrics")
            .await
            .text()
            .await
            .unwrap_or_default();
        (metric(&parse_metrics(&text), "wapi_inbound_commit_failures_total") >= 1.0).then_some(())
    })
    .await;
    assert!(
        queued(),
        "the message was acknowledged without being stored"
    );

    // The store comes back (empty: Redis kept nothing), the connection is
    // renewed, WhatsApp redelivers, and the webhook gets it once.
    let _redis = Redis::start_on(port).await;
    device_admin(&sim, "15550006666", "disconnect").await;
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

/// The ids, in order, of the message events a receiver got for a session
/// (first delivery of each: a repeat would be a duplicate to deduplicate).
fn first_deliveries(hook: &Receiver, session: &str) -> (Vec<String>, usize) {
    let all: Vec<String> = hook
        .of(session, "message")
        .iter()
        .map(|b| b["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<String> = all.iter().filter(|i| seen.insert(*i)).cloned().collect();
    let total = all.len();
    (firsts, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bridge_delivers_every_pending_event_after_restart() {
    let sim = sim().await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = port();
    let env = [
        (
            "WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH",
            dir.path().display().to_string(),
        ),
        ("WAPI_WHATSAPP_URL", sim.ws_url()),
        ("WAPI_WHATSAPP_VERSION_URL", sim.sw_js_url()),
        ("WAPI_WEBHOOK_MAX_BACKOFF_SECS", "1".to_string()),
        ("WAPI_WEBHOOK_SECRET", "test-secret".to_string()),
    ];
    let phone = "15550006601";
    let bridge = ChildBridge::start(port, &env).await;
    bridge
        .link(&sim, "k1", &format!("{}k1", hook.url), phone)
        .await;

    // The receiver is down: 50 messages pile up in the outbox.
    hook.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut want = Vec::new();
    for i in 0..50 {
        let id = sim
            .contact_send("15550002222", phone, &format!("p{i}"), None)
            .await
            .unwrap();
        let jid = "15550002222@s.whatsapp.net";
        want.push(wapi::webhook::message_event_id("k1", jid, jid, &id));
    }
    eventually(DEADLINE, "50 messages pending, some retried", || async {
        let s = bridge.json("/v1/sessions/k1/webhooks").await;
        (s["pending"].as_u64()? >= 50 && s["retrying"].as_u64()? >= 1).then_some(())
    })
    .await;

    // SIGKILL: no graceful anything. Then the same files root again.
    bridge.kill();
    let bridge = ChildBridge::start(port, &env).await;
    let stats = bridge.json("/v1/sessions/k1/webhooks").await;
    assert!(stats["pending"].as_u64().unwrap() >= 50, "{stats}");
    assert!(
        stats["retrying"].as_u64().unwrap() >= 1,
        "attempts kept: {stats}"
    );
    bridge.wait_status("k1", "WORKING").await;

    hook.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let (got, total) = eventually(Duration::from_secs(15), "all 50 delivered", || async {
        let (firsts, total) = first_deliveries(&hook, "k1");
        (firsts.len() >= 50).then_some((firsts, total))
    })
    .await;
    assert_eq!(got, want, "same ids, same order, none lost");
    assert_eq!(total, 50, "each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_while_messages_flow_loses_nothing() {
    let sim = std::sync::Arc::new(sim().await);
    let hook = Receiver::start().await;
    // A Redis that keeps its data across a restart (append-only file, fsync
    // on every write): what a deployment relying on its queue must run.
    let data = tempfile::tempdir().unwrap();
    let redis = Redis::start_persistent(data.path()).await;
    let store = StoreKind::Redis(redis.url.clone());
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(config(&sim, dir.path(), &store)).await;
    let phone = "15550006602";
    bridge
        .link(&sim, "r1", &format!("{}r1", hook.url), phone)
        .await;

    let sender = {
        let sim = sim.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..300 {
                let id = sim
                    .contact_send("15550002222", phone, &format!("f{i}"), None)
                    .await
                    .unwrap();
                ids.push(id);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ids
        })
    };
    // Restart Redis in the middle of the flow.
    eventually(DEADLINE, "the flow under way", || async {
        (hook.of("r1", "message").len() >= 50).then_some(())
    })
    .await;
    let port = redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _redis = Redis::start_persistent_on(port, data.path()).await;

    let sent = within(Duration::from_secs(30), sender).await.unwrap();
    let jid = "15550002222@s.whatsapp.net";
    let want: Vec<String> = sent
        .iter()
        .map(|id| wapi::webhook::message_event_id("r1", jid, jid, id))
        .collect();
    let got = eventually(Duration::from_secs(30), "all 300 delivered", || async {
        let (firsts, _) = first_deliveries(&hook, "r1");
        (firsts.len() >= 300).then_some(firsts)
    })
    .await;
    assert_eq!(got, want, "nothing lost, in order");
    // Still working, and still taking messages.
    bridge.wait_status("r1", "WORKING").await;
    bridge.drained("r1").await;
    bridge.stop().await;
}
