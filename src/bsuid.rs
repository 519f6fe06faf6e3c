//! Business-scoped user ids (BSUIDs): since April 2026 the Cloud API names
//! every user by a `CC.<digits>` id scoped to the business (beside the phone
//! number, which it may leave out), and current Cloud API clients refuse a
//! webhook without one. WhatsApp Web has no such id; its per-user id that
//! survives a hidden phone number is the LID. A session's BSUID of a user is
//! therefore derived from the user's LID:
//!
//! - the prefix is the ISO country of the user's phone number (the Cloud
//!   API's rule) when the bridge knows it, else the session's own country;
//! - the 20 digits are a tag digit (`1`: from a LID; `2`: from a phone
//!   number, only when WhatsApp gave no LID) and a keyed permutation, over
//!   19 decimal digits, of the LID (or number, up to 15 digits) with a
//!   4-digit keyed check in front of it, keyed by the session's name (so an
//!   id of another session, or a made-up one, is refused, not misread).
//!
//! So the same user has the same id in a session across restarts and nodes
//! (nothing is stored), a different one in another session (as different
//! businesses see different ids), and the id can be read back into the LID
//! when a client sends to it (`recipient`, or `to`).

use sha2::{Digest, Sha256};

/// Decimal numbers of up to 19 digits: the domain of the permutation.
const DOMAIN: u64 = 10_000_000_000_000_000_000;
/// LIDs and phone numbers have at most 15 digits; the check sits above.
const NUMBERS: u64 = 1_000_000_000_000_000;

/// Whom a BSUID names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// A LID user (the digits of `<lid>@lid`).
    Lid(String),
    /// A phone number (digits).
    Phone(String),
}

/// The BSUID of a user in a session: from the LID when known, else from the
/// phone number. `phone` (digits) gives the country; `account` (the
/// session's own number) is the fallback country.
pub fn of(session: &str, lid: Option<&str>, phone: Option<&str>, account: &str) -> Option<String> {
    let country = phone
        .and_then(country)
        .or_else(|| country(account))
        .unwrap_or("ZZ");
    let (tag, number) = match (lid, phone) {
        (Some(lid), _) => ('1', lid),
        (None, Some(phone)) => ('2', phone),
        (None, None) => return None,
    };
    if number.is_empty() || number.len() > 15 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let key = key(session);
    let digits = permute(&key, check(&key, tag, n) * NUMBERS + n, true);
    Some(format!("{country}.{tag}{digits:019}"))
}

/// Four digits that only this session's key gives this number.
fn check(key: &[u8; 32], tag: char, n: u64) -> u64 {
    u64::from(round(key, tag as u8, (n % 1_000_000_007) as u32) ^ (n >> 30) as u32) % 10_000
}

/// Reads a BSUID of this session back into the user it names; `None` when
/// it is not one of ours (wrong shape, or another session's).
pub fn parse(session: &str, bsuid: &str) -> Option<User> {
    let (cc, digits) = bsuid.split_once('.')?;
    if cc.len() != 2 || !cc.bytes().all(|b| b.is_ascii_uppercase()) || digits.len() != 20 {
        return None;
    }
    let (tag, rest) = digits.split_at(1);
    let x: u64 = rest.parse().ok()?;
    if x >= DOMAIN {
        return None;
    }
    let key = key(session);
    let x = permute(&key, x, false);
    let (sum, n) = (x / NUMBERS, x % NUMBERS);
    let tag = match tag {
        "1" => '1',
        "2" => '2',
        _ => return None,
    };
    if sum != check(&key, tag, n) {
        return None;
    }
    let user = n.to_string();
    Some(if tag == '1' {
        User::Lid(user)
    } else {
        User::Phone(user)
    })
}

