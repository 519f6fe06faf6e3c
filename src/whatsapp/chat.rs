//! Chat actions and lookups: read receipts, typing, our own presence,
//! number checks, a contact's picture and status; and the events about
//! contacts (calls, typing and presence, number changes, messages that could
//! not be decrypted) in the bridge's terms.

use whatsapp_rust::features::ChatStateType;
use whatsapp_rust::prelude::*;
use whatsapp_rust::types::events::Event;

use super::{Link, WaError, WaEvent, parse_recipient};

/// Something a session does in a chat or asks about a contact.
#[derive(Debug, Clone)]
pub enum ChatAction {
    /// Read receipts for messages of `chat`; `sender` in a group.
    Read {
        chat: String,
        sender: Option<String>,
        ids: Vec<String>,
    },
    /// composing, recording or paused.
    ChatState { chat: String, state: String },
    /// Our own presence: available or unavailable.
    Presence { available: bool },
    /// Which of these numbers are on WhatsApp.
    Check { phones: Vec<String> },
    /// A contact's profile picture, status and LID.
    Profile { jid: String },
    /// Ask WhatsApp for a contact's online and last-seen updates.
    Subscribe { jid: String },
}

/// What an action answers.
#[derive(Debug, Clone)]
pub enum ActionOutcome {
    Done,
    Checked(Vec<NumberCheck>),
    Profile(Profile),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NumberCheck {
    pub phone: String,
    pub exists: bool,
    pub jid: Option<String>,
    pub lid: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Profile {
    pub jid: String,
    pub lid: Option<String>,
    pub status: Option<String>,
    pub picture_url: Option<String>,
    pub picture_id: Option<String>,
}

/// An incoming call offer, for the `call` event (and to reject it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallOffer {
    pub id: String,
    pub from: String,
    #[serde(skip)]
    pub creator: String,
    pub video: bool,
    pub timestamp: i64,
}

/// WhatsApp's own limit on one usync query's users.
const CHECK_CHUNK: usize = 50;

impl Link {
    pub async fn act(&self, action: ChatAction) -> Result<ActionOutcome, WaError> {
        let failed = |e: &dyn std::fmt::Display| WaError::Send(e.to_string());
        match action {
            ChatAction::Read { chat, sender, ids } => {
                let chat = parse_recipient(&chat)?;
                let sender = sender.as_deref().map(parse_recipient).transpose()?;
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                // At most 256 ids a receipt, as WhatsApp Web sends them.
                for part in ids.chunks(256) {
                    self.client
                        .mark_as_read(&chat, sender.as_ref(), part)
                        .await
                        .map_err(|e| failed(&e))?;
                }
                Ok(ActionOutcome::Done)
            }
            ChatAction::ChatState { chat, state } => {
                let chat = parse_recipient(&chat)?;
                let state = match state.as_str() {
                    "composing" => ChatStateType::Composing,
                    "recording" => ChatStateType::Recording,
                    _ => ChatStateType::Paused,
                };
                self.client
                    .chatstate()
                    .send(&chat, state)
                    .await
                    .map_err(|e| failed(&e))?;
                Ok(ActionOutcome::Done)
            }
            ChatAction::Presence { available } => {
                let presence = self.client.presence();
                let r = if available {
                    presence.set_available().await
                } else {
                    presence.set_unavailable().await
                };
                r.map_err(|e| failed(&e))?;
                Ok(ActionOutcome::Done)
            }
            ChatAction::Check { phones } => {
                let mut out = Vec::with_capacity(phones.len());
                for part in phones.chunks(CHECK_CHUNK) {
                    let jids: Vec<Jid> = part.iter().map(Jid::pn).collect();
                    let found = self
                        .client
                        .contacts()
                        .is_on_whatsapp(&jids)
                        .await
                        .map_err(|e| failed(&e))?;
                    for phone in part {
                        let r = found.iter().find(|r| {
                            r.jid.user == *phone
                                || r.pn_jid.as_ref().is_some_and(|j| j.user == *phone)
                        });
                        out.push(NumberCheck {
                            phone: phone.clone(),
                            exists: r.is_some_and(|r| r.is_registered),
                            jid: r
                                .filter(|r| r.is_registered)
                                .map(|r| r.pn_jid.clone().unwrap_or(r.jid.clone()).to_string()),
                            lid: r.and_then(|r| r.lid.as_ref()).map(|j| j.to_string()),
                        });
                    }
                }
                Ok(ActionOutcome::Checked(out))
            }
            ChatAction::Subscribe { jid } => {
                let jid = parse_recipient(&jid)?;
                self.client
                    .presence()
                    .subscribe(jid)
                    .await
                    .map_err(|e| failed(&e))?;
                Ok(ActionOutcome::Done)
            }
            ChatAction::Profile { jid } => {
                let jid = parse_recipient(&jid)?;
                let contacts = self.client.contacts();
                let info = contacts
                    .get_user_info(std::slice::from_ref(&jid))
                    .await
                    .map_err(|e| failed(&e))?;
                let info = info.get(&jid).or_else(|| info.values().next());
                let picture = contacts
                    .get_profile_picture(&jid, false)
                    .await
                    .map_err(|e| failed(&e))?;
                Ok(ActionOutcome::Profile(Profile {
                    jid: jid.to_string(),
                    lid: info.and_then(|i| i.lid.as_ref()).map(|j| j.to_string()),
                    status: info.and_then(|i| i.status.clone()),
                    picture_url: picture.as_ref().map(|p| p.url.clone()),
                    picture_id: picture.map(|p| p.id),
                }))
            }
        }
    }

