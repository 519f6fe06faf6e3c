//! Why a session has not connected: after the connection timeout the
//! task probes WhatsApp's endpoint (off the task) and the finding becomes
//! the session's reason, checked again every timeout until it connects.

use super::*;

pub(super) async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn next_probe(probe: &mut Option<oneshot::Receiver<String>>) -> Option<String> {
    match probe {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

impl Task {
    pub(super) fn arm_diagnosis(&mut self) {
        if self.diagnose_at.is_none() {
            self.diagnose_at = Some(tokio::time::Instant::now() + self.ctx.cfg.connection_timeout);
        }
    }

    pub(super) fn disarm_diagnosis(&mut self) {
        self.diagnose_at = None;
        self.probe = None;
    }

    /// The client has not connected within the connection timeout: find
    /// out whether WhatsApp can be reached at all, off the task.
    pub(super) fn diagnose(&mut self) {
        self.diagnose_at = None;
        if !matches!(self.status(), Status::Starting | Status::Reconnecting) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let url = self.ctx.cfg.whatsapp_url.clone();
        let waited = self.ctx.cfg.connection_timeout;
        tokio::spawn(async move {
            let reason = match crate::whatsapp::reachable(&url).await {
                Err(e) => format!("cannot reach WhatsApp at {url}: {e}"),
                Ok(()) => format!(
                    "WhatsApp at {url} accepts connections, but the client has not logged in after {} s",
                    waited.as_secs()
                ),
            };
            let _ = tx.send(reason);
        });
        self.probe = Some(rx);
    }

    /// The probe's finding becomes the session's reason (API, events, page),
    /// and is checked again after another timeout.
    pub(super) async fn diagnosed(&mut self, reason: String) {
        self.probe = None;
        let status = self.status();
        if matches!(status, Status::Starting | Status::Reconnecting) {
            warn!(session = self.name(), reason, "not connected");
            self.set_status(status, Some(&reason)).await;
            self.arm_diagnosis();
        }
    }
}
