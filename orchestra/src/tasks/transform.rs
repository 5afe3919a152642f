//! Transform tasks: what is theirs in the engine (docs/architecture.md §4–5). A task makes
//! one output media, PENDING until its unit's completion is taken in (READY) or the task
//! ends otherwise (DELETED, with its files). The life itself is [`crate::tasks`]'.

use async_trait::async_trait;
use oscied_protocol::ProgressReport;
use oscied_protocol::broker::MAX_PRIORITY;
use oscied_protocol::filename::check_output_filename;
use oscied_protocol::job::tmp_dir;
use oscied_protocol::node::{CompleteRequest, UnitKind};
use oscied_protocol::queue::TRANSFORM_QUEUE;
use oscied_protocol::{TaskStatus, TransformJob};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::TaskKind;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::lifecycle::{move_to, stale};
use crate::medias::{self, Metadata, check_metadata};
use crate::models::{
    ListOptions, Media, MediaStatus, Page, Progress, TaskFilter, TaskHeader, TransformProfile,
    TransformTask, now,
};
use crate::outbox::Outgoing;
use crate::state::AppState;
use crate::storage::Storage;
use crate::store::{Store, StoreResult};
use crate::{queues, tasks, webhooks};

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
    /// Where this task's events (created, status, finished) are POSTed, signed: `http(s)://`,
    /// not a loopback, link-local or private address unless the operator allows it.
    #[schema(max_length = 2048)]
    pub callback_url: Option<String>,
    /// The callback's signing secret (16 to 256 visible ASCII characters); absent: one is
    /// generated and answered once, as the created task's `callback_secret`.
    #[schema(min_length = 16, max_length = 256)]
    pub callback_secret: Option<String>,
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
    queues::check_task_queue(state, UnitKind::Transform, &queue)
        .await
        .map_err(|e| e.on("queue"))?;
    let priority = new.priority.unwrap_or(0);
    if priority > MAX_PRIORITY {
        return Err(ApiError::invalid_field(
            "priority",
            format!("priority must be 0 to {MAX_PRIORITY}"),
        ));
    }
    let media_in = medias::visible(state, caller, new.media_in_id)
        .await
        .map_err(|e| e.on_not_found("media_in_id"))?;
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
    let callback = webhooks::callback(state, new.callback_url, new.callback_secret).await?;

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
    let mut task = task;
    let shown = match callback {
        Some(callback) => {
            task.header.callback_url = Some(callback.url().to_owned());
            callback.register(state, user.id, task.id).await?
        }
        None => None,
    };
    state.store.create_media(&media_out).await?;
    medias::emit_changes(state, None, &media_out);
    let job = job_for(&task, &media_in, &media_out, &profile);
    tracing::info!(task = %task.id, media_in = %task.media_in_id, media_out = %media_out_id,
        profile = %profile.title, "transform task asked for");
    match tasks::create(state, task, Some(job)).await {
        Ok(mut task) => {
            task.header.callback_secret = shown;
            Ok(task)
        }
        Err(e) => {
            let mut orphan = media_out.clone();
            orphan.status = MediaStatus::Deleted;
            if let Ok(true) = state.store.update_media(&mut orphan).await {
                medias::emit_changes(state, Some(&media_out), &orphan);
            }
            Err(e)
        }
    }
}

/// The message for the task's current attempt, from its records as they are now.
fn job_for(
    task: &TransformTask,
    media_in: &Media,
    media_out: &Media,
    profile: &TransformProfile,
) -> Outgoing {
    let job = TransformJob {
        task_id: task.id,
        attempt: task.attempt,
        media_in_uri: media_in.uri.clone(),
        media_in_duration: media_in.duration,
        media_out_id: media_out.id,
        filename: media_out.filename.clone(),
        profile_title: profile.title.clone(),
        encoder_name: profile.encoder_name,
        encoder_string: profile.encoder_string.clone(),
    };
    Outgoing::new(task.queue.clone(), task.priority, &job)
}

/// What a SUCCESS completion did before it was decided: the output taken in (READY), or why
/// it could not be (the task then ends in FAILURE).
pub enum Output {
    None,
    Taken,
    Missing(String),
}

