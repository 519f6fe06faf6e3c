//! Media: the files of incoming and outgoing media messages, kept in a
//! media store under a media id.
//!
//! An incoming media message is committed to the outbox with what its
//! download needs ([`MediaJob`]); the session's delivery worker, reaching
//! it in order, has the file downloaded, checked and stored ([`Media::resolve`])
//! before it posts the event. The job lives in the outbox, so a download cut
//! short by a crash is simply done again after the restart.

pub mod fetch;
mod s3;
mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

pub use self::s3::S3Settings;
pub use self::store::{MediaError, MediaRecord, MediaStore, valid_id};
use crate::store::OutboxEvent;
use crate::whatsapp::{DownloadError, MediaLink, MediaRef};

/// `WAPI_MEDIA_*` and what media needs of the rest of the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `WAPI_MEDIA_DOWNLOAD`: download incoming files (default on).
    pub download: bool,
    /// `WAPI_MEDIA_MAX_BYTES`: the largest file sent or received through the
    /// API (default 100 MiB, WhatsApp's document limit).
    pub max_bytes: u64,
    /// `WAPI_MEDIA_URL_ALLOW_PRIVATE`: a `url` to send may point at
    /// loopback and private addresses (never at link-local ones).
    pub allow_private_urls: bool,
    /// `WAPI_MEDIA_URL_TIMEOUT_SECS`: time allowed to fetch a `url`.
    pub url_timeout: Duration,
    /// `WAPI_MEDIA_RETENTION_DAYS`: files are deleted this long after they
    /// were stored (default 30 days, as the Cloud API).
    pub retention: Duration,
    /// `WAPI_PUBLIC_URL`: the bridge's address as webhook receivers reach
    /// it, for absolute media URLs.
    pub public_url: Option<String>,
    /// Sandbox builds: the simulator's media certificate (PEM) to trust.
    pub sandbox_media_ca: Option<String>,
    /// `WAPI_MEDIA_S3_*`: keep files on S3-compatible storage instead of
    /// under the files root.
    pub s3: Option<S3Settings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            download: true,
            max_bytes: 100 * 1024 * 1024,
            allow_private_urls: false,
            url_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(30 * 24 * 3600),
            public_url: None,
            sandbox_media_ca: None,
            s3: None,
        }
    }
}

/// A download still to do, kept with its message event in the outbox.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MediaJob {
    #[serde(rename = "ref")]
    pub media: MediaRef,
    /// Failed attempts so far (network or checks, not a missing connection).
    #[serde(default)]
    pub attempts: u32,
    /// Since when (unix ms) the job has waited for its session to connect.
    #[serde(default)]
    pub waiting_since_ms: Option<u64>,
}

/// Attempts at a download that fails for a reason other than an expired
/// file (which gets one re-upload request instead).
const MAX_ATTEMPTS: u32 = 3;

/// How long a media event waits for its session to connect before it is
/// posted without its file.
const CONNECT_PATIENCE: Duration = Duration::from_secs(300);

/// What the delivery worker does with an event after [`Media::resolve`].
pub enum Resolution {
    /// The file is stored (or finally failed, said in `media.error`): post.
    Ready,
    /// Try again after this long; later events wait, to keep the order.
    Later(Duration),
}

