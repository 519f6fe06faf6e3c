//! Incoming messages in the bridge's own terms: what a WhatsApp message
//! says (kind, text, media, location, contact, reply), and for media, what
//! is needed to download its file later.

use whatsapp_rust::prelude::*;

use super::media::{MediaRef, MediaType};

/// An incoming message in the bridge's own terms.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IncomingMessage {
    pub id: String,
    /// The chat: the sender for a direct message, the group for a group one.
    pub chat: String,
    /// Who wrote it (in a group, the participant).
    pub from: String,
    pub from_lid: Option<String>,
    pub push_name: String,
    pub from_me: bool,
    pub is_group: bool,
    pub timestamp: i64,
    /// text, image, video, audio, voice, document, sticker, location,
    /// contacts, reaction, poll, poll_vote or unknown. For an edit, the kind
    /// of the new content.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// For an edit or a delete: the id of that stanza (`id` is the message
    /// edited or deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit_id: Option<String>,
    /// Whether this is a message, or the edit or deletion of one.
    #[serde(skip)]
    pub change: Change,
    pub text: Option<String>,
    pub caption: Option<String>,
    /// The id of the quoted message, for a reply.
    pub reply_to: Option<String>,
    /// Who wrote the quoted message, when WhatsApp says.
    pub reply_to_sender: Option<String>,
    /// JIDs the message mentions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    pub media: Option<Media>,
    pub location: Option<Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<Contact>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reaction: Option<Reaction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll: Option<Poll>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vote: Option<Vote>,
    /// A vote still encrypted: read with the poll's secret before commit.
    #[serde(skip)]
    pub vote_cipher: Option<(Vec<u8>, Vec<u8>)>,
    /// Where the file of a media message is and how to decrypt it: kept
    /// with the queued event (not posted) so the download survives a
    /// restart.
    #[serde(skip)]
    pub media_ref: Option<MediaRef>,
}

