//! Transform tasks: creation, revocation, and what the node API does with a unit's claim,
//! progress and completion (docs/architecture.md §4–5). Status changes go through [`crate::lifecycle`];
//! each read-check-write holds the task's lock.

use oscied_protocol::TaskStatus;
use oscied_protocol::broker::MAX_PRIORITY;
use oscied_protocol::filename::check_output_filename;
use oscied_protocol::job::tmp_dir;
use oscied_protocol::node::{
    ClaimAnswer, ClaimRequest, CompleteAnswer, CompleteRequest, ProgressAnswer, ProgressRequest,
    ReleaseAnswer, ReleaseRequest, UnitKind,
};
use oscied_protocol::queue::TRANSFORM_QUEUE;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::lifecycle::{self, Lifecycle, check_holder, lease, move_to, out_of_attempts, stale};
use crate::medias::{Metadata, check_metadata};
use crate::models::{Media, MediaStatus, Progress, TaskHeader, TransformTask, now};
use crate::state::AppState;
use crate::storage::Storage;
use crate::task_records::{self, save};
use crate::{dispatch, units};

/// `POST /transform/tasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransformTask {
    /// A READY media of the caller's.
    pub media_in_id: Uuid,
    pub profile_id: Uuid,
    /// The output's file name; its extension picks the container (`.m3u8`/`.mpd` make an
    /// HLS/DASH package). Letters, digits, spaces, `.`, `_` and `-` only, starting with a
    /// letter or digit, at most 255 bytes; for ffmpeg profiles a known container extension.
    #[schema(min_length = 1, max_length = 255)]
    pub filename: String,
    /// The output media's metadata; `title` is required.
    #[schema(schema_with = crate::medias::metadata_schema)]
    pub metadata: Metadata,
    /// Default `transform`; a transform queue (`transform`, `transform-…`) or a named one
    /// that no publisher unit consumes.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.-]+$")]
    pub queue: Option<String>,
    /// 0 (default) to 9; higher runs first.
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<u8>,
}

/// Create the PENDING output media and the task, then queue it (or leave it to the dispatch
/// loop when the broker is down: the task is stored first, so nothing is lost).
pub async fn create(
    state: &AppState,
    caller: &Caller,
    new: NewTransformTask,
) -> ApiResult<TransformTask> {
    let user = caller.require_user()?;
    check_metadata(&new.metadata)?;
    let queue = new.queue.unwrap_or_else(|| TRANSFORM_QUEUE.to_owned());
    units::check_task_queue(state, UnitKind::Transform, &queue)
        .await
        .map_err(|e| e.on("queue"))?;
    let priority = new.priority.unwrap_or(0);
    if priority > MAX_PRIORITY {
        return Err(ApiError::invalid_field(
            "priority",
            format!("priority must be 0 to {MAX_PRIORITY}"),
        ));
    }
    let media_in = state
        .store
        .get_media(new.media_in_id)
        .await?
        .filter(|m| caller.can_see(Some(m.user_id)))
        .ok_or_else(|| ApiError::not_found("media", new.media_in_id).on("media_in_id"))?;
    if media_in.status != MediaStatus::Ready {
        return Err(ApiError::illegal_state(format!(
            "media {} is {}: only a READY media can be transformed",
            media_in.id,
            media_in.status.as_str()
        ))
        .on("media_in_id"));
    }
    let profile = state
        .store
        .get_profile(new.profile_id)
        .await?
        .ok_or_else(|| ApiError::not_found("profile", new.profile_id).on("profile_id"))?;
    // The unit checks the same rule again before it runs anything.
    check_output_filename(&new.filename, profile.encoder_name)
        .map_err(|e| ApiError::invalid_field("filename", e))?;

    let at = now();
    let media_out_id = Uuid::new_v4();
    let media_out = Media {
        id: media_out_id,
        user_id: user.id,
        parent_id: Some(media_in.id),
        uri: Storage::media_uri(media_out_id, &new.filename),
        filename: new.filename,
        public_uris: Default::default(),
        metadata: new.metadata,
        status: MediaStatus::Pending,
        size: 0,
        duration: None,
        probe: None,
        created_at: at,
        updated_at: at,
        revision: 0,
    };
    let task = TransformTask {
        header: TaskHeader::new(user.id, queue),
        media_in_id: media_in.id,
        media_out_id,
        profile_id: profile.id,
        priority,
        progress: None,
    };
    state.store.create_media(&media_out).await?;
    if let Err(e) = state.store.create_transform_task(&task).await {
        let mut orphan = media_out;
        orphan.status = MediaStatus::Deleted;
        let _ = state.store.update_media(&mut orphan).await;
        return Err(e.into());
    }
    tracing::info!(task = %task.id, media_in = %task.media_in_id, media_out = %media_out_id,
        profile = %profile.title, queue = %task.queue, "transform task created");
    let job = dispatch::job_for(&task, &media_in, &media_out, &profile);
    Ok(dispatch::dispatch_created(state, &task, job)
        .await
        .unwrap_or(task))
}

