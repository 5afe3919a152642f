//! One file answered to a GET or HEAD, for the orchestra's download route and the publisher:
//! validators (ETag, Last-Modified), conditional requests (RFC 9110 §13) and Range (§14,
//! rules in [`super::range`]). The bytes sent are read from the file as it is on disk.
//!
//! tower-http's `ServeFile` was used before; it answers 416 to an unknown range unit and to
//! several ranges, and ignores `If-Range`, so both servers share this instead.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::range::{self, RangeAnswer};

/// Why a file is not sent; each server turns it into its own JSON error answer.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Missing, not a regular file, or not readable.
    #[error("no such file")]
    NotFound,
    /// `If-Match` or `If-Unmodified-Since` failed: 412.
    #[error("the file does not match If-Match or If-Unmodified-Since")]
    PreconditionFailed,
    /// No requested range overlaps the file: 416 with [`FileError::content_range`].
    #[error("no requested range overlaps the file of {len} bytes")]
    Unsatisfiable { len: u64 },
    #[error("reading the file: {0}")]
    Io(std::io::Error),
}

impl FileError {
    /// `Content-Range: bytes */LEN`, which a 416 must carry.
    pub fn content_range(&self) -> Option<HeaderValue> {
        match self {
            FileError::Unsatisfiable { len } => {
                HeaderValue::from_str(&format!("bytes */{len}")).ok()
            }
            _ => None,
        }
    }
}

/// The Content-Type for a file name: the types players need first (a `.ts` is an MPEG
/// transport stream, not TypeScript), then the usual guess, then octet-stream.
pub fn content_type(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
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
        ("ts", "video/mp2t"),
        ("aac", "audio/aac"),
        ("mp3", "audio/mpeg"),
        ("vtt", "text/vtt"),
    ];
    if let Some((_, extension)) = base.rsplit_once('.')
        && let Some((_, mime)) = TYPES
            .iter()
            .find(|(ext, _)| ext.eq_ignore_ascii_case(extension))
    {
        return (*mime).to_owned();
    }
    mime_guess::from_path(base)
        .first_or_octet_stream()
        .to_string()
}

/// A request path's `a/b/c.ts` (still percent-encoded, as on the wire) as a relative path
/// that stays inside the directory it is joined to, or None when any segment could leave it
/// or name something never served: `.`/`..` (raw or percent-encoded), encoded separators,
/// empty segments (`//`, a trailing `/`), dot-files (`.staging`), NUL, backslashes, invalid
/// UTF-8. The publisher's and the orchestra's file routes both check paths with it.
pub fn relative_path(raw: &str) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for segment in raw.split('/') {
        relative.push(decode_segment(segment)?);
    }
    Some(relative)
}

