//! The server side of WhatsApp's Noise handshake.
//!
//! A new device opens with Noise XX; a paired device opens with IK (its
//! ClientHello already carries its static key). IK is answered with the
//! XXfallback pattern, which needs no knowledge of the key the client cached
//! and so works across simulator restarts; the client logs one warning and
//! completes. After the handshake every frame is AES-256-GCM with one counter
//! per direction.

use buffa::Message as _;
use wacore::handshake::{NoiseCipher, NoiseHandshake};
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::consts::{NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER};
use waproto::whatsapp as wa;

use crate::error::SimError;

/// The simulator's long-lived Noise identity and the (zero-signed) certificate
/// chain that vouches for it. Clients built with `danger-skip-cert-chain-verify`
/// accept the chain; a production client rejects it, as it should.
pub struct ServerIdentity {
    static_kp: KeyPair,
    static_pub: [u8; 32],
    cert_chain: Vec<u8>,
}

impl ServerIdentity {
    pub fn generate() -> Self {
        let static_kp = KeyPair::generate(&mut rand::rng());
        let mut static_pub = [0u8; 32];
        static_pub.copy_from_slice(static_kp.public_key.public_key_bytes());
        let cert_chain = wacore_noise::test_util::build_cert_chain_bytes(&static_pub);
        Self {
            static_kp,
            static_pub,
            cert_chain,
        }
    }
}

/// The transport keys of one connection, with their counters.
pub struct Ciphers {
    pub read: NoiseCipher,
    pub write: NoiseCipher,
}

/// What the responder learned from the handshake.
pub struct Handshaken {
    pub ciphers: Ciphers,
    pub client_static: [u8; 32],
    pub payload: wa::ClientPayload,
}

/// First step: parse the ClientHello and produce the ServerHello to send.
pub struct Responder {
    noise: NoiseHandshake,
    server_eph: KeyPair,
}

/// Strips the connection header (once per connection) from the first message.
pub fn strip_conn_header(first: &[u8]) -> &[u8] {
    first.strip_prefix(&WA_CONN_HEADER[..]).unwrap_or(first)
}

impl Responder {
    /// Reads a ClientHello frame payload and returns the responder state plus
    /// the encoded ServerHello (not yet framed).
    pub fn respond(
        server: &ServerIdentity,
        client_hello: &[u8],
    ) -> Result<(Self, Vec<u8>), SimError> {
        let msg = wa::HandshakeMessage::decode_from_slice(client_hello)
            .map_err(|e| SimError::Handshake(format!("bad ClientHello: {e}")))?;
        let hello = msg
            .client_hello
            .into_option()
            .ok_or_else(|| SimError::Handshake("no client_hello".into()))?;
        let client_eph: [u8; 32] = hello
            .ephemeral
            .ok_or_else(|| SimError::Handshake("no ephemeral".into()))?
            .try_into()
            .map_err(|_| SimError::Handshake("ephemeral is not 32 bytes".into()))?;
        // An IK hello carries the client's static key; we answer it with
        // XXfallback, which reuses the ephemeral it already sent.
        let pattern = if hello.r#static.is_some() {
            NOISE_PATTERN_XXFALLBACK
        } else {
            NOISE_PATTERN_XX
        };
        let mut noise = NoiseHandshake::new(pattern, &WA_CONN_HEADER).map_err(hs)?;
        noise.authenticate(&client_eph);
        let server_eph = KeyPair::generate(&mut rand::rng());
        let server_eph_pub = server_eph.public_key.public_key_bytes().to_vec();
        noise.authenticate(&server_eph_pub);
        noise
            .mix_shared_secret(server_eph.private_key.serialize(), &client_eph)
            .map_err(hs)?;
        let enc_static = noise.encrypt(&server.static_pub).map_err(hs)?;
        noise
            .mix_shared_secret(server.static_kp.private_key.serialize(), &client_eph)
            .map_err(hs)?;
        let enc_cert = noise.encrypt(&server.cert_chain).map_err(hs)?;
        let server_hello = wa::HandshakeMessage {
            server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
                ephemeral: Some(server_eph_pub),
                r#static: Some(enc_static),
                payload: Some(enc_cert),
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok((Self { noise, server_eph }, server_hello.encode_to_vec()))
    }

    /// Reads the ClientFinish and completes the handshake.
    pub fn finish(mut self, client_finish: &[u8]) -> Result<Handshaken, SimError> {
        let msg = wa::HandshakeMessage::decode_from_slice(client_finish)
            .map_err(|e| SimError::Handshake(format!("bad ClientFinish: {e}")))?;
        let finish = msg
            .client_finish
            .into_option()
            .ok_or_else(|| SimError::Handshake("no client_finish".into()))?;
        let enc_static = finish
            .r#static
            .ok_or_else(|| SimError::Handshake("no static in finish".into()))?;
        let enc_payload = finish
            .payload
            .ok_or_else(|| SimError::Handshake("no payload in finish".into()))?;
        let client_static: [u8; 32] = self
            .noise
            .decrypt(&enc_static)
            .map_err(hs)?
            .try_into()
            .map_err(|_| SimError::Handshake("client static is not 32 bytes".into()))?;
        self.noise
            .mix_shared_secret(self.server_eph.private_key.serialize(), &client_static)
            .map_err(hs)?;
        let payload_bytes = self.noise.decrypt(&enc_payload).map_err(hs)?;
        let payload = wa::ClientPayload::decode_from_slice(&payload_bytes)
            .map_err(|e| SimError::Handshake(format!("bad ClientPayload: {e}")))?;
        // `finish` names the keys from the initiator's side: its write key is
        // our read key.
        let (client_write, client_read) = self.noise.finish().map_err(hs)?;
        Ok(Handshaken {
            ciphers: Ciphers {
                read: client_write,
                write: client_read,
            },
            client_static,
            payload,
        })
    }
}

fn hs(e: impl std::fmt::Display) -> SimError {
    SimError::Handshake(e.to_string())
}