/// Whether a string has a BSUID's shape (`CC.` then up to 128 letters or
/// digits; a parent BSUID has `ENT.` after the country).
pub fn looks_like(s: &str) -> bool {
    let Some((cc, rest)) = s.split_once('.') else {
        return false;
    };
    cc.len() == 2
        && cc.bytes().all(|b| b.is_ascii_uppercase())
        && !rest.is_empty()
        && rest.len() <= 128
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

fn key(session: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"wapi-bsuid/v1\0");
    h.update(session.as_bytes());
    h.finalize().into()
}

/// A keyed permutation of 0..10^19: a 4-round Feistel network over 64 bits,
/// walked until it lands inside the domain again (cycle walking keeps it a
/// permutation of the domain, and its inverse walks back the same way).
fn permute(key: &[u8; 32], n: u64, forward: bool) -> u64 {
    let mut x = n;
    loop {
        x = if forward {
            feistel(key, x)
        } else {
            feistel_inv(key, x)
        };
        if x < DOMAIN {
            return x;
        }
    }
}

fn round(key: &[u8; 32], i: u8, half: u32) -> u32 {
    let mut h = Sha256::new();
    h.update(key);
    h.update([i]);
    h.update(half.to_be_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn feistel(key: &[u8; 32], x: u64) -> u64 {
    let (mut l, mut r) = ((x >> 32) as u32, x as u32);
    for i in 0..4 {
        (l, r) = (r, l ^ round(key, i, r));
    }
    (u64::from(l) << 32) | u64::from(r)
}

fn feistel_inv(key: &[u8; 32], x: u64) -> u64 {
    let (mut l, mut r) = ((x >> 32) as u32, x as u32);
    for i in (0..4).rev() {
        (l, r) = (r ^ round(key, i, l), l);
    }
    (u64::from(l) << 32) | u64::from(r)
}

/// The ISO 3166 country of an international phone number (digits), by its
/// calling code; `None` for codes not in the table.
pub fn country(phone: &str) -> Option<&'static str> {
    // Longest prefix first: three-digit codes, then two, then one.
    (1..=3)
        .rev()
        .filter_map(|len| phone.get(..len))
        .find_map(|code| CODES.iter().find(|(c, _)| *c == code).map(|(_, iso)| *iso))
}

/// Calling codes and their (main) country. A shared code (`1`, `7`) maps to
/// its largest country: the prefix is informative, never used to route.
const CODES: &[(&str, &str)] = &[
    ("1", "US"),
    ("7", "RU"),
    ("20", "EG"),
    ("27", "ZA"),
    ("30", "GR"),
    ("31", "NL"),
    ("32", "BE"),
    ("33", "FR"),
    ("34", "ES"),
    ("36", "HU"),
    ("39", "IT"),
    ("40", "RO"),
    ("41", "CH"),
    ("43", "AT"),
    ("44", "GB"),
    ("45", "DK"),
    ("46", "SE"),
    ("47", "NO"),
    ("48", "PL"),
    ("49", "DE"),
    ("51", "PE"),
    ("52", "MX"),
    ("53", "CU"),
    ("54", "AR"),
    ("55", "BR"),
    ("56", "CL"),
    ("57", "CO"),
    ("58", "VE"),
    ("60", "MY"),
    ("61", "AU"),
    ("62", "ID"),
    ("63", "PH"),
    ("64", "NZ"),
    ("65", "SG"),
    ("66", "TH"),
    ("81", "JP"),
    ("82", "KR"),
    ("84", "VN"),
    ("86", "CN"),
    ("90", "TR"),
    ("91", "IN"),
    ("92", "PK"),
    ("93", "AF"),
    ("94", "LK"),
    ("95", "MM"),
    ("98", "IR"),
    ("212", "MA"),
    ("213", "DZ"),
    ("216", "TN"),
    ("218", "LY"),
    ("221", "SN"),
    ("225", "CI"),
    ("233", "GH"),
    ("234", "NG"),
    ("237", "CM"),
    ("244", "AO"),
    ("249", "SD"),
    ("251", "ET"),
    ("254", "KE"),
    ("255", "TZ"),
    ("256", "UG"),
    ("260", "ZM"),
    ("263", "ZW"),
    ("351", "PT"),
    ("352", "LU"),
    ("353", "IE"),
    ("354", "IS"),
    ("358", "FI"),
    ("359", "BG"),
    ("370", "LT"),
    ("371", "LV"),
    ("372", "EE"),
    ("380", "UA"),
    ("381", "RS"),
    ("385", "HR"),
    ("386", "SI"),
    ("420", "CZ"),
    ("421", "SK"),
    ("502", "GT"),
    ("503", "SV"),
    ("504", "HN"),
    ("505", "NI"),
    ("506", "CR"),
    ("507", "PA"),
    ("591", "BO"),
    ("593", "EC"),
    ("595", "PY"),
    ("598", "UY"),
    ("852", "HK"),
    ("853", "MO"),
    ("855", "KH"),
    ("880", "BD"),
    ("886", "TW"),
    ("961", "LB"),
    ("962", "JO"),
    ("964", "IQ"),
    ("965", "KW"),
    ("966", "SA"),
    ("968", "OM"),
    ("971", "AE"),
    ("972", "IL"),
    ("973", "BH"),
    ("974", "QA"),
    ("977", "NP"),
    ("994", "AZ"),
    ("995", "GE"),
    ("998", "UZ"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lid_goes_there_and_back_per_session() {
        let id = of(
            "s1",
            Some("123456789012345"),
            Some("15550002222"),
            "4915550001111",
        )
        .unwrap();
        assert!(id.starts_with("US.1"), "{id}");
        assert_eq!(id.len(), 23, "CC, dot and 20 digits: {id}");
        assert!(looks_like(&id));
        assert_eq!(parse("s1", &id), Some(User::Lid("123456789012345".into())));
        // Stable, and scoped: another session sees another id.
        assert_eq!(
            of("s1", Some("123456789012345"), Some("15550002222"), "x"),
            Some(id.clone())
        );
        let other = of("s2", Some("123456789012345"), Some("15550002222"), "x").unwrap();
        assert_ne!(other, id);
        assert_eq!(parse("s2", &id), None, "another session's id is refused");
        assert_eq!(parse("s1", "US.12345678901234567890"), None, "a made-up id");
    }

    #[test]
    fn without_a_lid_the_phone_number_is_used_and_tagged() {
        let id = of("s1", None, Some("447700900123"), "15550001111").unwrap();
        assert!(id.starts_with("GB.2"), "{id}");
        assert_eq!(parse("s1", &id), Some(User::Phone("447700900123".into())));
        // Country unknown: the session's own.
        let id = of("s1", Some("42"), None, "4915550001111").unwrap();
        assert!(id.starts_with("DE.1"), "{id}");
        assert_eq!(parse("s1", &id), Some(User::Lid("42".into())));
        assert_eq!(of("s1", None, None, "1"), None);
    }

    #[test]
    fn the_permutation_is_one_to_one_on_its_domain() {
        let k = key("s");
        for n in [
            0,
            1,
            9,
            DOMAIN - 1,
            1234567890123456789,
            100_000_000_000_000,
        ] {
            let p = permute(&k, n, true);
            assert!(p < DOMAIN);
            assert_eq!(permute(&k, p, false), n);
        }
        assert!(parse("s", "US.11").is_none());
        assert!(parse("s", "us.12345678901234567890").is_none());
        assert!(!looks_like("15550001111"));
        assert!(looks_like("US.ENT.11815799212886844830"));
    }

    #[test]
    fn countries_by_longest_calling_code() {
        assert_eq!(country("15550001111"), Some("US"));
        assert_eq!(country("351912345678"), Some("PT"));
        assert_eq!(country("34600000000"), Some("ES"));
        assert_eq!(country("999"), None);
    }
}
