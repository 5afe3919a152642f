//! `/medias`: upload or register, list, get, metadata patch, delete, download.

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oscied_protocol::http::file::{self, FileError};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::responses::{Authed, BadQuery, JsonBody, NotFound};
use super::{ApiJson, ApiQuery, list_options, list_owner, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
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
) -> ApiResult<(StatusCode, Json<Media>)> {
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
    let media = if content_type.starts_with("multipart/form-data") {
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
        medias::upload(&state, owner, multipart).await?
    } else if content_type.starts_with("application/json") {
        // JSON stays bounded even though this route lifts axum's body limit for uploads.
        let (parts, body) = request.into_parts();
        let bytes =
            axum::body::to_bytes(body, 1024 * 1024).await.map_err(
                |e| match ApiError::stalled_body(&e) {
                    Some(stalled) => stalled,
                    None => ApiError::too_large("a JSON body must be at most 1 MiB"),
                },
            )?;
        let request = Request::from_parts(parts, Body::from(bytes));
        let ApiJson(register) = ApiJson::<RegisterMedia>::from_request(request, &state).await?;
        medias::register(&state, owner, register).await?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data (upload) or application/json (register a file under uploads/)",
        ));
    };
    Ok((StatusCode::CREATED, Json(media)))
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
    Ok(Json(state.store.list_medias(&filter, &opts).await?))
}

/// A media the caller may see.
pub async fn visible_media(state: &AppState, caller: &Caller, raw_id: &str) -> ApiResult<Media> {
    let id = parse_id("media", raw_id)?;
    state
        .store
        .get_media(id)
        .await?
        .filter(|m| caller.can_see(Some(m.user_id)))
        .ok_or_else(|| ApiError::not_found("media", id))
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

/// Download a READY media's file, whole or by `Range` (one range; `If-Range`, RFC 9110);
/// HEAD answers the headers only.
#[utoipa::path(get, path = "/medias/{id}/download", tag = "medias", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "the file"), (status = 206, description = "the requested range"),
        (status = 409, description = "not READY", body = ErrorBody), (status = 412, description = "an If-Match or If-Unmodified-Since precondition failed", body = ErrorBody),
        (status = 416, description = "no requested range overlaps the file; Content-Range: bytes */LEN", body = ErrorBody)))]
async fn download_media(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let media = visible_media(&state, &caller, &id).await?;
    match media.status {
        MediaStatus::Ready => {}
        MediaStatus::Pending => {
            return Err(ApiError::illegal_state(format!(
                "media {} is PENDING: not ready yet",
                media.id
            )));
        }
        MediaStatus::Deleted => return Err(ApiError::not_found("media file", media.id)),
    }
    let path = state.storage.path_of(&media.uri);
    let content_type = file::content_type(&media.filename);
    let mut response =
        match file::serve(request.method(), request.headers(), &path, &content_type).await {
            Ok(response) => response,
            Err(FileError::NotFound) => return Err(ApiError::not_found("media file", media.id)),
            Err(e @ FileError::PreconditionFailed) => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition_failed",
                    e.to_string(),
                ));
            }
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
                return Ok(answer);
            }
            Err(FileError::Io(e)) => {
                return Err(ApiError::internal(format!("serving {}: {e}", media.uri)));
            }
        };
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&media.filename)) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
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
