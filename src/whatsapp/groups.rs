//! Groups: what a session can do with them through whatsapp-rust's
//! `client.groups()` (list, inspect, create, change participants and
//! settings, invites, leave, join), and the `w:gp2` notifications about
//! them translated into the bridge's `group.participants` and
//! `group.update` events.

use serde_json::{Value, json};
use whatsapp_rust::features::{
    GroupCreateOptions, GroupDescription, GroupError, GroupMetadata, GroupParticipantOptions,
    GroupSubject, JoinGroupResult, ParticipantType, PreviousDescription,
};
use whatsapp_rust::prelude::*;
use whatsapp_rust::types::events::GroupUpdate;

use super::{Link, WaError, WaEvent, parse_recipient};

/// A group operation.
#[derive(Debug, Clone)]
pub enum GroupOp {
    List,
    Info {
        group: String,
    },
    Create {
        subject: String,
        participants: Vec<String>,
    },
    Participants {
        group: String,
        action: Membership,
        participants: Vec<String>,
    },
    Update {
        group: String,
        change: GroupChange,
    },
    Leave {
        group: String,
    },
    /// The invite link; `reset` makes a new one (the old stops working).
    Invite {
        group: String,
        reset: bool,
    },
    Join {
        code: String,
    },
}

/// What is done to participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Add,
    Remove,
    Promote,
    Demote,
}

impl Membership {
    pub const NAMES: [&'static str; 4] = ["add", "remove", "promote", "demote"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "add" => Some(Self::Add),
            "remove" => Some(Self::Remove),
            "promote" => Some(Self::Promote),
            "demote" => Some(Self::Demote),
            _ => None,
        }
    }
}

/// A change of a group's settings: `None` leaves one as it is;
/// `description: Some(None)` deletes the description.
#[derive(Debug, Clone, Default)]
pub struct GroupChange {
    pub subject: Option<String>,
    pub description: Option<Option<String>>,
    pub announce: Option<bool>,
    pub locked: Option<bool>,
}

/// A group id as the API takes it: its JID, or the part before `@g.us`.
pub fn group_jid(s: &str) -> Option<String> {
    let s = s.trim();
    let id = s.strip_suffix("@g.us").unwrap_or(s);
    let mut parts = id.split('-');
    let ok = !id.is_empty()
        && id.len() <= 64
        && parts
            .by_ref()
            .take(3)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && id.matches('-').count() <= 1;
    ok.then(|| format!("{id}@g.us"))
}

fn group_error(e: GroupError) -> WaError {
    use whatsapp_rust::IqError;
    match e {
        GroupError::Iq(IqError::ServerError { code, text, .. }) => WaError::Refused { code, text },
        GroupError::DescriptionConflict => WaError::Refused {
            code: 409,
            text: e.to_string(),
        },
        GroupError::InvalidRequest(s) => WaError::BadRecipient(s),
        e => WaError::Send(e.to_string()),
    }
}

fn jid_of(s: &str) -> Result<Jid, WaError> {
    let g =
        group_jid(s).ok_or_else(|| WaError::BadRecipient(format!("{s:?} is not a group id")))?;
    g.parse()
        .map_err(|_| WaError::BadRecipient(format!("{s:?} is not a group id")))
}

/// A member's JID as the bridge names people: the phone number JID when
/// WhatsApp gave it, else the JID it has.
fn person(jid: &Jid, pn: Option<&Jid>) -> String {
    match pn {
        Some(pn) => pn.to_non_ad().to_string(),
        None => jid.to_non_ad().to_string(),
    }
}

/// A group as the API shows it.
pub fn view(g: &GroupMetadata) -> Value {
    let participants: Vec<Value> = g
        .participants
        .iter()
        .map(|p| {
            let role = match p.participant_type {
                ParticipantType::SuperAdmin => "superadmin",
                ParticipantType::Admin => "admin",
                _ => "member",
            };
            let lid = p
                .lid
                .clone()
                .or_else(|| (p.jid.server == Server::Lid).then(|| p.jid.clone()));
            json!({
                "jid": person(&p.jid, p.phone_number.as_ref()),
                "lid": lid.map(|l| l.to_non_ad().to_string()),
                "role": role,
            })
        })
        .collect();
    json!({
        "id": g.id.to_string(),
        "subject": g.subject,
        "description": g.description,
        "owner": g.creator.as_ref().map(|c| person(c, g.creator_pn.as_ref())),
        "created_at": g.creation_time,
        "announce": g.is_announcement,
        "locked": g.is_locked,
        "addressing_mode": format!("{:?}", g.addressing_mode).to_lowercase(),
        "size": participants.len(),
        "participants": participants,
    })
}

