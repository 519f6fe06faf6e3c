//! Media retry: a device that cannot download a media message (expired on
//! the CDN) sends `<receipt type="server-error">` with an encrypted
//! `ServerErrorReceipt`; the sender's phone uploads the file again and
//! answers with `<notification type="mediaretry">` carrying an encrypted
//! `MediaRetryNotification{stanza_id, direct_path, result}`.
//!
//! Both payloads are AES-256-GCM under a key derived from the message's
//! media key (HKDF, "WhatsApp Media Retry Notification"), the message id as
//! associated data: only the sender's phone can answer, and here that phone
//! is a simulated contact (wacore/src/media_retry.rs is the client side).

use buffa::Message as _;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::NodeContent;
use waproto::whatsapp as wa;
use waproto::whatsapp::media_retry_notification::ResultType;

use crate::media::Blob;
use crate::world::{SERVER, World, now_secs};

const HKDF_INFO: &[u8] = b"WhatsApp Media Retry Notification";

/// `<error code>` of a notification the client reads without decrypting.
const ERR_NOT_FOUND: &str = "2";
const ERR_DECRYPTION: &str = "3";

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

fn bytes_of<'a>(node: Option<&'a Node>, tag: &str) -> Option<&'a [u8]> {
    match node?.get_optional_child(tag)?.content.as_ref() {
        Some(NodeContent::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn retry_key(media_key: &[u8]) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(media_key, None, HKDF_INFO, &mut key).ok()?;
    Some(key)
}

/// Handles a device's server-error receipt and queues the answer for it.
pub fn on_server_error(world: &World, phone: &str, device: u16, receipt: &Node) {
    let id = attr(receipt, "id").unwrap_or_default();
    let rmr = receipt.get_optional_child("rmr");
    let chat = rmr.and_then(|r| attr(r, "jid")).unwrap_or_default();
    // The answer echoes the `<rmr>` (which chat, from whom), as WhatsApp's.
    let answer = |mut children: Vec<Node>| {
        children.extend(rmr.cloned());
        let node = NodeBuilder::new("notification")
            .attr("from", format!("{phone}@{SERVER}"))
            .attr("type", "mediaretry")
            .attr("id", id.as_str())
            .attr("t", now_secs().to_string())
            .children(children)
            .build();
        world.deliver(phone, device, node);
    };
    // Only a simulated contact's phone can upload again, and only what it
    // sent to this account.
    let sent = world.media.sent(&id).filter(|s| {
        s.to == phone && crate::iq::resolve(world, &chat).is_some_and(|a| a.phone == s.from)
    });
    let Some(sent) = sent else {
        tracing::debug!("{phone}:{device} asked to re-upload unknown media {id}");
        answer(vec![error_node(ERR_NOT_FOUND)]);
        return;
    };
    let Some(key) = retry_key(&sent.media_key) else {
        answer(vec![error_node(ERR_DECRYPTION)]);
        return;
    };
    let enc = receipt.get_optional_child("encrypt");
    let asked = match (bytes_of(enc, "enc_p"), bytes_of(enc, "enc_iv")) {
        (Some(p), Some(iv)) => {
            wacore::media_retry::decrypt_media_retry_notification(&sent.media_key, &id, iv, p)
                .ok()
                .and_then(|plain| wa::ServerErrorReceipt::decode_from_slice(&plain).ok())
        }
        _ => None,
    };
    if asked.and_then(|r| r.stanza_id).as_deref() != Some(id.as_str()) {
        // Not encrypted with this message's media key.
        answer(vec![error_node(ERR_DECRYPTION)]);
        return;
    }
    let notification = if sent.reupload {
        let path = world.media.put(
            sent.media_type,
            Blob {
                data: sent.blob.clone(),
                enc_sha256: sent.enc_sha256,
                expired: false,
            },
        );
        world.media.count_reupload();
        wa::MediaRetryNotification {
            stanza_id: Some(id.clone()),
            direct_path: Some(path),
            result: Some(ResultType::SUCCESS),
            ..Default::default()
        }
    } else {
        // The phone no longer has the file.
        wa::MediaRetryNotification {
            stanza_id: Some(id.clone()),
            result: Some(ResultType::NOT_FOUND),
            ..Default::default()
        }
    };
    let iv: [u8; 12] = rand::random();
    let mut ct = Vec::new();
    if let Err(e) = wacore::libsignal::crypto::aes_256_gcm_encrypt(
        &key,
        &iv,
        id.as_bytes(),
        &notification.encode_to_vec(),
        &mut ct,
    ) {
        tracing::warn!("media retry {id}: {e}");
        answer(vec![error_node(ERR_DECRYPTION)]);
        return;
    }
    answer(vec![
        NodeBuilder::new("encrypt")
            .children([
                NodeBuilder::new("enc_p").bytes(ct).build(),
                NodeBuilder::new("enc_iv").bytes(iv.to_vec()).build(),
            ])
            .build(),
    ]);
}

fn error_node(code: &str) -> Node {
    NodeBuilder::new("error").attr("code", code).build()
}
