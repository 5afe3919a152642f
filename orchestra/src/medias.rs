//! Medias: ingesting a file (upload or register), its metadata rules, and deletion.
//!
//! A media is only recorded once its file probes and sits in `medias/<id>/`; every earlier
//! failure removes what was written (see [`Scratch`]), so a failed upload leaves nothing.

use std::path::{Path, PathBuf};

use axum::extract::Multipart;
use axum::extract::multipart::{Field, MultipartError};
use axum::http::StatusCode;
use oscied_protocol::{ProbeError, TaskStatus, probe};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, EventType};
use crate::models::{
    ListOptions, Media, MediaFilter, MediaStatus, Page, PublisherTask, TaskFilter, now,
};
use crate::state::AppState;
use crate::storage::{Scratch, check_filename};

pub type Metadata = Map<String, Value>;

const MAX_TEXT_FIELD: usize = 1024 * 1024;

/// `POST /medias` with JSON: adopt a file already under `uploads/`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterMedia {
    /// Storage-relative path of a file under `uploads/`, e.g. `uploads/clip.mp4`. It is moved
    /// into the media's directory.
    pub uri: String,
    /// Name of the media's file; default: the uri's file name. At most 255 bytes, one path
    /// component, not starting with `.`, without control characters.
    #[schema(min_length = 1, max_length = 255)]
    pub filename: Option<String>,
    /// Free JSON object; `title` is required.
    #[schema(schema_with = metadata_schema)]
    pub metadata: Metadata,
}

/// `POST /medias` multipart form (documentation only: the form is streamed, not buffered).
// Deserialize only lends `deny_unknown_fields`: the document then says what the server does,
// which refuses any other part (422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The media file, sent with its filename.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// metadata.title: 1 to 1000 characters, not blank.
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    pub title: String,
    /// Optional JSON object text of more metadata.
    pub metadata: Option<String>,
}

/// `PATCH /medias/{id}`: a JSON merge patch (RFC 7386) of the metadata.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaPatch {
    /// Keys set to null are removed; `title` must stay a non-empty string.
    #[schema(schema_with = metadata_patch_schema)]
    pub metadata: Metadata,
}

/// The document's schema of a media's metadata: a JSON object with a `title` of 1 to 1000
/// characters, not blank, and at most [`MAX_METADATA_BYTES`] of JSON in all.
pub fn metadata_schema() -> utoipa::openapi::Object {
    metadata_object().required("title").build()
}

/// [`metadata_schema`] for a merge patch: `title` may be left out (it stays).
pub fn metadata_patch_schema() -> utoipa::openapi::Object {
    metadata_object().build()
}

fn metadata_object() -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::schema::AdditionalProperties;
    use utoipa::openapi::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Free JSON object of at most 64 KiB (compactly serialized); `title` is 1 to 1000 characters, not blank.",
        ))
        .property(
            "title",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(1000))
                .pattern(Some(r"\S")),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
}

/// The most JSON a media's metadata may hold, measured compactly serialized after any merge:
/// metadata is stored in every media record and sent in every list, so it stays small.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// The one metadata rule, for uploads, registers, patches (after the merge) and transform
/// outputs: a non-empty string `title`, and at most [`MAX_METADATA_BYTES`] of JSON.
pub fn check_metadata(metadata: &Metadata) -> ApiResult<()> {
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |json| json.len());
    if size > MAX_METADATA_BYTES {
        return Err(ApiError::invalid_field(
            "metadata",
            format!(
                "metadata is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES} bytes (64 KiB)"
            ),
        ));
    }
    let problem = match metadata.get("title") {
        Some(Value::String(t)) if !t.trim().is_empty() && t.chars().count() <= 1000 => {
            return Ok(());
        }
        Some(Value::String(_)) => "metadata.title must be 1 to 1000 characters",
        Some(_) => "metadata.title must be a string",
        None => "metadata.title is required",
    };
    Err(ApiError::invalid_field("metadata.title", problem))
}

/// RFC 7386 merge patch of one object into another.
pub fn merge_patch(target: &mut Metadata, patch: Metadata) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(existing) = slot {
                    merge_patch(existing, inner);
                }
            }
            other => {
                target.insert(key, other);
            }
        }
    }
}

