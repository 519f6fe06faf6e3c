//! wapi: a multi-session WhatsApp Web bridge.
//!
//! [`App::start`] runs the whole bridge in-process (the binary and the
//! integration tests use it): the store, the sessions, the webhook delivery
//! workers, the periodic connection checkout and the HTTP API.

pub mod api;
pub mod auth;
pub mod bsuid;
pub mod config;
pub mod media;
pub mod qr;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod webhook;
pub mod whatsapp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::Config;
use crate::session::Manager;
use crate::webhook::Webhooks;

/// Runs the bridge until SIGINT or SIGTERM, then shuts it down cleanly (the
/// `wapi` binary; an error means it could not start).
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    raise_open_files_limit();
    let app = App::start(cfg).await?;
    shutdown_signal().await;
    info!("shutting down");
    // Sessions stop together, each flush bounded at 5 s by the client
    // wrapper; the whole is bounded too, so that a supervisor's 10 s grace
    // period is never overrun.
    if tokio::time::timeout(std::time::Duration::from_secs(9), app.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown took over 9 s: exiting with some sessions not flushed");
    }
    Ok(())
}

/// Every session holds a WebSocket and a SQLite file (plus its journal):
/// a thousand sessions need thousands of descriptors, more than the usual
/// soft limit of 1024. Raised to the hard limit.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(limit = n, "open files limit"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A running bridge.
pub struct App {
    addr: SocketAddr,
    manager: Arc<Manager>,
    webhooks: Webhooks,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    checkout: JoinHandle<()>,
    version_task: JoinHandle<()>,
}

impl App {
    /// Opens the store, restores the registered sessions, and serves the API
    /// on `cfg.listen` (port 0 picks a free port; see [`App::addr`]).
    pub async fn start(cfg: Config) -> anyhow::Result<Self> {
        // A certificate that cannot be used stops start-up before anything
        // else is touched.
        let tls = cfg.tls.as_ref().map(tls::server_config).transpose()?;
        std::fs::create_dir_all(cfg.sessions_dir())?;
        std::fs::create_dir_all(cfg.qr_dir())?;
        let cfg = Arc::new(cfg);
        let store = store::open(cfg.redis_url.as_deref(), &cfg.files_root).await?;
        let metrics = Arc::new(telemetry::Metrics::new());
        let media = Arc::new(media::Media::open(&cfg.files_root, cfg.media.clone()).await?);
        let webhooks = Webhooks::new(store.clone(), cfg.webhook.clone(), metrics, media.clone());
        let versions = whatsapp::Versions::new(
            cfg.whatsapp_version,
            &cfg.whatsapp_version_url,
            &cfg.files_root,
        );
        let version_task = versions.keep_current();
        let manager = Manager::new(cfg.clone(), store, webhooks.clone(), versions);
        let restored = manager.restore().await?;
        webhooks.resume().await;
        info!(restored, "sessions restored");

        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let auth = Arc::new(auth::Auth::new(
            cfg.auth.clone(),
            manager.store().clone(),
            cfg.clock.clone(),
        ));
        if !auth.enabled() {
            tracing::warn!(
                %addr,
                "no credential configured (WAPI_API_KEY, WAPI_ADMIN_USER): the API is open to \
                 anyone who can reach this address"
            );
        }
        let app = api::router(manager.clone(), auth, cfg.rate_limit);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = match tls {
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            }),
            Some(tls) => {
                // HTTPS only: nothing listens for plain HTTP.
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                tokio::spawn(async move {
                    let _ = stop_rx.await;
                    stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
                });
                let listener = listener.into_std()?;
                let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls);
                tokio::spawn(async move {
                    if let Err(e) = axum_server::from_tcp_rustls(listener, rustls)
                        .handle(handle)
                        .serve(app.into_make_service())
                        .await
                    {
                        tracing::error!("the HTTPS server stopped: {e}");
                    }
                })
            }
        };
        let checkout = {
            let manager = manager.clone();
            let media = media.clone();
            let every = cfg.checkout_every;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                let mut ticks = 0u64;
                loop {
                    tick.tick().await;
                    manager.check_all();
                    // Media past retention, about hourly (and once early).
                    if ticks.is_multiple_of(3600 / every.as_secs().clamp(1, 3600)) {
                        let media = media.clone();
                        tokio::spawn(async move { media.sweep().await });
                    }
                    ticks += 1;
                }
            })
        };
        info!(%addr, "wapi listening");
        Ok(Self {
            addr,
            manager,
            webhooks,
            stop: Some(stop_tx),
            server: Some(server),
            checkout,
            version_task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }

    /// Stops accepting requests, finishes the ones in flight, and shuts every
    /// session down cleanly (whatsapp-rust flushes its state).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Live event streams never end by themselves.
        self.webhooks.close_live();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.checkout.abort();
        let _ = (&mut self.checkout).await;
        self.version_task.abort();
        self.manager.shutdown().await;
        self.webhooks.shutdown().await;
        // What the store holds in memory only (deliveries done) goes to
        // disk, so that a clean restart posts nothing twice.
        if let Err(e) = self.manager.store().flush().await {
            tracing::warn!("cannot flush the store: {e}");
        }
    }
}
