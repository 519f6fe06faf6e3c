//! The webhook receiver: parses every body (as a real one would) and notes
//! when each message arrived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

#[derive(Default)]
pub struct Seen {
    /// Message events received (repeats included).
    pub messages: AtomicU64,
    /// Posts of any kind.
    pub posts: AtomicU64,
    /// First arrival of each message id.
    pub arrived: Mutex<HashMap<String, Instant>>,
    /// One message body as posted, for the ceiling run.
    pub sample: Mutex<Option<axum::body::Bytes>>,
    /// Media messages posted with their file stored, and without it.
    pub media_stored: AtomicU64,
    pub media_failed: AtomicU64,
}

pub struct Receiver {
    pub url: String,
    pub seen: Arc<Seen>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let seen = Arc::new(Seen::default());
        let app = axum::Router::new()
            .route("/{*path}", post(receive))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}/hook/"),
            seen,
        })
    }

    pub fn messages(&self) -> u64 {
        self.seen.messages.load(Ordering::Relaxed)
    }

    /// Media messages posted so far: (file stored, failed).
    pub fn media(&self) -> (u64, u64) {
        (
            self.seen.media_stored.load(Ordering::Relaxed),
            self.seen.media_failed.load(Ordering::Relaxed),
        )
    }

    pub fn arrival(&self, id: &str) -> Option<Instant> {
        self.seen
            .arrived
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }
}

async fn receive(State(seen): State<Arc<Seen>>, raw: axum::body::Bytes) -> StatusCode {
    let now = Instant::now();
    seen.posts.fetch_add(1, Ordering::Relaxed);
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&raw) else {
        return StatusCode::BAD_REQUEST;
    };
    if body["event"] == "message" {
        seen.messages.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = body["payload"]["id"].as_str() {
            seen.arrived
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(id.to_string())
                .or_insert(now);
        }
        let media = &body["payload"]["media"];
        if media.is_object() {
            if media["id"].is_string() && media["error"].is_null() {
                seen.media_stored.fetch_add(1, Ordering::Relaxed);
            } else {
                seen.media_failed.fetch_add(1, Ordering::Relaxed);
            }
            return StatusCode::OK;
        }
        let mut sample = seen.sample.lock().unwrap_or_else(|p| p.into_inner());
        if sample.is_none() {
            *sample = Some(raw);
        }
    }
    StatusCode::OK
}
