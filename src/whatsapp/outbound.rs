//! Outgoing messages: a media message built from an upload and the
//! caller's details.

use whatsapp_rust::media::{self, AudioOptions, DocumentOptions, ImageOptions, VideoOptions};
use whatsapp_rust::prelude::*;

use super::media::Uploaded;

/// What a caller says about a media message besides its file.
#[derive(Clone, Debug, Default)]
pub struct MediaDetails {
    /// image, video, audio, voice, document or sticker.
    pub kind: String,
    pub mimetype: String,
    pub caption: Option<String>,
    pub file_name: Option<String>,
}

/// The message for an uploaded file (stickers have no builder in the crate:
/// built from the same fields by hand).
pub(super) fn media_message(up: Uploaded, d: MediaDetails) -> wa::Message {
    let up = up.0;
    let mimetype = Some(d.mimetype);
    match d.kind.as_str() {
        "image" => media::image_message(
            up,
            ImageOptions {
                caption: d.caption,
                mimetype,
                ..Default::default()
            },
        ),
        "video" => media::video_message(
            up,
            VideoOptions {
                caption: d.caption,
                mimetype,
                ..Default::default()
            },
        ),
        "audio" | "voice" => media::audio_message(
            up,
            AudioOptions {
                mimetype,
                ptt: Some(d.kind == "voice"),
                ..Default::default()
            },
        ),
        "sticker" => wa::Message {
            sticker_message: buffa::MessageField::some(wa::message::StickerMessage {
                url: Some(up.url),
                direct_path: Some(up.direct_path),
                media_key: Some(up.media_key.to_vec()),
                file_sha256: Some(up.file_sha256.to_vec()),
                file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                file_length: Some(up.file_length),
                media_key_timestamp: Some(up.media_key_timestamp),
                mimetype,
                ..Default::default()
            }),
            ..Default::default()
        },
        _ => media::document_message(
            up,
            DocumentOptions {
                mimetype,
                title: d.file_name.clone(),
                file_name: d.file_name,
                caption: d.caption,
                ..Default::default()
            },
        ),
    }
}
