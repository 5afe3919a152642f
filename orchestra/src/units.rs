//! Worker units as their heartbeats register them, and the live view of the queues.

use std::collections::{BTreeMap, HashMap, HashSet};

use oscied_protocol::TaskStatus;
use oscied_protocol::node::{UnitHeartbeat, UnitKind};
use oscied_protocol::queue::{check_queue_for, default_queue};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, EventType};
use crate::models::TransformTask;
use crate::models::{ListOptions, TaskFilter, Unit, now};
use crate::state::AppState;
use crate::tasks::{self, publish};

/// A unit id is what `OSCIED_UNIT_ID` says (default a UUID): 1–128 of letters, digits and
/// `_ - . : @`.
pub fn check_unit_id(id: &str) -> ApiResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "a unit id has 1 to 128 letters, digits, '_', '-', '.', ':' or '@'",
        ))
    }
}

/// Online = a heartbeat within three of the unit's intervals.
fn with_online(mut unit: Unit) -> Unit {
    let silence = now() - unit.last_heartbeat;
    unit.online = silence.num_milliseconds() <= 3 * 1000 * unit.heartbeat_secs.max(1) as i64;
    unit
}

/// Register or refresh a unit.
pub async fn heartbeat(state: &AppState, id: String, beat: UnitHeartbeat) -> ApiResult<Unit> {
    check_unit_id(&id)?;
    for queue in &beat.queues {
        check_queue_for(beat.kind, queue).map_err(|e| {
            ApiError::invalid(format!(
                "queues: a {} unit cannot consume queue {e}",
                beat.kind.as_str()
            ))
        })?;
    }
    let at = now();
    let known = state.store.get_unit(&id).await?;
    let came_online = known
        .as_ref()
        .is_none_or(|k| !with_online(k.clone()).online);
    // Back after an absence (or new): a publisher is sent again what it has to unpublish.
    let returning = beat.kind == UnitKind::Publisher && came_online;
    let registered_at = match known {
        Some(known) => known.registered_at,
        None => {
            tracing::info!(unit = %id, kind = beat.kind.as_str(), hostname = %beat.hostname,
                queues = %oscied_protocol::unit::log::List(&beat.queues), concurrency = beat.concurrency, "unit registered");
            at
        }
    };
    let unit = Unit {
        id,
        kind: beat.kind,
        queues: beat.queues,
        hostname: beat.hostname,
        version: beat.version,
        ffmpeg_version: beat.ffmpeg_version,
        concurrency: beat.concurrency,
        running_tasks: beat.running_tasks,
        heartbeat_secs: beat.heartbeat_secs.max(1),
        last_heartbeat: at,
        online: true,
        registered_at,
    };
    state.store.put_unit(&unit).await?;
    if came_online {
        emit(state, EventType::UnitOnline, &unit);
    }
    if returning {
        let (state, id) = (state.clone(), unit.id.clone());
        tokio::spawn(async move { publish::resend_unpublish(&state, &id).await });
    }
    let mut running = running_by_unit(state, Some(&unit.id)).await?;
    Ok(with_running(unit, &mut running))
}

/// The ids of the tasks each unit holds (STARTED, PROGRESS or REVOKING), sorted; only
/// `unit`'s when given.
async fn running_by_unit(
    state: &AppState,
    unit: Option<&str>,
) -> ApiResult<HashMap<String, Vec<Uuid>>> {
    let filter = TaskFilter {
        statuses: TaskStatus::RUNNING.to_vec(),
        unit_id: unit.map(str::to_owned),
        ..TaskFilter::default()
    };
    let opts = ListOptions::oldest_first(100_000);
    let transforms = state
        .store
        .list_transform_tasks(&filter, &opts)
        .await?
        .items;
    let publications = state
        .store
        .list_publisher_tasks(&filter, &opts)
        .await?
        .items;
    let held = transforms
        .into_iter()
        .map(|t| (t.header.unit_id, t.header.id))
        .chain(
            publications
                .into_iter()
                .map(|t| (t.header.unit_id, t.header.id)),
        );
    let mut by_unit: HashMap<String, Vec<Uuid>> = HashMap::new();
    for (unit, task) in held {
        if let Some(unit) = unit {
            by_unit.entry(unit).or_default().push(task);
        }
    }
    for tasks in by_unit.values_mut() {
        tasks.sort();
    }
    Ok(by_unit)
}

fn with_running(mut unit: Unit, running: &mut HashMap<String, Vec<Uuid>>) -> Unit {
    unit.running_tasks = running.remove(&unit.id).unwrap_or_default();
    unit
}

