//! Loading and saving a task record, the same for transform and publisher tasks: the store
//! call for the kind, and the 404 that names it.

use async_trait::async_trait;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use oscied_protocol::node::{ClaimAnswer, ClaimRequest};

use crate::lifecycle::{self, Lifecycle, lease};
use crate::models::now;
use crate::models::{PublisherTask, TransformTask};
use crate::state::AppState;
use crate::store::{Store, StoreResult};

/// A task kind's record in the store.
#[async_trait]
pub trait TaskRecord: Lifecycle + Sized + Send + Sync {
    /// How errors name it: `transform task`, `publisher task`.
    const WHAT: &'static str;
    fn owner(&self) -> Uuid;
    async fn get(store: &dyn Store, id: Uuid) -> StoreResult<Option<Self>>;
    /// False when the record is gone.
    async fn put(&mut self, store: &dyn Store) -> StoreResult<bool>;
}

#[async_trait]
impl TaskRecord for TransformTask {
    const WHAT: &'static str = "transform task";
    fn owner(&self) -> Uuid {
        self.user_id
    }
    async fn get(store: &dyn Store, id: Uuid) -> StoreResult<Option<Self>> {
        store.get_transform_task(id).await
    }
    async fn put(&mut self, store: &dyn Store) -> StoreResult<bool> {
        store.update_transform_task(self).await
    }
}

#[async_trait]
impl TaskRecord for PublisherTask {
    const WHAT: &'static str = "publisher task";
    fn owner(&self) -> Uuid {
        self.user_id
    }
    async fn get(store: &dyn Store, id: Uuid) -> StoreResult<Option<Self>> {
        store.get_publisher_task(id).await
    }
    async fn put(&mut self, store: &dyn Store) -> StoreResult<bool> {
        store.update_publisher_task(self).await
    }
}

/// The task, or a 404.
pub async fn load<T: TaskRecord>(state: &AppState, id: Uuid) -> ApiResult<T> {
    T::get(state.store.as_ref(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(T::WHAT, id))
}

/// A task the caller may see (others' answer 404).
pub async fn find<T: TaskRecord>(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<T> {
    let task: T = load(state, id).await?;
    if caller.can_see(Some(task.owner())) {
        Ok(task)
    } else {
        Err(ApiError::not_found(T::WHAT, id))
    }
}

/// Replace the record; a 404 when it is gone.
pub async fn save<T: TaskRecord>(state: &AppState, task: &mut T) -> ApiResult<()> {
    if task.put(state.store.as_ref()).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(T::WHAT, task.id()))
    }
}

/// A unit claims an attempt it received (see [`lifecycle::claim`]); `started` adjusts a task
/// just claimed before it is saved.
pub async fn claim<T: TaskRecord>(
    state: &AppState,
    id: Uuid,
    req: ClaimRequest,
    started: impl FnOnce(&mut T),
) -> ApiResult<ClaimAnswer> {
    let _guard = state.locks.lock(id).await;
    let mut task: T = load(state, id).await?;
    if lifecycle::claim(&mut task, &req, lease(state))? {
        started(&mut task);
        save(state, &mut task).await?;
        tracing::info!(task = %id, attempt = task.attempt(), unit = task.unit_id(),
            "{} started", T::WHAT);
    }
    Ok(ClaimAnswer {
        task_id: id,
        attempt: task.attempt(),
        lease_secs: state.config.task_lease_secs,
    })
}

/// End a running task's lease now, as if its unit had gone silent (its unit was forgotten);
/// false when it is not running. The caller then takes it back.
pub async fn expire_lease<T: TaskRecord>(state: &AppState, id: Uuid) -> ApiResult<bool> {
    let _guard = state.locks.lock(id).await;
    let mut task: T = load(state, id).await?;
    if !task.status().is_running() {
        return Ok(false);
    }
    task.renew(now());
    save(state, &mut task).await?;
    Ok(true)
}
