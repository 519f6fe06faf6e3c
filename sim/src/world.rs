//! Everything the simulated WhatsApp server knows: accounts and their linked
//! devices, fake contacts, registrations in progress, offline queues.
//!
//! All of it sits behind one synchronous mutex that is never held across an
//! `.await`; Signal state of the simulator's own endpoints (contacts and the
//! phones of accounts) has its own async lock per endpoint.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::Node;

use crate::conn::ConnHandle;
use crate::media::MediaStore;
use crate::noise::ServerIdentity;
use crate::signal::{Bundle, Peer, SignedPreKey};

pub const SERVER: &str = "s.whatsapp.net";

/// A simulator-held Signal endpoint: a fake contact, or the phone (device 0)
/// of an account.
pub struct Endpoint {
    pub phone: String,
    pub peer: tokio::sync::Mutex<Peer>,
    pub inbox: Mutex<Vec<InboxMessage>>,
    /// The messages it sent and received that later ones can refer to
    /// (replies, reactions, edits, votes), and the polls it knows.
    pub memory: Mutex<crate::kinds::Memory>,
}

/// A message an endpoint received and decrypted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InboxMessage {
    pub id: String,
    pub from: String,
    pub to: String,
    /// `text`, a media kind (`image`, `video`, `audio`, `voice`,
    /// `document`, `sticker`), `location`, `contacts`, `reaction`, `edit`,
    /// `revoke`, `poll` or `poll_vote`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text, a media message's caption (empty without one), or an
    /// edit's new text.
    pub text: String,
    pub timestamp: u64,
    /// The id of the message this one quotes (any kind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The JIDs mentioned, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    /// The target of a reaction, edit, revoke or poll vote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// A reaction's emoji; empty when a reaction is removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// A location's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A location's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The cards of a contacts message, read from their vCards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<crate::kinds::Card>>,
    /// A poll's question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// A poll's options, or the options a poll vote chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// How many options a poll's voters may choose (0: any number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selectable: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Bytes of the decrypted file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Lowercase hex SHA-256 of the decrypted file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why the file could not be downloaded or decrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_error: Option<String>,
    /// The group JID of a message sent to a group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The device addressed the message to the contact's LID (shown only
    /// when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub to_lid: bool,
}

/// A linked companion device of an account.
pub struct Device {
    pub id: u16,
    pub noise_pub: [u8; 32],
    pub identity: [u8; 32],
    pub reg_id: u32,
    pub signed_prekey: SignedPreKey,
    /// One-time prekeys uploaded by the client; each is handed out once.
    pub prekeys: VecDeque<(u32, [u8; 32])>,
    pub key_index: u32,
    pub push_name: String,
    pub conn: Option<ConnHandle>,
    /// How many times the device has logged in (a client that reconnects
    /// in a loop shows here).
    pub logins: u64,
    /// The client version of its last login.
    pub version: Option<crate::version::AppVersion>,
    /// Stanzas for this device not yet acknowledged by it, oldest first.
    /// Sent on every connect until acknowledged, as WhatsApp's offline queue.
    pub queue: VecDeque<Node>,
    /// Whether the queue has been flushed on the current connection (after
    /// the client's `passive` IQ); until then new stanzas only queue.
    pub flushed: bool,
}

/// An account: a phone number with its phone (device 0) and companions.
pub struct Account {
    pub phone: String,
    pub lid: String,
    pub push_name: String,
    pub endpoint: Arc<Endpoint>,
    /// The key the phone signs device identities with (ADV account key).
    pub account_key: KeyPair,
    pub devices: BTreeMap<u16, Device>,
    pub next_device: u16,
}

/// A connection that has not linked yet (registration payload).
pub struct Registration {
    pub conn: ConnHandle,
    pub noise_pub: [u8; 32],
    pub identity: [u8; 32],
    pub reg_id: u32,
    pub signed_prekey: SignedPreKey,
    pub refs: Vec<String>,
    /// A pair-success sent, waiting for the client's `pair-device-sign`.
    pub pending_sign: Option<PendingSign>,
    /// Pair-code linking in progress.
    pub code: Option<CodeRequest>,
}

