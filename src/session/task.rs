//! The task that runs one session: it alone changes the session's state.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{QrCode, SessionError, SessionView, Status, now_secs};
use crate::config::Config;
use crate::store::{MessageRecord, PollRecord, SessionRecord, Store};
use crate::webhook::{EventKind, SubscriptionChange, Webhooks};
use crate::whatsapp::{
    ActionOutcome, ChatAction, Extras, Link, LinkOptions, Outgoing, Sent, WaEvent,
};

use super::inbox::{SessionInbox, Unread};

type Reply<T> = oneshot::Sender<Result<T, SessionError>>;

/// What can be asked of a session's task.
pub enum Command {
    Start,
    Stop(oneshot::Sender<()>),
    /// Stops the client and starts a new one; answers once it is starting.
    Restart(oneshot::Sender<()>),
    Logout(Reply<()>),
    SetWebhook(SubscriptionChange, Reply<()>),
    PairCode {
        phone: String,
        reply: Reply<String>,
    },
    /// Sends any kind (a file already uploaded to WhatsApp's media hosts)
    /// and remembers the message, to reply to, edit or delete it later.
    Send {
        to: String,
        out: Box<Outgoing>,
        extras: Extras,
        reply: Reply<Sent>,
    },
    /// Replaces the text of a message we sent.
    Edit {
        chat: String,
        id: String,
        text: String,
        reply: Reply<()>,
    },
    /// Deletes a message we sent, for everyone.
    Revoke {
        chat: String,
        id: String,
        reply: Reply<()>,
    },
    /// A chat action or a lookup (read receipts, typing, presence, number
    /// checks, a contact's profile).
    Act {
        action: ChatAction,
        reply: Reply<ActionOutcome>,
    },
    /// A group operation; answers what the API shows of it.
    Group {
        op: crate::whatsapp::GroupOp,
        reply: Reply<serde_json::Value>,
    },
    /// Marks read every unread incoming message of `chat` up to `id`.
    ReadUpTo {
        chat: String,
        id: String,
        reply: Reply<usize>,
    },
    /// The periodic connection checkout.
    Check,
    Delete(Reply<()>),
    /// Bridge shutdown: flush and stop, keeping the desired state.
    Shutdown,
}

pub struct Ctx {
    pub cfg: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub webhooks: Webhooks,
    pub view: Arc<RwLock<SessionView>>,
    pub versions: Arc<crate::whatsapp::Versions>,
}

struct Task {
    ctx: Ctx,
    rec: SessionRecord,
    link: Option<Link>,
    events: Option<mpsc::UnboundedReceiver<WaEvent>>,
    pending_pair_code: Option<Reply<String>>,
    /// Since when the session has been without a live connection, as seen
    /// by the checkout.
    down_since: Option<tokio::time::Instant>,
    /// Shared with the client's inbox: a batch went back unacknowledged.
    gave_back: Arc<AtomicBool>,
    /// Events the store could not take yet (it was unreachable), oldest
    /// first, each under the id it keeps until it is queued.
    unsent: std::collections::VecDeque<(String, EventKind, serde_json::Value)>,
    unread: Unread,
    /// When to find out why the client has not connected yet (armed when a
    /// client starts or loses its connection, for the connection timeout).
    diagnose_at: Option<tokio::time::Instant>,
    /// A reachability probe under way: what it found, as a reason.
    probe: Option<oneshot::Receiver<String>>,
    /// The WhatsApp Web version the current client announced.
    announced: crate::whatsapp::Version,
}

/// Events kept while the store is unreachable; beyond this the oldest go
/// (a store down for that long has bigger news than old statuses).
const MAX_UNSENT: usize = 10_000;

pub async fn run(ctx: Ctx, rec: SessionRecord, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut t = Task {
        ctx,
        rec,
        link: None,
        events: None,
        pending_pair_code: None,
        down_since: None,
        gave_back: Arc::new(AtomicBool::new(false)),
        unsent: std::collections::VecDeque::new(),
        unread: Unread::default(),
        diagnose_at: None,
        probe: None,
        announced: crate::whatsapp::Version::default(),
    };
    t.ctx.webhooks.set_subscription(&t.rec.name, &t.rec.webhook);
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                if !t.on_command(cmd).await {
                    break;
                }
            }
            Some(ev) = next_event(&mut t.events) => t.on_event(ev).await,
            _ = until(t.diagnose_at) => t.diagnose(),
            Some(reason) = next_probe(&mut t.probe) => t.diagnosed(reason).await,
        }
    }
}

