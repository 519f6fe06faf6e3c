//! Chat actions between linked devices and simulated contacts, both ways:
//! read and played receipts, chat states (typing, recording), presence and
//! calls that devices send are recorded; contacts type, show presence,
//! ring, send messages that do not decrypt and change their number.
//!
//! What is recorded lives in [`ChatStore`], behind its own lock.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use wacore::libsignal::protocol::{PreKeySignalMessage, SignalMessage};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::conn::ConnHandle;
use crate::iq::resolve;
use crate::routing::SendError;
use crate::signal::EncType;
use crate::world::{SERVER, World, new_message_id, now_secs};

/// At most this many receipts, chat states and calls are kept per contact
/// (the oldest go first), so that a long benchmark does not grow without end.
const KEEP: usize = 10_000;

/// The kind of a receipt a device sent to a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptKind {
    Read,
    Played,
}

/// A read or played receipt a device sent to a contact, one per message id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceiptRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ReceiptKind,
    /// `ACCOUNT@s.whatsapp.net`: the account whose device read.
    pub from: String,
    pub t: u64,
}

/// A chat state, as devices send it and contacts show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatState {
    /// Typing.
    Composing,
    /// Recording a voice note (`<composing media="audio"/>`).
    Recording,
    Paused,
}

impl ChatState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "composing" => Some(Self::Composing),
            "recording" => Some(Self::Recording),
            "paused" => Some(Self::Paused),
            _ => None,
        }
    }

    /// The child of a `<chatstate>` stanza.
    fn node(self) -> Node {
        match self {
            Self::Composing => NodeBuilder::new("composing").build(),
            Self::Recording => NodeBuilder::new("composing").attr("media", "audio").build(),
            Self::Paused => NodeBuilder::new("paused").build(),
        }
    }

    /// Reads the child of a `<chatstate>` stanza.
    fn of_stanza(node: &Node) -> Option<Self> {
        let child = node.children()?.first()?;
        match child.tag.as_ref() {
            "composing" if attr(child, "media").as_deref() == Some("audio") => {
                Some(Self::Recording)
            }
            "composing" => Some(Self::Composing),
            "paused" => Some(Self::Paused),
            _ => None,
        }
    }
}

/// A chat state a device sent to a contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatStateRecord {
    /// `ACCOUNT@s.whatsapp.net`.
    pub from: String,
    pub state: ChatState,
    pub t: u64,
}

/// Online or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Available,
    Unavailable,
}

impl Presence {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "available" => Some(Self::Available),
            "unavailable" => Some(Self::Unavailable),
            _ => None,
        }
    }
}

/// The last presence an account's devices announced (`null` until one does).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PresenceRecord {
    pub state: Option<Presence>,
    pub t: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    Offered,
    Rejected,
}

/// A call a contact placed to an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub call_id: String,
    /// The account's phone number.
    pub to: String,
    pub video: bool,
    pub state: CallState,
}

/// A contact's presence as last shown, for devices that subscribe to it.
#[derive(Clone, Copy)]
struct Shown {
    presence: Presence,
    last_seen: Option<u64>,
}

#[derive(Default)]
struct Log {
    /// By contact phone.
    receipts: HashMap<String, VecDeque<ReceiptRecord>>,
    chatstates: HashMap<String, VecDeque<ChatStateRecord>>,
    calls: HashMap<String, VecDeque<CallRecord>>,
    shown: HashMap<String, Shown>,
    /// By account phone.
    presence: HashMap<String, PresenceRecord>,
}

/// Everything this module records.
#[derive(Default)]
pub struct ChatStore {
    log: Mutex<Log>,
}

fn push<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() >= KEEP {
        list.pop_front();
    }
    list.push_back(item);
}