/// What forgetting a unit did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Forgotten {
    pub id: String,
    /// Running tasks it held, taken back now (re-queued, or FAILURE past the last attempt)
    /// instead of when their lease lapses.
    pub tasks_taken_back: Vec<Uuid>,
    /// Its publications (published or being unpublished), now REVOKED: their files went with
    /// the unit.
    pub publications_revoked: Vec<Uuid>,
}

/// Forget a unit that is gone for good (admins): the way out for publications that would
/// otherwise wait in REVOKING for a unit that never returns, and for medias they hold. An
/// online unit is refused; if the unit ever comes back it registers anew and, holding
/// nothing, clears its web root when it starts.
pub async fn forget(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Forgotten> {
    caller.require_admin()?;
    let unit = state
        .store
        .get_unit(id)
        .await?
        .map(with_online)
        .ok_or_else(|| ApiError::not_found("unit", id))?;
    if unit.online {
        return Err(ApiError::illegal_state(format!(
            "unit {id} is online (last heartbeat {}): stop it before forgetting it",
            unit.last_heartbeat.to_rfc3339()
        )));
    }
    let filter = TaskFilter {
        unit_id: Some(unit.id.clone()),
        statuses: TaskStatus::RUNNING
            .iter()
            .copied()
            .chain([TaskStatus::Success])
            .collect(),
        ..TaskFilter::default()
    };
    let opts = ListOptions::oldest_first(100_000);
    let mut tasks_taken_back = vec![];
    for task in state
        .store
        .list_transform_tasks(&filter, &opts)
        .await?
        .items
    {
        if task.status.is_running() {
            tasks::take_back::<TransformTask>(state, task.id, true).await?;
            tasks_taken_back.push(task.id);
        }
    }
    let mut publications_revoked = vec![];
    for task in state
        .store
        .list_publisher_tasks(&filter, &opts)
        .await?
        .items
    {
        if publish::forget_holder(state, task.id).await? {
            publications_revoked.push(task.id);
        } else {
            tasks_taken_back.push(task.id);
        }
    }
    state.store.delete_unit(&unit.id).await?;
    tracing::warn!(unit = %unit.id, taken_back = tasks_taken_back.len(),
        revoked = publications_revoked.len(), "unit forgotten");
    Ok(Forgotten {
        id: unit.id,
        tasks_taken_back,
        publications_revoked,
    })
}

/// `GET /units`: every unit, its running tasks from the tasks (not its last heartbeat).
pub async fn listed(state: &AppState) -> ApiResult<Vec<Unit>> {
    let mut running = running_by_unit(state, None).await?;
    Ok(list(state)
        .await?
        .into_iter()
        .map(|unit| with_running(unit, &mut running))
        .collect())
}

fn emit(state: &AppState, kind: EventType, unit: &Unit) {
    let mut event = Event::new(kind, serde_json::json!({ "unit": unit }));
    event.unit_id = Some(unit.id.clone());
    state.events.emit(event);
}

/// What the loop saw online at its last pass, and when it looked.
pub struct SeenOnline {
    units: HashSet<String>,
    at: chrono::DateTime<chrono::Utc>,
}

/// One pass of the orchestra's loop: a `unit.offline` event for each unit that is offline now
/// and was online since the last pass (`seen`; None at the first: nothing to compare with):
/// seen online then, or heard from after it (online and gone between two passes).
pub async fn notice_offline(state: &AppState, seen: &mut Option<SeenOnline>) {
    let at = now();
    let units = match list(state).await {
        Ok(units) => units,
        Err(e) => {
            tracing::debug!(error = %e, "unit watch: store unavailable");
            return;
        }
    };
    let now_online: HashSet<String> = units
        .iter()
        .filter(|u| u.online)
        .map(|u| u.id.clone())
        .collect();
    if let Some(was) = seen.as_ref() {
        let gone =
            |u: &&Unit| !u.online && (was.units.contains(&u.id) || u.last_heartbeat > was.at);
        for unit in units.iter().filter(gone) {
            tracing::info!(unit = %unit.id, last_heartbeat = %unit.last_heartbeat.to_rfc3339(), "unit went offline");
            emit(state, EventType::UnitOffline, unit);
        }
    }
    *seen = Some(SeenOnline {
        units: now_online,
        at,
    });
}

/// One pass of the orchestra's loop: forget the units offline for longer than
/// `OSCIED_UNIT_FORGET_SECS` (0: never) that hold nothing, neither a running task (the
/// reaper takes those back first, when their lease lapses) nor a publication (its files are
/// on that unit: it stays listed until an admin forgets it, `DELETE /units/{id}`).
pub async fn forget_offline(state: &AppState) {
    let secs = state.config.unit_forget_secs;
    if secs == 0 {
        return;
    }
    let units = match list(state).await {
        Ok(units) => units,
        Err(e) => {
            tracing::debug!(error = %e, "unit sweep: store unavailable");
            return;
        }
    };
    let cutoff = now() - chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX));
    for unit in units
        .into_iter()
        .filter(|u| !u.online && u.last_heartbeat < cutoff)
    {
        match holds_anything(state, &unit.id).await {
            Ok(false) => {}
            Ok(true) => continue,
            Err(e) => {
                tracing::debug!(unit = %unit.id, error = %e, "unit sweep: store unavailable");
                continue;
            }
        }
        match state.store.delete_unit(&unit.id).await {
            Ok(true) => tracing::info!(
                unit = %unit.id, last_heartbeat = %unit.last_heartbeat.to_rfc3339(),
                "offline unit dropped (OSCIED_UNIT_FORGET_SECS)"
            ),
            Ok(false) => {}
            Err(e) => tracing::debug!(unit = %unit.id, error = %e, "unit sweep: cannot drop it"),
        }
    }
}

