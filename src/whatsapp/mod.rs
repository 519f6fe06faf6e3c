//! The only module that talks to whatsapp-rust. The rest of the bridge sees
//! our own types: [`Link`] (one linked-device client), [`WaEvent`],
//! [`IncomingMessage`] and, for files, [`MediaLink`].
//!
//! - this file: linking, the client's lifecycle and its events;
//! - `inbound`: incoming messages translated;
//! - `outbound`: messages built to send;
//! - `chat`: chat actions, lookups and the events about contacts;
//! - `groups`: group operations and the events about groups;
//! - `media`: downloads and uploads of files.

mod chat;
mod groups;
mod inbound;
mod media;
mod outbound;
mod version;

pub use self::chat::{ActionOutcome, CallOffer, ChatAction, NumberCheck, Profile};
pub use self::groups::{GroupChange, GroupOp, Membership, group_jid};
use self::inbound::incoming;
pub use self::inbound::{Change, Contact, IncomingMessage, Location, Media};
pub use self::media::{DownloadError, MediaLink, MediaRef, MediaType, Uploaded, media_type};
pub use self::outbound::{ContactCard, Extras, MediaDetails, Outgoing, vcard};
pub use self::version::{Version, Versions, format as format_version, parse as parse_version};

/// A message WhatsApp accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    /// The JID it went to.
    pub to: String,
    /// For a poll: its message secret, which the votes are encrypted with.
    pub poll_secret: Option<Vec<u8>>,
}

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use whatsapp_rust::TokioRuntime;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

