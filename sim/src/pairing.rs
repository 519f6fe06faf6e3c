//! Linking a device to an account: the fake phone scans a QR code or enters a
//! pair code, signs the device identity, and shares the app-state keys.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use buffa::Message as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::oneshot;
use wacore::libsignal::protocol::{KeyPair, PublicKey};
use wacore::pair::PairUtils;
use wacore::pair_code::PairCodeUtils;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::whatsapp as wa;

use crate::world::{
    Account, Device, EnteredCode, LinkTarget, LinkedDevice, PendingSign, SERVER, World,
    new_message_id, now_secs,
};

/// How long the phone waits for the client to sign its device identity.
const SIGN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("malformed QR string: {0}")]
    BadQr(String),
    #[error("unknown or expired QR ref")]
    UnknownRef,
    #[error("no device is waiting for that code")]
    UnknownCode,
    #[error("the device rejected the pairing: {0}")]
    Rejected(String),
    #[error("the device did not answer the pairing in time")]
    Timeout,
    #[error("{0}")]
    Internal(String),
}

/// The phone of `phone` scans a QR string shown by a registering client.
pub async fn scan(
    world: &Arc<World>,
    qr: &str,
    phone: &str,
    push_name: &str,
) -> Result<LinkedDevice, LinkError> {
    let (pairing_ref, noise_pub, identity_pub) =
        PairUtils::parse_qr_code(qr).map_err(|e| LinkError::BadQr(e.to_string()))?;
    let adv_b64 = qr
        .split(',')
        .nth(3)
        .ok_or_else(|| LinkError::BadQr("no adv secret".into()))?;
    let adv_secret = BASE64_STANDARD
        .decode(adv_b64)
        .map_err(|e| LinkError::BadQr(format!("adv secret: {e}")))?;
    let conn_id = {
        let st = world.lock();
        let conn_id = *st.refs.get(&pairing_ref).ok_or(LinkError::UnknownRef)?;
        let reg = st
            .registrations
            .get(&conn_id)
            .ok_or(LinkError::UnknownRef)?;
        if reg.noise_pub != noise_pub || reg.identity != identity_pub {
            return Err(LinkError::BadQr(
                "keys do not match the connection that showed this ref".into(),
            ));
        }
        conn_id
    };
    link(world, conn_id, phone, push_name, &adv_secret).await
}

/// Sends pair-success to a registering connection, waits for the client's
/// signature, records the device and ends the registration with 515.
async fn link(
    world: &Arc<World>,
    conn_id: u64,
    phone: &str,
    push_name: &str,
    adv_secret: &[u8],
) -> Result<LinkedDevice, LinkError> {
    let endpoint = world
        .endpoint(phone)
        .map_err(|e| LinkError::Internal(e.to_string()))?;
    let (done_tx, done_rx) = oneshot::channel();
    let (conn, target, linked) = {
        let mut st = world.lock();
        if !st.accounts.contains_key(phone) {
            let lid = st.lid_by_phone.get(phone).cloned().unwrap_or_default();
            st.accounts.insert(
                phone.to_string(),
                Account {
                    phone: phone.to_string(),
                    lid,
                    push_name: push_name.to_string(),
                    endpoint: endpoint.clone(),
                    account_key: KeyPair::generate(&mut rand::rng()),
                    devices: BTreeMap::new(),
                    next_device: 1,
                },
            );
        }
        let reg_identity = st
            .registrations
            .get(&conn_id)
            .ok_or(LinkError::UnknownRef)?
            .identity;
        let account = st.accounts.get_mut(phone).ok_or(LinkError::UnknownRef)?;
        if !push_name.is_empty() {
            account.push_name = push_name.to_string();
        }
        // Every WhatsApp account has a push name; a client paired without
        // one waits 10 s for app-state keys on every later login.
        if account.push_name.is_empty() {
            account.push_name = format!("+{phone}");
        }
        let device = account.next_device;
        account.next_device += 1;
        let target = LinkTarget {
            phone: phone.to_string(),
            device,
            key_index: u32::from(device),
            push_name: account.push_name.clone(),
        };
        let identity_hmac = device_identity(
            &account.account_key,
            target.key_index,
            &reg_identity,
            adv_secret,
        )
        .map_err(LinkError::Internal)?;
        let linked = LinkedDevice {
            jid: format!("{phone}:{device}@{SERVER}"),
            lid: format!("{}:{device}@lid", account.lid),
        };
        let iq_id = new_message_id();
        let node = pair_success(&iq_id, &identity_hmac, &target, &linked);
        let reg = st
            .registrations
            .get_mut(&conn_id)
            .ok_or(LinkError::UnknownRef)?;
        reg.pending_sign = Some(PendingSign {
            iq_id,
            link: target.clone(),
            done: done_tx,
        });
        let conn = reg.conn.clone();
        conn.send(node);
        (conn, target, linked)
    };
    match tokio::time::timeout(SIGN_TIMEOUT, done_rx).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(text))) => return Err(LinkError::Rejected(text)),
        Ok(Err(_)) => return Err(LinkError::Rejected("connection closed".into())),
        Err(_) => return Err(LinkError::Timeout),
    }
    // Record the device, queue the phone's app-state key share for its first
    // login, then end the registration connection as WhatsApp does (515).
    {
        let mut st = world.lock();
        let reg = st
            .registrations
            .get(&conn_id)
            .ok_or_else(|| LinkError::Rejected("connection closed".into()))?;
        let device = Device {
            id: target.device,
            noise_pub: reg.noise_pub,
            identity: reg.identity,
            reg_id: reg.reg_id,
            signed_prekey: reg.signed_prekey.clone(),
            prekeys: VecDeque::new(),
            key_index: target.key_index,
            push_name: target.push_name.clone(),
            conn: None,
            logins: 0,
            version: None,
            queue: VecDeque::new(),
            flushed: false,
        };
        if let Some(account) = st.accounts.get_mut(phone) {
            account.devices.insert(target.device, device);
        }
    }
    if let Err(e) = share_app_state_keys(world, phone, target.device).await {
        tracing::warn!("app-state key share for {}: {e}", linked.jid);
    }
    conn.send_final(stream_error("515"));
    tracing::info!("linked {} ({})", linked.jid, linked.lid);
    Ok(linked)
}