impl Link {
    /// Does `op`; answers what the API shows of it.
    pub async fn group(&self, op: GroupOp) -> Result<Value, WaError> {
        let groups = self.client.groups();
        match op {
            GroupOp::List => {
                let all = groups.get_participating().await.map_err(group_error)?;
                let mut list: Vec<Value> = all.values().map(view).collect();
                list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                Ok(json!({ "groups": list }))
            }
            GroupOp::Info { group } => {
                let jid = jid_of(&group)?;
                let meta = groups.get_metadata(&jid).await.map_err(group_error)?;
                let mut v = view(&meta);
                // The invite link, for an admin (others may not see it).
                let me = self.client.pn().map(|j| j.to_non_ad());
                let admin = meta.participants.iter().any(|p| {
                    p.is_admin()
                        && me.as_ref().is_some_and(|me| {
                            p.jid.to_non_ad() == *me
                                || p.phone_number.as_ref().map(|j| j.to_non_ad())
                                    == Some(me.clone())
                        })
                });
                if admin && let Ok(link) = groups.get_invite_link(jid.clone(), false).await {
                    v["invite_link"] = json!(link);
                }
                Ok(v)
            }
            GroupOp::Create {
                subject,
                participants,
            } => {
                let members = participants
                    .iter()
                    .map(|p| parse_recipient(p).map(GroupParticipantOptions::new))
                    .collect::<Result<Vec<_>, _>>()?;
                let created = groups
                    .create_group(GroupCreateOptions::new(subject).with_participants(members))
                    .await
                    .map_err(group_error)?;
                // The full view (the create answer may leave fields out).
                let meta = groups
                    .get_metadata(&created.metadata.id)
                    .await
                    .unwrap_or(created.metadata);
                Ok(view(&meta))
            }
            GroupOp::Participants {
                group,
                action,
                participants,
            } => {
                let jid = jid_of(&group)?;
                let who = participants
                    .iter()
                    .map(|p| parse_recipient(p))
                    .collect::<Result<Vec<_>, _>>()?;
                let results = match action {
                    Membership::Add => groups.add_participants(jid, &who).await,
                    Membership::Remove => groups.remove_participants(jid, &who).await,
                    Membership::Promote => groups.promote_participants(jid, &who).await,
                    Membership::Demote => groups.demote_participants(jid, &who).await,
                }
                .map_err(group_error)?;
                let list: Vec<Value> = results
                    .iter()
                    .map(|r| {
                        json!({
                            "jid": person(&r.jid, r.phone_number.as_ref()),
                            "ok": r.error.is_none(),
                            "error": r.error.as_ref().map(|code| json!({
                                "code": code.parse::<u16>().ok(),
                                "reason": participant_reason(code),
                            })),
                        })
                    })
                    .collect();
                Ok(json!({ "results": list }))
            }
            GroupOp::Update { group, change } => {
                let jid = jid_of(&group)?;
                if let Some(s) = change.subject {
                    let subject =
                        GroupSubject::new(s).map_err(|e| WaError::BadRecipient(e.to_string()))?;
                    groups
                        .set_subject(jid.clone(), subject)
                        .await
                        .map_err(group_error)?;
                }
                if let Some(d) = change.description {
                    let d = d
                        .map(GroupDescription::new)
                        .transpose()
                        .map_err(|e| WaError::BadRecipient(e.to_string()))?;
                    groups
                        .set_description(jid.clone(), d, PreviousDescription::Resolve)
                        .await
                        .map_err(group_error)?;
                }
                if let Some(a) = change.announce {
                    groups
                        .set_announce(jid.clone(), a)
                        .await
                        .map_err(group_error)?;
                }
                if let Some(l) = change.locked {
                    groups
                        .set_locked(jid.clone(), l)
                        .await
                        .map_err(group_error)?;
                }
                let meta = groups.get_metadata(&jid).await.map_err(group_error)?;
                Ok(view(&meta))
            }
            GroupOp::Leave { group } => {
                let jid = jid_of(&group)?;
                groups.leave(jid.clone()).await.map_err(group_error)?;
                Ok(json!({"id": jid.to_string(), "left": true}))
            }
            GroupOp::Invite { group, reset } => {
                let jid = jid_of(&group)?;
                let link = groups
                    .get_invite_link(jid.clone(), reset)
                    .await
                    .map_err(group_error)?;
                let code = link.rsplit('/').next().unwrap_or(&link).to_string();
                Ok(json!({"id": jid.to_string(), "code": code, "link": link}))
            }
            GroupOp::Join { code } => {
                let joined = groups
                    .join_with_invite_code(&code)
                    .await
                    .map_err(group_error)?;
                let pending = matches!(joined, JoinGroupResult::PendingApproval(_));
                Ok(json!({"id": joined.group_jid().to_string(), "pending_approval": pending}))
            }
        }
    }
}

