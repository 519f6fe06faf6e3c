//! Who may use the API, as in the WhatsApp Business API: API keys from the
//! configuration, login tokens issued for the admin's Basic credentials
//! (7 days), and keys that can use one session only.
//!
//! Issued secrets are kept as their SHA-256 in the store (so they work on
//! every node and survive a restart) and shown once, when issued. Every
//! comparison of secrets is constant-time.

use std::sync::Arc;

use axum::http::HeaderMap;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthSettings, Clock};
use crate::store::{Store, StoreError, TokenRecord};

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// No credential is configured: the API is open (loopback only).
    Open,
    /// An API key or a login token: everything.
    Admin,
    /// A session key: this session's routes only.
    Session { name: String, epoch: u64 },
}

impl Principal {
    pub fn may_use(&self, session: &str) -> bool {
        match self {
            Self::Open | Self::Admin => true,
            Self::Session { name, .. } => name == session,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a credential is required: Authorization: Bearer <key> or X-Api-Key: <key>")]
    Missing,
    #[error("the credential is not valid (wrong, revoked or expired)")]
    Invalid,
    #[error("HTTP Basic credentials of the admin user are required")]
    BadBasic,
    #[error("logins are not configured (WAPI_ADMIN_USER, WAPI_ADMIN_PASSWORD)")]
    NoLogins,
    #[error("only a login token can be logged out")]
    NotAToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Auth {
    settings: AuthSettings,
    /// SHA-256 of each configured API key.
    key_hashes: Vec<[u8; 32]>,
    store: Arc<dyn Store>,
    clock: Clock,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A new secret: 32 random bytes, hex, with a prefix that says what it is.
fn new_secret(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The credential a request carries: `Authorization: Bearer` or
/// `X-Api-Key`.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl Auth {
    pub fn new(settings: AuthSettings, store: Arc<dyn Store>, clock: Clock) -> Self {
        let key_hashes = settings.api_keys.iter().map(|k| digest(&k.0)).collect();
        Self {
            settings,
            key_hashes,
            store,
            clock,
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled()
    }

    /// Who the request's credential belongs to.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal::Open);
        }
        let secret = credential(headers).ok_or(AuthError::Missing)?;
        let hash = digest(secret);
        // Every key is compared, so the time taken says nothing about which
        // one (if any) matched.
        let is_key = self
            .key_hashes
            .iter()
            .fold(false, |hit, k| hit | ct_eq(k, &hash));
        if is_key {
            return Ok(Principal::Admin);
        }
        let rec = self
            .store
            .token_get(&hex::encode(hash))
            .await?
            .ok_or(AuthError::Invalid)?;
        if rec.expires_at.is_some_and(|at| at <= self.clock.now()) {
            return Err(AuthError::Invalid);
        }
        Ok(match rec.session {
            None => Principal::Admin,
            Some(name) => Principal::Session {
                name,
                epoch: rec.session_epoch.unwrap_or(0),
            },
        })
    }

    /// Exchanges the admin's Basic credentials for a login token; returns
    /// the token and its expiry (unix seconds).
    pub async fn login(&self, headers: &HeaderMap) -> Result<(String, u64), AuthError> {
        let (user, password) = self.settings.admin.as_ref().ok_or(AuthError::NoLogins)?;
        let (u, p) = basic(headers).ok_or(AuthError::BadBasic)?;
        // Both compared whatever the first gives.
        let ok = ct_eq(&digest(&u), &digest(user)) & ct_eq(&digest(&p), &digest(&password.0));
        if !ok {
            return Err(AuthError::BadBasic);
        }
        let token = new_secret("wapi_tok");
        let expires_at = self.clock.now() + self.settings.token_ttl.as_secs();
        let rec = TokenRecord {
            session: None,
            session_epoch: None,
            expires_at: Some(expires_at),
        };
        self.store
            .token_put(&hex::encode(digest(&token)), &rec)
            .await?;
        Ok((token, expires_at))
    }

    /// Revokes the login token the request carries.
    pub async fn logout(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let secret = credential(headers).ok_or(AuthError::Missing)?;
        let hash = hex::encode(digest(secret));
        match self.store.token_get(&hash).await? {
            Some(rec) if rec.session.is_none() => Ok(self.store.token_delete(&hash).await?),
            Some(_) => Err(AuthError::NotAToken),
            None if self.authenticate(headers).await.is_ok() => Err(AuthError::NotAToken),
            None => Err(AuthError::Invalid),
        }
    }

    /// A new key for one session (made by an admin).
    pub async fn issue_session_key(&self, session: &str, epoch: u64) -> Result<String, AuthError> {
        let key = new_secret("wapi_key");
        let rec = TokenRecord {
            session: Some(session.to_string()),
            session_epoch: Some(epoch),
            expires_at: None,
        };
        self.store
            .token_put(&hex::encode(digest(&key)), &rec)
            .await?;
        Ok(key)
    }
}

/// The user and password of `Authorization: Basic`.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// What the rate limiter counts a request against: a digest of its
/// credential (never the credential itself), or "anonymous".
pub fn rate_identity(headers: &HeaderMap) -> String {
    credential(headers)
        .map(|c| hex::encode(&digest(c)[..8]))
        .unwrap_or_else(|| "anonymous".into())
}