    /// Declines a call offer.
    pub async fn reject_call(&self, call: &CallOffer) -> Result<(), WaError> {
        let from = parse_recipient(&call.from)?;
        let creator: Jid = call
            .creator
            .parse()
            .map_err(|_| WaError::BadRecipient(call.creator.clone()))?;
        self.client
            .voip()
            .reject_call(&call.id, &from, &creator)
            .await
            .map_err(|e| WaError::Send(e.to_string()))
    }
}

/// The contact events, translated; None for everything else.
pub(super) fn translate(event: &Event) -> Option<WaEvent> {
    use whatsapp_rust::types::call::CallAction;
    use whatsapp_rust::types::presence::{ChatPresence, ChatPresenceMedia};
    Some(match event {
        Event::IncomingCall(c) => match &c.action {
            CallAction::Offer {
                call_id,
                call_creator,
                is_video,
                ..
            } => WaEvent::Call(CallOffer {
                id: call_id.clone(),
                from: c.from.to_non_ad().to_string(),
                creator: call_creator.to_string(),
                video: *is_video,
                timestamp: c.timestamp.timestamp(),
            }),
            _ => return None,
        },
        Event::UndecryptableMessage(u) => WaEvent::Undecryptable(serde_json::json!({
            "id": u.info.id.to_string(),
            "chat": u.info.source.chat.to_string(),
            "from": u.info.source.sender.to_non_ad().to_string(),
            "timestamp": u.info.timestamp.timestamp(),
        })),
        Event::ContactNumberChanged(n) => WaEvent::NumberChanged(serde_json::json!({
            "old": n.old_jid.to_string(),
            "new": n.new_jid.to_string(),
            "old_lid": n.old_lid.as_ref().map(|j| j.to_string()),
            "new_lid": n.new_lid.as_ref().map(|j| j.to_string()),
        })),
        Event::ChatPresence(p) => {
            let state = match (&p.state, &p.media) {
                (ChatPresence::Composing, ChatPresenceMedia::Audio) => "recording",
                (ChatPresence::Composing, _) => "composing",
                (ChatPresence::Paused, _) => "paused",
            };
            WaEvent::Presence(serde_json::json!({
                "from": p.source.sender.to_non_ad().to_string(),
                "chat": p.source.chat.to_string(),
                "state": state,
            }))
        }
        Event::Presence(p) => WaEvent::Presence(serde_json::json!({
            "from": p.from.to_non_ad().to_string(),
            "state": if p.unavailable { "unavailable" } else { "available" },
            "last_seen": p.last_seen.map(|t| t.timestamp()),
        })),
        _ => return None,
    })
}
