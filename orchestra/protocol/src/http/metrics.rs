//! What every OSCIED `/metrics` answer shares: the exposition of a `prometheus-client`
//! registry, and the optional bearer token (`OSCIED_METRICS_TOKEN`) that guards it.

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

/// The OpenMetrics text format, which Prometheus prefers to its older text format.
pub const CONTENT_TYPE_VALUE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registries' metrics as one exposition (a single `# EOF`).
pub fn encode(registries: &[&Registry]) -> String {
    let mut body = String::new();
    for registry in registries {
        // Writing into a String cannot fail; a metric that could not encode is left out.
        let _ = prometheus_client::encoding::text::encode_registry(&mut body, registry);
    }
    let _ = prometheus_client::encoding::text::encode_eof(&mut body);
    body
}

/// A 200 with an exposition.
pub fn exposition(body: String) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_VALUE))],
        body,
    )
        .into_response()
}

/// Whether the request may read the metrics: always when no token is set, else only with
/// `Authorization: Bearer <token>` (compared in constant time).
pub fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, value) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(value.trim())
        })
        .is_some_and(|given| same_bytes(given.as_bytes(), token.as_bytes()))
}

/// The 401 of a scrape without the token, in the error shape of every OSCIED server (the
/// orchestra's and the units').
pub fn unauthorized() -> Response {
    let mut response = super::error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "GET /metrics needs Authorization: Bearer <OSCIED_METRICS_TOKEN>",
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"OSCIED metrics\""),
    );
    response
}

/// Equality whose time depends on the lengths only, not on where the bytes differ: a token
/// cannot be guessed byte by byte from answer times.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_token_is_required_when_set() {
        assert!(authorized(&HeaderMap::new(), None));
        assert!(!authorized(&HeaderMap::new(), Some("s3cret")));
        assert!(authorized(&with("Bearer s3cret"), Some("s3cret")));
        assert!(authorized(&with("bearer s3cret"), Some("s3cret")));
        assert!(!authorized(&with("Bearer s3cre"), Some("s3cret")));
        assert!(!authorized(&with("Bearer s3crets"), Some("s3cret")));
        assert!(!authorized(&with("Basic s3cret"), Some("s3cret")));
        assert!(!authorized(&with("Bearer "), Some("s3cret")));
    }

    #[test]
    fn one_eof_ends_the_exposition() {
        let (mut a, mut b) = (Registry::default(), Registry::default());
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        counter.inc();
        a.register("a_things", "Things", counter.clone());
        b.register("b_things", "Things", counter);
        let text = encode(&[&a, &b]);
        assert!(text.contains("a_things_total 1\n"), "{text}");
        assert!(text.contains("b_things_total 1\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