async fn next_event(events: &mut Option<mpsc::UnboundedReceiver<WaEvent>>) -> Option<WaEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

mod emit;
mod health;

use self::health::{next_probe, until};

impl Task {
    fn name(&self) -> &str {
        &self.rec.name
    }

    fn status(&self) -> Status {
        self.ctx
            .view
            .read()
            .map(|v| v.status)
            .unwrap_or(Status::Failed)
    }

    fn update(&self, f: impl FnOnce(&mut SessionView)) {
        let mut v = self.ctx.view.write().unwrap_or_else(|p| p.into_inner());
        f(&mut v);
    }

    fn session_file(&self) -> PathBuf {
        self.ctx
            .cfg
            .sessions_dir()
            .join(format!("{}.db", self.name()))
    }

    fn qr_file(&self) -> PathBuf {
        self.ctx.cfg.qr_dir().join(format!("{}.png", self.name()))
    }

    /// The one place a status changes: logged and sent as `session.status`.
    async fn set_status(&mut self, status: Status, reason: Option<&str>) {
        let (old, old_reason) = {
            let v = self.ctx.view.read().unwrap_or_else(|p| p.into_inner());
            (v.status, v.reason.clone())
        };
        if old == status && old_reason.as_deref() == reason {
            return;
        }
        self.update(|v| {
            v.status = status;
            v.reason = reason.map(str::to_string);
        });
        info!(session = self.name(), ?old, new = ?status, reason, "session status");
        if matches!(status, Status::LoggedOut | Status::Failed) {
            crate::telemetry::report(
                Some(self.name()),
                &format!("session is {status:?} ({})", reason.unwrap_or("no reason")),
            );
        }
        let jid = self.ctx.view.read().ok().and_then(|v| v.jid.clone());
        let payload = serde_json::json!({
            "status": status,
            "reason": reason,
            "jid": jid,
        });
        self.emit(EventKind::SessionStatus, payload).await;
    }

    async fn persist(&self) {
        if let Err(e) = self.ctx.store.put_session(&self.rec).await {
            warn!(session = self.name(), "cannot save the session: {e}");
        }
    }

