//! wa-sim: a protocol-level WhatsApp server simulator.
//!
//! It speaks the real WhatsApp Web protocol (Noise handshake, binary nodes,
//! Signal-encrypted messages) to unmodified `whatsapp-rust` clients, and it
//! plays every other party: the phones that link devices, fake contacts that
//! send and receive messages, and the server that routes between accounts.
//! An admin HTTP API on the same port drives the fake parties and injects
//! faults. Clients must be built with whatsapp-rust's
//! `danger-skip-cert-chain-verify` feature: the simulator cannot sign with
//! WhatsApp's root key.
//!
//! Media goes through a second listener, an HTTPS CDN on `127.0.0.1` with a
//! self-signed certificate ([`SimHandle::media_host`],
//! [`SimHandle::media_ca_pem`]): give the client an HTTP client that trusts
//! that certificate (`BotBuilder::with_http_client`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = wa_sim::Simulator::start("127.0.0.1:0".parse()?).await?;
//! println!("{} {}", sim.ws_url(), sim.admin_url());
//! # Ok(()) }
//! ```

pub mod admin;
mod chat;
mod chat_admin;
mod conn;
mod error;
mod group_admin;
mod group_iq;
mod group_messages;
mod group_wire;
mod groups;
mod iq;
mod kinds;
mod lids;
mod lookups;
mod media;
mod media_message;
mod media_retry;
mod noise;
mod pairing;
mod routing;
mod sender_keys;
mod signal;
mod stanza;
pub mod version;
mod world;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use waproto::whatsapp as wa;

pub use chat::{
    CallRecord, CallState, ChatState, ChatStateRecord, Presence, PresenceRecord, ReceiptKind,
    ReceiptRecord,
};
pub use error::SimError;
pub use group_wire::{GroupView, ParticipantView};
pub use groups::{Addressing, NewGroup, Role};
pub use kinds::{Card, Compose, ComposeError};
pub use lookups::{Profile, ProfileUpdate};
pub use media::MediaStats;
pub use media_message::{ContactMedia, MediaKind};
pub use pairing::LinkError;
pub use routing::SendError;
pub use waproto::whatsapp as proto;
pub use world::{InboxMessage, LinkedDevice, World};

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds `addr` (port 0 for a free port) and serves the WebSocket
    /// endpoint `/ws/chat`, the service worker `/sw.js` and the admin API
    /// `/admin/*`, and the media CDN over HTTPS on `127.0.0.1` (a free
    /// port), until the handle is shut down or dropped.
    pub async fn start(addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(World::new());
        let media = media::start(world.clone())?;
        let app = router(world.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok(SimHandle {
            addr,
            world,
            stop: Some(stop_tx),
            task: Some(task),
            media: Some(media),
        })
    }
}

/// The router of a simulator over a given world.
pub fn router(world: Arc<World>) -> Router {
    Router::new()
        .route("/ws/chat", get(ws_chat))
        .merge(admin::router())
        .merge(version::router())
        .with_state(world)
}

