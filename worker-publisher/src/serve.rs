//! The HTTP server of published medias (DESIGN.md §7): `GET/HEAD /medias/<id>/<path>` with
//! Range requests, conditional requests and the content types players need, and `/health`.
//!
//! Request paths are checked here, segment by segment, before tower-http's `ServeFile` touches
//! the filesystem: only regular files under `<www_root>/medias` are ever served.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::services::ServeFile;
use uuid::Uuid;

struct AppState {
    /// `<www_root>/medias`, the only directory served.
    medias: PathBuf,
    unit_id: String,
}

/// The publisher's HTTP app: GET/HEAD /medias/<id>/<path> served from `<www_root>/medias`
/// (Range → 206 with Content-Range, HEAD, If-Modified-Since/If-Unmodified-Since/If-None-Match,
/// 416 for bad ranges, ETag), plus GET /health → 200 {"status":"ok","unit_id":...}.
pub fn router(www_root: PathBuf, unit_id: String) -> Router {
    let state = Arc::new(AppState {
        medias: www_root.join("medias"),
        unit_id,
    });
    Router::new()
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/medias/{*path}", get(media).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
}

/// The Content-Type for a file name, for media types browsers and players need.
pub fn content_type(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (_, extension) = name.rsplit_once('.')?;
    const TYPES: &[(&str, &str)] = &[
        ("mp4", "video/mp4"),
        ("m4v", "video/mp4"),
        ("m4a", "audio/mp4"),
        ("webm", "video/webm"),
        ("mkv", "video/x-matroska"),
        ("mov", "video/quicktime"),
        ("m3u8", "application/vnd.apple.mpegurl"),
        ("mpd", "application/dash+xml"),
        ("m4s", "video/iso.segment"),
        // MPEG transport stream segments, not TypeScript sources.
        ("ts", "video/mp2t"),
        ("aac", "audio/aac"),
        ("mp3", "audio/mpeg"),
        ("vtt", "text/vtt"),
    ];
    TYPES
        .iter()
        .find(|(ext, _)| ext.eq_ignore_ascii_case(extension))
        .map(|(_, mime)| *mime)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({"status": "ok", "unit_id": state.unit_id})).into_response()
}

async fn media(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let mut response = serve_media(&state, request).await;
    let headers = response.headers_mut();
    // Web players are usually served from another origin.
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Accept-Ranges, Content-Length, Content-Range, ETag"),
    );
    response
}

async fn serve_media(state: &AppState, request: Request) -> Response {
    // The raw (still percent-encoded) path: the `{*path}` capture would be decoded already.
    let raw = request.uri().path();
    let Some(rest) = raw.strip_prefix("/medias/") else {
        return not_found().await;
    };
    let Some(relative) = checked_relative_path(rest) else {
        return not_found().await;
    };
    let path = state.medias.join(&relative);
    // Only regular files: no directory listings, and a symlink is never followed.
    match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) if meta.is_file() => {}
        _ => return not_found().await,
    }
    let file_name = relative
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();

    let result = ServeFile::new(&path).try_call(request).await;
    let mut response = match result {
        Ok(response) => response.map(Body::new),
        Err(e) if is_not_found(&e) => return not_found().await,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot serve a file");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "cannot read the file",
            );
        }
    };
    let status = response.status();
    if (status.is_success() || status == StatusCode::NOT_MODIFIED)
        && let Some(mime) = content_type(&file_name)
    {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    }
    if status == StatusCode::NOT_FOUND {
        // The file vanished between the check and the open (unpublished meanwhile).
        return not_found().await;
    }
    response
}

/// The path below `medias/` of a request for `<id>/<path>`, or None when any segment could
/// leave that directory or name something that is not a published file: `.`/`..` (raw or
/// percent-encoded), encoded separators, empty segments (`//`, trailing `/`), dot-files
/// (`.staging`), NUL, backslashes, invalid UTF-8, or a first segment that is not a media id.
fn checked_relative_path(rest: &str) -> Option<PathBuf> {
    let mut segments = rest.split('/');
    let id = decode_segment(segments.next()?)?;
    // Only the spelling publish writes (`published_dir`), so a file has one URL.
    if Uuid::parse_str(&id).ok()?.hyphenated().to_string() != id {
        return None;
    }
    let mut relative = PathBuf::from(id);
    let mut files = 0;
    for segment in segments {
        relative.push(decode_segment(segment)?);
        files += 1;
    }
    if files == 0 {
        return None;
    }
    Some(relative)
}

fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // from_str_radix alone would take a sign (`%+1`).
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            decoded.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let safe = !decoded.is_empty()
        && !decoded.starts_with('.')
        && !decoded.contains(['/', '\\', '\0'])
        && Path::new(&decoded).file_name().is_some();
    safe.then_some(decoded)
}

fn is_not_found(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound
            | std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::NotADirectory
            | std::io::ErrorKind::IsADirectory
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such published file")
}

async fn method_not_allowed() -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "only GET and HEAD are allowed",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for (name, mime) in [
            ("a.mp4", "video/mp4"),
            ("a.m4v", "video/mp4"),
            ("a.m4a", "audio/mp4"),
            ("a.webm", "video/webm"),
            ("a.mkv", "video/x-matroska"),
            ("a.mov", "video/quicktime"),
            ("index.m3u8", "application/vnd.apple.mpegurl"),
            ("manifest.mpd", "application/dash+xml"),
            ("chunk-0-00001.m4s", "video/iso.segment"),
            ("segment0.ts", "video/mp2t"),
            ("a.aac", "audio/aac"),
            ("a.mp3", "audio/mpeg"),
            ("subs.vtt", "text/vtt"),
            ("UPPER.MP4", "video/mp4"),
            ("dir.v1/sub/seg.TS", "video/mp2t"),
            ("medias/x/a.b.m3u8", "application/vnd.apple.mpegurl"),
        ] {
            assert_eq!(content_type(name), Some(mime), "{name}");
        }
        for name in ["a.txt", "a.json", "noext", "dir.mp4/noext", "", ".", "a."] {
            assert_eq!(content_type(name), None, "{name}");
        }
    }

    #[test]
    fn relative_paths() {
        let id = Uuid::new_v4();
        let ok = |rest: &str| checked_relative_path(rest);
        assert_eq!(
            ok(&format!("{id}/a.mp4")),
            Some(PathBuf::from(format!("{id}/a.mp4")))
        );
        assert_eq!(
            ok(&format!("{id}/sub/seg%201.ts")),
            Some(PathBuf::from(format!("{id}/sub/seg 1.ts")))
        );
        for bad in [
            String::new(),
            id.to_string(),
            format!("{id}/"),
            format!("{id}//a.mp4"),
            format!("{id}/../secret"),
            format!("{id}/%2e%2e/secret"),
            format!("{id}/%2E%2E%2Fsecret"),
            format!("{id}/..%2fsecret"),
            format!("{id}/a%2fb"),
            format!("{id}/a%5cb"),
            format!("{id}/./a.mp4"),
            format!("{id}/.hidden"),
            format!("{id}/a%00.mp4"),
            format!("{id}/a%ff.mp4"),
            format!("{id}/a%2"),
            format!("{id}/a%zz"),
            format!("{id}/a%+1"),
            "..%2f..%2fsecret".to_string(),
            "not-an-id/a.mp4".to_string(),
            "%2e%2e/secret".to_string(),
            format!("{}/a.mp4", id.simple()),
            format!("{}/a.mp4", id.hyphenated().to_string().to_uppercase()),
        ] {
            assert_eq!(ok(&bad), None, "{bad:?} accepted");
        }
    }
}
