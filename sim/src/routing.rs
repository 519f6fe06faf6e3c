//! Message routing: from the simulator's endpoints (contacts, phones) to real
//! devices, and from real devices to endpoints and to other real devices.

use std::sync::Arc;

use buffa::Message as _;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::whatsapp as wa;

use crate::error::SimError;
use crate::signal::{EncType, address};
use crate::world::{Endpoint, InboxMessage, SERVER, World, new_message_id, now_secs};

/// The outer attributes of a message stanza.
pub struct Envelope {
    pub id: String,
    /// `type` of the stanza: `text`, `media`, `protocol`...
    pub kind: &'static str,
    /// `mediatype` of the `<enc>` of a media message (`image`, `ptt`...).
    pub mediatype: Option<&'static str>,
    pub push_name: Option<String>,
    pub timestamp: u64,
    /// Messages between devices of one account carry `category="peer"`.
    pub category_peer: bool,
    /// The stanza's `edit` attribute: `1` an edit, `7` a sender's revoke
    /// (or a removed reaction), `8` an admin's revoke.
    pub edit: Option<String>,
    /// The LID user the endpoint sends from (LID mode, see [`crate::lids`]);
    /// `None`: from its phone number.
    pub from_lid: Option<String>,
}

/// A device address parsed from a JID (`PHONE[:DEVICE]@s.whatsapp.net`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAddr {
    pub phone: String,
    pub device: u16,
}

impl DeviceAddr {
    pub fn parse(jid: &str) -> Option<Self> {
        let (user, server) = jid.split_once('@')?;
        if server != SERVER {
            return None;
        }
        let (phone, device) = match user.split_once(':') {
            Some((p, d)) => (p, d.parse().ok()?),
            None => (user, 0),
        };
        let phone = phone.split('.').next()?.to_string();
        crate::world::is_phone(&phone).then_some(Self { phone, device })
    }

    pub fn jid(&self) -> String {
        if self.device == 0 {
            format!("{}@{SERVER}", self.phone)
        } else {
            format!("{}:{}@{SERVER}", self.phone, self.device)
        }
    }
}