pub struct Media {
    pub store: MediaStore,
    pub settings: Settings,
    /// Each running session's client, for downloads and uploads.
    links: Mutex<HashMap<String, MediaLink>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Media {
    pub fn new(store: MediaStore, settings: Settings) -> Self {
        Self {
            store,
            settings,
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Files on S3 when configured, else under `<files_root>/media/`; either
    /// way staged in `<files_root>/media-tmp/` (emptied: anything left there
    /// is from a process that stopped midway).
    pub async fn open(files_root: &Path, settings: Settings) -> Result<Self, MediaError> {
        let staging = files_root.join("media-tmp");
        let _ = std::fs::remove_dir_all(&staging);
        let store = match &settings.s3 {
            Some(s3) => MediaStore::new(s3::open(s3).await?, &staging)?,
            None => MediaStore::local(&files_root.join("media"), &staging)?,
        };
        Ok(Self::new(store, settings))
    }

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<String, MediaLink>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session's client started (`Some`) or stopped (`None`).
    pub fn attach(&self, session: &str, link: Option<MediaLink>) {
        match link {
            Some(l) => self.links().insert(session.to_string(), l),
            None => self.links().remove(session),
        };
    }

    pub fn link(&self, session: &str) -> Option<MediaLink> {
        self.links().get(session).cloned()
    }

    /// Where a stored file can be fetched: absolute with `WAPI_PUBLIC_URL`.
    pub fn url_of(&self, id: &str) -> String {
        let base = self
            .settings
            .public_url
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/');
        format!("{base}/v1/media/{id}/file")
    }

    /// Stores a complete local file (removed afterwards, stored or not),
    /// hashing it and sniffing its type when none is given.
    pub async fn ingest(
        &self,
        path: &Path,
        mut rec: MediaRecord,
    ) -> Result<MediaRecord, MediaError> {
        let result = async {
            let (sha, size, head) = hash_file(path).await?;
            rec.sha256 = hex::encode(sha);
            rec.size = size;
            if rec.mimetype.is_empty() {
                rec.mimetype = sniff(&head, rec.kind.as_deref());
            }
            self.store.put_file(&rec, path).await?;
            Ok(rec)
        }
        .await;
        let _ = tokio::fs::remove_file(path).await;
        result
    }

    /// Downloads, checks and stores the file of a queued message event, and
    /// fills in its `payload.media` (`id`, `url`, or `error`).
    pub async fn resolve(&self, session: &str, ev: &mut OutboxEvent) -> Resolution {
        let Some(job) = ev.media.as_mut() else {
            return Resolution::Ready;
        };
        let link = self.link(session).filter(MediaLink::is_connected);
        let Some(link) = link else {
            let since = *job.waiting_since_ms.get_or_insert_with(now_ms);
            if now_ms().saturating_sub(since) < CONNECT_PATIENCE.as_millis() as u64 {
                return Resolution::Later(Duration::from_secs(1));
            }
            fail(
                ev,
                "the session was not connected: the file was not downloaded",
            );
            return Resolution::Ready;
        };
        job.waiting_since_ms = None;
        let r = job.media.clone();
        let tmp = self.store.staging_path();
        let downloaded = link.download(&r, &tmp).await;
        let outcome = match downloaded {
            Ok(()) => self.keep(session, &ev.id, &r, &tmp).await,
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&tmp).await;
        match outcome {
            Ok(rec) => {
                info!(
                    session,
                    media = rec.id,
                    size = rec.size,
                    "incoming file stored"
                );
                let url = self.url_of(&rec.id);
                if let Some(m) = ev.body["payload"]["media"].as_object_mut() {
                    m.insert("id".into(), rec.id.into());
                    m.insert("url".into(), url.into());
                    m.insert("error".into(), serde_json::Value::Null);
                }
                ev.media = None;
                Resolution::Ready
            }
            Err(DownloadError::NotConnected) => Resolution::Later(Duration::from_secs(1)),
            Err(DownloadError::Gone(e)) => {
                warn!(session, message = r.message_id, "incoming file lost: {e}");
                fail(ev, &format!("the file is no longer available: {e}"));
                Resolution::Ready
            }
            Err(DownloadError::Failed(e)) => {
                job_attempts(ev);
                let attempts = ev.media.as_ref().map_or(MAX_ATTEMPTS, |j| j.attempts);
                warn!(
                    session,
                    message = r.message_id,
                    attempts,
                    "download failed: {e}"
                );
                if attempts >= MAX_ATTEMPTS {
                    fail(ev, &format!("download failed: {e}"));
                    return Resolution::Ready;
                }
                Resolution::Later(Duration::from_secs(1 << attempts))
            }
        }
    }

    /// Checks a downloaded file against the message's SHA-256 and stores it
    /// under an id made from the event's, so a download done twice (after a
    /// crash) stores one file.
    async fn keep(
        &self,
        session: &str,
        event_id: &str,
        r: &MediaRef,
        tmp: &Path,
    ) -> Result<MediaRecord, DownloadError> {
        let (sha, _, _) = hash_file(tmp)
            .await
            .map_err(|e| DownloadError::Failed(e.to_string()))?;
        if hex::encode(sha) != r.file_sha256 {
            return Err(DownloadError::Failed(
                "the file does not match the message's SHA-256".into(),
            ));
        }
        let rec = MediaRecord {
            id: media_id_for(event_id),
            session: session.to_string(),
            mimetype: r.mimetype.clone().unwrap_or_default(),
            sha256: String::new(),
            size: 0,
            file_name: r.file_name.clone(),
            message_id: Some(r.message_id.clone()),
            kind: Some(r.kind.clone()),
            created_at: now_ms() / 1000,
        };
        // ingest removes the file it stores: hand it a copy's path.
        let staged = self.store.staging_path();
        tokio::fs::rename(tmp, &staged)
            .await
            .map_err(|e| DownloadError::Failed(e.to_string()))?;
        self.ingest(&staged, rec)
            .await
            .map_err(|e| DownloadError::Failed(e.to_string()))
    }

    /// Deletes files past their retention; run now and then.
    pub async fn sweep(&self) {
        let cutoff = (now_ms() / 1000).saturating_sub(self.settings.retention.as_secs());
        match self.store.sweep(cutoff).await {
            Ok(0) => {}
            Ok(n) => info!(removed = n, "media past retention deleted"),
            Err(e) => warn!("cannot sweep the media store: {e}"),
        }
    }
}

fn job_attempts(ev: &mut OutboxEvent) {
    if let Some(j) = ev.media.as_mut() {
        j.attempts += 1;
    }
}

/// Gives up on a file: the event goes out with `media.error`.
fn fail(ev: &mut OutboxEvent, error: &str) {
    if let Some(m) = ev.body["payload"]["media"].as_object_mut() {
        m.insert("error".into(), error.into());
    }
    ev.media = None;
}

/// A new random media id.
pub fn new_id() -> String {
    format!("med_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// The media id of an incoming message's file, stable for its event.
fn media_id_for(event_id: &str) -> String {
    let h = Sha256::digest(format!("media\0{event_id}").as_bytes());
    format!("med_{}", &hex::encode(h)[..32])
}

/// SHA-256, size and the first bytes (for sniffing) of a file.
async fn hash_file(path: &Path) -> std::io::Result<([u8; 32], u64, Vec<u8>)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    let mut head = Vec::new();
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if head.len() < 8192 {
            head.extend_from_slice(&buf[..n.min(8192 - head.len())]);
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((h.finalize().into(), size, head))
}

/// The MIME type of a file from its first bytes; what WhatsApp assumes
/// for the kind when the bytes say nothing.
pub fn sniff(head: &[u8], kind: Option<&str>) -> String {
    if let Some(t) = infer::get(head) {
        return t.mime_type().to_string();
    }
    match kind {
        Some("image") => "image/jpeg",
        Some("video") => "video/mp4",
        Some("audio") | Some("voice") => "audio/ogg; codecs=opus",
        Some("sticker") => "image/webp",
        _ => "application/octet-stream",
    }
    .to_string()
}
