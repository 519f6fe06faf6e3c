//! Outgoing messages: every kind the API sends, built into WhatsApp's
//! messages, with a quoted message and mentions when asked.

use whatsapp_rust::media::{self, AudioOptions, DocumentOptions, ImageOptions, VideoOptions};
use whatsapp_rust::prelude::*;

use super::media::Uploaded;
use crate::store::MessageRecord;

/// A message to send, in the bridge's terms.
pub enum Outgoing {
    Text(String),
    Media(Box<Uploaded>, MediaDetails),
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    /// One card or several.
    Contacts(Vec<ContactCard>),
    /// An empty emoji takes a reaction back.
    Reaction {
        target: MessageRecord,
        emoji: String,
    },
    Poll {
        question: String,
        options: Vec<String>,
        /// How many options a voter may choose (1 = a single choice).
        selectable: u32,
    },
}

impl Outgoing {
    /// The kind as the API names it.
    pub fn kind(&self) -> &str {
        match self {
            Self::Text(_) => "text",
            Self::Media(_, d) => &d.kind,
            Self::Location { .. } => "location",
            Self::Contacts(_) => "contacts",
            Self::Reaction { .. } => "reaction",
            Self::Poll { .. } => "poll",
        }
    }

    /// What a later reply shows of this message.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Text(t) => Some(t.clone()),
            Self::Media(_, d) => d.caption.clone(),
            Self::Location { name, .. } => name.clone(),
            Self::Contacts(c) => c.first().map(|c| c.name.clone()),
            Self::Poll { question, .. } => Some(question.clone()),
            Self::Reaction { .. } => None,
        }
    }
}

/// A contact card: a name and phone numbers (digits, `+` allowed).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
pub struct ContactCard {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(
        length(min = 1),
        inner(regex(pattern = r"^[+ ()-]*([0-9][+ ()-]*){5,20}$"))
    )]
    pub phones: Vec<String>,
}

/// A vCard 3.0 as WhatsApp's apps write them: the `waid` parameter makes
/// the number tappable as a WhatsApp contact.
pub fn vcard(c: &ContactCard) -> String {
    let mut v = format!("BEGIN:VCARD\nVERSION:3.0\nFN:{}\n", one_line(&c.name));
    for p in &c.phones {
        let digits: String = p.chars().filter(|c| c.is_ascii_digit()).collect();
        v.push_str(&format!("TEL;type=CELL;waid={digits}:+{digits}\n"));
    }
    v.push_str("END:VCARD");
    v
}

/// vCard values are line-based: a newline in a name would start a field.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// What goes with any kind: the message it answers, and who it mentions.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    pub reply_to: Option<MessageRecord>,
    /// JIDs (phone numbers are turned into JIDs by the caller).
    pub mentions: Vec<String>,
}

/// The message for everything but reactions and polls (which the client
/// builds itself).
pub(super) fn build(out: Outgoing) -> wa::Message {
    match out {
        Outgoing::Text(t) => wa::Message::text(t),
        Outgoing::Media(up, d) => media_message(*up, d),
        Outgoing::Location {
            latitude,
            longitude,
            name,
            address,
        } => wa::Message {
            location_message: buffa::MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(latitude),
                degrees_longitude: Some(longitude),
                name,
                address,
                ..Default::default()
            }),
            ..Default::default()
        },
        Outgoing::Contacts(cards) => {
            let mut contacts: Vec<wa::message::ContactMessage> = cards
                .iter()
                .map(|c| wa::message::ContactMessage {
                    display_name: Some(c.name.clone()),
                    vcard: Some(vcard(c)),
                    ..Default::default()
                })
                .collect();
            if contacts.len() == 1 {
                wa::Message {
                    contact_message: buffa::MessageField::some(contacts.remove(0)),
                    ..Default::default()
                }
            } else {
                wa::Message {
                    contacts_array_message: buffa::MessageField::some(
                        wa::message::ContactsArrayMessage {
                            display_name: Some(format!("{} contacts", contacts.len())),
                            contacts,
                            ..Default::default()
                        },
                    ),
                    ..Default::default()
                }
            }
        }
        // Sent through the client's own builders (see `Link::send`).
        Outgoing::Reaction { .. } | Outgoing::Poll { .. } => wa::Message::default(),
    }
}

/// Quotes `reply_to` and lists the mentions on a built message.
pub(super) fn add_extras(msg: &mut wa::Message, extras: &Extras) {
    if extras.reply_to.is_none() && extras.mentions.is_empty() {
        return;
    }
    let mut ctx = match &extras.reply_to {
        Some(q) => {
            let quoted = wa::Message::text(q.text.clone().unwrap_or_default());
            wacore::proto_helpers::build_quote_context(&q.id, &q.sender, &quoted)
        }
        None => wa::ContextInfo::default(),
    };
    ctx.mentioned_jid = extras.mentions.clone();
    msg.set_context_info(ctx);
}

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
