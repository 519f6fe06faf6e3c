//! `GET /v1/events`: every event the webhooks carry, live, as Server-Sent
//! Events in the native envelope (`event:` the kind, `id:` the event id,
//! `data:` the envelope). A view, not a queue: a reader sees the events
//! raised while it is connected, and one that falls more than 1,024 events
//! behind gets a final `error` event and is disconnected rather than slow
//! the bridge down. `?session=` keeps one session's; a session key sees
//! only its own.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, Shared, name};
use crate::auth::Principal;

#[derive(serde::Deserialize)]
pub struct EventsQuery {
    session: Option<String>,
}

pub async fn stream(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let only = match (&who, q.session) {
        (Principal::Session { name: own, .. }, Some(s)) if &s != own => {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("session: this key may only use session {own}"),
            ));
        }
        (Principal::Session { name: own, .. }, _) => Some(own.clone()),
        (_, Some(s)) => {
            let n = name(&s)
                .map_err(|_| super::bad(format!("session: {s:?} is not a session name")))?;
            Some(n.to_string())
        }
        (_, None) => None,
    };
    let rx = m.webhooks().live().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the bridge is shutting down".into(),
        )
    })?;
    let events = futures::stream::unfold(Some(rx), move |rx| {
        let only = only.clone();
        async move {
            let mut rx = rx?;
            loop {
                match rx.recv().await {
                    Ok(ev) if only.as_deref().is_some_and(|s| ev["session"] != s) => continue,
                    Ok(ev) => return Some((Ok::<_, Infallible>(sse(&ev)), Some(rx))),
                    Err(RecvError::Lagged(n)) => {
                        let e = Event::default().event("error").data(
                            json!({"error": format!(
                                "this reader fell {n} events behind and is disconnected; the webhooks have every event"
                            )})
                            .to_string(),
                        );
                        return Some((Ok(e), None));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse(ev: &Arc<Value>) -> Event {
    Event::default()
        .event(ev["event"].as_str().unwrap_or("event"))
        .id(ev["id"].as_str().unwrap_or_default())
        .data(ev.to_string())
}
