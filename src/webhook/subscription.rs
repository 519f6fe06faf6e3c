//! What a session asks of its webhook: where events go, in which format,
//! signed with which secret, and which kinds of events.

use serde::{Deserialize, Serialize};

/// The body shape posted to the receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The bridge's own event envelope (`{"id", "event", "session", ...}`).
    #[default]
    Native,
    /// WhatsApp Cloud API webhooks, so a Cloud API product works unchanged.
    Cloud,
    /// The Go wapi's body for text messages.
    Wapi,
}

impl Format {
    pub const NAMES: &'static str = "native, cloud, wapi";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "native" => Some(Self::Native),
            "cloud" => Some(Self::Cloud),
            "wapi" => Some(Self::Wapi),
            _ => None,
        }
    }

    /// Whether this format has a shape for the event at all. The Cloud API
    /// has no session-state webhook, and wapi only ever posted messages.
    pub fn carries(self, event: EventKind) -> bool {
        match self {
            Self::Native => true,
            // The Cloud API has message, status and system-message
            // webhooks (edits and deletes as a Coexistence number gets
            // them); no session, call or presence ones.
            Self::Cloud => matches!(
                event,
                EventKind::Message
                    | EventKind::MessageStatus
                    | EventKind::MessageEdited
                    | EventKind::MessageRevoked
                    | EventKind::MessageUndecryptable
                    | EventKind::ContactNumberChanged
            ),
            Self::Wapi => event == EventKind::Message,
        }
    }
}

/// How a media event carries its file: a URL to fetch it from the bridge
/// (default), or also the file itself inline, base64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaInline {
    #[default]
    Url,
    Base64,
}

impl MediaInline {
    pub const NAMES: &'static str = "url, base64";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "url" => Some(Self::Url),
            "base64" => Some(Self::Base64),
            _ => None,
        }
    }
}

/// The kinds of webhook events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum EventKind {
    #[serde(rename = "message")]
    Message,
    #[serde(rename = "message.status")]
    MessageStatus,
    #[serde(rename = "message.edited")]
    MessageEdited,
    #[serde(rename = "message.revoked")]
    MessageRevoked,
    #[serde(rename = "message.undecryptable")]
    MessageUndecryptable,
    #[serde(rename = "session.status")]
    SessionStatus,
    #[serde(rename = "call")]
    Call,
    #[serde(rename = "contact.number_changed")]
    ContactNumberChanged,
    /// Typing, recording, online and last seen: posted only to sessions that
    /// list it in their events (it is chatty).
    #[serde(rename = "presence")]
    Presence,
    /// Members of a group added, removed, promoted, demoted, left, joined.
    #[serde(rename = "group.participants")]
    GroupParticipants,
    /// A group's subject, description or settings changed.
    #[serde(rename = "group.update")]
    GroupUpdate,
}

impl EventKind {
    pub const NAMES: &'static str = "message, message.status, message.edited, message.revoked, \
         message.undecryptable, session.status, call, contact.number_changed, presence, \
         group.participants, group.update";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "message" => Some(Self::Message),
            "message.status" => Some(Self::MessageStatus),
            "message.edited" => Some(Self::MessageEdited),
            "message.revoked" => Some(Self::MessageRevoked),
            "message.undecryptable" => Some(Self::MessageUndecryptable),
            "session.status" => Some(Self::SessionStatus),
            "call" => Some(Self::Call),
            "contact.number_changed" => Some(Self::ContactNumberChanged),
            "presence" => Some(Self::Presence),
            "group.participants" => Some(Self::GroupParticipants),
            "group.update" => Some(Self::GroupUpdate),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::MessageStatus => "message.status",
            Self::MessageEdited => "message.edited",
            Self::MessageRevoked => "message.revoked",
            Self::MessageUndecryptable => "message.undecryptable",
            Self::Call => "call",
            Self::ContactNumberChanged => "contact.number_changed",
            Self::Presence => "presence",
            Self::GroupParticipants => "group.participants",
            Self::GroupUpdate => "group.update",
            Self::SessionStatus => "session.status",
        }
    }
}

