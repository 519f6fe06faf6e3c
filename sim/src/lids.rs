//! LIDs: WhatsApp's second user id (`<digits>@lid`), beside the phone number
//! (`<digits>@s.whatsapp.net`, "PN").
//!
//! Every number the simulator knows gets a LID the first time it appears
//! (an account is linked, a contact sends or is written to, a lookup or the
//! admin API asks for it), unique across accounts and contacts. Lookups
//! (usync `<lid/>`) reveal it for every number on WhatsApp, so clients learn
//! the mapping and may address anyone by LID.
//!
//! A number in LID mode (`lid_mode` in its profile) sends its messages from
//! its LID JID with `sender_pn="<phone>@s.whatsapp.net"`, as WhatsApp does
//! for users that migrated; out of LID mode it sends from its phone number,
//! as before. Whatever the mode, stanzas a device addresses to a LID (user
//! or device JID) are routed like those addressed to the phone number; a
//! contact answers (receipts) from the address it was written to.
//!
//! Signal addresses: an endpoint keeps ONE session per real device, named
//! after the device's phone-number address, whichever namespace the stanzas
//! use. The client names its side `<pn>.0` or `<lid>@lid.0`, and moves a PN
//! session to the LID address when it learns the mapping (the ratchet goes
//! on unchanged); if it builds a new session for the LID address instead,
//! its `pkmsg` replaces the current state of that same session here. Either
//! way both ends keep agreeing.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::routing::DeviceAddr;
use crate::world::{SERVER, World};

/// The server part of a LID JID.
pub const LID_SERVER: &str = "lid";

/// The LID user of a number, allocated on first use.
pub fn assign(world: &World, phone: &str) -> String {
    let mut st = world.lock();
    if let Some(lid) = st.lid_by_phone.get(phone) {
        return lid.clone();
    }
    let lid = World::allocate_lid(&mut st);
    st.lids.insert(lid.clone(), phone.to_string());
    st.lid_by_phone.insert(phone.to_string(), lid.clone());
    lid
}

/// `<lid>@lid`.
pub fn lid_jid(lid: &str) -> String {
    format!("{lid}@{LID_SERVER}")
}

/// Whether a JID is in the LID namespace.
pub fn is_lid(jid: &str) -> bool {
    jid.rsplit_once('@').is_some_and(|(_, s)| s == LID_SERVER)
}

/// The LID JID lookups reveal for a number; none for a number that is not
/// on WhatsApp.
pub fn revealed(world: &World, phone: &str) -> Option<String> {
    world
        .profiles
        .get(phone)
        .on_whatsapp
        .then(|| lid_jid(&assign(world, phone)))
}

/// The LID user a number sends its messages from: `Some` in LID mode.
pub fn sending_lid(world: &World, phone: &str) -> Option<String> {
    world
        .profiles
        .get(phone)
        .lid_mode
        .then(|| assign(world, phone))
}

/// The user JID a number answers from: its LID JID when it was addressed
/// by LID, else its phone-number JID.
pub fn user_jid(world: &World, phone: &str, by_lid: bool) -> String {
    if by_lid {
        lid_jid(&assign(world, phone))
    } else {
        format!("{phone}@{SERVER}")
    }
}

/// A user or device JID a device addressed (PN or LID) as a device
/// address, with whether it was a LID.
pub fn addressed(world: &World, jid: &str) -> Option<(DeviceAddr, bool)> {
    let addr = crate::iq::resolve(world, jid)?;
    Some((addr, is_lid(jid)))
}

/// `from` of a message stanza that an endpoint sends, and the sender's
/// other address as WhatsApp adds it: `sender_pn` for a LID sender,
/// `sender_lid` for a phone-number sender (so clients learn who is who).
pub fn sender_attrs(
    world: &World,
    from_phone: &str,
    from_lid: Option<&str>,
) -> Vec<(&'static str, String)> {
    let pn = format!("{from_phone}@{SERVER}");
    match from_lid {
        Some(lid) => vec![("from", lid_jid(lid)), ("sender_pn", pn)],
        None => match revealed(world, from_phone) {
            Some(lid) => vec![("from", pn), ("sender_lid", lid)],
            None => vec![("from", pn)],
        },
    }
}

/// The `<lid>` of a usync `<user>`: `val` is the number's LID JID, when it
/// is on WhatsApp.
pub fn usync_lid(world: &World, addr: Option<&DeviceAddr>) -> Node {
    match addr.and_then(|a| revealed(world, &a.phone)) {
        Some(lid) => NodeBuilder::new("lid").attr("val", lid).build(),
        None => NodeBuilder::new("lid").build(),
    }
}

/// The `pn_jid` of a usync `<user>` asked by LID: the phone-number JID it
/// stands for.
pub fn usync_pn_jid(asked: &str, addr: Option<&DeviceAddr>) -> Option<String> {
    let addr = addr.filter(|_| is_lid(asked))?;
    Some(format!("{}@{SERVER}", addr.phone))
}
