//! `/publisher/tasks` and `/publisher/queues`.

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
use crate::models::{Page, PublisherTask};
use crate::state::AppState;

use crate::tasks::publish::{self, NewPublisherTask};
use crate::units::QueueView;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task, unpublish_task))
        .routes(routes!(list_queues))
}

super::sort_param!(PublisherTaskSort, SORTS);

const SORTS: &[(&str, &str)] = &[
    ("created_at", "created_at"),
    ("started_at", "started_at"),
    ("finished_at", "finished_at"),
    ("status", "status"),
];

/// Publish a READY media: a publisher unit copies (or hard-links) its directory into its web
/// root, checks the URL answers, and the task ends SUCCESS with `publish_uri`; the media's
/// `public_uris` then holds it.
#[utoipa::path(post, path = "/publisher/tasks", tag = "publisher", operation_id = "create_publisher_task", request_body = NewPublisherTask,
    params(("Idempotency-Key" = Option<String>, Header, description = "Make retries safe: the same key and body within 24 h answer the first answer again (`Idempotent-Replayed: true`) and create nothing; another body is a 422.")),
    responses(Authed, JsonBody, (status = 201, description = "the task, queued", body = PublisherTask),
        (status = 403, description = "root owns no tasks: launch as a user", body = ErrorBody),
        (status = 404, description = "no such media", body = ErrorBody),
        (status = 409, description = "the media is not READY, or already published or being published", body = ErrorBody),
        (status = 422, description = "an invalid field or queue", body = ErrorBody)))]
async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    Submitted { body: new, key }: Submitted<NewPublisherTask>,
) -> ApiResult<Response> {
    let answer = idempotency::once(&state, &caller, "POST /publisher/tasks", key, || async {
        created(&publish::create(&state, &caller, new).await?)
    })
    .await?;
    Ok(answered(answer))
}

/// List publisher tasks: one's own, or all for admins.
#[utoipa::path(get, path = "/publisher/tasks", tag = "publisher", operation_id = "list_publisher_tasks", params(TaskListQuery, ("sort" = inline(Option<PublisherTaskSort>), Query, description = "`-` for descending. Default: -created_at.")),
    responses(Authed, BadQuery, (status = 200, description = "a page of tasks", body = Page<PublisherTask>)))]
async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TaskListQuery>,
) -> ApiResult<Json<Page<PublisherTask>>> {
    task_lists::list(&state, &caller, query, SORTS).await
}

#[utoipa::path(get, path = "/publisher/tasks/{id}", tag = "publisher", operation_id = "get_publisher_task", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "the task", body = PublisherTask)))]
async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<PublisherTask>> {
    task_lists::get(&state, &caller, &id).await
}

/// Unpublish. A queued publication is REVOKED at once (200). A running or finished one
/// becomes REVOKING (202) and REVOKED once the unit holding the files has removed them; the
/// URL then answers 404 and the media's `public_uris` no longer lists it. A unit that is away
/// gets the job when it returns; until then the task stays REVOKING.
#[utoipa::path(delete, path = "/publisher/tasks/{id}", tag = "publisher", operation_id = "unpublish_task", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "revoked", body = PublisherTask), (status = 202, description = "unpublishing", body = PublisherTask),
        (status = 409, description = "failed or already unpublished", body = ErrorBody)))]
async fn unpublish_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<PublisherTask>)> {
    task_lists::revoke(&state, &caller, &id).await
}

/// The publisher queues, live: waiting and running publications, the online units consuming
/// each.
#[utoipa::path(get, path = "/publisher/queues", tag = "publisher", operation_id = "list_publisher_queues",
    responses(Authed, (status = 200, description = "the queues", body = Page<QueueView>)))]
async fn list_queues(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Page<QueueView>>> {
    task_lists::queues(&state, UnitKind::Publisher).await
}
