//! Media messages of the simulated contacts: sending one (encrypt the file
//! with a fresh media key as a phone does, store the blob, build the
//! `wa::Message`) and reading one a device sent (fetch the blob, check the
//! MAC, decrypt) for the inbox.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use wacore::download::{DownloadUtils, MediaType};
use waproto::whatsapp as wa;

use crate::error::SimError;
use crate::media::{Blob, SentMedia};
use crate::routing::{self, SendError};
use crate::world::{InboxMessage, World, new_message_id, now_secs};

/// The kinds of media a contact can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    /// A voice note: an audio message with `ptt`.
    Voice,
    Document,
    Sticker,
}

impl MediaKind {
    pub const ALL: [MediaKind; 6] = [
        MediaKind::Image,
        MediaKind::Video,
        MediaKind::Audio,
        MediaKind::Voice,
        MediaKind::Document,
        MediaKind::Sticker,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Voice => "voice",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }

    /// The key derivation and upload class (stickers use image keys).
    pub fn media_type(self) -> MediaType {
        match self {
            MediaKind::Image => MediaType::Image,
            MediaKind::Video => MediaType::Video,
            MediaKind::Audio | MediaKind::Voice => MediaType::Audio,
            MediaKind::Document => MediaType::Document,
            MediaKind::Sticker => MediaType::Sticker,
        }
    }

    pub fn default_mimetype(self) -> &'static str {
        match self {
            MediaKind::Image => "image/jpeg",
            MediaKind::Video => "video/mp4",
            MediaKind::Audio | MediaKind::Voice => "audio/ogg; codecs=opus",
            MediaKind::Document => "application/octet-stream",
            MediaKind::Sticker => "image/webp",
        }
    }
}

/// A file a contact sends.
#[derive(Clone, Debug)]
pub struct ContactMedia {
    pub kind: MediaKind,
    pub data: Vec<u8>,
    /// Defaults to [`MediaKind::default_mimetype`].
    pub mimetype: Option<String>,
    /// Images, videos and documents.
    pub caption: Option<String>,
    /// Documents.
    pub file_name: Option<String>,
    /// Store the blob already expired: downloads answer 410 until the
    /// recipient asks for a re-upload.
    pub expired: bool,
    /// Whether the contact's phone still has the file when a re-upload is
    /// asked for.
    pub reupload: bool,
    /// A quote and mentions (see [`crate::kinds::context`]).
    pub context: Option<wa::ContextInfo>,
}

impl ContactMedia {
    pub fn new(kind: MediaKind, data: Vec<u8>) -> Self {
        Self {
            kind,
            data,
            mimetype: None,
            caption: None,
            file_name: None,
            expired: false,
            reupload: true,
            context: None,
        }
    }
}

/// The CDN fields every media message carries.
struct Cdn {
    url: String,
    direct_path: String,
    media_key: [u8; 32],
    file_sha256: [u8; 32],
    file_enc_sha256: [u8; 32],
    file_length: u64,
    mimetype: String,
    sidecar: Option<Vec<u8>>,
}

/// A media message struct with the CDN fields filled in; the field names
/// are shared by all of them.
macro_rules! media_fields {
    ($ty:ident, $c:expr $(, $field:ident: $value:expr)* $(,)?) => {
        wa::message::$ty {
            url: Some($c.url.clone()),
            direct_path: Some($c.direct_path.clone()),
            media_key: Some($c.media_key.to_vec()),
            file_sha256: Some($c.file_sha256.to_vec()),
            file_enc_sha256: Some($c.file_enc_sha256.to_vec()),
            file_length: Some($c.file_length),
            media_key_timestamp: Some(now_secs() as i64),
            mimetype: Some($c.mimetype.clone()),
            $($field: $value,)*
            ..Default::default()
        }
    };
}

fn build_message(m: &ContactMedia, c: &Cdn) -> wa::Message {
    use buffa::MessageField;
    let caption = m.caption.clone();
    match m.kind {
        MediaKind::Image => wa::Message {
            image_message: MessageField::some(media_fields!(ImageMessage, c, caption: caption)),
            ..Default::default()
        },
        MediaKind::Video => wa::Message {
            video_message: MessageField::some(media_fields!(
                VideoMessage,
                c,
                caption: caption,
                streaming_sidecar: c.sidecar.clone(),
            )),
            ..Default::default()
        },
        MediaKind::Audio | MediaKind::Voice => wa::Message {
            audio_message: MessageField::some(media_fields!(
                AudioMessage,
                c,
                ptt: Some(m.kind == MediaKind::Voice),
                streaming_sidecar: c.sidecar.clone(),
            )),
            ..Default::default()
        },
        MediaKind::Document => wa::Message {
            document_message: MessageField::some(media_fields!(
                DocumentMessage,
                c,
                caption: caption,
                file_name: m.file_name.clone(),
                title: m.file_name.clone(),
            )),
            ..Default::default()
        },
        MediaKind::Sticker => wa::Message {
            sticker_message: MessageField::some(media_fields!(StickerMessage, c)),
            ..Default::default()
        },
    }
}