impl ChatStore {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The read and played receipts devices sent to a contact, oldest first.
    pub fn receipts(&self, contact: &str) -> Vec<ReceiptRecord> {
        let log = self.lock();
        log.receipts
            .get(contact)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The chat states devices sent to a contact, oldest first.
    pub fn chatstates(&self, contact: &str) -> Vec<ChatStateRecord> {
        let log = self.lock();
        log.chatstates
            .get(contact)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The calls a contact placed, oldest first.
    pub fn calls(&self, contact: &str) -> Vec<CallRecord> {
        let log = self.lock();
        log.calls
            .get(contact)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The last presence an account's devices announced.
    pub fn presence(&self, account: &str) -> PresenceRecord {
        self.lock()
            .presence
            .get(account)
            .cloned()
            .unwrap_or_default()
    }
}

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

fn user_jid(phone: &str) -> String {
    format!("{phone}@{SERVER}")
}

/// A JID (PN or LID, any device) that is a simulated contact: a phone
/// number that is not an account.
fn contact_of(world: &World, jid: &str) -> Option<String> {
    let addr = resolve(world, jid)?;
    world
        .companions(&addr.phone)
        .is_none()
        .then_some(addr.phone)
}

fn stanza_time(node: &Node) -> u64 {
    attr(node, "t")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(now_secs)
}

/// A receipt from a device of `account`: read and played receipts to a
/// contact are recorded, one entry per message id they cover.
pub fn on_receipt(world: &World, account: &str, node: &Node, ids: &[String]) {
    let kind = match attr(node, "type").as_deref() {
        Some("read") => ReceiptKind::Read,
        Some("played") => ReceiptKind::Played,
        _ => return,
    };
    let Some(contact) = attr(node, "to").and_then(|to| contact_of(world, &to)) else {
        return;
    };
    let t = stanza_time(node);
    let from = user_jid(account);
    let mut log = world.chat.lock();
    let list = log.receipts.entry(contact).or_default();
    for id in ids {
        push(
            list,
            ReceiptRecord {
                id: id.clone(),
                kind,
                from: from.clone(),
                t,
            },
        );
    }
}

/// A `<chatstate>`, `<presence>` or `<call>` from a device of `account`.
pub fn on_device_stanza(world: &World, account: &str, device: u16, conn: &ConnHandle, node: &Node) {
    match node.tag.as_ref() {
        "chatstate" => on_chatstate(world, account, node),
        "presence" => on_presence(world, account, device, node),
        "call" => on_call(world, conn, node),
        _ => {}
    }
}

/// A device's `<chatstate to>`: recorded when `to` is a contact, passed on
/// to the devices of `to` when it is another account.
fn on_chatstate(world: &World, account: &str, node: &Node) {
    let Some(to) = attr(node, "to").and_then(|to| resolve(world, &to)) else {
        return;
    };
    let Some(state) = ChatState::of_stanza(node) else {
        return;
    };
    if to.phone == account {
        return;
    }
    match world.companions(&to.phone) {
        None => {
            let mut log = world.chat.lock();
            push(
                log.chatstates.entry(to.phone).or_default(),
                ChatStateRecord {
                    from: user_jid(account),
                    state,
                    t: now_secs(),
                },
            );
        }
        Some(devices) => {
            let stanza = chatstate_node(account, state);
            for d in devices {
                world.send_now(&to.phone, d, stanza.clone());
            }
        }
    }
}

fn chatstate_node(from: &str, state: ChatState) -> Node {
    NodeBuilder::new("chatstate")
        .attr("from", user_jid(from))
        .children([state.node()])
        .build()
}

fn presence_node(from: &str, shown: Shown) -> Node {
    let mut b = NodeBuilder::new("presence").attr("from", user_jid(from));
    if shown.presence == Presence::Unavailable {
        b = b.attr("type", "unavailable");
        if let Some(last) = shown.last_seen {
            b = b.attr("last", last.to_string());
        }
    }
    b.build()
}

/// A device's `<presence>`: its own availability is recorded for the
/// account; a subscription to a contact is answered with the presence the
/// contact last showed, if any.
fn on_presence(world: &World, account: &str, device: u16, node: &Node) {
    match attr(node, "type").as_deref() {
        Some("subscribe") => {
            let Some(contact) = attr(node, "to").and_then(|to| contact_of(world, &to)) else {
                return;
            };
            let shown = world.chat.lock().shown.get(&contact).copied();
            if let Some(shown) = shown {
                world.send_now(account, device, presence_node(&contact, shown));
            }
        }
        Some(kind) => {
            let Some(state) = Presence::parse(kind) else {
                return;
            };
            world.chat.lock().presence.insert(
                account.to_string(),
                PresenceRecord {
                    state: Some(state),
                    t: Some(now_secs()),
                },
            );
        }
        None => {}
    }
}

/// A device's `<call>`: acknowledged as WhatsApp does (`<ack class="call"
/// type=ACTION>`); a rejection of a contact's call is recorded.
fn on_call(world: &World, conn: &ConnHandle, node: &Node) {
    let to = attr(node, "to").unwrap_or_default();
    let action = node.children().and_then(|c| c.first());
    let mut ack = NodeBuilder::new("ack")
        .attr("class", "call")
        .attr("id", attr(node, "id").unwrap_or_default())
        .attr("from", to.as_str());
    if let Some(a) = action {
        ack = ack.attr("type", a.tag.as_ref());
    }
    conn.send(ack.build());
    let Some(action) = action.filter(|a| a.tag == "reject") else {
        return;
    };
    let Some(call_id) = attr(action, "call-id") else {
        return;
    };
    let Some(contact) = contact_of(world, &to) else {
        return;
    };
    let mut log = world.chat.lock();
    if let Some(call) = log
        .calls
        .get_mut(&contact)
        .and_then(|calls| calls.iter_mut().rev().find(|c| c.call_id == call_id))
    {
        call.state = CallState::Rejected;
    }
}

fn devices_of(world: &World, account: &str) -> Result<Vec<u16>, SendError> {
    world
        .companions(account)
        .ok_or_else(|| SendError::NoAccount(account.to_string()))
}

/// A contact shows a chat state to every linked device of an account.
pub fn contact_chatstate(
    world: &World,
    from: &str,
    to: &str,
    state: ChatState,
) -> Result<(), SendError> {
    let stanza = chatstate_node(from, state);
    for d in devices_of(world, to)? {
        world.send_now(to, d, stanza.clone());
    }
    Ok(())
}

/// A contact shows its presence to every linked device of an account
/// (`last_seen`, unix seconds, only goes with `Unavailable`). Devices that
/// subscribe to the contact later get it too.
pub fn contact_presence(
    world: &World,
    from: &str,
    to: &str,
    presence: Presence,
    last_seen: Option<u64>,
) -> Result<(), SendError> {
    let devices = devices_of(world, to)?;
    let shown = Shown {
        presence,
        last_seen,
    };
    world.chat.lock().shown.insert(from.to_string(), shown);
    let stanza = presence_node(from, shown);
    for d in devices {
        world.send_now(to, d, stanza.clone());
    }
    Ok(())
}

/// A contact calls an account: an `<offer>` rings every linked device that
/// is online (calls are not queued). Returns the call id.
pub fn contact_call(world: &World, from: &str, to: &str, video: bool) -> Result<String, SendError> {
    let devices = devices_of(world, to)?;
    let call_id = hex::encode_upper(rand::random::<[u8; 16]>());
    let creator = user_jid(from);
    let mut offer = NodeBuilder::new("offer")
        .attr("call-id", call_id.as_str())
        .attr("call-creator", creator.as_str());
    if video {
        offer = offer.children([NodeBuilder::new("video").build()]);
    }
    let stanza = NodeBuilder::new("call")
        .attr("from", creator.as_str())
        .attr("id", new_message_id())
        .attr("t", now_secs().to_string())
        .children([offer.build()])
        .build();
    push(
        world.chat.lock().calls.entry(from.to_string()).or_default(),
        CallRecord {
            call_id: call_id.clone(),
            to: to.to_string(),
            video,
            state: CallState::Offered,
        },
    );
    for d in devices {
        world.send_now(to, d, stanza.clone());
    }
    Ok(call_id)
}

/// A contact changes its number: every linked device of an account gets
/// `<notification type="contacts"><modify old new/></notification>`
/// (queued until acknowledged, as notifications are). No LIDs go with it.
pub fn contact_change_number(
    world: &World,
    from: &str,
    to: &str,
    new_phone: &str,
) -> Result<(), SendError> {
    let devices = devices_of(world, to)?;
    let stanza = NodeBuilder::new("notification")
        .attr("from", SERVER)
        .attr("type", "contacts")
        .attr("id", new_message_id())
        .attr("t", now_secs().to_string())
        .children([NodeBuilder::new("modify")
            .attr("old", user_jid(from))
            .attr("new", user_jid(new_phone))
            .build()])
        .build();
    for d in devices {
        world.deliver(to, d, stanza.clone());
    }
    Ok(())
}

tokio::task_local! {
    static UNDECRYPTABLE: bool;
}

/// Runs a contact's send with every ciphertext it produces corrupted, so
/// that the receiving devices cannot decrypt it (`UndecryptableMessage`,
/// then a retry receipt, which the simulator ignores). Sends the future
/// starts in other tasks are not affected.
pub async fn undecryptable<F: Future>(f: F) -> F::Output {
    UNDECRYPTABLE.scope(true, f).await
}

/// The ciphertext to put on the wire: corrupted inside [`undecryptable`].
/// The MAC of the Signal message is broken (inside its prekey envelope for
/// a `pkmsg`), so the receiver fails with BadMac and keeps its session: the
/// contact's next message decrypts.
pub fn outgoing_ciphertext(kind: EncType, ct: Vec<u8>) -> Vec<u8> {
    if !UNDECRYPTABLE.try_with(|u| *u).unwrap_or(false) {
        return ct;
    }
    let flip_last = |mut b: Vec<u8>| {
        if let Some(last) = b.last_mut() {
            *last ^= 0x5a;
        }
        b
    };
    match kind {
        EncType::Msg => flip_last(ct),
        EncType::PkMsg => {
            let rebuilt = PreKeySignalMessage::try_from(ct.as_slice())
                .ok()
                .and_then(|pk| {
                    let inner = flip_last(pk.message().serialized().to_vec());
                    let inner = SignalMessage::try_from(inner.as_slice()).ok()?;
                    PreKeySignalMessage::new(
                        pk.message_version(),
                        pk.registration_id(),
                        pk.pre_key_id(),
                        pk.signed_pre_key_id(),
                        *pk.base_key(),
                        *pk.identity_key(),
                        inner,
                    )
                    .ok()
                });
            match rebuilt {
                Some(pk) => pk.serialized().to_vec(),
                None => flip_last(ct),
            }
        }
    }
}
