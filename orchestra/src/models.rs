//! The records the orchestra keeps (docs/architecture.md §3), as stored and as answered in JSON.
//!
//! Secrets never live in these API types: a user's argon2 hash travels in [`UserRecord`] only.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use oscied_protocol::node::UnitKind;
use oscied_protocol::{EncoderName, Probe, ProgressReport, TaskStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Timestamps are stored and answered as RFC 3339 UTC with fixed microseconds, so that
/// string order is time order in both stores.
pub mod ts {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| {
                    DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

/// Now, truncated to the microsecond so that a stored and re-read timestamp compares equal.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub mail: String,
    pub admin_platform: bool,
    /// `first_name last_name`, computed.
    pub name: String,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
}

impl User {
    pub fn compute_name(&mut self) {
        self.name = format!("{} {}", self.first_name.trim(), self.last_name.trim())
            .trim()
            .to_owned();
    }
}

/// A user as stored: the API view plus the argon2id hash of the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user: User,
    pub secret_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum MediaStatus {
    Pending,
    Ready,
    Deleted,
}

impl MediaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Pending => "PENDING",
            MediaStatus::Ready => "READY",
            MediaStatus::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Media {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The input media of the task that made this one.
    pub parent_id: Option<Uuid>,
    pub filename: String,
    /// Path relative to the storage root: `medias/<id>/<filename>`.
    pub uri: String,
    /// publisher task id → public URL.
    #[schema(value_type = Object)]
    pub public_uris: BTreeMap<String, String>,
    /// Free JSON object; `title` is required.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub status: MediaStatus,
    /// Bytes of the media's directory.
    pub size: u64,
    /// Seconds.
    pub duration: Option<f64>,
    pub probe: Option<Probe>,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated_at: DateTime<Utc>,
    /// The store's fence (see [`Revised`]).
    #[serde(skip)]
    pub revision: u64,
}

impl Media {
    pub fn title(&self) -> &str {
        self.metadata
            .get("title")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransformProfile {
    pub id: Uuid,
    /// None for the built-ins and for profiles root made.
    pub user_id: Option<Uuid>,
    /// Seeded by the orchestra at its first start (from `oscied_protocol::builtins`), as
    /// opposed to made through the API (root's profiles have no user_id either). Stays true
    /// when an admin edits one.
    #[serde(default)]
    pub builtin: bool,
    pub title: String,
    pub description: String,
    pub encoder_name: EncoderName,
    pub encoder_string: String,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
}

/// The owner id root's tokens are stored under: no user has it (users' ids are random v4).
pub const ROOT_OWNER: Uuid = Uuid::nil();

/// A bearer token as stored: only the BLAKE2b hash of the token itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub hash: String,
    pub user_id: Uuid,
    #[serde(with = "ts")]
    pub expires_at: DateTime<Utc>,
    /// `secrets::secret_stamp` of the owner when the token was made; a token is valid only while
    /// it matches (tokens from before stamps have none, and are no longer valid).
    #[serde(default)]
    pub secret_stamp: String,
}

/// A request made with an `Idempotency-Key` (`crate::idempotency`), kept 24 h: in progress
/// while `status` is None, then the answer it got, to be answered again to a repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Idempotency {
    /// A digest of the caller, the route and the key: one key per caller and route.
    pub id: String,
    /// A digest of the request body: a repeat with another body is refused.
    pub fingerprint: String,
    /// The request that runs it (random per request).
    pub holder: String,
    /// The answer's status and JSON body, once there is one.
    pub status: Option<u16>,
    pub body: Option<String>,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ts")]
    pub expires_at: DateTime<Utc>,
    /// A request in progress whose holder died lets another take the key after this.
    #[serde(with = "ts")]
    pub lease_until: DateTime<Utc>,
}

/// One page of a list: `{"items": [...], "total": N}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many match the filters, all pages together.
    pub total: u64,
}

impl<T> Page<T> {
    pub fn empty() -> Page<T> {
        Page {
            items: vec![],
            total: 0,
        }
    }
}

/// Paging and order of a list. `sort` is a document path from the resource's allow-list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListOptions {
    pub limit: u64,
    pub skip: u64,
    pub sort: &'static str,
    pub descending: bool,
    /// The page's `total` is not counted and reads as its number of items: a background pass
    /// only walks what it finds, and a count over a long queue costs it as much again.
    pub uncounted: bool,
}

impl ListOptions {
    /// No items, only the total: a count through the same filters as a list.
    pub fn count_only() -> ListOptions {
        ListOptions {
            limit: 0,
            skip: 0,
            sort: "created_at",
            descending: false,
            uncounted: false,
        }
    }

