//! The WhatsApp Web client version: the one the service worker advertises
//! and the oldest one the server still lets in.
//!
//! WhatsApp Web learns the current version from `https://web.whatsapp.com/sw.js`
//! (a `"client_revision":N` in its body; whatsapp-rust reads it with
//! `wacore::version::parse_sw_js`, which gives `(2, 3000, N)`). The simulator
//! serves the same at `GET /sw.js`, counting fetches. A connection whose
//! ClientPayload (`user_agent.app_version`) is older than `2.3000.MIN` is
//! refused as WhatsApp refuses it: `<failure reason="405"/>`, which
//! whatsapp-rust reports as `Event::ClientOutdated` (and stops
//! reconnecting). No minimum by default: every version is accepted.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use waproto::whatsapp as wa;

use crate::admin::{AdminError, Body, Shared, bad};
use crate::world::World;

/// WhatsApp Web's major version: every version is `2.3000.REVISION`.
pub const PRIMARY: u32 = 2;
pub const SECONDARY: u32 = 3000;
/// The revision advertised until told otherwise.
pub const DEFAULT_REVISION: u32 = 1_030_000_000;

/// A client version as the ClientPayload states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppVersion {
    pub primary: u32,
    pub secondary: u32,
    pub tertiary: u32,
}

impl AppVersion {
    /// `2.3000.revision`.
    pub fn web(revision: u32) -> Self {
        Self {
            primary: PRIMARY,
            secondary: SECONDARY,
            tertiary: revision,
        }
    }

    /// The version in a ClientPayload; `None` without a user agent or app
    /// version (missing parts read as 0).
    pub fn from_payload(payload: &wa::ClientPayload) -> Option<Self> {
        let v = payload.user_agent.as_option()?.app_version.as_option()?;
        Some(Self {
            primary: v.primary.unwrap_or(0),
            secondary: v.secondary.unwrap_or(0),
            tertiary: v.tertiary.unwrap_or(0),
        })
    }
}

impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.primary, self.secondary, self.tertiary)
    }
}

struct Settings {
    current_revision: u32,
    min_revision: Option<u32>,
}

/// The version settings and the service worker's fetch counter (own lock).
pub struct Versions {
    settings: Mutex<Settings>,
    sw_js_fetches: AtomicU64,
}

impl Default for Versions {
    fn default() -> Self {
        Self {
            settings: Mutex::new(Settings {
                current_revision: DEFAULT_REVISION,
                min_revision: None,
            }),
            sw_js_fetches: AtomicU64::new(0),
        }
    }
}

/// What `GET /admin/version` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    pub current_revision: u32,
    pub min_revision: Option<u32>,
    pub sw_js_fetches: u64,
}

impl VersionInfo {
    /// `2.3000.current_revision`.
    pub fn current(&self) -> AppVersion {
        AppVersion::web(self.current_revision)
    }

    fn json(&self) -> Value {
        json!({
            "current": self.current().to_string(),
            "current_revision": self.current_revision,
            "min_revision": self.min_revision,
            "sw_js_fetches": self.sw_js_fetches,
        })
    }
}

impl Versions {
    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn info(&self) -> VersionInfo {
        let s = self.settings();
        VersionInfo {
            current_revision: s.current_revision,
            min_revision: s.min_revision,
            sw_js_fetches: self.sw_js_fetches.load(Ordering::Relaxed),
        }
    }

    /// Changes the current revision and/or the minimum (`Some(None)`
    /// removes it). A minimum above the current revision is refused: the
    /// server would turn away the very version it advertises.
    pub fn set(
        &self,
        current_revision: Option<u32>,
        min_revision: Option<Option<u32>>,
    ) -> Result<VersionInfo, String> {
        {
            let mut s = self.settings();
            let current = current_revision.unwrap_or(s.current_revision);
            let min = min_revision.unwrap_or(s.min_revision);
            if let Some(m) = min
                && m > current
            {
                // Name the field the caller changed.
                return Err(if min_revision.is_some() {
                    format!("min_revision: {m} is above current_revision {current}")
                } else {
                    format!("current_revision: {current} is below min_revision {m}")
                });
            }
            s.current_revision = current;
            s.min_revision = min;
        }
        Ok(self.info())
    }

    /// Whether a connection with this version may log in (or register).
    /// Without a minimum, any; with one, versions from `2.3000.MIN` up
    /// (a payload without a version is too old).
    pub fn accepts(&self, version: Option<AppVersion>) -> bool {
        match self.settings().min_revision {
            None => true,
            Some(min) => version.is_some_and(|v| v >= AppVersion::web(min)),
        }
    }

    /// The service worker's body (counts one fetch).
    pub fn sw_js(&self) -> String {
        self.sw_js_fetches.fetch_add(1, Ordering::Relaxed);
        let rev = self.settings().current_revision;
        // The shape of WhatsApp's own: site data with the client revision,
        // which `wacore::version::parse_sw_js` finds.
        format!(
            "/* wa-sim service worker */\n\
             self.__swData={{\"dynamic_data\":{{\"SiteData\":{{\"client_revision\":{rev},\
             \"server_revision\":{rev},\"is_sim\":true}}}}}};\n\
             self.addEventListener(\"fetch\",function(){{}});\n"
        )
    }
}

/// `GET /sw.js` and `GET`/`POST /admin/version`.
pub fn router() -> Router<Arc<World>> {
    Router::new()
        .route("/sw.js", get(sw_js))
        .route("/admin/version", get(get_version).post(set_version))
}

async fn sw_js(State(w): Shared) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        w.versions.sw_js(),
    )
        .into_response()
}

async fn get_version(State(w): Shared) -> axum::Json<Value> {
    axum::Json(w.versions.info().json())
}

fn revision(v: &Value, field: &str) -> Result<u32, AdminError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            bad(format!(
                "{field}: expected a revision from 1 to {}, got {v}",
                u32::MAX
            ))
        })
}

async fn set_version(
    State(w): Shared,
    Body(req): Body<Map<String, Value>>,
) -> Result<Response, AdminError> {
    let mut current = None;
    let mut min = None;
    for (k, v) in &req {
        match k.as_str() {
            "current_revision" => current = Some(revision(v, k)?),
            "min_revision" if v.is_null() => min = Some(None),
            "min_revision" => min = Some(Some(revision(v, k)?)),
            other => {
                return Err(bad(format!(
                    "{other}: unknown field (expected current_revision or min_revision)"
                )));
            }
        }
    }
    let info = w.versions.set(current, min).map_err(bad)?;
    Ok(axum::Json(info.json()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sw_js_parses_to_the_current_revision() {
        let v = Versions::default();
        assert_eq!(
            wacore::version::parse_sw_js(&v.sw_js()),
            Some((2, 3000, DEFAULT_REVISION))
        );
        assert_eq!(v.info().sw_js_fetches, 1);
    }

    #[test]
    fn minimum_compares_whole_versions() {
        let v = Versions::default();
        assert!(v.accepts(None));
        v.set(None, Some(Some(100))).unwrap();
        assert!(!v.accepts(None));
        assert!(!v.accepts(Some(AppVersion::web(99))));
        assert!(v.accepts(Some(AppVersion::web(100))));
        assert!(!v.accepts(Some(AppVersion {
            primary: 2,
            secondary: 2999,
            tertiary: 200
        })));
        assert!(v.set(Some(50), None).is_err());
        assert_eq!(v.info().current_revision, DEFAULT_REVISION);
        v.set(None, Some(None)).unwrap();
        assert!(v.accepts(Some(AppVersion::web(0))));
    }
}
