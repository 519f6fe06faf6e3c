//! Lookups: `usync` (devices, LIDs, whether a number is on WhatsApp, status
//! texts) and profile pictures (`w:profile:picture`), answered from each
//! number's [`Profile`].
//!
//! Every valid phone number is on WhatsApp (accounts and simulated
//! contacts alike) unless its profile says otherwise; no number has a
//! status text or a picture until its profile gets one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use buffa::Message as _;
use serde::Serialize;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::NodeContent;
use waproto::whatsapp as wa;

use crate::iq::{error, resolve, result_with};
use crate::routing::DeviceAddr;
use crate::world::{SERVER, World, is_phone, now_secs};

/// How lookups answer for one number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub on_whatsapp: bool,
    /// The status text ("about").
    pub status: Option<String>,
    /// Whether it has a profile picture.
    pub picture: bool,
    /// Whether it sends its messages from its LID (see [`crate::lids`]).
    pub lid_mode: bool,
    /// A fault: the server refuses messages to this number, answering the
    /// sender's stanza with a nack carrying this error code (e.g. "463").
    pub refuse_with: Option<String>,
    /// The picture's numeric id (changes each time one is set).
    #[serde(skip)]
    picture_id: u64,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            on_whatsapp: true,
            status: None,
            picture: false,
            lid_mode: false,
            refuse_with: None,
            picture_id: 0,
        }
    }
}

/// A change to a [`Profile`]: `None` fields stay as they are;
/// `status: Some(None)` clears the status.
#[derive(Clone, Debug, Default)]
pub struct ProfileUpdate {
    pub on_whatsapp: Option<bool>,
    pub status: Option<Option<String>>,
    pub picture: Option<bool>,
    pub lid_mode: Option<bool>,
    pub refuse_with: Option<Option<String>>,
}

/// Every number's profile.
pub struct Profiles {
    map: Mutex<HashMap<String, Profile>>,
    next_picture_id: AtomicU64,
}

impl Default for Profiles {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            next_picture_id: AtomicU64::new(now_secs()),
        }
    }
}

impl Profiles {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Profile>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The profile of a phone number (the default one until set).
    pub fn get(&self, phone: &str) -> Profile {
        self.lock().get(phone).cloned().unwrap_or_default()
    }

    /// Changes a number's profile; returns the result.
    pub fn update(&self, phone: &str, u: ProfileUpdate) -> Profile {
        let mut map = self.lock();
        let p = map.entry(phone.to_string()).or_default();
        if let Some(on) = u.on_whatsapp {
            p.on_whatsapp = on;
        }
        if let Some(status) = u.status {
            p.status = status;
        }
        if let Some(code) = u.refuse_with {
            p.refuse_with = code;
        }
        if let Some(picture) = u.picture {
            if picture && !p.picture {
                p.picture_id = self.next_picture_id.fetch_add(1, Ordering::Relaxed);
            }
            p.picture = picture;
        }
        if let Some(lid_mode) = u.lid_mode {
            p.lid_mode = lid_mode;
        }
        p.clone()
    }
}

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

