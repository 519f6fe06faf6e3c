//! Groups: what the world knows of each group (id, subject, description,
//! creator, participants and their roles, settings, invite code, addressing
//! mode) and the operations on it, shared by the `w:g2` IQs of real devices
//! ([`crate::group_iq`]) and the admin API ([`crate::group_admin`]).
//!
//! Members are phone numbers: accounts (whose linked devices are real
//! clients) and simulated contacts alike. Every change is announced to every
//! linked device of every member, the actor's included, with a
//! `<notification type="w:gp2">` shaped as whatsapp-rust's handler reads it
//! (`Event::GroupUpdate`; see [`crate::group_wire`]); removed members get
//! the notice of their removal.
//! Refusals carry the codes WhatsApp answers with: 401 `not-authorized` for
//! a member acting where only admins may, 403 `forbidden` for a non-member,
//! 404 for an unknown group, and per participant 404 (not on WhatsApp),
//! 409 (already a member) or 404 (not a member).
//!
//! The state has its own lock, never held while the world's is taken.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use wacore_binary::builder::NodeBuilder;

use crate::group_wire::{announce, change_node, group_node, member_jid, participant_node};
use crate::world::{World, now_secs};

/// The server part of a group JID.
pub const GROUP_SERVER: &str = "g.us";

/// WhatsApp's limit on a subject's length (characters).
const SUBJECT_MAX: usize = 100;
/// WhatsApp's limit on a description's length (characters).
const DESCRIPTION_MAX: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    /// The creator: an admin no other admin can remove or demote.
    Superadmin,
}

impl Role {
    pub fn is_admin(self) -> bool {
        self != Role::Member
    }

    /// The `type` attribute of a `<participant>`; members carry none.
    pub(crate) fn wire(self) -> Option<&'static str> {
        match self {
            Role::Member => None,
            Role::Admin => Some("admin"),
            Role::Superadmin => Some("superadmin"),
        }
    }
}

/// How members are named in the group's stanzas: by phone number (`pn`) or
/// by LID (`lid`, with the phone number beside it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    #[default]
    Pn,
    Lid,
}

impl Addressing {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pn" => Some(Self::Pn),
            "lid" => Some(Self::Lid),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pn => "pn",
            Self::Lid => "lid",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Description {
    /// Changes with every edit; an edit names the one it replaces (`prev`).
    pub id: String,
    pub body: String,
    pub owner: String,
    pub time: u64,
}

#[derive(Clone, Debug)]
pub struct Group {
    /// The user part of the JID: `<digits>` or, for old groups,
    /// `<creator phone>-<creation time>`.
    pub id: String,
    pub subject: String,
    pub subject_owner: String,
    pub subject_time: u64,
    pub description: Option<Description>,
    pub creator: String,
    pub creation: u64,
    /// Phone numbers in the order they joined.
    pub participants: Vec<(String, Role)>,
    /// Only admins send messages.
    pub announce: bool,
    /// Only admins edit the group's info.
    pub locked: bool,
    /// Disappearing messages timer in seconds (0: off).
    pub ephemeral: u32,
    pub invite_code: String,
    pub addressing: Addressing,
}

impl Group {
    pub fn jid(&self) -> String {
        format!("{}@{GROUP_SERVER}", self.id)
    }

    pub fn role(&self, phone: &str) -> Option<Role> {
        self.participants
            .iter()
            .find(|(p, _)| p == phone)
            .map(|(_, r)| *r)
    }