/// Encrypts a message from a simulator endpoint to one real device and
/// queues it for that device. The endpoint's Signal lock is held until the
/// stanza is queued, so messages of one endpoint arrive in the order sent.
pub async fn send_from_endpoint(
    world: &World,
    from_phone: &str,
    to_phone: &str,
    to_device: u16,
    plaintext: &[u8],
    env: Envelope,
) -> Result<(), SimError> {
    let endpoint = world.endpoint(from_phone)?;
    let to = address(to_phone, to_device);
    let mut peer = endpoint.peer.lock().await;
    let bundle = if peer.has_session(&to) {
        None
    } else {
        world.take_device_bundle(to_phone, to_device)
    };
    let started = std::time::Instant::now();
    let (kind, ct) = peer.encrypt(&to, bundle.as_ref(), plaintext).await?;
    // Corrupted when the admin asked for an undecryptable message.
    let ct = crate::chat::outgoing_ciphertext(kind, ct);
    world.stats.encrypt_nanos.fetch_add(
        started.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    world
        .stats
        .messages_encrypted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut msg = NodeBuilder::new("message")
        .attrs(crate::lids::sender_attrs(
            world,
            from_phone,
            env.from_lid.as_deref(),
        ))
        .attr("id", env.id.as_str())
        .attr("t", env.timestamp.to_string())
        .attr("type", env.kind);
    if let Some(name) = &env.push_name {
        msg = msg.attr("notify", name.as_str());
    }
    if env.category_peer {
        msg = msg.attr("category", "peer");
    }
    if let Some(edit) = &env.edit {
        msg = msg.attr("edit", edit.as_str());
    }
    let node = msg.children([enc_node(kind, ct, env.mediatype)]).build();
    world.deliver(to_phone, to_device, node);
    world
        .stats
        .messages_routed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

fn enc_node(kind: EncType, ct: Vec<u8>, mediatype: Option<&str>) -> Node {
    let mut b = NodeBuilder::new("enc")
        .attr("v", "2")
        .attr("type", kind.as_str());
    if let Some(m) = mediatype {
        b = b.attr("mediatype", m);
    }
    b.bytes(ct).build()
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0} is not an account")]
    NoAccount(String),
    #[error("no group {0}")]
    NoGroup(String),
    /// WhatsApp would not take it (not a member, announcement group).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// A fake contact sends a text to every linked device of an account.
pub async fn contact_send_text(
    world: &Arc<World>,
    from: &str,
    to: &str,
    text: &str,
    push_name: Option<&str>,
) -> Result<String, SendError> {
    let message = wa::Message {
        conversation: Some(text.to_string()),
        ..Default::default()
    };
    contact_send_message(world, from, to, &message, push_name).await
}

/// A fake contact sends any message (a reply, a media message, a
/// location...) to every linked device of an account.
pub async fn contact_send_message(
    world: &Arc<World>,
    from: &str,
    to: &str,
    message: &wa::Message,
    push_name: Option<&str>,
) -> Result<String, SendError> {
    contact_send_message_with_id(world, from, to, message, push_name, new_message_id()).await
}

/// [`contact_send_message`] under a given message id.
pub async fn contact_send_message_with_id(
    world: &Arc<World>,
    from: &str,
    to: &str,
    message: &wa::Message,
    push_name: Option<&str>,
    id: String,
) -> Result<String, SendError> {
    if crate::groups::is_group_jid(to) {
        return crate::group_messages::contact_send(world, from, to, message, push_name, id).await;
    }
    let devices = world
        .companions(to)
        .ok_or_else(|| SendError::NoAccount(to.to_string()))?;
    // The stanza `type` and `<enc mediatype>` whatsapp-rust itself would
    // put on this message.
    let kind = wacore::send::stanza_type_from_message(message);
    let mediatype = wacore::send::media_type_from_message(message);
    let edit = wacore::types::message::EditAttribute::infer_from_message(message)
        .map(|e| e.to_string_val().to_string());
    // Remembered before sending: the device may answer (react, vote) as
    // soon as it has the message.
    crate::kinds::remember_sent(world, from, to, &id, message)?;
    let from_lid = crate::lids::sending_lid(world, from);
    let message = message.encode_to_vec();
    let t = now_secs();
    for device in devices {
        send_from_endpoint(
            world,
            from,
            to,
            device,
            &message,
            Envelope {
                id: id.clone(),
                kind,
                mediatype,
                push_name: push_name.map(str::to_string),
                timestamp: t,
                category_peer: false,
                edit: edit.clone(),
                from_lid: from_lid.clone(),
            },
        )
        .await?;
    }
    Ok(id)
}

/// A receipt from a simulator endpoint (its user JID, PN or LID) to one
/// device.
pub fn receipt_node(from_jid: &str, id: &str, kind: Option<&str>) -> Node {
    let mut b = NodeBuilder::new("receipt")
        .attr("from", from_jid)
        .attr("id", id)
        .attr("t", now_secs().to_string());
    if let Some(k) = kind {
        b = b.attr("type", k);
    }
    b.build()
}

/// One encrypted copy of a client's message, for one device.
pub struct Copy {
    pub to: DeviceAddr,
    pub kind: EncType,
    pub ciphertext: Vec<u8>,
    /// The `<enc>` node as sent, forwarded unchanged to real devices.
    pub enc: Node,
}

/// A message sent by a real device, split into its per-device copies.
pub struct Outgoing {
    pub from: DeviceAddr,
    /// The chat as a phone-number JID, whichever namespace the stanza used.
    pub chat: String,
    /// Whether the stanza was addressed to a LID.
    pub to_lid: bool,
    pub id: String,
    pub kind: String,
    pub push_name: String,
    /// The stanza's `edit` attribute, passed on to real devices.
    pub edit: Option<String>,
    pub copies: Vec<Copy>,
    pub device_identity: Option<Node>,
}

/// Routes a client's message to every device it was encrypted for: real
/// devices get the stanza (queued while offline); simulator endpoints decrypt
/// it, keep it in their inbox and answer with a delivery receipt.
pub async fn route_from_device(world: &Arc<World>, out: Outgoing) {
    let t = now_secs();
    let from_jid = out.from.jid();
    let mut receipted: Vec<String> = Vec::new();
    for copy in out.copies {
        if copy.to.device == 0 && copy.to.phone == out.from.phone {
            // The sender's own phone gets a device-sent copy of everything
            // its companion sends. The simulated phone never reads or
            // answers those, so they are not worth decrypting (half of a
            // client's send traffic).
            continue;
        }
        if copy.to.device == 0 {
            let endpoint = match world.endpoint(&copy.to.phone) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("endpoint {}: {e}", copy.to.phone);
                    continue;
                }
            };
            let plain = {
                let mut peer = endpoint.peer.lock().await;
                let started = std::time::Instant::now();
                let plain = peer
                    .decrypt(
                        &address(&out.from.phone, out.from.device),
                        copy.kind,
                        &copy.ciphertext,
                    )
                    .await;
                world.stats.decrypt_nanos.fetch_add(
                    started.elapsed().as_nanos() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                plain
            };
            let plain = match plain {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(
                        "{} cannot decrypt {} from {from_jid}: {e}",
                        copy.to.phone,
                        out.id
                    );
                    continue;
                }
            };
            world
                .stats
                .messages_decrypted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(mut entry) =
                inbox_entry(world, &endpoint, &plain, &out.id, &out.chat, &from_jid, t).await
                && let Ok(mut inbox) = endpoint.inbox.lock()
            {
                entry.to_lid = out.to_lid;
                inbox.push(entry);
            }
            if !receipted.contains(&copy.to.phone) {
                receipted.push(copy.to.phone.clone());
                // From the address the message was sent to.
                let from = crate::lids::user_jid(world, &copy.to.phone, out.to_lid);
                world.deliver(
                    &out.from.phone,
                    out.from.device,
                    receipt_node(&from, &out.id, None),
                );
            }
        } else {
            let mut b = NodeBuilder::new("message")
                .attr("from", from_jid.as_str())
                .attr("id", out.id.as_str())
                .attr("t", t.to_string())
                .attr("type", out.kind.as_str());
            if !out.push_name.is_empty() {
                b = b.attr("notify", out.push_name.as_str());
            }
            if let Some(edit) = &out.edit {
                b = b.attr("edit", edit.as_str());
            }
            if copy.to.phone == out.from.phone {
                let chat = DeviceAddr::parse(&out.chat).map_or(out.chat.clone(), |c| {
                    crate::lids::user_jid(world, &c.phone, out.to_lid)
                });
                b = b.attr("recipient", chat);
            }
            let mut children = vec![copy.enc];
            if copy.kind == EncType::PkMsg
                && let Some(di) = &out.device_identity
            {
                children.push(di.clone());
            }
            world.deliver(&copy.to.phone, copy.to.device, b.children(children).build());
            world
                .stats
                .messages_routed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// What a contact's inbox keeps of a message: texts, the other message
/// kinds (see [`crate::kinds::read`]), and media with the file downloaded
/// and checked. Protocol messages it has no use for are not kept.
pub(crate) async fn inbox_entry(
    world: &World,
    endpoint: &Endpoint,
    plain: &[u8],
    id: &str,
    chat: &str,
    from_jid: &str,
    t: u64,
) -> Option<InboxMessage> {
    let message = wa::Message::decode_from_slice(plain).ok()?;
    let mut entry = InboxMessage {
        id: id.to_string(),
        from: from_jid.to_string(),
        to: chat.to_string(),
        kind: "text".into(),
        timestamp: t,
        // A message to a group is kept with the group's JID.
        group: crate::groups::is_group_jid(chat).then(|| chat.to_string()),
        ..Default::default()
    };
    let kept = crate::kinds::read(endpoint, &message, &mut entry)
        || crate::media_message::read_media(world, &message, &mut entry).await;
    if !kept {
        return None;
    }
    crate::kinds::remember_received(endpoint, &message, &mut entry);
    Some(entry)
}
