//! `/medias`: upload or register, list, get, metadata patch, delete, and the routes serving a
//! media's bytes (download, files, thumbnail), which also take the media cookie.

use axum::Json;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Path, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use oscied_protocol::http::file::{self, FileError};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::idempotent::{self, Submitted};
use super::media_auth::MediaCaller;
use super::responses::{Authed, BadQuery, JsonBody, NotFound, StoredFile};
use super::{ApiJson, ApiQuery, list_options, list_owner, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::idempotency;
use crate::medias::{self, MediaPatch, RegisterMedia, UploadForm};
use crate::models::{Media, MediaFilter, MediaStatus, Page};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    // Uploads are bounded by OSCIED_MAX_UPLOAD_BYTES as they stream, not by axum's body limit.
    let upload = OpenApiRouter::new()
        .routes(routes!(list_medias, create_media))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .merge(upload)
        .routes(routes!(get_media, patch_media, delete_media))
        .routes(routes!(download_media))
        .routes(routes!(media_thumbnail))
        .merge(files_routes())
}

/// `/medias/{id}/files/{*path}`: axum's wildcard, documented as the OpenAPI path parameter
/// `{path}` (utoipa-axum would route the documented path itself, one segment only).
fn files_routes() -> OpenApiRouter<AppState> {
    let (_, paths, method_router) = routes!(media_file);
    let mut router = OpenApiRouter::new().route("/medias/{id}/files/{*path}", method_router);
    router.get_openapi_mut().paths.paths.extend(paths.paths);
    router
}

super::sort_param!(MediaSort, SORTS);

const SORTS: &[(&str, &str)] = &[
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
    ("filename", "filename"),
    ("size", "size"),
    ("duration", "duration"),
    ("status", "status"),
    ("title", "metadata.title"),
];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MediaListQuery {
    /// PENDING, READY or DELETED, or several separated by commas. Default: PENDING,READY.
    #[param(value_type = Option<Vec<MediaStatus>>, style = Form, explode = false, min_items = 1)]
    status: Option<String>,
    /// Owner (admins; others only ever see their own).
    user_id: Option<Uuid>,
    /// Medias made from this one.
    parent_id: Option<Uuid>,
    /// Case-insensitive text in metadata.title.
    q: Option<String>,
    /// Default 50, at most 1000.
    #[param(maximum = 1000)]
    limit: Option<u64>,
    /// Items to pass over before the first one answered.
    skip: Option<u64>,
    /// created_at, updated_at, filename, size, duration, status, title; `-` for descending.
    /// Default: -created_at.
    #[param(value_type = Option<MediaSort>, inline)]
    sort: Option<String>,
}

fn parse_statuses(raw: &str) -> ApiResult<Vec<MediaStatus>> {
    raw.split(',')
        .map(|s| match s.trim().to_ascii_uppercase().as_str() {
            "PENDING" => Ok(MediaStatus::Pending),
            "READY" => Ok(MediaStatus::Ready),
            "DELETED" => Ok(MediaStatus::Deleted),
            other => Err(ApiError::invalid(format!(
                "status {other:?} is not one of PENDING, READY, DELETED"
            ))),
        })
        .collect()
}

/// Upload a file (multipart: `file`, `title`, optional `metadata` JSON object) or register a
/// file under `uploads/` (JSON). The file is probed; unreadable media is refused with 422.
#[utoipa::path(post, path = "/medias", tag = "medias",
    request_body(content(
        (RegisterMedia = "application/json"),
        (UploadForm = "multipart/form-data")
    )),
    params(("Idempotency-Key" = Option<String>, Header, description = "Registering (JSON) only: the same key and body within 24 h answer the first answer again (`Idempotent-Replayed: true`) and adopt nothing; another body is a 422. Refused on uploads.")),
    responses(Authed, JsonBody, (status = 201, description = "the media, READY", body = Media),
        (status = 400, description = "malformed JSON or multipart body", body = ErrorBody),
        (status = 403, description = "root owns no medias: upload as a user", body = ErrorBody),
        (status = 413, description = "the upload exceeds OSCIED_MAX_UPLOAD_BYTES, or a JSON body exceeds 1 MiB", body = ErrorBody),
        (status = 415, description = "neither multipart/form-data nor application/json", body = ErrorBody),
        (status = 422, description = "a missing or invalid field, a uri naming no file under uploads/, or a file that is not readable media", body = ErrorBody)))]
