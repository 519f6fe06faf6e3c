//! Answers to the IQs a device sends. Every IQ gets an answer: the ones the
//! simulator does not implement get `type="error"` (501), because an
//! unanswered IQ blocks its caller in the client for 75 s.

use std::sync::Arc;

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::NodeContent;

use crate::conn::ConnHandle;
use crate::routing::DeviceAddr;
use crate::signal::{Bundle, SignedPreKey, key32};
use crate::stanza::{self, Peer};
use crate::world::{SERVER, State, World, now_secs};

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

pub(crate) fn bytes(node: Option<&Node>) -> &[u8] {
    match node.and_then(|n| n.content.as_ref()) {
        Some(NodeContent::Bytes(b)) => b,
        _ => &[],
    }
}

pub(crate) fn be_uint(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x))
}

pub fn result(id: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "result")
        .attr("id", id)
        .build()
}

pub fn result_with(id: &str, children: impl IntoIterator<Item = Node>) -> Node {
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "result")
        .attr("id", id)
        .children(children)
        .build()
}

pub fn error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "error")
        .attr("id", id)
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text)
            .build()])
        .build()
}

pub async fn handle(world: &Arc<World>, peer: &Peer, conn: &ConnHandle, node: &Node) {
    let id = attr(node, "id").unwrap_or_default();
    let xmlns = attr(node, "xmlns").unwrap_or_default();
    let kind = attr(node, "type").unwrap_or_default();
    if xmlns == "w:p" {
        conn.send(
            NodeBuilder::new("iq")
                .attr("from", SERVER)
                .attr("type", "result")
                .attr("id", id.as_str())
                .attr("t", now_secs().to_string())
                .build(),
        );
        return;
    }
    let (phone, device) = match peer {
        Peer::Registering => {
            if let Some(reply) = stanza::on_registration_iq(world, conn, node) {
                conn.send(reply);
            } else if kind == "get" || kind == "set" {
                conn.send(error(&id, 501, "not-implemented"));
            }
            return;
        }
        Peer::Device { phone, device } => (phone.as_str(), *device),
        Peer::Rejected => return,
    };
    // Answers to our own IQs (none expected from a logged-in device).
    if kind == "result" || kind == "error" {
        return;
    }
    let reply = match xmlns.as_str() {
        "passive" => {
            conn.send(result(&id));
            // The offline queue, then its end marker: without the marker
            // the client waits 60 s before it goes on.
            let n = world.flush_queue(phone, device, conn.id);
            conn.send(
                NodeBuilder::new("ib")
                    .children([NodeBuilder::new("offline")
                        .attr("count", n.to_string())
                        .build()])
                    .build(),
            );
            return;
        }
        "abt" => result_with(
            &id,
            [NodeBuilder::new("props")
                .attr("protocol", "1")
                .attr("hash", "wa-sim")
                .build()],
        ),
        "blocklist" => result_with(&id, [NodeBuilder::new("list").build()]),
        "privacy" if node.get_optional_child("privacy").is_some() => result_with(
            &id,
            [NodeBuilder::new("privacy")
                .children(
                    [
                        ("readreceipts", "all"),
                        ("last", "all"),
                        ("online", "all"),
                        ("profile", "all"),
                        ("status", "all"),
                        ("groupadd", "all"),
                    ]
                    .map(|(n, v)| {
                        NodeBuilder::new("category")
                            .attr("name", n)
                            .attr("value", v)
                            .build()
                    }),
                )
                .build()],
        ),
        // Privacy tokens (fire and forget after a send).
        "privacy" => result(&id),
        "encrypt" => encrypt(world, phone, device, &id, &kind, node).await,
        "usync" => crate::lookups::usync(world, &id, node),
        "w:profile:picture" => crate::lookups::profile_picture(world, &id, &kind, node),
        "w:sync:app:state" => app_state(&id, node),
        "w:g2" => crate::group_iq::handle(world, phone, &id, &kind, node),
        "urn:xmpp:whatsapp:dirty" => result(&id),
        "w:m" if node.get_optional_child("media_conn").is_some() => {
            crate::media::media_conn(world, &id)
        }
        "md" if node.get_optional_child("remove-companion-device").is_some() => {
            // The device logs itself out: answer first, then forget it and
            // close its connection.
            conn.send(result(&id));
            world.unlink(phone, device, false);
            return;
        }
        _ => error(&id, 501, "not-implemented"),
    };
    conn.send(reply);
}

