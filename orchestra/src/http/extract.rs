//! Who is calling, read off the request: the Authorization header parsed into
//! [`Credentials`] and the TCP peer, handed to the checks of `crate::auth`, which know no
//! request.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::auth::{self, Authenticated, Caller, Credentials, Node, NodeCall};
use crate::error::ApiError;
use crate::live::Watcher;
use crate::state::AppState;

/// The credentials of the Authorization header.
fn credentials(headers: &HeaderMap) -> Result<Credentials, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("authentication required (HTTP Basic mail:secret)"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, value) = header
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let decoded = base64_decode(value.trim())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
            let (user, secret) = decoded
                .split_once(':')
                .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
            Ok(Credentials::Basic(user.to_owned(), secret.to_owned()))
        }
        "bearer" => Ok(Credentials::Bearer(value.trim().to_owned())),
        _ => Err(ApiError::unauthorized(
            "unsupported authorization scheme; use Basic or Bearer",
        )),
    }
}

/// The bearer token of the Authorization header, when it holds one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    match credentials(headers) {
        Ok(Credentials::Bearer(token)) => Some(token),
        _ => None,
    }
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(input).ok()
}

impl FromRequestParts<AppState> for Node {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credentials = credentials(&parts.headers)?;
        let unit_id = super::path_param(parts, "unit_id")
            .await
            .map(|value| bounded(&value, 64));
        let path = bounded(parts.uri.path(), 200);
        let call = NodeCall {
            peer: peer(parts),
            unit_id: unit_id.as_deref(),
            path: &path,
        };
        auth::node(state, credentials, call)
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        auth::authenticate(state, credentials(&parts.headers)?, client_ip(parts)).await
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Authenticated::from_request_parts(parts, state)
            .await
            .map(|a| a.caller)
    }
}

impl FromRequestParts<AppState> for Watcher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credentials = credentials(&parts.headers)?;
        let ip = client_ip(parts);
        let authenticated = auth::authenticate(state, credentials.clone(), ip).await?;
        Ok(Watcher {
            caller: authenticated.caller,
            credentials,
            ip,
        })
    }
}

/// The TCP peer's address (the server runs with connect info); never a forwarded header,
/// which any client can write.
fn client_ip(parts: &Parts) -> Option<IpAddr> {
    peer(parts).map(|addr| addr.ip())
}

fn peer(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// At most `max` characters of a client-chosen value, for a log line.
fn bounded(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(base64_decode("cm9vdDpzM2NyZXQ=").unwrap(), b"root:s3cret");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn credentials_are_read_from_the_header() {
        let mut headers = HeaderMap::new();
        assert!(credentials(&headers).is_err());
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic cm9vdDpzM2NyZXQ="),
        );
        assert_eq!(
            credentials(&headers).unwrap(),
            Credentials::Basic("root".into(), "s3cret".into())
        );
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer_token(&headers).as_deref(), Some("abc"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Digest x"));
        assert!(credentials(&headers).is_err());
    }
}
