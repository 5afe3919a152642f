//! `GET /overview`: the counts of the web UI's first page, as the caller may see them (a user
//! counts their own medias and tasks, admins and root everyone's). Grouped counts in the
//! store (`Store::count_by_status`), never rows loaded to be counted. Also what the store
//! gives `GET /metrics` ([`metrics`]).

use std::collections::BTreeMap;

use oscied_protocol::TaskStatus;
use oscied_protocol::node::UnitKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::metrics::{StoreView, TaskCount};
use crate::models::{Counted, ListOptions, MediaStatus, TaskFilter, now};
use crate::state::AppState;
use crate::units;

const MEDIA_STATUSES: [MediaStatus; 3] = [
    MediaStatus::Pending,
    MediaStatus::Ready,
    MediaStatus::Deleted,
];

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Overview {
    /// Medias by status; every status is present.
    #[schema(schema_with = media_counts_schema)]
    pub medias: BTreeMap<String, u64>,
    pub transform_tasks: TaskCounts,
    pub publisher_tasks: TaskCounts,
    /// Every registered unit (units belong to no one).
    pub units: UnitCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TaskCounts {
    /// Tasks by status; every status is present.
    #[schema(schema_with = task_counts_schema)]
    pub by_status: BTreeMap<String, u64>,
    /// FAILURE tasks that finished in the last 24 hours (the list:
    /// `?status=FAILURE&finished_after=<now - 24 h>`).
    pub failed_last_24h: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UnitCounts {
    /// A heartbeat within three of the unit's intervals.
    pub online: u64,
    pub offline: u64,
}

/// An object with one required integer per name.
fn counts_schema(names: &[&str]) -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    names
        .iter()
        .fold(ObjectBuilder::new(), |object, name| {
            object
                .property(
                    *name,
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .required(*name)
        })
        .build()
}

fn media_counts_schema() -> utoipa::openapi::Object {
    counts_schema(&MEDIA_STATUSES.map(MediaStatus::as_str))
}

fn task_counts_schema() -> utoipa::openapi::Object {
    counts_schema(&TaskStatus::ALL.map(TaskStatus::as_str))
}

/// `counted` as stored, with a zero for every one of `names` the store has none of.
fn every(names: &[&str], counted: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut all: BTreeMap<String, u64> = names.iter().map(|n| ((*n).to_owned(), 0)).collect();
    for (status, n) in counted {
        if let Some(slot) = all.get_mut(&status) {
            *slot = n;
        }
    }
    all
}

pub async fn overview(state: &AppState, caller: &Caller) -> ApiResult<Overview> {
    let owner = if caller.is_admin() {
        None
    } else {
        caller.user_id()
    };
    let store = &state.store;
    let medias = every(
        &MEDIA_STATUSES.map(MediaStatus::as_str),
        store.count_by_status(Counted::Medias, owner).await?,
    );
    let failed = TaskFilter {
        user_id: owner,
        statuses: vec![TaskStatus::Failure],
        finished_after: Some(now() - chrono::Duration::hours(24)),
        ..TaskFilter::default()
    };
    let count_only = ListOptions::count_only();
    let transform_failed = store.list_transform_tasks(&failed, &count_only).await?;
    let publisher_failed = store.list_publisher_tasks(&failed, &count_only).await?;
    let task_counts = |counted, failed_last_24h| async move {
        let counted = store.count_by_status(counted, owner).await?;
        ApiResult::Ok(TaskCounts {
            by_status: every(&TaskStatus::ALL.map(TaskStatus::as_str), counted),
            failed_last_24h,
        })
    };
    let transform_tasks = task_counts(Counted::TransformTasks, transform_failed.total).await?;
    let publisher_tasks = task_counts(Counted::PublisherTasks, publisher_failed.total).await?;
    let units = units::list(state).await?;
    let online = units.iter().filter(|u| u.online).count() as u64;
    Ok(Overview {
        medias,
        transform_tasks,
        publisher_tasks,
        units: UnitCounts {
            online,
            offline: units.len() as u64 - online,
        },
    })
}

/// The exposition of `GET /metrics`: this process's counters, and the store's gauges read
/// again when they are older than `crate::metrics::STORE_TTL`.
pub async fn metrics(state: &AppState) -> String {
    state
        .metrics
        .encode(state.broker.reconnects(), || store_view(state))
        .await
}

/// The tasks not over and the units, as the gauges show them: a few grouped queries per
/// task kind and the unit list.
async fn store_view(state: &AppState) -> ApiResult<StoreView> {
    let at = now();
    let mut view = StoreView::default();
    for kind in [UnitKind::Transform, UnitKind::Publisher] {
        let active = state
            .store
            .active_tasks(kind)
            .await
            .map_err(ApiError::from)?;
        view.tasks.extend(active.groups.into_iter().filter_map(|g| {
            Some(TaskCount {
                kind: kind.as_str(),
                status: TaskStatus::parse(&g.status)?,
                queue: g.queue,
                count: g.count,
                oldest_age_secs: g
                    .oldest_created_at
                    .map(|t| (at - t).num_milliseconds().max(0) as f64 / 1000.0),
            })
        }));
        view.running.extend(
            active
                .running_by_unit
                .into_iter()
                .map(|(unit, n)| (kind.as_str(), unit, n)),
        );
    }
    view.units = units::list(state)
        .await?
        .into_iter()
        .map(|u| (u.kind.as_str(), u.id, u.online))
        .collect();
    Ok(view)
}
