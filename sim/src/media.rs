//! WhatsApp's media CDN: the `media_conn` IQ that gives a device an auth
//! token and a host, and the HTTPS server on that host where devices upload
//! encrypted blobs (`POST /mms/{type}/{token}`) and download them by
//! `direct_path`.
//!
//! whatsapp-rust always builds `https://` URLs, so the server speaks TLS with
//! a self-signed certificate made at start. Clients trust that certificate
//! by being handed an HTTP client whose only root it is
//! (`SimHandle::media_ca_pem`); nothing here weakens verification.
//!
//! Blobs stay in memory for the simulator's lifetime, as `Bytes` shared by
//! the store, the responses and what contacts keep of what they sent.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use wacore::download::MediaType;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::world::World;

/// How long a device may reuse a `media_conn` answer, in seconds. Without a
/// `ttl` the client would ask before every transfer.
const MEDIA_CONN_TTL: u64 = 3600;

/// The largest blob accepted. WhatsApp allows 2 GiB; the simulator keeps
/// every blob in memory.
pub const MAX_BLOB: usize = 256 << 20;

/// A stored blob: ciphertext and MAC, exactly as uploaded.
#[derive(Clone)]
pub struct Blob {
    pub data: Bytes,
    pub enc_sha256: [u8; 32],
    /// Past its lifetime: downloads answer 410, as the CDN does for old
    /// media, and the recipient has to ask the sender for a re-upload.
    pub expired: bool,
}

/// What a simulated contact's phone keeps of a media message it sent, to
/// upload it again when a device asks (media retry).
#[derive(Clone)]
pub struct SentMedia {
    /// The contact's phone number.
    pub from: String,
    /// The account it was sent to.
    pub to: String,
    pub media_key: [u8; 32],
    pub media_type: MediaType,
    pub blob: Bytes,
    pub enc_sha256: [u8; 32],
    /// Whether the phone still has the file.
    pub reupload: bool,
}

#[derive(Default)]
struct Blobs {
    by_path: HashMap<String, Blob>,
    /// Message id -> media a contact sent.
    sent: HashMap<String, SentMedia>,
}

/// The CDN's state, part of the world.
pub struct MediaStore {
    /// The `auth` of every `media_conn` answer: URL-safe, the client puts it
    /// in URLs as is.
    pub auth: String,
    server: OnceLock<ServerInfo>,
    blobs: Mutex<Blobs>,
    uploads: AtomicU64,
    downloads: AtomicU64,
    reuploads: AtomicU64,
    /// `resume=1` probes answered (large uploads), for tests.
    pub resume_probes: AtomicU64,
    download_delay_ms: AtomicU64,
}

struct ServerInfo {
    host: String,
    cert_pem: String,
}

/// The counters of `GET /admin/media/stats`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MediaStats {
    /// Uploads accepted over HTTPS.
    pub uploads: u64,
    /// Downloads answered with the blob over HTTPS (not the simulator's own
    /// contacts reading what devices sent them).
    pub downloads: u64,
    /// Blobs held, expired ones included.
    pub blobs: u64,
    /// Media re-uploaded by a contact's phone on a device's request.
    pub reuploads: u64,
}