#[async_trait]
impl TaskKind for TransformTask {
    const WHAT: &'static str = "transform task";
    const KIND: &'static str = "transform";
    const HOLDER: &'static str = "unit";
    const REVOCABLE_SUCCESS: bool = false;
    type Prepared = Output;

    async fn insert(&self, store: &dyn Store) -> StoreResult<()> {
        store.create_transform_task(self).await
    }
    async fn get(store: &dyn Store, id: Uuid) -> StoreResult<Option<Self>> {
        store.get_transform_task(id).await
    }
    async fn put(&mut self, store: &dyn Store) -> StoreResult<bool> {
        store.update_transform_task(self).await
    }
    async fn list(
        store: &dyn Store,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<Self>> {
        store.list_transform_tasks(filter, opts).await
    }

    fn clear_attempt(&mut self) {
        self.progress = None;
    }

    fn medias(&self) -> (Uuid, Option<Uuid>) {
        (self.media_out_id, Some(self.media_in_id))
    }

    fn progress_view(&self) -> serde_json::Value {
        serde_json::to_value(&self.progress).unwrap_or_default()
    }

    fn on_progress(&mut self, report: ProgressReport) {
        self.progress = Some(Progress {
            report,
            updated_at: now(),
        });
    }

    async fn message(&self, state: &AppState) -> StoreResult<Result<Option<Outgoing>, String>> {
        let Some(media_in) = state.store.get_media(self.media_in_id).await? else {
            return Ok(Err(format!("the input media {} is gone", self.media_in_id)));
        };
        let Some(media_out) = state.store.get_media(self.media_out_id).await? else {
            return Ok(Err(format!(
                "the output media {} is gone",
                self.media_out_id
            )));
        };
        let Some(profile) = state.store.get_profile(self.profile_id).await? else {
            return Ok(Err(format!("the profile {} was deleted", self.profile_id)));
        };
        Ok(Ok(Some(job_for(self, &media_in, &media_out, &profile))))
    }

    fn refuse_revoke(&self) -> ApiError {
        ApiError::illegal_state(format!(
            "transform task {} is already {}: only a queued or running task can be revoked",
            self.id, self.status
        ))
    }

    /// A SUCCESS takes `tmp/<task>/<attempt>/` in as `medias/<out>/`, the output READY with
    /// its probe and thumbnail, before the task says SUCCESS. Taking it in twice (a repeated
    /// call, a racing replica) finds it taken and changes nothing.
    async fn prepare(state: &AppState, task: &Self, req: &CompleteRequest) -> ApiResult<Output> {
        let running = matches!(task.status, TaskStatus::Started | TaskStatus::Progress);
        if !running || req.status != TaskStatus::Success {
            return Ok(Output::None);
        }
        let Some(output) = req.output.clone() else {
            return Err(ApiError::invalid("a SUCCESS completion carries its output"));
        };
        let from = state.storage.path_of(&tmp_dir(task.id, task.attempt));
        let size = match state.storage.adopt_dir(&from, task.media_out_id).await {
            Ok(size) => size,
            Err(e) => {
                return Ok(Output::Missing(format!(
                    "the orchestra could not take the output from the unit's tmp dir: {e}"
                )));
            }
        };
        let media = state
            .store
            .get_media(task.media_out_id)
            .await?
            .ok_or_else(|| ApiError::not_found("media", task.media_out_id))?;
        if !state.storage.path_of(&media.uri).is_file() {
            return Ok(Output::Missing(format!(
                "the unit reported success but wrote no {:?}",
                media.filename
            )));
        }
        let ready = medias::change(state, task.media_out_id, |media| {
            if media.status != MediaStatus::Pending {
                return Ok(false);
            }
            media.status = MediaStatus::Ready;
            media.size = size.max(output.size);
            media.duration = output.probe.duration();
            media.probe = Some(output.probe.clone());
            media.updated_at = now();
            Ok(true)
        })
        .await?;
        if ready.status != MediaStatus::Ready {
            return Ok(Output::Missing(format!(
                "the output media {} was discarded meanwhile (the task was ending)",
                ready.id
            )));
        }
        Ok(Output::Taken)
    }

    fn complete(task: &mut Self, req: &CompleteRequest, prepared: &Output) -> ApiResult<bool> {
        if task.status.is_final() {
            return Ok(false);
        }
        if !task.status.is_running() {
            return Err(stale(format!("task {} is {}", task.id, task.status)));
        }
        if task.status == TaskStatus::Revoking {
            // Whatever the unit did, the user asked to stop: its output is discarded.
            move_to(task, TaskStatus::Revoked, false)?;
            return Ok(true);
        }
        match (req.status, prepared) {
            (TaskStatus::Success, Output::Taken) => {
                move_to(task, TaskStatus::Success, false)?;
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
            }
            (TaskStatus::Success, Output::Missing(why)) => {
                move_to(task, TaskStatus::Failure, false)?;
                task.error = Some(why.clone());
            }
            (TaskStatus::Success, Output::None) => {
                return Err(ApiError::invalid("a SUCCESS completion carries its output"));
            }
            (TaskStatus::Failure, _) => {
                move_to(task, TaskStatus::Failure, false)?;
                task.error = Some(
                    req.error
                        .clone()
                        .unwrap_or_else(|| "the unit reported a failure".into()),
                );
            }
            (other, _) => {
                return Err(ApiError::invalid(format!(
                    "a unit completes with SUCCESS, FAILURE or REVOKED (after a cancel), not {other}"
                )));
            }
        }
        Ok(true)
    }

    /// A task that will not succeed has its output DELETED before it says so: a client
    /// seeing FAILURE or REVOKED finds no PENDING output and no files. A completion racing
    /// with it then finds the output gone and ends in FAILURE, never SUCCESS without files.
    async fn ending(state: &AppState, task: &Self) {
        if task.status != TaskStatus::Success {
            discard_output(state, task).await;
        }
    }

    async fn finished(state: &AppState, task: &Self) {
        if task.status == TaskStatus::Success {
            if let Err(e) = state.storage.remove_task_tmp(task.id).await {
                tracing::warn!(task = %task.id, error = %e, "could not remove the task's tmp dir");
            }
            tracing::info!(task = %task.id, media = %task.media_out_id, attempt = task.attempt,
                unit = task.unit_id.as_deref(), "transform task succeeded");
            // After the SUCCESS and beside it, not before: the picture is no part of the
            // output, and its ffmpeg run (0.2 s) held every completion and the unit waiting on
            // it. A request for it meanwhile makes it then or waits for this one.
            let (state, media_id) = (state.clone(), task.media_out_id);
            let ran_secs = task.ran_secs();
            tokio::spawn(async move {
                match state.store.get_media(media_id).await {
                    Ok(Some(media)) => {
                        // Output seconds per wall second, from the probed output.
                        if let (Some(output), Some(wall)) = (media.duration, ran_secs) {
                            state.metrics.encode_speed(output, wall);
                        }
                        state.thumbnailer.make_for_ready(&media).await
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(media = %media_id, error = %e, "no thumbnail made"),
                }
            });
            return;
        }
        if task.status == TaskStatus::Failure {
            tracing::warn!(task = %task.id, attempt = task.attempt, error = task.error.as_deref(),
                "transform task failed");
        }
        // Again, for a file a unit wrote meanwhile.
        discard_output(state, task).await;
    }
}

/// The output media of a task that will not succeed: DELETED, with every file gone.
async fn discard_output(state: &AppState, task: &TransformTask) {
    if let Err(e) = state.storage.remove_task_tmp(task.id).await {
        tracing::warn!(task = %task.id, error = %e, "could not remove the task's tmp dir");
    }
    if let Err(e) = state.storage.remove_media(task.media_out_id).await {
        tracing::warn!(media = %task.media_out_id, error = %e, "could not remove the output's files");
    }
    let deleted = medias::change(state, task.media_out_id, |media| {
        if media.status == MediaStatus::Deleted {
            return Ok(false);
        }
        media.status = MediaStatus::Deleted;
        media.size = 0;
        media.updated_at = now();
        Ok(true)
    })
    .await;
    if let Err(e) = deleted {
        tracing::warn!(media = %task.media_out_id, error = %e.message, "could not mark the output DELETED");
    }
}
