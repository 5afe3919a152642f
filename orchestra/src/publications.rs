//! Publisher tasks: publishing a media on a publisher unit, unpublishing it, and what the node
//! API does with a publisher's claim, lease reports and completion (docs/architecture.md §3–5, §7).
//! Status changes go through [`crate::lifecycle`]; each read-check-write holds the task's
//! lock, and creation holds the media's lock so one media is never published twice.
//!
//! A publication lives on one unit: unpublishing a SUCCESS goes to that unit's own queue and
//! the task stays REVOKING until the unit confirms, however long it is away; the message
//! waits in the unit's durable queue, and the orchestra sends it again when the unit's
//! heartbeats resume after an absence.

use oscied_protocol::TaskStatus;
use oscied_protocol::node::{
    ClaimAnswer, ClaimRequest, CompleteAnswer, CompleteRequest, HeldPublication, HeldPublications,
    ProgressAnswer, ProgressRequest, ReleaseAnswer, ReleaseRequest, UnitKind,
};
use oscied_protocol::queue::PUBLISHER_QUEUE;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::lifecycle::{self, Lifecycle, check_holder, lease, move_to, out_of_attempts, stale};
use crate::models::{ListOptions, MediaStatus, PublisherTask, TaskFilter, TaskHeader, now};
use crate::state::AppState;
use crate::task_records::{self, save};
use crate::{dispatch, units};

/// `POST /publisher/tasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPublisherTask {
    /// A READY media of the caller's.
    pub media_id: Uuid,
    /// `publisher` unless named (1–64 of `[A-Za-z0-9_.-]`): a publisher queue (`publisher`,
    /// `publisher-…`) or a named one that no transform unit consumes.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.-]+$")]
    pub queue: Option<String>,
}

/// The statuses of a publication that holds its media: queued, publishing, published, or
/// being unpublished.
const HOLDING: [TaskStatus; 6] = [
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

/// Create a PENDING publication of a READY media and queue it.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    new: NewPublisherTask,
) -> ApiResult<PublisherTask> {
    let user = caller.require_user()?;
    let queue = new.queue.unwrap_or_else(|| PUBLISHER_QUEUE.to_owned());
    units::check_task_queue(state, UnitKind::Publisher, &queue)
        .await
        .map_err(|e| e.on("queue"))?;
    let task = {
        // Two requests for one media: the second sees the first's task.
        let _media_guard = state.media_locks.lock(new.media_id).await;
        let media = state
            .store
            .get_media(new.media_id)
            .await?
            .filter(|m| caller.can_see(Some(m.user_id)))
            .ok_or_else(|| ApiError::not_found("media", new.media_id).on("media_id"))?;
        if media.status != MediaStatus::Ready {
            return Err(ApiError::illegal_state(format!(
                "media {} is {}: only a READY media can be published",
                media.id,
                media.status.as_str()
            ))
            .on("media_id"));
        }
        if let Some(holder) = holding(state, media.id).await?.first() {
            let what = if holder.status == TaskStatus::Success {
                "already published"
            } else {
                "being published or unpublished"
            };
            return Err(ApiError::illegal_state(format!(
                "media {} is {what} by publisher task {} ({})",
                media.id, holder.id, holder.status
            )));
        }
        let task = PublisherTask {
            header: TaskHeader::new(user.id, queue),
            media_id: media.id,
            publish_uri: None,
        };
        state.store.create_publisher_task(&task).await?;
        task
    };
    tracing::info!(task = %task.id, media = %task.media_id, queue = %task.queue, "publisher task created");
    Ok(dispatch::dispatch_publication(state, task.id)
        .await
        .unwrap_or(task))
}

