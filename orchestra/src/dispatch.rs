//! Getting tasks to units and taking them back (docs/architecture.md §5): the job message built from a
//! task, its publication with the broker's confirm, the dispatch loop that re-publishes tasks
//! whose publication failed, and the lease reaper.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oscied_protocol::queue::unit_queue;
use oscied_protocol::{PublishAction, PublishJob, TaskStatus, TransformJob};
use uuid::Uuid;

use crate::models::{
    ListOptions, Media, PublisherTask, TaskFilter, TransformProfile, TransformTask, now,
};
use crate::state::AppState;
use crate::store::StoreResult;
use crate::{lifecycle, publications, transforms, units};

/// How often the dispatch loop retries failed publications.
const TICK: Duration = Duration::from_secs(1);
/// How often it looks for undispatched tasks even when no publication failed here.
const SWEEP: Duration = Duration::from_secs(30);
/// How often it looks for offline units to drop (`OSCIED_UNIT_FORGET_SECS`): at most this
/// late, or the forget time when shorter.
const UNIT_SWEEP: Duration = Duration::from_secs(60);
/// A publication that takes longer is left to the dispatch loop.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The dispatch loop's shared state: tasks being published right now (so the loop and a
/// request don't publish one twice), and whether a publication failed since the loop's last
/// pass (so an idle orchestra does not query the store every second for nothing).
pub struct Dispatcher {
    in_flight: Mutex<HashSet<Uuid>>,
    failed: AtomicBool,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Dispatcher {
            in_flight: Mutex::default(),
            // The first pass looks: the last run may have left undispatched tasks.
            failed: AtomicBool::new(true),
        }
    }
}

struct InFlightGuard<'a>(&'a Dispatcher, Uuid);

impl Dispatcher {
    fn enter(&self, id: Uuid) -> Option<InFlightGuard<'_>> {
        let inserted = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        // The lock is released before a guard exists: its drop takes the lock again.
        inserted.then(|| InFlightGuard(self, id))
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut set = self.0.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.1);
    }
}

/// The message for the task's current attempt, from its records as they are now.
pub fn job_for(
    task: &TransformTask,
    media_in: &Media,
    media_out: &Media,
    profile: &TransformProfile,
) -> TransformJob {
    TransformJob {
        task_id: task.id,
        attempt: task.attempt,
        media_in_uri: media_in.uri.clone(),
        media_in_duration: media_in.duration,
        media_out_id: media_out.id,
        filename: media_out.filename.clone(),
        profile_title: profile.title.clone(),
        encoder_name: profile.encoder_name,
        encoder_string: profile.encoder_string.clone(),
    }
}

/// The message for the task's current attempt, with the profile as it is now. The inner
/// `Err` is why the task cannot run at all (its input, output or profile is gone).
async fn transform_job(
    state: &AppState,
    task: &TransformTask,
) -> StoreResult<Result<TransformJob, String>> {
    let Some(media_in) = state.store.get_media(task.media_in_id).await? else {
        return Ok(Err(format!("the input media {} is gone", task.media_in_id)));
    };
    let Some(media_out) = state.store.get_media(task.media_out_id).await? else {
        return Ok(Err(format!(
            "the output media {} is gone",
            task.media_out_id
        )));
    };
    let Some(profile) = state.store.get_profile(task.profile_id).await? else {
        return Ok(Err(format!("the profile {} was deleted", task.profile_id)));
    };
    Ok(Ok(job_for(task, &media_in, &media_out, &profile)))
}

/// Publish a queued task's current attempt and note when the broker confirmed it. Returns the
/// updated task, or None when it was not published (the dispatch loop will try again).
pub async fn dispatch_transform(state: &AppState, id: Uuid) -> Option<TransformTask> {
    dispatch(state, id, None).await
}

/// The same for a task just created, from the records the request has read (no store reads
/// before the publication).
pub async fn dispatch_created(
    state: &AppState,
    task: &TransformTask,
    job: TransformJob,
) -> Option<TransformTask> {
    dispatch(state, task.id, Some((task, job))).await
}

