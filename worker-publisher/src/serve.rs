//! The HTTP server of published medias (docs/architecture.md §7): `GET/HEAD /medias/<id>/<path>` with
//! Range requests, conditional requests and the content types players need, and `/health`.
//!
//! Request paths are checked here, segment by segment, before the file is opened: only
//! regular files under `<www_root>/medias` are ever served. Validators, conditional requests
//! and Range are `oscied_protocol::http::file`'s, shared with the orchestra's download route.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oscied_protocol::http::file::{self, FileError};
use serde_json::json;
use uuid::Uuid;

struct AppState {
    /// `<www_root>/medias`, the only directory served.
    medias: PathBuf,
    unit_id: String,
}

/// The publisher's HTTP app: GET/HEAD /medias/<id>/<path> served from `<www_root>/medias`
/// (one Range → 206 with Content-Range, If-Range, HEAD, If-Match/If-None-Match/
/// If-Modified-Since/If-Unmodified-Since, 416 with `Content-Range: bytes */LEN`, ETag), plus
/// GET /health → 200 {"status":"ok","unit_id":...}. Serve it with
/// `oscied_protocol::http::serve` for the header and body timeouts and the size bounds.
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
        .unwrap_or_default();
    match file::serve(
        request.method(),
        request.headers(),
        &path,
        &file::content_type(file_name),
    )
    .await
    {
        Ok(response) => response,
        // The file vanished between the check and the open (unpublished meanwhile).
        Err(FileError::NotFound) => not_found().await,
        Err(e @ FileError::PreconditionFailed) => error(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            &e.to_string(),
        ),
        Err(e @ FileError::Unsatisfiable { .. }) => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                &e.to_string(),
            );
            if let Some(range) = e.content_range() {
                response.headers_mut().insert(header::CONTENT_RANGE, range);
            }
            response
        }
        Err(FileError::Io(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot serve a file");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "cannot read the file",
            )
        }
    }
}

/// The path below `medias/` of a request for `<id>/<path>`, or None when the first segment
/// is not a media id or the rest could leave its directory ([`file::relative_path`]).
fn checked_relative_path(rest: &str) -> Option<PathBuf> {
    let (id, path) = rest.split_once('/')?;
    let id = file::decode_segment(id)?;
    // Only the spelling publish writes (`published_dir`), so a file has one URL.
    if Uuid::parse_str(&id).ok()?.hyphenated().to_string() != id {
        return None;
    }
    Some(PathBuf::from(id).join(file::relative_path(path)?))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    oscied_protocol::http::error_response(status, code, message)
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
