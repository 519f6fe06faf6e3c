//! The `w:g2` IQs whatsapp-rust sends (wacore/src/iq/groups.rs), read as it
//! writes them and answered as its parsers expect. The work is done by
//! [`crate::groups`]; refusals become `<error code text>`.
//!
//! To `g.us`: `<participating>` (get), `<create subject>` (set),
//! `<leave><group id/></leave>` (set), `<invite code>` (set joins, get
//! previews). To `ID@g.us`: `<query request>` (get), `<add|remove|promote|
//! demote><participant jid/>..` (set), `<invite/>` (get the link, set
//! resets it), `<subject>`, `<description id prev [delete]><body>`,
//! `<announcement/>|<not_announcement/>`, `<locked/>|<unlocked/>`,
//! `<ephemeral expiration/>|<not_ephemeral/>` (set).

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::NodeContent;

use crate::groups::{self, Addressing, BAD_REQUEST, Change, NewGroup, Refusal, Setting};
use crate::iq::{error, resolve, result, result_with};
use crate::world::World;

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

fn refused(id: &str, r: Refusal) -> Node {
    error(id, r.code, r.text)
}

/// The phone number behind a participant JID (PN or LID).
fn phone_of(world: &World, jid: &str) -> Option<String> {
    resolve(world, jid).map(|a| a.phone)
}

/// Answers a `w:g2` IQ from a device of `account`.
pub fn handle(world: &World, account: &str, id: &str, kind: &str, node: &Node) -> Node {
    let to = attr(node, "to").unwrap_or_default();
    // `g.us` (or `@g.us`) itself, or one group.
    let group = groups::parse_id(&to);
    let Some(child) = node.children().and_then(|c| c.first()) else {
        return refused(id, BAD_REQUEST);
    };
    let answer = match (kind, group.as_deref(), child.tag.as_ref()) {
        ("get", None, "participating") => Ok(participating(world, account, child)),
        ("set", None, "create") => create(world, account, child),
        ("set", None, "leave") => leave(world, account, child),
        ("set", None, "invite") => join(world, account, child),
        ("get", None, "invite") => {
            let code = attr(child, "code").unwrap_or_default();
            groups::by_code(world, &code)
                .map(|g| vec![crate::group_wire::group_node(world, &g, true)])
        }
        ("get", Some(g), "query") => query(world, account, g),
        ("set", Some(g), tag @ ("add" | "remove" | "promote" | "demote")) => {
            participants(world, account, g, tag, child)
        }
        ("get" | "set", Some(g), "invite") => groups::invite(world, g, account, kind == "set")
            .map(|code| vec![NodeBuilder::new("invite").attr("code", code).build()]),
        ("set", Some(g), "subject") => {
            groups::set_subject(world, g, account, &text(child)).map(|()| Vec::new())
        }
        ("set", Some(g), "description") => description(world, account, g, child),
        ("set", Some(g), tag) => match setting(tag, child) {
            Some(s) => groups::set(world, g, account, s).map(|()| Vec::new()),
            None => return error(id, 501, "not-implemented"),
        },
        _ => return error(id, 501, "not-implemented"),
    };
    match answer {
        Ok(children) if children.is_empty() => result(id),
        Ok(children) => result_with(id, children),
        Err(r) => refused(id, r),
    }
}

fn participating(world: &World, account: &str, child: &Node) -> Vec<Node> {
    let with_participants = child.get_optional_child("participants").is_some();
    let groups: Vec<Node> = world
        .groups
        .all()
        .iter()
        .filter(|g| g.role(account).is_some())
        .map(|g| crate::group_wire::group_node(world, g, with_participants))
        .collect();
    vec![NodeBuilder::new("groups").children(groups).build()]
}

fn query(world: &World, account: &str, id: &str) -> Result<Vec<Node>, Refusal> {
    let g = world.groups.get(id).ok_or(groups::NOT_FOUND)?;
    if g.role(account).is_none() {
        return Err(groups::FORBIDDEN);
    }
    Ok(vec![crate::group_wire::group_node(world, &g, true)])
}

