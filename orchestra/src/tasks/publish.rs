//! Publisher tasks: what is theirs in the engine (docs/architecture.md §3–5, §7). A
//! publication lives on one unit: unpublishing a SUCCESS goes to that unit's own queue and
//! the task stays REVOKING until the unit confirms, however long it is away; the message
//! waits in the unit's durable queue, and is sent again when the unit's heartbeats resume
//! after an absence. `media.public_uris` follows the publication: its URL while published.

use std::time::Duration;

use async_trait::async_trait;
use oscied_protocol::node::{
    CompleteRequest, HeldPublication, HeldPublications, ReleaseRequest, UnitKind,
};
use oscied_protocol::queue::{PUBLISHER_QUEUE, unit_queue};
use oscied_protocol::{PublishAction, PublishJob, TaskStatus};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::TaskKind;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::lifecycle::{check_holder, move_to, stale};
use crate::medias::{self, holding};
use crate::models::{ListOptions, MediaStatus, Page, PublisherTask, TaskFilter, TaskHeader, now};
use crate::outbox::Outgoing;
use crate::state::AppState;
use crate::store::{Store, StoreResult};
use crate::{queues, tasks, webhooks};

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
    /// Where this task's events (created, status, finished) are POSTed, signed: `http(s)://`,
    /// not a loopback, link-local or private address unless the operator allows it.
    #[schema(max_length = 2048)]
    pub callback_url: Option<String>,
    /// The callback's signing secret (16 to 256 visible ASCII characters); absent: one is
    /// generated and answered once, as the created task's `callback_secret`.
    #[schema(min_length = 16, max_length = 256)]
    pub callback_secret: Option<String>,
}

/// How long a request waits for another one publishing the same media.
const MEDIA_TURN: Duration = Duration::from_secs(10);

/// Create a PENDING publication of a READY media and queue it. One media is published once:
/// the check and the insert run while this request holds the media's lease in the store, so
/// two requests on any replicas cannot both pass the check.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    new: NewPublisherTask,
) -> ApiResult<PublisherTask> {
    let user = caller.require_user()?;
    let queue = new.queue.unwrap_or_else(|| PUBLISHER_QUEUE.to_owned());
    queues::check_task_queue(state, UnitKind::Publisher, &queue)
        .await
        .map_err(|e| e.on("queue"))?;
    let callback = webhooks::callback(state, new.callback_url, new.callback_secret).await?;
    let Some(held) =
        tasks::Held::take(state, format!("publish:{}", new.media_id), MEDIA_TURN).await?
    else {
        return Err(ApiError::conflict(format!(
            "media {} is being published by another request; try again",
            new.media_id
        )));
    };
    let callback_url = callback.as_ref().map(|c| c.url().to_owned());
    let created = create_alone(state, caller, user.id, new.media_id, queue, callback_url).await;
    held.release(state).await;
    let (task, job) = created?;
    // Before the task's first event, so that the callback is sent it.
    let shown = match callback {
        Some(callback) => callback.register(state, user.id, task.id).await?,
        None => None,
    };
    let mut task = tasks::start(state, task, Some(job)).await;
    task.header.callback_secret = shown;
    Ok(task)
}

/// The check of [`create`], under the media's lease.
async fn create_alone(
    state: &AppState,
    caller: &Caller,
    user_id: Uuid,
    media_id: Uuid,
    queue: String,
    callback_url: Option<String>,
) -> ApiResult<(PublisherTask, Outgoing)> {
    let media = medias::visible(state, caller, media_id)
        .await
        .map_err(|e| e.on_not_found("media_id"))?;
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
        header: TaskHeader {
            callback_url,
            ..TaskHeader::new(user_id, queue)
        },
        media_id: media.id,
        publish_uri: None,
    };
    // Inserted before the lease is given up, so the next request's check sees it.
    task.insert(state.store.as_ref()).await?;
    let job = publish_job(
        &task,
        PublishAction::Publish,
        &media.uri,
        task.queue.clone(),
    );
    Ok((task, job))
}