/// Called by the stanza handler when a registering client answers pair-success.
pub fn on_pair_sign(world: &World, conn_id: u64, iq_id: &str, result: Result<(), String>) {
    let mut st = world.lock();
    let Some(reg) = st.registrations.get_mut(&conn_id) else {
        return;
    };
    if reg.pending_sign.as_ref().is_some_and(|p| p.iq_id == iq_id)
        && let Some(pending) = reg.pending_sign.take()
    {
        let _ = pending.done.send(result);
    }
}

/// The ADV device identity the phone signs for a new companion, wrapped in
/// its HMAC container keyed with the shared ADV secret.
fn device_identity(
    account_key: &KeyPair,
    key_index: u32,
    companion_identity: &[u8; 32],
    adv_secret: &[u8],
) -> Result<Vec<u8>, String> {
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(rand::random::<u32>() >> 1),
        timestamp: Some(now_secs()),
        key_index: Some(key_index),
        account_type: Some(wa::ADVEncryptionType::E2EE),
        device_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let mut to_sign = Vec::with_capacity(2 + details.len() + 32);
    to_sign.extend_from_slice(&[6, 0]);
    to_sign.extend_from_slice(&details);
    to_sign.extend_from_slice(companion_identity);
    let signature = account_key
        .private_key
        .calculate_signature(&to_sign, &mut rand::rng())
        .map_err(|e| e.to_string())?;
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account_key.public_key.public_key_bytes().to_vec()),
        account_signature: Some(signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(adv_secret).map_err(|e| e.to_string())?;
    mac.update(&signed);
    let hmac = mac.finalize().into_bytes().to_vec();
    Ok(wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(hmac),
        account_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec())
}

fn pair_success(iq_id: &str, identity: &[u8], target: &LinkTarget, linked: &LinkedDevice) -> Node {
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("xmlns", "md")
        .attr("id", iq_id)
        .attr("t", now_secs().to_string())
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity")
                    .attr("key-index", target.key_index.to_string())
                    .bytes(identity.to_vec())
                    .build(),
                NodeBuilder::new("device")
                    .attr("jid", linked.jid.as_str())
                    .attr("lid", linked.lid.as_str())
                    .build(),
                NodeBuilder::new("platform").attr("name", "smba").build(),
                NodeBuilder::new("biz")
                    .attr("name", target.push_name.as_str())
                    .build(),
            ])
            .build()])
        .build()
}

pub fn stream_error(code: &str) -> Node {
    NodeBuilder::new("stream:error").attr("code", code).build()
}

