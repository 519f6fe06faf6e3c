//! Lookups: which numbers are on WhatsApp, and a contact's profile.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Body, Shared, bad, name};
use crate::whatsapp::{ActionOutcome, ChatAction};

/// Numbers a session may check per minute. WhatsApp bans accounts that
/// enumerate numbers; this keeps a session near what a person's phone asks
/// when its address book syncs, whatever the caller sends.
const CHECKS_PER_MINUTE: u32 = 300;

fn limiter() -> &'static DefaultKeyedRateLimiter<String> {
    static L: OnceLock<DefaultKeyedRateLimiter<String>> = OnceLock::new();
    L.get_or_init(|| {
        RateLimiter::keyed(Quota::per_minute(
            NonZeroU32::new(CHECKS_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
        ))
    })
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CheckReq {
    /// Phone numbers in international form (digits, `+` allowed); at most 300.
    #[schemars(
        length(min = 1, max = 300),
        inner(regex(pattern = r"^\+?[0-9]{5,20}$"))
    )]
    phones: Vec<String>,
}

pub async fn check(
    State(m): Shared,
    Path(n): Path<String>,
    Body(req): Body<CheckReq>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let count = req.phones.len();
    if count == 0 || count > CHECKS_PER_MINUTE as usize {
        return Err(bad(format!(
            "phones: 1 to {CHECKS_PER_MINUTE} numbers, got {count}"
        )));
    }
    let mut phones = Vec::with_capacity(count);
    for (i, p) in req.phones.iter().enumerate() {
        let digits = super::messages::phone_digits(p)
            .ok_or_else(|| bad(format!("phones[{i}]: {p:?} is not a phone number")))?;
        phones.push(digits);
    }
    m.view(n)?;
    let cells = NonZeroU32::new(count as u32).unwrap_or(NonZeroU32::MIN);
    let wait = match limiter().check_key_n(&n.to_string(), cells) {
        Ok(Ok(())) => None,
        Ok(Err(not_until)) => Some(
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                + 1,
        ),
        // More than the whole budget: cannot happen (checked above).
        Err(_) => Some(60),
    };
    if let Some(wait) = wait {
        let mut res = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("phones: at most {CHECKS_PER_MINUTE} numbers a minute per session; retry in {wait} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(res);
    }
    let ActionOutcome::Checked(results) = m.act(n, ChatAction::Check { phones }).await? else {
        return Err(ApiError(
            StatusCode::BAD_GATEWAY,
            "unexpected answer".into(),
        ));
    };
    Ok(axum::Json(json!({ "results": results })).into_response())
}

/// Asks WhatsApp for a contact's online and last-seen updates, posted as
/// `presence` events to sessions that subscribe to them.
pub async fn subscribe(
    State(m): Shared,
    Path((n, c)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let jid = contact(&c)?;
    m.act(n, ChatAction::Subscribe { jid: jid.clone() }).await?;
    Ok(axum::Json(json!({ "jid": jid, "subscribed": true })).into_response())
}

fn contact(c: &str) -> Result<String, ApiError> {
    crate::whatsapp::parse_recipient(c)
        .map(|j| j.to_string())
        .map_err(|_| bad(format!("contact: {c:?} is not a phone number or JID")))
}

/// A contact's profile: JID, LID, status text and profile picture URL.
pub async fn profile(
    State(m): Shared,
    Path((n, c)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let n = name(&n)?;
    let jid = contact(&c)?;
    let ActionOutcome::Profile(p) = m.act(n, ChatAction::Profile { jid }).await? else {
        return Err(ApiError(
            StatusCode::BAD_GATEWAY,
            "unexpected answer".into(),
        ));
    };
    Ok(axum::Json(p).into_response())
}
