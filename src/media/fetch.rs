//! Fetching a caller's `url` for a media send without opening a way into the
//! bridge's own network (SSRF).
//!
//! The bridge usually runs next to things a caller must not reach through it:
//! the cloud provider's metadata service (credentials), the admin ports of its
//! own database, other internal services. A URL check on the *string* is not
//! enough: a name can resolve to an internal address, resolve differently a
//! second time (DNS rebinding), or redirect there. So the rule is applied to
//! the address actually connected to:
//!
//! - names are resolved by [`GuardedResolver`], which drops forbidden
//!   addresses, so the connection can only go to an allowed one;
//! - reqwest does not call the resolver for IP-literal hosts, so those are
//!   checked here before every request;
//! - redirects are followed here, not by reqwest, so that every hop goes
//!   through both checks;
//! - proxies are disabled, so an environment proxy cannot route the request
//!   elsewhere.
//!
//! Addresses come in three classes (see [`classify`]): public ones are
//! allowed; loopback and private ones only with `allow_private` (a bridge
//! fetching media from a server on its own network is a legitimate setup);
//! link-local (which includes the cloud metadata address 169.254.169.254),
//! unspecified, multicast, broadcast and a few cloud metadata addresses are
//! never allowed.

use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::warn;

/// The setting that lifts the private-address refusal for media URLs, named in
/// the refusal so that an operator knows what to change.
const MEDIA_REMEDY: &str = "set WAPI_MEDIA_URL_ALLOW_PRIVATE=true to allow";

/// The refusal's hint for [`check_destination`], whose setting (if any) is
/// not this module's business.
const GENERIC_REMEDY: &str = "private addresses are disabled for this setting";

/// What a fetch may do.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Allow loopback and private (RFC 1918, CGNAT, IPv6 unique local)
    /// addresses. Link-local and metadata addresses stay refused regardless.
    pub allow_private: bool,
    /// The largest body accepted, in bytes.
    pub max_bytes: u64,
    /// Bound on the whole fetch: every redirect hop and the body.
    pub timeout: Duration,
    /// How many redirects are followed at most.
    pub max_redirects: usize,
}

/// A fetched body, written to the destination file.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Number of bytes written.
    pub size: u64,
    /// The final response's `Content-Type`, if any (and valid text).
    pub content_type: Option<String>,
    /// SHA-256 of the bytes written.
    pub sha256: [u8; 32],
    /// The URL the body came from, after redirects.
    pub final_url: String,
}

/// Why a fetch failed. The Display texts are shown to API callers after
/// "url: ", so they say what happened in plain words.
///
/// `Clone` (every field is plain data) so that a refusal raised inside the
/// resolver can be taken back out of reqwest's error chain as it was.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("not a valid URL: {0}")]
    InvalidUrl(String),
    #[error("only http and https URLs are allowed")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    /// A loopback or private address while private addresses are off.
    #[error("{addr} is {kind}: not allowed ({remedy})")]
    Private {
        addr: IpAddr,
        kind: &'static str,
        remedy: &'static str,
    },
    /// An address that is never allowed (link-local, metadata, ...).
    #[error("{addr} is {kind}: never allowed")]
    Forbidden { addr: IpAddr, kind: &'static str },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("the server answered {0} without a usable Location header")]
    BadRedirect(u16),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("no answer within {}", show_duration(*.0))]
    Timeout(Duration),
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the download was interrupted: {0}")]
    Body(String),
    /// A local failure (writing the file, setting up the HTTP client).
    #[error("cannot store the download: {0}")]
    Local(String),
}

impl FetchError {
    /// Whether the body was over the size limit (callers answer 413 for it).
    pub fn is_too_large(&self) -> bool {
        matches!(self, FetchError::TooLarge { .. })
    }
}

/// "10 s" for whole seconds, "250 ms" otherwise.
fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Streams the body of `url` into the file at `dest` (created/truncated),
/// following at most `policy.max_redirects` redirects. On any error after the
/// file was created, the partial file is removed; `dest` is not touched when
/// the fetch fails before the final answer (refusal, status, redirects).
pub async fn fetch_to_file(
    policy: &FetchPolicy,
    url: &str,
    dest: &Path,
) -> Result<Fetched, FetchError> {
    // Set by `fetch_inner` just before it creates the file; read after the
    // inner future is finished or dropped (timeout), to clean up.
    let mut created = false;
    let result =
        match tokio::time::timeout(policy.timeout, fetch_inner(policy, url, dest, &mut created))
            .await
        {
            Ok(result) => result,
            Err(_elapsed) => Err(FetchError::Timeout(policy.timeout)),
        };
    if result.is_err()
        && created
        && let Err(e) = tokio::fs::remove_file(dest).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %dest.display(), error = %e, "cannot remove a partial download");
    }
    result
}

