//! Reading what a contact received into its inbox entry: every kind, the
//! quote and mentions, poll votes decrypted with the poll's secret, and the
//! cards of a contacts message.

use super::*;

/// The text of a message, for the inbox.
fn message_text(m: &wa::Message) -> Option<String> {
    let m = m.get_base_message();
    if let Some(c) = &m.conversation {
        return Some(c.clone());
    }
    m.extended_text_message.as_option()?.text.clone()
}

/// Fills `entry` from a message of a kind other than media; false when the
/// message is media or of no kind the inbox keeps.
pub fn read(endpoint: &Endpoint, message: &wa::Message, entry: &mut InboxMessage) -> bool {
    let m = message.get_base_message();
    if let Some(r) = m.reaction_message.as_option() {
        entry.kind = "reaction".into();
        entry.message_id = r.key.as_option().and_then(|k| k.id.clone());
        entry.emoji = Some(r.text.clone().unwrap_or_default());
        return true;
    }
    if let Some(p) = m.protocol_message.as_option() {
        entry.kind = match p.r#type {
            Some(ProtocolType::MESSAGE_EDIT) => "edit".into(),
            Some(ProtocolType::REVOKE) => "revoke".into(),
            _ => return false,
        };
        entry.message_id = p.key.as_option().and_then(|k| k.id.clone());
        if let Some(edited) = p.edited_message.as_option() {
            entry.text = message_text(edited)
                .or_else(|| edited.get_caption().map(str::to_string))
                .unwrap_or_default();
        }
        return true;
    }
    if let Some(u) = m.poll_update_message.as_option() {
        entry.kind = "poll_vote".into();
        let poll_id = u
            .poll_creation_message_key
            .as_option()
            .and_then(|k| k.id.clone())
            .unwrap_or_default();
        entry.options = read_vote(endpoint, &poll_id, u, &entry.from);
        entry.message_id = Some(poll_id);
        return true;
    }
    if let Some(p) = poll_creation(m) {
        entry.kind = "poll".into();
        entry.question = Some(p.name.clone().unwrap_or_default());
        entry.options = Some(
            p.options
                .iter()
                .filter_map(|o| o.option_name.clone())
                .collect(),
        );
        entry.selectable = Some(p.selectable_options_count.unwrap_or(0));
        return true;
    }
    if let Some(l) = m.location_message.as_option() {
        entry.kind = "location".into();
        entry.latitude = l.degrees_latitude;
        entry.longitude = l.degrees_longitude;
        entry.name = l.name.clone();
        entry.address = l.address.clone();
        return true;
    }
    if let Some(c) = m.contact_message.as_option() {
        entry.kind = "contacts".into();
        entry.contacts = Some(vec![card_of(c)]);
        return true;
    }
    if let Some(a) = m.contacts_array_message.as_option() {
        entry.kind = "contacts".into();
        entry.contacts = Some(a.contacts.iter().map(card_of).collect());
        return true;
    }
    if let Some(text) = message_text(m) {
        entry.kind = "text".into();
        entry.text = text;
        return true;
    }
    false
}

/// The option names a vote chose, decrypted with the poll's secret; `None`
/// when the poll is unknown or the vote does not decrypt.
fn read_vote(
    endpoint: &Endpoint,
    poll_id: &str,
    u: &wa::message::PollUpdateMessage,
    from: &str,
) -> Option<Vec<String>> {
    let poll = memory(endpoint).polls.get(poll_id).cloned();
    let Some(poll) = poll else {
        tracing::warn!("{}: a vote on unknown poll {poll_id}", endpoint.phone);
        return None;
    };
    let vote = u.vote.as_option()?;
    let ciphertext = wacore::poll::PollVoteCiphertext {
        enc_payload: vote.enc_payload.as_deref()?,
        enc_iv: vote.enc_iv.as_deref()?,
    };
    let hashes = wacore::poll::decrypt_poll_vote_with_secret(
        ciphertext,
        &poll.secret,
        poll_id,
        &poll.creator,
        &non_ad(from),
    );
    match hashes {
        Ok(hashes) => Some(
            poll.options
                .iter()
                .filter(|o| {
                    let h = wacore::poll::compute_option_hash(o);
                    hashes.iter().any(|x| x.as_slice() == h)
                })
                .cloned()
                .collect(),
        ),
        Err(e) => {
            tracing::warn!("{}: vote on poll {poll_id}: {e}", endpoint.phone);
            None
        }
    }
}

fn card_of(c: &wa::message::ContactMessage) -> Card {
    let mut card = parse_vcard(c.vcard.as_deref().unwrap_or_default());
    if card.name.is_empty() {
        card.name = c.display_name.clone().unwrap_or_default();
    }
    card
}

/// The name (`FN`) and phone numbers (`TEL`) of a vCard; phones keep their
/// digits and a leading `+`.
fn parse_vcard(vcard: &str) -> Card {
    // Unfold continuation lines first.
    let mut lines: Vec<String> = Vec::new();
    for raw in vcard.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ => lines.push(raw.to_string()),
        }
    }
    let mut card = Card::default();
    for line in &lines {
        let Some((head, value)) = line.split_once(':') else {
            continue;
        };
        let prop = head.split(';').next().unwrap_or_default();
        // `item1.TEL`: a group prefix.
        let prop = prop.rsplit('.').next().unwrap_or_default();
        if prop.eq_ignore_ascii_case("FN") {
            card.name = unescape(value);
        } else if prop.eq_ignore_ascii_case("TEL") {
            let value = value.trim();
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                let plus = if value.starts_with('+') { "+" } else { "" };
                card.phones.push(format!("{plus}{digits}"));
            }
        }
    }
    card
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}