async fn create_media(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> ApiResult<Response> {
    let owner = caller.require_user()?.id;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let raw_key = idempotent::raw_key(request.headers())?;
    if content_type.starts_with("multipart/form-data") {
        if raw_key.is_some() {
            return Err(ApiError::invalid_field(
                "Idempotency-Key",
                "Idempotency-Key applies to registering a file (JSON), not to uploads: an \
                 upload that fails leaves nothing, so send it again without the key",
            ));
        }
        // Refuse a body that announces itself too large before reading any of it.
        let limit = state.config.max_upload_bytes;
        if declared.is_some_and(|len| len > limit.saturating_add(1024 * 1024)) {
            return Err(ApiError::too_large(format!(
                "the upload exceeds the limit of {limit} bytes"
            )));
        }
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request("malformed_multipart", e.body_text()))?;
        let media = medias::upload(&state, owner, multipart).await?;
        Ok((StatusCode::CREATED, Json(media)).into_response())
    } else if content_type.starts_with("application/json") {
        // JSON stays bounded (`Submitted` reads at most 1 MiB) even though this route lifts
        // axum's body limit for uploads.
        let Submitted {
            body: register,
            key,
        } = Submitted::<RegisterMedia>::from_request(request, &state).await?;
        let answer = idempotency::once(&state, &caller, "POST /medias", key, || async {
            idempotent::created(&medias::register(&state, owner, register).await?)
        })
        .await?;
        Ok(idempotent::answered(answer))
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data (upload) or application/json (register a file under uploads/)",
        ))
    }
}

/// List medias: one's own, or all for admins.
#[utoipa::path(get, path = "/medias", tag = "medias", params(MediaListQuery),
    responses(Authed, BadQuery, (status = 200, description = "a page of medias", body = Page<Media>)))]
async fn list_medias(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<MediaListQuery>,
) -> ApiResult<Json<Page<Media>>> {
    let opts = list_options(
        query.limit,
        query.skip,
        query.sort.as_deref(),
        SORTS,
        "-created_at",
    )?;
    let mut filter = MediaFilter {
        user_id: query.user_id,
        parent_id: query.parent_id,
        q: query.q,
        ..MediaFilter::default()
    };
    if let Some(status) = &query.status {
        filter.statuses = parse_statuses(status)?;
    }
    let Some(owner) = list_owner(&caller, filter.user_id) else {
        return Ok(Json(Page {
            items: vec![],
            total: 0,
        }));
    };
    filter.user_id = owner;
    Ok(Json(medias::list(&state, &filter, &opts).await?))
}

/// The media the path's `raw_id` names, if the caller may see it.
async fn visible_media(state: &AppState, caller: &Caller, raw_id: &str) -> ApiResult<Media> {
    medias::visible(state, caller, parse_id("media", raw_id)?).await
}

/// Get a media.
#[utoipa::path(get, path = "/medias/{id}", tag = "medias", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "the media", body = Media)))]
async fn get_media(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Media>> {
    Ok(Json(visible_media(&state, &caller, &id).await?))
}

/// Merge-patch a media's metadata (RFC 7386: null removes a key).
#[utoipa::path(patch, path = "/medias/{id}", tag = "medias", params(("id" = String, Path)), request_body = MediaPatch,
    responses(Authed, JsonBody, NotFound, (status = 200, description = "the media as changed", body = Media),
        (status = 409, description = "the media is DELETED", body = ErrorBody),
        (status = 422, description = "the merged metadata breaks its rules (a title of 1 to 1000 characters, at most 64 KiB of JSON)", body = ErrorBody)))]
async fn patch_media(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<MediaPatch>,
) -> ApiResult<Json<Media>> {
    let media = visible_media(&state, &caller, &id).await?;
    Ok(Json(
        medias::patch_metadata(&state, media, patch.metadata).await?,
    ))
}

/// Delete a media's files; it stays listed as DELETED for lineage.
#[utoipa::path(delete, path = "/medias/{id}", tag = "medias", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 204, description = "its files are deleted"), (status = 409, description = "published, in use, or already deleted", body = ErrorBody)))]
async fn delete_media(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let media = visible_media(&state, &caller, &id).await?;
    medias::delete(&state, media).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The media a route serving a media's bytes answers from: the path's `id`, visible to the
/// caller (the media cookie accepted, `MediaCaller`), READY (PENDING is a 409, DELETED a 404).
struct ReadyMedia(Media);

impl FromRequestParts<AppState> for ReadyMedia {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let MediaCaller(caller) = MediaCaller::from_request_parts(parts, state).await?;
        let id = super::path_param(parts, "id").await.unwrap_or_default();
        let media = visible_media(state, &caller, &id).await?;
        match media.status {
            MediaStatus::Ready => Ok(ReadyMedia(media)),
            MediaStatus::Pending => Err(ApiError::illegal_state(format!(
                "media {} is PENDING: not ready yet",
                media.id
            ))),
            MediaStatus::Deleted => Err(ApiError::not_found("media file", media.id)),
        }
    }
}