    /// The `limit` oldest items, with the total ("in use" checks).
    pub fn oldest_first(limit: u64) -> ListOptions {
        ListOptions {
            limit,
            ..ListOptions::count_only()
        }
    }

    /// The `limit` oldest items, uncounted (the background passes).
    pub fn scan(limit: u64) -> ListOptions {
        ListOptions {
            uncounted: true,
            ..ListOptions::oldest_first(limit)
        }
    }

    /// The total, when a page of `items` items read with these options tells it without a
    /// count: uncounted, or a page that ended before its limit (then nothing matches past
    /// it), unless it is an empty page past the end, which does not say how far the end is.
    /// The stores read the page first and count only when this is None: most lists are one
    /// short page, and they then cost one query.
    pub fn total_of_page(&self, items: usize) -> Option<u64> {
        let items = items as u64;
        if self.uncounted {
            return Some(items);
        }
        let short = self.limit > 0 && items < self.limit;
        (short && (items > 0 || self.skip == 0)).then(|| self.skip.saturating_add(items))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserFilter {
    /// Case-insensitive substring of mail or name.
    pub q: Option<String>,
    /// Only this user (a non-admin listing sees itself only).
    pub id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaFilter {
    pub user_id: Option<Uuid>,
    pub parent_id: Option<Uuid>,
    /// Any of these statuses.
    pub statuses: Vec<MediaStatus>,
    /// Case-insensitive substring of metadata.title.
    pub q: Option<String>,
}

impl Default for MediaFilter {
    /// Deleted medias are kept for lineage but hidden unless asked for.
    fn default() -> Self {
        MediaFilter {
            user_id: None,
            parent_id: None,
            statuses: vec![MediaStatus::Pending, MediaStatus::Ready],
            q: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileFilter {
    /// Case-insensitive substring of the title.
    pub q: Option<String>,
    pub encoder_name: Option<EncoderName>,
    pub user_id: Option<Uuid>,
}

/// Where a running task stands: the unit's last report and when the orchestra got it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    #[serde(flatten)]
    pub report: ProgressReport,
    #[serde(with = "ts")]
    pub updated_at: DateTime<Utc>,
}

/// What every task kind shares (docs/architecture.md §3): who asked, where it queues, where
/// it stands in the state machine and which unit holds which attempt. Status changes go
/// through `lifecycle` only; stored and answered flattened into the kind's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskHeader {
    pub id: Uuid,
    pub user_id: Uuid,
    pub queue: String,
    pub status: TaskStatus,
    /// 1 for the first run; a lost lease, or a unit stopping mid-task, re-queues with
    /// attempt + 1.
    pub attempt: u32,
    /// How many of its attempts units handed back when they stopped (SIGTERM); these do not
    /// count against `OSCIED_TASK_MAX_ATTEMPTS`.
    #[serde(default)]
    pub handed_back: u32,
    /// Why it failed (ffmpeg's own error lines), or why it was retried.
    pub error: Option<String>,
    /// The unit holding (or last holding) the task.
    pub unit_id: Option<String>,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ts::option")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "ts::option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// When the broker confirmed the current message (a queued task's job; a publication's
    /// unpublish job while REVOKING after a SUCCESS); null while the broker is unreachable
    /// (the dispatch loop retries).
    #[serde(with = "ts::option")]
    pub dispatched_at: Option<DateTime<Utc>>,
    /// A running task whose unit has not reported by then is taken back.
    #[serde(with = "ts::option")]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Where this task's events are POSTed (a webhook limited to it: `GET
    /// /webhooks?task_id=`).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The callback's signing secret when the orchestra generated it: answered once, by the
    /// request that created the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
    /// The store's fence: every write is conditional on it and bumps it (see [`Revised`]).
    #[serde(skip)]
    pub revision: u64,
    /// A completion under way (see [`Hold`]); kept beside the document like the revision.
    #[serde(skip)]
    pub hold: Option<Hold>,
}

/// A writer's hold on a task record for a step done outside it that must not meet another
/// writer's (a completion moving its output in, which a take-back would discard): who holds
/// it and until when. Taking it is a fenced write, so of two racing takers one wins; the
/// hold ends with its holder's next write, or lapses at `until` if the holder died. Not part
/// of the API JSON: the stores keep it beside the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    pub by: String,
    #[serde(with = "ts")]
    pub until: DateTime<Utc>,
}

impl Hold {
    /// Whether the hold still stands at `at` (its holder may still be at work).
    pub fn stands(&self, at: DateTime<Utc>) -> bool {
        self.until > at
    }

    /// Whether the hold still stands at `at` and is not `by`'s.
    pub fn bars(&self, by: &str, at: DateTime<Utc>) -> bool {
        self.by != by && self.stands(at)
    }
}

impl TaskHeader {
    /// Seconds from its (last) start to its end, once it ended after starting.
    pub fn ran_secs(&self) -> Option<f64> {
        let (started, finished) = self.started_at.zip(self.finished_at)?;
        Some((finished - started).num_milliseconds() as f64 / 1000.0)
    }

    /// End `by`'s hold on the task; whether it held it.
    pub fn end_hold(&mut self, by: &str) -> bool {
        let held = self.hold.as_ref().is_some_and(|h| h.by == by);
        if held {
            self.hold = None;
        }
        held
    }

    /// A task just asked for: PENDING, attempt 1, on `queue`.
    pub fn new(user_id: Uuid, queue: String) -> TaskHeader {
        TaskHeader {
            id: Uuid::new_v4(),
            user_id,
            queue,
            status: TaskStatus::Pending,
            attempt: 1,
            handed_back: 0,
            error: None,
            unit_id: None,
            created_at: now(),
            started_at: None,
            finished_at: None,
            dispatched_at: None,
            lease_expires_at: None,
            callback_url: None,
            callback_secret: None,
            revision: 0,
            hold: None,
        }
    }
}

/// A record whose every write is fenced in the store: a replace is done only when the stored
/// revision is the one this copy was read at, and bumps it, so two writers racing from the
/// same read cannot both win (docs/architecture.md §3). Not part of the API JSON; the stores
/// keep it beside the document.
pub trait Revised {
    fn revision(&self) -> u64;
    fn set_revision(&mut self, revision: u64);
    /// A task's [`Hold`], written and read with the revision; other records have none.
    fn hold(&self) -> Option<&Hold> {
        None
    }
    fn set_hold(&mut self, _hold: Option<Hold>) {}
}

impl Revised for Media {
    fn revision(&self) -> u64 {
        self.revision
    }
    fn set_revision(&mut self, revision: u64) {
        self.revision = revision;
    }
}

/// A transform task (docs/architecture.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransformTask {
    #[serde(flatten)]
    pub header: TaskHeader,
    pub media_in_id: Uuid,
    pub media_out_id: Uuid,
    pub profile_id: Uuid,
    /// 0 (default) to 9; higher runs first.
    pub priority: u8,
    pub progress: Option<Progress>,
}

/// A publisher task (docs/architecture.md §3): one publication of one media by one publisher
/// unit. A SUCCESS is undone by unpublishing (REVOKING until the holding unit removed the
/// files, then REVOKED).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PublisherTask {
    #[serde(flatten)]
    pub header: TaskHeader,
    pub media_id: Uuid,
    /// Where the media's file is served, once published (kept after an unpublish, for the
    /// record).
    pub publish_uri: Option<String>,
}

// A task record reads as its header (`task.status`, `task.attempt`): the shared fields are
// the ones every caller uses, and the kind's own fields stay beside them.
macro_rules! revised_task {
    ($task:ty) => {
        impl std::ops::Deref for $task {
            type Target = TaskHeader;
            fn deref(&self) -> &TaskHeader {
                &self.header
            }
        }
        impl std::ops::DerefMut for $task {
            fn deref_mut(&mut self) -> &mut TaskHeader {
                &mut self.header
            }
        }
        impl Revised for $task {
            fn revision(&self) -> u64 {
                self.header.revision
            }
            fn set_revision(&mut self, revision: u64) {
                self.header.revision = revision;
            }
            fn hold(&self) -> Option<&Hold> {
                self.header.hold.as_ref()
            }
            fn set_hold(&mut self, hold: Option<Hold>) {
                self.header.hold = hold;
            }
        }
    };
}
revised_task!(TransformTask);
revised_task!(PublisherTask);

/// Filters of transform and publisher task lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TaskFilter {
    pub user_id: Option<Uuid>,
    /// Transform tasks whose input or output is this media; publisher tasks of this media.
    pub media_id: Option<Uuid>,
    /// Any of these statuses (empty = all).
    pub statuses: Vec<TaskStatus>,
    pub queue: Option<String>,
    pub unit_id: Option<String>,
    /// Only tasks whose current attempt is not on the broker yet (`dispatched_at` null).
    pub undispatched: bool,
    /// Only tasks whose lease ended before this instant.
    pub lease_expired_before: Option<DateTime<Utc>>,
    /// Only tasks that finished at or after this instant (unfinished ones never match).
    pub finished_after: Option<DateTime<Utc>>,
}