/// One percent-decoded path segment, or None when it is not a plain file or directory name
/// (see [`relative_path`]).
pub fn decode_segment(segment: &str) -> Option<String> {
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

/// Answer `method` (GET or HEAD) with the regular file at `path`, typed `content_type`.
/// A HEAD gets the headers a GET would (Range is defined for GET only, RFC 9110 §14.2).
pub async fn serve(
    method: &Method,
    headers: &HeaderMap,
    path: &Path,
    content_type: &str,
) -> Result<Response, FileError> {
    let mut file = tokio::fs::File::open(path).await.map_err(not_found)?;
    let meta = file.metadata().await.map_err(not_found)?;
    if !meta.is_file() {
        return Err(FileError::NotFound);
    }
    let len = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let etag = format!("\"{len:x}-{nanos:x}\"");
    // HTTP dates have whole seconds; comparisons use the same truncation.
    let modified_secs = UNIX_EPOCH + Duration::from_secs(nanos as u64 / 1_000_000_000);
    let last_modified = httpdate::fmt_http_date(modified_secs);

    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let date =
        |name: header::HeaderName| text(name).and_then(|v| httpdate::parse_http_date(v).ok());
    // RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since; If-None-Match, else
    // If-Modified-Since (GET/HEAD); then If-Range and Range.
    if let Some(value) = text(header::IF_MATCH) {
        if !tag_list_matches(value, &etag, false) {
            return Err(FileError::PreconditionFailed);
        }
    } else if let Some(since) = date(header::IF_UNMODIFIED_SINCE)
        && modified_secs > since
    {
        return Err(FileError::PreconditionFailed);
    }
    let not_modified = if let Some(value) = text(header::IF_NONE_MATCH) {
        tag_list_matches(value, &etag, true)
    } else {
        date(header::IF_MODIFIED_SINCE).is_some_and(|since| modified_secs <= since)
    };

    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::ACCEPT_RANGES, "bytes");
    if not_modified {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| FileError::Io(std::io::Error::other(e)));
    }

    let mut answer = RangeAnswer::Whole;
    if method == Method::GET
        && let Some(range) = text(header::RANGE)
    {
        let current = text(header::IF_RANGE)
            .is_none_or(|value| range::if_range_matches(value, &etag, &last_modified));
        if current {
            answer = range::resolve(range, len);
        }
    }
    let (status, bytes) = match answer {
        RangeAnswer::Whole => (StatusCode::OK, 0..=len.wrapping_sub(1)),
        RangeAnswer::Part(bytes) => {
            response = response.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{len}", bytes.start(), bytes.end()),
            );
            (StatusCode::PARTIAL_CONTENT, bytes)
        }
        RangeAnswer::Unsatisfiable => return Err(FileError::Unsatisfiable { len }),
    };
    let count = if len == 0 {
        0
    } else {
        bytes.end() - bytes.start() + 1
    };
    let body = if method == Method::HEAD || count == 0 {
        Body::empty()
    } else {
        file.seek(SeekFrom::Start(*bytes.start()))
            .await
            .map_err(FileError::Io)?;
        Body::from_stream(ReaderStream::with_capacity(file.take(count), 64 * 1024))
    };
    response
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, count)
        .body(body)
        .map_err(|e| FileError::Io(std::io::Error::other(e)))
}

fn not_found(e: std::io::Error) -> FileError {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound | PermissionDenied | NotADirectory | IsADirectory => FileError::NotFound,
        _ => FileError::Io(e),
    }
}

/// Whether a `*` or a list of entity tags names `etag`: weak comparison for If-None-Match
/// (`W/` ignored), strong for If-Match (a weak tag never matches), RFC 9110 §8.8.3.2.
fn tag_list_matches(list: &str, etag: &str, weak: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    list.split(',')
        .map(str::trim)
        .any(|tag| match tag.strip_prefix("W/") {
            Some(tag) => weak && tag == etag,
            None => tag == etag,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tag_lists() {
        let etag = "\"1f-2a\"";
        assert!(tag_list_matches("*", etag, false));
        assert!(tag_list_matches("\"x\", \"1f-2a\"", etag, false));
        assert!(tag_list_matches("W/\"1f-2a\"", etag, true));
        assert!(!tag_list_matches("W/\"1f-2a\"", etag, false));
        assert!(!tag_list_matches("\"1f-2b\"", etag, true));
    }

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(relative_path("a.mp4"), Some(PathBuf::from("a.mp4")));
        assert_eq!(
            relative_path("sub/seg%201.ts"),
            Some(PathBuf::from("sub/seg 1.ts"))
        );
        for bad in [
            "",
            "/",
            "/etc/passwd",
            "a/",
            "a//b.ts",
            "../secret",
            "%2e%2e/secret",
            "%2E%2E%2Fsecret",
            "..%2fsecret",
            "a%2fb",
            "a%5cb",
            "a\\b",
            "./a.mp4",
            ".hidden",
            "a%00.mp4",
            "a%ff.mp4",
            "a%2",
            "a%zz",
            "a%+1",
        ] {
            assert_eq!(relative_path(bad), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn content_types() {
        for (name, mime) in [
            ("a.mp4", "video/mp4"),
            ("UPPER.MP4", "video/mp4"),
            ("dir.v1/sub/seg.TS", "video/mp2t"),
            ("index.m3u8", "application/vnd.apple.mpegurl"),
            ("a.wav", "audio/wav"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name), mime, "{name}");
        }
    }
}