/// Answer a GET or HEAD with a stored file (validators, conditional requests and Range:
/// `file::serve`), its refusals in the API's error shape. Every route serving a media's
/// bytes answers through it. `what` names the file in a 404.
async fn serve_stored(
    method: &Method,
    headers: &HeaderMap,
    path: &std::path::Path,
    content_type: &str,
    what: &str,
) -> ApiResult<Response> {
    match file::serve(method, headers, path, content_type).await {
        Ok(response) => Ok(response),
        Err(FileError::NotFound) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what}"),
        )),
        Err(e @ FileError::PreconditionFailed) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            e.to_string(),
        )),
        Err(e @ FileError::Unsatisfiable { .. }) => {
            let mut answer = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                e.to_string(),
            )
            .into_response();
            if let Some(range) = e.content_range() {
                answer.headers_mut().insert(header::CONTENT_RANGE, range);
            }
            Ok(answer)
        }
        Err(FileError::Io(e)) => Err(ApiError::internal(format!("serving {what}: {e}"))),
    }
}

/// Download a READY media's file, whole or by `Range` (one range; `If-Range`, RFC 9110);
/// HEAD answers the headers only. Also authenticated by the media cookie (`PUT /auth/cookie`).
#[utoipa::path(get, path = "/medias/{id}/download", tag = "medias", params(("id" = String, Path)),
    responses(Authed, NotFound, StoredFile, (status = 200, description = "the file"), (status = 206, description = "the requested range")))]
async fn download_media(
    State(state): State<AppState>,
    ReadyMedia(media): ReadyMedia,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = state.storage.path_of(&media.uri);
    let what = format!("media file with id {}", media.id);
    let content_type = file::content_type(&media.filename);
    let mut response = serve_stored(&method, &headers, &path, &content_type, &what).await?;
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&media.filename)) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Any file of a READY media's directory by its relative path: the segments and playlists
/// beside an HLS or DASH package's manifest (a player given
/// `/medias/{id}/files/<manifest>` finds them by their relative URLs), or the main file
/// itself. GET and HEAD, with `Range` as `/download` has it, typed for players (m3u8, mpd,
/// ts, m4s, mp4...). A path leaving the directory (`..`, absolute, NUL, a dot-file, a
/// symlink out) is a 404. Also authenticated by the media cookie (`PUT /auth/cookie`).
#[utoipa::path(get, path = "/medias/{id}/files/{path}", tag = "medias", operation_id = "get_media_file",
    params(("id" = String, Path), ("path" = String, Path, description = "relative path inside the media's directory, e.g. `index.m3u8` or `seg_000.ts`")),
    responses(Authed, NotFound, StoredFile, (status = 200, description = "the file"), (status = 206, description = "the requested range")))]
async fn media_file(
    State(state): State<AppState>,
    ReadyMedia(media): ReadyMedia,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Response> {
    // The raw path, still percent-encoded: the `{*path}` capture is decoded already, so an
    // encoded `/` or `..` would pass for a plain one there.
    let raw = uri
        .path()
        .split_once("/files/")
        .map_or("", |(_, rest)| rest);
    let what = format!("file {raw:?} in media {}", media.id);
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"));
    let relative = file::relative_path(raw).ok_or_else(not_found)?;
    let path = state
        .storage
        .media_file(media.id, &relative)
        .await
        .ok_or_else(not_found)?;
    serve_stored(&method, &headers, &path, &file::content_type(raw), &what).await
}

/// How long a browser keeps a thumbnail without asking again: it never changes (a media's
/// files are written once), and then the ETag answers 304.
const THUMBNAIL_CACHE: &str = "private, max-age=86400";

/// A READY media's thumbnail: a JPEG 320 pixels wide of the frame at 10 % of the duration
/// (at 1 s when that is earlier, the middle of a clip under 2 s), made when the media became
/// READY, or now if it is missing. `Cache-Control: private`, an `ETag` (304 on
/// `If-None-Match`). 404 for a media without a video stream. Also authenticated by the media
/// cookie (`PUT /auth/cookie`).
#[utoipa::path(get, path = "/medias/{id}/thumbnail", tag = "medias", operation_id = "get_media_thumbnail", params(("id" = String, Path)),
    responses(Authed, StoredFile, (status = 200, description = "the JPEG", content_type = "image/jpeg"),
        (status = 404, description = "no such media, not one the caller may see, or one without a video stream (or of which ffmpeg could make no picture)", body = ErrorBody)))]
async fn media_thumbnail(
    State(state): State<AppState>,
    ReadyMedia(media): ReadyMedia,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = state.thumbnailer.ensure(&media).await?;
    let what = format!("thumbnail of media {}", media.id);
    let mut response = serve_stored(&method, &headers, &path, "image/jpeg", &what).await?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(THUMBNAIL_CACHE),
    );
    Ok(response)
}

/// `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 5987).
fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
