//! What the transform and publisher task routes share: the list query and the bodies of
//! the list, get, revoke and queue routes, generic over the task kind (each kind's file
//! keeps only its route declarations and its create).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use oscied_protocol::TaskStatus;

use axum::Json;
use axum::http::StatusCode;
use oscied_protocol::node::UnitKind;

use super::{list_options, list_owner, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::models::Page;
use crate::models::{ListOptions, TaskFilter};
use crate::state::AppState;
use crate::tasks::{self, TaskKind};
use crate::units::{self, QueueView};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// PENDING, STARTED, PROGRESS, SUCCESS, FAILURE, RETRY, REVOKING, REVOKED, or several
    /// separated by commas. Default: all.
    #[param(value_type = Option<Vec<TaskStatus>>, style = Form, explode = false, min_items = 1)]
    status: Option<String>,
    /// Owner (admins; others only ever see their own).
    user_id: Option<Uuid>,
    /// Transform tasks whose input or output is this media; publications of this media.
    media_id: Option<Uuid>,
    queue: Option<String>,
    /// Tasks held (or last held) by this unit.
    unit_id: Option<String>,
    /// Only tasks that finished at or after this instant (RFC 3339, e.g.
    /// `2024-05-01T12:00:00Z`); unfinished ones never match.
    #[param(value_type = Option<String>, format = DateTime)]
    finished_after: Option<String>,
    /// Default 50, at most 1000.
    #[param(maximum = 1000)]
    limit: Option<u64>,
    /// Items to pass over before the first one answered.
    skip: Option<u64>,
    /// created_at, started_at, finished_at, status (and priority for transform tasks); `-`
    /// for descending. Default: -created_at. Documented by each list (their names differ).
    #[param(ignore)]
    sort: Option<String>,
}

impl TaskListQuery {
    /// The store filter and options for this caller; None when the caller may see nothing
    /// of what was asked (another user's tasks).
    pub fn filter(
        self,
        caller: &Caller,
        sorts: &[(&str, &'static str)],
    ) -> ApiResult<Option<(TaskFilter, ListOptions)>> {
        let opts = list_options(
            self.limit,
            self.skip,
            self.sort.as_deref(),
            sorts,
            "-created_at",
        )?;
        let statuses = match &self.status {
            Some(status) => parse_statuses(status)?,
            None => vec![],
        };
        let finished_after = self
            .finished_after
            .as_deref()
            .map(parse_timestamp)
            .transpose()?;
        let Some(owner) = list_owner(caller, self.user_id) else {
            return Ok(None);
        };
        let filter = TaskFilter {
            user_id: owner,
            media_id: self.media_id,
            statuses,
            queue: self.queue,
            unit_id: self.unit_id,
            finished_after,
            ..TaskFilter::default()
        };
        Ok(Some((filter, opts)))
    }
}
/// An RFC 3339 timestamp. A `+` offset sent unencoded in a query string arrives as a space,
/// which is read back as the `+` it was.
fn parse_timestamp(raw: &str) -> ApiResult<DateTime<Utc>> {
    let text = raw.trim().replace(' ', "+");
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::invalid_field(
                "finished_after",
                format!(
                    "finished_after {raw:?} is not an RFC 3339 timestamp such as 2024-05-01T12:00:00Z ({e})"
                ),
            )
        })
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
        .collect::<ApiResult<_>>()
        .map_err(|e| e.on("status"))
}

/// A page of tasks of kind `K` the caller may see.
pub async fn list<K: TaskKind + serde::Serialize>(
    state: &AppState,
    caller: &Caller,
    query: TaskListQuery,
    sorts: &[(&str, &'static str)],
) -> ApiResult<Json<Page<K>>> {
    let Some((filter, opts)) = query.filter(caller, sorts)? else {
        return Ok(Json(Page::empty()));
    };
    Ok(Json(tasks::page::<K>(state, &filter, &opts).await?))
}

/// One task the caller may see.
pub async fn get<K: TaskKind + serde::Serialize>(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<Json<K>> {
    let id = parse_id(K::WHAT, id)?;
    Ok(Json(tasks::find::<K>(state, caller, id).await?))
}

/// Revoke (unpublish): 200 with the task when that ended it, 202 while its unit stops.
pub async fn revoke<K: TaskKind + serde::Serialize>(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<(StatusCode, Json<K>)> {
    let id = parse_id(K::WHAT, id)?;
    let task = tasks::revoke::<K>(state, caller, id).await?;
    let status = if task.status.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(task)))
}

/// A kind's queues, live.
pub async fn queues(state: &AppState, kind: UnitKind) -> ApiResult<Json<Page<QueueView>>> {
    let items = units::queues(state, kind).await?;
    Ok(Json(Page {
        total: items.len() as u64,
        items,
    }))
}
