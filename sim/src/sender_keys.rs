//! Sender keys ("group keys") of the simulator's own endpoints, in memory.
//!
//! A group message is encrypted once with the sender's chain (`skmsg`);
//! each member device first gets the chain's current state in a sender-key
//! distribution message (SKDM), sent pairwise (`pkmsg`/`msg`). An endpoint
//! keeps its own chain per group and the chains of everyone that sent it an
//! SKDM, keyed `group JID` + the sender's Signal address. The naming is the
//! simulator's own: real clients keep theirs on their side.

use std::collections::HashMap;

use async_trait::async_trait;
use wacore::libsignal::protocol::{
    SenderKeyDistributionMessage, SenderKeyName, SenderKeyRecord, SenderKeyStore,
    SignalProtocolError, create_sender_key_distribution_message, group_decrypt, group_encrypt,
    process_sender_key_distribution_message,
};
use wacore::messages::MessageUtils;

use crate::error::SimError;
use crate::signal::Peer;

/// The sender-key chains an endpoint knows.
#[derive(Default)]
pub struct SenderKeys(HashMap<String, SenderKeyRecord>);

#[async_trait]
impl SenderKeyStore for SenderKeys {
    async fn store_sender_key(
        &mut self,
        name: &SenderKeyName,
        record: SenderKeyRecord,
    ) -> Result<(), SignalProtocolError> {
        self.0.insert(name.cache_key().to_string(), record);
        Ok(())
    }

    async fn load_sender_key(
        &self,
        name: &SenderKeyName,
    ) -> Result<Option<SenderKeyRecord>, SignalProtocolError> {
        Ok(self.0.get(name.cache_key()).cloned())
    }
}

/// The name of a sender's chain in a group: `GROUP_JID` and the sender's
/// device as `PHONE.DEVICE` (the simulator's Signal address of it).
fn name(group_jid: &str, sender_phone: &str, sender_device: u16) -> SenderKeyName {
    SenderKeyName::new(
        group_jid.to_string(),
        crate::signal::address(sender_phone, sender_device).to_string(),
    )
}

impl Peer {
    /// The endpoint's own SKDM for a group (its chain is made on first use).
    pub async fn own_skdm(
        &mut self,
        group_jid: &str,
        own_phone: &str,
    ) -> Result<Vec<u8>, SimError> {
        let name = name(group_jid, own_phone, 0);
        let skdm = create_sender_key_distribution_message(
            &name,
            &mut self.sender_keys,
            &mut rand::make_rng::<rand::rngs::StdRng>(),
        )
        .await
        .map_err(SimError::signal)?;
        Ok(skdm.serialized().to_vec())
    }

    /// Encrypts a serialized `wa::Message` with the endpoint's own chain in a
    /// group (an `skmsg`); [`Peer::own_skdm`] must have made the chain.
    pub async fn group_encrypt(
        &mut self,
        group_jid: &str,
        own_phone: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SimError> {
        let padded = MessageUtils::pad_message_v2(plaintext.to_vec());
        let msg = group_encrypt(
            &mut self.sender_keys,
            &name(group_jid, own_phone, 0),
            &padded,
            &mut rand::make_rng::<rand::rngs::StdRng>(),
        )
        .await
        .map_err(SimError::signal)?;
        Ok(msg.serialized().to_vec())
    }

    /// Forgets the endpoint's own chain in a group: the next message starts
    /// a new one, which every member must get again (after a member left,
    /// so that it cannot read on).
    pub fn rotate_own_sender_key(&mut self, group_jid: &str, own_phone: &str) {
        self.sender_keys
            .0
            .remove(name(group_jid, own_phone, 0).cache_key());
    }

    /// Takes in the chain another device sent in an SKDM.
    pub async fn process_skdm(
        &mut self,
        group_jid: &str,
        sender_phone: &str,
        sender_device: u16,
        skdm: &[u8],
    ) -> Result<(), SimError> {
        let skdm = SenderKeyDistributionMessage::try_from(skdm).map_err(SimError::signal)?;
        process_sender_key_distribution_message(
            &name(group_jid, sender_phone, sender_device),
            &skdm,
            &mut self.sender_keys,
        )
        .await
        .map_err(SimError::signal)
    }

    /// Decrypts an `skmsg` of another device and strips the padding.
    pub async fn group_decrypt(
        &mut self,
        group_jid: &str,
        sender_phone: &str,
        sender_device: u16,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, SimError> {
        let padded = group_decrypt(
            ciphertext,
            &mut self.sender_keys,
            &name(group_jid, sender_phone, sender_device),
        )
        .await
        .map_err(SimError::signal)?;
        let unpadded = MessageUtils::unpad_message_ref(&padded, 2)
            .map_err(|e| SimError::Protocol(format!("bad padding: {e}")))?;
        Ok(unpadded.to_vec())
    }
}