async fn dispatch(
    state: &AppState,
    id: Uuid,
    created: Option<(&TransformTask, TransformJob)>,
) -> Option<TransformTask> {
    guarded(state, id, async move {
        match created {
            Some((task, job)) => publish_job(state, task, &job).await,
            None => publish_queued(state, id).await,
        }
    })
    .await
}

/// Publish a publisher task's current message, if it needs one: the publish job of a queued
/// publication (to its queue), or the unpublish job of a published one being revoked (to
/// its unit's own queue). Returns the task, or None when it was not published.
pub async fn dispatch_publication(state: &AppState, id: Uuid) -> Option<PublisherTask> {
    guarded(state, id, publish_publication(state, id)).await
}

/// Run one publication of task `id` unless one is in flight already; a failed one (or a
/// disconnected broker: no point waiting out a timeout per task) wakes the dispatch loop.
async fn guarded<T>(
    state: &AppState,
    id: Uuid,
    publish: impl Future<Output = Option<T>>,
) -> Option<T> {
    let _in_flight = state.dispatcher.enter(id)?;
    let published = if state.broker.ping().await.is_err() {
        None
    } else {
        publish.await
    };
    if published.is_none() {
        state.dispatcher.failed.store(true, Ordering::Relaxed);
    }
    published
}

async fn publish_publication(state: &AppState, id: Uuid) -> Option<PublisherTask> {
    let task = state.store.get_publisher_task(id).await.ok()??;
    if task.dispatched_at.is_some() {
        return Some(task);
    }
    let (action, queue) = match (&task.unit_id, task.publish_uri.is_some()) {
        _ if task.status.is_queued() => (PublishAction::Publish, task.queue.clone()),
        (Some(unit), true) if task.status == TaskStatus::Revoking => {
            (PublishAction::Unpublish, unit_queue(unit))
        }
        _ => return Some(task),
    };
    let media = match state.store.get_media(task.media_id).await {
        Ok(media) => media,
        Err(e) => {
            tracing::warn!(task = %id, error = %e, "dispatch postponed");
            return None;
        }
    };
    let Some(media) = media else {
        // Deleting a held media is refused, so this is a foreign write: nothing to publish.
        let _guard = state.locks.lock(id).await;
        let mut task = state.store.get_publisher_task(id).await.ok()??;
        if task.status.is_queued() && lifecycle::move_to(&mut task, TaskStatus::Failure).is_ok() {
            task.error = Some(format!("the media {} is gone", task.media_id));
            let _ = state.store.update_publisher_task(&mut task).await;
        }
        return Some(task);
    };
    let job = PublishJob {
        task_id: id,
        attempt: task.attempt,
        action,
        media_id: media.id,
        media_uri: media.uri,
    };
    if !send(state, id, &queue, 0, &job).await {
        return None;
    }
    let _guard = state.locks.lock(id).await;
    let mut current = state.store.get_publisher_task(id).await.ok()??;
    // A unit may have claimed or confirmed it already; note only the message sent for this
    // very state.
    if current.attempt == task.attempt
        && current.status == task.status
        && current.dispatched_at.is_none()
    {
        current.dispatched_at = Some(now());
        if let Err(e) = state.store.update_publisher_task(&mut current).await {
            tracing::warn!(task = %id, error = %e, "could not note the dispatch");
        }
    }
    tracing::debug!(task = %id, attempt = job.attempt, ?action, %queue, "publication dispatched");
    Some(current)
}