/// `encrypt`: prekey upload, count, digest, fetch and signed-prekey rotation.
async fn encrypt(
    world: &Arc<World>,
    phone: &str,
    device: u16,
    id: &str,
    kind: &str,
    node: &Node,
) -> Node {
    if kind == "set" {
        if let Some(rotate) = node.get_optional_child("rotate") {
            let Some(skey) = parse_skey(rotate.get_optional_child("skey")) else {
                return error(id, 400, "bad-request");
            };
            with_device(world, phone, device, |d| d.signed_prekey = skey);
            return result(id);
        }
        if node.get_optional_child("registration").is_some() {
            let identity = key32(bytes(node.get_optional_child("identity")));
            let reg_id = be_uint(bytes(node.get_optional_child("registration")));
            let skey = parse_skey(node.get_optional_child("skey"));
            let keys: Vec<(u32, [u8; 32])> = node
                .get_optional_child("list")
                .map(|l| {
                    l.get_children_by_tag("key")
                        .map(|k| {
                            (
                                be_uint(bytes(k.get_optional_child("id"))),
                                key32(bytes(k.get_optional_child("value"))),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            with_device(world, phone, device, |d| {
                d.identity = identity;
                d.reg_id = reg_id;
                if let Some(s) = skey {
                    d.signed_prekey = s;
                }
                d.prekeys.extend(keys);
            });
            return result(id);
        }
        return error(id, 501, "not-implemented");
    }
    if node.get_optional_child("count").is_some() {
        let n = {
            let st = world.lock();
            device_of(&st, phone, device).map_or(0, |d| d.prekeys.len())
        };
        return result_with(
            id,
            [NodeBuilder::new("count")
                .attr("value", n.to_string())
                .build()],
        );
    }
    if node.get_optional_child("digest").is_some() {
        // The client only acts on 404 (re-upload); a mismatch would only be
        // logged. Ask for a re-upload when we hold no prekeys for it.
        let empty = {
            let st = world.lock();
            device_of(&st, phone, device).is_none_or(|d| d.prekeys.is_empty())
        };
        return if empty {
            error(id, 404, "item-not-found")
        } else {
            error(id, 503, "service-unavailable")
        };
    }
    if let Some(key) = node.get_optional_child("key") {
        let mut users = Vec::new();
        for user in key.get_children_by_tag("user") {
            let jid = attr(user, "jid").unwrap_or_default();
            users.push(prekey_user(world, &jid).await);
        }
        return result_with(id, [NodeBuilder::new("list").children(users).build()]);
    }
    error(id, 501, "not-implemented")
}

fn device_of<'a>(st: &'a State, phone: &str, device: u16) -> Option<&'a crate::world::Device> {
    st.accounts.get(phone)?.devices.get(&device)
}

fn with_device(world: &World, phone: &str, device: u16, f: impl FnOnce(&mut crate::world::Device)) {
    let mut st = world.lock();
    if let Some(d) = st
        .accounts
        .get_mut(phone)
        .and_then(|a| a.devices.get_mut(&device))
    {
        f(d);
    }
}

pub(crate) fn parse_skey(skey: Option<&Node>) -> Option<SignedPreKey> {
    let skey = skey?;
    Some(SignedPreKey {
        id: be_uint(bytes(skey.get_optional_child("id"))),
        public: key32(bytes(skey.get_optional_child("value"))),
        signature: bytes(skey.get_optional_child("signature")).to_vec(),
    })
}

/// Resolves a user or device JID (PN or LID) to a device address.
pub(crate) fn resolve(world: &World, jid: &str) -> Option<DeviceAddr> {
    if let Some(addr) = DeviceAddr::parse(jid) {
        return Some(addr);
    }
    let (user, server) = jid.split_once('@')?;
    if server != "lid" {
        return None;
    }
    let (lid, device) = match user.split_once(':') {
        Some((l, d)) => (l, d.parse().ok()?),
        None => (user, 0),
    };
    let phone = world.lock().lids.get(lid).cloned()?;
    Some(DeviceAddr { phone, device })
}

/// One `<user>` of a prekey fetch answer, under the JID it was asked for.
async fn prekey_user(world: &Arc<World>, jid: &str) -> Node {
    let bundle = match resolve(world, jid) {
        Some(addr) if addr.device == 0 => match world.endpoint(&addr.phone) {
            Ok(e) => Some(e.peer.lock().await.take_bundle()),
            Err(_) => None,
        },
        Some(addr) => world.take_device_bundle(&addr.phone, addr.device),
        None => None,
    };
    let user = NodeBuilder::new("user").attr("jid", jid);
    let Some(b) = bundle else {
        return user
            .children([NodeBuilder::new("error")
                .attr("code", "404")
                .attr("text", "item-not-found")
                .build()])
            .build();
    };
    user.children(bundle_nodes(&b)).build()
}

fn id3(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}

fn bundle_nodes(b: &Bundle) -> Vec<Node> {
    let mut nodes = vec![
        NodeBuilder::new("registration")
            .bytes(b.reg_id.to_be_bytes().to_vec())
            .build(),
        NodeBuilder::new("type").bytes(vec![5]).build(),
        NodeBuilder::new("identity")
            .bytes(b.identity.to_vec())
            .build(),
    ];
    if let Some((pid, pkey)) = b.prekey {
        nodes.push(
            NodeBuilder::new("key")
                .children([
                    NodeBuilder::new("id").bytes(id3(pid)).build(),
                    NodeBuilder::new("value").bytes(pkey.to_vec()).build(),
                ])
                .build(),
        );
    }
    nodes.push(
        NodeBuilder::new("skey")
            .children([
                NodeBuilder::new("id")
                    .bytes(id3(b.signed_prekey.id))
                    .build(),
                NodeBuilder::new("value")
                    .bytes(b.signed_prekey.public.to_vec())
                    .build(),
                NodeBuilder::new("signature")
                    .bytes(b.signed_prekey.signature.clone())
                    .build(),
            ])
            .build(),
    );
    nodes
}

/// `w:sync:app:state`: every asked collection, empty, counts as synced.
fn app_state(id: &str, node: &Node) -> Node {
    let collections: Vec<Node> = node
        .get_optional_child("sync")
        .map(|s| {
            s.get_children_by_tag("collection")
                .filter_map(|c| attr(c, "name"))
                .map(|name| {
                    NodeBuilder::new("collection")
                        .attr("name", name)
                        .attr("version", "0")
                        .build()
                })
                .collect()
        })
        .unwrap_or_default();
    result_with(id, [NodeBuilder::new("sync").children(collections).build()])
}