/// What the store's `count_by_status` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Medias,
    TransformTasks,
    PublisherTasks,
}

/// Tasks of one kind that are not over, alike in queue and status (the store's
/// `active_tasks`): how many, and when the oldest was created.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaskGroup {
    pub queue: String,
    /// As stored (`PENDING`, `STARTED`...).
    pub status: String,
    pub count: u64,
    pub oldest_created_at: Option<DateTime<Utc>>,
}

/// What the store's `active_tasks` answers: the tasks not over by queue and status, and how
/// many running ones (STARTED, PROGRESS, REVOKING) each unit holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveTasks {
    pub groups: Vec<TaskGroup>,
    pub running_by_unit: BTreeMap<String, u64>,
}

/// A worker unit as registered by its heartbeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Unit {
    pub id: String,
    pub kind: UnitKind,
    pub queues: Vec<String>,
    pub hostname: String,
    pub version: String,
    pub ffmpeg_version: Option<String>,
    pub concurrency: u32,
    /// Derived when answered from the tasks: those STARTED, PROGRESS or REVOKING held by
    /// this unit, sorted (a finished task leaves at once, not at the next heartbeat).
    pub running_tasks: Vec<Uuid>,
    pub heartbeat_secs: u64,
    #[serde(with = "ts")]
    pub last_heartbeat: DateTime<Utc>,
    /// Derived when answered: a heartbeat within three intervals.
    pub online: bool,
    #[serde(with = "ts")]
    pub registered_at: DateTime<Utc>,
}