/// Publish one message with the broker's confirm; false (logged) when it did not go out.
async fn send<M: serde::Serialize>(
    state: &AppState,
    id: Uuid,
    queue: &str,
    priority: u8,
    message: &M,
) -> bool {
    let payload = match serde_json::to_vec(message) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(task = %id, error = %e, "job does not serialize");
            return false;
        }
    };
    let published = tokio::time::timeout(
        PUBLISH_TIMEOUT,
        state.broker.publish(queue, &payload, priority),
    )
    .await;
    match published {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(task = %id, error = %e, "publish failed; the dispatch loop will retry");
            false
        }
        Err(_) => {
            tracing::warn!(task = %id, "publish timed out; the dispatch loop will retry");
            false
        }
    }
}

async fn publish_queued(state: &AppState, id: Uuid) -> Option<TransformTask> {
    let task = state.store.get_transform_task(id).await.ok()??;
    if !task.status.is_queued() || task.dispatched_at.is_some() {
        // Nothing to publish (claimed, revoked or published meanwhile).
        return Some(task);
    }
    let job = match transform_job(state, &task).await {
        Ok(Ok(job)) => job,
        Ok(Err(reason)) => {
            let _guard = state.locks.lock(id).await;
            let mut task = state.store.get_transform_task(id).await.ok()??;
            if task.status.is_queued() {
                let _ = transforms::fail(state, &mut task, reason).await;
            }
            return Some(task);
        }
        Err(e) => {
            tracing::warn!(task = %id, error = %e, "dispatch postponed");
            return None;
        }
    };
    publish_job(state, &task, &job).await
}

/// Publish the job with the broker's confirm, then note the dispatch on the task unless a
/// unit claimed it (or it moved on) meanwhile.
async fn publish_job(
    state: &AppState,
    task: &TransformTask,
    job: &TransformJob,
) -> Option<TransformTask> {
    let id = task.id;
    if !send(state, id, &task.queue, task.priority, job).await {
        return None;
    }
    let _guard = state.locks.lock(id).await;
    let mut task = state.store.get_transform_task(id).await.ok()??;
    // The unit may have claimed it already; the attempt tells whether this is still it.
    if task.attempt == job.attempt && task.dispatched_at.is_none() {
        task.dispatched_at = Some(now());
        if let Err(e) = state.store.update_transform_task(&mut task).await {
            tracing::warn!(task = %id, error = %e, "could not note the dispatch");
        }
    }
    tracing::debug!(task = %id, attempt = job.attempt, queue = %task.queue, "task dispatched");
    Some(task)
}

/// One pass of the dispatch loop: tasks whose message did not go out (queued tasks, and
/// publications being unpublished).
pub async fn dispatch_pending(state: &AppState) {
    state.dispatcher.failed.store(false, Ordering::Relaxed);
    let mut filter = TaskFilter {
        statuses: TaskStatus::QUEUED.to_vec(),
        undispatched: true,
        ..TaskFilter::default()
    };
    let opts = ListOptions::oldest_first(200);
    match state.store.list_transform_tasks(&filter, &opts).await {
        Ok(page) => {
            for task in page.items {
                dispatch_transform(state, task.id).await;
            }
        }
        Err(e) => tracing::debug!(error = %e, "dispatch loop: store unavailable"),
    }
    filter.statuses.push(TaskStatus::Revoking);
    match state.store.list_publisher_tasks(&filter, &opts).await {
        Ok(page) => {
            for task in page.items {
                dispatch_publication(state, task.id).await;
            }
        }
        Err(e) => tracing::debug!(error = %e, "dispatch loop: store unavailable"),
    }
}

/// One pass of the lease reaper: running tasks whose unit went silent.
pub async fn reap(state: &AppState) {
    let filter = TaskFilter {
        statuses: TaskStatus::RUNNING.to_vec(),
        lease_expired_before: Some(now()),
        ..TaskFilter::default()
    };
    let opts = ListOptions::oldest_first(200);
    let lapsed = async {
        let transforms = state.store.list_transform_tasks(&filter, &opts).await?;
        let publications = state.store.list_publisher_tasks(&filter, &opts).await?;
        StoreResult::Ok((transforms.items, publications.items))
    };
    let (transforms, publications) = match lapsed.await {
        Ok(lapsed) => lapsed,
        Err(e) => {
            tracing::debug!(error = %e, "reaper: store unavailable");
            return;
        }
    };
    for task in transforms {
        if let Err(e) = transforms::take_back(state, task.id).await {
            tracing::warn!(task = %task.id, error = %e, "reaper could not take the task back");
        }
    }
    for task in publications {
        if let Err(e) = publications::take_back(state, task.id).await {
            tracing::warn!(task = %task.id, error = %e, "reaper could not take the task back");
        }
    }
}

