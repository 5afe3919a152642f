//! The node API: what units send the orchestra and what it answers (docs/architecture.md §5).
//!
//! Routes, all under `/api/v1` with HTTP Basic `node:<node secret>`:
//!
//! | route | body | answer |
//! |---|---|---|
//! | `PUT /node/units/{unit_id}` | [`UnitHeartbeat`] | 200 the unit as listed by `GET /units` |
//! | `POST /node/transform/tasks/{id}/claim` | [`ClaimRequest`] | 200 [`ClaimAnswer`]; 409 `stale_attempt` |
//! | `POST /node/transform/tasks/{id}/progress` | [`ProgressRequest`] | 200 [`ProgressAnswer`]; 409 `stale_attempt` |
//! | `POST /node/transform/tasks/{id}/complete` | [`CompleteRequest`] | 200 [`CompleteAnswer`]; 409 `stale_attempt` |
//! | `POST /node/publisher/tasks/{id}/claim`, `.../progress`, `.../complete` | the same | the same |
//! | `POST /node/{kind}/tasks/{id}/release` | [`ReleaseRequest`] | 200 [`ReleaseAnswer`]; 409 `stale_attempt` |
//! | `GET /node/units/{unit_id}/publications` | — | 200 [`HeldPublications`] |
//!
//! A publisher completes a publish with SUCCESS and `publish_uri`, and an unpublish (which it
//! does not claim: it holds the task already) with REVOKED and the attempt that published.
//!
//! A unit that stops (SIGTERM) hands back the attempts it still runs with `release`: the task
//! is queued again at once with attempt + 1 (RETRY; a REVOKING one ends REVOKED), and the
//! hand-back does not count against the orchestra's `OSCIED_TASK_MAX_ATTEMPTS`. A published
//! publication is never handed back: its files stay with its unit.
//!
//! A 404 (task gone) or 409 `stale_attempt` means: this unit's attempt is not the current one;
//! drop the message, stop the work, clean up, and do not complete.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::probe::Probe;
use crate::task::{ProgressReport, TaskStatus};

/// The error code of a claim, progress or completion for an attempt that is not current.
pub const STALE_ATTEMPT: &str = "stale_attempt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    Transform,
    Publisher,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Transform => "transform",
            UnitKind::Publisher => "publisher",
        }
    }
}

/// Sent by every unit every `heartbeat_secs`; registers the unit on first call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UnitHeartbeat {
    pub kind: UnitKind,
    pub queues: Vec<String>,
    pub hostname: String,
    /// The unit's OSCIED version.
    pub version: String,
    /// `ffmpeg -version`'s first line, for transform units.
    pub ffmpeg_version: Option<String>,
    pub concurrency: u32,
    /// Ids of the tasks the unit is running now.
    pub running_tasks: Vec<Uuid>,
    /// How often the unit sends this; it is offline after three missed beats.
    pub heartbeat_secs: u64,
}

/// The publications a publisher unit holds (publishing, published, or being unpublished).
/// A unit keeps in its web root only what one of the ids it has files of holds at that
/// attempt: what a unit killed mid-publish left there goes once its task went elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeldPublications {
    /// The medias of `publications`, each once, sorted (what older units read).
    pub media_ids: Vec<Uuid>,
    /// Each publisher task the unit holds, oldest first.
    #[serde(default)]
    pub publications: Vec<HeldPublication>,
}

/// One publisher task a unit holds: STARTED or PROGRESS (publishing), SUCCESS (published) or
/// REVOKING (being unpublished or revoked mid-publish).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeldPublication {
    pub media_id: Uuid,
    pub task_id: Uuid,
    pub attempt: u32,
    pub status: TaskStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimRequest {
    pub unit_id: String,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimAnswer {
    pub task_id: Uuid,
    pub attempt: u32,
    /// The unit must report (progress or a bare heartbeat) more often than this, or the
    /// orchestra takes the task back.
    pub lease_secs: u64,
}

/// Progress, or a bare lease heartbeat when `progress` is null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressRequest {
    pub unit_id: String,
    pub attempt: u32,
    pub progress: Option<ProgressReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressAnswer {
    /// The task was revoked: kill the work within a second, clean up, complete as REVOKED.
    pub cancel: bool,
}

/// What a transform produced: the files are in `tmp_dir(task, attempt)`, the main one named
/// as the job's `filename`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransformOutput {
    /// Bytes of the whole output directory.
    pub size: u64,
    pub probe: Probe,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompleteRequest {
    pub unit_id: String,
    pub attempt: u32,
    /// SUCCESS, FAILURE or REVOKED.
    pub status: TaskStatus,
    /// For FAILURE: what went wrong (ffmpeg's own error lines).
    pub error: Option<String>,
    /// For a transform's SUCCESS.
    #[serde(default)]
    pub output: Option<TransformOutput>,
    /// For a publication's SUCCESS: the checked URL of the media's main file.
    #[serde(default)]
    pub publish_uri: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompleteAnswer {
    /// The task's status after the call (a revoked task answers REVOKED to a SUCCESS).
    pub status: TaskStatus,
}

/// A stopping unit hands back an attempt it runs (`POST /node/{kind}/tasks/{id}/release`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseRequest {
    pub unit_id: String,
    /// The attempt the unit runs; any other answers 409 `stale_attempt`.
    pub attempt: u32,
    /// Why, for the task's `error` (e.g. "shutdown").
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseAnswer {
    /// RETRY (queued again), or REVOKED for a task that was being revoked.
    pub status: TaskStatus,
    /// The task's attempt now: the next one for a RETRY.
    pub attempt: u32,
}