/// What a media message says about its file.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Media {
    /// The media id of the stored file (`GET /v1/media/{id}/file`); null
    /// until it is downloaded, and when downloads are off.
    pub id: Option<String>,
    /// Where to fetch the stored file (absolute with `WAPI_PUBLIC_URL`).
    pub url: Option<String>,
    /// Why the file could not be downloaded, when it could not.
    pub error: Option<String>,
    pub mimetype: Option<String>,
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    /// base64 of the file's SHA-256, as the Cloud API gives it.
    pub sha256: Option<String>,
    pub seconds: Option<u32>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Location {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Contact {
    pub name: Option<String>,
    /// The numbers on the card (its TEL lines).
    pub phones: Vec<String>,
    pub vcard: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Reaction {
    /// The message reacted to.
    pub message_id: String,
    /// Empty when a reaction is taken back.
    pub emoji: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Poll {
    pub question: String,
    pub options: Vec<String>,
    pub selectable: u32,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Vote {
    /// The poll voted on.
    pub message_id: String,
    /// The options chosen (empty: the vote was taken back); null when the
    /// vote could not be read.
    pub options: Option<Vec<String>>,
    pub error: Option<String>,
}

/// What an incoming stanza does to the conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Change {
    /// A new message (reactions and votes included).
    #[default]
    Message,
    /// An edit of message `id`.
    Edited,
    /// Message `id` deleted for everyone.
    Revoked,
}

impl Contact {
    fn from_proto(c: &wa::message::ContactMessage) -> Self {
        let phones = c
            .vcard
            .as_deref()
            .unwrap_or_default()
            .lines()
            .filter(|l| l.to_ascii_uppercase().starts_with("TEL"))
            .filter_map(|l| l.rsplit_once(':').map(|(_, n)| n.trim().to_string()))
            .collect();
        Self {
            name: c.display_name.clone(),
            phones,
            vcard: c.vcard.clone(),
        }
    }
}

pub(super) fn incoming(m: &InboundMessage) -> IncomingMessage {
    let src = &m.info.source;
    let sender = src.sender.to_non_ad();
    let alt = src.sender_alt.as_ref().map(|j| j.to_non_ad());
    // A user WhatsApp addresses by LID: the phone number goes in `from`
    // when WhatsApp gave it (`sender_pn`), the LID in `from_lid`, so a
    // message is the same whichever address it came under.
    let (from, from_lid) = if sender.server == Server::Lid {
        match alt.filter(|a| a.server == Server::Pn) {
            Some(pn) => (pn, Some(sender.to_string())),
            None => (sender.clone(), Some(sender.to_string())),
        }
    } else {
        let lid = alt
            .filter(|a| a.server == Server::Lid)
            .map(|j| j.to_string());
        (sender.clone(), lid)
    };
    let mut chat = src.chat.to_string();
    if !src.is_group && !src.is_from_me && src.chat.to_non_ad() == sender {
        chat = from.to_string();
    }
    let mut out = IncomingMessage {
        id: m.info.id.to_string(),
        chat,
        from: from.to_string(),
        from_lid,
        push_name: m.info.push_name.clone(),
        from_me: src.is_from_me,
        is_group: src.is_group,
        timestamp: m.info.timestamp.timestamp(),
        ..Default::default()
    };
    describe(m.message.get_base_message(), &mut out);
    if let Some(r) = out.media_ref.as_mut() {
        // A re-upload request names the message and, in a group, its sender.
        r.message_id = out.id.clone();
        r.chat = out.chat.clone();
        r.from_me = out.from_me;
        r.participant = src.is_group.then(|| src.sender.to_string());
        r.kind = out.kind.to_string();
        r.mimetype = out.media.as_ref().and_then(|m| m.mimetype.clone());
        r.file_name = out.media.as_ref().and_then(|m| m.file_name.clone());
    }
    out
}

fn sha(b: &Option<Vec<u8>>) -> Option<String> {
    use base64::Engine as _;
    b.as_ref()
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
}

/// The details every media message has, and what it takes to download its
/// file (the proto types differ per kind but name these fields alike).
macro_rules! media {
    ($out:ident, $m:ident, $ty:expr) => {
        $out.media = Some(Media {
            mimetype: $m.mimetype.clone(),
            file_size: $m.file_length,
            sha256: sha(&$m.file_sha256),
            ..Default::default()
        });
        $out.media_ref = MediaRef::new(
            $ty,
            $m.direct_path.as_deref(),
            $m.media_key.as_deref(),
            $m.file_sha256.as_deref(),
            $m.file_enc_sha256.as_deref(),
            $m.file_length,
        );
    };
}

/// Fills in the kind, text and details of a (base, unwrapped) message.
fn describe(msg: &wa::Message, out: &mut IncomingMessage) {
    use wa::message::protocol_message::Type as Protocol;
    let mut context: Option<&wa::ContextInfo> = None;
    if let Some(p) = msg.protocol_message.as_option() {
        let target = p.key.as_option().and_then(|k| k.id.clone());
        match (p.r#type, target) {
            (Some(Protocol::MESSAGE_EDIT), Some(target)) => {
                out.change = Change::Edited;
                out.edit_id = Some(std::mem::replace(&mut out.id, target));
                match p.edited_message.as_option() {
                    Some(new) => describe(new, out),
                    None => out.kind = "unknown",
                }
                return;
            }
            (Some(Protocol::REVOKE), Some(target)) => {
                out.change = Change::Revoked;
                out.edit_id = Some(std::mem::replace(&mut out.id, target));
                out.kind = "revoke";
                return;
            }
            _ => out.kind = "unknown",
        }
    } else if let Some(r) = msg.reaction_message.as_option() {
        out.kind = "reaction";
        out.reaction = Some(Reaction {
            message_id: r
                .key
                .as_option()
                .and_then(|k| k.id.clone())
                .unwrap_or_default(),
            emoji: r.text.clone().unwrap_or_default(),
        });
    } else if let Some(p) = [
        &msg.poll_creation_message,
        &msg.poll_creation_message_v2,
        &msg.poll_creation_message_v3,
    ]
    .into_iter()
    .find_map(|p| p.as_option())
    {
        out.kind = "poll";
        out.poll = Some(Poll {
            question: p.name.clone().unwrap_or_default(),
            options: p
                .options
                .iter()
                .filter_map(|o| o.option_name.clone())
                .collect(),
            selectable: p.selectable_options_count.unwrap_or(1),
        });
        context = p.context_info.as_option();
    } else if let Some(v) = msg.poll_update_message.as_option() {
        out.kind = "poll_vote";
        out.vote = Some(Vote {
            message_id: v
                .poll_creation_message_key
                .as_option()
                .and_then(|k| k.id.clone())
                .unwrap_or_default(),
            ..Default::default()
        });
        out.vote_cipher = v.vote.as_option().map(|e| {
            (
                e.enc_payload.clone().unwrap_or_default(),
                e.enc_iv.clone().unwrap_or_default(),
            )
        });
    } else if let Some(t) = msg.conversation.as_ref().filter(|t| !t.is_empty()) {
        out.kind = "text";
        out.text = Some(t.clone());
    } else if let Some(e) = msg.extended_text_message.as_option() {
        out.kind = "text";
        out.text = e.text.clone();
        context = e.context_info.as_option();
    } else if let Some(i) = msg.image_message.as_option() {
        out.kind = "image";
        out.caption = i.caption.clone();
        media!(out, i, MediaType::Image);
        context = i.context_info.as_option();
    } else if let Some(v) = msg.video_message.as_option() {
        out.kind = "video";
        out.caption = v.caption.clone();
        media!(out, v, MediaType::Video);
        if let Some(m) = out.media.as_mut() {
            m.seconds = v.seconds;
        }
        context = v.context_info.as_option();
    } else if let Some(a) = msg.audio_message.as_option() {
        out.kind = if a.ptt == Some(true) {
            "voice"
        } else {
            "audio"
        };
        media!(out, a, MediaType::Audio);
        if let Some(m) = out.media.as_mut() {
            m.seconds = a.seconds;
        }
        context = a.context_info.as_option();
    } else if let Some(d) = msg.document_message.as_option() {
        out.kind = "document";
        out.caption = d.caption.clone();
        media!(out, d, MediaType::Document);
        if let Some(m) = out.media.as_mut() {
            m.file_name = d.file_name.clone();
        }
        context = d.context_info.as_option();
    } else if let Some(st) = msg.sticker_message.as_option() {
        out.kind = "sticker";
        media!(out, st, MediaType::Sticker);
        context = st.context_info.as_option();
    } else if let Some(l) = msg.location_message.as_option() {
        out.kind = "location";
        out.location = Some(Location {
            latitude: l.degrees_latitude,
            longitude: l.degrees_longitude,
            name: l.name.clone(),
            address: l.address.clone(),
        });
        context = l.context_info.as_option();
    } else if let Some(c) = msg.contact_message.as_option() {
        out.kind = "contacts";
        out.contacts = Some(vec![Contact::from_proto(c)]);
        context = c.context_info.as_option();
    } else if let Some(a) = msg.contacts_array_message.as_option() {
        out.kind = "contacts";
        out.contacts = Some(a.contacts.iter().map(Contact::from_proto).collect());
        context = a.context_info.as_option();
    } else {
        out.kind = "unknown";
    }
    if let Some(ctx) = context {
        out.reply_to = ctx.stanza_id.clone().filter(|s| !s.is_empty());
        out.reply_to_sender = ctx.participant.clone().filter(|s| !s.is_empty());
        out.mentions = ctx.mentioned_jid.clone();
    }
}