pub struct PendingSign {
    pub iq_id: String,
    pub link: LinkTarget,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// Where a device is being linked to.
#[derive(Clone)]
pub struct LinkTarget {
    pub phone: String,
    pub device: u16,
    pub key_index: u32,
    pub push_name: String,
}

/// A pair code requested by a client (`companion_hello`).
pub struct CodeRequest {
    pub phone: String,
    pub pairing_ref: Vec<u8>,
    pub wrapped_companion_eph: Vec<u8>,
    /// Set once the phone has entered the code.
    pub entered: Option<EnteredCode>,
}

pub struct EnteredCode {
    pub primary_eph: KeyPair,
    pub companion_eph_pub: [u8; 32],
    pub push_name: String,
    pub done: Option<oneshot::Sender<Result<LinkedDevice, String>>>,
}

/// The JIDs of a freshly linked device.
#[derive(Clone, Debug, Serialize)]
pub struct LinkedDevice {
    pub jid: String,
    pub lid: String,
}

#[derive(Default)]
pub struct State {
    pub endpoints: HashMap<String, Arc<Endpoint>>,
    pub accounts: HashMap<String, Account>,
    /// LID user -> phone.
    pub lids: HashMap<String, String>,
    /// Phone -> LID user (every number that was ever used has one).
    pub lid_by_phone: HashMap<String, String>,
    /// QR ref -> registration connection id.
    pub refs: HashMap<String, u64>,
    pub registrations: HashMap<u64, Registration>,
    /// Connection id -> end of a stall.
    pub stalls: HashMap<u64, Instant>,
    next_lid: u64,
}

pub struct World {
    pub server: ServerIdentity,
    state: Mutex<State>,
    conn_seq: AtomicU64,
    pub stats: Stats,
    /// The media CDN (blobs have their own lock).
    pub media: MediaStore,
    /// Receipts, chat states, presence and calls between devices and
    /// contacts (own lock).
    pub chat: crate::chat::ChatStore,
    /// How lookups answer for each number (own lock).
    pub profiles: crate::lookups::Profiles,
    /// Groups and the sender keys of their simulated members (own lock).
    pub groups: crate::groups::Groups,
    /// The advertised client version and the oldest one let in (own lock).
    pub versions: crate::version::Versions,
}

/// Counters for the benchmark and health checks.
#[derive(Default)]
pub struct Stats {
    pub messages_routed: AtomicU64,
    pub messages_decrypted: AtomicU64,
    pub messages_encrypted: AtomicU64,
    /// Time spent in Signal encryption and decryption by the simulator's
    /// endpoints: the simulator's own CPU cost per message, whatever the
    /// clients sharing the machine cost.
    pub encrypt_nanos: AtomicU64,
    pub decrypt_nanos: AtomicU64,
}

impl World {
    pub fn new() -> Self {
        Self {
            server: ServerIdentity::generate(),
            state: Mutex::new(State {
                next_lid: 100_000_000_000_000,
                ..State::default()
            }),
            conn_seq: AtomicU64::new(1),
            stats: Stats::default(),
            media: MediaStore::new(),
            chat: Default::default(),
            profiles: Default::default(),
            groups: Default::default(),
            versions: Default::default(),
        }
    }

    /// The state lock. A poisoned lock means a handler panicked; the data is
    /// still consistent enough for a simulator to go on serving.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The endpoint of a phone number, made on first use.
    pub fn endpoint(&self, phone: &str) -> Result<Arc<Endpoint>, crate::error::SimError> {
        if let Some(e) = self.lock().endpoints.get(phone) {
            return Ok(e.clone());
        }
        let peer = Peer::new()?;
        crate::lids::assign(self, phone);
        let mut st = self.lock();
        let e = st
            .endpoints
            .entry(phone.to_string())
            .or_insert_with(|| {
                Arc::new(Endpoint {
                    phone: phone.to_string(),
                    peer: tokio::sync::Mutex::new(peer),
                    inbox: Mutex::new(Vec::new()),
                    memory: Mutex::new(Default::default()),
                })
            })
            .clone();
        Ok(e)
    }

    /// The LID user of a phone number, if it has one.
    pub fn lid_of(&self, phone: &str) -> Option<String> {
        self.lock().lid_by_phone.get(phone).cloned()
    }

    /// The companion device ids of an account (`None`: not an account).
    pub fn companions(&self, phone: &str) -> Option<Vec<u16>> {
        self.lock()
            .accounts
            .get(phone)
            .map(|a| a.devices.keys().copied().collect())
    }

    /// Holds a stalled connection until its stall ends.
    pub async fn wait_stall(&self, conn_id: u64) {
        loop {
            let until = self.lock().stalls.get(&conn_id).copied();
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                Some(_) => {
                    self.lock().stalls.remove(&conn_id);
                    return;
                }
                None => return,
            }
        }
    }

