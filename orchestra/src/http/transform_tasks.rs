//! `/transform/tasks` and `/transform/queues`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use oscied_protocol::TaskStatus;
use oscied_protocol::node::UnitKind;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiJson, ApiQuery, list_options, list_owner, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::models::{Page, TaskFilter, TransformTask};
use crate::state::AppState;
use crate::transforms::{self, NewTransformTask};
use crate::units::{self, QueueView};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task, revoke_task))
        .routes(routes!(list_queues))
}

const SORTS: &[(&str, &str)] = &[
    ("created_at", "created_at"),
    ("started_at", "started_at"),
    ("finished_at", "finished_at"),
    ("status", "status"),
    ("priority", "priority"),
];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TaskListQuery {
    /// PENDING, STARTED, PROGRESS, SUCCESS, FAILURE, RETRY, REVOKING, REVOKED, or several
    /// separated by commas. Default: all.
    status: Option<String>,
    /// Owner (admins; others only ever see their own).
    user_id: Option<Uuid>,
    /// Tasks whose input or output is this media.
    media_id: Option<Uuid>,
    queue: Option<String>,
    /// Tasks held (or last held) by this unit.
    unit_id: Option<String>,
    /// Default 50, at most 1000.
    limit: Option<u64>,
    skip: Option<u64>,
    /// created_at, started_at, finished_at, status, priority; `-` for descending.
    /// Default: -created_at.
    sort: Option<String>,
}

fn parse_statuses(raw: &str) -> ApiResult<Vec<TaskStatus>> {
    raw.split(',')
        .map(|s| {
            TaskStatus::parse(s.trim()).ok_or_else(|| {
                let all: Vec<_> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::invalid(format!(
                    "status {:?} is not one of {}",
                    s.trim(),
                    all.join(", ")
                ))
            })
        })
        .collect()
}

/// Launch a transform: creates the PENDING output media (parent_id = media_in_id) and queues
/// the task.
#[utoipa::path(post, path = "/transform/tasks", tag = "transform", request_body = NewTransformTask,
    responses((status = 201, body = TransformTask), (status = 404, description = "no such media or profile", body = ErrorBody),
        (status = 409, description = "the input media is not READY", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewTransformTask>,
) -> ApiResult<(StatusCode, Json<TransformTask>)> {
    let task = transforms::create(&state, &caller, new).await?;
    Ok((StatusCode::CREATED, Json(task)))
}

/// List transform tasks: one's own, or all for admins.
#[utoipa::path(get, path = "/transform/tasks", tag = "transform", params(TaskListQuery),
    responses((status = 200, body = Page<TransformTask>), (status = 422, body = ErrorBody)))]
async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TaskListQuery>,
) -> ApiResult<Json<Page<TransformTask>>> {
    let opts = list_options(
        query.limit,
        query.skip,
        query.sort.as_deref(),
        SORTS,
        "-created_at",
    )?;
    let mut filter = TaskFilter {
        user_id: query.user_id,
        media_id: query.media_id,
        queue: query.queue,
        unit_id: query.unit_id,
        ..TaskFilter::default()
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
    Ok(Json(
        state.store.list_transform_tasks(&filter, &opts).await?,
    ))
}

/// Get a transform task, with its live progress.
#[utoipa::path(get, path = "/transform/tasks/{id}", tag = "transform", params(("id" = String, Path)),
    responses((status = 200, body = TransformTask), (status = 404, body = ErrorBody)))]
async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TransformTask>> {
    let id = parse_id("transform task", &id)?;
    Ok(Json(transforms::find(&state, &caller, id).await?))
}

/// Revoke a transform task. A queued one is REVOKED at once (200); a running one becomes
/// REVOKING (202) and REVOKED when its unit has stopped ffmpeg and cleaned up. Its output
/// media ends DELETED.
#[utoipa::path(delete, path = "/transform/tasks/{id}", tag = "transform", params(("id" = String, Path)),
    responses((status = 200, description = "revoked", body = TransformTask), (status = 202, description = "revoking", body = TransformTask),
        (status = 404, body = ErrorBody), (status = 409, description = "the task has finished", body = ErrorBody)))]
async fn revoke_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<TransformTask>)> {
    let id = parse_id("transform task", &id)?;
    let task = transforms::revoke(&state, &caller, id).await?;
    let status = if task.status.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(task)))
}

/// The transform queues, live: waiting and running tasks, the online units consuming each.
#[utoipa::path(get, path = "/transform/queues", tag = "transform",
    responses((status = 200, body = Page<QueueView>)))]
async fn list_queues(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Page<QueueView>>> {
    let items = units::queues(&state, UnitKind::Transform).await?;
    Ok(Json(Page {
        total: items.len() as u64,
        items,
    }))
}
