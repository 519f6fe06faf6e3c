//! The message kinds other than media, both ways: building what a contact
//! sends from an admin body (text with a quote or mentions, location,
//! contact cards, reaction, edit, revoke, poll, poll vote), and reading what
//! a contact received into its inbox. Each contact remembers the messages
//! it sent and received, so that later ones can refer to them, and the
//! secrets of the polls it knows, so that it can vote and read votes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, MutexGuard};

use buffa::MessageField;
use serde::{Deserialize, Serialize};
use wa::message::protocol_message::Type as ProtocolType;
use wacore::proto_helpers::MessageExt as _;
use waproto::whatsapp as wa;

use crate::error::SimError;
use crate::routing::{self, DeviceAddr, SendError};
use crate::world::{Endpoint, InboxMessage, SERVER, World, is_phone};

mod read;
pub use self::read::read;

/// Every `type` a contact can send, for error messages.
pub const TYPES: &str = "text, image, video, audio, voice, document, sticker, location, \
                         contacts, reaction, edit, revoke, poll or poll_vote";

/// A contact card: a name and phone numbers (digits, with an optional
/// leading `+`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Card {
    pub name: String,
    pub phones: Vec<String>,
}

/// What a contact sends, as the admin API's body has it (`type` and the
/// fields of that kind; the media fields are the admin API's own).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Compose {
    /// `text` when absent.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A text, or an edit's new text.
    pub text: Option<String>,
    /// The id of a message to quote: one the contact received or sent.
    pub reply_to: Option<String>,
    /// JIDs (or phone numbers) to mention.
    pub mentions: Option<Vec<String>>,
    /// The target of a reaction, edit, revoke or poll vote.
    pub message_id: Option<String>,
    /// A reaction's emoji; empty removes the contact's reaction.
    pub emoji: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// A location's name.
    pub name: Option<String>,
    /// A location's address.
    pub address: Option<String>,
    pub contacts: Option<Vec<Card>>,
    /// A poll's question.
    pub question: Option<String>,
    /// A poll's options, or the options a vote chooses.
    pub options: Option<Vec<String>>,
    /// How many options a poll's voters may choose (default 1).
    pub selectable: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// A bad request; the message starts with the field at fault.
    #[error("{0}")]
    Bad(String),
    #[error(transparent)]
    Send(#[from] SendError),
}

