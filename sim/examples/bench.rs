//! Measures the simulator alone: how many real devices it holds connected,
//! and how many messages per second it pushes to them (encrypt + route) and
//! takes from them (route + decrypt).
//!
//! ```text
//! cargo run --release -p wa-sim --example bench -- [DEVICES] [MESSAGES]
//! ```
//! Defaults: 1,000 devices, 5,000 messages each way. Prints one JSON line per
//! figure. The clients are real whatsapp-rust clients in the same process,
//! so the figures are a floor for the simulator: it shares the 2 cores with
//! the clients that it serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wa_sim::{SimHandle, Simulator};
use whatsapp_rust::TokioRuntime;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

/// How many links run at once: pairing is CPU-bound on the client side.
const LINK_CONCURRENCY: usize = 50;
/// Contacts sending in parallel (each has its own Signal lock).
const CONTACTS: usize = 20;

struct Device {
    phone: String,
    client: Arc<whatsapp_rust::Client>,
    _handle: BotHandle,
}

fn line(figure: &str, value: f64, unit: &str, extra: serde_json::Value) {
    let mut v =
        serde_json::json!({"bench": "wa-sim", "figure": figure, "value": value, "unit": unit});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    println!("{v}");
}

async fn link(
    sim: &SimHandle,
    db: std::path::PathBuf,
    phone: String,
    received: Arc<AtomicU64>,
) -> anyhow::Result<Device> {
    let store = SqliteStore::new(db.to_str().unwrap_or_default()).await?;
    let bot = Bot::builder()
        .with_backend(store)
        .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(sim.ws_url()))
        .with_runtime(TokioRuntime)
        .with_version((2, 3000, 0))
        .with_wanted_pre_key_count(10)
        .skip_history_sync()
        .build()
        .await?;
    let client = bot.client();
    let (handler, events) = ChannelEventHandler::new();
    client.subscribe_handler(handler).detach();
    let handle = bot.spawn();
    let qr = loop {
        match &*tokio::time::timeout(Duration::from_secs(30), events.recv()).await?? {
            Event::PairingQrCode(q) => break q.code.clone(),
            _ => continue,
        }
    };
    sim.scan(&qr, &phone, "Bench").await?;
    loop {
        if let Event::Connected(_) =
            &*tokio::time::timeout(Duration::from_secs(60), events.recv()).await??
        {
            break;
        }
    }
    // Count text messages from here on.
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if let Event::Messages(b) = &*e {
                received.fetch_add(b.messages.len() as u64, Ordering::Relaxed);
            }
        }
    });
    Ok(Device {
        phone,
        client,
        _handle: handle,
    })
}