/// A session's webhook settings, kept in its registry record (the field
/// names are the record's and the API's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// The session's own URL; without one, wapi's default base applies.
    #[serde(rename = "webhook_url", default)]
    pub url: Option<String>,
    #[serde(rename = "webhook_format", default)]
    pub format: Format,
    /// Signs this session's deliveries instead of `WAPI_WEBHOOK_SECRET`.
    #[serde(rename = "webhook_secret", default)]
    pub secret: Option<String>,
    /// The kinds to post; None means all of them.
    #[serde(rename = "webhook_events", default)]
    pub events: Option<Vec<EventKind>>,
    #[serde(rename = "webhook_media", default)]
    pub media_inline: MediaInline,
    /// The Cloud API's verify token: with the cloud format, a URL is set
    /// only once it answers the verification handshake.
    #[serde(
        rename = "webhook_verify_token",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_token: Option<String>,
}

impl Subscription {
    /// Whether an event of this kind is posted at all.
    pub fn wants(&self, event: EventKind) -> bool {
        // Presence is chatty: only for sessions that ask for it by name.
        self.format.carries(event)
            && match &self.events {
                None => event != EventKind::Presence,
                Some(e) => e.contains(&event),
            }
    }

    pub fn apply(&mut self, change: SubscriptionChange) {
        if let Some(url) = change.url {
            self.url = url;
        }
        if let Some(format) = change.format {
            self.format = format;
        }
        if let Some(secret) = change.secret {
            self.secret = secret;
        }
        if let Some(events) = change.events {
            self.events = events;
        }
        if let Some(m) = change.media_inline {
            self.media_inline = m;
        }
        if let Some(t) = change.verify_token {
            self.verify_token = t;
        }
    }
}

/// A partial update: `None` leaves a setting as it is, `Some(None)` clears
/// it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscriptionChange {
    pub url: Option<Option<String>>,
    pub format: Option<Format>,
    pub secret: Option<Option<String>>,
    pub events: Option<Option<Vec<EventKind>>>,
    pub media_inline: Option<MediaInline>,
    pub verify_token: Option<Option<String>>,
}

impl SubscriptionChange {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the change touches what the verification handshake checks
    /// (where events go, in which format, with which token).
    pub fn needs_verification(&self) -> bool {
        self.url.is_some() || self.format.is_some() || self.verify_token.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_records_read_as_native_and_all_events() {
        let s: Subscription = serde_json::from_str(r#"{"webhook_url": "http://x/"}"#).unwrap();
        assert_eq!(s.url.as_deref(), Some("http://x/"));
        assert_eq!(s.format, Format::Native);
        assert!(s.wants(EventKind::SessionStatus));
    }

    #[test]
    fn formats_and_filters_decide_what_is_posted() {
        let mut s = Subscription {
            format: Format::Cloud,
            ..Default::default()
        };
        assert!(s.wants(EventKind::Message) && s.wants(EventKind::MessageStatus));
        assert!(!s.wants(EventKind::SessionStatus));
        s.format = Format::Wapi;
        assert!(!s.wants(EventKind::MessageStatus));
        s.format = Format::Native;
        s.events = Some(vec![EventKind::MessageStatus]);
        assert!(!s.wants(EventKind::Message) && s.wants(EventKind::MessageStatus));
        // Presence only by name; the Cloud API carries none of the others.
        s.events = None;
        assert!(s.wants(EventKind::Call) && !s.wants(EventKind::Presence));
        s.events = Some(vec![EventKind::Presence]);
        assert!(s.wants(EventKind::Presence));
        s.format = Format::Cloud;
        s.events = None;
        assert!(!s.wants(EventKind::Call) && s.wants(EventKind::MessageEdited));
    }

    #[test]
    fn a_change_touches_only_what_it_names() {
        let mut s = Subscription {
            url: Some("http://a/".into()),
            secret: Some("k".into()),
            ..Default::default()
        };
        s.apply(SubscriptionChange {
            format: Some(Format::Cloud),
            secret: Some(None),
            ..Default::default()
        });
        assert_eq!(s.url.as_deref(), Some("http://a/"));
        assert_eq!(s.format, Format::Cloud);
        assert_eq!(s.secret, None);
    }
}