fn multipart_error(e: MultipartError) -> ApiError {
    if let Some(stalled) = ApiError::stalled_body(&e) {
        stalled
    } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(e.body_text())
    } else {
        ApiError::bad_request(
            "malformed_multipart",
            format!(
                "malformed multipart body: {} (control characters in a filename must be percent-encoded)",
                e.body_text()
            ),
        )
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::too_large(format!(
        "the file exceeds the upload limit of {limit} bytes"
    ))
}

async fn read_text(mut field: Field<'_>, name: &str) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_TEXT_FIELD {
            return Err(ApiError::too_large(format!(
                "form field {name} is too large"
            )));
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::invalid_field(name, format!("form field {name} must be UTF-8 text")))
}

/// Stream the `file` part to a scratch file, counting bytes against the limit.
async fn receive_file(state: &AppState, mut field: Field<'_>) -> ApiResult<(Scratch, String)> {
    // Browsers percent-encode CR, LF and `"` in multipart filenames (WHATWG); nothing else.
    let filename = field
        .file_name()
        .map(|name| {
            name.replace("%0A", "\n")
                .replace("%0D", "\r")
                .replace("%22", "\"")
        })
        .ok_or_else(|| ApiError::invalid_field("file", "the file part has no filename"))?;
    check_filename(&filename).map_err(|e| e.on("file"))?;
    let limit = state.config.max_upload_bytes;
    let scratch = Scratch::new(state.storage.scratch_path(&filename));
    let mut out = tokio::fs::File::create(scratch.path()).await?;
    let mut written = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large(limit));
        }
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    if written == 0 {
        return Err(ApiError::invalid_field(
            "file",
            "the uploaded file is empty",
        ));
    }
    Ok((scratch, filename))
}

/// `POST /medias` multipart: `file`, `title`, optional `metadata` (a JSON object).
pub async fn upload(state: &AppState, owner: Uuid, mut multipart: Multipart) -> ApiResult<Media> {
    let mut file = None;
    let mut title = None;
    let mut metadata = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" if file.is_some() => {
                return Err(ApiError::invalid_field("file", "send one file per upload"));
            }
            "file" => file = Some(receive_file(state, field).await?),
            "title" => title = Some(read_text(field, "title").await?),
            "metadata" => {
                let text = read_text(field, "metadata").await?;
                match serde_json::from_str(&text) {
                    Ok(Value::Object(map)) => metadata = Some(map),
                    _ => {
                        return Err(ApiError::invalid_field(
                            "metadata",
                            "form field metadata must be a JSON object",
                        ));
                    }
                }
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown form field {other:?}; expected file, title and optional metadata"
                )));
            }
        }
    }
    let (scratch, filename) =
        file.ok_or_else(|| ApiError::invalid_field("file", "form field file is required"))?;
    let mut metadata = metadata.unwrap_or_default();
    if let Some(title) = title {
        metadata.insert("title".into(), Value::String(title));
    }
    // The form's own `title` field is where a title fault is fixed.
    check_metadata(&metadata).map_err(|e| match e.field.as_deref() {
        Some("metadata.title") => e.on("title"),
        _ => e,
    })?;
    let media = ingest(state, owner, scratch.path(), &filename, metadata, None)
        .await
        .map_err(|e| match e.code {
            "unreadable_media" => e.on("file"),
            _ => e,
        })?;
    scratch.disarm();
    Ok(media)
}

