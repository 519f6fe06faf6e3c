//! In-memory Signal stores and the simulator-side Signal endpoint (`Peer`).
//!
//! A `Peer` is a device whose keys the simulator holds: a fake contact, or the
//! phone (device 0) of a linked account. It encrypts to real clients with
//! their uploaded prekey bundles and decrypts what they send to it.

use std::collections::HashMap;

use async_trait::async_trait;
use wacore::libsignal::protocol::{
    CiphertextMessage, Direction, GenericSignedPreKey, IdentityChange, IdentityKey,
    IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord,
    PreKeySignalMessage, PreKeyStore, ProtocolAddress, SessionRecord, SessionStore, SignalMessage,
    SignalProtocolError, SignedPreKeyId, SignedPreKeyRecord, SignedPreKeyStore, Timestamp,
    UsePQRatchet, message_decrypt, message_encrypt, process_prekey_bundle,
};
use wacore::messages::MessageUtils;

use crate::error::SimError;

type SigResult<T> = Result<T, SignalProtocolError>;

struct Identities {
    key_pair: IdentityKeyPair,
    reg_id: u32,
    known: HashMap<ProtocolAddress, IdentityKey>,
}

#[async_trait]
impl IdentityKeyStore for Identities {
    async fn get_identity_key_pair(&self) -> SigResult<IdentityKeyPair> {
        Ok(self.key_pair.clone())
    }
    async fn get_local_registration_id(&self) -> SigResult<u32> {
        Ok(self.reg_id)
    }
    async fn save_identity(
        &mut self,
        a: &ProtocolAddress,
        id: &IdentityKey,
    ) -> SigResult<IdentityChange> {
        let changed = self.known.get(a).is_some_and(|old| old != id);
        self.known.insert(a.clone(), *id);
        Ok(IdentityChange::from_changed(changed))
    }
    async fn is_trusted_identity(
        &self,
        _: &ProtocolAddress,
        _: &IdentityKey,
        _: Direction,
    ) -> SigResult<bool> {
        // A relinked device has a new identity; like a phone that accepts the
        // "security code changed" notice, the fake trusts it.
        Ok(true)
    }
    async fn get_identity(&self, a: &ProtocolAddress) -> SigResult<Option<IdentityKey>> {
        Ok(self.known.get(a).copied())
    }
}

#[derive(Default)]
struct PreKeys(HashMap<PreKeyId, PreKeyRecord>);

#[async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, id: PreKeyId) -> SigResult<PreKeyRecord> {
        self.0
            .get(&id)
            .cloned()
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }
    async fn save_pre_key(&mut self, id: PreKeyId, r: &PreKeyRecord) -> SigResult<()> {
        self.0.insert(id, r.clone());
        Ok(())
    }
    async fn remove_pre_key(&mut self, id: PreKeyId) -> SigResult<()> {
        self.0.remove(&id);
        Ok(())
    }
}

#[derive(Default)]
struct SignedPreKeys(HashMap<SignedPreKeyId, SignedPreKeyRecord>);

#[async_trait]
impl SignedPreKeyStore for SignedPreKeys {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SigResult<SignedPreKeyRecord> {
        self.0
            .get(&id)
            .cloned()
            .ok_or(SignalProtocolError::InvalidSignedPreKeyId)
    }
    async fn save_signed_pre_key(
        &mut self,
        id: SignedPreKeyId,
        r: &SignedPreKeyRecord,
    ) -> SigResult<()> {
        self.0.insert(id, r.clone());
        Ok(())
    }
}

#[derive(Default)]
struct Sessions(HashMap<ProtocolAddress, SessionRecord>);

#[async_trait]
impl SessionStore for Sessions {
    async fn load_session(&self, a: &ProtocolAddress) -> SigResult<Option<SessionRecord>> {
        Ok(self.0.get(a).cloned())
    }
    async fn has_session(&self, a: &ProtocolAddress) -> SigResult<bool> {
        Ok(self.0.contains_key(a))
    }
    async fn store_session(&mut self, a: &ProtocolAddress, r: SessionRecord) -> SigResult<()> {
        self.0.insert(a.clone(), r);
        Ok(())
    }
}

/// The public half of a device's keys that the server hands out
/// (`encrypt` get `<key>`): registration id, identity, signed prekey and at
/// most one one-time prekey.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub reg_id: u32,
    pub identity: [u8; 32],
    pub signed_prekey: SignedPreKey,
    pub prekey: Option<(u32, [u8; 32])>,
}

#[derive(Clone, Debug)]
pub struct SignedPreKey {
    pub id: u32,
    pub public: [u8; 32],
    pub signature: Vec<u8>,
}

impl Bundle {
    fn to_signal(&self, device: u32) -> Result<PreKeyBundle, SimError> {
        let prekey = match self.prekey {
            Some((id, key)) => Some((id.into(), djb_public(&key)?)),
            None => None,
        };
        PreKeyBundle::new(
            self.reg_id,
            device.into(),
            prekey,
            self.signed_prekey.id.into(),
            djb_public(&self.signed_prekey.public)?,
            self.signed_prekey.signature.clone(),
            IdentityKey::new(djb_public(&self.identity)?),
        )
        .map_err(SimError::signal)
    }
}

fn djb_public(bytes: &[u8; 32]) -> Result<wacore::libsignal::protocol::PublicKey, SimError> {
    wacore::libsignal::protocol::PublicKey::from_djb_public_key_bytes(bytes)
        .map_err(SimError::signal)
}

/// The type of an `<enc>` payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncType {
    PkMsg,
    Msg,
}