/// Whether a unit holds a running task or a publication (SUCCESS included).
async fn holds_anything(state: &AppState, unit: &str) -> ApiResult<bool> {
    let filter = TaskFilter {
        statuses: TaskStatus::RUNNING.to_vec(),
        unit_id: Some(unit.to_owned()),
        ..TaskFilter::default()
    };
    let one = ListOptions::oldest_first(1);
    if !state
        .store
        .list_transform_tasks(&filter, &one)
        .await?
        .items
        .is_empty()
    {
        return Ok(true);
    }
    Ok(!publish::held(state, unit).await?.publications.is_empty())
}

pub async fn list(state: &AppState) -> ApiResult<Vec<Unit>> {
    Ok(state
        .store
        .list_units()
        .await?
        .into_iter()
        .map(with_online)
        .collect())
}

/// One queue, live.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    /// Tasks waiting for a unit (PENDING or RETRY).
    pub pending: u64,
    /// Tasks a unit holds (STARTED, PROGRESS, REVOKING).
    pub running: u64,
    /// Online units consuming the queue.
    pub units: Vec<String>,
    /// Task slots of those units.
    pub concurrency: u64,
    /// Messages waiting on the broker; null when the broker cannot be asked.
    pub messages: Option<u64>,
}

/// The kind's default queue, every queue an online unit of `kind` consumes and every queue an
/// active task of that kind is in.
pub async fn queues(state: &AppState, kind: UnitKind) -> ApiResult<Vec<QueueView>> {
    let mut views: BTreeMap<String, QueueView> = BTreeMap::new();
    let blank = |name: &str| QueueView {
        name: name.to_owned(),
        pending: 0,
        running: 0,
        units: vec![],
        concurrency: 0,
        messages: None,
    };
    let default = default_queue(kind);
    views.insert(default.to_owned(), blank(default));
    for unit in list(state).await? {
        if unit.kind != kind || !unit.online {
            continue;
        }
        for queue in &unit.queues {
            let view = views.entry(queue.clone()).or_insert_with(|| blank(queue));
            view.units.push(unit.id.clone());
            view.concurrency += u64::from(unit.concurrency);
        }
    }
    let filter = TaskFilter {
        statuses: TaskStatus::ACTIVE.to_vec(),
        ..TaskFilter::default()
    };
    let opts = ListOptions::oldest_first(10_000);
    let tasks: Vec<(String, TaskStatus)> = match kind {
        UnitKind::Transform => state
            .store
            .list_transform_tasks(&filter, &opts)
            .await?
            .items
            .into_iter()
            .map(|t| (t.header.queue, t.header.status))
            .collect(),
        UnitKind::Publisher => state
            .store
            .list_publisher_tasks(&filter, &opts)
            .await?
            .items
            .into_iter()
            // An unpublish waits in its unit's own queue, not in the task's.
            .filter(|t| t.publish_uri.is_none())
            .map(|t| (t.header.queue, t.header.status))
            .collect(),
    };
    for (queue, status) in tasks {
        let view = views.entry(queue.clone()).or_insert_with(|| blank(&queue));
        if status.is_queued() {
            view.pending += 1;
        } else {
            view.running += 1;
        }
    }
    for view in views.values_mut() {
        view.messages = state
            .broker
            .queue_stats(&view.name)
            .await
            .ok()
            .map(|s| s.messages);
    }
    Ok(views.into_values().collect())
}