/// The phone sends its new companion the app-state sync keys. Without this
/// the client waits 10 s for them before it reports `Connected`.
pub async fn share_app_state_keys(
    world: &World,
    phone: &str,
    device: u16,
) -> Result<(), crate::error::SimError> {
    let key = wa::message::AppStateSyncKey {
        key_id: buffa::MessageField::some(wa::message::AppStateSyncKeyId {
            key_id: Some(rand::random::<[u8; 6]>().to_vec()),
        }),
        key_data: buffa::MessageField::some(wa::message::AppStateSyncKeyData {
            key_data: Some(rand::random::<[u8; 32]>().to_vec()),
            fingerprint: buffa::MessageField::some(wa::message::AppStateSyncKeyFingerprint {
                raw_id: Some(rand::random::<u32>() >> 1),
                current_index: Some(0),
                device_indexes: vec![0, u32::from(device)],
            }),
            timestamp: Some(now_secs() as i64 * 1000),
        }),
    };
    let message = wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::APP_STATE_SYNC_KEY_SHARE),
            app_state_sync_key_share: buffa::MessageField::some(
                wa::message::AppStateSyncKeyShare { keys: vec![key] },
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    crate::routing::send_from_endpoint(
        world,
        phone,
        phone,
        device,
        &message.encode_to_vec(),
        crate::routing::Envelope {
            id: new_message_id(),
            kind: "protocol",
            mediatype: None,
            push_name: None,
            timestamp: now_secs(),
            category_peer: true,
            edit: None,
            from_lid: None,
        },
    )
    .await
}

/// A client asked for a pair code (`companion_hello`): remember it so the
/// phone can enter the code.
pub fn on_companion_hello(
    world: &World,
    conn_id: u64,
    phone: &str,
    wrapped_companion_eph: Vec<u8>,
) -> Vec<u8> {
    let pairing_ref = new_message_id().into_bytes();
    let mut st = world.lock();
    if let Some(reg) = st.registrations.get_mut(&conn_id) {
        reg.code = Some(crate::world::CodeRequest {
            phone: phone.to_string(),
            pairing_ref: pairing_ref.clone(),
            wrapped_companion_eph,
            entered: None,
        });
    }
    pairing_ref
}

