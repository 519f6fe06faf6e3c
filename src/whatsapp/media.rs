//! Media files through WhatsApp's media hosts: downloading an incoming
//! message's file (asking the sender's phone to upload it again when
//! WhatsApp no longer has it) and uploading a file to send.
//!
//! Files go through the disk, never whole through memory: downloads are
//! decrypted into a file as they arrive, uploads are encrypted into a file
//! and streamed from it.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use whatsapp_rust::MediaReuploadRequest;
use whatsapp_rust::download::DownloadParams;
use whatsapp_rust::prelude::*;
use whatsapp_rust::upload::UploadResponse;

pub use wacore::download::MediaType;

/// Where an incoming message's file is and how to decrypt it; kept with
/// the queued event so that a download survives a restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MediaRef {
    /// image, video, audio, voice, document or sticker.
    pub kind: String,
    pub direct_path: String,
    /// Hex: the message's media key and the SHA-256 of the plain and of
    /// the encrypted file.
    pub media_key: String,
    pub file_sha256: String,
    pub file_enc_sha256: String,
    pub file_length: u64,
    pub message_id: String,
    pub chat: String,
    pub from_me: bool,
    /// The sender in a group (a re-upload request names it).
    pub participant: Option<String>,
    pub mimetype: Option<String>,
    pub file_name: Option<String>,
}

impl MediaRef {
    /// `None` when the message lacks what a download needs.
    pub(super) fn new(
        ty: MediaType,
        direct_path: Option<&str>,
        media_key: Option<&[u8]>,
        file_sha256: Option<&[u8]>,
        file_enc_sha256: Option<&[u8]>,
        file_length: Option<u64>,
    ) -> Option<Self> {
        let direct_path = direct_path.filter(|p| !p.is_empty())?;
        Some(Self {
            kind: kind_name(ty).to_string(),
            direct_path: direct_path.to_string(),
            media_key: hex::encode(media_key?),
            file_sha256: hex::encode(file_sha256?),
            file_enc_sha256: hex::encode(file_enc_sha256?),
            file_length: file_length.unwrap_or(0),
            ..Default::default()
        })
    }

    fn media_type(&self) -> MediaType {
        media_type(&self.kind).unwrap_or(MediaType::Document)
    }
}

fn kind_name(ty: MediaType) -> &'static str {
    match ty {
        MediaType::Image => "image",
        MediaType::Video => "video",
        MediaType::Audio => "audio",
        MediaType::Sticker => "sticker",
        _ => "document",
    }
}

/// The WhatsApp media type of one of the bridge's media kinds (a voice
/// note is audio; a sticker uses its own upload path but image keys).
pub fn media_type(kind: &str) -> Option<MediaType> {
    Some(match kind {
        "image" => MediaType::Image,
        "video" => MediaType::Video,
        "audio" | "voice" => MediaType::Audio,
        "document" => MediaType::Document,
        "sticker" => MediaType::Sticker,
        _ => return None,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The session has no live connection: try again later, the file is
    /// not at fault.
    #[error("the session is not connected")]
    NotConnected,
    /// WhatsApp no longer has the file and the sender's phone did not
    /// upload it again.
    #[error("the file expired and the sender did not upload it again: {0}")]
    Gone(String),
    /// Anything else (network, MAC check, disk); worth a few more tries.
    #[error("{0}")]
    Failed(String),
}

/// What an upload gave: everything a media message carries about its file.
pub struct Uploaded(pub(super) UploadResponse);

impl Uploaded {
    pub fn file_sha256(&self) -> [u8; 32] {
        self.0.file_sha256
    }

    pub fn file_length(&self) -> u64 {
        self.0.file_length
    }
}

/// A session's client as far as media goes; cheap to clone, used outside
/// the session task so that a large file never holds up its other work.
#[derive(Clone)]
pub struct MediaLink(pub(super) Arc<whatsapp_rust::Client>);

impl std::fmt::Debug for MediaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaLink(..)")
    }
}

impl MediaLink {
    pub fn is_connected(&self) -> bool {
        self.0.is_connected() && self.0.is_logged_in()
    }