/// What a session's client tells the session task.
#[derive(Debug, Clone)]
pub enum WaEvent {
    Qr {
        code: String,
        timeout: Duration,
    },
    QrExhausted,
    PairCode {
        code: String,
    },
    Paired {
        jid: String,
    },
    Connected {
        jid: Option<String>,
        push_name: Option<String>,
    },
    Disconnected,
    LoggedOut {
        reason: String,
    },
    /// The account cannot connect for a reason the operator must see.
    Failed {
        reason: &'static str,
    },
    /// What became of messages we sent: `sent` (server ack), `delivered`,
    /// `read`, `failed` (server nack).
    Status(MessageStatus),
    /// A contact calls.
    Call(CallOffer),
    /// A message arrived that could not be decrypted (its id and sender).
    Undecryptable(serde_json::Value),
    /// A contact moved to a new number.
    NumberChanged(serde_json::Value),
    /// A contact types, records, pauses, comes online or goes offline.
    Presence(serde_json::Value),
    /// Members of a group added, removed, promoted, demoted, left or
    /// joined. `key` identifies the notification (a stable event id).
    GroupParticipants {
        key: Option<String>,
        payload: serde_json::Value,
    },
    /// A group's subject, description or settings changed.
    GroupUpdate {
        key: Option<String>,
        payload: serde_json::Value,
    },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageStatus {
    pub ids: Vec<String>,
    pub status: &'static str,
    pub recipient: String,
    /// The recipient's LID, when the client knows it (filled in by
    /// [`Link::lid_of`]): the source of its business-scoped id.
    pub recipient_lid: Option<String>,
    pub timestamp: i64,
    /// For `failed`: the error code WhatsApp's server gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a session's incoming messages are committed before WhatsApp is told
/// they arrived. An `Err` withholds the acknowledgement, so WhatsApp delivers
/// the messages again (at-least-once); a commit must therefore be idempotent.
#[async_trait::async_trait]
pub trait Inbox: Send + Sync + 'static {
    async fn commit(&self, messages: Vec<IncomingMessage>) -> Result<(), String>;
    /// A message the session remembers (a poll it sent, to read votes).
    async fn remembered(&self, id: &str) -> Option<crate::store::MessageRecord>;
}

/// whatsapp-rust's inbound durability hook, feeding an [`Inbox`].
struct DurabilityHook(Arc<dyn Inbox>);

#[async_trait::async_trait]
impl whatsapp_rust::InboundDurabilityHook for DurabilityHook {
    async fn on_messages(
        &self,
        client: Arc<whatsapp_rust::Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        let mut messages: Vec<IncomingMessage> = batch.iter().map(incoming).collect();
        for m in messages.iter_mut() {
            pn_of_lid(&client, m).await;
        }
        for (m, raw) in messages.iter_mut().zip(batch) {
            if let Some(cipher) = m.vote_cipher.take() {
                read_vote(&client, self.0.as_ref(), m, cipher, &raw.info.source.sender).await;
            }
        }
        self.0.commit(messages).await.map_err(anyhow::Error::msg)
    }
}

/// A sender known only by LID: its phone number from the client's
/// LID-to-phone map, when it has learned it; a sender known only by phone
/// number: its LID (the source of its business-scoped id), likewise.
async fn pn_of_lid(client: &whatsapp_rust::Client, m: &mut IncomingMessage) {
    if !m.from.ends_with("@lid") {
        if m.from_lid.is_none()
            && let Ok(pn) = m.from.parse::<Jid>()
            && let Ok(Some(entry)) = client.get_lid_pn_entry(&pn).await
        {
            m.from_lid = Some(Jid::new(&*entry.lid, Server::Lid).to_string());
        }
        return;
    }
    let Ok(lid) = m.from.parse::<Jid>() else {
        return;
    };
    if let Ok(Some(entry)) = client.get_lid_pn_entry(&lid).await {
        let pn = Jid::new(&*entry.phone_number, Server::Pn).to_string();
        if m.chat == m.from {
            m.chat = pn.clone();
        }
        m.from = pn;
    }
}

/// Decrypts a poll vote with the secret of the poll (one this session sent
/// and remembers) into the names of the options chosen.
async fn read_vote(
    client: &whatsapp_rust::Client,
    inbox: &dyn Inbox,
    m: &mut IncomingMessage,
    (payload, iv): (Vec<u8>, Vec<u8>),
    voter: &Jid,
) {
    use base64::Engine as _;
    let Some(vote) = m.vote.as_mut() else {
        return;
    };
    let poll = inbox
        .remembered(&vote.message_id)
        .await
        .and_then(|rec| Some((rec.poll?, rec.sender)));
    let Some((poll, creator)) = poll else {
        vote.error = Some("not a poll this session sent".into());
        return;
    };
    let (Ok(secret), Ok(creator)) = (
        base64::engine::general_purpose::STANDARD.decode(&poll.secret),
        creator.parse::<Jid>(),
    ) else {
        vote.error = Some("the poll's record is damaged".into());
        return;
    };
    let cipher = whatsapp_rust::PollVoteCiphertext {
        enc_payload: &payload,
        enc_iv: &iv,
    };
    match client
        .polls()
        .decrypt_vote(cipher, &secret, &vote.message_id, &creator, voter)
        .await
    {
        Ok(hashes) => {
            let chosen = poll
                .options
                .iter()
                .filter(|o| {
                    let h = wacore::poll::compute_option_hash(o);
                    hashes.iter().any(|x| x.as_slice() == h.as_slice())
                })
                .cloned()
                .collect();
            vote.options = Some(chosen);
        }
        Err(e) => vote.error = Some(format!("cannot decrypt the vote: {e}")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaError {
    #[error("cannot open the session file: {0}")]
    Store(String),
    #[error("cannot build the client: {0}")]
    Build(String),
    #[error("not a valid recipient: {0}")]
    BadRecipient(String),
    #[error("send failed: {0}")]
    Send(String),
    /// WhatsApp answered with an error code (e.g. 401 not an admin, 403
    /// not a member, 404 unknown).
    #[error("WhatsApp refused: {code} {text}")]
    Refused { code: u16, text: String },
}

/// Forwards client events into a channel, translated.
struct Forwarder(mpsc::UnboundedSender<WaEvent>);

impl EventHandler for Forwarder {
    fn handle_event(&self, event: Arc<Event>) {
        for e in translate(&event) {
            let _ = self.0.send(e);
        }
    }
}

fn translate(event: &Event) -> Vec<WaEvent> {
    match event {
        Event::PairingQrCode(q) => vec![WaEvent::Qr {
            code: q.code.clone(),
            timeout: q.timeout,
        }],
        Event::PairingQrCodesExhausted(_) => vec![WaEvent::QrExhausted],
        Event::PairingCode(p) => vec![WaEvent::PairCode {
            code: p.code.clone(),
        }],
        Event::PairSuccess(p) => vec![WaEvent::Paired {
            jid: p.id.to_string(),
        }],
        Event::Connected(_) => vec![WaEvent::Connected {
            jid: None,
            push_name: None,
        }],
        Event::Disconnected(_) => vec![WaEvent::Disconnected],
        Event::LoggedOut(l) => vec![WaEvent::LoggedOut {
            reason: format!("{:?}", l.reason),
        }],
        Event::TemporaryBan(_) => vec![WaEvent::Failed {
            reason: "temporary_ban",
        }],
        Event::ClientOutdated(_) => vec![WaEvent::Failed {
            reason: "client_outdated",
        }],
        // Another client took over this device (WhatsApp's `conflict`
        // `replaced`): fighting back would make the two take turns kicking
        // each other off; a person decides (start or restart resumes).
        Event::StreamReplaced(_) => vec![WaEvent::Failed { reason: "replaced" }],
        Event::ServerAck(a) if a.class.as_deref() == Some("message") => {
            vec![WaEvent::Status(MessageStatus {
                ids: vec![a.id.clone()],
                status: if a.error.is_some() { "failed" } else { "sent" },
                recipient: a
                    .from
                    .as_ref()
                    .map(|j| j.to_non_ad().to_string())
                    .unwrap_or_default(),
                recipient_lid: None,
                timestamp: a.timestamp.map(|t| t.timestamp()).unwrap_or_else(unix_now),
                error: a.error.clone(),
            })]
        }
        Event::Receipt(r) => {
            use whatsapp_rust::types::presence::ReceiptType;
            let status = match r.r#type {
                ReceiptType::Delivered => "delivered",
                ReceiptType::Read => "read",
                ReceiptType::Played => "played",
                _ => return Vec::new(),
            };
            vec![WaEvent::Status(MessageStatus {
                ids: r.message_ids.iter().map(|i| i.to_string()).collect(),
                status,
                recipient: r.source.chat.to_non_ad().to_string(),
                recipient_lid: r
                    .source
                    .sender_alt
                    .as_ref()
                    .filter(|j| j.server == Server::Lid)
                    .map(|j| j.to_non_ad().to_string()),
                timestamp: r.timestamp.timestamp(),
                error: None,
            })]
        }
        Event::GroupUpdate(u) => groups::translate(u).into_iter().collect(),
        // Messages reach the bridge through the durability hook only.
        other => chat::translate(other).into_iter().collect(),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether WhatsApp's endpoint takes a TCP connection at all (the client
/// only logs why it cannot connect): the error otherwise, in words.
pub async fn reachable(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = u.host_str().ok_or("the URL has no host")?.to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{host}:{port} did not answer within 5 s")),
    }
}

/// How to reach WhatsApp and where the session file is.
pub struct LinkOptions<'a> {
    pub session_file: &'a Path,
    pub url: &'a str,
    /// Link with a pair code for this phone number instead of a QR code.
    pub pair_phone: Option<String>,
    pub forward_history: bool,
    pub inbox: Arc<dyn Inbox>,
    /// Sandbox builds: the simulator's media certificate (PEM), trusted for
    /// media downloads and uploads. Ignored by other builds.
    pub sandbox_media_ca: Option<&'a str>,
    /// The WhatsApp Web version to announce (see [`Versions`]): given, so
    /// that no client fetches WhatsApp's service worker by itself.
    pub version: Version,
}

/// One running linked-device client. `disconnect` is final in
/// whatsapp-rust: to reconnect after it, build a new `Link` on the same file.
pub struct Link {
    client: Arc<whatsapp_rust::Client>,
    handle: Option<BotHandle>,
}

impl Link {
    /// Builds the client on the session file and starts it. Events arrive on
    /// the returned channel.
    pub async fn start(
        opts: LinkOptions<'_>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<WaEvent>), WaError> {
        let path = opts
            .session_file
            .to_str()
            .ok_or_else(|| WaError::Store("path is not UTF-8".into()))?;
        let store = SqliteStore::new(path)
            .await
            .map_err(|e| WaError::Store(e.to_string()))?;
        let transport = TokioWebSocketTransportFactory::new().with_url(opts.url.to_string());
        let mut builder = Bot::builder()
            .with_backend(store)
            .with_transport_factory(transport)
            .with_runtime(TokioRuntime)
            .with_http_client(media::http_client(opts.sandbox_media_ca))
            .with_version(opts.version)
            .with_inbound_durability_hook(DurabilityHook(opts.inbox));
        if !opts.forward_history {
            builder = builder.skip_history_sync();
        }
        if let Some(phone) = opts.pair_phone {
            builder = builder.with_pair_code(PairCodeOptions {
                phone_number: phone,
                ..Default::default()
            });
        }
        let bot = builder
            .build()
            .await
            .map_err(|e| WaError::Build(e.to_string()))?;
        let client = bot.client();
        let (tx, rx) = mpsc::unbounded_channel();
        client.subscribe_handler(Arc::new(Forwarder(tx))).detach();
        let handle = bot.spawn();
        Ok((
            Self {
                client,
                handle: Some(handle),
            },
            rx,
        ))
    }

    /// The LID of a user JID (phone number), from the client's map of
    /// what WhatsApp told it; a LID JID is its own.
    pub async fn lid_of(&self, jid: &str) -> Option<String> {
        let jid: Jid = jid.parse().ok()?;
        if jid.server == Server::Lid {
            return Some(jid.to_non_ad().to_string());
        }
        let entry = self.client.get_lid_pn_entry(&jid).await.ok()??;
        Some(Jid::new(&*entry.lid, Server::Lid).to_string())
    }

    /// The phone number JID of a LID, when the client knows it.
    pub async fn pn_of(&self, lid: &str) -> Option<String> {
        let jid: Jid = lid.parse().ok()?;
        let entry = self.client.get_lid_pn_entry(&jid).await.ok()??;
        Some(Jid::new(&*entry.phone_number, Server::Pn).to_string())
    }

    /// The linked device's JID, if the session file holds one.
    pub fn jid(&self) -> Option<String> {
        self.client.pn().map(|j| j.to_string())
    }

    pub fn push_name(&self) -> Option<String> {
        let name = self.client.push_name();
        (!name.is_empty()).then_some(name)
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected() && self.client.is_logged_in()
    }

    /// Sends any kind; `to` is a phone number or a JID. A reaction goes to
    /// the chat of the message it is for.
    pub async fn send(&self, to: &str, out: Outgoing, extras: &Extras) -> Result<Sent, WaError> {
        let jid = parse_recipient(to)?;
        let failed = |e: &dyn std::fmt::Display| WaError::Send(e.to_string());
        let (r, poll_secret) = match out {
            Outgoing::Reaction { target, emoji } => {
                let chat = parse_recipient(&target.chat)?;
                let sender = parse_recipient(&target.sender).ok();
                let participant = sender.as_ref().filter(|_| chat.server == Server::Group);
                let key =
                    whatsapp_rust::message_key(&target.id, &chat, target.from_me, participant);
                let r = self
                    .client
                    .send_reaction(chat, key, &emoji)
                    .await
                    .map_err(|e| failed(&e))?;
                (r, None)
            }
            Outgoing::Poll {
                question,
                options,
                selectable,
            } => {
                // The client builds the poll (option hashes, its secret);
                // a quote or mentions do not apply to it.
                let (r, secret) = self
                    .client
                    .polls()
                    .create(jid, &question, &options, selectable)
                    .await
                    .map_err(|e| failed(&e))?;
                (r, Some(secret))
            }
            other => {
                let mut msg = outbound::build(other);
                outbound::add_extras(&mut msg, extras);
                let r = self
                    .client
                    .send_message(jid, msg)
                    .await
                    .map_err(|e| failed(&e))?;
                (r, None)
            }
        };
        Ok(Sent {
            id: r.message_id.to_string(),
            to: r.to.to_string(),
            poll_secret,
        })
    }

    /// Replaces the text of a message we sent in `chat`.
    pub async fn edit(&self, chat: &str, id: &str, text: &str) -> Result<(), WaError> {
        let chat = parse_recipient(chat)?;
        self.client
            .edit_message(chat, id, wa::Message::text(text))
            .await
            .map_err(|e| WaError::Send(e.to_string()))?;
        Ok(())
    }

    /// Deletes a message we sent in `chat`, for everyone.
    pub async fn revoke(&self, chat: &str, id: &str) -> Result<(), WaError> {
        let chat = parse_recipient(chat)?;
        self.client
            .revoke_message(chat, id, whatsapp_rust::RevokeType::Sender)
            .await
            .map_err(|e| WaError::Send(e.to_string()))
    }

    /// The client's media side, for downloads and uploads run outside the
    /// session task.
    pub fn media(&self) -> MediaLink {
        MediaLink(self.client.clone())
    }

    /// Logs the device out (WhatsApp forgets it), then stops.
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.logout()).await;
        self.stop().await;
    }

    /// Stops the client, flushing its state to the session file.
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h.shutdown()).await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// A phone number or a user/group JID.
pub fn parse_recipient(to: &str) -> Result<Jid, WaError> {
    let t = to.trim().trim_start_matches('+');
    if !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Jid::pn(t));
    }
    let jid: Jid = t
        .parse()
        .map_err(|_| WaError::BadRecipient(to.to_string()))?;
    if jid.user.is_empty() || !matches!(jid.server, Server::Pn | Server::Lid | Server::Group) {
        return Err(WaError::BadRecipient(to.to_string()));
    }
    Ok(jid)
}