    /// Handles a command; `false` ends the task.
    async fn on_command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Start => {
                if !self.rec.desired_running {
                    self.rec.desired_running = true;
                    self.persist().await;
                }
                self.start(None).await;
            }
            Command::Restart(reply) => {
                self.stop_link().await;
                self.start(None).await;
                let _ = reply.send(());
            }
            Command::Stop(reply) => {
                self.stop_link().await;
                self.rec.desired_running = false;
                self.persist().await;
                self.set_status(Status::Stopped, None).await;
                let _ = reply.send(());
            }
            Command::Logout(reply) => {
                self.logout().await;
                let _ = reply.send(Ok(()));
            }
            Command::SetWebhook(change, reply) => {
                self.rec.webhook.apply(change);
                self.ctx
                    .webhooks
                    .set_subscription(self.name(), &self.rec.webhook);
                let sub = self.rec.webhook.clone();
                self.update(|v| v.webhook = sub);
                let r = self.ctx.store.put_session(&self.rec).await;
                let _ = reply.send(r.map_err(SessionError::from));
            }
            Command::PairCode { phone, reply } => {
                if self.link.as_ref().is_some_and(|l| l.jid().is_some()) {
                    let _ = reply.send(Err(SessionError::AlreadyLinked(self.name().to_string())));
                } else if self
                    .pending_pair_code
                    .as_ref()
                    .is_some_and(|r| !r.is_closed())
                {
                    // One request at a time: a second would cut the first
                    // one's link short.
                    let _ = reply.send(Err(SessionError::Busy(
                        "a pair code is already being requested".into(),
                    )));
                } else {
                    self.stop_link().await;
                    self.pending_pair_code = Some(reply);
                    self.start(Some(phone)).await;
                }
            }
            Command::Send {
                to,
                out,
                extras,
                reply,
            } => {
                let r = self.send(&to, *out, &extras).await;
                let _ = reply.send(r);
            }
            Command::Edit {
                chat,
                id,
                text,
                reply,
            } => {
                let r = match self.working_link() {
                    Ok(link) => link.edit(&chat, &id, &text).await.map_err(send_error),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::Revoke { chat, id, reply } => {
                let r = match self.working_link() {
                    Ok(link) => link.revoke(&chat, &id).await.map_err(send_error),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::Check => {
                self.flush_unsent().await;
                self.check().await;
            }
            Command::Act { action, reply } => {
                if let ChatAction::Read { chat, ids, .. } = &action {
                    self.forget_unread(chat, |id| ids.contains(id));
                }
                let r = match self.working_link() {
                    Ok(link) => link.act(action).await.map_err(send_error),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::Group { op, reply } => {
                let r = match self.working_link() {
                    Ok(link) => link.group(op).await.map_err(send_error),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::ReadUpTo { chat, id, reply } => {
                let r = self.read_up_to(chat, id).await;
                let _ = reply.send(r);
            }
            Command::Delete(reply) => {
                if self.link.as_ref().is_some_and(|l| l.jid().is_some()) {
                    self.logout().await;
                } else {
                    self.stop_link().await;
                    self.remove_files();
                }
                self.ctx.webhooks.forget(self.name());
                let _ = reply.send(Ok(()));
                return false;
            }
            Command::Shutdown => {
                self.stop_link().await;
                return false;
            }
        }
        true
    }

    /// The client, if the session can send now.
    fn working_link(&self) -> Result<&Link, SessionError> {
        let status = self.status();
        match (&self.link, status) {
            (Some(link), Status::Working) => Ok(link),
            _ => Err(SessionError::NotWorking {
                name: self.name().to_string(),
                status,
            }),
        }
    }

    async fn send(&self, to: &str, out: Outgoing, extras: &Extras) -> Result<Sent, SessionError> {
        let link = self.working_link()?;
        let (kind, text) = (out.kind().to_string(), out.text());
        let poll = match &out {
            Outgoing::Poll {
                question, options, ..
            } => Some((question.clone(), options.clone())),
            _ => None,
        };
        let sent = link.send(to, out, extras).await.map_err(send_error)?;
        self.ctx.webhooks.metrics().messages_sent.inc();
        let rec = MessageRecord {
            id: sent.id.clone(),
            chat: sent.to.clone(),
            sender: account_of(&link.jid()).unwrap_or_default(),
            from_me: true,
            kind,
            text,
            at: now_secs(),
            poll: poll
                .zip(sent.poll_secret.as_ref())
                .map(|((question, options), secret)| PollRecord {
                    question,
                    options,
                    secret: base64::engine::general_purpose::STANDARD.encode(secret),
                }),
        };
        // The message is sent whatever happens here; without the record a
        // later reply or edit by its id answers 404, so say so in the log.
        if let Err(e) = self.ctx.store.message_put(self.name(), &rec).await {
            warn!(id = %rec.id, "cannot remember a sent message: {e}");
        }
        Ok(sent)
    }

    async fn start(&mut self, pair_phone: Option<String>) {
        if self.link.is_some() {
            return;
        }
        // A client rebuilt because the last could not connect keeps saying
        // why until it connects.
        let reason = {
            let v = self.ctx.view.read().unwrap_or_else(|p| p.into_inner());
            matches!(v.status, Status::Starting | Status::Reconnecting)
                .then(|| v.reason.clone())
                .flatten()
        };
        self.set_status(Status::Starting, reason.as_deref()).await;
        self.arm_diagnosis();
        for dir in [self.ctx.cfg.sessions_dir(), self.ctx.cfg.qr_dir()] {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                warn!("cannot create {}: {e}", dir.display());
            }
        }
        let file = self.session_file();
        self.announced = self.ctx.versions.current();
        let opts = LinkOptions {
            session_file: &file,
            url: &self.ctx.cfg.whatsapp_url,
            pair_phone,
            forward_history: self.ctx.cfg.forward_history,
            sandbox_media_ca: self.ctx.cfg.media.sandbox_media_ca.as_deref(),
            version: self.announced,
            inbox: Arc::new(SessionInbox {
                webhooks: self.ctx.webhooks.downgrade(),
                view: self.ctx.view.clone(),
                gave_back: self.gave_back.clone(),
                unread: self.unread.clone(),
            }),
        };
        match Link::start(opts).await {
            Ok((link, events)) => {
                if let Some(jid) = link.jid() {
                    self.update(|v| v.jid = Some(jid));
                }
                self.ctx
                    .webhooks
                    .media()
                    .attach(self.name(), Some(link.media()));
                self.link = Some(link);
                self.events = Some(events);
                self.down_since = None;
            }
            Err(e) => {
                warn!(session = self.name(), "cannot start: {e}");
                self.set_status(Status::Failed, Some("start_failed")).await;
            }
        }
    }

    fn forget_unread(&self, chat: &str, read: impl Fn(&String) -> bool) {
        let mut unread = self.unread.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = unread.get_mut(chat) {
            list.retain(|id| !read(id));
        }
    }

    /// Reads every unread message of the chat up to and including `id`.
    async fn read_up_to(&mut self, chat: String, id: String) -> Result<usize, SessionError> {
        let link = self.working_link()?;
        let ids: Vec<String> = {
            let unread = self.unread.lock().unwrap_or_else(|p| p.into_inner());
            let list = unread.get(&chat);
            let at = list
                .and_then(|l| l.iter().position(|x| *x == id))
                .ok_or_else(|| SessionError::UnknownMessage(id.clone()))?;
            list.map(|l| l.iter().take(at + 1).cloned().collect())
                .unwrap_or_default()
        };
        let sender = if chat.ends_with("@g.us") {
            self.ctx
                .store
                .message_get(self.name(), &id)
                .await
                .ok()
                .flatten()
                .map(|r| r.sender)
        } else {
            None
        };
        let count = ids.len();
        let action = ChatAction::Read {
            chat: chat.clone(),
            sender,
            ids: ids.clone(),
        };
        link.act(action).await.map_err(send_error)?;
        self.forget_unread(&chat, |x| ids.contains(x));
        Ok(count)
    }

    /// A pair-code request still waiting is answered, not dropped: its
    /// client gets a 409 rather than a 503.
    fn abandon_pair_code(&mut self) {
        if let Some(reply) = self.pending_pair_code.take() {
            let _ = reply.send(Err(SessionError::Busy(
                "the session stopped before WhatsApp gave a pair code".into(),
            )));
        }
    }

    async fn stop_link(&mut self) {
        self.disarm_diagnosis();
        self.abandon_pair_code();
        self.ctx.webhooks.media().attach(self.name(), None);
        if let Some(mut link) = self.link.take() {
            link.stop().await;
        }
        self.events = None;
        self.clear_qr();
    }

    fn clear_qr(&self) {
        self.update(|v| v.qr = None);
        let _ = std::fs::remove_file(self.qr_file());
    }

    fn remove_files(&self) {
        let file = self.session_file();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = file.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        self.clear_qr();
    }

    async fn logout(&mut self) {
        self.ctx.webhooks.media().attach(self.name(), None);
        if let Some(link) = self.link.take() {
            // Deregistering needs a live connection: give a client that is
            // still connecting a moment, or the phone keeps listing it.
            let deadline = tokio::time::Instant::now()
                + self
                    .ctx
                    .cfg
                    .connection_timeout
                    .min(std::time::Duration::from_secs(5));
            while link.jid().is_some()
                && !link.is_connected()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            link.logout().await;
        }
        self.events = None;
        self.after_logout().await;
    }

    /// The device is unlinked: forget its keys, keep the registry entry.
    async fn after_logout(&mut self) {
        self.remove_files();
        self.rec.desired_running = false;
        self.rec.jid = None;
        self.persist().await;
        self.update(|v| {
            v.jid = None;
            v.connected_since = None;
        });
        self.set_status(Status::LoggedOut, None).await;
    }

    /// The periodic checkout: a session that should run but has had no live
    /// connection for longer than `WAPI_WHATSAPP_CONNECTION_TIMEOUT` gets a
    /// new client on the same session file (whatsapp-rust's disconnect is
    /// final, and its own reconnect backoff grows to 15 minutes).
    async fn check(&mut self) {
        self.ensure_registered().await;
        if !self.rec.desired_running {
            return;
        }
        let (status, reason) = {
            let v = self.ctx.view.read().unwrap_or_else(|p| p.into_inner());
            (v.status, v.reason.clone())
        };
        // Waiting for a scan, unlinked, or failed for a reason a new client
        // would not fix (QR codes ran out, a ban): a person must act.
        let retriable_failure =
            status == Status::Failed && reason.as_deref() == Some("start_failed");
        if matches!(
            status,
            Status::LoggedOut | Status::ScanQrCode | Status::Stopped
        ) || (status == Status::Failed && !retriable_failure)
        {
            return;
        }
        if self.link.as_ref().is_some_and(Link::is_connected) {
            self.down_since = None;
            // Messages given back while the store was down come again only
            // on a new connection: make one once the store answers.
            if self.gave_back.load(Ordering::SeqCst) && self.ctx.store.ping().await.is_ok() {
                self.gave_back.store(false, Ordering::SeqCst);
                info!(
                    session = self.name(),
                    "store is back: reconnecting for the messages given back"
                );
                self.stop_link().await;
                self.start(None).await;
            }
            return;
        }
        let now = tokio::time::Instant::now();
        let down_for = now - *self.down_since.get_or_insert(now);
        if self.link.is_none() || retriable_failure || down_for >= self.ctx.cfg.connection_timeout {
            info!(
                session = self.name(),
                ?down_for,
                "no live connection: rebuilding the client"
            );
            self.stop_link().await;
            self.start(None).await;
        }
    }

    /// Puts the registry entry back if the store lost it (a Redis that
    /// restarted without persistence), so that the next boot still knows
    /// this session.
    async fn ensure_registered(&self) {
        match self.ctx.store.get_session(self.name()).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                warn!(
                    session = self.name(),
                    "registry entry missing from the store: writing it again"
                );
                self.persist().await;
            }
            Err(e) => warn!(session = self.name(), "store unreachable at checkout: {e}"),
        }
    }

    async fn on_event(&mut self, ev: WaEvent) {
        match ev {
            WaEvent::Qr { code, timeout } => {
                self.disarm_diagnosis();
                self.show_qr(code, timeout).await
            }
            WaEvent::QrExhausted => {
                self.stop_link().await;
                self.set_status(Status::Failed, Some("qr_exhausted")).await;
            }
            WaEvent::PairCode { code } => {
                if let Some(reply) = self.pending_pair_code.take() {
                    let _ = reply.send(Ok(code));
                }
                self.set_status(Status::ScanQrCode, None).await;
            }
            WaEvent::Paired { jid } => {
                info!(session = self.name(), jid, "linked");
                self.clear_qr();
                self.update(|v| v.jid = Some(jid));
            }
            WaEvent::Connected { .. } => {
                self.disarm_diagnosis();
                let (jid, push_name) = match &self.link {
                    Some(l) => (l.jid(), l.push_name()),
                    None => (None, None),
                };
                self.clear_qr();
                let metrics = self.ctx.webhooks.metrics().clone();
                self.update(|v| {
                    if v.connected_since.is_some() {
                        v.reconnects += 1;
                        metrics.reconnects.inc();
                    }
                    v.connected_since = Some(now_secs());
                    v.jid = jid.clone();
                    v.push_name = push_name.clone();
                });
                if self.rec.jid != jid || self.rec.push_name != push_name {
                    self.rec.jid = jid;
                    self.rec.push_name = push_name;
                    self.persist().await;
                }
                self.down_since = None;
                self.set_status(Status::Working, None).await;
            }
            WaEvent::Disconnected => {
                if self.status() == Status::Working {
                    self.set_status(Status::Reconnecting, None).await;
                }
                self.arm_diagnosis();
            }
            WaEvent::LoggedOut { reason } => {
                info!(session = self.name(), reason, "logged out by WhatsApp");
                self.abandon_pair_code();
                self.ctx.webhooks.media().attach(self.name(), None);
                if let Some(mut link) = self.link.take() {
                    link.stop().await;
                }
                self.events = None;
                self.after_logout().await;
            }
            WaEvent::Failed { reason } => {
                self.stop_link().await;
                self.set_status(Status::Failed, Some(reason)).await;
                // Refused as outdated: learn the current version (one fetch
                // for every session refused with this one) and log in again
                // with it; the device stays linked, no scan.
                if reason == "client_outdated"
                    && let Some(v) = self.ctx.versions.outdated(self.announced).await
                {
                    info!(
                        session = self.name(),
                        version = crate::whatsapp::format_version(v),
                        "reconnecting with the current WhatsApp Web version"
                    );
                    self.start(None).await;
                }
            }
            WaEvent::Status(mut st) => {
                if st.recipient_lid.is_none()
                    && let Some(link) = &self.link
                {
                    st.recipient_lid = link.lid_of(&st.recipient).await;
                }
                let payload = serde_json::to_value(&st).unwrap_or_default();
                self.emit(EventKind::MessageStatus, payload).await;
            }
            WaEvent::Call(call) => {
                let mut payload = serde_json::to_value(&call).unwrap_or_default();
                let reject = self.ctx.cfg.reject_calls;
                if reject && let Some(link) = &self.link {
                    let rejected = link.reject_call(&call).await;
                    if let Err(e) = &rejected {
                        warn!(session = self.name(), "cannot reject a call: {e}");
                    }
                    payload["rejected"] = serde_json::json!(rejected.is_ok());
                } else {
                    payload["rejected"] = serde_json::json!(false);
                }
                self.emit(EventKind::Call, payload).await;
            }
            WaEvent::Undecryptable(payload) => {
                self.emit(EventKind::MessageUndecryptable, payload).await
            }
            WaEvent::NumberChanged(payload) => {
                self.emit(EventKind::ContactNumberChanged, payload).await
            }
            WaEvent::Presence(payload) => self.emit(EventKind::Presence, payload).await,
            WaEvent::GroupParticipants { key, payload } => {
                let id = self.group_event_id(key.as_deref(), &payload);
                self.emit_as(id, EventKind::GroupParticipants, payload)
                    .await
            }
            WaEvent::GroupUpdate { key, payload } => {
                let id = self.group_event_id(key.as_deref(), &payload);
                self.emit_as(id, EventKind::GroupUpdate, payload).await
            }
        }
    }

    async fn show_qr(&mut self, code: String, timeout: std::time::Duration) {
        let png = match crate::qr::png(&code) {
            Ok(p) => p,
            Err(e) => {
                warn!(session = self.name(), "cannot render the QR code: {e}");
                return;
            }
        };
        if let Err(e) = std::fs::write(self.qr_file(), &png) {
            warn!(session = self.name(), "cannot write the QR image: {e}");
        }
        if self.ctx.cfg.qr_console
            && let Ok(text) = crate::qr::console(&code)
        {
            println!("Scan this QR code to link session {}:\n{text}", self.name());
        }
        let expires_at = now_secs() + timeout.as_secs();
        self.update(|v| {
            v.qr = Some(QrCode {
                code,
                png: Arc::new(png),
                expires_at,
            })
        });
        self.set_status(Status::ScanQrCode, None).await;
    }
}

fn send_error(e: crate::whatsapp::WaError) -> SessionError {
    match e {
        crate::whatsapp::WaError::BadRecipient(_) => SessionError::BadRequest(format!("to: {e}")),
        crate::whatsapp::WaError::Refused { code, text } => SessionError::Refused { code, text },
        e => SessionError::WhatsApp(e.to_string()),
    }
}

/// The account (user JID) of a linked device's JID:
/// "15550001111:3@s.whatsapp.net" -> "15550001111@s.whatsapp.net".
pub(super) fn account_of(device: &Option<String>) -> Option<String> {
    let jid = device.as_deref()?;
    let (user, server) = jid.split_once('@')?;
    let user = user.split(':').next().unwrap_or(user);
    Some(format!("{user}@{server}"))
}