impl From<SimError> for ComposeError {
    fn from(e: SimError) -> Self {
        ComposeError::Send(SendError::Sim(e))
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, ComposeError> {
    Err(ComposeError::Bad(msg.into()))
}

/// What an endpoint remembers of its conversations.
#[derive(Default)]
pub struct Memory {
    /// Messages that can be quoted or reacted to, by id.
    messages: HashMap<String, Known>,
    /// Polls sent or received, by id.
    polls: HashMap<String, Poll>,
}

struct Known {
    /// Sent by this endpoint (else received).
    from_me: bool,
    /// The JID (no device) of who wrote it.
    author: String,
    /// The phone number of the other party.
    peer: String,
    /// The message as a quote carries it.
    quote: wa::Message,
}

#[derive(Clone)]
struct Poll {
    /// The JID (no device) of who created it.
    creator: String,
    peer: String,
    options: Vec<String>,
    selectable: u32,
    secret: Vec<u8>,
}

impl Memory {
    fn remember(
        &mut self,
        id: &str,
        message: &wa::Message,
        from_me: bool,
        author: &str,
        peer: &str,
    ) {
        let base = message.get_base_message();
        if base.reaction_message.is_set()
            || base.protocol_message.is_set()
            || base.poll_update_message.is_set()
        {
            return;
        }
        if let Some(p) = poll_creation(base)
            && let Some(secret) = message_secret(message)
        {
            self.polls.insert(
                id.to_string(),
                Poll {
                    creator: author.to_string(),
                    peer: peer.to_string(),
                    options: p
                        .options
                        .iter()
                        .filter_map(|o| o.option_name.clone())
                        .collect(),
                    selectable: p.selectable_options_count.unwrap_or(0),
                    secret,
                },
            );
        }
        let mut quote = *base.prepare_for_quote();
        quote.message_context_info = MessageField::none();
        self.messages.insert(
            id.to_string(),
            Known {
                from_me,
                author: author.to_string(),
                peer: peer.to_string(),
                quote,
            },
        );
    }
}

fn memory(endpoint: &Endpoint) -> MutexGuard<'_, Memory> {
    endpoint.memory.lock().unwrap_or_else(|p| p.into_inner())
}

fn user_jid(phone: &str) -> String {
    format!("{phone}@{SERVER}")
}

/// The chat of a message to `to`: an account's JID, or a group's JID as is.
fn chat_jid(to: &str) -> String {
    if to.contains('@') {
        to.to_string()
    } else {
        user_jid(to)
    }
}

/// A device JID without its device (`PHONE@s.whatsapp.net`).
fn non_ad(jid: &str) -> String {
    DeviceAddr::parse(jid)
        .map(|a| user_jid(&a.phone))
        .unwrap_or_else(|| jid.to_string())
}

/// Called for every message a contact sends (any kind, any path).
pub fn remember_sent(
    world: &World,
    from: &str,
    to: &str,
    id: &str,
    message: &wa::Message,
) -> Result<(), SimError> {
    let endpoint = world.endpoint(from)?;
    memory(&endpoint).remember(id, message, true, &user_jid(from), to);
    Ok(())
}

/// Called for every message kept in an endpoint's inbox: its quote and
/// mentions go into the entry, and the endpoint remembers it.
pub fn remember_received(endpoint: &Endpoint, message: &wa::Message, entry: &mut InboxMessage) {
    if let Some(ctx) = context_of(message.get_base_message()) {
        entry.reply_to = ctx.stanza_id.clone().filter(|s| !s.is_empty());
        if !ctx.mentioned_jid.is_empty() {
            entry.mentions = Some(ctx.mentioned_jid.clone());
        }
    }
    let author = non_ad(&entry.from);
    // In a group the conversation is the group's.
    let peer = match &entry.group {
        Some(group) => group.clone(),
        None => DeviceAddr::parse(&entry.from)
            .map(|a| a.phone)
            .unwrap_or_default(),
    };
    memory(endpoint).remember(&entry.id, message, false, &author, &peer);
}

fn poll_creation(m: &wa::Message) -> Option<&wa::message::PollCreationMessage> {
    m.poll_creation_message
        .as_option()
        .or(m.poll_creation_message_v2.as_option())
        .or(m.poll_creation_message_v3.as_option())
        .or(m.poll_creation_message_v5.as_option())
        .or(m.poll_creation_message_v6.as_option())
}

fn message_secret(m: &wa::Message) -> Option<Vec<u8>> {
    [m.get_base_message(), m]
        .into_iter()
        .find_map(|m| m.message_context_info.as_option()?.message_secret.clone())
        .filter(|s| s.len() == 32)
}

/// The quote and mentions of a message: the `context_info` of its first
/// part that has one.
fn context_of(m: &wa::Message) -> Option<&wa::ContextInfo> {
    macro_rules! first {
        ($($field:ident),+ $(,)?) => {
            $(
                if let Some(x) = m.$field.as_option()
                    && let Some(c) = x.context_info.as_option()
                {
                    return Some(c);
                }
            )+
        };
    }
    first!(
        extended_text_message,
        image_message,
        video_message,
        ptv_message,
        audio_message,
        document_message,
        sticker_message,
        location_message,
        live_location_message,
        contact_message,
        contacts_array_message,
        poll_creation_message,
        poll_creation_message_v2,
        poll_creation_message_v3,
        poll_creation_message_v5,
        poll_creation_message_v6,
    );
    None
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace(',', "\\,")
        .replace(';', "\\;")
}

/// The vCard of a card: `BEGIN:VCARD`, `VERSION:3.0`, `FN`, one
/// `TEL;type=CELL;waid=DIGITS:+DIGITS` per phone, `END:VCARD`.
pub fn vcard(card: &Card) -> String {
    let mut v = format!("BEGIN:VCARD\nVERSION:3.0\nFN:{}\n", escape(&card.name));
    for p in &card.phones {
        let digits = p.trim_start_matches('+');
        v.push_str(&format!("TEL;type=CELL;waid={digits}:+{digits}\n"));
    }
    v.push_str("END:VCARD");
    v
}

fn phone_of(p: &str) -> Option<&str> {
    let digits = p.strip_prefix('+').unwrap_or(p);
    is_phone(digits).then_some(digits)
}

/// The `context_info` of a message a contact sends: the quoted message
/// (`reply_to`: one it received or sent) and the mentions. `None` when
/// there is neither.
pub fn context(
    world: &World,
    from: &str,
    reply_to: Option<&str>,
    mentions: Option<&[String]>,
) -> Result<Option<wa::ContextInfo>, ComposeError> {
    let mut ctx = wa::ContextInfo::default();
    let mut any = false;
    if let Some(id) = reply_to {
        let endpoint = world.endpoint(from)?;
        let mem = memory(&endpoint);
        let Some(known) = mem.messages.get(id) else {
            return bad(format!(
                "reply_to: {from} has neither received nor sent a message {id:?}"
            ));
        };
        ctx.stanza_id = Some(id.to_string());
        ctx.participant = Some(known.author.clone());
        ctx.quoted_message = MessageField::some(known.quote.clone());
        any = true;
    }
    for m in mentions.unwrap_or_default() {
        let jid = if let Some(digits) = phone_of(m) {
            user_jid(digits)
        } else if m
            .split_once('@')
            .is_some_and(|(u, s)| !u.is_empty() && !s.is_empty())
        {
            m.clone()
        } else {
            return bad(format!(
                "mentions: {m:?} is neither a JID nor a phone number"
            ));
        };
        ctx.mentioned_jid.push(jid);
        any = true;
    }
    Ok(any.then_some(ctx))
}

fn required<'a, T: ?Sized>(
    v: Option<&'a T>,
    field: &str,
    kind: &str,
) -> Result<&'a T, ComposeError> {
    v.ok_or_else(|| ComposeError::Bad(format!("{field}: required for a {kind} message")))
}