async fn wait_until(limit: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// The devices send `m` texts in all, from `CONTACTS` tasks at once; each
/// device talks to one contact (its index modulo 50), as in a conversation.
async fn send_round(devs: &Arc<Vec<Device>>, m: usize, text: &'static str) -> anyhow::Result<()> {
    let per_task = m.div_ceil(CONTACTS);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..CONTACTS {
        let devs = devs.clone();
        tasks.spawn(async move {
            for k in t * per_task..((t + 1) * per_task).min(m) {
                let d = &devs[k % devs.len()];
                let to: Jid = format!("1888{:07}@s.whatsapp.net", (k % devs.len()) % 50).parse()?;
                d.client.send_message(to, wa::Message::text(text)).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let devices: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let messages: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(devices, messages))
}

async fn run(n: usize, m: usize) -> anyhow::Result<()> {
    let sim = Arc::new(Simulator::start("127.0.0.1:0".parse()?).await?);
    let dir = tempfile::tempdir()?;
    let received = Arc::new(AtomicU64::new(0));

    // 1. Devices held.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(LINK_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (sim, gate, received) = (sim.clone(), gate.clone(), received.clone());
        let db = dir.path().join(format!("d{i}.db"));
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            link(&sim, db, format!("1666{i:07}"), received).await
        });
    }
    let mut devs = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        devs.push(r??);
    }
    let link_secs = started.elapsed().as_secs_f64();
    let connected = sim
        .world()
        .lock()
        .accounts
        .values()
        .flat_map(|a| a.devices.values())
        .filter(|d| d.conn.is_some())
        .count();
    line(
        "devices_held",
        connected as f64,
        "devices",
        serde_json::json!({"linked_in_s": link_secs}),
    );

    // 2. Push: contacts -> devices (the simulator encrypts, routes, writes).
    let phones: Arc<Vec<String>> = Arc::new(devs.iter().map(|d| d.phone.clone()).collect());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CONTACTS {
        let (sim, phones) = (sim.clone(), phones.clone());
        tasks.spawn(async move {
            let contact = format!("1777{c:07}");
            let mut k = c;
            while k < m {
                let to = &phones[k % phones.len()];
                sim.contact_send(&contact, to, "bench message", Some("Bench"))
                    .await?;
                k += CONTACTS;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let sim_side = started.elapsed().as_secs_f64();
    let all = wait_until(Duration::from_secs(120), || {
        received.load(Ordering::Relaxed) >= m as u64
    })
    .await;
    let e2e = started.elapsed().as_secs_f64();
    line(
        "push_msgs_per_s",
        m as f64 / sim_side,
        "msg/s",
        serde_json::json!({"note": "encrypted, routed and written by the simulator"}),
    );
    line(
        "push_received_msgs_per_s",
        received.load(Ordering::Relaxed) as f64 / e2e,
        "msg/s",
        serde_json::json!({"all_received": all, "note": "until the clients decrypted them"}),
    );

    // 3. Decrypt: devices -> contacts (the clients encrypt; the simulator
    // routes and decrypts into the contacts' inboxes).
    let started = Instant::now();
    let devs = Arc::new(devs);
    send_round(&devs, m, "bench reply").await?;
    let inboxes = || {
        (0..50)
            .map(|c| sim.inbox(&format!("1888{c:07}")).len())
            .sum::<usize>()
    };
    let all = wait_until(Duration::from_secs(120), || inboxes() >= m).await;
    let secs = started.elapsed().as_secs_f64();
    line(
        "decrypt_msgs_per_s",
        inboxes() as f64 / secs,
        "msg/s",
        serde_json::json!({"all_decrypted": all, "note": "client encrypt + simulator route and decrypt"}),
    );
    // The simulator's own Signal work per core, independent of the clients
    // that share the machine with it in this run.
    let stats = &sim.world().stats;
    let per_core = |count: &AtomicU64, nanos: &AtomicU64| {
        let secs = nanos.load(Ordering::Relaxed) as f64 / 1e9;
        count.load(Ordering::Relaxed) as f64 / secs.max(1e-9)
    };
    line(
        "sim_encrypt_capacity_msgs_per_core_s",
        per_core(&stats.messages_encrypted, &stats.encrypt_nanos),
        "msg/s",
        serde_json::json!({"messages": stats.messages_encrypted.load(Ordering::Relaxed)}),
    );
    line(
        "sim_decrypt_capacity_msgs_per_core_s",
        per_core(&stats.messages_decrypted, &stats.decrypt_nanos),
        "msg/s",
        serde_json::json!({"messages": stats.messages_decrypted.load(Ordering::Relaxed)}),
    );

    // 4. Decrypt in the steady state of a conversation: each contact answers
    // once, so the clients' next messages are plain `msg` (no session
    // set-up), as in a chat that is going on.
    let before = received.load(Ordering::Relaxed);
    for (d, dev) in devs.iter().enumerate() {
        let contact = format!("1888{:07}", d % 50);
        sim.contact_send(&contact, &dev.phone, "answer", None)
            .await?;
    }
    wait_until(Duration::from_secs(120), || {
        received.load(Ordering::Relaxed) >= before + devs.len() as u64
    })
    .await;
    let (count0, nanos0) = (
        stats.messages_decrypted.load(Ordering::Relaxed),
        stats.decrypt_nanos.load(Ordering::Relaxed),
    );
    let inbox0 = inboxes();
    let started = Instant::now();
    send_round(&devs, m, "steady").await?;
    let all = wait_until(Duration::from_secs(120), || inboxes() >= inbox0 + m).await;
    let secs = started.elapsed().as_secs_f64();
    line(
        "decrypt_steady_msgs_per_s",
        (inboxes() - inbox0) as f64 / secs,
        "msg/s",
        serde_json::json!({"all_decrypted": all, "note": "client encrypt + simulator route and decrypt, no session set-up"}),
    );
    let count = stats.messages_decrypted.load(Ordering::Relaxed) - count0;
    let nanos = stats.decrypt_nanos.load(Ordering::Relaxed) - nanos0;
    line(
        "sim_decrypt_steady_capacity_msgs_per_core_s",
        count as f64 / (nanos as f64 / 1e9).max(1e-9),
        "msg/s",
        serde_json::json!({"messages": count}),
    );
    std::process::exit(0);
}