    /// Downloads and decrypts the file into `dest`. When WhatsApp answers
    /// that the file is gone (404/410 after a fresh media connection), the
    /// sender's phone is asked to upload it again, once, as WhatsApp Web
    /// does; the SHA-256 of the result is checked by the caller.
    pub async fn download(&self, r: &MediaRef, dest: &Path) -> Result<(), DownloadError> {
        if !self.is_connected() {
            return Err(DownloadError::NotConnected);
        }
        let decode = |h: &str, what: &str| {
            hex::decode(h).map_err(|_| DownloadError::Failed(format!("bad {what} in the message")))
        };
        let key = decode(&r.media_key, "media key")?;
        let sha = decode(&r.file_sha256, "file hash")?;
        let enc = decode(&r.file_enc_sha256, "encrypted file hash")?;
        let params = |path: &str| {
            DownloadParams::encrypted(path, &key, &sha, &enc, r.file_length, r.media_type())
        };
        let first = self.download_path(&params(&r.direct_path), dest).await;
        let Err(e) = first else { return Ok(()) };
        if !is_gone(&e) {
            return Err(DownloadError::Failed(format!("{e:#}")));
        }
        tracing::info!(
            message = r.message_id,
            "media expired at WhatsApp: asking the sender to upload it again"
        );
        let new_path = self.reupload(r, &key).await?;
        self.download_path(&params(&new_path), dest)
            .await
            .map_err(|e| DownloadError::Failed(format!("after the re-upload: {e:#}")))
    }

    async fn download_path(&self, params: &DownloadParams, dest: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(dest)?;
        let file = self.0.download_from_params_to_writer(params, file).await?;
        file.sync_all()?;
        Ok(())
    }

    async fn reupload(&self, r: &MediaRef, key: &[u8]) -> Result<String, DownloadError> {
        use wacore::media_retry::MediaRetryResult;
        let parse = |j: &str| {
            j.parse::<Jid>()
                .map_err(|_| DownloadError::Failed(format!("bad JID {j:?}")))
        };
        let chat = parse(&r.chat)?;
        let participant = r.participant.as_deref().map(parse).transpose()?;
        let req = MediaReuploadRequest {
            msg_id: &r.message_id,
            chat_jid: &chat,
            media_key: key,
            is_from_me: r.from_me,
            participant: participant.as_ref(),
        };
        match self.0.media_reupload().request(&req).await {
            Ok(MediaRetryResult::Success { direct_path }) => Ok(direct_path),
            Ok(other) => Err(DownloadError::Gone(format!("{other:?}"))),
            Err(e) => Err(DownloadError::Gone(e.to_string())),
        }
    }

    /// Encrypts the file at `src` into a temporary file beside it and
    /// streams that to WhatsApp's media hosts.
    pub async fn upload(&self, src: &Path, ty: MediaType) -> Result<Uploaded, String> {
        let enc_path = src.with_extension("enc");
        let (source, info) = {
            let src = src.to_path_buf();
            let enc_path = enc_path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                let reader = std::io::BufReader::new(std::fs::File::open(&src)?);
                let writer = std::io::BufWriter::new(std::fs::File::create(&enc_path)?);
                let info = wacore::upload::encrypt_media_streaming(reader, writer, ty)
                    .map_err(std::io::Error::other)?;
                let len = std::fs::metadata(&enc_path)?.len();
                Ok((
                    FileSource {
                        path: enc_path,
                        len,
                    },
                    info,
                ))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot encrypt the file: {e}"))?
        };
        let result = self.0.upload_stream(source, info, ty).await;
        let _ = std::fs::remove_file(&enc_path);
        result
            .map(Uploaded)
            .map_err(|e| format!("upload failed: {e:#}"))
    }
}

/// Whether a download failed because WhatsApp no longer has the file.
fn is_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<whatsapp_rust::http::HttpStatusError>()
            .is_some_and(|s| matches!(s.status, 404 | 410))
    })
}

/// An encrypted file streamed to the media hosts (re-opened for each
/// attempt, so a resumed upload starts at its offset).
struct FileSource {
    path: PathBuf,
    len: u64,
}

impl wacore::upload::UploadSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn reader_from(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send>> {
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(std::io::SeekFrom::Start(offset))?;
        Ok(Box::new(std::io::BufReader::new(f)))
    }
}

/// The HTTP client WhatsApp's media goes through: WhatsApp's certificates
/// verified against the web's roots. A sandbox build may be given the
/// simulator's certificate to trust in addition, for its media host.
pub(super) fn http_client(
    #[allow(unused_variables)] sandbox_ca_pem: Option<&str>,
) -> whatsapp_rust_ureq_http_client::UreqHttpClient {
    #[cfg(feature = "sandbox")]
    if let Some(pem) = sandbox_ca_pem {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        match Certificate::from_pem(pem.as_bytes()) {
            Ok(cert) => {
                let tls = TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(vec![cert.to_owned()])))
                    .build();
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .tls_config(tls)
                    .build()
                    .into();
                return whatsapp_rust_ureq_http_client::UreqHttpClient::with_agent(agent);
            }
            Err(e) => tracing::warn!("sandbox media certificate ignored: {e}"),
        }
    }
    whatsapp_rust_ureq_http_client::UreqHttpClient::new()
}