    pub fn phones(&self) -> Vec<String> {
        self.participants.iter().map(|(p, _)| p.clone()).collect()
    }
}

/// A refusal: the IQ error code and text WhatsApp answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub text: &'static str,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

pub const BAD_REQUEST: Refusal = Refusal {
    code: 400,
    text: "bad-request",
};
pub const NOT_AUTHORIZED: Refusal = Refusal {
    code: 401,
    text: "not-authorized",
};
pub const FORBIDDEN: Refusal = Refusal {
    code: 403,
    text: "forbidden",
};
pub const NOT_FOUND: Refusal = Refusal {
    code: 404,
    text: "item-not-found",
};
pub const CONFLICT: Refusal = Refusal {
    code: 409,
    text: "conflict",
};
pub const GONE: Refusal = Refusal {
    code: 410,
    text: "gone",
};
/// Joining a group one is already in.
pub const ALREADY_MEMBER: Refusal = Refusal {
    code: 304,
    text: "not-modified",
};

/// The outcome for one participant of an add, remove, promote or demote:
/// `None` when done, else the code WhatsApp puts in `error`.
pub type Outcome = (String, Option<u16>);

#[derive(Default)]
struct State {
    groups: BTreeMap<String, Group>,
    /// Codes reset since, by code: joining with one is 410.
    revoked: HashMap<String, String>,
    next: u64,
}

/// Every group, with its own lock; and the sender-key bookkeeping of group
/// messages ([`crate::group_messages::Ledger`]).
#[derive(Default)]
pub struct Groups {
    state: Mutex<State>,
    pub ledger: crate::group_messages::Ledger,
}

impl Groups {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of a group (by its id, with or without `@g.us`).
    pub fn get(&self, id: &str) -> Option<Group> {
        let id = parse_id(id)?;
        self.lock().groups.get(&id).cloned()
    }

    /// Every group, oldest first.
    pub fn all(&self) -> Vec<Group> {
        let mut all: Vec<Group> = self.lock().groups.values().cloned().collect();
        all.sort_by(|a, b| (a.creation, &a.id).cmp(&(b.creation, &b.id)));
        all
    }