/// Find a task the caller may see (others' answer 404).
pub async fn find(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<PublisherTask> {
    task_records::find(state, caller, id).await
}

async fn load(state: &AppState, id: Uuid) -> ApiResult<PublisherTask> {
    task_records::load(state, id).await
}

/// Unpublish (`DELETE`): a queued publication is REVOKED at once; a running one goes
/// REVOKING and its unit stops at its next report; a published one goes REVOKING and its unit
/// is sent an unpublish job. Asking again while REVOKING re-sends that job.
pub async fn unpublish(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<PublisherTask> {
    let task = {
        let _guard = state.locks.lock(id).await;
        let mut task = find(state, caller, id).await?;
        match task.status {
            TaskStatus::Pending | TaskStatus::Retry => {
                move_to(&mut task, TaskStatus::Revoked)?;
                save(state, &mut task).await?;
                tracing::info!(task = %id, "publisher task revoked before it started");
                return Ok(task);
            }
            TaskStatus::Started | TaskStatus::Progress => {
                move_to(&mut task, TaskStatus::Revoking)?;
                save(state, &mut task).await?;
                tracing::info!(task = %id, unit = task.unit_id.as_deref(), "publication cancelled");
                return Ok(task);
            }
            TaskStatus::Success => {
                move_to(&mut task, TaskStatus::Revoking)?;
                task.dispatched_at = None;
                save(state, &mut task).await?;
                tracing::info!(task = %id, unit = task.unit_id.as_deref(), "unpublishing");
                task
            }
            TaskStatus::Revoking => {
                if task.publish_uri.is_some() {
                    // Asked again: the unit may have lost the first message.
                    task.dispatched_at = None;
                    save(state, &mut task).await?;
                }
                task
            }
            TaskStatus::Failure | TaskStatus::Revoked => {
                return Err(ApiError::illegal_state(format!(
                    "publisher task {id} is already {}: there is nothing to unpublish",
                    task.status
                )));
            }
        }
    };
    if task.publish_uri.is_none() {
        // Cancelled while publishing: the unit learns it from its lease reports.
        return Ok(task);
    }
    // The answer is the REVOKING just recorded (202), even when a quick unit has confirmed
    // by now: a script gets the same answer every time, and polls for REVOKED.
    dispatch::dispatch_publication(state, id).await;
    Ok(task)
}

/// A publisher claims an attempt it received.
pub async fn claim(state: &AppState, id: Uuid, req: ClaimRequest) -> ApiResult<ClaimAnswer> {
    task_records::claim(state, id, req, |_: &mut PublisherTask| {}).await
}

/// A lease report while publishing (a copy can take a while); the answer tells a cancelled
/// publication's unit to stop.
pub async fn progress(
    state: &AppState,
    id: Uuid,
    req: ProgressRequest,
) -> ApiResult<ProgressAnswer> {
    let _guard = state.locks.lock(id).await;
    let mut task = load(state, id).await?;
    check_holder(&task, &req.unit_id, req.attempt)?;
    if !task.status.is_running() || task.publish_uri.is_some() {
        return Err(stale(format!(
            "publisher task {id} is {}: stop",
            task.status
        )));
    }
    task.renew(now() + lease(state));
    if req.progress.is_some() && task.status == TaskStatus::Started {
        move_to(&mut task, TaskStatus::Progress)?;
    }
    save(state, &mut task).await?;
    Ok(ProgressAnswer {
        cancel: task.status == TaskStatus::Revoking,
    })
}

/// A publisher's completion, fenced by attempt and unit: SUCCESS with the checked
/// `publish_uri`, FAILURE, or REVOKED (a cancelled publication cleaned up, or an unpublish
/// done). Repeats answer the same.
pub async fn complete(
    state: &AppState,
    id: Uuid,
    req: CompleteRequest,
) -> ApiResult<CompleteAnswer> {
    let resend = {
        let _guard = state.locks.lock(id).await;
        let mut task = load(state, id).await?;
        check_holder(&task, &req.unit_id, req.attempt)?;
        let answer = |task: &PublisherTask| CompleteAnswer {
            status: task.status,
        };
        if task.status.is_final() && task.status != TaskStatus::Success {
            return Ok(answer(&task));
        }
        match (task.status, req.status) {
            // A repeated SUCCESS.
            (TaskStatus::Success, TaskStatus::Success) => return Ok(answer(&task)),
            (TaskStatus::Started | TaskStatus::Progress, TaskStatus::Success) => {
                let uri = published_uri(&req)?;
                move_to(&mut task, TaskStatus::Success)?;
                task.publish_uri = Some(uri.clone());
                task.error = None;
                save(state, &mut task).await?;
                set_public_uri(state, &task, Some(uri)).await?;
                tracing::info!(task = %id, unit = %req.unit_id, uri = task.publish_uri.as_deref(), "media published");
                return Ok(answer(&task));
            }
            (TaskStatus::Started | TaskStatus::Progress, TaskStatus::Failure) => {
                move_to(&mut task, TaskStatus::Failure)?;
                task.error = Some(
                    req.error
                        .unwrap_or_else(|| "the unit reported a failure".into()),
                );
                save(state, &mut task).await?;
                tracing::warn!(task = %id, error = task.error.as_deref(), "publication failed");
                return Ok(answer(&task));
            }
            (TaskStatus::Revoking, TaskStatus::Revoked) => {
                move_to(&mut task, TaskStatus::Revoked)?;
                save(state, &mut task).await?;
                set_public_uri(state, &task, None).await?;
                tracing::info!(task = %id, unit = %req.unit_id, "media unpublished");
                return Ok(answer(&task));
            }
            // Cancelled while the unit finished: the files are out, so take them back in.
            (TaskStatus::Revoking, TaskStatus::Success) if task.publish_uri.is_none() => {
                task.publish_uri = Some(published_uri(&req)?);
                // Nothing runs any more: no lease to watch, an unpublish job to send.
                task.lease_expires_at = None;
                task.dispatched_at = None;
                save(state, &mut task).await?;
                task
            }
            (TaskStatus::Revoking, _) => return Ok(answer(&task)),
            (from, asked) => {
                return Err(ApiError::invalid(format!(
                    "a publisher task that is {from} cannot be completed as {asked}"
                )));
            }
        }
    };
    let status = dispatch::dispatch_publication(state, resend.id)
        .await
        .map_or(resend.status, |t| t.status);
    Ok(CompleteAnswer { status })
}

fn published_uri(req: &CompleteRequest) -> ApiResult<String> {
    match req.publish_uri.as_deref() {
        Some(uri) if uri.starts_with("http://") || uri.starts_with("https://") => {
            Ok(uri.to_owned())
        }
        _ => Err(ApiError::invalid(
            "a publication's SUCCESS carries its http(s) publish_uri",
        )),
    }
}

/// Keep `media.public_uris` in step with the publication: its URL while published, nothing
/// once unpublished.
async fn set_public_uri(
    state: &AppState,
    task: &PublisherTask,
    uri: Option<String>,
) -> ApiResult<()> {
    let _media_guard = state.media_locks.lock(task.media_id).await;
    let Some(mut media) = state.store.get_media(task.media_id).await? else {
        return Ok(());
    };
    let key = task.id.to_string();
    let changed = match uri {
        Some(uri) => media.public_uris.insert(key, uri.clone()) != Some(uri),
        None => media.public_uris.remove(&key).is_some(),
    };
    if changed {
        media.updated_at = now();
        state.store.update_media(&mut media).await?;
    }
    Ok(())
}

/// The reaper's decision for a publication whose lease lapsed: re-queue with attempt + 1, or
/// FAILURE past the last attempt; a cancelled one is REVOKED (its unit is gone, and it
/// published nothing it reported).
pub async fn take_back(state: &AppState, id: Uuid) -> ApiResult<()> {
    {
        let _guard = state.locks.lock(id).await;
        let mut task = load(state, id).await?;
        let expired = task.lease_expires_at.is_some_and(|t| t <= now());
        if !task.status.is_running() || !expired || task.publish_uri.is_some() {
            return Ok(());
        }
        let unit = task.unit_id.clone().unwrap_or_default();
        if task.status == TaskStatus::Revoking {
            move_to(&mut task, TaskStatus::Revoked)?;
            save(state, &mut task).await?;
            tracing::warn!(task = %id, %unit, "publisher went silent while cancelling: REVOKED");
            return Ok(());
        }
        if out_of_attempts(&task, state.config.task_max_attempts) {
            move_to(&mut task, TaskStatus::Failure)?;
            task.error = Some(format!(
                "publisher unit {unit} went silent (no report for {} s) on attempt {} of {}: giving up",
                state.config.task_lease_secs,
                task.attempt - task.handed_back,
                state.config.task_max_attempts
            ));
            save(state, &mut task).await?;
            return Ok(());
        }
        move_to(&mut task, TaskStatus::Retry)?;
        task.error = Some(format!(
            "publisher unit {unit} went silent on attempt {}; retrying",
            task.attempt
        ));
        task.attempt += 1;
        task.lease_expires_at = None;
        task.dispatched_at = None;
        save(state, &mut task).await?;
        tracing::warn!(task = %id, %unit, attempt = task.attempt, "lease lost: publication re-queued");
    }
    dispatch::dispatch_publication(state, id).await;
    Ok(())
}

/// A stopping publisher hands back the publication it was making ([`lifecycle::release`]):
/// queued again at once with attempt + 1, or REVOKED if it was being cancelled. A published
/// one (or one being unpublished) is not handed back: its files stay with its unit, which
/// serves them again once it restarts.
pub async fn release(state: &AppState, id: Uuid, req: ReleaseRequest) -> ApiResult<ReleaseAnswer> {
    let answer = {
        let _guard = state.locks.lock(id).await;
        let mut task = load(state, id).await?;
        if task.publish_uri.is_some() {
            check_holder(&task, &req.unit_id, req.attempt)?;
            return Err(stale(format!(
                "publisher task {id} is {} with its files on unit {}: a publication is not \
                 handed back",
                task.status, req.unit_id
            )));
        }
        let status = lifecycle::release(&mut task, &req)?;
        save(state, &mut task).await?;
        tracing::info!(task = %id, unit = %req.unit_id, %status, attempt = task.attempt,
            "publication handed back by its stopping unit");
        ReleaseAnswer {
            status,
            attempt: task.attempt,
        }
    };
    if answer.status == TaskStatus::Retry {
        dispatch::dispatch_publication(state, id).await;
    }
    Ok(answer)
}

/// Its unit was forgotten: a publication it held (published, or being unpublished) is
/// REVOKED, since its files went with the unit (true); one it was publishing is taken back
/// like a lapsed lease (false).
pub async fn forget_holder(state: &AppState, id: Uuid) -> ApiResult<bool> {
    {
        let _guard = state.locks.lock(id).await;
        let mut task = load(state, id).await?;
        let unit = task.unit_id.clone().unwrap_or_default();
        if task.publish_uri.is_some() && task.status != TaskStatus::Revoked {
            if task.status == TaskStatus::Success {
                move_to(&mut task, TaskStatus::Revoking)?;
            }
            move_to(&mut task, TaskStatus::Revoked)?;
            task.error = Some(format!(
                "unit {unit} was forgotten by an admin; the publication went with it"
            ));
            save(state, &mut task).await?;
            set_public_uri(state, &task, None).await?;
            return Ok(true);
        }
    }
    if task_records::expire_lease::<PublisherTask>(state, id).await? {
        take_back(state, id).await?;
    }
    Ok(false)
}

/// The publications this unit holds: publishing, published, or being unpublished by it.
pub async fn held(state: &AppState, unit_id: &str) -> ApiResult<HeldPublications> {
    let filter = TaskFilter {
        statuses: TaskStatus::RUNNING
            .iter()
            .copied()
            .chain([TaskStatus::Success])
            .collect(),
        unit_id: Some(unit_id.to_owned()),
        ..TaskFilter::default()
    };
    let publications: Vec<HeldPublication> = state
        .store
        .list_publisher_tasks(&filter, &ListOptions::oldest_first(100_000))
        .await?
        .items
        .into_iter()
        .map(|t| HeldPublication {
            media_id: t.media_id,
            task_id: t.id,
            attempt: t.attempt,
            status: t.status,
        })
        .collect();
    let mut media_ids: Vec<Uuid> = publications.iter().map(|p| p.media_id).collect();
    media_ids.sort();
    media_ids.dedup();
    Ok(HeldPublications {
        media_ids,
        publications,
    })
}

/// A publisher unit's heartbeats resumed after an absence: send it again the unpublish jobs
/// it has not confirmed (it may have lost them with its broker connection or queue).
pub async fn resend_unpublish(state: &AppState, unit_id: &str) {
    let filter = TaskFilter {
        statuses: vec![TaskStatus::Revoking],
        unit_id: Some(unit_id.to_owned()),
        ..TaskFilter::default()
    };
    let tasks = match state
        .store
        .list_publisher_tasks(&filter, &ListOptions::oldest_first(1000))
        .await
    {
        Ok(page) => page.items,
        Err(e) => {
            tracing::warn!(unit = %unit_id, error = %e, "could not list its pending unpublications");
            return;
        }
    };
    for task in tasks.into_iter().filter(|t| t.publish_uri.is_some()) {
        {
            let _guard = state.locks.lock(task.id).await;
            let Ok(mut current) = load(state, task.id).await else {
                continue;
            };
            if current.status != TaskStatus::Revoking {
                continue;
            }
            current.dispatched_at = None;
            if save(state, &mut current).await.is_err() {
                continue;
            }
        }
        tracing::info!(task = %task.id, unit = %unit_id, "unit is back: unpublish sent again");
        dispatch::dispatch_publication(state, task.id).await;
    }
}
