//! What the server does with each stanza a device sends, and what it says
//! when a device connects.

use std::sync::Arc;

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::whatsapp as wa;

use crate::chat;
use crate::conn::ConnHandle;
use crate::iq;
use crate::pairing;
use crate::routing::{self, Copy, DeviceAddr, Outgoing};
use crate::signal::{EncType, SignedPreKey, key32};
use crate::version::AppVersion;
use crate::world::{Registration, SERVER, World, new_message_id, now_secs};

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub enum Peer {
    /// A new device showing QR codes (or asking for a pair code).
    Registering,
    /// A linked device that logged in.
    Device { phone: String, device: u16 },
    /// Login refused; the connection is closing.
    Rejected,
}

/// Number of QR refs WhatsApp hands a registering connection.
const QR_REFS: usize = 6;

/// Greets a connection after the handshake: refs for a new device,
/// `<success>` (or a failure) for a linked one.
pub fn on_connect(
    world: &Arc<World>,
    conn: ConnHandle,
    client_static: [u8; 32],
    payload: &wa::ClientPayload,
) -> Peer {
    // An outdated client is turned away before anything else, logging in
    // or registering alike, as WhatsApp does: `<failure reason="405"/>`.
    let version = AppVersion::from_payload(payload);
    if !world.versions.accepts(version) {
        conn.send_final(failure("405"));
        return Peer::Rejected;
    }
    match (payload.username, payload.device) {
        (Some(user), device) => login(
            world,
            conn,
            client_static,
            user,
            device.unwrap_or(0),
            version,
        ),
        (None, _) => register(world, conn, client_static, payload),
    }
}

fn register(
    world: &Arc<World>,
    conn: ConnHandle,
    client_static: [u8; 32],
    payload: &wa::ClientPayload,
) -> Peer {
    let Some(reg) = payload.device_pairing_data.as_option() else {
        conn.send_final(failure("400"));
        return Peer::Rejected;
    };
    let be_u32 = |b: &Option<Vec<u8>>| -> u32 {
        let b = b.as_deref().unwrap_or_default();
        b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x))
    };
    let refs: Vec<String> = (0..QR_REFS)
        .map(|_| format!("2@{}", new_message_id()))
        .collect();
    let node = NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("id", new_message_id())
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-device")
            .children(
                refs.iter()
                    // Bytes, not a string: a string with '@' would be packed
                    // as a JID and the client could not read it.
                    .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build()),
            )
            .build()])
        .build();
    let mut st = world.lock();
    for r in &refs {
        st.refs.insert(r.clone(), conn.id);
    }
    st.registrations.insert(
        conn.id,
        Registration {
            conn: conn.clone(),
            noise_pub: client_static,
            identity: key32(reg.e_ident.as_deref().unwrap_or_default()),
            reg_id: be_u32(&reg.e_regid),
            signed_prekey: SignedPreKey {
                id: be_u32(&reg.e_skey_id),
                public: key32(reg.e_skey_val.as_deref().unwrap_or_default()),
                signature: reg.e_skey_sig.clone().unwrap_or_default(),
            },
            refs,
            pending_sign: None,
            code: None,
        },
    );
    conn.send(node);
    Peer::Registering
}

fn login(
    world: &Arc<World>,
    conn: ConnHandle,
    client_static: [u8; 32],
    user: u64,
    device: u32,
    version: Option<AppVersion>,
) -> Peer {
    let phone = user.to_string();
    let Ok(device) = u16::try_from(device) else {
        conn.send_final(failure("401"));
        return Peer::Rejected;
    };
    let mut st = world.lock();
    let lid = st.lid_by_phone.get(&phone).cloned().unwrap_or_default();
    let Some(dev) = st
        .accounts
        .get_mut(&phone)
        .and_then(|a| a.devices.get_mut(&device))
        .filter(|d| d.noise_pub == client_static)
    else {
        // Unknown or unlinked device: WhatsApp answers 401, and the client
        // reports LoggedOut.
        conn.send_final(failure("401"));
        return Peer::Rejected;
    };
    dev.logins += 1;
    dev.version = version;
    // A second login of the same device takes over: the first connection
    // gets WhatsApp's `conflict`/`replaced` stream error.
    if let Some(old) = dev.conn.replace(conn.clone()) {
        old.send_final(
            NodeBuilder::new("stream:error")
                .children([NodeBuilder::new("conflict")
                    .attr("type", "replaced")
                    .build()])
                .build(),
        );
    }
    dev.flushed = false;
    conn.send(
        NodeBuilder::new("success")
            .attr("t", now_secs().to_string())
            .attr("lid", format!("{lid}:{device}@lid"))
            .attr("props", "1")
            .attr("location", "sim")
            .build(),
    );
    Peer::Device { phone, device }
}

