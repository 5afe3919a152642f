//! The orchestra's persistence: one [`Store`] trait, an embedded SQLite implementation for
//! standalone mode and a MongoDB one for clusters. Both pass the contract suite in
//! `orchestra/tests/store_contract.rs`.

mod mongo;
mod sqlite;

use async_trait::async_trait;
use oscied_protocol::node::UnitKind;
use uuid::Uuid;

#[cfg(doc)]
use crate::models::Revised;
use crate::models::{
    ActiveTasks, Counted, Delivery, DeliveryFilter, Idempotency, ListOptions, Media, MediaFilter,
    Page, ProfileFilter, PublisherTask, TaskFilter, Token, TransformProfile, TransformTask, Unit,
    User, UserFilter, UserRecord, WebhookFilter, WebhookRecord,
};

pub use mongo::MongoStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique field is taken; the string names the field (`mail`, `title`).
    #[error("{0} is already taken")]
    Conflict(&'static str),
    /// The database cannot be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored document does not decode: a bug or a foreign writer.
    #[error("store data error: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How long to wait before deciding again after a fenced write lost its race: a short pause
/// that grows with the round and is jittered, so that racers do not collide again in step.
pub fn backoff(round: u32) -> std::time::Duration {
    let jitter = u64::from(Uuid::new_v4().as_bytes()[0]) % 5;
    std::time::Duration::from_millis(u64::from(round.min(10)) * 2 + jitter)
}

/// Every call is one round trip; replacing a record is whole-record (`update_*` returns false
/// when the record is gone).
///
/// Medias and tasks are fenced ([`Revised`]): `create_*` stores the record at its revision
/// (0 for a new one); `update_*` replaces it only if the stored revision is still the one
/// the given copy carries, stores revision + 1 and sets it on the copy. It returns false,
/// writing nothing, when the record is gone or changed underneath: the caller reads it again
/// and decides again (`crate::tasks` retries, or answers 409). Of N writers racing from one
/// read exactly one wins, on every replica sharing the store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `mongodb`.
    fn kind(&self) -> &'static str;
    /// Whether a list's total is counted by walking its matches (MongoDB: worth keeping
    /// while nothing changes, see `crate::totals`) rather than read off counters kept with
    /// the records (SQLite).
    fn counts_by_walking(&self) -> bool {
        false
    }
    async fn ping(&self) -> StoreResult<()>;

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserRecord>>;
    /// Mail lookup is case-insensitive.
    async fn user_by_mail(&self, mail: &str) -> StoreResult<Option<UserRecord>>;
    async fn list_users(&self, filter: &UserFilter, opts: &ListOptions) -> StoreResult<Page<User>>;
    async fn update_user(&self, user: &UserRecord) -> StoreResult<bool>;
    async fn delete_user(&self, id: Uuid) -> StoreResult<bool>;

    async fn create_media(&self, media: &Media) -> StoreResult<()>;
    async fn get_media(&self, id: Uuid) -> StoreResult<Option<Media>>;
    async fn list_medias(
        &self,
        filter: &MediaFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<Media>>;
    async fn update_media(&self, media: &mut Media) -> StoreResult<bool>;

    async fn create_profile(&self, profile: &TransformProfile) -> StoreResult<()>;
    async fn get_profile(&self, id: Uuid) -> StoreResult<Option<TransformProfile>>;
    async fn list_profiles(
        &self,
        filter: &ProfileFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<TransformProfile>>;
    async fn update_profile(&self, profile: &TransformProfile) -> StoreResult<bool>;
    async fn delete_profile(&self, id: Uuid) -> StoreResult<bool>;

    async fn create_token(&self, token: &Token) -> StoreResult<()>;
    async fn get_token(&self, hash: &str) -> StoreResult<Option<Token>>;
    /// Revoke one token (false when it was not there).
    async fn delete_token(&self, hash: &str) -> StoreResult<bool>;
    /// Revoke all of a user's tokens; how many there were.
    async fn delete_user_tokens(&self, user_id: Uuid) -> StoreResult<u64>;
    /// Forget every token that expired before `t`; how many there were.
    async fn delete_expired_tokens(&self, t: chrono::DateTime<chrono::Utc>) -> StoreResult<u64>;

    async fn create_transform_task(&self, task: &TransformTask) -> StoreResult<()>;
    async fn get_transform_task(&self, id: Uuid) -> StoreResult<Option<TransformTask>>;
    /// Sortable on `created_at`, `started_at`, `finished_at`, `status`, `priority`.
    async fn list_transform_tasks(
        &self,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<TransformTask>>;
    async fn update_transform_task(&self, task: &mut TransformTask) -> StoreResult<bool>;

    async fn create_publisher_task(&self, task: &PublisherTask) -> StoreResult<()>;
    async fn get_publisher_task(&self, id: Uuid) -> StoreResult<Option<PublisherTask>>;
    /// Sortable on `created_at`, `started_at`, `finished_at`, `status`.
    async fn list_publisher_tasks(
        &self,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<PublisherTask>>;
    async fn update_publisher_task(&self, task: &mut PublisherTask) -> StoreResult<bool>;

    /// How many medias or tasks (of `user_id`, or everyone's) there are of each status, in
    /// one grouped count: the status as stored (`READY`, `FAILURE`...) → how many; a status
    /// none has is absent.
    async fn count_by_status(
        &self,
        counted: Counted,
        user_id: Option<Uuid>,
    ) -> StoreResult<std::collections::BTreeMap<String, u64>>;

    /// The tasks of `kind` that are not over (`TaskStatus::ACTIVE`) grouped by queue and
    /// status, and the running ones counted by unit: grouped queries bounded by the status
    /// index (never over the finished tasks, which only grow). What `GET /metrics` reports.
    async fn active_tasks(&self, kind: UnitKind) -> StoreResult<ActiveTasks>;

    /// Insert or replace the unit with this id.
    async fn put_unit(&self, unit: &Unit) -> StoreResult<()>;
    async fn get_unit(&self, id: &str) -> StoreResult<Option<Unit>>;
    /// Forget a unit (false when it was not known); its next heartbeat registers it anew.
    async fn delete_unit(&self, id: &str) -> StoreResult<bool>;
    /// All units, by id.
    async fn list_units(&self) -> StoreResult<Vec<Unit>>;

    /// Root's secret as an argon2 hash, one for every orchestra on this store.
    async fn root_secret_hash(&self) -> StoreResult<Option<String>>;
    /// Keep `hash` as root's unless one is kept already (then false, and it stays): of two
    /// orchestras starting at once on an empty store, exactly one wins.
    async fn insert_root_secret_hash(&self, hash: &str) -> StoreResult<bool>;
    /// Replace root's hash (a rotation).
    async fn set_root_secret_hash(&self, hash: &str) -> StoreResult<()>;

    /// Keep `record` unless a record has its id already (then false, and that one stays): of
    /// requests racing on one key, on any replica, exactly one wins.
    async fn insert_idempotency(&self, record: &Idempotency) -> StoreResult<bool>;
    async fn get_idempotency(&self, id: &str) -> StoreResult<Option<Idempotency>>;
    /// Replace the record if `record.holder` still holds it (false, writing nothing, else).
    async fn finish_idempotency(&self, record: &Idempotency) -> StoreResult<bool>;
    /// Remove the record if `holder` holds it.
    async fn delete_idempotency(&self, id: &str, holder: &str) -> StoreResult<bool>;
    /// Forget every record that expired before `t`; how many there were.
    async fn delete_expired_idempotency(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<u64>;

    /// Webhooks and their deliveries are fenced like tasks (`update_*` as described above).
    async fn create_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()>;
    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>>;
    /// Sortable on `created_at`.
    async fn list_webhooks(
        &self,
        filter: &WebhookFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<WebhookRecord>>;
    async fn update_webhook(&self, webhook: &mut WebhookRecord) -> StoreResult<bool>;
    /// Remove a webhook and every delivery of it (false when it was not there).
    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool>;

    async fn create_delivery(&self, delivery: &Delivery) -> StoreResult<()>;
    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<Delivery>>;
    /// Sortable on `created_at` and `next_at`.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<Delivery>>;
    async fn update_delivery(&self, delivery: &mut Delivery) -> StoreResult<bool>;
    /// Forget every delivery that expired before `t`; how many there were.
    async fn delete_expired_deliveries(&self, t: chrono::DateTime<chrono::Utc>)
    -> StoreResult<u64>;

    /// Take or renew the lease `name` for `holder` until now + `ttl`: true when `holder` has
    /// it now (nobody had it, it lapsed, or `holder` had it already), false when another
    /// holder's lease is still running. Of replicas racing for a free lease exactly one wins.
    /// The background loops run on the replica holding `loops` (crate::loops).
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: chrono::Duration,
    ) -> StoreResult<bool>;
    /// Give the lease up if `holder` has it (a replica stopping), so another takes it at once.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;
}
