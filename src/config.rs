//! Configuration from the environment (and a `.env` file if present).
//!
//! wapi's variable names keep their meaning; an invalid value stops start-up
//! with exit code 2 and a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The real WhatsApp Web endpoint.
pub const WHATSAPP_URL: &str = "wss://web.whatsapp.com/ws/chat";

#[derive(Clone, Debug)]
pub struct Config {
    /// `WAPI_INTERNAL_HOST`: where the API listens.
    pub listen: SocketAddr,
    /// `WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH`: files root.
    pub files_root: PathBuf,
    /// `WAPI_REDIS_HOST`: Redis instead of the embedded store.
    pub redis_url: Option<String>,
    /// `WAPI_CONNECTIONS_CHECKOUT_DURATION_SECS`: how often sessions are checked.
    pub checkout_every: Duration,
    /// `WAPI_WHATSAPP_CONNECTION_TIMEOUT`: seconds to wait for a connection.
    pub connection_timeout: Duration,
    /// `WAPI_WHATSAPP_URL`: the WhatsApp WebSocket endpoint.
    pub whatsapp_url: String,
    /// `WAPI_WHATSAPP_VERSION`: announce this version, never fetch one.
    pub whatsapp_version: Option<(u32, u32, u32)>,
    /// `WAPI_WHATSAPP_VERSION_URL`: WhatsApp Web's service worker, where
    /// the current version is learned.
    pub whatsapp_version_url: String,
    /// `WAPI_QR_CONSOLE`: print QR codes in the terminal.
    pub qr_console: bool,
    /// `WAPI_FORWARD_HISTORY`: forward history-sync messages (default off).
    pub forward_history: bool,
    /// `WAPI_REJECT_CALLS`: decline incoming calls (they are posted either way).
    pub reject_calls: bool,
    /// `WAPI_WEBHOOK_TIMEOUT_SECS`, `WAPI_WEBHOOK_MAX_ATTEMPTS`,
    /// `WAPI_WEBHOOK_MAX_BACKOFF_SECS`, `WAPI_WEBHOOK_SECRET`.
    pub webhook: crate::webhook::Settings,
    /// Who may use the API.
    pub auth: AuthSettings,
    /// `WAPI_RATE_LIMIT_RPS` and `WAPI_RATE_LIMIT_BURST`: per endpoint and
    /// credential.
    pub rate_limit: RateLimit,
    /// Unix seconds now; tests move it to expire tokens.
    pub clock: Clock,
    /// `WAPI_CERT_FILE_PATH` and `WAPI_CERT_KEY_PATH`: serve HTTPS only.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `WAPI_SENTRY_DSN`: where errors an operator must see are reported.
    pub sentry_dsn: Option<Secret>,
    /// `WAPI_MEDIA_*` and `WAPI_PUBLIC_URL`.
    pub media: crate::media::Settings,
}

/// A secret that never shows in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    /// `WAPI_API_KEY`: one or a comma-separated list, 12 to 128 characters each.
    pub api_keys: Vec<Secret>,
    /// `WAPI_ADMIN_USER` and `WAPI_ADMIN_PASSWORD`: HTTP Basic credentials
    /// that `POST /v1/users/login` exchanges for a token.
    pub admin: Option<(String, Secret)>,
    /// `WAPI_ALLOW_NO_AUTH`: serve on a non-loopback address without any
    /// credential.
    pub allow_no_auth: bool,
    /// How long a login token lasts (7 days).
    pub token_ttl: Duration,
}