    /// Runs a change on a group; `None` when there is no such group.
    fn update<T>(&self, id: &str, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        let mut st = self.lock();
        st.groups.get_mut(id).map(f)
    }
}

/// The user part of a group JID (`ID` or `ID@g.us`), if it is one: digits,
/// or digits, a dash and digits.
pub fn parse_id(s: &str) -> Option<String> {
    let id = match s.rsplit_once('@') {
        Some((id, server)) if server == GROUP_SERVER => id,
        Some(_) => return None,
        None => s,
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let ok = match id.split_once('-') {
        Some((a, b)) => digits(a) && digits(b),
        None => digits(id),
    };
    ok.then(|| id.to_string())
}

/// Whether a JID is a group's.
pub fn is_group_jid(jid: &str) -> bool {
    jid.ends_with("@g.us") && parse_id(jid).is_some()
}

/// A fresh invite code: 22 letters and digits, as WhatsApp's.
fn invite_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..22)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A fresh description id: 8 hex digits, as the client makes them.
pub fn description_id() -> String {
    format!("{:08X}", rand::random::<u32>())
}

fn on_whatsapp(world: &World, phone: &str) -> bool {
    world.profiles.get(phone).on_whatsapp
}

/// What the creator of a new group chooses.
#[derive(Clone, Debug, Default)]
pub struct NewGroup {
    pub subject: String,
    pub participants: Vec<String>,
    pub description: Option<String>,
    pub addressing: Addressing,
    /// An old-style id (`<creator>-<time>`) instead of an all-digit one.
    pub legacy_id: bool,
}

fn check_subject(subject: &str) -> Result<(), Refusal> {
    let n = subject.chars().count();
    if subject.trim().is_empty() || n > SUBJECT_MAX {
        return Err(BAD_REQUEST);
    }
    Ok(())
}

/// Creates a group owned by `creator` (its superadmin). Numbers not on
/// WhatsApp are left out (outcome 404). Every member's devices get a
/// `<create>` notification carrying the group.
pub fn create(
    world: &World,
    creator: &str,
    new: NewGroup,
) -> Result<(Group, Vec<Outcome>), Refusal> {
    check_subject(&new.subject)?;
    if new
        .description
        .as_deref()
        .is_some_and(|d| d.chars().count() > DESCRIPTION_MAX)
    {
        return Err(BAD_REQUEST);
    }
    let t = now_secs();
    let mut participants = vec![(creator.to_string(), Role::Superadmin)];
    let mut outcomes = Vec::new();
    for p in new.participants {
        if participants.iter().any(|(q, _)| *q == p) {
            continue;
        }
        if on_whatsapp(world, &p) {
            participants.push((p.clone(), Role::Member));
            outcomes.push((p, None));
        } else {
            outcomes.push((p, Some(404)));
        }
    }
    // Everyone gets a LID now, so that LID groups can name them.
    for (p, _) in &participants {
        crate::lids::assign(world, p);
    }
    let group = {
        let mut st = world.groups.lock();
        st.next += 1;
        let id = if new.legacy_id {
            let mut stamp = t;
            while st.groups.contains_key(&format!("{creator}-{stamp}")) {
                stamp += 1;
            }
            format!("{creator}-{stamp}")
        } else {
            format!("120363{:012}", 100_000_000_000 + st.next)
        };
        let group = Group {
            id: id.clone(),
            subject: new.subject,
            subject_owner: creator.to_string(),
            subject_time: t,
            description: new.description.map(|body| Description {
                id: description_id(),
                body,
                owner: creator.to_string(),
                time: t,
            }),
            creator: creator.to_string(),
            creation: t,
            participants,
            announce: false,
            locked: false,
            ephemeral: 0,
            invite_code: invite_code(),
            addressing: new.addressing,
        };
        st.groups.insert(id, group.clone());
        group
    };
    let created = NodeBuilder::new("create")
        .children([group_node(world, &group, true)])
        .build();
    announce(world, &group, &group.phones(), Some(creator), vec![created]);
    Ok((group, outcomes))
}

/// The group, if `actor` is in it.
fn as_member(world: &World, id: &str, actor: &str) -> Result<Group, Refusal> {
    let g = world.groups.get(id).ok_or(NOT_FOUND)?;
    if g.role(actor).is_none() {
        return Err(FORBIDDEN);
    }
    Ok(g)
}

/// The group, if `actor` is one of its admins.
fn as_admin(world: &World, id: &str, actor: &str) -> Result<Group, Refusal> {
    let g = as_member(world, id, actor)?;
    if !g.role(actor).is_some_and(Role::is_admin) {
        return Err(NOT_AUTHORIZED);
    }
    Ok(g)
}

/// The group, if `actor` may edit its info (any member unless locked).
fn as_editor(world: &World, id: &str, actor: &str) -> Result<Group, Refusal> {
    let g = as_member(world, id, actor)?;
    if g.locked && !g.role(actor).is_some_and(Role::is_admin) {
        return Err(NOT_AUTHORIZED);
    }
    Ok(g)
}

/// What an admin does to participants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
    Promote,
    Demote,
}

impl Change {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "add" => Some(Self::Add),
            "remove" => Some(Self::Remove),
            "promote" => Some(Self::Promote),
            "demote" => Some(Self::Demote),
            _ => None,
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Promote => "promote",
            Self::Demote => "demote",
        }
    }
}