async fn fetch_inner(
    policy: &FetchPolicy,
    url: &str,
    dest: &Path,
    created: &mut bool,
) -> Result<Fetched, FetchError> {
    // A client per call: the policy's `allow_private` is baked into its
    // resolver, and a fresh client carries no connection pool over from other
    // fetches (nothing outlives the call, nothing to keep in sync with the
    // policy). The cost, building the TLS configuration, is small next to a
    // media download.
    let client = guarded_client(policy.allow_private, MEDIA_REMEDY)?;

    let mut current = parse_url(url)?;
    let mut redirects = 0usize;
    let mut response = loop {
        check_url(&current, policy.allow_private, MEDIA_REMEDY)?;
        // Only GET is ever sent, so 301/302/303 "turn into GET" trivially and
        // 307/308 keep GET as well.
        let response = client
            .get(current.clone())
            .send()
            .await
            .map_err(send_error)?;
        let status = response.status();
        if is_redirect(status) {
            if redirects >= policy.max_redirects {
                return Err(FetchError::TooManyRedirects(policy.max_redirects));
            }
            redirects += 1;
            // Relative locations are resolved against the current URL; the
            // next turn of the loop checks the new URL before connecting.
            let next = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| current.join(loc).ok())
                .ok_or(FetchError::BadRedirect(status.as_u16()))?;
            current = next;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        break response;
    };

    // Refuse early when the server announces a body over the limit.
    if let Some(len) = response.content_length()
        && len > policy.max_bytes
    {
        return Err(FetchError::TooLarge {
            limit: policy.max_bytes,
        });
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    // Marked before creating: if the timeout drops us during the open, the
    // cleanup still runs (it tolerates a file that is not there).
    *created = true;
    let mut file = tokio::fs::File::create(dest).await.map_err(local_error)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    // Chunk by chunk: the body is never held whole in memory, and the count is
    // checked before each write so that nothing past the limit is written
    // (Content-Length may be absent, or lie).
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Body(describe(&e)))?
    {
        size = size.saturating_add(chunk.len() as u64);
        if size > policy.max_bytes {
            return Err(FetchError::TooLarge {
                limit: policy.max_bytes,
            });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(local_error)?;
    }
    // tokio's File writes in the background: flush to have it all written
    // (and its errors seen) before answering.
    file.flush().await.map_err(local_error)?;

    Ok(Fetched {
        size,
        content_type,
        sha256: hasher.finalize().into(),
        final_url: current.to_string(),
    })
}

/// For webhook URLs set by a less trusted caller: parses, resolves the host
/// and refuses forbidden addresses (the same address rule as the fetch).
///
/// Stricter than the fetch on one point: the fetch drops forbidden addresses
/// and connects to the allowed rest, but here *any* forbidden address refuses
/// the URL, because the later delivery resolves again with its own client and
/// could land on any of them.
pub async fn check_destination(url: &str, allow_private: bool) -> Result<(), FetchError> {
    let url = parse_url(url)?;
    check_url(&url, allow_private, GENERIC_REMEDY)?;
    // IP literals were judged by check_url; names are resolved here.
    if let Some(host) = url.host_str()
        && literal_ip(host).is_none()
    {
        let port = url.port_or_known_default().unwrap_or(0);
        for addr in lookup(host, port).await? {
            check_ip(addr.ip(), allow_private, GENERIC_REMEDY)?;
        }
    }
    Ok(())
}

fn parse_url(url: &str) -> Result<Url, FetchError> {
    Url::parse(url).map_err(|e| FetchError::InvalidUrl(e.to_string()))
}

/// Scheme, host, and the address rule for IP-literal hosts (which reqwest
/// connects to without asking the resolver).
fn check_url(url: &Url, allow_private: bool, remedy: &'static str) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Scheme);
    }
    let host = url.host_str().ok_or(FetchError::NoHost)?;
    if host.is_empty() {
        return Err(FetchError::NoHost);
    }
    if let Some(ip) = literal_ip(host) {
        check_ip(ip, allow_private, remedy)?;
    }
    Ok(())
}

/// The address of an IP-literal host (`host_str` form). The url crate
/// normalises IPv4 spellings (0x7f.1, 2130706433, a trailing dot) to the
/// dotted form, and keeps the brackets of IPv6 literals.
fn literal_ip(host: &str) -> Option<IpAddr> {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

fn is_redirect(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// A client that cannot reach a forbidden address: own resolver, no proxy,
/// no automatic redirects.
fn guarded_client(
    allow_private: bool,
    remedy: &'static str,
) -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private,
            remedy,
        }))
        .build()
        .map_err(|e| FetchError::Local(format!("cannot set up the HTTP client: {}", describe(&e))))
}

