//! The `bare` child: plain whatsapp-rust clients, built as the bridge builds
//! its own (SQLite session file, pinned version, no history sync), with no
//! bridge around them. The parent writes `link N` on stdin; the child links
//! N more through the simulator's admin API and answers `linked TOTAL`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use whatsapp_rust::TokioRuntime;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

/// The bridge's (see `wapi::whatsapp`).
const CLIENT_VERSION: (u32, u32, u32) = (2, 3000, 1_030_000_000);
const LINK_CONCURRENCY: usize = 20;

pub async fn serve() -> anyhow::Result<()> {
    let ws = std::env::var("BENCH_WS").context("BENCH_WS")?;
    let admin = std::env::var("BENCH_ADMIN").context("BENCH_ADMIN")?;
    let dir = std::path::PathBuf::from(std::env::var("BENCH_DIR").context("BENCH_DIR")?);
    let http = reqwest::Client::new();
    let mut clients: Vec<(Arc<whatsapp_rust::Client>, BotHandle)> = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let Some(n) = line
            .strip_prefix("link ")
            .and_then(|n| n.trim().parse::<usize>().ok())
        else {
            bail!("bare: unknown command {line:?}");
        };
        let start = clients.len();
        let sem = Arc::new(tokio::sync::Semaphore::new(LINK_CONCURRENCY));
        let mut tasks = Vec::new();
        for i in start..start + n {
            let (ws, admin, http, sem) = (ws.clone(), admin.clone(), http.clone(), sem.clone());
            let db = dir.join(format!("bare-{i}.db"));
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await?;
                link(&ws, &admin, &http, &db, &format!("1666{i:07}")).await
            }));
        }
        for t in tasks {
            clients.push(t.await??);
        }
        out.write_all(format!("linked {}\n", clients.len()).as_bytes())
            .await?;
        out.flush().await?;
    }
    Ok(())
}

async fn link(
    ws: &str,
    admin: &str,
    http: &reqwest::Client,
    db: &std::path::Path,
    phone: &str,
) -> anyhow::Result<(Arc<whatsapp_rust::Client>, BotHandle)> {
    let store = SqliteStore::new(db.to_str().context("UTF-8 path")?).await?;
    let bot = Bot::builder()
        .with_backend(store)
        .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(ws.to_string()))
        .with_runtime(TokioRuntime)
        .with_version(CLIENT_VERSION)
        .skip_history_sync()
        .build()
        .await?;
    let client = bot.client();
    let (handler, events) = ChannelEventHandler::new();
    client.subscribe_handler(handler).detach();
    let handle = bot.spawn();
    let qr = loop {
        match &*tokio::time::timeout(Duration::from_secs(60), events.recv()).await?? {
            Event::PairingQrCode(q) => break q.code.clone(),
            _ => continue,
        }
    };
    let r = http
        .post(format!("{admin}/scan"))
        .json(&serde_json::json!({"qr": qr, "phone": phone, "push_name": "Bare"}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("scan {phone}: {}", r.text().await.unwrap_or_default());
    }
    loop {
        if let Event::Connected(_) =
            &*tokio::time::timeout(Duration::from_secs(60), events.recv()).await??
        {
            break;
        }
    }
    // Nothing listens from here on, as nothing would in an idle client.
    drop(events);
    Ok((client, handle))
}