/// `POST /medias` JSON: adopt a file under `uploads/`. A file that does not probe stays put.
pub async fn register(state: &AppState, owner: Uuid, request: RegisterMedia) -> ApiResult<Media> {
    check_metadata(&request.metadata)?;
    let source = state
        .storage
        .resolve_upload(&request.uri)
        .map_err(|e| e.on("uri"))?;
    let filename = match request.filename {
        Some(name) => name,
        None => source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    check_filename(&filename).map_err(|e| e.on("filename"))?;
    ingest(
        state,
        owner,
        &source,
        &filename,
        request.metadata,
        Some(source.clone()),
    )
    .await
    .map_err(|e| match e.code {
        "unreadable_media" => e.on("uri"),
        _ => e,
    })
}

/// Probe `source`, move it into a new media dir and record the media READY.
/// `restore`: where to put the file back if recording fails (a registered upload).
async fn ingest(
    state: &AppState,
    owner: Uuid,
    source: &Path,
    filename: &str,
    metadata: Metadata,
    restore: Option<PathBuf>,
) -> ApiResult<Media> {
    let probe = probe::probe(source, state.config.run.sandbox)
        .await
        .map_err(|e| match e {
            ProbeError::Spawn(_) | ProbeError::Sandbox(_) => ApiError::unavailable(e.to_string()),
            _ => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unreadable_media",
                format!("{filename}: {e}"),
            ),
        })?;
    let id = Uuid::new_v4();
    let size = state.storage.adopt(source, id, filename).await?;
    let at = now();
    let media = Media {
        id,
        user_id: owner,
        parent_id: None,
        filename: filename.to_owned(),
        uri: crate::storage::Storage::media_uri(id, filename),
        public_uris: Default::default(),
        metadata,
        status: MediaStatus::Ready,
        size,
        duration: probe.duration(),
        probe: Some(probe),
        created_at: at,
        updated_at: at,
        revision: 0,
    };
    if let Err(e) = state.store.create_media(&media).await {
        let path = state.storage.path_of(&media.uri);
        if let Some(original) = restore {
            let _ = tokio::fs::rename(&path, original).await;
        }
        let _ = state.storage.remove_media(id).await;
        return Err(e.into());
    }
    tracing::info!(media = %id, size, "media ingested");
    emit_changes(state, None, &media);
    state.thumbnailer.make_for_ready(&media).await;
    Ok(media)
}

/// Read → decide → fenced write of media `id` (see `crate::store::Store`), until the write
/// lands on the record decided on; `decide` says whether it changed the media and is called
/// again on the fresh record after a lost race. The media as it is after.
pub async fn change(
    state: &AppState,
    id: Uuid,
    mut decide: impl FnMut(&mut Media) -> ApiResult<bool> + Send,
) -> ApiResult<Media> {
    for round in 0..24 {
        let mut media = state
            .store
            .get_media(id)
            .await?
            .ok_or_else(|| ApiError::not_found("media", id))?;
        let before = media.clone();
        if !decide(&mut media)? {
            return Ok(media);
        }
        if state.store.update_media(&mut media).await? {
            emit_changes(state, Some(&before), &media);
            return Ok(media);
        }
        tracing::debug!(media = %id, round, "media changed underneath; deciding again");
        tokio::time::sleep(crate::store::backoff(round)).await;
    }
    Err(ApiError::conflict(format!(
        "media {id} kept changing while this request was applied; try again"
    )))
}

/// The events of a media just written: its status (`before` None: it is new), and each
/// publication URL added or removed.
pub fn emit_changes(state: &AppState, before: Option<&Media>, media: &Media) {
    let event = |kind: EventType, data: serde_json::Value| {
        let mut event = Event::new(kind, data);
        event.user_id = Some(media.user_id);
        event.media_id = Some(media.id);
        event
    };
    let from = before.map(|b| b.status);
    if from != Some(media.status) {
        let data = serde_json::json!({"from": from, "media": media});
        state.events.emit(event(EventType::MediaStatus, data));
    }
    let empty = Default::default();
    let was = before.map_or(&empty, |b| &b.public_uris);
    for (task, url) in &media.public_uris {
        if was.get(task) != Some(url) {
            let data = serde_json::json!({"publisher_task_id": task, "url": url, "media": media});
            state.events.emit(event(EventType::MediaPublished, data));
        }
    }
    for (task, url) in was {
        if !media.public_uris.contains_key(task) {
            let data = serde_json::json!({"publisher_task_id": task, "url": url, "media": media});
            state.events.emit(event(EventType::MediaUnpublished, data));
        }
    }
}

/// A page of medias (the filter says whose: the caller's own, or any for admins).
pub async fn list(
    state: &AppState,
    filter: &MediaFilter,
    opts: &ListOptions,
) -> ApiResult<Page<Media>> {
    Ok(state.store.list_medias(filter, opts).await?)
}

/// A media the caller may see; others' are a 404, as unknown ones.
pub async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<Media> {
    state
        .store
        .get_media(id)
        .await?
        .filter(|m| caller.can_see(Some(m.user_id)))
        .ok_or_else(|| ApiError::not_found("media", id))
}

/// The statuses of a publication that holds its media: queued, publishing, published, or
/// being unpublished.
pub const HOLDING: [TaskStatus; 6] = [
    TaskStatus::Pending,
    TaskStatus::Retry,
    TaskStatus::Started,
    TaskStatus::Progress,
    TaskStatus::Revoking,
    TaskStatus::Success,
];