fn text(node: &Node) -> String {
    match &node.content {
        Some(NodeContent::String(s)) => s.to_string(),
        Some(NodeContent::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// `w:profile:picture` get: the picture's URL when the target has one, else
/// 404 (which the client reads as "no picture").
pub fn profile_picture(world: &World, id: &str, kind: &str, node: &Node) -> Node {
    if kind != "get" {
        return error(id, 501, "not-implemented");
    }
    let phone = attr(node, "target")
        .and_then(|t| resolve(world, &t))
        .map(|a| a.phone);
    let profile = phone.as_deref().map(|p| (p, world.profiles.get(p)));
    let Some((phone, profile)) = profile.filter(|(_, p)| p.picture && p.on_whatsapp) else {
        return error(id, 404, "item-not-found");
    };
    let asked = node
        .get_optional_child("picture")
        .and_then(|p| attr(p, "type"))
        .unwrap_or_else(|| "image".into());
    let direct_path = format!("/pp/{phone}.jpg");
    result_with(
        id,
        [NodeBuilder::new("picture")
            .attr("id", profile.picture_id.to_string())
            .attr("type", asked)
            .attr("url", world.media.url(&direct_path))
            .attr("direct_path", direct_path)
            .build()],
    )
}

/// Who a `<user>` of a usync query is: its `jid`, or the phone number of
/// its `<contact>` (`+15550001111`) when it has no `jid`.
fn user_of(world: &World, user: &Node) -> (Option<String>, Option<DeviceAddr>) {
    if let Some(jid) = attr(user, "jid") {
        let addr = resolve(world, &jid);
        return (Some(jid), addr);
    }
    let digits: String = user
        .get_optional_child("contact")
        .map(text)
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if !is_phone(&digits) {
        return (None, None);
    }
    let jid = format!("{digits}@{SERVER}");
    (
        Some(jid),
        Some(DeviceAddr {
            phone: digits,
            device: 0,
        }),
    )
}

/// `usync`: device lists, LIDs, whether numbers are on WhatsApp (`contact`)
/// and status texts. Pictures are left out: the client needs a numeric id
/// in a `<picture>`, and asks `w:profile:picture` for the rest.
pub fn usync(world: &World, id: &str, node: &Node) -> Node {
    let Some(usync) = node.get_optional_child("usync") else {
        return error(id, 400, "bad-request");
    };
    let query = usync.get_optional_child("query");
    let wants = |tag: &str| query.is_some_and(|q| q.get_optional_child(tag).is_some());
    let (wants_devices, wants_lid) = (wants("devices"), wants("lid"));
    let (wants_contact, wants_status) = (wants("contact"), wants("status"));
    let mut users = Vec::new();
    if let Some(list) = usync.get_optional_child("list") {
        for user in list.get_children_by_tag("user") {
            let (jid, addr) = user_of(world, user);
            let profile = addr.as_ref().map(|a| world.profiles.get(&a.phone));
            let mut children = Vec::new();
            if wants_contact {
                let on = profile.as_ref().is_some_and(|p| p.on_whatsapp);
                children.push(
                    NodeBuilder::new("contact")
                        .attr("type", if on { "in" } else { "out" })
                        .build(),
                );
            }
            if wants_devices {
                children.push(match &addr {
                    Some(a) => device_list(world, &a.phone),
                    None => NodeBuilder::new("devices")
                        .children([NodeBuilder::new("error")
                            .attr("code", "404")
                            .attr("text", "item-not-found")
                            .build()])
                        .build(),
                });
            }
            if wants_lid {
                children.push(crate::lids::usync_lid(world, addr.as_ref()));
            }
            if wants_status {
                let status = profile.and_then(|p| p.status);
                let mut b = NodeBuilder::new("status");
                if let Some(s) = status {
                    b = b.string_content(s);
                }
                children.push(b.build());
            }
            let mut b = NodeBuilder::new("user");
            if let Some(jid) = jid {
                if let Some(pn) = crate::lids::usync_pn_jid(&jid, addr.as_ref()) {
                    b = b.attr("pn_jid", pn);
                }
                b = b.attr("jid", jid);
            }
            users.push(b.children(children).build());
        }
    }
    let mut out = NodeBuilder::new("usync");
    for key in ["sid", "mode", "context", "index", "last"] {
        if let Some(v) = attr(usync, key) {
            out = out.attr(key, v);
        }
    }
    result_with(
        id,
        [
            out.children([NodeBuilder::new("list").children(users).build()])
                .build(),
        ],
    )
}

/// `<devices>` for one user: the phone (device 0) and every linked companion
/// with its key index, plus the signed key-index list the client needs to
/// accept companions at all.
fn device_list(world: &World, phone: &str) -> Node {
    let st = world.lock();
    let Some(account) = st.accounts.get(phone) else {
        return NodeBuilder::new("devices")
            .children([NodeBuilder::new("device-list")
                .children([NodeBuilder::new("device").attr("id", "0").build()])
                .build()])
            .build();
    };
    let mut devices = vec![NodeBuilder::new("device").attr("id", "0").build()];
    let mut indexes = Vec::new();
    for d in account.devices.values() {
        indexes.push(d.key_index);
        devices.push(
            NodeBuilder::new("device")
                .attr("id", d.id.to_string())
                .attr("key-index", d.key_index.to_string())
                .build(),
        );
    }
    let mut children = vec![NodeBuilder::new("device-list").children(devices).build()];
    if !indexes.is_empty() {
        let pubkey = account.account_key.public_key.public_key_bytes();
        let raw_id = u32::from_be_bytes([pubkey[0], pubkey[1], pubkey[2], pubkey[3]]) >> 1;
        let ts = now_secs();
        let details = wa::ADVKeyIndexList {
            raw_id: Some(raw_id),
            timestamp: Some(ts),
            current_index: indexes.iter().copied().max(),
            valid_indexes: indexes,
            ..Default::default()
        }
        .encode_to_vec();
        let mut to_sign = vec![6u8, 2];
        to_sign.extend_from_slice(&details);
        let signature = account
            .account_key
            .private_key
            .calculate_signature(&to_sign, &mut rand::rng())
            .map(|s| s.to_vec())
            .unwrap_or_default();
        let signed = wa::ADVSignedKeyIndexList {
            details: Some(details),
            account_signature: Some(signature),
            account_signature_key: Some(pubkey.to_vec()),
        }
        .encode_to_vec();
        children.push(
            NodeBuilder::new("key-index-list")
                .attr("ts", ts.to_string())
                .bytes(signed)
                .build(),
        );
    }
    NodeBuilder::new("devices").children(children).build()
}
