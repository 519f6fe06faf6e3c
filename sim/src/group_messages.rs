//! Group messages: the server's fan-out, and the simulated members' sender
//! keys both ways, with the retry path.
//!
//! A real device sends one stanza to `ID@g.us`: `<participants>` holds a
//! pairwise `<enc>` (pkmsg/msg) with its sender-key distribution message
//! (SKDM) for each device that does not have its chain yet, then one
//! `skmsg` for everyone. The server gives every other member device
//! (including the sender's other devices) `<message from=ID@g.us
//! participant=SENDER>` with its own `<enc>` if it had one, and the `skmsg`;
//! devices that are away get it from the offline queue. Simulated members
//! (contacts, and the phones of accounts) take the SKDM into their sender
//! keys, decrypt the `skmsg` into their inbox (with `group`) and send a
//! delivery receipt.
//!
//! A contact sends as a phone does: its own chain per group, its SKDM
//! pairwise to each member device that has not had it (the ledger
//! remembers who has), then the `skmsg`. A device that cannot decrypt asks
//! again with `<receipt type="retry" to=ID@g.us participant=CONTACT>`; the
//! contact answers as a phone: the same message, with its SKDM inside,
//! encrypted pairwise (with a new session when the receipt brings keys).
//! The admin API can withhold a contact's next SKDM from a device to drive
//! that path. A retry about a real device's message goes to that device,
//! which resends by itself. Between two simulated members the SKDM is
//! handed over without pairwise encryption: no real client could see it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use buffa::Message as _;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::NodeContent;
use waproto::whatsapp as wa;

use crate::groups::{Addressing, Group};
use crate::iq::resolve;
use crate::routing::{DeviceAddr, SendError};
use crate::signal::{Bundle, EncType, address};
use crate::world::{Endpoint, SERVER, World, now_secs};

/// How many of the contacts' recent group messages are kept for retries.
const KEEP_SENT: usize = 1000;

type Device = (String, u16);

/// A contact's group message, kept to answer retry receipts.
struct Sent {
    group: String,
    from: String,
    id: String,
    message: wa::Message,
    push_name: Option<String>,
    t: u64,
}

#[derive(Default)]
struct LedgerState {
    /// (group, sender phone) -> devices that have the sender's current chain.
    holders: HashMap<(String, String), HashSet<Device>>,
    /// (group, contact) -> devices its next message gives no SKDM (a fault).
    withheld: HashMap<(String, String), HashSet<Device>>,
    /// (group, phone): the simulated member starts a new chain on its next
    /// message (someone left, as WhatsApp senders rotate).
    rotate: HashSet<(String, String)>,
    sent: VecDeque<Sent>,
    /// Retry receipts answered, per group.
    resends: HashMap<String, u64>,
}

/// The sender-key bookkeeping of the simulated members (own lock).
#[derive(Default)]
pub struct Ledger(Mutex<LedgerState>);

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many retry receipts the simulated members answered in a group.
    pub fn resends(&self, group: &str) -> u64 {
        self.lock().resends.get(group).copied().unwrap_or(0)
    }

    /// The next message of `contact` in `group` gives `device` no SKDM, as
    /// if it had been lost: the device cannot decrypt it and must ask again.
    pub fn withhold(&self, group: &str, contact: &str, device: DeviceAddr) {
        self.lock()
            .withheld
            .entry((group.to_string(), contact.to_string()))
            .or_default()
            .insert((device.phone, device.device));
    }
}

/// Someone left or was removed: every simulated member starts a new chain,
/// which every member then gets again.
pub fn after_removal(world: &World, g: &Group) {
    let mut l = world.groups.ledger.lock();
    l.holders.retain(|(group, _), _| *group != g.id);
    for p in g.phones() {
        l.rotate.insert((g.id.clone(), p));
    }
}

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