fn coordinate(v: Option<f64>, field: &str, limit: f64) -> Result<f64, ComposeError> {
    match v {
        None => bad(format!("{field}: required for a location message")),
        Some(x) if x.is_finite() && (-limit..=limit).contains(&x) => Ok(x),
        Some(x) => bad(format!("{field}: {x} is not in [-{limit}, {limit}]")),
    }
}

fn key(remote_jid: String, from_me: bool, id: &str) -> MessageField<wa::MessageKey> {
    MessageField::some(wa::MessageKey {
        remote_jid: Some(remote_jid),
        from_me: Some(from_me),
        id: Some(id.to_string()),
        participant: None,
    })
}

/// Builds what a contact sends from `c`. Media kinds are not built here.
fn build(world: &World, from: &str, to: &str, c: &Compose) -> Result<wa::Message, ComposeError> {
    let kind = c.kind.as_deref().unwrap_or("text");
    let endpoint = world.endpoint(from)?;
    let to_jid = chat_jid(to);
    let quotes = matches!(kind, "text" | "location" | "contacts" | "poll");
    if matches!(kind, "reaction" | "edit" | "revoke" | "poll_vote")
        && (c.reply_to.is_some() || c.mentions.is_some())
    {
        let field = if c.reply_to.is_some() {
            "reply_to"
        } else {
            "mentions"
        };
        return bad(format!(
            "{field}: a {kind} message carries no quote or mentions"
        ));
    }
    let mut message = match kind {
        "text" => wa::Message {
            conversation: Some(required(c.text.as_deref(), "text", kind)?.to_string()),
            ..Default::default()
        },
        "location" => {
            let latitude = coordinate(c.latitude, "latitude", 90.0)?;
            let longitude = coordinate(c.longitude, "longitude", 180.0)?;
            wa::Message {
                location_message: MessageField::some(wa::message::LocationMessage {
                    degrees_latitude: Some(latitude),
                    degrees_longitude: Some(longitude),
                    name: c.name.clone(),
                    address: c.address.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        "contacts" => contacts_message(c.contacts.as_deref())?,
        "reaction" => {
            let id = required(c.message_id.as_deref(), "message_id", kind)?;
            let emoji = c.emoji.as_deref().ok_or_else(|| {
                ComposeError::Bad("emoji: required for a reaction (\"\" removes one)".into())
            })?;
            // Unknown ids are reacted to all the same, as the account's.
            let (from_me, author) = memory(&endpoint)
                .messages
                .get(id)
                .map_or((false, None), |k| (k.from_me, Some(k.author.clone())));
            // In a group the key names the message's author.
            let participant = author.filter(|_| !from_me && to.contains('@'));
            let key = wa::MessageKey {
                remote_jid: Some(to_jid),
                from_me: Some(from_me),
                id: Some(id.to_string()),
                participant,
            };
            wacore::proto_helpers::build_reaction_message(key, emoji, wacore::time::now_millis())
        }
        "edit" | "revoke" => {
            let id = required(c.message_id.as_deref(), "message_id", kind)?;
            let own = memory(&endpoint)
                .messages
                .get(id)
                .is_some_and(|k| k.from_me && k.peer == to);
            if !own {
                return bad(format!(
                    "message_id: {id:?} is not a message {from} sent to {to}"
                ));
            }
            let mut p = wa::message::ProtocolMessage {
                key: key(to_jid, true, id),
                r#type: Some(ProtocolType::REVOKE),
                ..Default::default()
            };
            if kind == "edit" {
                let text = required(c.text.as_deref(), "text", kind)?;
                p.r#type = Some(ProtocolType::MESSAGE_EDIT);
                p.edited_message = MessageField::some(wa::Message {
                    conversation: Some(text.to_string()),
                    ..Default::default()
                });
                p.timestamp_ms = Some(wacore::time::now_millis());
            }
            wa::Message {
                protocol_message: MessageField::some(p),
                ..Default::default()
            }
        }
        "poll" => poll_message(c)?,
        "poll_vote" => vote_message(&endpoint, from, to, c)?,
        _ if crate::media_message::MediaKind::parse(kind).is_some() => {
            return bad(format!("type: a {kind} message is sent with its file"));
        }
        _ => {
            return bad(format!(
                "type: unknown message type {kind:?}; expected {TYPES}"
            ));
        }
    };
    if quotes && let Some(ctx) = context(world, from, c.reply_to.as_deref(), c.mentions.as_deref())?
    {
        message.set_context_info(ctx);
    }
    Ok(message)
}

fn contacts_message(cards: Option<&[Card]>) -> Result<wa::Message, ComposeError> {
    let cards = required(cards, "contacts", "contacts")?;
    if cards.is_empty() {
        return bad("contacts: at least one card is needed");
    }
    let mut messages = Vec::with_capacity(cards.len());
    for (i, card) in cards.iter().enumerate() {
        if card.name.trim().is_empty() {
            return bad(format!("contacts: card {} has no name", i + 1));
        }
        if let Some(p) = card.phones.iter().find(|p| phone_of(p).is_none()) {
            return bad(format!("contacts: {p:?} is not a phone number"));
        }
        messages.push(wa::message::ContactMessage {
            display_name: Some(card.name.clone()),
            vcard: Some(vcard(card)),
            ..Default::default()
        });
    }
    Ok(if messages.len() == 1 {
        wa::Message {
            contact_message: MessageField::some(messages.remove(0)),
            ..Default::default()
        }
    } else {
        wa::Message {
            contacts_array_message: MessageField::some(wa::message::ContactsArrayMessage {
                display_name: Some(format!("{} contacts", messages.len())),
                contacts: messages,
                ..Default::default()
            }),
            ..Default::default()
        }
    })
}

/// A poll as whatsapp-rust's `polls().create` builds it: v3 for a single
/// choice, v1 otherwise, with a fresh 32-byte secret.
fn poll_message(c: &Compose) -> Result<wa::Message, ComposeError> {
    let question = required(c.question.as_deref(), "question", "poll")?;
    if question.trim().is_empty() {
        return bad("question: empty");
    }
    let options = required(c.options.as_deref(), "options", "poll")?;
    if !(2..=12).contains(&options.len()) {
        return bad(format!(
            "options: a poll has 2 to 12 options, got {}",
            options.len()
        ));
    }
    let mut seen = HashSet::new();
    for o in options {
        if o.trim().is_empty() {
            return bad("options: an option is empty");
        }
        if !seen.insert(o) {
            return bad(format!("options: {o:?} appears twice"));
        }
    }
    let selectable = c.selectable.unwrap_or(1);
    if selectable < 1 || selectable as usize > options.len() {
        return bad(format!(
            "selectable: between 1 and {} for this poll, got {selectable}",
            options.len()
        ));
    }
    let poll = wa::message::PollCreationMessage {
        name: Some(question.to_string()),
        options: options
            .iter()
            .map(|o| wa::message::poll_creation_message::Option {
                option_name: Some(o.clone()),
                option_hash: None,
            })
            .collect(),
        selectable_options_count: Some(selectable),
        poll_content_type: Some(wa::message::PollContentType::TEXT),
        ..Default::default()
    };
    let mut message = if selectable == 1 {
        wa::Message {
            poll_creation_message_v3: MessageField::some(poll),
            ..Default::default()
        }
    } else {
        wa::Message {
            poll_creation_message: MessageField::some(poll),
            ..Default::default()
        }
    };
    let secret: [u8; 32] = rand::random();
    message.message_context_info = MessageField::some(wa::MessageContextInfo {
        message_secret: Some(secret.to_vec()),
        ..Default::default()
    });
    Ok(message)
}

/// A vote encrypted as whatsapp-rust's `polls().vote` does it.
fn vote_message(
    endpoint: &Endpoint,
    from: &str,
    to: &str,
    c: &Compose,
) -> Result<wa::Message, ComposeError> {
    let id = required(c.message_id.as_deref(), "message_id", "poll_vote")?;
    let poll = memory(endpoint).polls.get(id).cloned();
    let Some(poll) = poll.filter(|p| p.peer == to) else {
        return bad(format!(
            "message_id: {from} knows no poll {id:?} in its chat with {to}"
        ));
    };
    let chosen = required(c.options.as_deref(), "options", "poll_vote")?;
    let mut hashes: Vec<Vec<u8>> = Vec::new();
    for o in chosen {
        if !poll.options.contains(o) {
            return bad(format!("options: {o:?} is not an option of poll {id}"));
        }
        let h = wacore::poll::compute_option_hash(o).to_vec();
        if !hashes.contains(&h) {
            hashes.push(h);
        }
    }
    if poll.selectable > 0 && hashes.len() > poll.selectable as usize {
        return bad(format!(
            "options: poll {id} allows at most {} choice(s)",
            poll.selectable
        ));
    }
    let voter = user_jid(from);
    let (enc_payload, iv) = wacore::poll::encrypt_poll_vote_with_secret(
        &hashes,
        &poll.secret,
        id,
        &poll.creator,
        &voter,
    )
    .map_err(|e| SimError::Protocol(format!("encrypt vote: {e}")))?;
    Ok(wa::Message {
        poll_update_message: MessageField::some(wa::message::PollUpdateMessage {
            poll_creation_message_key: key(chat_jid(to), poll.creator == voter, id),
            vote: MessageField::some(wa::message::PollEncValue {
                enc_payload: Some(enc_payload),
                enc_iv: Some(iv.to_vec()),
            }),
            sender_timestamp_ms: Some(wacore::time::now_millis()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A contact sends a message of any kind but media (see [`Compose`]) to
/// every linked device of an account; returns its id.
pub async fn contact_send(
    world: &Arc<World>,
    from: &str,
    to: &str,
    c: &Compose,
    push_name: Option<&str>,
) -> Result<String, ComposeError> {
    let message = build(world, from, to, c)?;
    Ok(routing::contact_send_message(world, from, to, &message, push_name).await?)
}
