//! The WhatsApp Web version every client announces. WhatsApp refuses
//! versions it considers outdated (login failure 405, `client_outdated`),
//! so a fixed version would one day stop every session at once. The bridge
//! learns the current one as WhatsApp Web does, from its service worker
//! (`sw.js`, parsed by `wacore::version::parse_sw_js`): once per process at
//! start (in the background, so start-up never waits on it), daily, and at
//! once when a session is refused as outdated (one fetch for all of them).
//! The last version learned is kept in the files root, so a failed fetch
//! falls back to it; `WAPI_WHATSAPP_VERSION` pins one.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracing::{info, warn};

/// Used until a version is learned (and when none ever is).
pub const BUILT_IN: (u32, u32, u32) = (2, 3000, 1_030_000_000);

pub type Version = (u32, u32, u32);

pub fn format(v: Version) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

/// `2.3000.1031000000` -> (2, 3000, 1031000000).
pub fn parse(s: &str) -> Option<Version> {
    let mut parts = s.trim().split('.').map(|p| p.parse::<u32>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

/// The version clients announce, shared by every session of the process.
pub struct Versions {
    current: RwLock<(Version, &'static str)>,
    pinned: bool,
    url: String,
    file: PathBuf,
    http: reqwest::Client,
    /// One fetch at a time: sessions refused together share it.
    fetching: tokio::sync::Mutex<()>,
}

impl Versions {
    /// `pinned`: `WAPI_WHATSAPP_VERSION`; `url`: where `sw.js` is.
    pub fn new(pinned: Option<Version>, url: &str, files_root: &std::path::Path) -> Arc<Self> {
        let file = files_root.join("whatsapp-version");
        let (current, source) = match pinned {
            Some(v) => (v, "pinned"),
            None => match std::fs::read_to_string(&file).ok().and_then(|s| parse(&s)) {
                Some(v) => (v, "last fetched"),
                None => (BUILT_IN, "built in"),
            },
        };
        if pinned.is_some() {
            info!(
                version = format(current),
                "WhatsApp Web version pinned by WAPI_WHATSAPP_VERSION"
            );
        }
        Arc::new(Self {
            current: RwLock::new((current, source)),
            pinned: pinned.is_some(),
            url: url.to_string(),
            file,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    pub fn current(&self) -> Version {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0
    }

    /// `{"version", "source", "pinned"}` for health.
    pub fn describe(&self) -> serde_json::Value {
        let (v, source) = *self.current.read().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({"version": format(v), "source": source, "pinned": self.pinned})
    }

    /// Fetches `sw.js` and takes its version. Pinned: nothing to do.
    pub async fn refresh(&self) -> Result<Version, String> {
        if self.pinned {
            return Ok(self.current());
        }
        let _one = self.fetching.lock().await;
        self.fetch().await
    }

    async fn fetch(&self) -> Result<Version, String> {
        let body = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{}: {e}", self.url))?
            .text()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let v = whatsapp_rust::wacore::version::parse_sw_js(&body)
            .ok_or_else(|| format!("{}: no client_revision in it", self.url))?;
        let old = self.current();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (v, "fetched");
        if let Err(e) = std::fs::write(&self.file, format(v)) {
            warn!("cannot keep the WhatsApp Web version: {e}");
        }
        if v != old {
            info!(
                old = format(old),
                new = format(v),
                "WhatsApp Web version updated"
            );
        }
        Ok(v)
    }

    /// A session announcing `announced` was refused as outdated: the
    /// version to use now, fetched unless another session already did
    /// (`None`: nothing newer is known, a person must look).
    pub async fn outdated(&self, announced: Version) -> Option<Version> {
        if self.pinned {
            warn!(
                version = format(announced),
                "WhatsApp refuses the pinned version as outdated: change WAPI_WHATSAPP_VERSION"
            );
            return None;
        }
        let _one = self.fetching.lock().await;
        let now = self.current();
        if now != announced {
            return Some(now);
        }
        match self.fetch().await {
            Ok(v) if v != announced => Some(v),
            Ok(_) => None,
            Err(e) => {
                warn!("cannot learn the current WhatsApp Web version: {e}");
                None
            }
        }
    }

    /// Fetches now (unless pinned) and then daily, in the background.
    pub fn keep_current(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            if me.pinned {
                return;
            }
            loop {
                if let Err(e) = me.refresh().await {
                    warn!(
                        version = format(me.current()),
                        "cannot learn the current WhatsApp Web version, keeping this one: {e}"
                    );
                }
                tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_and_write() {
        assert_eq!(parse("2.3000.1031000000"), Some((2, 3000, 1_031_000_000)));
        assert_eq!(parse(" 2.3000.5 "), Some((2, 3000, 5)));
        for bad in ["", "2.3000", "2.3000.x", "2.3000.1.2"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(format((2, 3000, 7)), "2.3000.7");
    }
}