fn bytes(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn enc_type(enc: &Node) -> Option<EncType> {
    match attr(enc, "type").as_deref() {
        Some("pkmsg") => Some(EncType::PkMsg),
        Some("msg") => Some(EncType::Msg),
        _ => None,
    }
}

/// Every device of every member but `except`: accounts have their phone
/// (device 0, simulated) and their linked devices; contacts their phone.
fn member_devices(world: &World, g: &Group, except: &Device) -> Vec<Device> {
    let mut out = Vec::new();
    for p in g.phones() {
        out.push((p.clone(), 0));
        for d in world.companions(&p).unwrap_or_default() {
            out.push((p.clone(), d));
        }
    }
    out.retain(|d| d != except);
    out
}

/// The device JID a member sends from in a group (PN or LID).
fn device_jid(world: &World, g: &Group, phone: &str, device: u16) -> String {
    let user = crate::group_wire::member_jid(world, phone, g.addressing);
    match (user.split_once('@'), device) {
        (Some((u, s)), d) if d != 0 => format!("{u}:{d}@{s}"),
        _ => user,
    }
}

/// The head of a `<message>` a member device gets from a group.
fn group_stanza(
    world: &World,
    g: &Group,
    sender: &Device,
    id: &str,
    t: u64,
    kind: &str,
) -> NodeBuilder {
    let mut b = NodeBuilder::new("message")
        .attr("from", g.jid())
        .attr("participant", device_jid(world, g, &sender.0, sender.1))
        .attr("id", id)
        .attr("t", t.to_string())
        .attr("type", kind)
        .attr("addressing_mode", g.addressing.as_str());
    if g.addressing == Addressing::Lid {
        b = b.attr("participant_pn", format!("{}@{SERVER}", sender.0));
    }
    b
}

/// May `phone` send to the group? Members may, but only admins in an
/// announcement group.
fn may_send(g: &Group, phone: &str) -> bool {
    match g.role(phone) {
        Some(r) => !g.announce || r.is_admin(),
        None => false,
    }
}

/// A real device's message to a group (its `<ack>` is already sent).
pub async fn from_device(world: &Arc<World>, phone: &str, device: u16, node: &Node) {
    let to = attr(node, "to").unwrap_or_default();
    let id = attr(node, "id").unwrap_or_default();
    let Some(g) = world.groups.get(&to) else {
        tracing::warn!("{phone}:{device} wrote to unknown group {to}");
        return;
    };
    if !may_send(&g, phone) {
        tracing::warn!("{phone}:{device} may not send to {to}");
        return;
    }
    let sender: Device = (phone.to_string(), device);
    // The pairwise `<enc>` of each device that gets the SKDM.
    let mut pairwise: HashMap<Device, Node> = HashMap::new();
    if let Some(parts) = node.get_optional_child("participants") {
        for to_node in parts.get_children_by_tag("to") {
            let addr = attr(to_node, "jid").and_then(|j| resolve(world, &j));
            if let (Some(a), Some(enc)) = (addr, to_node.get_optional_child("enc")) {
                pairwise.insert((a.phone, a.device), enc.clone());
            }
        }
    }
    let Some(skmsg) = node
        .get_children_by_tag("enc")
        .find(|e| attr(e, "type").as_deref() == Some("skmsg"))
        .cloned()
    else {
        tracing::warn!("{phone}:{device}: group message {id} has no skmsg");
        return;
    };
    let identity = node.get_optional_child("device-identity").cloned();
    let kind = attr(node, "type").unwrap_or_else(|| "text".into());
    let push_name = world
        .lock()
        .accounts
        .get(phone)
        .map(|a| a.push_name.clone())
        .unwrap_or_default();
    let t = now_secs();
    let mut simulated = Vec::new();
    for dev in member_devices(world, &g, &sender) {
        if dev.1 == 0 {
            // The sender's own phone only gets device-sent copies it
            // never reads (see routing).
            if dev.0 != phone {
                simulated.push(dev);
            }
            continue;
        }
        let mut b = group_stanza(world, &g, &sender, &id, t, &kind);
        if !push_name.is_empty() {
            b = b.attr("notify", push_name.as_str());
        }
        if let Some(edit) = attr(node, "edit").filter(|e| !e.is_empty()) {
            b = b.attr("edit", edit);
        }
        let mut children = Vec::new();
        if let Some(enc) = pairwise.get(&dev) {
            children.push(enc.clone());
        }
        children.push(skmsg.clone());
        if pairwise
            .get(&dev)
            .is_some_and(|e| enc_type(e) == Some(EncType::PkMsg))
            && let Some(di) = &identity
        {
            children.push(di.clone());
        }
        world.deliver(&dev.0, dev.1, b.children(children).build());
        world.stats.messages_routed.fetch_add(1, Ordering::Relaxed);
    }
    let Some(skmsg) = bytes(&skmsg).map(<[u8]>::to_vec) else {
        return;
    };
    for dev in simulated {
        let Ok(endpoint) = world.endpoint(&dev.0) else {
            continue;
        };
        let enc = pairwise.get(&dev);
        if let Err(e) = member_reads(world, &endpoint, &g, &sender, enc, &skmsg, &id, t).await {
            tracing::warn!("{} cannot read {id} in {}: {e}", dev.0, g.jid());
            continue;
        }
        let receipt = NodeBuilder::new("receipt")
            .attr("from", g.jid())
            .attr(
                "participant",
                crate::group_wire::member_jid(world, &dev.0, g.addressing),
            )
            .attr("id", id.as_str())
            .attr("t", now_secs().to_string())
            .build();
        world.deliver(phone, device, receipt);
    }
}

/// A simulated member takes in a device's SKDM (if it got one) and reads
/// its `skmsg` into the inbox.
#[allow(clippy::too_many_arguments)]
async fn member_reads(
    world: &World,
    endpoint: &Endpoint,
    g: &Group,
    sender: &Device,
    enc: Option<&Node>,
    skmsg: &[u8],
    id: &str,
    t: u64,
) -> Result<(), crate::error::SimError> {
    let gjid = g.jid();
    let plain = {
        let mut peer = endpoint.peer.lock().await;
        if let Some(enc) = enc
            && let (Some(kind), Some(ct)) = (enc_type(enc), bytes(enc))
        {
            let plain = peer
                .decrypt(&address(&sender.0, sender.1), kind, ct)
                .await?;
            let message = wa::Message::decode_from_slice(&plain)
                .map_err(|e| crate::error::SimError::Protocol(format!("SKDM: {e}")))?;
            if let Some(skdm) = message
                .sender_key_distribution_message
                .as_option()
                .and_then(|s| s.axolotl_sender_key_distribution_message.as_deref())
            {
                peer.process_skdm(&gjid, &sender.0, sender.1, skdm).await?;
            }
        }
        peer.group_decrypt(&gjid, &sender.0, sender.1, skmsg)
            .await?
    };
    world
        .stats
        .messages_decrypted
        .fetch_add(1, Ordering::Relaxed);
    let from = DeviceAddr {
        phone: sender.0.clone(),
        device: sender.1,
    }
    .jid();
    keep(world, endpoint, &plain, id, &gjid, &from, t).await;
    Ok(())
}

/// Puts a group message into a simulated member's inbox.
async fn keep(
    world: &World,
    endpoint: &Endpoint,
    plain: &[u8],
    id: &str,
    gjid: &str,
    from: &str,
    t: u64,
) {
    // `group` is set from the chat, a group JID.
    let Some(entry) = crate::routing::inbox_entry(world, endpoint, plain, id, gjid, from, t).await
    else {
        return;
    };
    if let Ok(mut inbox) = endpoint.inbox.lock() {
        inbox.push(entry);
    }
}

/// The stanza attributes whatsapp-rust would give this message.
struct Kind {
    kind: &'static str,
    mediatype: Option<&'static str>,
    edit: Option<String>,
}

fn kind_of(message: &wa::Message) -> Kind {
    Kind {
        kind: wacore::send::stanza_type_from_message(message),
        mediatype: wacore::send::media_type_from_message(message),
        edit: wacore::types::message::EditAttribute::infer_from_message(message)
            .map(|e| e.to_string_val().to_string()),
    }
}

fn enc_node(kind: &str, ct: Vec<u8>, mediatype: Option<&str>, count: Option<u32>) -> Node {
    let mut b = NodeBuilder::new("enc").attr("v", "2").attr("type", kind);
    if let Some(m) = mediatype {
        b = b.attr("mediatype", m);
    }
    if let Some(c) = count {
        b = b.attr("count", c.to_string());
    }
    b.bytes(ct).build()
}

/// A contact sends a message to a group, as a phone does (see the module
/// notes); returns its id.
pub async fn contact_send(
    world: &Arc<World>,
    from: &str,
    group: &str,
    message: &wa::Message,
    push_name: Option<&str>,
    id: String,
) -> Result<String, SendError> {
    let g = world
        .groups
        .get(group)
        .ok_or_else(|| SendError::NoGroup(group.to_string()))?;
    if g.role(from).is_none() {
        return Err(SendError::Refused(format!("{from} is not in {}", g.jid())));
    }
    if !may_send(&g, from) {
        return Err(SendError::Refused(format!(
            "only admins send to {} (announcement group)",
            g.jid()
        )));
    }
    let gjid = g.jid();
    crate::kinds::remember_sent(world, from, &gjid, &id, message)?;
    let t = now_secs();
    {
        let mut l = world.groups.ledger.lock();
        if l.sent.len() >= KEEP_SENT {
            l.sent.pop_front();
        }
        l.sent.push_back(Sent {
            group: g.id.clone(),
            from: from.to_string(),
            id: id.clone(),
            message: message.clone(),
            push_name: push_name.map(str::to_string),
            t,
        });
    }
    let k = kind_of(message);
    let plaintext = message.encode_to_vec();
    let me: Device = (from.to_string(), 0);
    let endpoint = world.endpoint(from)?;
    let (skdm, skmsg, simulated) = {
        let mut peer = endpoint.peer.lock().await;
        let rotate = world
            .groups
            .ledger
            .lock()
            .rotate
            .remove(&(g.id.clone(), from.to_string()));
        if rotate {
            peer.rotate_own_sender_key(&gjid, from);
        }
        let skdm = peer.own_skdm(&gjid, from).await?;
        let skmsg = peer.group_encrypt(&gjid, from, &plaintext).await?;
        let skdm_message = wa::Message {
            sender_key_distribution_message: buffa::MessageField::some(
                wa::message::SenderKeyDistributionMessage {
                    group_id: Some(gjid.clone()),
                    axolotl_sender_key_distribution_message: Some(skdm.clone()),
                },
            ),
            ..Default::default()
        }
        .encode_to_vec();
        let mut simulated = Vec::new();
        for dev in member_devices(world, &g, &me) {
            if dev.1 == 0 {
                simulated.push(dev);
                continue;
            }
            let mut children = Vec::new();
            if needs_key(world, &g.id, from, &dev) {
                let to = address(&dev.0, dev.1);
                let bundle = if peer.has_session(&to) {
                    None
                } else {
                    world.take_device_bundle(&dev.0, dev.1)
                };
                match peer.encrypt(&to, bundle.as_ref(), &skdm_message).await {
                    Ok((kind, ct)) => {
                        world
                            .stats
                            .messages_encrypted
                            .fetch_add(1, Ordering::Relaxed);
                        children.push(enc_node(kind.as_str(), ct, None, None));
                    }
                    // The device gets the skmsg all the same, and can ask
                    // again (a phone's best effort).
                    Err(e) => {
                        tracing::warn!("{from} cannot give its key to {}:{}: {e}", dev.0, dev.1);
                        unmark(world, &g.id, from, &dev);
                    }
                }
            }
            children.push(enc_node("skmsg", skmsg.clone(), k.mediatype, None));
            let mut b = group_stanza(world, &g, &me, &id, t, k.kind);
            if let Some(name) = push_name {
                b = b.attr("notify", name);
            }
            if let Some(edit) = &k.edit {
                b = b.attr("edit", edit.as_str());
            }
            world.deliver(&dev.0, dev.1, b.children(children).build());
            world.stats.messages_routed.fetch_add(1, Ordering::Relaxed);
        }
        (skdm, skmsg, simulated)
    };
    // Other simulated members, one at a time (never two Signal locks held).
    for dev in simulated {
        let Ok(other) = world.endpoint(&dev.0) else {
            continue;
        };
        let read = async {
            let mut peer = other.peer.lock().await;
            if needs_key(world, &g.id, from, &dev)
                && let Err(e) = peer.process_skdm(&gjid, from, 0, &skdm).await
            {
                unmark(world, &g.id, from, &dev);
                return Err(e);
            }
            peer.group_decrypt(&gjid, from, 0, &skmsg).await
        };
        match read.await {
            Ok(plain) => {
                let from_jid = format!("{from}@{SERVER}");
                keep(world, &other, &plain, &id, &gjid, &from_jid, t).await;
            }
            Err(e) => tracing::warn!("{} cannot read {id} in {gjid}: {e}", dev.0),
        }
    }
    Ok(id)
}

/// A device did not get `sender`'s SKDM after all.
fn unmark(world: &World, group: &str, sender: &str, dev: &Device) {
    let mut l = world.groups.ledger.lock();
    if let Some(h) = l.holders.get_mut(&(group.to_string(), sender.to_string())) {
        h.remove(dev);
    }
}

/// Whether a device is to get `sender`'s SKDM with this message; it then
/// counts as having it, unless the admin API withheld it.
fn needs_key(world: &World, group: &str, sender: &str, dev: &Device) -> bool {
    let mut l = world.groups.ledger.lock();
    let key = (group.to_string(), sender.to_string());
    if l.holders.get(&key).is_some_and(|h| h.contains(dev)) {
        return false;
    }
    if let Some(w) = l.withheld.get_mut(&key)
        && w.remove(dev)
    {
        return false;
    }
    l.holders.entry(key).or_default().insert(dev.clone());
    true
}

/// A device's receipt for a group message: a retry is answered by the
/// contact that sent the message, or passed on to the real device that
/// did (one that did not know of the asking device yet, say, resends with
/// its key); delivery and read receipts go on to the sender's other
/// account's devices; read and played receipts to a contact are recorded.
pub async fn on_receipt(world: &Arc<World>, phone: &str, device: u16, node: &Node) {
    let to = attr(node, "to").unwrap_or_default();
    let Some(g) = world.groups.get(&to) else {
        return;
    };
    let Some(sender) = attr(node, "participant").and_then(|p| resolve(world, &p)) else {
        return;
    };
    let kind = attr(node, "type");
    let from_account = world.companions(&sender.phone).is_some();
    if sender.device == 0 && !from_account {
        if kind.as_deref() == Some("retry") {
            resend(world, &g, &sender.phone, phone, device, node).await;
        } else {
            // Recorded as receipts to that contact.
            let mut as_direct = node.clone();
            as_direct
                .attrs
                .insert("to", format!("{}@{SERVER}", sender.phone));
            let ids = covered_ids(node);
            crate::chat::on_receipt(world, phone, &as_direct, &ids);
        }
        return;
    }
    let retry = kind.as_deref() == Some("retry");
    if !from_account || (sender.phone == phone && !retry) {
        return;
    }
    // From the group, naming who read it (or asks again).
    let mut b = NodeBuilder::new("receipt")
        .attr("from", g.jid())
        .attr("participant", device_jid(world, &g, phone, device))
        .attr("id", attr(node, "id").unwrap_or_default())
        .attr("t", now_secs().to_string());
    if let Some(k) = kind.as_deref().filter(|k| *k != "inactive") {
        b = b.attr("type", k);
    }
    let children: Vec<Node> = node.children().map(|c| c.to_vec()).unwrap_or_default();
    let stanza = b.children(children).build();
    // A retry is for the device that sent; other receipts for all of them.
    let devices = if retry {
        vec![sender.device]
    } else {
        world.companions(&sender.phone).unwrap_or_default()
    };
    for d in devices {
        world.deliver(&sender.phone, d, stanza.clone());
    }
}

fn covered_ids(node: &Node) -> Vec<String> {
    let mut ids: Vec<String> = attr(node, "id").into_iter().collect();
    if let Some(list) = node.get_optional_child("list") {
        ids.extend(
            list.get_children_by_tag("item")
                .filter_map(|i| attr(i, "id")),
        );
    }
    ids
}

/// The prekey bundle a retry receipt brings (`<registration>` and
/// `<keys>`), for a new session.
fn retry_bundle(node: &Node) -> Option<Bundle> {
    let keys = node.get_optional_child("keys")?;
    let reg = node.get_optional_child("registration").and_then(bytes)?;
    let key = keys.get_optional_child("key")?;
    let prekey = (
        crate::iq::be_uint(crate::iq::bytes(key.get_optional_child("id"))),
        crate::signal::key32(crate::iq::bytes(key.get_optional_child("value"))),
    );
    Some(Bundle {
        reg_id: crate::iq::be_uint(reg),
        identity: crate::signal::key32(crate::iq::bytes(keys.get_optional_child("identity"))),
        signed_prekey: crate::iq::parse_skey(keys.get_optional_child("skey"))?,
        prekey: Some(prekey),
    })
}

/// A contact answers a retry receipt as its phone would: the message again
/// with its SKDM inside, pairwise, to the device that asked.
async fn resend(world: &World, g: &Group, contact: &str, phone: &str, device: u16, node: &Node) {
    let id = attr(node, "id").unwrap_or_default();
    let original = {
        let l = world.groups.ledger.lock();
        l.sent
            .iter()
            .rev()
            .find(|s| s.group == g.id && s.id == id && s.from == contact)
            .map(|s| (s.message.clone(), s.push_name.clone(), s.t))
    };
    let Some((mut message, push_name, t)) = original else {
        tracing::debug!("{phone}:{device} asked {contact} to resend unknown {id}");
        return;
    };
    if g.role(phone).is_none() {
        return;
    }
    let count = node
        .get_optional_child("retry")
        .and_then(|r| attr(r, "count"))
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or(1);
    let gjid = g.jid();
    let Ok(endpoint) = world.endpoint(contact) else {
        return;
    };
    let to = address(phone, device);
    let sent = async {
        let mut peer = endpoint.peer.lock().await;
        let skdm = peer.own_skdm(&gjid, contact).await?;
        message.sender_key_distribution_message =
            buffa::MessageField::some(wa::message::SenderKeyDistributionMessage {
                group_id: Some(gjid.clone()),
                axolotl_sender_key_distribution_message: Some(skdm),
            });
        // Keys in the receipt: the device lost the session; start anew.
        let bundle = match retry_bundle(node) {
            Some(b) => {
                peer.forget(&to);
                Some(b)
            }
            None if !peer.has_session(&to) => world.take_device_bundle(phone, device),
            None => None,
        };
        let (kind, ct) = peer
            .encrypt(&to, bundle.as_ref(), &message.encode_to_vec())
            .await?;
        let k = kind_of(&message);
        let mut b = group_stanza(world, g, &(contact.to_string(), 0), &id, t, k.kind);
        if let Some(name) = &push_name {
            b = b.attr("notify", name.as_str());
        }
        if let Some(edit) = &k.edit {
            b = b.attr("edit", edit.as_str());
        }
        let stanza = b
            .children([enc_node(kind.as_str(), ct, k.mediatype, Some(count))])
            .build();
        world.deliver(phone, device, stanza);
        Ok::<(), crate::error::SimError>(())
    };
    if let Err(e) = sent.await {
        tracing::warn!("{contact} cannot resend {id} to {phone}:{device}: {e}");
        return;
    }
    let mut l = world.groups.ledger.lock();
    l.holders
        .entry((g.id.clone(), contact.to_string()))
        .or_default()
        .insert((phone.to_string(), device));
    *l.resends.entry(g.id.clone()).or_default() += 1;
}
