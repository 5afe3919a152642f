//! The media cookie (docs/architecture.md §4): a `<video>` or `<img>` cannot send a bearer
//! header, so the web UI trades its token for a cookie holding that same token
//! (`PUT /auth/cookie`), scoped to `/api/v1/medias`, `HttpOnly`, `SameSite=Strict`. Only
//! [`MediaCaller`] reads it, and only the GET/HEAD routes that serve a media's bytes take
//! that extractor (download, files, thumbnail): every other route ignores cookies, so the
//! cookie can read what the token reads there and do nothing else.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::state::AppState;

pub const COOKIE_NAME: &str = "oscied_media";
/// The routes it is sent to (all of them under the API's `/medias`).
pub const COOKIE_PATH: &str = "/api/v1/medias";

/// `Set-Cookie` for `token`, or (None) the one that clears it. A session cookie: the UI
/// keeps its token in sessionStorage, and the cookie lives as long. `Secure` when the request
/// came through an HTTPS proxy that says so.
pub fn set_cookie(token: Option<&str>, headers: &HeaderMap) -> String {
    let mut cookie = match token {
        Some(token) => {
            format!("{COOKIE_NAME}={token}; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict")
        }
        None => format!(
            "{COOKIE_NAME}=; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0; \
             Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        ),
    };
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if https {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The token in the request's media cookie, if it has one.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The caller of a route serving a media's bytes: the Authorization header when there is
/// one (as everywhere), else on GET and HEAD the media cookie's token.
pub struct MediaCaller(pub Caller);

impl FromRequestParts<AppState> for MediaCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.contains_key(AUTHORIZATION) {
            return Caller::from_request_parts(parts, state)
                .await
                .map(MediaCaller);
        }
        let readable = parts.method == Method::GET || parts.method == Method::HEAD;
        match cookie_token(&parts.headers).filter(|_| readable) {
            Some(token) => auth::bearer(state, &token)
                .await
                .map(|a| MediaCaller(a.caller))
                .map_err(|mut e| {
                    e.message = format!("the media cookie: {}", e.message);
                    e
                }),
            None => Err(ApiError::unauthorized(
                "authentication required (HTTP Basic mail:secret, a bearer token, or the media \
                 cookie from PUT /api/v1/auth/cookie)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        assert_eq!(cookie_token(&headers), None);
        headers.append(COOKIE, HeaderValue::from_static("a=1; oscied_mediax=no"));
        assert_eq!(cookie_token(&headers), None);
        headers.append(
            COOKIE,
            HeaderValue::from_static("b=2;oscied_media=abc ; c=3"),
        );
        assert_eq!(cookie_token(&headers).as_deref(), Some("abc"));
        let mut empty = HeaderMap::new();
        empty.append(COOKIE, HeaderValue::from_static("oscied_media="));
        assert_eq!(cookie_token(&empty), None);
    }

    #[test]
    fn cookies_are_secure_behind_https() {
        let mut headers = HeaderMap::new();
        let plain = set_cookie(Some("t"), &headers);
        assert_eq!(
            plain,
            "oscied_media=t; Path=/api/v1/medias; HttpOnly; SameSite=Strict"
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(set_cookie(Some("t"), &headers).ends_with("; Secure"));
        let cleared = set_cookie(None, &headers);
        assert!(cleared.starts_with("oscied_media=; ") && cleared.contains("Max-Age=0"));
    }
}