/// An admin adds, removes, promotes or demotes participants; one outcome
/// per number, in order. Those done are announced in one notification.
pub fn change(
    world: &World,
    id: &str,
    actor: &str,
    change: Change,
    phones: &[String],
) -> Result<Vec<Outcome>, Refusal> {
    let g = as_admin(world, id, actor)?;
    let actor_role = g.role(actor);
    let mut outcomes = Vec::new();
    let mut done = Vec::new();
    let before = g.phones();
    let after = world
        .groups
        .update(&g.id, |g| {
            for p in phones {
                let error = match (change, g.role(p)) {
                    (Change::Add, Some(_)) => Some(409),
                    (Change::Add, None) if !on_whatsapp(world, p) => Some(404),
                    (Change::Add, None) => {
                        g.participants.push((p.clone(), Role::Member));
                        None
                    }
                    (_, None) => Some(404),
                    // Only the creator itself can step down.
                    (Change::Remove | Change::Demote, Some(Role::Superadmin))
                        if actor_role != Some(Role::Superadmin) =>
                    {
                        Some(403)
                    }
                    (Change::Remove, Some(_)) => {
                        g.participants.retain(|(q, _)| q != p);
                        None
                    }
                    (Change::Promote | Change::Demote, Some(_)) => {
                        let role = if change == Change::Promote {
                            Role::Admin
                        } else {
                            Role::Member
                        };
                        if let Some(entry) = g.participants.iter_mut().find(|(q, _)| q == p) {
                            entry.1 = role;
                        }
                        None
                    }
                };
                if error.is_none() && !done.contains(p) {
                    done.push(p.clone());
                }
                outcomes.push((p.clone(), error));
            }
            g.clone()
        })
        .ok_or(NOT_FOUND)?;
    if change == Change::Add {
        for p in &done {
            crate::lids::assign(world, p);
        }
    }
    if !done.is_empty() {
        // The removed hear of their removal too.
        let mut to = after.phones();
        for p in before {
            if !to.contains(&p) {
                to.push(p);
            }
        }
        let node = change_node(world, &after, change.tag(), &done);
        announce(world, &after, &to, Some(actor), vec![node]);
        if change == Change::Remove {
            crate::group_messages::after_removal(world, &after);
        }
    }
    Ok(outcomes)
}

/// A member leaves. When the last admin goes, the oldest member left
/// becomes one (as WhatsApp does); a group nobody is in is gone.
pub fn leave(world: &World, id: &str, phone: &str) -> Result<(), Refusal> {
    let g = as_member(world, id, phone)?;
    let before = g.phones();
    let (after, promoted) = world
        .groups
        .update(&g.id, |g| {
            g.participants.retain(|(q, _)| q != phone);
            let mut promoted = None;
            if !g.participants.iter().any(|(_, r)| r.is_admin())
                && let Some(first) = g.participants.first_mut()
            {
                first.1 = Role::Admin;
                promoted = Some(first.0.clone());
            }
            (g.clone(), promoted)
        })
        .ok_or(NOT_FOUND)?;
    let node = change_node(world, &after, "remove", &[phone.to_string()]);
    announce(world, &after, &before, Some(phone), vec![node]);
    if let Some(p) = promoted {
        let node = change_node(world, &after, "promote", &[p]);
        announce(world, &after, &after.phones(), None, vec![node]);
    }
    if after.participants.is_empty() {
        world.groups.lock().groups.remove(&after.id);
    } else {
        crate::group_messages::after_removal(world, &after);
    }
    Ok(())
}

/// The invite code, for admins; `reset` revokes the old one first.
pub fn invite(world: &World, id: &str, actor: &str, reset: bool) -> Result<String, Refusal> {
    let g = as_admin(world, id, actor)?;
    if !reset {
        return Ok(g.invite_code);
    }
    let code = invite_code();
    let mut st = world.groups.lock();
    st.revoked.insert(g.invite_code.clone(), g.id.clone());
    if let Some(g) = st.groups.get_mut(&g.id) {
        g.invite_code = code.clone();
    }
    Ok(code)
}

/// The group an invite code leads to: 404 unknown, 410 reset since.
pub fn by_code(world: &World, code: &str) -> Result<Group, Refusal> {
    let st = world.groups.lock();
    if let Some(g) = st.groups.values().find(|g| g.invite_code == code) {
        return Ok(g.clone());
    }
    if st.revoked.contains_key(code) {
        return Err(GONE);
    }
    Err(NOT_FOUND)
}

/// Joins by invite code; the members hear `<add reason="invite">`.
pub fn join(world: &World, code: &str, phone: &str) -> Result<Group, Refusal> {
    let g = by_code(world, code)?;
    if g.role(phone).is_some() {
        return Err(ALREADY_MEMBER);
    }
    crate::lids::assign(world, phone);
    let after = world
        .groups
        .update(&g.id, |g| {
            g.participants.push((phone.to_string(), Role::Member));
            g.clone()
        })
        .ok_or(NOT_FOUND)?;
    let node = NodeBuilder::new("add")
        .attr("reason", "invite")
        .children([participant_node(world, &after, phone, None)])
        .build();
    announce(world, &after, &after.phones(), Some(phone), vec![node]);
    Ok(after)
}

