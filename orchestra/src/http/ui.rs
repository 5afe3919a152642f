//! The web UI at `/` (docs/architecture.md §4): the files of `orchestra/ui/`, compiled into
//! the binary by `build.rs`, served by path with a strict CSP. Nothing is read from disk.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderName, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use blake2::{Blake2b512, Digest};

use crate::state::AppState;

include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));

/// The page runs only its own scripts and styles; media and API calls may go to any HTTP
/// origin (published medias live on the publishers).
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: http: https:; \
    connect-src 'self' http: https:; worker-src 'self' blob:; object-src 'none'; \
    base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Headers on every UI answer, 304s included.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (REFERRER_POLICY, "no-referrer"),
    (X_FRAME_OPTIONS, "DENY"),
    // Revalidate every time (a 304 is cheap), so a new binary's UI is seen at once.
    (CACHE_CONTROL, "no-cache"),
];

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

/// Each file with its type and a strong ETag of its content, hashed once per process.
static ASSETS: LazyLock<Vec<(&'static str, Asset)>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(path, body)| {
            let digest = Blake2b512::digest(body);
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            let etag = HeaderValue::try_from(format!("\"{hex}\"")).expect("hex is a header value");
            let asset = Asset {
                body,
                content_type: content_type(path),
                etag,
            };
            (path, asset)
        })
        .collect()
});

/// A GET (and so HEAD) route per file, `/` for `index.html`. Other methods get the router's
/// JSON 405; other paths its JSON 404.
pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for (path, asset) in ASSETS.iter() {
        let serve = move |headers: HeaderMap| async move { answer(asset, &headers) };
        if *path == "/index.html" {
            router = router.route("/", get(serve));
        }
        router = router.route(path, get(serve));
    }
    router
}

fn answer(asset: &'static Asset, request: &HeaderMap) -> Response {
    let mut response = if matches_etag(request, &asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.body.into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        response
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, asset.etag.clone());
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `If-None-Match` names this version: `*`, or one of its entity tags (weak comparison, as
/// RFC 9110 §13.1.2 asks for this header).
fn matches_etag(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == ours)
}

/// The Content-Type of a UI file, by extension; JavaScript as `text/javascript` (RFC 9239).
fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        // Licence files: LICENSE, LICENSE.md, *.LICENSE.txt.
        "txt" | "md" => "text/plain; charset=utf-8",
        _ if name == "LICENSE" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Every answer, UI or API, is read as the type it says (`X-Content-Type-Options`).
pub(crate) async fn nosniff(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file the table above does not know would be served as octet-stream, which nosniff
    /// makes the browser refuse as a script or style: add its type here.
    #[test]
    fn every_ui_file_has_a_known_type() {
        let unknown: Vec<_> = FILES
            .iter()
            .map(|(path, _)| *path)
            .filter(|path| content_type(path) == "application/octet-stream")
            .collect();
        assert!(unknown.is_empty(), "no Content-Type for {unknown:?}");
    }

    #[test]
    fn if_none_match_forms() {
        let etag = HeaderValue::from_static("\"abc\"");
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(IF_NONE_MATCH, HeaderValue::from_static(value));
            matches_etag(&headers, &etag)
        };
        assert!(with("\"abc\""));
        assert!(with("W/\"abc\""));
        assert!(with("\"x\", \"abc\""));
        assert!(with("*"));
        assert!(!with("\"abcd\""));
        assert!(!with("abc"));
        assert!(!matches_etag(&HeaderMap::new(), &etag));
    }

    #[test]
    fn types() {
        assert_eq!(content_type("/js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("/vendor/hls.js/LICENSE"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type("/fonts/a.woff2"), "font/woff2");
        assert_eq!(content_type("/x.bin"), "application/octet-stream");
    }
}