impl EncType {
    pub fn as_str(self) -> &'static str {
        match self {
            EncType::PkMsg => "pkmsg",
            EncType::Msg => "msg",
        }
    }
}

/// A device whose Signal keys the simulator holds.
pub struct Peer {
    identity: Identities,
    prekeys: PreKeys,
    signed: SignedPreKeys,
    sessions: Sessions,
    signed_prekey: SignedPreKey,
    next_prekey_id: u32,
    /// Group chains (see [`crate::sender_keys`]).
    pub(crate) sender_keys: crate::sender_keys::SenderKeys,
}

/// The address of a device as the peer's own stores name it.
pub fn address(user: &str, device: u16) -> ProtocolAddress {
    ProtocolAddress::new(user, u32::from(device).into())
}

impl Peer {
    pub fn new() -> Result<Self, SimError> {
        let mut rng = rand::rng();
        let key_pair = IdentityKeyPair::generate(&mut rng);
        let reg_id = rand::random_range(1..16380u32);
        let spk_pair = KeyPair::generate(&mut rng);
        let signature = key_pair
            .private_key()
            .calculate_signature(&spk_pair.public_key.serialize(), &mut rng)
            .map_err(SimError::signal)?;
        let record = SignedPreKeyRecord::new(
            1.into(),
            Timestamp::from_epoch_millis(0),
            &spk_pair,
            &signature,
        );
        let mut signed = SignedPreKeys::default();
        signed.0.insert(1.into(), record);
        Ok(Self {
            identity: Identities {
                key_pair,
                reg_id,
                known: HashMap::new(),
            },
            prekeys: PreKeys::default(),
            signed,
            sessions: Sessions::default(),
            signed_prekey: SignedPreKey {
                id: 1,
                public: key32(spk_pair.public_key.public_key_bytes()),
                signature: signature.to_vec(),
            },
            next_prekey_id: 1,
            sender_keys: Default::default(),
        })
    }

    pub fn identity_public(&self) -> [u8; 32] {
        key32(self.identity.key_pair.public_key().public_key_bytes())
    }

    /// A fresh bundle with a new one-time prekey: each is handed out once.
    pub fn take_bundle(&mut self) -> Bundle {
        let id = self.next_prekey_id;
        self.next_prekey_id += 1;
        let pair = KeyPair::generate(&mut rand::rng());
        self.prekeys
            .0
            .insert(id.into(), PreKeyRecord::new(id.into(), &pair));
        Bundle {
            reg_id: self.identity.reg_id,
            identity: self.identity_public(),
            signed_prekey: self.signed_prekey.clone(),
            prekey: Some((id, key32(pair.public_key.public_key_bytes()))),
        }
    }

    pub fn has_session(&self, to: &ProtocolAddress) -> bool {
        self.sessions.0.contains_key(to)
    }

    /// Forgets the session with a device (it relinked with new keys).
    pub fn forget(&mut self, to: &ProtocolAddress) {
        self.sessions.0.remove(to);
    }

    /// Encrypts a serialized `wa::Message` to a device. `bundle` is needed
    /// only when there is no session yet (see [`Peer::has_session`]).
    pub async fn encrypt(
        &mut self,
        to: &ProtocolAddress,
        bundle: Option<&Bundle>,
        plaintext: &[u8],
    ) -> Result<(EncType, Vec<u8>), SimError> {
        if !self.has_session(to) {
            let bundle = bundle.ok_or_else(|| SimError::NoBundle(to.to_string()))?;
            let signal_bundle = bundle.to_signal(to.device_id().into())?;
            process_prekey_bundle(
                to,
                &mut self.sessions,
                &mut self.identity,
                &signal_bundle,
                &mut send_rng(),
                UsePQRatchet::No,
            )
            .await
            .map_err(SimError::signal)?;
        }
        let padded = MessageUtils::pad_message_v2(plaintext.to_vec());
        let ct = message_encrypt(&padded, to, &mut self.sessions, &mut self.identity)
            .await
            .map_err(SimError::signal)?;
        match ct {
            CiphertextMessage::SignalMessage(m) => Ok((EncType::Msg, m.serialized().to_vec())),
            CiphertextMessage::PreKeySignalMessage(m) => {
                Ok((EncType::PkMsg, m.serialized().to_vec()))
            }
            _ => Err(SimError::Protocol("unexpected ciphertext kind".into())),
        }
    }

    /// Decrypts an `<enc>` payload from a device and strips the padding.
    pub async fn decrypt(
        &mut self,
        from: &ProtocolAddress,
        kind: EncType,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, SimError> {
        let msg = match kind {
            EncType::PkMsg => CiphertextMessage::PreKeySignalMessage(
                PreKeySignalMessage::try_from(ciphertext).map_err(SimError::signal)?,
            ),
            EncType::Msg => CiphertextMessage::SignalMessage(
                SignalMessage::try_from(ciphertext).map_err(SimError::signal)?,
            ),
        };
        let result = message_decrypt(
            &msg,
            from,
            &mut self.sessions,
            &mut self.identity,
            &mut self.prekeys,
            &self.signed,
            &mut send_rng(),
            UsePQRatchet::No,
        )
        .await
        .map_err(SimError::signal)?;
        if let Some(used) = result.consumed_prekey_id {
            self.prekeys.0.remove(&used);
        }
        let unpadded = MessageUtils::unpad_message_ref(&result.plaintext, 2)
            .map_err(|e| SimError::Protocol(format!("bad padding: {e}")))?;
        Ok(unpadded.to_vec())
    }
}

/// An RNG that may live across `.await` (the thread RNG may not).
fn send_rng() -> rand::rngs::StdRng {
    rand::make_rng()
}

pub fn key32(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}