fn failure(reason: &str) -> Node {
    NodeBuilder::new("failure").attr("reason", reason).build()
}

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

/// Handles one stanza from a device.
pub async fn handle(world: &Arc<World>, peer: &Peer, conn: &ConnHandle, node: Node) {
    match node.tag.as_ref() {
        "iq" => iq::handle(world, peer, conn, &node).await,
        "message" => on_message(world, peer, conn, node).await,
        "receipt" => on_receipt(world, peer, conn, &node).await,
        "ack" => on_ack(world, peer, &node),
        "chatstate" | "presence" | "call" => {
            if let Peer::Device { phone, device } = peer {
                chat::on_device_stanza(world, phone, *device, conn, &node);
            }
        }
        // `<ib>` notices need no answer.
        _ => {}
    }
}

/// The ids a receipt or ack covers: its own and those in `<list><item>`.
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

fn on_ack(world: &World, peer: &Peer, node: &Node) {
    if let Peer::Device { phone, device } = peer {
        let class = attr(node, "class").unwrap_or_default();
        world.acknowledge(phone, *device, &class, &covered_ids(node));
    }
}

/// A device's receipt: it acknowledges what we delivered, and is passed on
/// to the sender when the sender is a real device.
async fn on_receipt(world: &Arc<World>, peer: &Peer, conn: &ConnHandle, node: &Node) {
    let Peer::Device { phone, device } = peer else {
        return;
    };
    let ids = covered_ids(node);
    let to = attr(node, "to").unwrap_or_default();
    let kind = attr(node, "type");
    let id = attr(node, "id").unwrap_or_default();
    let mut ack = NodeBuilder::new("ack")
        .attr("class", "receipt")
        .attr("id", id.as_str())
        .attr("from", to.as_str());
    if let Some(k) = &kind {
        ack = ack.attr("type", k.as_str());
    }
    conn.send(ack.build());
    // A delivery receipt (no type, or "inactive") ends our delivery duty;
    // any receipt for a message we delivered does too.
    world.acknowledge(phone, *device, "message", &ids);
    if crate::groups::is_group_jid(&to) {
        // Retries, delivery and read receipts of group messages.
        crate::group_messages::on_receipt(world, phone, *device, node).await;
        return;
    }
    if kind.as_deref() == Some("server-error") {
        // A media download failed: ask the sender's phone for a re-upload.
        crate::media_retry::on_server_error(world, phone, *device, node);
        return;
    }
    if kind.as_deref() == Some("retry") {
        tracing::warn!("{phone}:{device} asked for a retry of {id} (not supported)");
        return;
    }
    // Read and played receipts to a simulated contact are recorded.
    chat::on_receipt(world, phone, node, &ids);
    // Pass the receipt on to the sender's devices (read receipts and
    // delivery receipts between two real clients).
    let Some(sender) = iq::resolve(world, &to) else {
        return;
    };
    if sender.phone == *phone {
        return;
    }
    let Some(devices) = world.companions(&sender.phone) else {
        return;
    };
    let from = DeviceAddr {
        phone: phone.clone(),
        device: *device,
    }
    .jid();
    for d in devices {
        let mut b = NodeBuilder::new("receipt")
            .attr("from", from.as_str())
            .attr("id", id.as_str())
            .attr("t", now_secs().to_string());
        if let Some(k) = kind.as_deref().filter(|k| *k != "inactive") {
            b = b.attr("type", k);
        }
        // Further ids travel in `<list>`, as the client sent them.
        let rest: Vec<Node> = ids
            .iter()
            .filter(|i| **i != id)
            .map(|i| NodeBuilder::new("item").attr("id", i.as_str()).build())
            .collect();
        if !rest.is_empty() {
            b = b.children([NodeBuilder::new("list").children(rest).build()]);
        }
        let node = b.build();
        world.deliver(&sender.phone, d, node);
    }
}

