//! The only module that talks to whatsapp-rust. The rest of the bridge sees
//! our own types: [`Link`] (one linked-device client) and [`WaEvent`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use whatsapp_rust::TokioRuntime;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

/// The version the client announces; pinned so that no client fetches
/// WhatsApp's service worker to learn it.
const CLIENT_VERSION: (u32, u32, u32) = (2, 3000, 1_030_000_000);

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
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageStatus {
    pub ids: Vec<String>,
    pub status: &'static str,
    pub recipient: String,
    pub timestamp: i64,
}

/// Where a session's incoming messages are committed before WhatsApp is told
/// they arrived. An `Err` withholds the acknowledgement, so WhatsApp delivers
/// the messages again (at-least-once); a commit must therefore be idempotent.
#[async_trait::async_trait]
pub trait Inbox: Send + Sync + 'static {
    async fn commit(&self, messages: Vec<IncomingMessage>) -> Result<(), String>;
}

/// whatsapp-rust's inbound durability hook, feeding an [`Inbox`].
struct DurabilityHook(Arc<dyn Inbox>);

#[async_trait::async_trait]
impl whatsapp_rust::InboundDurabilityHook for DurabilityHook {
    async fn on_messages(
        &self,
        _client: Arc<whatsapp_rust::Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        let messages = batch.iter().map(incoming).collect();
        self.0.commit(messages).await.map_err(anyhow::Error::msg)
    }
}

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
    /// contact or unknown.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: Option<String>,
    pub caption: Option<String>,
    /// The id of the quoted message, for a reply.
    pub reply_to: Option<String>,
    /// Who wrote the quoted message, when WhatsApp says.
    pub reply_to_sender: Option<String>,
    pub media: Option<Media>,
    pub location: Option<Location>,
    pub contact: Option<Contact>,
}

/// What a media message says about its file (downloading it comes later).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Media {
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
    pub display_name: Option<String>,
    pub vcard: Option<String>,
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
        Event::ServerAck(a) if a.class.as_deref() == Some("message") => {
            vec![WaEvent::Status(MessageStatus {
                ids: vec![a.id.clone()],
                status: if a.error.is_some() { "failed" } else { "sent" },
                recipient: a
                    .from
                    .as_ref()
                    .map(|j| j.to_non_ad().to_string())
                    .unwrap_or_default(),
                timestamp: a.timestamp.map(|t| t.timestamp()).unwrap_or_else(unix_now),
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
                timestamp: r.timestamp.timestamp(),
            })]
        }
        // Messages reach the bridge through the durability hook only.
        _ => Vec::new(),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn incoming(m: &InboundMessage) -> IncomingMessage {
    let src = &m.info.source;
    let from_lid = src
        .sender_alt
        .as_ref()
        .filter(|j| j.server == Server::Lid)
        .map(|j| j.to_string());
    let mut out = IncomingMessage {
        id: m.info.id.to_string(),
        chat: src.chat.to_string(),
        from: src.sender.to_non_ad().to_string(),
        from_lid,
        push_name: m.info.push_name.clone(),
        from_me: src.is_from_me,
        is_group: src.is_group,
        timestamp: m.info.timestamp.timestamp(),
        ..Default::default()
    };
    describe(m.message.get_base_message(), &mut out);
    out
}

fn sha(b: &Option<Vec<u8>>) -> Option<String> {
    use base64::Engine as _;
    b.as_ref()
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
}

/// Fills in the kind, text and details of a (base, unwrapped) message.
fn describe(msg: &wa::Message, out: &mut IncomingMessage) {
    let mut context: Option<&wa::ContextInfo> = None;
    if let Some(t) = msg.conversation.as_ref().filter(|t| !t.is_empty()) {
        out.kind = "text";
        out.text = Some(t.clone());
    } else if let Some(e) = msg.extended_text_message.as_option() {
        out.kind = "text";
        out.text = e.text.clone();
        context = e.context_info.as_option();
    } else if let Some(i) = msg.image_message.as_option() {
        out.kind = "image";
        out.caption = i.caption.clone();
        out.media = Some(Media {
            mimetype: i.mimetype.clone(),
            file_size: i.file_length,
            sha256: sha(&i.file_sha256),
            ..Default::default()
        });
        context = i.context_info.as_option();
    } else if let Some(v) = msg.video_message.as_option() {
        out.kind = "video";
        out.caption = v.caption.clone();
        out.media = Some(Media {
            mimetype: v.mimetype.clone(),
            file_size: v.file_length,
            sha256: sha(&v.file_sha256),
            seconds: v.seconds,
            ..Default::default()
        });
        context = v.context_info.as_option();
    } else if let Some(a) = msg.audio_message.as_option() {
        out.kind = if a.ptt == Some(true) {
            "voice"
        } else {
            "audio"
        };
        out.media = Some(Media {
            mimetype: a.mimetype.clone(),
            file_size: a.file_length,
            sha256: sha(&a.file_sha256),
            seconds: a.seconds,
            ..Default::default()
        });
        context = a.context_info.as_option();
    } else if let Some(d) = msg.document_message.as_option() {
        out.kind = "document";
        out.caption = d.caption.clone();
        out.media = Some(Media {
            mimetype: d.mimetype.clone(),
            file_name: d.file_name.clone(),
            file_size: d.file_length,
            sha256: sha(&d.file_sha256),
            ..Default::default()
        });
        context = d.context_info.as_option();
    } else if let Some(st) = msg.sticker_message.as_option() {
        out.kind = "sticker";
        out.media = Some(Media {
            mimetype: st.mimetype.clone(),
            file_size: st.file_length,
            sha256: sha(&st.file_sha256),
            ..Default::default()
        });
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
        out.kind = "contact";
        out.contact = Some(Contact {
            display_name: c.display_name.clone(),
            vcard: c.vcard.clone(),
        });
        context = c.context_info.as_option();
    } else {
        out.kind = "unknown";
    }
    if let Some(ctx) = context {
        out.reply_to = ctx.stanza_id.clone().filter(|s| !s.is_empty());
        out.reply_to_sender = ctx.participant.clone().filter(|s| !s.is_empty());
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
            .with_version(CLIENT_VERSION)
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

    /// Sends a text; `to` is a phone number or a JID.
    pub async fn send_text(&self, to: &str, text: &str) -> Result<(String, String), WaError> {
        let jid = parse_recipient(to)?;
        let r = self
            .client
            .send_message(jid, wa::Message::text(text))
            .await
            .map_err(|e| WaError::Send(e.to_string()))?;
        Ok((r.message_id.to_string(), r.to.to_string()))
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