/// The phone of `phone` enters a pair code shown by a client.
pub async fn enter_code(
    world: &Arc<World>,
    phone: &str,
    code: &str,
    push_name: &str,
) -> Result<LinkedDevice, LinkError> {
    let code = code.trim().to_ascii_uppercase();
    let candidates: Vec<(u64, Vec<u8>)> = {
        let st = world.lock();
        st.registrations
            .iter()
            .filter_map(|(id, reg)| {
                let req = reg.code.as_ref()?;
                (req.phone == phone && req.entered.is_none())
                    .then(|| (*id, req.wrapped_companion_eph.clone()))
            })
            .collect()
    };
    if candidates.is_empty() || !PairCodeUtils::validate_code(&code) {
        return Err(LinkError::UnknownCode);
    }
    // PBKDF2 with 131,072 rounds: keep it off the async workers.
    let account_identity = account_key_for(world, phone)?;
    let (done_tx, done_rx) = oneshot::channel();
    let code_for_task = code.clone();
    let unwrapped = tokio::task::spawn_blocking(move || {
        candidates
            .into_iter()
            .map(|(id, wrapped)| {
                let eph = PairCodeUtils::decrypt_primary_ephemeral_pub(&wrapped, &code_for_task);
                (id, eph)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| LinkError::Internal(e.to_string()))?;
    // CTR decryption never fails, so a wrong code is only found out when the
    // client's bundle does not open. Pick the first waiting connection.
    let Some((conn_id, Ok(companion_eph_pub))) = unwrapped.into_iter().next() else {
        return Err(LinkError::UnknownCode);
    };
    let primary_eph = KeyPair::generate(&mut rand::rng());
    let eph_pub: [u8; 32] = crate::signal::key32(primary_eph.public_key.public_key_bytes());
    let code_for_wrap = code.clone();
    let wrapped_primary = tokio::task::spawn_blocking(move || {
        PairCodeUtils::encrypt_ephemeral_pub(&eph_pub, &code_for_wrap)
    })
    .await
    .map_err(|e| LinkError::Internal(e.to_string()))?;
    {
        let mut st = world.lock();
        let reg = st
            .registrations
            .get_mut(&conn_id)
            .ok_or(LinkError::UnknownCode)?;
        let conn = reg.conn.clone();
        let req = reg.code.as_mut().ok_or(LinkError::UnknownCode)?;
        let notification = NodeBuilder::new("notification")
            .attr("from", SERVER)
            .attr("type", "link_code_companion_reg")
            .attr("id", new_message_id())
            .attr("t", now_secs().to_string())
            .children([NodeBuilder::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .children([
                    NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .bytes(wrapped_primary.to_vec())
                        .build(),
                    NodeBuilder::new("primary_identity_pub")
                        .bytes(account_identity.public_key.public_key_bytes().to_vec())
                        .build(),
                    NodeBuilder::new("link_code_pairing_ref")
                        .bytes(req.pairing_ref.clone())
                        .build(),
                ])
                .build()])
            .build();
        req.entered = Some(EnteredCode {
            primary_eph,
            companion_eph_pub,
            push_name: push_name.to_string(),
            done: Some(done_tx),
        });
        conn.send(notification);
    }
    match tokio::time::timeout(SIGN_TIMEOUT * 2, done_rx).await {
        Ok(Ok(r)) => r.map_err(LinkError::Rejected),
        Ok(Err(_)) => Err(LinkError::Rejected("connection closed".into())),
        Err(_) => Err(LinkError::Timeout),
    }
}

/// The account key of a phone, made (with the account) on first use.
fn account_key_for(world: &Arc<World>, phone: &str) -> Result<KeyPair, LinkError> {
    let endpoint = world
        .endpoint(phone)
        .map_err(|e| LinkError::Internal(e.to_string()))?;
    let mut st = world.lock();
    if !st.accounts.contains_key(phone) {
        let lid = st.lid_by_phone.get(phone).cloned().unwrap_or_default();
        st.accounts.insert(
            phone.to_string(),
            Account {
                phone: phone.to_string(),
                lid,
                push_name: String::new(),
                endpoint,
                account_key: KeyPair::generate(&mut rand::rng()),
                devices: BTreeMap::new(),
                next_device: 1,
            },
        );
    }
    st.accounts
        .get(phone)
        .map(|a| a.account_key.clone())
        .ok_or(LinkError::UnknownCode)
}

/// The client finished its side of the pair-code exchange
/// (`companion_finish`): open its key bundle, derive the ADV secret and link.
pub fn on_companion_finish(
    world: &Arc<World>,
    conn_id: u64,
    wrapped_bundle: &[u8],
    companion_identity: &[u8],
) -> Result<(), String> {
    let (phone, primary_eph, companion_eph_pub, push_name, done) = {
        let mut st = world.lock();
        let reg = st
            .registrations
            .get_mut(&conn_id)
            .ok_or("no registration")?;
        let req = reg.code.as_mut().ok_or("no pair code requested")?;
        let entered = req.entered.as_mut().ok_or("code not entered yet")?;
        (
            req.phone.clone(),
            entered.primary_eph.clone(),
            entered.companion_eph_pub,
            entered.push_name.clone(),
            entered.done.take(),
        )
    };
    let account_key = {
        let st = world.lock();
        st.accounts
            .get(&phone)
            .map(|a| a.account_key.clone())
            .ok_or("no account")?
    };
    let adv_secret = open_key_bundle(
        &primary_eph,
        &account_key,
        &companion_eph_pub,
        wrapped_bundle,
        companion_identity,
    )?;
    let world = world.clone();
    tokio::spawn(async move {
        let result = link(&world, conn_id, &phone, &push_name, &adv_secret)
            .await
            .map_err(|e| e.to_string());
        if let Some(done) = done {
            let _ = done.send(result);
        }
    });
    Ok(())
}

fn open_key_bundle(
    primary_eph: &KeyPair,
    primary_identity: &KeyPair,
    companion_eph_pub: &[u8; 32],
    bundle: &[u8],
    companion_identity: &[u8],
) -> Result<[u8; 32], String> {
    if bundle.len() < 32 + 12 + 16 {
        return Err("key bundle too short".into());
    }
    let agree = |kp: &KeyPair, public: &[u8]| -> Result<[u8; 32], String> {
        let pk = PublicKey::from_djb_public_key_bytes(public).map_err(|e| e.to_string())?;
        let shared = kp
            .private_key
            .calculate_agreement(&pk)
            .map_err(|e| e.to_string())?;
        Ok(crate::signal::key32(&shared))
    };
    let eph_shared = agree(primary_eph, companion_eph_pub)?;
    let id_shared = agree(primary_identity, companion_identity)?;
    let (salt, rest) = bundle.split_at(32);
    let (iv, ct) = rest.split_at(12);
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(
        &eph_shared,
        Some(salt),
        b"link_code_pairing_key_bundle_encryption_key",
        &mut key,
    )
    .map_err(|e| format!("{e:?}"))?;
    let iv: [u8; 12] = iv.try_into().map_err(|_| "bad iv")?;
    let mut plain = Vec::new();
    wacore::libsignal::crypto::aes_256_gcm_decrypt(&key, &iv, b"", ct, &mut plain)
        .map_err(|_| "key bundle does not open: wrong code?".to_string())?;
    if plain.len() != 96 || &plain[..32] != companion_identity {
        return Err("key bundle does not match the companion".into());
    }
    let mut ikm = Vec::with_capacity(96);
    ikm.extend_from_slice(&eph_shared);
    ikm.extend_from_slice(&id_shared);
    ikm.extend_from_slice(&plain[64..96]);
    let mut adv = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&ikm, None, b"adv_secret", &mut adv)
        .map_err(|e| format!("{e:?}"))?;
    Ok(adv)
}
