//! `/transform/tasks` and `/transform/queues`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use oscied_protocol::node::UnitKind;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiQuery;
use super::idempotent::{Submitted, answered, created};
use super::responses::{Authed, BadQuery, JsonBody, NotFound};
use super::task_lists::{self, TaskListQuery};
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::idempotency;
use crate::models::{Page, TransformTask};
use crate::state::AppState;

use crate::tasks::transform::{self, NewTransformTask};
use crate::units::QueueView;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task, revoke_task))
        .routes(routes!(list_queues))
}

super::sort_param!(TransformTaskSort, SORTS);

const SORTS: &[(&str, &str)] = &[
    ("created_at", "created_at"),
    ("started_at", "started_at"),
    ("finished_at", "finished_at"),
    ("status", "status"),
    ("priority", "priority"),
];

/// Launch a transform: creates the PENDING output media (parent_id = media_in_id) and queues
/// the task.
#[utoipa::path(post, path = "/transform/tasks", tag = "transform", operation_id = "create_transform_task", request_body = NewTransformTask,
    params(("Idempotency-Key" = Option<String>, Header, description = "Make retries safe: the same key and body within 24 h answer the first answer again (`Idempotent-Replayed: true`) and create nothing; another body is a 422.")),
    responses(Authed, JsonBody, (status = 201, description = "the task, queued", body = TransformTask),
        (status = 403, description = "root owns no tasks: launch as a user", body = ErrorBody),
        (status = 404, description = "no such media or profile", body = ErrorBody),
        (status = 409, description = "the input media is not READY", body = ErrorBody),
        (status = 422, description = "an invalid field or queue", body = ErrorBody)))]
async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    Submitted { body: new, key }: Submitted<NewTransformTask>,
) -> ApiResult<Response> {
    let answer = idempotency::once(&state, &caller, "POST /transform/tasks", key, || async {
        created(&transform::create(&state, &caller, new).await?)
    })
    .await?;
    Ok(answered(answer))
}

/// List transform tasks: one's own, or all for admins.
#[utoipa::path(get, path = "/transform/tasks", tag = "transform", operation_id = "list_transform_tasks", params(TaskListQuery, ("sort" = inline(Option<TransformTaskSort>), Query, description = "`-` for descending. Default: -created_at.")),
    responses(Authed, BadQuery, (status = 200, description = "a page of tasks", body = Page<TransformTask>)))]
async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TaskListQuery>,
) -> ApiResult<Json<Page<TransformTask>>> {
    task_lists::list(&state, &caller, query, SORTS).await
}

/// Get a transform task, with its live progress.
#[utoipa::path(get, path = "/transform/tasks/{id}", tag = "transform", operation_id = "get_transform_task", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "the task", body = TransformTask)))]
async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TransformTask>> {
    task_lists::get(&state, &caller, &id).await
}

/// Revoke a transform task. A queued one is REVOKED at once (200); a running one becomes
/// REVOKING (202) and REVOKED when its unit has stopped ffmpeg and cleaned up. Its output
/// media ends DELETED.
#[utoipa::path(delete, path = "/transform/tasks/{id}", tag = "transform", operation_id = "revoke_task", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "revoked", body = TransformTask), (status = 202, description = "revoking", body = TransformTask),
        (status = 409, description = "the task has finished", body = ErrorBody)))]
async fn revoke_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<TransformTask>)> {
    task_lists::revoke(&state, &caller, &id).await
}

/// The transform queues, live: waiting and running tasks, the online units consuming each.
#[utoipa::path(get, path = "/transform/queues", tag = "transform", operation_id = "list_transform_queues",
    responses(Authed, (status = 200, description = "the queues", body = Page<QueueView>)))]
async fn list_queues(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Page<QueueView>>> {
    task_lists::queues(&state, UnitKind::Transform).await
}