impl Default for MediaStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MediaStore {
    pub fn new() -> Self {
        Self {
            auth: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>()),
            server: OnceLock::new(),
            blobs: Mutex::new(Blobs::default()),
            uploads: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            reuploads: AtomicU64::new(0),
            resume_probes: AtomicU64::new(0),
            download_delay_ms: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Blobs> {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `127.0.0.1:PORT` of the HTTPS server, once it runs.
    pub fn host(&self) -> Option<&str> {
        self.server.get().map(|s| s.host.as_str())
    }

    /// The server's self-signed certificate (PEM), once it runs.
    pub fn cert_pem(&self) -> Option<&str> {
        self.server.get().map(|s| s.cert_pem.as_str())
    }

    /// The full URL of a direct path, as the `url` of a message.
    pub fn url(&self, direct_path: &str) -> String {
        format!(
            "https://{}{direct_path}",
            self.host().unwrap_or("127.0.0.1")
        )
    }

    /// Stores a blob under a new direct path and returns the path.
    pub fn put(&self, media_type: MediaType, blob: Blob) -> String {
        // Shaped like WhatsApp's (`/v/t62.7118-24/...`) but without the query
        // string: the client appends `?auth=..` to it.
        let path = format!(
            "/v/{}/{}_{}.enc",
            path_class(media_type),
            rand::random::<u64>() % 100_000_000_000,
            hex::encode(rand::random::<[u8; 12]>())
        );
        self.lock().by_path.insert(path.clone(), blob);
        path
    }

    pub fn get(&self, direct_path: &str) -> Option<Blob> {
        self.lock().by_path.get(direct_path).cloned()
    }

    /// Records what a contact sent, under the message id.
    pub fn remember_sent(&self, id: &str, sent: SentMedia) {
        self.lock().sent.insert(id.to_string(), sent);
    }

    pub fn sent(&self, id: &str) -> Option<SentMedia> {
        self.lock().sent.get(id).cloned()
    }

    pub fn count_reupload(&self) {
        self.reuploads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> MediaStats {
        MediaStats {
            uploads: self.uploads.load(Ordering::Relaxed),
            downloads: self.downloads.load(Ordering::Relaxed),
            blobs: self.lock().by_path.len() as u64,
            reuploads: self.reuploads.load(Ordering::Relaxed),
        }
    }

    pub fn set_download_delay(&self, delay: Duration) {
        self.download_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// The direct path of a live blob with this hash, for the resume probe.
    fn find_live(&self, enc_sha256: &[u8; 32]) -> Option<String> {
        self.lock()
            .by_path
            .iter()
            .find(|(_, b)| !b.expired && &b.enc_sha256 == enc_sha256)
            .map(|(p, _)| p.clone())
    }
}

/// The object class in WhatsApp's direct paths, per media type.
fn path_class(media_type: MediaType) -> &'static str {
    match media_type {
        MediaType::Image => "t62.7118-24",
        MediaType::Video => "t62.7161-24",
        MediaType::Audio => "t62.7114-24",
        MediaType::Document => "t62.7119-24",
        MediaType::Sticker => "t62.15575-24",
        _ => "t62.7117-24",
    }
}

/// The media type of an upload path segment (`/mms/{type}`); stickers
/// upload as images.
fn media_type_of(mms_type: &str) -> MediaType {
    match mms_type {
        "image" => MediaType::Image,
        "video" => MediaType::Video,
        "audio" => MediaType::Audio,
        "document" => MediaType::Document,
        "md-msg-hist" => MediaType::History,
        "md-app-state" => MediaType::AppState,
        _ => MediaType::Document,
    }
}

/// The answer to `<iq xmlns="w:m"><media_conn/></iq>`.
pub fn media_conn(world: &World, id: &str) -> Node {
    let Some(host) = world.media.host() else {
        return crate::iq::error(id, 503, "service-unavailable");
    };
    crate::iq::result_with(
        id,
        [NodeBuilder::new("media_conn")
            .attr("auth", world.media.auth.as_str())
            .attr("ttl", MEDIA_CONN_TTL.to_string())
            .attr("auth_ttl", MEDIA_CONN_TTL.to_string())
            .attr("max_buckets", "12")
            .children([NodeBuilder::new("host")
                .attr("hostname", host)
                .attr("type", "primary")
                .build()])
            .build()],
    )
}

/// The running HTTPS server.
pub struct MediaServer {
    handle: axum_server::Handle,
    task: JoinHandle<()>,
}

impl MediaServer {
    /// Stops at once: a download held back by a delay would otherwise keep
    /// a graceful shutdown waiting.
    pub async fn shutdown(mut self) {
        self.handle.shutdown();
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }

    pub fn abort(&self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

/// Makes the certificate, binds `127.0.0.1` on a free port and serves the
/// CDN for `world` until shut down.
pub fn start(world: Arc<World>) -> std::io::Result<MediaServer> {
    let other = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .map_err(|e| other(&e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wa-sim media");
    let key = rcgen::KeyPair::generate().map_err(|e| other(&e))?;
    let cert = params.self_signed(&key).map_err(|e| other(&e))?;
    // The ring provider named explicitly: no process-wide default to
    // install, none to collide with the embedding program's.
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| other(&e))?
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .map_err(|e| other(&e))?;

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let host = listener.local_addr()?.to_string();
    if world
        .media
        .server
        .set(ServerInfo {
            host,
            cert_pem: cert.pem(),
        })
        .is_err()
    {
        return Err(other(&"the world already has a media server"));
    }
    let app = Router::new()
        .route("/mms/{kind}/{token}", post(upload))
        .route("/v/{*rest}", get(download))
        .with_state(world);
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
    )
    .handle(handle.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!("media server stopped: {e}");
        }
    });
    Ok(MediaServer { handle, task })
}

#[derive(Deserialize)]
struct MediaQuery {
    auth: Option<String>,
    token: Option<String>,
    resume: Option<String>,
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "error": msg }))).into_response()
}