/// What WhatsApp's per-participant codes mean.
fn participant_reason(code: &str) -> &'static str {
    match code {
        "403" => "the number's privacy settings do not allow adding it; invite it with the link",
        "404" => "not on WhatsApp, or not a member",
        "408" => "left the group recently; invite it with the link",
        "409" => "already a member",
        "500" => "the group is full",
        _ => "refused by WhatsApp",
    }
}

/// The bridge's events for a group notification: `group.participants` for
/// members added, removed, promoted or demoted (a removal of oneself is a
/// `leave`, an addition by invite a `join`), `group.update` for settings.
/// The key (notification id and action index) makes the event id stable
/// when WhatsApp delivers the notification again.
pub(super) fn translate(u: &GroupUpdate) -> Option<WaEvent> {
    use whatsapp_rust::wacore::stanza::groups::GroupNotificationAction as A;
    let group = u.group_jid.to_string();
    let by = u
        .participant
        .as_ref()
        .map(|p| person(p, u.participant_pn.as_ref()));
    let key = u
        .notification_id
        .as_ref()
        .map(|id| format!("{id}/{}", u.action_index));
    let timestamp = u.timestamp.timestamp();
    let members =
        |list: &[whatsapp_rust::wacore::stanza::groups::GroupParticipantInfo]| -> Vec<String> {
            list.iter()
                .map(|p| person(&p.jid, p.phone_number.as_ref()))
                .collect()
        };
    let participants = |action: &str, who: Vec<String>| {
        Some(WaEvent::GroupParticipants {
            key: key.clone(),
            payload: json!({
                "group": group, "action": action, "participants": who,
                "by": by, "timestamp": timestamp,
            }),
        })
    };
    let update = |fields: Value| {
        let mut payload = json!({"group": group, "by": by, "timestamp": timestamp});
        if let (Some(p), Value::Object(f)) = (payload.as_object_mut(), fields) {
            p.extend(f);
        }
        Some(WaEvent::GroupUpdate {
            key: key.clone(),
            payload,
        })
    };
    match &u.action {
        A::Add {
            participants: p,
            reason,
        } => {
            let who = members(p);
            let joined = reason.as_deref() == Some("invite")
                || (who.len() == 1 && by.as_deref() == who.first().map(String::as_str));
            participants(if joined { "join" } else { "add" }, who)
        }
        A::Remove {
            participants: p, ..
        } => {
            let who = members(p);
            let left = who.len() == 1 && by.as_deref() == who.first().map(String::as_str);
            participants(if left { "leave" } else { "remove" }, who)
        }
        A::Promote { participants: p } => participants("promote", members(p)),
        A::Demote { participants: p } => participants("demote", members(p)),
        A::Subject { subject, .. } => update(json!({ "subject": subject })),
        A::Description { description, .. } => update(json!({ "description": description })),
        A::Locked { .. } => update(json!({"locked": true})),
        A::Unlocked => update(json!({"locked": false})),
        A::Announce => update(json!({"announce": true})),
        A::NotAnnounce => update(json!({"announce": false})),
        A::Ephemeral { expiration, .. } => update(json!({ "ephemeral_seconds": expiration })),
        // A new group the session is in: `create`, with every member and
        // `by` the creator.
        A::Create { raw } => {
            let group_node = raw.get_optional_child("group").unwrap_or(raw);
            let who: Vec<String> = group_node
                .get_children_by_tag("participant")
                .filter_map(|p| {
                    let mut a = p.attrs();
                    let jid = a.optional_jid("jid")?;
                    let pn = a.optional_jid("phone_number");
                    Some(person(&jid, pn.as_ref()))
                })
                .collect();
            let subject = group_node
                .attrs()
                .optional_string("subject")
                .map(|s| s.into_owned());
            let mut event = participants("create", who)?;
            if let WaEvent::GroupParticipants { payload, .. } = &mut event {
                payload["subject"] = json!(subject);
            }
            Some(event)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::group_jid;

    #[test]
    fn group_ids_with_or_without_the_server() {
        assert_eq!(
            group_jid("120363000000000001").as_deref(),
            Some("120363000000000001@g.us")
        );
        assert_eq!(
            group_jid("15550001111-1763700000@g.us").as_deref(),
            Some("15550001111-1763700000@g.us")
        );
        for bad in ["", "abc", "1-2-3", "12@s.whatsapp.net", "-1", "1-"] {
            assert_eq!(group_jid(bad), None, "{bad}");
        }
    }
}