/// Run the dispatch loop, the reaper and the sweep of offline units until the process ends. The reaper looks every
/// quarter lease (1 to 5 s): a lapsed lease is noticed within that much.
pub fn spawn_loops(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reap_every = Duration::from_secs((state.config.task_lease_secs / 4).clamp(1, 5));
        let unit_sweep = UNIT_SWEEP.min(Duration::from_secs(state.config.unit_forget_secs.max(1)));
        let (mut last_sweep, mut last_reap) = (Instant::now(), Instant::now());
        let mut last_unit_sweep = Instant::now();
        loop {
            tick.tick().await;
            if state.dispatcher.failed.load(Ordering::Relaxed) || last_sweep.elapsed() >= SWEEP {
                last_sweep = Instant::now();
                dispatch_pending(&state).await;
            }
            if last_reap.elapsed() >= reap_every {
                last_reap = Instant::now();
                reap(&state).await;
            }
            if last_unit_sweep.elapsed() >= unit_sweep {
                last_unit_sweep = Instant::now();
                units::forget_offline(&state).await;
            }
        }
    })
}

/// At start: with in-process queues nothing queued survived the last run, so every queued
/// task is dispatched again; tasks the last run's in-process unit held are taken back now
/// rather than when their lease lapses.
pub async fn recover(state: &AppState, local_units: &[&str]) {
    let filter = TaskFilter {
        statuses: TaskStatus::ACTIVE.to_vec(),
        ..TaskFilter::default()
    };
    let opts = ListOptions::oldest_first(10_000);
    let found = async {
        let transforms = state.store.list_transform_tasks(&filter, &opts).await?;
        let publications = state.store.list_publisher_tasks(&filter, &opts).await?;
        StoreResult::Ok((transforms.items, publications.items))
    };
    let (transforms, publications) = match found.await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "could not recover tasks at start");
            return;
        }
    };
    let lost = !state.broker.durable();
    let local = |unit: Option<&str>| unit.is_some_and(|u| local_units.contains(&u));
    for mut task in transforms {
        if task.status.is_queued() && lost {
            task.dispatched_at = None;
        } else if task.status.is_running() && local(task.unit_id.as_deref()) {
            task.lease_expires_at = Some(now());
        } else {
            continue;
        }
        if let Err(e) = state.store.update_transform_task(&mut task).await {
            tracing::warn!(task = %task.id, error = %e, "could not recover task");
        }
    }
    for mut task in publications {
        // An unpublish job waits for its unit like a queued task waits for any.
        let unpublishing = task.status == TaskStatus::Revoking && task.publish_uri.is_some();
        if (task.status.is_queued() || unpublishing) && lost {
            task.dispatched_at = None;
        } else if task.status.is_running() && !unpublishing && local(task.unit_id.as_deref()) {
            task.lease_expires_at = Some(now());
        } else {
            continue;
        }
        if let Err(e) = state.store.update_publisher_task(&mut task).await {
            tracing::warn!(task = %task.id, error = %e, "could not recover task");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_published_by_one_caller_at_a_time() {
        let in_flight = Dispatcher::default();
        let id = Uuid::new_v4();
        let first = in_flight.enter(id);
        assert!(first.is_some());
        // A second caller is turned away (and must not deadlock doing so).
        assert!(in_flight.enter(id).is_none());
        assert!(in_flight.enter(Uuid::new_v4()).is_some());
        drop(first);
        assert!(in_flight.enter(id).is_some());
    }
}
