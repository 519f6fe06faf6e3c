//! The gate in front of every route but `GET /v1/health`: credentials
//! (see [`crate::auth`]), the scope of session keys, and rate limits per
//! endpoint and credential (50 requests per second, bursts of 150, as the
//! Business API).

use std::num::NonZeroU32;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{ApiError, AppState};
use crate::auth::{AuthError, Principal, rate_identity};
use crate::config::RateLimit;

pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl Limiter {
    pub fn new(rate: RateLimit) -> Self {
        let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds to wait)` past the limit.
    fn check(&self, key: String) -> Result<(), u64> {
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match &e {
            AuthError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            // No login on this bridge: the route has nothing to offer.
            AuthError::NoLogins => StatusCode::NOT_FOUND,
            // A key, not a token: this credential cannot do that.
            AuthError::NotAToken => StatusCode::FORBIDDEN,
            AuthError::Missing | AuthError::Invalid | AuthError::BadBasic => {
                StatusCode::UNAUTHORIZED
            }
        };
        ApiError(status, e.to_string())
    }
}

/// Routes that check their own credentials (login takes Basic) or none.
fn public(path: &str) -> bool {
    path == "/v1/health" || path == "/v1/users/login"
}

/// The session a route works on, from its path: the segment where the
/// route's template has `{name}` or `{id}`. `None` for routes over all
/// sessions (admin routes).
fn session_of<'a>(template: &str, path: &'a str) -> Option<&'a str> {
    let at = template
        .split('/')
        .position(|seg| seg == "{name}" || seg == "{id}" || seg == "{phone_number_id}")?;
    path.split('/').nth(at)
}

/// Routes a session key may use although their path names no session: the
/// handler checks the session named in the body, or the one the media
/// belongs to.
fn checks_body(template: &str) -> bool {
    matches!(
        template.trim_end_matches('/'),
        "/send-message"
            | "/register-session"
            | "/v1/media/{media_id}"
            | "/v1/media/{media_id}/file"
            | "/{version}/{object_id}"
            | "/v1/events"
    )
}

pub async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let key = format!(
        "{} {template} {}",
        req.method(),
        rate_identity(req.headers())
    );
    if let Err(wait) = st.limiter.check(key) {
        let mut res = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit exceeded: retry in {wait} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.max(1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    if public(&template) {
        return next.run(req).await;
    }
    let principal = match st.auth.authenticate(req.headers()).await {
        Ok(p) => p,
        Err(e) => {
            let mut res = ApiError::from(e).into_response();
            if res.status() == StatusCode::UNAUTHORIZED {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return res;
        }
    };
    if let Principal::Session { name, epoch } = &principal {
        let allowed = match session_of(&template, req.uri().path()) {
            Some(s) => s == name,
            None => {
                checks_body(&template)
                    // The list answers with the key's own session only.
                    || (template == "/v1/sessions" && req.method() == axum::http::Method::GET)
            }
        };
        // A key outlives nothing: a session deleted and made again under
        // the same name is a different session.
        let same_session = st.manager.view(name).is_ok_and(|v| v.epoch == *epoch);
        if !allowed || !same_session {
            return ApiError(
                StatusCode::FORBIDDEN,
                format!("this key may only use session {name}"),
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// For handlers that find the session in the body.
pub fn allow(principal: &Principal, session: &str) -> Result<(), ApiError> {
    if principal.may_use(session) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("this key may not use session {session}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_comes_from_the_templates_slot() {
        assert_eq!(
            session_of("/v1/sessions/{name}/messages", "/v1/sessions/s1/messages"),
            Some("s1")
        );
        assert_eq!(
            session_of("/get-qr-code/{id}/", "/get-qr-code/s2/"),
            Some("s2")
        );
        assert_eq!(session_of("/v1/sessions", "/v1/sessions"), None);
        assert!(checks_body("/send-message/"));
        assert!(!checks_body("/v1/sessions"));
    }

    #[test]
    fn past_the_burst_it_says_when_to_retry() {
        let l = Limiter::new(RateLimit {
            per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(l.check("k".into()).is_ok());
        }
        assert!(matches!(l.check("k".into()), Err(1)));
        assert!(l.check("other".into()).is_ok(), "per key");
    }
}
