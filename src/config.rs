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
    /// `WAPI_QR_CONSOLE`: print QR codes in the terminal.
    pub qr_console: bool,
    /// `WAPI_FORWARD_HISTORY`: forward history-sync messages (default off).
    pub forward_history: bool,
    /// `WAPI_WEBHOOK_TIMEOUT_SECS`, `WAPI_WEBHOOK_MAX_ATTEMPTS`,
    /// `WAPI_WEBHOOK_MAX_BACKOFF_SECS`, `WAPI_WEBHOOK_SECRET`.
    pub webhook: crate::webhook::Settings,
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
            qr_console: flag("WAPI_QR_CONSOLE", true)?,
            forward_history: flag("WAPI_FORWARD_HISTORY", false)?,
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
            },
        })
    }

    pub fn sessions_dir(&self) -> PathBuf {
        self.files_root.join("sessions")
    }

    pub fn qr_dir(&self) -> PathBuf {
        self.files_root.join("qr-codes")
    }
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
    fn redis_host_port_becomes_a_url() {
        let c = with(&[("WAPI_REDIS_HOST", "127.0.0.1:6379")]).unwrap();
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
    }
}
