//! Idempotent submits (docs/architecture.md §16): `Idempotency-Key` on `POST
//! /transform/tasks`, `POST /publisher/tasks` and `POST /medias` (registering a file).
//!
//! The first request with a key, per caller and route, stores a record (a conditional insert:
//! of requests racing on one key, on any replica, one wins), runs, and keeps its answer for
//! [`KEPT`]. A repeat with the same body gets that answer again, status and body, with
//! `Idempotent-Replayed: true`, and creates nothing; one arriving while the first still runs
//! waits for its answer (up to [`WAIT`], then a 409 saying to retry). A repeat with another
//! body is a 422. A request that failed keeps nothing: its error is not replayed, so a retry
//! after a 503 runs anew. A request whose replica died mid-way holds the key for [`LEASE`]
//! at most.

use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::{Caller, digest};
use crate::error::{ApiError, ApiResult};
use crate::models::{Idempotency, now};
use crate::state::AppState;

/// How long an answer is kept for repeats.
pub const KEPT: chrono::Duration = chrono::Duration::hours(24);
/// How long a request in progress holds its key against another replica's repeat.
const LEASE: chrono::Duration = chrono::Duration::seconds(120);
/// How long a repeat waits for the first request's answer.
const WAIT: Duration = Duration::from_secs(30);
/// The longest key accepted.
pub const MAX_KEY: usize = 255;

/// A request's key and what identifies its body.
#[derive(Debug, Clone)]
pub struct Key {
    pub key: String,
    pub fingerprint: String,
}

impl Key {
    /// The header's value, checked: 1 to [`MAX_KEY`] visible ASCII characters. `body` is the
    /// request's JSON (its fingerprint ignores key order and spacing).
    pub fn new(key: &str, body: &Value) -> ApiResult<Key> {
        let fine = !key.is_empty()
            && key.len() <= MAX_KEY
            && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        if !fine {
            return Err(ApiError::invalid_field(
                "Idempotency-Key",
                format!(
                    "Idempotency-Key: 1 to {MAX_KEY} visible ASCII characters (a UUID is a good one)"
                ),
            ));
        }
        Ok(Key {
            key: key.to_owned(),
            fingerprint: digest(&[&canonical(body).to_string()]),
        })
    }
}

/// The same JSON with every object's keys sorted (serde_json keeps them in the order read,
/// here), so that a body sent again in another order is the same body.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// An answer, first or replayed.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub replayed: bool,
}

/// Run `request` once per key (see the module): without a key it simply runs.
pub async fn once<F, Fut>(
    state: &AppState,
    caller: &Caller,
    route: &str,
    key: Option<Key>,
    request: F,
) -> ApiResult<Answer>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<(StatusCode, Value)>>,
{
    let Some(key) = key else {
        let (status, body) = request().await?;
        return Ok(Answer {
            status,
            body,
            replayed: false,
        });
    };
    let owner = caller
        .user_id()
        .map_or_else(|| "root".to_owned(), |id| id.to_string());
    let id = digest(&[&owner, route, &key.key]);
    let mut record = match claim(state, &id, &key).await? {
        Claimed::Replay(answer) => return Ok(answer),
        Claimed::Mine(record) => record,
    };
    match request().await {
        Ok((status, body)) => {
            record.status = Some(status.as_u16());
            record.body = Some(body.to_string());
            match state.store.finish_idempotency(&record).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    route,
                    "an idempotency record was taken over while its request ran"
                ),
                Err(e) => {
                    tracing::warn!(route, error = %e, "the answer of an idempotent request was not kept")
                }
            }
            Ok(Answer {
                status,
                body,
                replayed: false,
            })
        }
        Err(e) => {
            if let Err(gone) = state.store.delete_idempotency(&id, &record.holder).await {
                tracing::warn!(route, error = %gone, "a failed idempotent request's key stays held until its lease ends");
            }
            Err(e)
        }
    }
}

enum Claimed {
    Mine(Idempotency),
    Replay(Answer),
}

/// Take the key, or find the answer it got (waiting while its request runs).
async fn claim(state: &AppState, id: &str, key: &Key) -> ApiResult<Claimed> {
    let started = std::time::Instant::now();
    let holder = Uuid::new_v4().to_string();
    let mut round: u64 = 0;
    loop {
        let at = now();
        let record = Idempotency {
            id: id.to_owned(),
            fingerprint: key.fingerprint.clone(),
            holder: holder.clone(),
            status: None,
            body: None,
            created_at: at,
            expires_at: at + KEPT,
            lease_until: at + LEASE,
        };
        if state.store.insert_idempotency(&record).await? {
            return Ok(Claimed::Mine(record));
        }
        let Some(found) = state.store.get_idempotency(id).await? else {
            continue; // Removed meanwhile (its request failed): try again.
        };
        let stale = found.expires_at <= at || (found.status.is_none() && found.lease_until <= at);
        if stale {
            state.store.delete_idempotency(id, &found.holder).await?;
            continue;
        }
        if found.fingerprint != key.fingerprint {
            return Err(ApiError::invalid_field(
                "Idempotency-Key",
                format!(
                    "Idempotency-Key {:?} was used with another request body in the last 24 h: \
                     send a new key with a new request",
                    key.key
                ),
            ));
        }
        if let (Some(status), Some(body)) = (found.status, &found.body) {
            return Ok(Claimed::Replay(Answer {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                body: serde_json::from_str(body).unwrap_or(Value::Null),
                replayed: true,
            }));
        }
        if started.elapsed() >= WAIT {
            return Err(ApiError::conflict(format!(
                "a request with Idempotency-Key {:?} is still being processed; retry later",
                key.key
            )));
        }
        tokio::time::sleep(Duration::from_millis(20 + 10 * round.min(18))).await;
        round += 1;
    }
}

/// Forget the answers older than [`KEPT`] (the loops' leader, now and then).
pub async fn sweep(state: &AppState) {
    match state.store.delete_expired_idempotency(now()).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(forgotten = n, "expired idempotency keys forgotten"),
        Err(e) => tracing::debug!(error = %e, "idempotency sweep: store unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_bodies_compared_whatever_their_order() {
        let a = Key::new("k-1", &serde_json::json!({"a": 1, "b": [1, 2]})).unwrap();
        let b: Value = serde_json::from_str(r#"{ "b": [1,2], "a": 1 }"#).unwrap();
        assert_eq!(a.fingerprint, Key::new("k-1", &b).unwrap().fingerprint);
        let c = Key::new("k-1", &serde_json::json!({"a": 2, "b": [1, 2]})).unwrap();
        assert_ne!(a.fingerprint, c.fingerprint);
        for bad in ["", "tab\there", "é", &"x".repeat(MAX_KEY + 1)] {
            let e = Key::new(bad, &Value::Null).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
            assert_eq!(e.field.as_deref(), Some("Idempotency-Key"));
        }
    }
}