fn publish_job(task: &PublisherTask, action: PublishAction, uri: &str, queue: String) -> Outgoing {
    let job = PublishJob {
        task_id: task.id,
        attempt: task.attempt,
        action,
        media_id: task.media_id,
        media_uri: uri.to_owned(),
    };
    Outgoing::new(queue, 0, &job)
}

#[async_trait]
impl TaskKind for PublisherTask {
    const WHAT: &'static str = "publisher task";
    const KIND: &'static str = "publisher";
    const HOLDER: &'static str = "publisher unit";
    const REVOCABLE_SUCCESS: bool = true;
    type Prepared = ();

    fn medias(&self) -> (Uuid, Option<Uuid>) {
        (self.media_id, None)
    }

    async fn insert(&self, store: &dyn Store) -> StoreResult<()> {
        store.create_publisher_task(self).await
    }
    async fn get(store: &dyn Store, id: Uuid) -> StoreResult<Option<Self>> {
        store.get_publisher_task(id).await
    }
    async fn put(&mut self, store: &dyn Store) -> StoreResult<bool> {
        store.update_publisher_task(self).await
    }
    async fn list(
        store: &dyn Store,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<Self>> {
        store.list_publisher_tasks(filter, opts).await
    }

    /// Its files are out (published, or cancelled while the unit finished): no job runs.
    fn leased(&self) -> bool {
        self.publish_uri.is_none()
    }

    /// A queued publication needs its publish job; one being unpublished the unpublish job
    /// to its unit.
    fn wants_message(&self) -> bool {
        let unpublishing = self.status == TaskStatus::Revoking && self.publish_uri.is_some();
        self.status.is_queued() || unpublishing
    }

    async fn message(&self, state: &AppState) -> StoreResult<Result<Option<Outgoing>, String>> {
        let (action, queue) = match (&self.unit_id, self.publish_uri.is_some()) {
            _ if self.status.is_queued() => (PublishAction::Publish, self.queue.clone()),
            (Some(unit), true) if self.status == TaskStatus::Revoking => {
                (PublishAction::Unpublish, unit_queue(unit))
            }
            _ => return Ok(Ok(None)),
        };
        let Some(media) = state.store.get_media(self.media_id).await? else {
            // Deleting a held media is refused, so this is a foreign write.
            return Ok(Err(format!("the media {} is gone", self.media_id)));
        };
        Ok(Ok(Some(publish_job(self, action, &media.uri, queue))))
    }

    fn check_release(&self, req: &ReleaseRequest) -> ApiResult<()> {
        if self.publish_uri.is_some() {
            check_holder(self, &req.unit_id, req.attempt)?;
            return Err(stale(format!(
                "publisher task {} is {} with its files on unit {}: a publication is not \
                 handed back",
                self.id, self.status, req.unit_id
            )));
        }
        Ok(())
    }

    /// Asked again while REVOKING: the unit may have lost the first unpublish message.
    fn revoke_again(&mut self) -> bool {
        if self.publish_uri.is_some() {
            self.dispatched_at = None;
            return true;
        }
        false
    }

    fn refuse_revoke(&self) -> ApiError {
        ApiError::illegal_state(format!(
            "publisher task {} is already {}: there is nothing to unpublish",
            self.id, self.status
        ))
    }

    async fn prepare(_: &AppState, _: &Self, _: &CompleteRequest) -> ApiResult<()> {
        Ok(())
    }

    /// SUCCESS with the checked `publish_uri`, FAILURE, or REVOKED (a cancelled publication
    /// cleaned up, or an unpublish done). Repeats change nothing.
    fn complete(task: &mut Self, req: &CompleteRequest, _: &()) -> ApiResult<bool> {
        if task.status.is_final() && task.status != TaskStatus::Success {
            return Ok(false);
        }
        match (task.status, req.status) {
            // A repeated SUCCESS.
            (TaskStatus::Success, TaskStatus::Success) => Ok(false),
            (TaskStatus::Started | TaskStatus::Progress, TaskStatus::Success) => {
                let uri = published_uri(req)?;
                move_to(task, TaskStatus::Success, true)?;
                task.publish_uri = Some(uri);
                task.error = None;
                Ok(true)
            }
            (TaskStatus::Started | TaskStatus::Progress, TaskStatus::Failure) => {
                move_to(task, TaskStatus::Failure, true)?;
                task.error = Some(
                    req.error
                        .clone()
                        .unwrap_or_else(|| "the unit reported a failure".into()),
                );
                Ok(true)
            }
            (TaskStatus::Revoking, TaskStatus::Revoked) => {
                move_to(task, TaskStatus::Revoked, true)?;
                Ok(true)
            }
            // Cancelled while the unit finished: the files are out, so take them back in.
            (TaskStatus::Revoking, TaskStatus::Success) if task.publish_uri.is_none() => {
                task.publish_uri = Some(published_uri(req)?);
                // Nothing runs any more: no lease to watch, an unpublish job to send.
                task.lease_expires_at = None;
                task.dispatched_at = None;
                Ok(true)
            }
            (TaskStatus::Revoking, _) => Ok(false),
            (from, asked) => Err(ApiError::invalid(format!(
                "a publisher task that is {from} cannot be completed as {asked}"
            ))),
        }
    }

    async fn finished(state: &AppState, task: &Self) {
        match task.status {
            TaskStatus::Success => {
                tracing::info!(task = %task.id, unit = task.unit_id.as_deref(),
                    uri = task.publish_uri.as_deref(), "media published");
                set_public_uri(state, task, task.publish_uri.clone()).await;
            }
            TaskStatus::Revoked => {
                tracing::info!(task = %task.id, unit = task.unit_id.as_deref(), "media unpublished");
                set_public_uri(state, task, None).await;
            }
            _ => {
                tracing::warn!(task = %task.id, error = task.error.as_deref(), "publication failed");
            }
        }
    }
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
async fn set_public_uri(state: &AppState, task: &PublisherTask, uri: Option<String>) {
    let key = task.id.to_string();
    let changed = medias::change(state, task.media_id, |media| {
        let changed = match &uri {
            Some(uri) => media.public_uris.get(&key) != Some(uri),
            None => media.public_uris.contains_key(&key),
        };
        if changed {
            match &uri {
                Some(uri) => media.public_uris.insert(key.clone(), uri.clone()),
                None => media.public_uris.remove(&key),
            };
            media.updated_at = now();
        }
        Ok(changed)
    })
    .await;
    match changed {
        Ok(_) => {}
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {}
        Err(e) => {
            tracing::warn!(task = %task.id, media = %task.media_id, error = %e.message,
                "could not update the media's public_uris");
        }
    }
}

/// Its unit was forgotten: a publication it held (published, or being unpublished) is
/// REVOKED, since its files went with the unit (true); one it was publishing is taken back
/// like a lapsed lease (false).
pub async fn forget_holder(state: &AppState, id: Uuid) -> ApiResult<bool> {
    let written = tasks::change::<PublisherTask, ()>(state, id, |task| {
        if task.publish_uri.is_none() || task.status == TaskStatus::Revoked {
            return Ok((false, ()));
        }
        if task.status == TaskStatus::Success {
            move_to(task, TaskStatus::Revoking, true)?;
        }
        move_to(task, TaskStatus::Revoked, true)?;
        let unit = task.unit_id.clone().unwrap_or_default();
        task.error = Some(format!(
            "unit {unit} was forgotten by an admin; the publication went with it"
        ));
        Ok((true, ()))
    })
    .await?;
    if written.changed {
        return Ok(true);
    }
    tasks::take_back::<PublisherTask>(state, id, true).await?;
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
        let resent = tasks::change::<PublisherTask, ()>(state, task.id, |t| {
            if t.status != TaskStatus::Revoking {
                return Ok((false, ()));
            }
            t.dispatched_at = None;
            Ok((true, ()))
        })
        .await;
        if resent.is_ok_and(|w| w.changed) {
            tracing::info!(task = %task.id, unit = %unit_id, "unit is back: unpublish sent again");
        }
    }
}