impl AuthSettings {
    /// Whether any credential is configured (otherwise the API is open, and
    /// only served on a loopback address).
    pub fn enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.admin.is_some()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// The time in unix seconds, replaceable in tests.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(std::sync::Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        }))
    }

    /// A clock that reads the system time plus `offset` seconds.
    pub fn offset(offset: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        let system = Self::system();
        Self(std::sync::Arc::new(move || {
            system.now() + offset.load(std::sync::atomic::Ordering::SeqCst)
        }))
    }

    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// An invalid setting, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl Config {
    /// Reads the process environment (after loading `.env` if present).
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get`, for tests.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let val = |k: &'static str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let listen = match val("WAPI_INTERNAL_HOST") {
            Some(v) => parse_listen(&v).ok_or_else(|| ConfigError {
                var: "WAPI_INTERNAL_HOST",
                problem: format!("expected HOST:PORT, got {v:?}"),
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let secs = |k: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match val(k) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
                    _ => Err(ConfigError {
                        var: k,
                        problem: format!("expected a positive number of seconds, got {v:?}"),
                    }),
                },
            }
        };
        let flag = |k: &'static str, default: bool| -> Result<bool, ConfigError> {
            match val(k).map(|v| v.to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) if ["1", "true", "on", "yes"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["0", "false", "off", "no"].contains(&v.as_str()) => Ok(false),
                Some(v) => Err(ConfigError {
                    var: k,
                    problem: format!("expected true or false, got {v:?}"),
                }),
            }
        };
        let url = |k: &'static str, schemes: &[&str]| -> Result<Option<String>, ConfigError> {
            match val(k) {
                None => Ok(None),
                Some(v) if schemes.iter().any(|s| v.starts_with(s)) => Ok(Some(v)),
                Some(v) => Err(ConfigError {
                    var: k,
                    problem: format!(
                        "expected a URL starting with {}, got {v:?}",
                        schemes.join(" or ")
                    ),
                }),
            }
        };
        let redis_url = match val("WAPI_REDIS_HOST") {
            None => None,
            Some(v) if v.starts_with("redis://") || v.starts_with("rediss://") => Some(v),
            Some(v) if parse_listen(&v).is_some() || v.contains(':') => {
                Some(format!("redis://{v}"))
            }
            Some(v) => {
                return Err(ConfigError {
                    var: "WAPI_REDIS_HOST",
                    problem: format!("expected host:port or a redis:// URL, got {v:?}"),
                });
            }
        };
        let media_s3 = match val("WAPI_MEDIA_S3_BUCKET") {
            Some(bucket) => Some(crate::media::S3Settings {
                bucket,
                endpoint: url("WAPI_MEDIA_S3_ENDPOINT", &["http://", "https://"])?,
                region: val("WAPI_MEDIA_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
                access_key_id: val("WAPI_MEDIA_S3_ACCESS_KEY_ID"),
                secret_access_key: val("WAPI_MEDIA_S3_SECRET_ACCESS_KEY").map(Secret),
                prefix: val("WAPI_MEDIA_S3_PREFIX"),
            }),
            None => None,
        };
        // Half a configuration is a mistake, not a reason to fall back to
        // local files that other nodes cannot see.
        for k in [
            "WAPI_MEDIA_S3_ENDPOINT",
            "WAPI_MEDIA_S3_REGION",
            "WAPI_MEDIA_S3_ACCESS_KEY_ID",
            "WAPI_MEDIA_S3_SECRET_ACCESS_KEY",
            "WAPI_MEDIA_S3_PREFIX",
        ] {
            if media_s3.is_none() && val(k).is_some() {
                return Err(ConfigError {
                    var: "WAPI_MEDIA_S3_BUCKET",
                    problem: format!("needed with {k}"),
                });
            }
        }
        pair(
            &val,
            "WAPI_MEDIA_S3_ACCESS_KEY_ID",
            "WAPI_MEDIA_S3_SECRET_ACCESS_KEY",
        )?;
        Ok(Self {
            listen,
            files_root: val("WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("./files")),
            redis_url,
            checkout_every: secs("WAPI_CONNECTIONS_CHECKOUT_DURATION_SECS", 60)?,
            connection_timeout: secs("WAPI_WHATSAPP_CONNECTION_TIMEOUT", 20)?,
            whatsapp_url: url("WAPI_WHATSAPP_URL", &["ws://", "wss://"])?
                .unwrap_or_else(|| WHATSAPP_URL.to_string()),
            whatsapp_version: match val("WAPI_WHATSAPP_VERSION") {
                None => None,
                Some(v) => Some(
                    crate::whatsapp::parse_version(&v).ok_or_else(|| ConfigError {
                        var: "WAPI_WHATSAPP_VERSION",
                        problem: format!("expected a version like 2.3000.1031000000, got {v:?}"),
                    })?,
                ),
            },
            whatsapp_version_url: url("WAPI_WHATSAPP_VERSION_URL", &["http://", "https://"])?
                .unwrap_or_else(|| "https://web.whatsapp.com/sw.js".to_string()),
            qr_console: flag("WAPI_QR_CONSOLE", true)?,
            forward_history: flag("WAPI_FORWARD_HISTORY", false)?,
            reject_calls: flag("WAPI_REJECT_CALLS", false)?,
            webhook: crate::webhook::Settings {
                default_base: url("WAPI_GETTING_MESSAGES_WEBHOOK", &["http://", "https://"])?,
                timeout: secs("WAPI_WEBHOOK_TIMEOUT_SECS", 10)?,
                max_attempts: match val("WAPI_WEBHOOK_MAX_ATTEMPTS") {
                    None => 15,
                    Some(v) => match v.parse::<u32>() {
                        Ok(n) if n > 0 => n,
                        _ => {
                            return Err(ConfigError {
                                var: "WAPI_WEBHOOK_MAX_ATTEMPTS",
                                problem: format!("expected a positive number, got {v:?}"),
                            });
                        }
                    },
                },
                max_backoff: secs("WAPI_WEBHOOK_MAX_BACKOFF_SECS", 300)?,
                secret: val("WAPI_WEBHOOK_SECRET"),
                insecure_receivers: match val("WAPI_ENV").as_deref() {
                    None | Some("prod") => false,
                    Some("dev") => true,
                    Some(v) => {
                        return Err(ConfigError {
                            var: "WAPI_ENV",
                            problem: format!("expected dev or prod, got {v:?}"),
                        });
                    }
                },
            },
            media: crate::media::Settings {
                download: flag("WAPI_MEDIA_DOWNLOAD", true)?,
                max_bytes: match val("WAPI_MEDIA_MAX_BYTES") {
                    None => 100 * 1024 * 1024,
                    Some(v) => match v.parse::<u64>() {
                        Ok(n) if n > 0 => n,
                        _ => {
                            return Err(ConfigError {
                                var: "WAPI_MEDIA_MAX_BYTES",
                                problem: format!("expected a positive number of bytes, got {v:?}"),
                            });
                        }
                    },
                },
                allow_private_urls: flag("WAPI_MEDIA_URL_ALLOW_PRIVATE", false)?,
                url_timeout: secs("WAPI_MEDIA_URL_TIMEOUT_SECS", 30)?,
                retention: Duration::from_secs(
                    u64::from(positive(&val, "WAPI_MEDIA_RETENTION_DAYS", 30)?) * 24 * 3600,
                ),
                public_url: url("WAPI_PUBLIC_URL", &["http://", "https://"])?,
                sandbox_media_ca: sandbox_media_ca(&val)?,
                s3: media_s3,
            },
            auth: auth_settings(&val, listen, flag("WAPI_ALLOW_NO_AUTH", false)?)?,
            rate_limit: RateLimit {
                per_second: positive(&val, "WAPI_RATE_LIMIT_RPS", 50)?,
                burst: positive(&val, "WAPI_RATE_LIMIT_BURST", 150)?,
            },
            clock: Clock::system(),
            sentry_dsn: url("WAPI_SENTRY_DSN", &["http://", "https://"])?.map(Secret),
            tls: pair(&val, "WAPI_CERT_FILE_PATH", "WAPI_CERT_KEY_PATH")?.map(|(cert, key)| {
                crate::tls::TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                }
            }),
        })
    }

    pub fn sessions_dir(&self) -> PathBuf {
        self.files_root.join("sessions")
    }

    pub fn qr_dir(&self) -> PathBuf {
        self.files_root.join("qr-codes")
    }
}

/// `WAPI_SANDBOX_MEDIA_CA`: a PEM file with the simulator's media
/// certificate, read by sandbox builds only (others verify WhatsApp's).
fn sandbox_media_ca(
    val: &impl Fn(&'static str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    let Some(path) = val("WAPI_SANDBOX_MEDIA_CA") else {
        return Ok(None);
    };
    if !cfg!(feature = "sandbox") {
        return Err(ConfigError {
            var: "WAPI_SANDBOX_MEDIA_CA",
            problem: "only a build with the sandbox feature trusts a simulator".into(),
        });
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| ConfigError {
            var: "WAPI_SANDBOX_MEDIA_CA",
            problem: format!("cannot read {path}: {e}"),
        })
}

/// Two settings that only mean something together: both or neither.
fn pair(
    val: &impl Fn(&'static str) -> Option<String>,
    a: &'static str,
    b: &'static str,
) -> Result<Option<(String, String)>, ConfigError> {
    match (val(a), val(b)) {
        (Some(x), Some(y)) => Ok(Some((x, y))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError {
            var: b,
            problem: format!("needed with {a}"),
        }),
        (None, Some(_)) => Err(ConfigError {
            var: a,
            problem: format!("needed with {b}"),
        }),
    }
}

fn positive(
    val: &impl Fn(&'static str) -> Option<String>,
    k: &'static str,
    default: u32,
) -> Result<u32, ConfigError> {
    match val(k) {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError {
                var: k,
                problem: format!("expected a positive number, got {v:?}"),
            }),
        },
    }
}

fn auth_settings(
    val: &impl Fn(&'static str) -> Option<String>,
    listen: SocketAddr,
    allow_no_auth: bool,
) -> Result<AuthSettings, ConfigError> {
    let mut api_keys = Vec::new();
    for key in val("WAPI_API_KEY").unwrap_or_default().split(',') {
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        if !(12..=128).contains(&key.len()) {
            // The key itself is not repeated in the message.
            return Err(ConfigError {
                var: "WAPI_API_KEY",
                problem: format!(
                    "each key must be 12 to 128 characters; one has {}",
                    key.len()
                ),
            });
        }
        api_keys.push(Secret(key.to_string()));
    }
    let admin = match (val("WAPI_ADMIN_USER"), val("WAPI_ADMIN_PASSWORD")) {
        (Some(u), Some(p)) => Some((u, Secret(p))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError {
                var: "WAPI_ADMIN_PASSWORD",
                problem: "needed with WAPI_ADMIN_USER".into(),
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError {
                var: "WAPI_ADMIN_USER",
                problem: "needed with WAPI_ADMIN_PASSWORD".into(),
            });
        }
    };
    let auth = AuthSettings {
        api_keys,
        admin,
        allow_no_auth,
        token_ttl: Duration::from_secs(7 * 24 * 60 * 60),
    };
    if !auth.enabled() && !listen.ip().is_loopback() && !allow_no_auth {
        return Err(ConfigError {
            var: "WAPI_INTERNAL_HOST",
            problem: format!(
                "{listen} is reachable from other machines and no credential is set: \
                 set WAPI_API_KEY (or WAPI_ADMIN_USER and WAPI_ADMIN_PASSWORD), listen on \
                 127.0.0.1, or set WAPI_ALLOW_NO_AUTH=true"
            ),
        });
    }
    Ok(auth)
}

fn parse_listen(v: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    v.parse()
        .ok()
        .or_else(|| v.to_socket_addrs().ok().and_then(|mut a| a.next()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| pairs.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.files_root, PathBuf::from("./files"));
        assert_eq!(c.checkout_every, Duration::from_secs(60));
        assert_eq!(c.connection_timeout, Duration::from_secs(20));
        assert_eq!(c.whatsapp_url, WHATSAPP_URL);
        assert!(c.qr_console);
        assert!(c.redis_url.is_none());
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (k, v) in [
            ("WAPI_INTERNAL_HOST", "nowhere"),
            ("WAPI_CONNECTIONS_CHECKOUT_DURATION_SECS", "soon"),
            ("WAPI_WHATSAPP_CONNECTION_TIMEOUT", "0"),
            ("WAPI_QR_CONSOLE", "maybe"),
            ("WAPI_WHATSAPP_URL", "http://x"),
            ("WAPI_GETTING_MESSAGES_WEBHOOK", "ftp://x"),
        ] {
            let e = with(&[(k, v)]).unwrap_err();
            assert_eq!(e.var, k);
        }
    }

    #[test]
    fn media_s3_settings_come_whole_or_not_at_all() {
        let c = with(&[
            ("WAPI_MEDIA_S3_BUCKET", "files"),
            ("WAPI_MEDIA_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("WAPI_MEDIA_S3_ACCESS_KEY_ID", "id"),
            ("WAPI_MEDIA_S3_SECRET_ACCESS_KEY", "secret"),
        ])
        .unwrap();
        let s3 = c.media.s3.unwrap();
        assert_eq!(s3.bucket, "files");
        assert_eq!(s3.region, "us-east-1");
        assert!(
            !format!("{s3:?}").contains("secret\""),
            "the secret is not printed"
        );
        assert!(with(&[]).unwrap().media.s3.is_none());
        for (pairs, var) in [
            (
                &[("WAPI_MEDIA_S3_ENDPOINT", "http://x")][..],
                "WAPI_MEDIA_S3_BUCKET",
            ),
            (
                &[
                    ("WAPI_MEDIA_S3_BUCKET", "b"),
                    ("WAPI_MEDIA_S3_ENDPOINT", "s3.local"),
                ][..],
                "WAPI_MEDIA_S3_ENDPOINT",
            ),
            (
                &[
                    ("WAPI_MEDIA_S3_BUCKET", "b"),
                    ("WAPI_MEDIA_S3_ACCESS_KEY_ID", "id"),
                ][..],
                "WAPI_MEDIA_S3_SECRET_ACCESS_KEY",
            ),
        ] {
            assert_eq!(with(pairs).unwrap_err().var, var);
        }
    }

    #[test]
    fn api_keys_and_the_open_port_rule() {
        let e = with(&[("WAPI_API_KEY", "short")]).unwrap_err();
        assert_eq!(e.var, "WAPI_API_KEY");
        assert!(!e.to_string().contains("short"), "the key is not echoed");
        let c = with(&[("WAPI_API_KEY", "a-long-enough-key, another-long-key")]).unwrap();
        assert_eq!(c.auth.api_keys.len(), 2);
        assert!(!format!("{c:?}").contains("a-long-enough-key"));
        let e = with(&[("WAPI_INTERNAL_HOST", "0.0.0.0:8080")]).unwrap_err();
        assert_eq!(e.var, "WAPI_INTERNAL_HOST");
        with(&[
            ("WAPI_INTERNAL_HOST", "0.0.0.0:8080"),
            ("WAPI_ALLOW_NO_AUTH", "true"),
        ])
        .unwrap();
        with(&[
            ("WAPI_INTERNAL_HOST", "0.0.0.0:8080"),
            ("WAPI_API_KEY", "a-long-enough-key"),
        ])
        .unwrap();
        assert_eq!(
            with(&[("WAPI_ADMIN_USER", "root")]).unwrap_err().var,
            "WAPI_ADMIN_PASSWORD"
        );
    }

    #[test]
    fn redis_host_port_becomes_a_url() {
        let c = with(&[("WAPI_REDIS_HOST", "127.0.0.1:6379")]).unwrap();
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
    }
}