    /// Queues a stanza for a device and sends it if the device is online.
    pub fn deliver(&self, phone: &str, device: u16, node: Node) -> bool {
        let mut st = self.lock();
        let Some(dev) = st
            .accounts
            .get_mut(phone)
            .and_then(|a| a.devices.get_mut(&device))
        else {
            return false;
        };
        if dev.flushed
            && let Some(conn) = &dev.conn
        {
            conn.send(node.clone());
        }
        dev.queue.push_back(node);
        true
    }

    /// Sends a stanza that needs no acknowledgement to a device if it is online.
    pub fn send_now(&self, phone: &str, device: u16, node: Node) {
        let st = self.lock();
        if let Some(conn) = st
            .accounts
            .get(phone)
            .and_then(|a| a.devices.get(&device))
            .and_then(|d| d.conn.as_ref())
        {
            conn.send(node);
        }
    }

    /// Drops acknowledged stanzas from a device's queue.
    pub fn acknowledge(&self, phone: &str, device: u16, tag: &str, ids: &[String]) {
        let mut st = self.lock();
        if let Some(dev) = st
            .accounts
            .get_mut(phone)
            .and_then(|a| a.devices.get_mut(&device))
        {
            dev.queue.retain(|n| {
                let same_tag = n.tag == tag;
                let id = n.attrs.get("id").map(|v| v.as_str().into_owned());
                !(same_tag && id.is_some_and(|id| ids.contains(&id)))
            });
        }
    }

    /// Sends every queued stanza to a device that has just become ready;
    /// returns how many there were.
    pub fn flush_queue(&self, phone: &str, device: u16, conn_id: u64) -> usize {
        let mut st = self.lock();
        let Some(dev) = st
            .accounts
            .get_mut(phone)
            .and_then(|a| a.devices.get_mut(&device))
        else {
            return 0;
        };
        let Some(conn) = dev.conn.as_ref().filter(|c| c.id == conn_id) else {
            return 0;
        };
        for node in &dev.queue {
            conn.send(node.clone());
        }
        dev.flushed = true;
        dev.queue.len()
    }

    /// Forgets a closed connection.
    pub fn on_disconnect(&self, who: &crate::stanza::Peer, conn_id: u64) {
        let mut st = self.lock();
        st.stalls.remove(&conn_id);
        match who {
            crate::stanza::Peer::Registering => {
                if let Some(reg) = st.registrations.remove(&conn_id) {
                    for r in reg.refs {
                        st.refs.remove(&r);
                    }
                }
            }
            crate::stanza::Peer::Device { phone, device, .. } => {
                if let Some(dev) = st
                    .accounts
                    .get_mut(phone)
                    .and_then(|a| a.devices.get_mut(device))
                    && dev.conn.as_ref().is_some_and(|c| c.id == conn_id)
                {
                    dev.conn = None;
                    dev.flushed = false;
                }
            }
            crate::stanza::Peer::Rejected => {}
        }
    }

    /// A new LID user (see [`crate::lids::assign`]).
    pub fn allocate_lid(st: &mut State) -> String {
        st.next_lid += 1;
        st.next_lid.to_string()
    }

    /// Unlinks a companion device. With `notify`, a connected device is told
    /// it was removed (`LoggedOut` in the client); its identity can no
    /// longer log in either way.
    pub fn unlink(&self, phone: &str, device: u16, notify: bool) -> bool {
        let mut st = self.lock();
        let Some(dev) = st
            .accounts
            .get_mut(phone)
            .and_then(|a| a.devices.remove(&device))
        else {
            return false;
        };
        if let Some(conn) = dev.conn {
            if notify {
                conn.send_final(
                    wacore_binary::builder::NodeBuilder::new("stream:error")
                        .children([wacore_binary::builder::NodeBuilder::new("conflict")
                            .attr("type", "device_removed")
                            .build()])
                        .build(),
                );
            } else {
                conn.drop_connection();
            }
        }
        true
    }

    /// The prekey bundle of a companion device, taking one one-time prekey.
    pub fn take_device_bundle(&self, phone: &str, device: u16) -> Option<Bundle> {
        let mut st = self.lock();
        let dev = st.accounts.get_mut(phone)?.devices.get_mut(&device)?;
        let prekey = dev.prekeys.pop_front();
        Some(Bundle {
            reg_id: dev.reg_id,
            identity: dev.identity,
            signed_prekey: dev.signed_prekey.clone(),
            prekey,
        })
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A message id in WhatsApp Web's style.
pub fn new_message_id() -> String {
    let bytes: [u8; 10] = rand::random();
    format!("3EB0{}", hex::encode_upper(bytes))
}

/// Phone number of a user JID part: digits only.
pub fn is_phone(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}