fn create(world: &World, account: &str, child: &Node) -> Result<Vec<Node>, Refusal> {
    let subject = attr(child, "subject").unwrap_or_default();
    let participants = child
        .get_children_by_tag("participant")
        .filter_map(|p| {
            // A LID participant carries its number in `phone_number`.
            attr(p, "jid")
                .and_then(|j| phone_of(world, &j))
                .or_else(|| attr(p, "phone_number").and_then(|j| phone_of(world, &j)))
        })
        .collect();
    let description = child
        .get_optional_child("description")
        .and_then(|d| d.get_optional_child("body"))
        .map(text);
    let new = NewGroup {
        subject,
        participants,
        description,
        addressing: Addressing::Pn,
        legacy_id: false,
    };
    let (g, _) = groups::create(world, account, new)?;
    Ok(vec![crate::group_wire::group_node(world, &g, true)])
}

fn leave(world: &World, account: &str, child: &Node) -> Result<Vec<Node>, Refusal> {
    let ids: Vec<String> = child
        .get_children_by_tag("group")
        .filter_map(|g| attr(g, "id"))
        .collect();
    if ids.is_empty() {
        return Err(BAD_REQUEST);
    }
    for id in &ids {
        groups::leave(world, id, account)?;
    }
    Ok(Vec::new())
}

fn join(world: &World, account: &str, child: &Node) -> Result<Vec<Node>, Refusal> {
    let code = attr(child, "code").unwrap_or_default();
    let g = groups::join(world, &code, account)?;
    Ok(vec![NodeBuilder::new("group").attr("jid", g.jid()).build()])
}

/// `<add|remove|promote|demote>`: one `<participant jid [error]>` per asked
/// JID, as asked.
fn participants(
    world: &World,
    account: &str,
    id: &str,
    tag: &str,
    child: &Node,
) -> Result<Vec<Node>, Refusal> {
    let change = Change::parse(tag).ok_or(BAD_REQUEST)?;
    let asked: Vec<(String, Option<String>)> = child
        .get_children_by_tag("participant")
        .filter_map(|p| attr(p, "jid"))
        .map(|j| {
            let phone = phone_of(world, &j);
            (j, phone)
        })
        .collect();
    let known: Vec<String> = asked.iter().filter_map(|(_, p)| p.clone()).collect();
    let outcomes = groups::change(world, id, account, change, &known)?;
    let mut outcomes = outcomes.into_iter();
    let nodes = asked.into_iter().map(|(jid, phone)| {
        // JIDs that name no number are unknown to WhatsApp.
        let error = match phone {
            Some(_) => outcomes.next().and_then(|(_, e)| e),
            None => Some(404),
        };
        let mut b = NodeBuilder::new("participant").attr("jid", jid);
        if let Some(e) = error {
            b = b.attr("error", e.to_string());
        }
        b.build()
    });
    Ok(vec![NodeBuilder::new(change.tag()).children(nodes).build()])
}

fn description(world: &World, account: &str, id: &str, child: &Node) -> Result<Vec<Node>, Refusal> {
    let new_id = attr(child, "id").unwrap_or_default();
    let prev = attr(child, "prev");
    let body = if attr(child, "delete").as_deref() == Some("true") {
        None
    } else {
        Some(
            child
                .get_optional_child("body")
                .map(text)
                .ok_or(BAD_REQUEST)?,
        )
    };
    groups::set_description(
        world,
        id,
        account,
        body.as_deref(),
        &new_id,
        prev.as_deref(),
    )?;
    Ok(Vec::new())
}

fn setting(tag: &str, child: &Node) -> Option<Setting> {
    Some(match tag {
        "announcement" => Setting::Announce(true),
        "not_announcement" => Setting::Announce(false),
        "locked" => Setting::Locked(true),
        "unlocked" => Setting::Locked(false),
        "not_ephemeral" => Setting::Ephemeral(0),
        "ephemeral" => Setting::Ephemeral(attr(child, "expiration")?.parse().ok()?),
        _ => return None,
    })
}
