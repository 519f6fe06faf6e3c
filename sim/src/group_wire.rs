//! How a group looks: on the wire, as the `<group>` of `w:g2` answers and
//! the `<notification type="w:gp2">` of changes (what whatsapp-rust's
//! `GroupInfoResponse` and group notification handler read), and in the
//! admin API's JSON. In a LID-addressed group members go by their LID
//! JID, with the phone-number JID beside it (`phone_number`, `creator_pn`,
//! `s_o_pn`, `participant_pn`).

use serde::Serialize;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::groups::{Addressing, Group, Role};
use crate::world::{SERVER, World, new_message_id, now_secs};

/// The JID a member goes by in a group: its phone number, or its LID.
pub fn member_jid(world: &World, phone: &str, addressing: Addressing) -> String {
    match addressing {
        Addressing::Pn => format!("{phone}@{SERVER}"),
        Addressing::Lid => crate::lids::lid_jid(&crate::lids::assign(world, phone)),
    }
}

fn pn_jid(phone: &str) -> String {
    format!("{phone}@{SERVER}")
}

/// A JID's attribute, and in LID groups the phone-number twin under
/// `pn_key`.
fn jid_attrs(
    world: &World,
    g: &Group,
    phone: &str,
    key: &'static str,
    pn_key: &'static str,
) -> Vec<(&'static str, String)> {
    let mut attrs = vec![(key, member_jid(world, phone, g.addressing))];
    if g.addressing == Addressing::Lid {
        attrs.push((pn_key, pn_jid(phone)));
    }
    attrs
}

/// A `<participant>` as group info and notifications carry it.
pub(crate) fn participant_node(world: &World, g: &Group, phone: &str, role: Option<Role>) -> Node {
    let mut b =
        NodeBuilder::new("participant").attrs(jid_attrs(world, g, phone, "jid", "phone_number"));
    if let Some(t) = role.and_then(Role::wire) {
        b = b.attr("type", t);
    }
    b.build()
}

/// `<group>` as the `w:g2` answers carry it (query, participating, create,
/// invite info), as whatsapp-rust's `GroupInfoResponse` reads it.
pub fn group_node(world: &World, g: &Group, with_participants: bool) -> Node {
    let mut children = Vec::new();
    if with_participants {
        for (p, r) in &g.participants {
            children.push(participant_node(world, g, p, Some(*r)));
        }
    }
    if let Some(d) = &g.description {
        children.push(
            NodeBuilder::new("description")
                .attr("id", d.id.as_str())
                .attrs(jid_attrs(
                    world,
                    g,
                    &d.owner,
                    "participant",
                    "participant_pn",
                ))
                .attr("t", d.time.to_string())
                .children([NodeBuilder::new("body")
                    .string_content(d.body.as_str())
                    .build()])
                .build(),
        );
    }
    if g.announce {
        children.push(NodeBuilder::new("announcement").build());
    }
    if g.locked {
        children.push(NodeBuilder::new("locked").build());
    }
    if g.ephemeral > 0 {
        children.push(
            NodeBuilder::new("ephemeral")
                .attr("expiration", g.ephemeral.to_string())
                .build(),
        );
    }
    children.push(
        NodeBuilder::new("member_add_mode")
            .string_content("all_member_add")
            .build(),
    );
    NodeBuilder::new("group")
        .attr("id", g.id.as_str())
        .attr("subject", g.subject.as_str())
        .attr("creation", g.creation.to_string())
        .attrs(jid_attrs(world, g, &g.creator, "creator", "creator_pn"))
        .attr("s_t", g.subject_time.to_string())
        .attrs(jid_attrs(world, g, &g.subject_owner, "s_o", "s_o_pn"))
        .attr("addressing_mode", g.addressing.as_str())
        .attr("size", g.participants.len().to_string())
        .children(children)
        .build()
}

/// Sends a `w:gp2` notification to every linked device of `to` (phone
/// numbers; simulated contacts have none). `actor` goes in `participant`.
/// Queued until acknowledged, as notifications are.
pub(crate) fn announce(
    world: &World,
    g: &Group,
    to: &[String],
    actor: Option<&str>,
    children: Vec<Node>,
) {
    let mut b = NodeBuilder::new("notification")
        .attr("from", g.jid())
        .attr("type", "w:gp2")
        .attr("id", new_message_id())
        .attr("t", now_secs().to_string());
    if let Some(actor) = actor {
        b = b.attrs(jid_attrs(world, g, actor, "participant", "participant_pn"));
    }
    if g.addressing == Addressing::Lid {
        b = b.attr("addressing_mode", "lid");
    }
    let node = b.children(children).build();
    for phone in to {
        for device in world.companions(phone).unwrap_or_default() {
            world.deliver(phone, device, node.clone());
        }
    }
}

/// `<TAG><participant/>...</TAG>` of a notification.
pub(crate) fn change_node(world: &World, g: &Group, tag: &'static str, phones: &[String]) -> Node {
    NodeBuilder::new(tag)
        .children(phones.iter().map(|p| {
            let role = if tag == "promote" { g.role(p) } else { None };
            participant_node(world, g, p, role)
        }))
        .build()
}

/// One participant as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ParticipantView {
    pub jid: String,
    pub phone: String,
    pub lid: String,
    pub role: Role,
}

/// A group as the admin API shows it (`GET /admin/groups/{id}`).
#[derive(Clone, Debug, Serialize)]
pub struct GroupView {
    pub id: String,
    pub subject: String,
    pub subject_owner: String,
    pub subject_time: u64,
    pub description: Option<String>,
    pub description_id: Option<String>,
    pub creator: String,
    pub creation: u64,
    pub participants: Vec<ParticipantView>,
    pub announce: bool,
    pub locked: bool,
    pub ephemeral: u32,
    pub invite_code: String,
    pub addressing_mode: Addressing,
}

pub fn view(world: &World, g: &Group) -> GroupView {
    GroupView {
        id: g.jid(),
        subject: g.subject.clone(),
        subject_owner: pn_jid(&g.subject_owner),
        subject_time: g.subject_time,
        description: g.description.as_ref().map(|d| d.body.clone()),
        description_id: g.description.as_ref().map(|d| d.id.clone()),
        creator: pn_jid(&g.creator),
        creation: g.creation,
        participants: g
            .participants
            .iter()
            .map(|(p, r)| ParticipantView {
                jid: pn_jid(p),
                phone: p.clone(),
                lid: crate::lids::lid_jid(&crate::lids::assign(world, p)),
                role: *r,
            })
            .collect(),
        announce: g.announce,
        locked: g.locked,
        ephemeral: g.ephemeral,
        invite_code: g.invite_code.clone(),
        addressing_mode: g.addressing,
    }
}
