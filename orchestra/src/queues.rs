//! Which queue a new task may go to (docs/architecture.md §5): a queue of its kind, or a
//! named one that no unit of the other kind consumes.

use oscied_protocol::node::UnitKind;
use oscied_protocol::queue::{check_queue_for, reserved_kind};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Where a task of `kind` may be sent (the rule: `oscied_protocol::queue`): a valid name not
/// reserved to the other kind, and not a named queue that units of the other kind consume.
/// Every registered unit counts, online or not: one that comes back takes the queue's jobs,
/// and a job of the wrong kind could never run there (admins forget a unit gone for good).
pub async fn check_task_queue(state: &AppState, kind: UnitKind, queue: &str) -> ApiResult<()> {
    check_queue_for(kind, queue).map_err(|e| ApiError::invalid(format!("queue: {e}")))?;
    if reserved_kind(queue).is_some() {
        return Ok(());
    }
    let others: Vec<String> = state
        .store
        .list_units()
        .await?
        .into_iter()
        .filter(|u| u.kind != kind && u.queues.iter().any(|q| q == queue))
        .map(|u| u.id)
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    let (kind, other) = match kind {
        UnitKind::Transform => ("transform", "publisher"),
        UnitKind::Publisher => ("publisher", "transform"),
    };
    Err(ApiError::invalid(format!(
        "queue: {queue:?} is consumed by {other} units ({}): a {kind} task there would never run",
        others.join(", ")
    )))
}