/// A webhook subscription (`crate::webhooks`): the events of `events` its owner may see are
/// POSTed to `url`, signed with its secret. A task's `callback_url` is one too, limited to
/// that task (`task_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `http(s)://…`; never a loopback, link-local or private address unless the operator
    /// allows its range (`OSCIED_WEBHOOK_ALLOWED_NETS`).
    pub url: String,
    /// Event types (`task.finished`) or subjects (`task`, `media`, `unit`); empty: all.
    pub events: Vec<String>,
    /// Set for a task's `callback_url`: only that task's events.
    pub task_id: Option<Uuid>,
    /// False once it failed `OSCIED_WEBHOOK_MAX_FAILURES` attempts in a row (or by a PATCH);
    /// a PATCH with `enabled: true` starts it again.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Failed attempts since the last delivered one.
    pub failures: u32,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated_at: DateTime<Utc>,
    /// The HMAC-SHA256 key of its signatures: answered once, when created; never again.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<String>,
    #[serde(skip)]
    pub revision: u64,
}

/// A webhook as stored: with its secret, which the API answers only once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecord {
    #[serde(flatten)]
    pub webhook: Webhook,
    pub signing_key: String,
}

/// `pending` (to be sent, or sent again at `next_at`), `delivered` (a 2xx), `failed` (a
/// final answer, or retried until it expired), `cancelled` (its webhook was disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }
}

/// One POST of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttempt {
    #[serde(with = "ts")]
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status; null when there was no answer.
    pub status: Option<u16>,
    /// From the request sent to the answer's head (or the error).
    pub latency_ms: u64,
    /// Why it did not count as delivered.
    pub error: Option<String>,
}

/// One event to send to one webhook, and how it went (`GET /webhooks/{id}/deliveries`).
/// Receivers see its id as `X-OSCIED-Delivery`, the same on every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub user_id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Every attempt, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// When a pending delivery is sent (again).
    #[serde(with = "ts::option")]
    pub next_at: Option<DateTime<Utc>>,
    /// The delivery this one sends again (`POST …/replay`).
    pub replay_of: Option<Uuid>,
    /// The exact JSON body POSTed: the event.
    pub body: String,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ts::option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Forgotten after this (three days after it was made).
    #[serde(with = "ts")]
    pub expires_at: DateTime<Utc>,
    #[serde(skip)]
    pub revision: u64,
}

/// Which webhooks a list returns.
#[derive(Debug, Clone, Default)]
pub struct WebhookFilter {
    pub user_id: Option<Uuid>,
    /// Some(None): subscriptions only (no task's callback); Some(Some(id)): that task's.
    pub task_id: Option<Option<Uuid>>,
    pub enabled: Option<bool>,
}

/// Which deliveries a list returns.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub webhook_id: Option<Uuid>,
    pub status: Option<DeliveryStatus>,
    /// Pending ones due before this.
    pub due_before: Option<DateTime<Utc>>,
}

impl Revised for WebhookRecord {
    fn revision(&self) -> u64 {
        self.webhook.revision
    }
    fn set_revision(&mut self, revision: u64) {
        self.webhook.revision = revision;
    }
}

impl Revised for Delivery {
    fn revision(&self) -> u64 {
        self.revision
    }
    fn set_revision(&mut self, revision: u64) {
        self.revision = revision;
    }
}
