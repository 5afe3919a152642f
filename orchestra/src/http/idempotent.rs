//! The `Idempotency-Key` of the submit routes, read off the request with its JSON body
//! (`crate::idempotency` keeps the answers), and the answer shaped back, replayed or not.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiJson;
use crate::error::{ApiError, ApiResult};
use crate::idempotency::{Answer, Key};

/// The header clients send.
pub const HEADER: &str = "idempotency-key";
/// Set on an answer given again to a repeated request.
const REPLAYED: &str = "idempotent-replayed";
/// A submit's JSON body is at most this large.
const MAX_JSON: usize = 1024 * 1024;

/// A JSON body with the request's idempotency key, if it sent one.
pub struct Submitted<T> {
    pub body: T,
    pub key: Option<Key>,
}

/// The raw `Idempotency-Key`, if sent (a value that is not text is refused).
pub fn raw_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    headers
        .get(HEADER)
        .map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| {
                ApiError::invalid_field("Idempotency-Key", "Idempotency-Key: not visible ASCII")
            })
        })
        .transpose()
}

/// The key of a request with `raw` key and `bytes` of JSON body.
fn key_of(raw: Option<&str>, bytes: &[u8]) -> ApiResult<Option<Key>> {
    raw.map(|raw| {
        let body = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        Key::new(raw, &body)
    })
    .transpose()
}

/// The body of `request`, at most [`MAX_JSON`] bytes.
async fn json_bytes(body: Body) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, MAX_JSON)
        .await
        .map_err(|e| match ApiError::stalled_body(&e) {
            Some(stalled) => stalled,
            None => ApiError::too_large("a JSON body must be at most 1 MiB"),
        })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Submitted<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let raw = raw_key(request.headers())?;
        let (parts, body) = request.into_parts();
        let bytes = json_bytes(body).await?;
        let key = key_of(raw.as_deref(), &bytes)?;
        let request = Request::from_parts(parts, Body::from(bytes));
        let ApiJson(body) = ApiJson::<T>::from_request(request, state).await?;
        Ok(Submitted { body, key })
    }
}

/// The answer as the client gets it: a replay says so in `Idempotent-Replayed: true`.
pub fn answered(answer: Answer) -> Response {
    let mut response = (answer.status, Json(answer.body)).into_response();
    if answer.replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// A created record as the first answer of a submit.
pub fn created<T: serde::Serialize>(record: &T) -> ApiResult<(StatusCode, Value)> {
    let body = serde_json::to_value(record)
        .map_err(|e| ApiError::internal(format!("an answer did not encode: {e}")))?;
    Ok((StatusCode::CREATED, body))
}
