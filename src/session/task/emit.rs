//! A session's events other than messages (status, calls, groups...):
//! queued in order behind any the store could not take yet.

use super::*;

impl Task {
    /// Queues a webhook event of this session (not a message: those go
    /// through the durability hook, which must see the error).
    /// Queues an event behind any the store could not take yet, then hands
    /// them over in order; what the store still refuses is kept for the
    /// next checkout.
    pub(super) async fn emit(&mut self, event: EventKind, payload: serde_json::Value) {
        self.emit_as(crate::webhook::new_event_id(), event, payload)
            .await
    }

    /// The id of a group event: stable for the notification it came from
    /// (WhatsApp may deliver it again, e.g. after a restart), random when
    /// the notification had no id.
    pub(super) fn group_event_id(&self, key: Option<&str>, payload: &serde_json::Value) -> String {
        match key {
            Some(key) => crate::webhook::message_event_id(
                self.name(),
                payload["group"].as_str().unwrap_or_default(),
                "w:gp2",
                key,
            ),
            None => crate::webhook::new_event_id(),
        }
    }

    /// Queues an event under `id`: an id queued before is not queued again.
    pub(super) async fn emit_as(
        &mut self,
        id: String,
        event: EventKind,
        payload: serde_json::Value,
    ) {
        if self.unsent.len() >= MAX_UNSENT {
            warn!(
                session = self.name(),
                "store unreachable for long: oldest unsent event dropped"
            );
            self.unsent.pop_front();
        }
        self.unsent.push_back((id, event, payload));
        self.flush_unsent().await;
    }

    pub(super) async fn flush_unsent(&mut self) {
        let account = self.ctx.view.read().ok().and_then(|v| account_of(&v.jid));
        while let Some((id, event, payload)) = self.unsent.front().cloned() {
            let queued = self
                .ctx
                .webhooks
                .enqueue(
                    self.name(),
                    &self.rec.webhook,
                    account.as_deref(),
                    event,
                    Some(id),
                    payload,
                    None,
                )
                .await;
            match queued {
                Ok(()) => {}
                Err(crate::store::StoreError::Unavailable(e)) => {
                    warn!(
                        session = self.name(),
                        ?event,
                        kept = self.unsent.len(),
                        "store unreachable: event kept for later: {e}"
                    );
                    return;
                }
                Err(e) => warn!(session = self.name(), ?event, "event dropped: {e}"),
            }
            self.unsent.pop_front();
        }
    }
}