async fn on_message(world: &Arc<World>, peer: &Peer, conn: &ConnHandle, node: Node) {
    let Peer::Device { phone, device } = peer else {
        return;
    };
    let id = attr(&node, "id").unwrap_or_default();
    let to = attr(&node, "to").unwrap_or_default();
    // A number the admin made refuse messages: the server nacks the
    // stanza and delivers nothing.
    let refused = iq::resolve(world, &to).and_then(|a| world.profiles.get(&a.phone).refuse_with);
    let mut ack = NodeBuilder::new("ack")
        .attr("class", "message")
        .attr("id", id.as_str())
        .attr("from", to.as_str())
        .attr("t", now_secs().to_string());
    if let Some(code) = &refused {
        ack = ack.attr("error", code.as_str());
    }
    conn.send(ack.build());
    if refused.is_some() {
        return;
    }
    if crate::groups::is_group_jid(&to) {
        crate::group_messages::from_device(world, phone, *device, &node).await;
        return;
    }
    let mut copies = Vec::new();
    let mut push_copy = |jid: Option<String>, enc: &Node| {
        // A PN or LID device JID.
        let Some(to) = jid.as_deref().and_then(|j| iq::resolve(world, j)) else {
            return;
        };
        let kind = match attr(enc, "type").as_deref() {
            Some("pkmsg") => EncType::PkMsg,
            Some("msg") => EncType::Msg,
            _ => return,
        };
        let Some(wacore_binary::node::NodeContent::Bytes(ct)) = &enc.content else {
            return;
        };
        copies.push(Copy {
            to,
            kind,
            ciphertext: ct.clone(),
            enc: enc.clone(),
        });
    };
    if let Some(parts) = node.get_optional_child("participants") {
        for to_node in parts.get_children_by_tag("to") {
            if let Some(enc) = to_node.get_optional_child("enc") {
                push_copy(attr(to_node, "jid"), enc);
            }
        }
    } else if let Some(enc) = node.get_optional_child("enc") {
        push_copy(Some(to.clone()), enc);
    }
    let (chat, to_lid) = match crate::lids::addressed(world, &to) {
        Some((a, lid)) => (DeviceAddr { device: 0, ..a }.jid(), lid),
        None => (to, false),
    };
    let push_name = {
        let st = world.lock();
        st.accounts
            .get(phone)
            .map(|a| a.push_name.clone())
            .unwrap_or_default()
    };
    let out = Outgoing {
        from: DeviceAddr {
            phone: phone.clone(),
            device: *device,
        },
        chat,
        to_lid,
        id,
        kind: attr(&node, "type").unwrap_or_else(|| "text".into()),
        push_name,
        edit: attr(&node, "edit").filter(|e| !e.is_empty()),
        copies,
        device_identity: node.get_optional_child("device-identity").cloned(),
    };
    routing::route_from_device(world, out).await;
}

/// Pair-code stanzas and the pair-device-sign answer, from a registering
/// connection. Returns the IQ reply.
pub fn on_registration_iq(world: &Arc<World>, conn: &ConnHandle, node: &Node) -> Option<Node> {
    let id = attr(node, "id").unwrap_or_default();
    let kind = attr(node, "type").unwrap_or_default();
    if kind == "result" || kind == "error" {
        if node.get_optional_child("pair-device-sign").is_some() || kind == "error" {
            let result = if kind == "result" {
                Ok(())
            } else {
                let text = node
                    .get_optional_child("error")
                    .and_then(|e| attr(e, "text"))
                    .unwrap_or_else(|| "error".into());
                Err(text)
            };
            pairing::on_pair_sign(world, conn.id, &id, result);
        }
        return None;
    }
    let reg = node.get_optional_child("link_code_companion_reg")?;
    let stage = attr(reg, "stage").unwrap_or_default();
    let bytes_of = |tag: &str| -> Vec<u8> {
        match reg.get_optional_child(tag).and_then(|n| n.content.as_ref()) {
            Some(wacore_binary::node::NodeContent::Bytes(b)) => b.clone(),
            Some(wacore_binary::node::NodeContent::String(s)) => s.as_bytes().to_vec(),
            _ => Vec::new(),
        }
    };
    match stage.as_str() {
        "companion_hello" => {
            let phone: String = attr(reg, "jid")
                .unwrap_or_default()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_string();
            let wrapped = bytes_of("link_code_pairing_wrapped_companion_ephemeral_pub");
            if wrapped.len() != 80 || !crate::world::is_phone(&phone) {
                return Some(iq::error(&id, 400, "bad-request"));
            }
            let pairing_ref = pairing::on_companion_hello(world, conn.id, &phone, wrapped);
            Some(iq::result_with(
                &id,
                [NodeBuilder::new("link_code_companion_reg")
                    .attr("stage", "companion_hello")
                    .children([NodeBuilder::new("link_code_pairing_ref")
                        .bytes(pairing_ref)
                        .build()])
                    .build()],
            ))
        }
        "companion_finish" => {
            let bundle = bytes_of("link_code_pairing_wrapped_key_bundle");
            let identity = bytes_of("companion_identity_public");
            match pairing::on_companion_finish(world, conn.id, &bundle, &identity) {
                Ok(()) => Some(iq::result(&id)),
                Err(e) => {
                    tracing::warn!("companion_finish: {e}");
                    Some(iq::error(&id, 400, "bad-request"))
                }
            }
        }
        _ => Some(iq::error(&id, 501, "not-implemented")),
    }
}