/// `POST /mms/{type}/{token}?auth&token[&resume=1]`: the body is the
/// ciphertext and MAC; `token` is base64url(sha256(body)).
async fn upload(
    State(world): State<Arc<World>>,
    Path((kind, token)): Path<(String, String)>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let media = &world.media;
    if q.auth.as_deref() != Some(media.auth.as_str()) {
        return refuse(StatusCode::UNAUTHORIZED, "bad or missing auth");
    }
    let Some(hash) = URL_SAFE_NO_PAD
        .decode(&token)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
    else {
        return refuse(StatusCode::BAD_REQUEST, "token is not a base64url SHA-256");
    };
    if q.resume.as_deref() == Some("1") {
        media.resume_probes.fetch_add(1, Ordering::Relaxed);
        // A blob with this hash already uploaded: "complete", the client
        // skips the upload. Otherwise no usable offset, which the client
        // reads as "send from scratch" (partial uploads are not kept).
        return match media.find_live(&hash) {
            Some(path) => axum::Json(json!({
                "resume": "complete",
                "url": media.url(&path),
                "direct_path": path,
            }))
            .into_response(),
            None => axum::Json(json!({ "resume": "0" })).into_response(),
        };
    }
    let expected = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if expected > MAX_BLOB {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "file too large");
    }
    // Hash while reading: one pass over a blob of tens of MiB.
    let mut data = BytesMut::with_capacity(expected);
    let mut sha = Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return refuse(StatusCode::BAD_REQUEST, "body cut short");
        };
        if data.len() + chunk.len() > MAX_BLOB {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "file too large");
        }
        sha.update(&chunk);
        data.extend_from_slice(&chunk);
    }
    if sha.finalize().as_slice() != hash {
        return refuse(StatusCode::BAD_REQUEST, "body does not match token");
    }
    let path = media.put(
        media_type_of(&kind),
        Blob {
            data: data.freeze(),
            enc_sha256: hash,
            expired: false,
        },
    );
    media.uploads.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({ "url": media.url(&path), "direct_path": path })).into_response()
}

/// `GET {direct_path}?auth&token`: the blob as uploaded.
async fn download(
    State(world): State<Arc<World>>,
    Path(rest): Path<String>,
    Query(q): Query<MediaQuery>,
) -> Response {
    let media = &world.media;
    // WhatsApp's CDN gates downloads on the path and hash token, not on the
    // session token (wacore's `MediaRoute::unauthenticated` relies on it),
    // so only a wrong `auth` is refused.
    if q.auth.as_deref().is_some_and(|a| a != media.auth) {
        return refuse(StatusCode::UNAUTHORIZED, "bad auth");
    }
    let Some(blob) = media.get(&format!("/v/{rest}")) else {
        return refuse(StatusCode::NOT_FOUND, "no such media");
    };
    if q.token
        .as_deref()
        .is_some_and(|t| t != URL_SAFE_NO_PAD.encode(blob.enc_sha256))
    {
        return refuse(StatusCode::NOT_FOUND, "token does not match the media");
    }
    if blob.expired {
        return refuse(StatusCode::GONE, "media expired");
    }
    media.downloads.fetch_add(1, Ordering::Relaxed);
    let len = blob.data.len();
    let delay = Duration::from_millis(media.download_delay_ms.load(Ordering::Relaxed));
    // The headers go out at once; with a delay the body follows later, so a
    // test can stop a downloader in the middle of a transfer.
    let body = if delay.is_zero() {
        Body::from(blob.data)
    } else {
        Body::from_stream(futures::stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(blob.data)
        }))
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