/// Resolves with the system resolver and keeps only allowed addresses; fails
/// with the refusal when none is left.
struct GuardedResolver {
    allow_private: bool,
    remedy: &'static str,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let remedy = self.remedy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) in.
            let addrs = lookup(&host, 0).await?;
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match check_ip(a.ip(), allow_private, remedy) {
                    Ok(()) => true,
                    Err(e) => {
                        refusal.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let err = refusal.unwrap_or_else(|| FetchError::Resolve {
                    host,
                    reason: "no address found".into(),
                });
                return Err(err.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| FetchError::Resolve {
            host: host.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(addrs.collect())
}

/// A reqwest error from `send`: the resolver's refusal if that is what it
/// carries, otherwise a connection failure described by its causes.
fn send_error(err: reqwest::Error) -> FetchError {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<FetchError>() {
            return refusal.clone();
        }
        source = e.source();
    }
    FetchError::Connect(describe(&err))
}

/// The causes of a reqwest error, joined: its own text ("error sending
/// request for url (...)") says little, the innermost ones say why.
fn describe(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        // hyper-util's wrapper ("client error (Connect)") adds nothing.
        if !text.starts_with("client error (") && !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

fn local_error(e: std::io::Error) -> FetchError {
    FetchError::Local(e.to_string())
}

/// How an address is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Public,
    /// Refused unless `allow_private`; the text names the kind of address.
    Private(&'static str),
    /// Always refused.
    Never(&'static str),
}

const LINK_LOCAL: &str = "a link-local/cloud metadata address";
const METADATA: &str = "a cloud metadata address";

fn check_ip(ip: IpAddr, allow_private: bool, remedy: &'static str) -> Result<(), FetchError> {
    match classify(ip) {
        Class::Public => Ok(()),
        Class::Private(_) if allow_private => Ok(()),
        Class::Private(kind) => Err(FetchError::Private {
            addr: ip,
            kind,
            remedy,
        }),
        Class::Never(kind) => Err(FetchError::Forbidden { addr: ip, kind }),
    }
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, ..] = ip.octets();
    // Metadata services outside 169.254/16, never allowed even where the
    // range they sit in would be: Alibaba Cloud (in CGNAT space), Oracle
    // Cloud's legacy one, Azure's WireServer (a public address).
    const METADATA_V4: [Ipv4Addr; 3] = [
        Ipv4Addr::new(100, 100, 100, 200),
        Ipv4Addr::new(192, 0, 0, 192),
        Ipv4Addr::new(168, 63, 129, 16),
    ];
    if a == 169 && b == 254 {
        Class::Never(LINK_LOCAL)
    } else if METADATA_V4.contains(&ip) {
        Class::Never(METADATA)
    } else if a == 0 {
        Class::Never("an unspecified (0.0.0.0/8) address")
    } else if ip.is_broadcast() {
        Class::Never("the broadcast address")
    } else if ip.is_multicast() {
        Class::Never("a multicast address")
    } else if a >= 240 {
        Class::Never("a reserved (240.0.0.0/4) address")
    } else if ip.is_loopback() {
        Class::Private("a loopback address")
    } else if ip.is_private() {
        Class::Private("a private address")
    } else if a == 100 && (b & 0xc0) == 64 {
        Class::Private("a shared (CGNAT, 100.64.0.0/10) address")
    } else {
        Class::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    // AWS's metadata service on IPv6 (Nitro), inside fc00::/7.
    const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Class::Never("the unspecified address")
    } else if ip.is_loopback() {
        Class::Private("a loopback address")
    } else if let Some(v4) = embedded_v4(ip) {
        // ::ffff:127.0.0.1 reaches 127.0.0.1: judged by the IPv4 meaning.
        classify_v4(v4)
    } else if ip == AWS_METADATA_V6 {
        Class::Never(METADATA)
    } else if first & 0xffc0 == 0xfe80 {
        Class::Never(LINK_LOCAL)
    } else if ip.is_multicast() {
        Class::Never("a multicast address")
    } else if first & 0xfe00 == 0xfc00 {
        Class::Private("a unique local address")
    } else if first & 0xffc0 == 0xfec0 {
        Class::Private("a site-local address")
    } else {
        Class::Public
    }
}

/// The IPv4 address an IPv6 one stands for: IPv4-mapped (::ffff:a.b.c.d),
/// IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks)
/// and the NAT64 well-known prefix (64:ff9b::a.b.c.d). `::` and `::1` are
/// handled before this is asked.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s[..6] {
        [0, 0, 0, 0, 0, 0] | [0x64, 0xff9b, 0, 0, 0, 0] => Some(low),
        _ => None,
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests;