async fn ws_chat(ws: WebSocketUpgrade, State(world): State<Arc<World>>) -> Response {
    ws.read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(32 << 20)
        .on_upgrade(move |socket| conn::serve(socket, world))
}

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    world: Arc<World>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    media: Option<media::MediaServer>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://HOST:PORT/ws/chat`, for `TokioWebSocketTransportFactory::with_url`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// `http://HOST:PORT/admin`, the base of the admin API.
    pub fn admin_url(&self) -> String {
        format!("http://{}/admin", self.addr)
    }

    /// `http://HOST:PORT/sw.js`: the service worker that advertises the
    /// current WhatsApp Web version (`"client_revision":N`, read by
    /// `wacore::version::parse_sw_js`; see `GET /admin/version`).
    pub fn sw_js_url(&self) -> String {
        format!("http://{}/sw.js", self.addr)
    }

    /// `127.0.0.1:PORT`: the media CDN's host, as `media_conn` hands it out.
    pub fn media_host(&self) -> String {
        self.world.media.host().unwrap_or_default().to_string()
    }

    /// The media CDN's self-signed certificate (PEM): the one root a
    /// client's HTTP client must trust to upload and download media (also
    /// `GET /admin/media/certificate`).
    pub fn media_ca_pem(&self) -> String {
        self.world.media.cert_pem().unwrap_or_default().to_string()
    }

    /// The media CDN's counters (see `GET /admin/media/stats`).
    pub fn media_stats(&self) -> MediaStats {
        self.world.media.stats()
    }

    /// The simulator's state, for in-process callers that prefer a direct
    /// API to HTTP.
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    /// The phone of `phone` scans a QR string (see `POST /admin/scan`).
    pub async fn scan(
        &self,
        qr: &str,
        phone: &str,
        push_name: &str,
    ) -> Result<LinkedDevice, LinkError> {
        pairing::scan(&self.world, qr, phone, push_name).await
    }

    /// The phone of `phone` enters a pair code (see `POST /admin/pair-code`).
    /// An account linked without a push name gets `+PHONE`.
    pub async fn enter_pair_code(
        &self,
        phone: &str,
        code: &str,
        push_name: &str,
    ) -> Result<LinkedDevice, LinkError> {
        pairing::enter_code(&self.world, phone, code, push_name).await
    }

    /// A contact sends a text to every device of an account; returns its id.
    pub async fn contact_send(
        &self,
        from: &str,
        to: &str,
        text: &str,
        push_name: Option<&str>,
    ) -> Result<String, SendError> {
        routing::contact_send_text(&self.world, from, to, text, push_name).await
    }

    /// A contact sends any message to every device of an account; returns
    /// its id.
    pub async fn contact_send_message(
        &self,
        from: &str,
        to: &str,
        message: &wa::Message,
        push_name: Option<&str>,
    ) -> Result<String, SendError> {
        routing::contact_send_message(&self.world, from, to, message, push_name).await
    }

    /// A contact sends a message of any kind but media: a text (with a
    /// quote or mentions), a location, contact cards, a reaction, an edit or
    /// revoke of a message it sent, a poll or a vote (see [`Compose`], the
    /// body of `POST /admin/contacts/{phone}/messages`); returns its id.
    pub async fn contact_compose(
        &self,
        from: &str,
        to: &str,
        message: &Compose,
        push_name: Option<&str>,
    ) -> Result<String, ComposeError> {
        kinds::contact_send(&self.world, from, to, message, push_name).await
    }

    /// A contact sends a file (image, video, audio, voice note, document or
    /// sticker) to every device of an account; returns the message id.
    pub async fn contact_send_media(
        &self,
        from: &str,
        to: &str,
        media: ContactMedia,
        push_name: Option<&str>,
    ) -> Result<String, SendError> {
        media_message::contact_send_media(&self.world, from, to, media, push_name).await
    }

    /// What a contact has received so far, oldest first.
    pub fn inbox(&self, phone: &str) -> Vec<InboxMessage> {
        let endpoint = self.world.lock().endpoints.get(phone).cloned();
        endpoint
            .and_then(|e| e.inbox.lock().ok().map(|i| i.clone()))
            .unwrap_or_default()
    }

    /// [`SimHandle::contact_send_message`] with a corrupted ciphertext: the
    /// devices cannot decrypt it and raise `UndecryptableMessage` (see
    /// `"undecryptable": true` in `POST /admin/contacts/{phone}/messages`).
    pub async fn contact_send_undecryptable(
        &self,
        from: &str,
        to: &str,
        message: &wa::Message,
    ) -> Result<String, SendError> {
        chat::undecryptable(routing::contact_send_message(
            &self.world,
            from,
            to,
            message,
            None,
        ))
        .await
    }

    /// The read and played receipts devices sent to a contact, one per
    /// message id, oldest first (`GET /admin/contacts/{phone}/receipts`).
    pub fn contact_receipts(&self, contact: &str) -> Vec<ReceiptRecord> {
        self.world.chat.receipts(contact)
    }

    /// The chat states devices sent to a contact, oldest first
    /// (`GET /admin/contacts/{phone}/chatstates`).
    pub fn contact_chatstates(&self, contact: &str) -> Vec<ChatStateRecord> {
        self.world.chat.chatstates(contact)
    }

    /// The calls a contact placed and what became of them
    /// (`GET /admin/contacts/{phone}/calls`).
    pub fn contact_calls(&self, contact: &str) -> Vec<CallRecord> {
        self.world.chat.calls(contact)
    }

    /// The presence an account's devices last announced
    /// (`GET /admin/accounts/{phone}/presence`).
    pub fn account_presence(&self, account: &str) -> PresenceRecord {
        self.world.chat.presence(account)
    }

    /// How lookups answer for a number (`GET /admin/contacts/{phone}/profile`).
    pub fn profile(&self, phone: &str) -> Profile {
        self.world.profiles.get(phone)
    }

    /// The LID JID (`<digits>@lid`) of a number, allocated on first use;
    /// `None` when it is not on WhatsApp (the `lid` of
    /// `GET /admin/contacts/{phone}/profile`).
    pub fn lid(&self, phone: &str) -> Option<String> {
        lids::revealed(&self.world, phone)
    }

    /// Changes how lookups answer for a number (and whether it sends from
    /// its LID: `lid_mode`)
    /// (`POST /admin/contacts/{phone}/profile`); returns the result.
    pub fn set_profile(&self, phone: &str, update: ProfileUpdate) -> Profile {
        self.world.profiles.update(phone, update)
    }

    /// A contact shows a chat state to every linked device of an account
    /// (`POST /admin/contacts/{phone}/chatstate`).
    pub fn contact_chatstate(
        &self,
        from: &str,
        to: &str,
        state: ChatState,
    ) -> Result<(), SendError> {
        chat::contact_chatstate(&self.world, from, to, state)
    }

    /// A contact shows its presence to every linked device of an account
    /// (`POST /admin/contacts/{phone}/presence`).
    pub fn contact_presence(
        &self,
        from: &str,
        to: &str,
        presence: Presence,
        last_seen: Option<u64>,
    ) -> Result<(), SendError> {
        chat::contact_presence(&self.world, from, to, presence, last_seen)
    }

    /// A contact calls an account; returns the call id
    /// (`POST /admin/contacts/{phone}/call`).
    pub fn contact_call(&self, from: &str, to: &str, video: bool) -> Result<String, SendError> {
        chat::contact_call(&self.world, from, to, video)
    }

    /// A contact tells an account's devices it changed its number
    /// (`POST /admin/contacts/{phone}/change-number`).
    pub fn contact_change_number(
        &self,
        from: &str,
        to: &str,
        new_phone: &str,
    ) -> Result<(), SendError> {
        chat::contact_change_number(&self.world, from, to, new_phone)
    }

    /// Every group, oldest first (`GET /admin/groups`).
    pub fn groups(&self) -> Vec<GroupView> {
        let all = self.world.groups.all();
        all.iter()
            .map(|g| group_wire::view(&self.world, g))
            .collect()
    }

    /// A group by id, with or without `@g.us` (`GET /admin/groups/{id}`).
    pub fn group(&self, id: &str) -> Option<GroupView> {
        let g = self.world.groups.get(id)?;
        Some(group_wire::view(&self.world, &g))
    }

    /// `creator` (any number: a contact or an account) creates a group
    /// (`POST /admin/groups`); every member's devices are told. Numbers not
    /// on WhatsApp are left out. Refusals carry WhatsApp's code and text.
    pub fn create_group(&self, creator: &str, new: NewGroup) -> Result<GroupView, String> {
        let (g, _) = groups::create(&self.world, creator, new).map_err(|r| r.to_string())?;
        Ok(group_wire::view(&self.world, &g))
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Live WebSocket connections do not end by themselves; abort.
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        if let Some(media) = self.media.take() {
            media.shutdown().await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(media) = &self.media {
            media.abort();
        }
    }
}