/// The publications that hold a media (for the 409s of publishing it again and deleting it).
pub async fn holding(state: &AppState, media_id: Uuid) -> ApiResult<Vec<PublisherTask>> {
    let filter = TaskFilter {
        media_id: Some(media_id),
        statuses: HOLDING.to_vec(),
        ..TaskFilter::default()
    };
    Ok(state
        .store
        .list_publisher_tasks(&filter, &ListOptions::oldest_first(20))
        .await?
        .items)
}

/// Merge-patch a media's metadata (RFC 7386; `title` stays required). Applied to the record
/// as stored: a publication may change `public_uris` meanwhile.
pub async fn patch_metadata(state: &AppState, media: Media, patch: Metadata) -> ApiResult<Media> {
    change(state, media.id, |media| {
        if media.status == MediaStatus::Deleted {
            return Err(ApiError::illegal_state(format!(
                "media {} is DELETED",
                media.id
            )));
        }
        merge_patch(&mut media.metadata, patch.clone());
        check_metadata(&media.metadata)?;
        media.updated_at = now();
        Ok(true)
    })
    .await
}

/// Delete a media's files and mark it DELETED (the record stays for lineage). Refused while
/// a publication holds it or an active transform task uses it.
pub async fn delete(state: &AppState, media: Media) -> ApiResult<()> {
    if media.status == MediaStatus::Deleted {
        return Err(ApiError::illegal_state(format!(
            "media {} is already DELETED",
            media.id
        )));
    }
    let publications = holding(state, media.id).await?;
    if !publications.is_empty() {
        let held: Vec<String> = publications
            .iter()
            .map(|t| format!("{} ({})", t.id, t.status))
            .collect();
        return Err(ApiError::conflict(format!(
            "media {} is published by publisher task(s) {}; unpublish it first",
            media.id,
            held.join(", ")
        )));
    }
    let active = TaskFilter {
        media_id: Some(media.id),
        statuses: TaskStatus::ACTIVE.to_vec(),
        ..TaskFilter::default()
    };
    let tasks = state
        .store
        .list_transform_tasks(&active, &ListOptions::oldest_first(10))
        .await?;
    if tasks.total > 0 {
        let ids: Vec<_> = tasks.items.iter().map(|t| t.id.to_string()).collect();
        return Err(ApiError::conflict(format!(
            "media {} is used by active transform task(s) {}; wait for them or revoke them first",
            media.id,
            ids.join(", ")
        )));
    }
    change(state, media.id, |media| {
        if media.status == MediaStatus::Deleted {
            return Err(ApiError::illegal_state(format!(
                "media {} is already DELETED",
                media.id
            )));
        }
        media.status = MediaStatus::Deleted;
        media.updated_at = now();
        Ok(true)
    })
    .await?;
    if let Err(e) = state.storage.remove_media(media.id).await {
        tracing::warn!(media = %media.id, error = %e, "could not remove the media's files");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Metadata {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = obj(json!({"title": "a", "tags": {"x": 1, "y": 2}, "drop": true}));
        merge_patch(
            &mut target,
            obj(json!({"tags": {"x": null, "z": 3}, "drop": null, "new": [1]})),
        );
        assert_eq!(
            Value::Object(target),
            json!({"title": "a", "tags": {"y": 2, "z": 3}, "new": [1]})
        );
    }

    #[test]
    fn metadata_needs_a_title() {
        assert!(check_metadata(&obj(json!({"title": "ok"}))).is_ok());
        assert!(check_metadata(&obj(json!({}))).is_err());
        assert!(check_metadata(&obj(json!({"title": ""}))).is_err());
        assert!(check_metadata(&obj(json!({"title": 3}))).is_err());
    }

    #[test]
    fn metadata_is_capped_at_64_kib() {
        // `{"title":"t","pad":"..."}` is 22 bytes around the padding.
        let at = |n: usize| obj(json!({"title": "t", "pad": "x".repeat(n - 22)}));
        assert!(check_metadata(&at(MAX_METADATA_BYTES)).is_ok());
        let err = check_metadata(&at(MAX_METADATA_BYTES + 1)).unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.message.contains("65536"), "{}", err.message);
    }
}
