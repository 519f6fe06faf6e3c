//! One device connection: WebSocket in, Noise handshake, then encrypted
//! binary nodes both ways.
//!
//! The reader (this task) decodes frames and hands each stanza to
//! [`crate::stanza::handle`]; a writer task owns the socket's sink and the
//! write cipher, fed through an unbounded channel, so that any part of the
//! simulator can push a stanza to a device without waiting on the socket.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use wacore::framing::{FrameDecoder, encode_frame};
use wacore_binary::Node;

use crate::error::SimError;
use crate::noise::{Responder, strip_conn_header};
use crate::stanza::{self, Peer as ConnPeer};
use crate::world::World;

/// What the rest of the simulator can ask of a connection.
pub enum Out {
    Node(Node),
    /// Send this stanza (a stream error or failure), then close.
    Final(Node),
    /// Close without a word, like a dropped TCP connection.
    Drop,
}

/// A handle to a live connection, kept by the world.
#[derive(Clone)]
pub struct ConnHandle {
    pub id: u64,
    tx: mpsc::UnboundedSender<Out>,
}

impl ConnHandle {
    pub fn send(&self, node: Node) -> bool {
        self.tx.send(Out::Node(node)).is_ok()
    }
    pub fn send_final(&self, node: Node) {
        let _ = self.tx.send(Out::Final(node));
    }
    pub fn drop_connection(&self) {
        let _ = self.tx.send(Out::Drop);
    }
}

/// Reads one binary WebSocket message, skipping pings and such.
async fn next_binary(rx: &mut futures::stream::SplitStream<WebSocket>) -> Option<Vec<u8>> {
    while let Some(msg) = rx.next().await {
        match msg {
            Ok(Message::Binary(b)) => return Some(b.to_vec()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
    None
}

/// Reads until one whole frame is buffered.
async fn next_frame(
    rx: &mut futures::stream::SplitStream<WebSocket>,
    decoder: &mut FrameDecoder,
) -> Option<Vec<u8>> {
    loop {
        if let Some(frame) = decoder.decode_frame() {
            return Some(frame.to_vec());
        }
        let data = next_binary(rx).await?;
        decoder.feed(&data);
    }
}

pub async fn serve(socket: WebSocket, world: Arc<World>) {
    if let Err(e) = serve_inner(socket, world).await {
        debug!("connection ended: {e}");
    }
}

async fn serve_inner(socket: WebSocket, world: Arc<World>) -> Result<(), SimError> {
    let (mut sink, mut rx) = socket.split();
    let mut decoder = FrameDecoder::new();

    // Handshake: the first message starts with the connection header.
    let first = next_binary(&mut rx).await.ok_or(SimError::Closed)?;
    decoder.feed(strip_conn_header(&first));
    let hello = next_frame(&mut rx, &mut decoder)
        .await
        .ok_or(SimError::Closed)?;
    let (responder, server_hello) = Responder::respond(&world.server, &hello)?;
    let framed =
        encode_frame(&server_hello, None).map_err(|e| SimError::Handshake(e.to_string()))?;
    sink.send(Message::Binary(framed.into()))
        .await
        .map_err(|_| SimError::Closed)?;
    let finish = next_frame(&mut rx, &mut decoder)
        .await
        .ok_or(SimError::Closed)?;
    let done = responder.finish(&finish)?;
    let read_cipher = done.ciphers.read;
    let write_cipher = done.ciphers.write;

    // Writer task: the only owner of the sink and the write counter.
    let (tx, mut out_rx) = mpsc::unbounded_channel::<Out>();
    let conn_id = world.next_conn_id();
    let handle = ConnHandle { id: conn_id, tx };
    let stall_world = world.clone();
    let writer = tokio::spawn(async move {
        let mut counter: u32 = 0;
        while let Some(out) = out_rx.recv().await {
            let (node, last) = match out {
                Out::Node(n) => (n, false),
                Out::Final(n) => (n, true),
                Out::Drop => break,
            };
            stall_world.wait_stall(conn_id).await;
            let plain = match wacore_binary::marshal::marshal(&node) {
                Ok(p) => p,
                Err(e) => {
                    warn!("cannot marshal {}: {e}", node.tag);
                    continue;
                }
            };
            let Ok(ct) = write_cipher.encrypt_with_counter(counter, &plain) else {
                break;
            };
            counter = counter.wrapping_add(1);
            let Ok(frame) = encode_frame(&ct, None) else {
                break;
            };
            if sink.send(Message::Binary(frame.into())).await.is_err() || last {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let peer = stanza::on_connect(&world, handle.clone(), done.client_static, &done.payload);
    let result = read_loop(&world, &peer, &handle, &mut rx, &mut decoder, &read_cipher).await;
    world.on_disconnect(&peer, conn_id);
    // Make the writer finish what it has and stop.
    handle.drop_connection();
    let _ = writer.await;
    result
}

async fn read_loop(
    world: &Arc<World>,
    peer: &ConnPeer,
    handle: &ConnHandle,
    rx: &mut futures::stream::SplitStream<WebSocket>,
    decoder: &mut FrameDecoder,
    read_cipher: &wacore::handshake::NoiseCipher,
) -> Result<(), SimError> {
    let mut counter: u32 = 0;
    loop {
        let Some(frame) = next_frame(rx, decoder).await else {
            return Ok(());
        };
        let mut buf = frame;
        read_cipher
            .decrypt_in_place_with_counter(counter, &mut buf)
            .map_err(|e| SimError::Protocol(format!("frame decrypt: {e}")))?;
        counter = counter.wrapping_add(1);
        let unpacked = wacore_binary::util::unpack(&buf)
            .map_err(|e| SimError::Protocol(format!("unpack: {e}")))?;
        let node = wacore_binary::marshal::unmarshal_ref(&unpacked)
            .map_err(|e| SimError::Protocol(format!("unmarshal: {e}")))?
            .to_owned();
        world.wait_stall(handle.id).await;
        if matches!(peer, ConnPeer::Rejected) {
            return Ok(());
        }
        stanza::handle(world, peer, handle, node).await;
    }
}