/// A new subject (any member unless the group is locked).
pub fn set_subject(world: &World, id: &str, actor: &str, subject: &str) -> Result<(), Refusal> {
    let g = as_editor(world, id, actor)?;
    check_subject(subject)?;
    let t = now_secs();
    let after = world
        .groups
        .update(&g.id, |g| {
            g.subject = subject.to_string();
            g.subject_owner = actor.to_string();
            g.subject_time = t;
            g.clone()
        })
        .ok_or(NOT_FOUND)?;
    let node = NodeBuilder::new("subject")
        .attr("subject", subject)
        .attr("s_o", member_jid(world, actor, after.addressing))
        .attr("s_t", t.to_string())
        .build();
    announce(world, &after, &after.phones(), Some(actor), vec![node]);
    Ok(())
}

/// A new description (`None` deletes it) under a new id. `prev` must name
/// the current one (none when there is none): 409 otherwise.
pub fn set_description(
    world: &World,
    id: &str,
    actor: &str,
    body: Option<&str>,
    new_id: &str,
    prev: Option<&str>,
) -> Result<(), Refusal> {
    let g = as_editor(world, id, actor)?;
    if body.is_some_and(|b| b.chars().count() > DESCRIPTION_MAX) || new_id.is_empty() {
        return Err(BAD_REQUEST);
    }
    if g.description.as_ref().map(|d| d.id.as_str()) != prev {
        return Err(CONFLICT);
    }
    let t = now_secs();
    let after = world
        .groups
        .update(&g.id, |g| {
            g.description = body.map(|b| Description {
                id: new_id.to_string(),
                body: b.to_string(),
                owner: actor.to_string(),
                time: t,
            });
            g.clone()
        })
        .ok_or(NOT_FOUND)?;
    let content = match body {
        Some(b) => NodeBuilder::new("body").string_content(b).build(),
        None => NodeBuilder::new("delete").build(),
    };
    let node = NodeBuilder::new("description")
        .attr("id", new_id)
        .children([content])
        .build();
    announce(world, &after, &after.phones(), Some(actor), vec![node]);
    Ok(())
}

/// A group setting an IQ or the admin API turns on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Only admins send messages.
    Announce(bool),
    /// Only admins edit the info.
    Locked(bool),
    /// Disappearing messages (seconds; 0 turns them off).
    Ephemeral(u32),
}

/// Changes a setting: announce and locked are for admins; the timer is for
/// any member unless the group is locked.
pub fn set(world: &World, id: &str, actor: &str, setting: Setting) -> Result<(), Refusal> {
    let g = match setting {
        Setting::Ephemeral(_) => as_editor(world, id, actor)?,
        _ => as_admin(world, id, actor)?,
    };
    let after = world
        .groups
        .update(&g.id, |g| {
            match setting {
                Setting::Announce(on) => g.announce = on,
                Setting::Locked(on) => g.locked = on,
                Setting::Ephemeral(secs) => g.ephemeral = secs,
            }
            g.clone()
        })
        .ok_or(NOT_FOUND)?;
    let node = match setting {
        Setting::Announce(true) => NodeBuilder::new("announcement").build(),
        Setting::Announce(false) => NodeBuilder::new("not_announcement").build(),
        Setting::Locked(true) => NodeBuilder::new("locked").build(),
        Setting::Locked(false) => NodeBuilder::new("unlocked").build(),
        Setting::Ephemeral(0) => NodeBuilder::new("not_ephemeral").build(),
        Setting::Ephemeral(secs) => NodeBuilder::new("ephemeral")
            .attr("expiration", secs.to_string())
            .build(),
    };
    announce(world, &after, &after.phones(), Some(actor), vec![node]);
    Ok(())
}