/// A contact sends a file to every linked device of an account: encrypted
/// with a fresh media key, stored on the CDN, announced in a media message.
/// The contact remembers it for re-uploads. Returns the message id.
pub async fn contact_send_media(
    world: &Arc<World>,
    from: &str,
    to: &str,
    media: ContactMedia,
    push_name: Option<&str>,
) -> Result<String, SendError> {
    if world.companions(to).is_none() && !crate::groups::is_group_jid(to) {
        return Err(SendError::NoAccount(to.to_string()));
    }
    let media_type = media.kind.media_type();
    let (media, enc) = tokio::task::spawn_blocking(move || {
        let enc = wacore::upload::encrypt_media(&media.data, media_type);
        (media, enc)
    })
    .await
    .map_err(|e| SimError::Protocol(format!("encrypt task: {e}")))?;
    let enc = enc.map_err(|e| SimError::Protocol(format!("encrypt media: {e}")))?;
    let blob = Bytes::from(enc.data_to_upload);
    let direct_path = world.media.put(
        media_type,
        Blob {
            data: blob.clone(),
            enc_sha256: enc.file_enc_sha256,
            expired: media.expired,
        },
    );
    let cdn = Cdn {
        url: world.media.url(&direct_path),
        direct_path,
        media_key: enc.media_key,
        file_sha256: enc.file_sha256,
        file_enc_sha256: enc.file_enc_sha256,
        file_length: media.data.len() as u64,
        mimetype: media
            .mimetype
            .clone()
            .unwrap_or_else(|| media.kind.default_mimetype().to_string()),
        sidecar: enc.streaming_sidecar,
    };
    let mut message = build_message(&media, &cdn);
    if let Some(ctx) = media.context.clone() {
        use wacore::proto_helpers::MessageExt as _;
        message.set_context_info(ctx);
    }
    // Remembered before sending: the device may ask for a re-upload as soon
    // as it has the message.
    let id = new_message_id();
    world.media.remember_sent(
        &id,
        SentMedia {
            from: from.to_string(),
            to: to.to_string(),
            media_key: enc.media_key,
            media_type,
            blob,
            enc_sha256: enc.file_enc_sha256,
            reupload: media.reupload,
        },
    );
    routing::contact_send_message_with_id(world, from, to, &message, push_name, id).await
}

/// The media part of a message, whatever its kind.
struct MediaRef<'a> {
    kind: MediaKind,
    media_type: MediaType,
    direct_path: Option<&'a str>,
    media_key: Option<&'a [u8]>,
    file_sha256: Option<&'a [u8]>,
    mimetype: Option<&'a str>,
    caption: Option<&'a str>,
    file_name: Option<&'a str>,
}

fn media_ref(m: &wa::Message) -> Option<MediaRef<'_>> {
    macro_rules! r {
        ($x:expr, $kind:expr, $caption:expr, $file_name:expr) => {
            MediaRef {
                kind: $kind,
                media_type: $kind.media_type(),
                direct_path: $x.direct_path.as_deref(),
                media_key: $x.media_key.as_deref(),
                file_sha256: $x.file_sha256.as_deref(),
                mimetype: $x.mimetype.as_deref(),
                caption: $caption,
                file_name: $file_name,
            }
        };
    }
    if let Some(x) = m.image_message.as_option() {
        return Some(r!(x, MediaKind::Image, x.caption.as_deref(), None));
    }
    if let Some(x) = m.video_message.as_option() {
        return Some(r!(x, MediaKind::Video, x.caption.as_deref(), None));
    }
    if let Some(x) = m.audio_message.as_option() {
        let kind = if x.ptt == Some(true) {
            MediaKind::Voice
        } else {
            MediaKind::Audio
        };
        return Some(r!(x, kind, None, None));
    }
    if let Some(x) = m.document_message.as_option() {
        return Some(r!(
            x,
            MediaKind::Document,
            x.caption.as_deref(),
            x.file_name.as_deref()
        ));
    }
    if let Some(x) = m.sticker_message.as_option() {
        return Some(r!(x, MediaKind::Sticker, None, None));
    }
    if let Some(inner) = m
        .device_sent_message
        .as_option()
        .and_then(|d| d.message.as_option())
    {
        return media_ref(inner);
    }
    None
}

/// Fills `entry` from a media message, downloading and decrypting the file
/// as the contact's phone would; a failure becomes `media_error`. Returns
/// false when the message carries no media.
pub async fn read_media(world: &World, m: &wa::Message, entry: &mut InboxMessage) -> bool {
    let Some(r) = media_ref(m) else {
        return false;
    };
    entry.kind = r.kind.as_str().to_string();
    entry.text = r.caption.unwrap_or_default().to_string();
    entry.mimetype = r.mimetype.map(str::to_string);
    entry.caption = r.caption.map(str::to_string);
    entry.file_name = r.file_name.map(str::to_string);
    let fetched = r
        .direct_path
        .ok_or("no direct_path")
        .and_then(|p| world.media.get(p).ok_or("no media at direct_path"))
        .and_then(|b| {
            if b.expired {
                Err("media expired")
            } else {
                Ok(b.data)
            }
        });
    let (blob, key) = match (fetched, r.media_key) {
        (Ok(blob), Some(key)) => (blob, key.to_vec()),
        (Err(e), _) => {
            entry.media_error = Some(e.to_string());
            return true;
        }
        (_, None) => {
            entry.media_error = Some("no media_key".into());
            return true;
        }
    };
    let media_type = r.media_type;
    // Tens of MiB of AES and SHA-256: off the async workers.
    let plain = tokio::task::spawn_blocking(move || {
        DownloadUtils::verify_and_decrypt(&blob, &key, media_type)
            .map(|p| (p.len() as u64, Sha256::digest(&p)))
    })
    .await;
    match plain {
        Ok(Ok((size, sha))) => {
            entry.size = Some(size);
            entry.sha256 = Some(hex::encode(sha));
            if r.file_sha256.is_some_and(|h| h != sha.as_slice()) {
                entry.media_error = Some("file_sha256 does not match the file".into());
            }
        }
        Ok(Err(e)) => entry.media_error = Some(e.to_string()),
        Err(e) => entry.media_error = Some(format!("decrypt task: {e}")),
    }
    true
}