/// Find a task the caller may see (others' answer 404).
pub async fn find(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<TransformTask> {
    task_records::find(state, caller, id).await
}

async fn load(state: &AppState, id: Uuid) -> ApiResult<TransformTask> {
    task_records::load(state, id).await
}

/// Revoke: a queued task is REVOKED at once; a running one goes REVOKING and its unit is told
/// to stop at its next report. Returns the task and whether it is final already.
pub async fn revoke(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<TransformTask> {
    let _guard = state.locks.lock(id).await;
    let mut task = find(state, caller, id).await?;
    match task.status {
        TaskStatus::Pending | TaskStatus::Retry => {
            move_to(&mut task, TaskStatus::Revoked)?;
            save(state, &mut task).await?;
            discard_output(state, &task).await;
            tracing::info!(task = %id, "transform task revoked before it started");
        }
        TaskStatus::Started | TaskStatus::Progress => {
            move_to(&mut task, TaskStatus::Revoking)?;
            save(state, &mut task).await?;
            tracing::info!(task = %id, unit = task.unit_id.as_deref(), "transform task revoking");
        }
        // Asked twice: the unit has been told already.
        TaskStatus::Revoking => {}
        TaskStatus::Success | TaskStatus::Failure | TaskStatus::Revoked => {
            return Err(ApiError::illegal_state(format!(
                "transform task {id} is already {}: only a queued or running task can be revoked",
                task.status
            )));
        }
    }
    Ok(task)
}

/// The output media of a task that will not succeed: DELETED, with every file gone.
async fn discard_output(state: &AppState, task: &TransformTask) {
    if let Err(e) = state.storage.remove_task_tmp(task.id).await {
        tracing::warn!(task = %task.id, error = %e, "could not remove the task's tmp dir");
    }
    if let Err(e) = state.storage.remove_media(task.media_out_id).await {
        tracing::warn!(media = %task.media_out_id, error = %e, "could not remove the output's files");
    }
    let _media_guard = state.media_locks.lock(task.media_out_id).await;
    match state.store.get_media(task.media_out_id).await {
        Ok(Some(mut media)) if media.status != MediaStatus::Deleted => {
            media.status = MediaStatus::Deleted;
            media.size = 0;
            media.updated_at = now();
            if let Err(e) = state.store.update_media(&mut media).await {
                tracing::warn!(media = %media.id, error = %e, "could not mark the output DELETED");
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(media = %task.media_out_id, error = %e, "could not load the output")
        }
    }
}

/// A unit claims an attempt it received (see [`lifecycle::claim`]).
pub async fn claim(state: &AppState, id: Uuid, req: ClaimRequest) -> ApiResult<ClaimAnswer> {
    task_records::claim(state, id, req, |task: &mut TransformTask| {
        task.progress = None
    })
    .await
}

/// Progress (or a bare heartbeat) renews the lease; the answer tells a revoked task's unit to
/// stop.
pub async fn progress(
    state: &AppState,
    id: Uuid,
    req: ProgressRequest,
) -> ApiResult<ProgressAnswer> {
    let _guard = state.locks.lock(id).await;
    let mut task = load(state, id).await?;
    check_holder(&task, &req.unit_id, req.attempt)?;
    if !task.status.is_running() {
        return Err(stale(format!("task {id} is {}: stop", task.status)));
    }
    task.renew(now() + lease(state));
    if let Some(report) = req.progress {
        if task.status == TaskStatus::Started {
            move_to(&mut task, TaskStatus::Progress)?;
        }
        task.progress = Some(Progress {
            report,
            updated_at: now(),
        });
    }
    save(state, &mut task).await?;
    Ok(ProgressAnswer {
        cancel: task.status == TaskStatus::Revoking,
    })
}

/// A unit's completion, fenced by attempt. Repeating an accepted completion answers the same.
pub async fn complete(
    state: &AppState,
    id: Uuid,
    req: CompleteRequest,
) -> ApiResult<CompleteAnswer> {
    let _guard = state.locks.lock(id).await;
    let mut task = load(state, id).await?;
    check_holder(&task, &req.unit_id, req.attempt)?;
    if task.status.is_final() {
        return Ok(CompleteAnswer {
            status: task.status,
        });
    }
    if !task.status.is_running() {
        return Err(stale(format!("task {id} is {}", task.status)));
    }
    if task.status == TaskStatus::Revoking {
        // Whatever the unit did, the user asked to stop: its output is discarded.
        move_to(&mut task, TaskStatus::Revoked)?;
        save(state, &mut task).await?;
        discard_output(state, &task).await;
        tracing::info!(task = %id, "transform task revoked");
        return Ok(CompleteAnswer {
            status: task.status,
        });
    }
    match req.status {
        TaskStatus::Success => accept_output(state, &mut task, &req).await?,
        TaskStatus::Failure => {
            fail(
                state,
                &mut task,
                req.error
                    .unwrap_or_else(|| "the unit reported a failure".into()),
            )
            .await?
        }
        other => {
            return Err(ApiError::invalid(format!(
                "a unit completes with SUCCESS, FAILURE or REVOKED (after a cancel), not {other}"
            )));
        }
    }
    Ok(CompleteAnswer {
        status: task.status,
    })
}

/// End a task in FAILURE, its output DELETED.
pub async fn fail(state: &AppState, task: &mut TransformTask, error: String) -> ApiResult<()> {
    move_to(task, TaskStatus::Failure)?;
    tracing::warn!(task = %task.id, attempt = task.attempt, %error, "transform task failed");
    task.error = Some(error);
    save(state, task).await?;
    discard_output(state, task).await;
    Ok(())
}

/// SUCCESS: move `tmp/<task>/<attempt>/` into `medias/<out>/`, the output READY with its
/// probe. An output that is missing ends the task in FAILURE instead.
async fn accept_output(
    state: &AppState,
    task: &mut TransformTask,
    req: &CompleteRequest,
) -> ApiResult<()> {
    let Some(output) = req.output.clone() else {
        return Err(ApiError::invalid("a SUCCESS completion carries its output"));
    };
    let media_guard = state.media_locks.lock(task.media_out_id).await;
    let mut media = state
        .store
        .get_media(task.media_out_id)
        .await?
        .ok_or_else(|| ApiError::not_found("media", task.media_out_id))?;
    let from = state.storage.path_of(&tmp_dir(task.id, task.attempt));
    let size = match state.storage.adopt_dir(&from, media.id).await {
        Ok(size) => size,
        Err(e) => {
            return fail(
                state,
                task,
                format!("the orchestra could not take the output from the unit's tmp dir: {e}"),
            )
            .await;
        }
    };
    if !state.storage.path_of(&media.uri).is_file() {
        return fail(
            state,
            task,
            format!(
                "the unit reported success but wrote no {:?}",
                media.filename
            ),
        )
        .await;
    }
    media.status = MediaStatus::Ready;
    media.size = size.max(output.size);
    media.duration = output.probe.duration();
    media.probe = Some(output.probe);
    media.updated_at = now();
    state.store.update_media(&mut media).await?;
    drop(media_guard);
    // Before the task says SUCCESS, so that its output shows with its picture.
    crate::thumbnails::make_for_ready(state, &media).await;
    move_to(task, TaskStatus::Success)?;
    // Done is 100 %, whether or not the unit reported along the way.
    let mut report = task.progress.take().map(|p| p.report).unwrap_or_default();
    report.percent = 100.0;
    report.eta = Some(0.0);
    if let (Some(started), Some(finished)) = (task.started_at, task.finished_at) {
        report.elapsed = (finished - started).num_milliseconds() as f64 / 1000.0;
    }
    task.progress = Some(Progress {
        report,
        updated_at: now(),
    });
    task.error = None;
    save(state, task).await?;
    if let Err(e) = state.storage.remove_task_tmp(task.id).await {
        tracing::warn!(task = %task.id, error = %e, "could not remove the task's tmp dir");
    }
    tracing::info!(task = %task.id, media = %media.id, size, "transform task succeeded");
    Ok(())
}

/// A stopping unit hands back the attempt it runs ([`lifecycle::release`]): the task is
/// queued again at once with attempt + 1, or REVOKED (its output discarded) if it was being
/// revoked.
pub async fn release(state: &AppState, id: Uuid, req: ReleaseRequest) -> ApiResult<ReleaseAnswer> {
    let answer = {
        let _guard = state.locks.lock(id).await;
        let mut task = load(state, id).await?;
        let status = lifecycle::release(&mut task, &req)?;
        task.progress = None;
        save(state, &mut task).await?;
        if status == TaskStatus::Revoked {
            discard_output(state, &task).await;
            tracing::info!(task = %id, unit = %req.unit_id, "handed back while revoking: REVOKED");
        } else {
            tracing::info!(task = %id, unit = %req.unit_id, attempt = task.attempt,
                "handed back by its stopping unit: task re-queued");
        }
        ReleaseAnswer {
            status,
            attempt: task.attempt,
        }
    };
    if answer.status == TaskStatus::Retry {
        // Outside the lock: publishing takes it to note the dispatch.
        dispatch::dispatch_transform(state, id).await;
    }
    Ok(answer)
}

/// Take a running task back now, as if its lease had lapsed (its unit was forgotten).
pub async fn take_back_now(state: &AppState, id: Uuid) -> ApiResult<()> {
    if task_records::expire_lease::<TransformTask>(state, id).await? {
        take_back(state, id).await?;
    }
    Ok(())
}

/// The reaper's decision for a running task whose lease lapsed: re-queue with attempt + 1,
/// or FAILURE past the last attempt; a REVOKING one is simply REVOKED.
pub async fn take_back(state: &AppState, id: Uuid) -> ApiResult<()> {
    {
        let _guard = state.locks.lock(id).await;
        let mut task = load(state, id).await?;
        let expired = task.lease_expires_at.is_some_and(|t| t <= now());
        if !task.status.is_running() || !expired {
            return Ok(());
        }
        let unit = task.unit_id.clone().unwrap_or_default();
        if task.status == TaskStatus::Revoking {
            move_to(&mut task, TaskStatus::Revoked)?;
            save(state, &mut task).await?;
            discard_output(state, &task).await;
            tracing::warn!(task = %id, %unit, "unit went silent while revoking: task REVOKED");
            return Ok(());
        }
        if out_of_attempts(&task, state.config.task_max_attempts) {
            let error = format!(
                "unit {unit} went silent (no report for {} s) on attempt {} of {}: giving up",
                state.config.task_lease_secs,
                task.attempt - task.handed_back,
                state.config.task_max_attempts
            );
            return fail(state, &mut task, error).await;
        }
        move_to(&mut task, TaskStatus::Retry)?;
        task.error = Some(format!(
            "unit {unit} went silent on attempt {}; retrying",
            task.attempt
        ));
        task.attempt += 1;
        task.lease_expires_at = None;
        task.dispatched_at = None;
        task.progress = None;
        save(state, &mut task).await?;
        tracing::warn!(task = %id, %unit, attempt = task.attempt, "lease lost: task re-queued");
    }
    // Outside the lock: publishing takes it to note the dispatch.
    dispatch::dispatch_transform(state, id).await;
    Ok(())
}
